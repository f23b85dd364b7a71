#include "collector/kafka/kafka_publisher.hpp"

#include <openssl/evp.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_set>

#include "collector/format/frame.hpp"
#include "collector/format/zstd_codec.hpp"

namespace perfstream {

std::string kafka_schema_id(const std::string& serialized_header) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(serialized_header.data(), serialized_header.size(), digest, &length, EVP_sha256(), nullptr);
  static const char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < 16 && i < length; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 15];
  }
  return out;
}

namespace {

// One message handed to librdkafka: it points into `value` without a copy until its delivery report.
struct Outgoing {
  enum class Kind { Header, Batch, Trailer } kind;
  std::uint64_t sequence = 0;
  std::string value;
};

const char* kind_name(Outgoing::Kind kind) {
  switch (kind) {
    case Outgoing::Kind::Header: return "header";
    case Outgoing::Kind::Batch: return "batch";
    case Outgoing::Kind::Trailer: return "trailer";
  }
  return "?";
}

// Errors no resend can fix: the recording cannot go on through this topic.
bool is_permanent(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
      return true;
    default:
      return false;
  }
}

}  // namespace

// Everything that runs on the publisher's thread.
class KafkaPublisher::Producer {
 public:
  Producer(const KafkaPublisherOptions& options, Spool& spool, const v1::TraceHeader& header, std::string collector_id)
      : options_(options), spool_(spool), collector_id_(std::move(collector_id)), key_(header.host()) {
    header_value_ = header.SerializeAsString();
    schema_id_ = kafka_schema_id(header_value_);
    format_version_ = std::to_string(file_format_version(header.format_version()));
    headers_topic_ = options_.address.headers_topic();
  }

  ~Producer() { destroy_handle(); }

  Result<KafkaConf> make_conf() const {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    const KafkaProperties defaults = {
        {"bootstrap.servers", options_.address.bootstrap_servers()},
        {"client.id", std::string("perfstream-") + host},
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"compression.type", "none"},
    };
    return make_kafka_conf(defaults, options_.properties,
                           {{"compression.type", "a batch is a zstd frame already; compressing it again costs CPU "
                                                 "and saves nothing"}});
  }

  Status make_handle() {
    auto conf = make_conf();
    if (!conf) return conf.error();
    rd_kafka_conf_set_opaque(conf->get(), this);
    rd_kafka_conf_set_dr_msg_cb(conf->get(), &Producer::on_delivery);
    rd_kafka_conf_set_error_cb(conf->get(), &Producer::on_error);
    char why[512];
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf->get(), why, sizeof(why));
    if (!rk) return Error(std::string("Kafka producer for ") + options_.address.to_string() + ": " + why);
    (void)conf->release();  // rd_kafka_new owns it now
    rk_.reset(rk);
    ++producers;
    return {};
  }

  // The publisher's thread: produce what is due, serve callbacks, until stop().
  void run() {
    while (!stopping_.load()) {
      if (fatal_.exchange(false)) renew_handle();
      if (!rk_) {  // a new producer could not be made: the error is reported, nothing more to do
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      pump();
      rd_kafka_poll(rk_.get(), 20);
      if (resend_ && outstanding_ == 0) {
        resend_ = false;
        spool_.rewind();
      }
    }
    destroy_handle();
  }

  void stop() { stopping_ = true; }

  // From the controlling thread.
  bool finish(std::string trailer_value, std::chrono::milliseconds timeout, const std::function<bool()>& give_up) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!finishing_) {
      finishing_ = true;
      trailer_value_ = std::move(trailer_value);
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto slice = std::min<std::chrono::steady_clock::duration>(deadline - std::chrono::steady_clock::now(),
                                                                      std::chrono::milliseconds(50));
      if (finished_cv_.wait_for(lock, slice, [this] { return finished_ || !permanent_error_.empty(); })) {
        return finished_;
      }
      if (std::chrono::steady_clock::now() >= deadline) return false;
      if (give_up) {
        lock.unlock();
        const bool stop = give_up();
        lock.lock();
        if (stop) return finished_;
      }
    }
  }

  // Why publishing stopped for good (empty while it goes on).
  std::string error() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return permanent_error_;
  }

  std::atomic<bool> connected{false};
  std::atomic<std::uint64_t> acked_through{0};
  std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::uint64_t> producers{0};

 private:
  enum class State { Unsent, InFlight, Delivered };

  void log(const std::string& line) {
    if (options_.log) options_.log->line(line);
  }
  void log_limited(const std::string& key, const std::string& line) {
    if (options_.log) options_.log->limited(key, line);
  }

  void pump() {
    if (!error().empty()) return;
    if (header_state_ == State::Unsent) {
      auto msg = std::make_unique<Outgoing>(Outgoing{Outgoing::Kind::Header, 0, header_value_});
      if (produce(std::move(msg))) header_state_ = State::InFlight;
      return;
    }
    if (header_state_ != State::Delivered) return;
    while (!resend_ && spool_.inflight_batches() < options_.window) {
      auto msg = std::make_unique<Outgoing>(Outgoing{Outgoing::Kind::Batch, 0, {}});
      auto next = spool_.next_unsent(&msg->sequence, &msg->value);
      if (!next) {  // it stays unsent: the next pass (20 ms on) tries again
        log_limited("spool read", next.error().message() + "; trying again");
        break;
      }
      if (!*next) break;
      if (!produce(std::move(msg))) {
        resend_ = true;  // it is marked sent: put everything unreported back once librdkafka has let go
        break;
      }
    }
    bool due = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      due = finishing_ && !finished_ && trailer_state_ == State::Unsent && spool_.pending_batches() == 0;
    }
    if (due) {
      std::string value;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        value = trailer_value_;
      }
      if (produce(std::make_unique<Outgoing>(Outgoing{Outgoing::Kind::Trailer, 0, std::move(value)}))) {
        trailer_state_ = State::InFlight;
      }
    }
  }

  // Hands `msg` to librdkafka; false (and a log line) when it would not take it.
  bool produce(std::unique_ptr<Outgoing> msg) {
    rd_kafka_headers_t* headers = rd_kafka_headers_new(6);
    auto add = [headers](const char* name, const std::string& value) {
      rd_kafka_header_add(headers, name, -1, value.data(), static_cast<ssize_t>(value.size()));
    };
    add("perfstream-type", kind_name(msg->kind));
    add("perfstream-format", format_version_);
    add("perfstream-schema", schema_id_);
    add("perfstream-collector", collector_id_);
    if (msg->kind == Outgoing::Kind::Batch) add("perfstream-sequence", std::to_string(msg->sequence));
    const bool is_header = msg->kind == Outgoing::Kind::Header;
    const std::string topic = is_header ? options_.address.headers_topic() : options_.address.topic;
    const std::string& key = is_header ? schema_id_ : key_;
    Outgoing* raw = msg.get();
    const rd_kafka_resp_err_t err = rd_kafka_producev(
        rk_.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
        RD_KAFKA_V_VALUE(raw->value.data(), raw->value.size()), RD_KAFKA_V_MSGFLAGS(0),
        RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(raw), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_headers_destroy(headers);  // not taken: still ours
      ++failed;
      report_failure(*raw, err);
      return false;
    }
    live_.insert(msg.release());  // the delivery report deletes it
    ++outstanding_;
    return true;
  }

  void report_failure(const Outgoing& msg, rd_kafka_resp_err_t err) {
    std::string what = std::string(kind_name(msg.kind)) +
                       (msg.kind == Outgoing::Kind::Batch ? " " + std::to_string(msg.sequence) : "") + " (" +
                       std::to_string(msg.value.size()) + " bytes)";
    if (is_permanent(err)) {
      std::lock_guard<std::mutex> lock(mutex_);
      permanent_error_ = "Kafka refuses " + what + " for topic " + topic_of(msg.kind) + " at " +
                         options_.address.bootstrap_servers() + ": " +
                         rd_kafka_err2str(err) +
                         (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE
                              ? " (lower --batch-bytes, or raise the topic's max.message.bytes and -X message.max.bytes)"
                              : "");
      log(permanent_error_ + "; publishing stopped, the batches stay in the spool");
      return;
    }
    // An outage fails every message in flight, and a missing topic fails each attempt: the log lets one
    // line through per interval, and counts the others.
    log_limited("delivery failure", "Kafka did not take " + what + " for topic " + topic_of(msg.kind) + ": " + rd_kafka_err2str(err) +
        "; it will be published again");
  }

  const std::string& topic_of(Outgoing::Kind kind) const {
    return kind == Outgoing::Kind::Header ? headers_topic_ : options_.address.topic;
  }

  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* message, void* opaque) {
    auto* self = static_cast<Producer*>(opaque);
    std::unique_ptr<Outgoing> msg(static_cast<Outgoing*>(message->_private));
    self->live_.erase(msg.get());
    --self->outstanding_;
    if (self->destroying_) return;  // purged at shutdown: the spool keeps what was not reported
    if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      ++self->failed;
      self->report_failure(*msg, message->err);
      if (msg->kind == Outgoing::Kind::Header) self->header_state_ = State::Unsent;
      if (msg->kind == Outgoing::Kind::Trailer) self->trailer_state_ = State::Unsent;
      if (msg->kind == Outgoing::Kind::Batch) self->resend_ = true;
      return;
    }
    ++self->delivered;
    self->connected = true;
    switch (msg->kind) {
      case Outgoing::Kind::Header:
        self->header_state_ = State::Delivered;
        break;
      case Outgoing::Kind::Batch: {
        // Reports come in order within a partition, and all of a host's batches share one; the set makes
        // the cumulative acknowledgement right even if they did not.
        auto& above = self->delivered_above_;
        std::uint64_t through = self->acked_through.load();
        if (msg->sequence >= through) above.insert(msg->sequence);
        while (!above.empty() && *above.begin() == through) {
          above.erase(above.begin());
          ++through;
        }
        self->acked_through = through;
        // Per batch: a sequence that never reaches the spool (its disk failed) must not hold back the rest.
        self->spool_.acknowledge_one(msg->sequence);
        break;
      }
      case Outgoing::Kind::Trailer: {
        self->trailer_state_ = State::Delivered;
        std::lock_guard<std::mutex> lock(self->mutex_);
        self->finished_ = true;
        self->finished_cv_.notify_all();
        break;
      }
    }
  }

  static void on_error(rd_kafka_t* rk, int code, const char* reason, void* opaque) {
    auto* self = static_cast<Producer*>(opaque);
    const auto err = static_cast<rd_kafka_resp_err_t>(code);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
      char why[512];
      const auto original = rd_kafka_fatal_error(rk, why, sizeof(why));
      self->log(std::string("Kafka producer failed for good (") + rd_kafka_err2name(original) + ": " + why +
                "); starting a new one and publishing the unreported batches again");
      self->fatal_ = true;
      return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
      if (self->connected.exchange(false) || !self->said_down_) {
        self->log("Kafka: every broker of " + self->options_.address.to_string() +
                  " is down or unreachable; batches keep spooling (" +
                  std::to_string(self->spool_.pending_batches()) + " waiting)");
      }
      self->said_down_ = true;
      return;
    }
    // Connection errors repeat with librdkafka's reconnect backoff: one line per interval is enough.
    self->log_limited("kafka error", std::string("Kafka: ") + reason);
  }

  // After a fatal error the producer instance is done for: a new one takes over, and every batch not
  // reported delivered is produced again (the sink drops any that arrive twice).
  void renew_handle() {
    destroy_handle();
    destroying_ = false;
    if (auto st = make_handle(); !st) {
      std::lock_guard<std::mutex> lock(mutex_);
      permanent_error_ = st.error().message();
      log(permanent_error_);
      return;
    }
    if (header_state_ != State::Delivered) header_state_ = State::Unsent;
    if (trailer_state_ == State::InFlight) trailer_state_ = State::Unsent;
    spool_.rewind();
    resend_ = false;
  }

  void destroy_handle() {
    if (!rk_) return;
    destroying_ = true;
    rd_kafka_purge(rk_.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    // The purged messages' reports free them; in-flight ones may take a request timeout to come back.
    for (int i = 0; i < 500 && outstanding_ > 0; ++i) rd_kafka_poll(rk_.get(), 10);
    rk_.reset();
    // Reports librdkafka never gave back (it discards them at destroy): their batches are still spooled.
    for (Outgoing* msg : live_) delete msg;
    live_.clear();
    outstanding_ = 0;
  }

  KafkaPublisherOptions options_;
  Spool& spool_;
  std::string collector_id_;
  std::string key_;
  std::string header_value_;
  std::string schema_id_;
  std::string format_version_;  // the recording's trace format version: 1, or 3 with column groups and time planes
  KafkaHandle rk_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> fatal_{false};
  bool destroying_ = false;
  bool resend_ = false;
  bool said_down_ = false;
  std::int64_t outstanding_ = 0;
  State header_state_ = State::Unsent;
  State trailer_state_ = State::Unsent;
  std::set<std::uint64_t> delivered_above_;
  std::unordered_set<Outgoing*> live_;  // handed to librdkafka, no report yet
  std::string headers_topic_;

  mutable std::mutex mutex_;  // guards what the controlling thread sees: the finish handshake, the error
  std::string permanent_error_;
  std::condition_variable finished_cv_;
  bool finishing_ = false;
  bool finished_ = false;
  std::string trailer_value_;
};

Result<std::unique_ptr<KafkaPublisher>> KafkaPublisher::create(const KafkaPublisherOptions& options,
                                                               v1::TraceHeader header, std::string collector_id) {
  std::unique_ptr<KafkaPublisher> publisher(new KafkaPublisher());
  auto spool = Spool::create_for_recording(options.spool_dir, options.spool_bytes, header, options.log);
  if (!spool) return spool.error();
  publisher->spool_ = std::move(*spool);
  publisher->producer_ = std::make_unique<Producer>(options, *publisher->spool_, header, std::move(collector_id));
  // Settings are checked now; the client itself (and its threads) comes with start().
  if (auto conf = publisher->producer_->make_conf(); !conf) return conf.error();
  return publisher;
}

KafkaPublisher::~KafkaPublisher() {
  if (producer_) producer_->stop();
  if (thread_.joinable()) thread_.join();
}

Status KafkaPublisher::write_batch(const EncodedBatch& batch) { return spool_->append_batch(batch); }

Status KafkaPublisher::start() {
  if (thread_.joinable()) return {};
  if (auto st = producer_->make_handle(); !st) {
    start_error_ = st.error();
    return st;
  }
  Producer* producer = producer_.get();
  thread_ = std::thread([producer] { producer->run(); });
  return {};
}

Result<bool> KafkaPublisher::finish(const v1::TraceTrailer& trailer, std::chrono::milliseconds timeout,
                                    const std::function<bool()>& give_up) {
  if (start_error_) return *start_error_;
  auto compressor = ZstdCompressor::create(3);
  if (!compressor) return compressor.error().with_context("compressing the trailer");
  std::string value;
  if (auto st = compressor->compress(trailer.SerializeAsString(), value); !st) {
    return st.error().with_context("compressing the trailer");
  }
  if (producer_->finish(std::move(value), timeout, give_up)) return true;
  if (std::string why = producer_->error(); !why.empty()) return Error(why);
  return false;
}

KafkaPublisherStatus KafkaPublisher::status() const {
  KafkaPublisherStatus s;
  s.connected = producer_->connected.load();
  s.acked_through = producer_->acked_through.load();
  s.pending_batches = spool_->pending_batches();
  s.pending_bytes = spool_->pending_bytes();
  s.refused_batches = spool_->refused_batches();
  s.delivered = producer_->delivered.load();
  s.failed = producer_->failed.load();
  s.producers = producer_->producers.load();
  s.error = start_error_ ? start_error_->message() : producer_->error();
  return s;
}

std::string KafkaPublisher::describe_progress() const {
  const auto s = status();
  return "delivered through batch " + std::to_string(s.acked_through) + ", " + std::to_string(s.failed) +
         " deliveries failed and retried";
}

}  // namespace perfstream
