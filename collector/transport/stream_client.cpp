#include "collector/transport/stream_client.hpp"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <future>
#include <mutex>
#include <optional>
#include <utility>

#include "collector/format/zstd_codec.hpp"
#include "collector/transport/stream_protocol.hpp"

namespace perfstream {

// Everything that runs on the sender thread.
//
// A connection is made in named steps, each started by a do_ function and ended by a handler that takes the
// error_code: connect() -> do_resolve -> do_connect -> (do_handshake) -> do_hello -> read_frame; a unix
// socket goes from connect() to do_connect_unix and on to do_hello. Every handler of a connection is
// wrapped by current(), which drops it once that connection is over (fail() or shutdown() moved the
// generation on), so no step checks for itself.
class StreamClient::Sender {
 public:
  // `label` starts every log line; `leftover`: the spool holds an earlier run's batches only, and the
  // sender stops once they are all acknowledged.
  Sender(const StreamClientOptions& options, Spool& spool, v1::TraceHeader header, std::string collector_id,
         std::shared_ptr<asio::ssl::context> tls, std::string label = {}, bool leftover = false)
      : options_(options),
        label_(std::move(label)),
        leftover_(leftover),
        spool_(spool),
        tls_(std::move(tls)),
        work_(asio::make_work_guard(io_)),
        retry_timer_(io_),
        handshake_timer_(io_),
        spool_retry_timer_(io_),
        backoff_(options.backoff_min) {
    v1::StreamHello hello;
    hello.set_protocol_version(kStreamProtocolVersion);
    hello.set_collector_id(std::move(collector_id));
    *hello.mutable_header() = std::move(header);
    hello_frame_ = encode_control_frame(FrameType::Hello, hello);
  }

  asio::io_context& io() { return io_; }
  void run() { io_.run(); }
  void begin() { connect(); }
  void wake() { asio::post(io_, [this] { pump(); }); }

  // Called on the sender thread; `done` is fulfilled when the trailer is written.
  void finish(std::string trailer_frame, std::shared_ptr<std::promise<void>> done) {
    finishing_ = true;
    trailer_frame_ = std::move(trailer_frame);
    finish_done_ = std::move(done);
    pump();
  }
  void shutdown() {
    stopped_ = true;
    retry_timer_.cancel();
    handshake_timer_.cancel();
    spool_retry_timer_.cancel();
    abort_connect();  // a connect in flight would hold run() until the kernel gives up on it (minutes)
    if (conn_) conn_->close();
    work_.reset();
  }

  // Why the last attempt to read a batch back from the spool failed; empty once one succeeds again.
  std::optional<Error> spool_error() const {
    std::lock_guard<std::mutex> lock(spool_error_mutex_);
    return spool_error_;
  }

  // The sink's refusal in force now (empty once it takes batches again), and the latest one ever.
  std::string current_refusal() const {
    std::lock_guard<std::mutex> lock(spool_error_mutex_);
    return refusal_in_force_ ? last_refusal_ : std::string();
  }
  std::string last_refusal() const {
    std::lock_guard<std::mutex> lock(spool_error_mutex_);
    return last_refusal_;
  }

  std::atomic<bool> connected{false};
  std::atomic<std::uint64_t> acked_through{0};
  std::atomic<std::uint64_t> connects{0};
  std::atomic<std::uint64_t> sent{0};
  std::atomic<std::uint64_t> attempts{0};
  std::atomic<bool> delivered{false};  // a leftover sender: everything acknowledged; it has stopped
  std::atomic<std::uint64_t> refusals{0};

 private:
  using error_code = boost::system::error_code;

  // One connection attempt's resolver and socket, until the socket becomes conn_. Its handlers hold it,
  // so an abandoned attempt's objects outlive the operations still queued on them.
  struct Attempt {
    explicit Attempt(asio::io_context& io) : resolver(io), tcp(io), unix_socket(io) {}
    asio::ip::tcp::resolver resolver;
    Connection::Tcp tcp;
    Connection::Unix unix_socket;
  };

  void log(const std::string& line) {
    if (options_.log) options_.log->line(label_ + line);
  }

  // A connection event: written as a line while connections make progress, through the rate limit (per
  // `key`) once they keep failing without any (`streak` failures in a row), so that a sink that refuses
  // every batch does not fill our log either.
  void log_event(const char* key, const std::string& line, std::uint64_t streak) {
    if (!options_.log) return;
    if (streak < 2) return options_.log->line(label_ + line);
    options_.log->limited(label_ + key, label_ + line);
  }

  // The sink took something: the backoff starts over, and a refusal is no longer in force.
  void progressed() {
    backoff_ = options_.backoff_min;
    failures_without_progress_ = 0;
    welcomes_without_progress_ = 0;
    std::lock_guard<std::mutex> lock(spool_error_mutex_);
    refusal_in_force_ = false;
  }

  // `step` bound to the connection current now: when it completes, it runs only if that connection is
  // still the current one and the sender has not been shut down.
  template <typename... Args>
  auto current(void (Sender::*step)(const error_code&, Args...)) {
    return [this, step, generation = generation_, attempt = attempt_](const error_code& ec, Args... args) {
      (void)attempt;  // kept alive until the handler has run
      if (generation != generation_ || stopped_) return;
      (this->*step)(ec, std::forward<Args>(args)...);
    };
  }

  // --- connecting ---------------------------------------------------------------------------------------

  void connect() {
    if (stopped_) return;
    ++attempts;
    ++generation_;
    attempt_ = std::make_shared<Attempt>(io_);
    arm_handshake_deadline();
    if (options_.endpoint.kind == Endpoint::Kind::Unix) return do_connect_unix();
    do_resolve();
  }

  void do_resolve() {
    attempt_->resolver.async_resolve(options_.endpoint.host, std::to_string(options_.endpoint.port),
                                     current(&Sender::on_resolved));
  }

  void on_resolved(const error_code& ec, asio::ip::tcp::resolver::results_type results) {
    if (ec) return fail("resolving " + options_.endpoint.host + ": " + ec.message());
    do_connect(results);
  }

  void do_connect(const asio::ip::tcp::resolver::results_type& results) {
    asio::async_connect(attempt_->tcp, results, current(&Sender::on_connected));
  }

  void on_connected(const error_code& ec, const asio::ip::tcp::endpoint&) {
    if (ec) return fail("connecting: " + ec.message());
    error_code ignored;  // only lower latency: a socket that refuses it still works
    attempt_->tcp.set_option(asio::ip::tcp::no_delay(true), ignored);
    if (tls_) return do_handshake();
    conn_ = std::make_unique<Connection>(std::move(attempt_->tcp), options_.endpoint.to_string());
    attempt_.reset();
    do_hello();
  }

  void do_connect_unix() {
    attempt_->unix_socket.async_connect(asio::local::stream_protocol::endpoint(options_.endpoint.path),
                                        current(&Sender::on_connected_unix));
  }

  void on_connected_unix(const error_code& ec) {
    if (ec) return fail("connecting: " + ec.message());
    conn_ = std::make_unique<Connection>(std::move(attempt_->unix_socket), options_.endpoint.to_string());
    attempt_.reset();
    do_hello();
  }

  void do_handshake() {
    auto stream = std::make_unique<Connection::Tls>(std::move(attempt_->tcp), *tls_);
    SSL_set_tlsext_host_name(stream->native_handle(), options_.endpoint.host.c_str());
    stream->set_verify_callback(asio::ssl::host_name_verification(options_.endpoint.host));
    conn_ = std::make_unique<Connection>(std::move(stream), options_.endpoint.to_string());
    attempt_.reset();
    conn_->tls()->async_handshake(asio::ssl::stream_base::client, current(&Sender::on_handshake));
  }

  void on_handshake(const error_code& ec) {
    if (ec) return fail("TLS handshake: " + ec.message());
    do_hello();
  }

  void do_hello() { conn_->async_write(asio::buffer(hello_frame_), current(&Sender::on_hello_sent)); }

  void on_hello_sent(const error_code& ec, std::size_t) {
    if (ec) return fail("sending hello: " + ec.message());
    read_frame();
  }

  // A connect nobody answers (SYNs dropped) or a peer that never welcomes us would hold the sender
  // forever, with batches piling up unsent and no retry: the handshake has a deadline, like the sink's
  // hello.
  void arm_handshake_deadline() {
    handshake_timer_.expires_after(options_.handshake_timeout);
    handshake_timer_.async_wait(current(&Sender::on_handshake_deadline));
  }

  void on_handshake_deadline(const error_code& ec) {
    if (ec || connected) return;
    fail(std::string(attempt_ ? "no connection" : "no welcome from the sink") + " within " +
         std::to_string(options_.handshake_timeout.count()) + " ms");
  }

  // Cancels the resolve or closes the socket of a connect in flight: its handler ends with an error.
  void abort_connect() {
    if (!attempt_) return;
    error_code ignored;
    attempt_->resolver.cancel();
    attempt_->tcp.close(ignored);
    attempt_->unix_socket.close(ignored);
    attempt_.reset();
  }

  // --- reading the sink's frames ------------------------------------------------------------------------

  void read_frame() { conn_->async_read(asio::buffer(in_header_), current(&Sender::on_frame_header)); }

  void on_frame_header(const error_code& ec, std::size_t) {
    if (ec) return fail(ec == asio::error::eof ? "the sink closed the connection" : "reading: " + ec.message());
    std::string why;
    auto header = parse_frame_header(std::span<const char>(in_header_.data(), in_header_.size()), &why,
                                     FrameContext::Stream, 1 << 20);
    if (!header) return fail("bad frame from the sink: " + why);
    in_type_ = header->type;
    in_payload_.resize(header->payload_length);
    conn_->async_read(asio::buffer(in_payload_), current(&Sender::on_frame_payload));
  }

  void on_frame_payload(const error_code& ec, std::size_t) {
    if (ec) return fail("reading: " + ec.message());
    on_frame(in_type_);
  }

  void on_frame(FrameType type) {
    switch (type) {
      case FrameType::Welcome: {
        v1::StreamWelcome welcome;
        if (!welcome.ParseFromString(in_payload_)) return fail("the sink's welcome does not decode");
        spool_.acknowledge(welcome.next_sequence());
        acked_through = welcome.next_sequence();
        spool_.rewind();
        handshake_timer_.cancel();
        connected = true;
        ++connects;
        log_event("sink connected",
                  "connected to " + options_.endpoint.to_string() + " (sink " + welcome.sink_id() + "); " +
                      std::to_string(spool_.pending_batches()) + " batches to send",
                  welcomes_without_progress_ + 1);
        // Answering is not progress: only a sink with nothing to take from us, or one that acknowledges,
        // resets the backoff (a sink that refuses every batch is tried less and less often).
        ++welcomes_without_progress_;
        if (spool_.pending_batches() == 0) progressed();
        if (leftover_ && spool_.pending_batches() == 0) return all_delivered();
        pump();
        break;
      }
      case FrameType::Ack: {
        v1::StreamAck ack;
        if (!ack.ParseFromString(in_payload_)) return fail("an ack does not decode");
        spool_.acknowledge(ack.through());
        if (ack.through() > acked_through) progressed();
        acked_through = ack.through();
        if (leftover_ && spool_.pending_batches() == 0) return all_delivered();
        pump();
        break;
      }
      case FrameType::Refusal: {
        v1::StreamRefusal refusal;
        if (!refusal.ParseFromString(in_payload_)) {
          return fail("the sink refused us, and its refusal (" + std::to_string(in_payload_.size()) +
                      " bytes) does not decode");
        }
        ++refusals;
        {
          std::lock_guard<std::mutex> lock(spool_error_mutex_);
          last_refusal_ = refusal.reason();
          refusal_in_force_ = true;
        }
        return fail("the sink refused us: " + refusal.reason());
      }
      default:
        return fail("unexpected frame type " + std::to_string(static_cast<int>(type)) + " from the sink");
    }
    read_frame();
  }

  // An earlier run's batches are all at the sink: nothing more to do (no trailer: see the header).
  void all_delivered() {
    log("the sink has every batch of it (acknowledged through batch " + std::to_string(acked_through.load()) +
        "); its spool files are deleted");
    delivered = true;
    shutdown();
  }

  // --- sending ------------------------------------------------------------------------------------------

  void pump() {
    if (!connected || writing_ || stopped_) return;
    if (finishing_ && spool_.pending_batches() == 0) {
      if (trailer_frame_.empty()) return;
      writing_ = true;
      conn_->async_write(asio::buffer(trailer_frame_), current(&Sender::on_trailer_sent));
      return;
    }
    if (spool_.inflight_batches() >= options_.window) return;
    std::uint64_t sequence = 0;
    auto next = spool_.next_unsent(&sequence, &out_payload_);
    if (!next) return spool_unreadable(next.error());
    set_spool_error(std::nullopt);
    if (!*next) return;
    out_header_ = data_frame_header(FrameType::Batch, out_payload_.size());
    writing_ = true;
    std::array<asio::const_buffer, 2> buffers{asio::buffer(out_header_), asio::buffer(out_payload_)};
    conn_->async_write(buffers, current(&Sender::on_batch_sent));
  }

  void on_batch_sent(const error_code& ec, std::size_t) {
    writing_ = false;
    if (ec) return fail("sending a batch: " + ec.message());
    ++sent;
    pump();
  }

  void on_trailer_sent(const error_code& ec, std::size_t) {
    writing_ = false;
    if (ec) return fail("sending the trailer: " + ec.message());
    trailer_frame_.clear();
    if (finish_done_) finish_done_->set_value();
    finish_done_.reset();
  }

  // A batch that cannot be read back from the spool stays unsent. The connection is not at fault, so it
  // stays up; the read is tried again after backoff_min (and on every new batch or acknowledgement), and
  // finish() gives this error if the batches never go.
  void spool_unreadable(const Error& error) {
    set_spool_error(error);
    if (options_.log) options_.log->limited(label_ + "spool read", label_ + error.message() + "; trying again");
    if (spool_retry_armed_) return;
    spool_retry_armed_ = true;
    spool_retry_timer_.expires_after(options_.backoff_min);
    spool_retry_timer_.async_wait([this](const error_code& ec) {
      spool_retry_armed_ = false;
      if (!ec && !stopped_) pump();
    });
  }

  void set_spool_error(std::optional<Error> error) {
    std::lock_guard<std::mutex> lock(spool_error_mutex_);
    spool_error_ = std::move(error);
  }

  // --- failing ------------------------------------------------------------------------------------------

  // Ends the current connection (or attempt) and retries after the backoff.
  void fail(const std::string& why) {
    if (stopped_) return;
    ++generation_;  // every handler of the old connection becomes a no-op
    abort_connect();
    if (conn_) conn_->close();
    connected = false;
    writing_ = false;
    ++failures_without_progress_;
    log_event("sink retry",
              "sink " + options_.endpoint.to_string() + ": " + why + "; " + std::to_string(spool_.pending_batches()) +
                  " batches spooled; retrying in " + std::to_string(backoff_.count()) + " ms",
              failures_without_progress_);
    retry_timer_.expires_after(backoff_);
    backoff_ = std::min(backoff_ * 2, options_.backoff_max);
    retry_timer_.async_wait([this](const error_code& ec) {
      if (!ec) connect();
    });
  }

  StreamClientOptions options_;
  const std::string label_;
  const bool leftover_;
  Spool& spool_;
  std::shared_ptr<asio::ssl::context> tls_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  asio::steady_timer retry_timer_;
  asio::steady_timer handshake_timer_;
  asio::steady_timer spool_retry_timer_;
  std::chrono::milliseconds backoff_;
  std::uint64_t failures_without_progress_ = 0;  // connections and attempts ended since the sink last took a batch
  std::uint64_t welcomes_without_progress_ = 0;  // welcomes since then
  std::shared_ptr<Attempt> attempt_;  // while resolving or connecting; null from then on
  std::unique_ptr<Connection> conn_;
  std::uint64_t generation_ = 0;      // moves on with each connection attempt and each failure
  bool writing_ = false;
  bool stopped_ = false;
  bool finishing_ = false;
  bool spool_retry_armed_ = false;
  std::string hello_frame_;
  std::string trailer_frame_;
  std::shared_ptr<std::promise<void>> finish_done_;
  std::array<char, kFrameHeaderSize> in_header_{};
  FrameType in_type_{};
  std::string in_payload_;
  std::string out_header_;
  std::string out_payload_;

  mutable std::mutex spool_error_mutex_;  // guards the three below, read from the controlling thread
  std::optional<Error> spool_error_;
  std::string last_refusal_;
  bool refusal_in_force_ = false;
};

Result<std::unique_ptr<StreamClient>> StreamClient::create(const StreamClientOptions& options, v1::TraceHeader header,
                                                           std::string collector_id) {
  std::unique_ptr<StreamClient> client(new StreamClient());
  client->options_ = options;
  std::shared_ptr<asio::ssl::context> tls;
  if (options.tls.enabled()) {
    if (options.endpoint.kind != Endpoint::Kind::Tcp) return Error("TLS is for tcp:// endpoints");
    auto ctx = make_tls_context(options.tls, false);
    if (!ctx) return ctx.error();
    tls = *ctx;
  }
  // An earlier run's segments are renamed aside here, then sent by senders of their own (not as ours).
  auto spool = Spool::create(options.spool_dir, options.spool_bytes, Spool::kDefaultSegmentBytes,
                             Spool::preamble_for(header));
  if (!spool) return spool.error();
  client->spool_ = std::move(*spool);
  client->sender_ = std::make_unique<Sender>(client->options_, *client->spool_, std::move(header),
                                             std::move(collector_id), tls);
  Sender* sender = client->sender_.get();
  client->spool_->set_notify([sender] { sender->wake(); });
  client->adopt_earlier_runs(tls);
  return client;
}

void StreamClient::adopt_earlier_runs(const std::shared_ptr<asio::ssl::context>& tls) {
  auto say = [this](const std::string& line) {
    if (options_.log) options_.log->line(line);
  };
  std::vector<std::string> skipped;
  auto leftovers = Spool::find_leftovers(options_.spool_dir, &skipped);
  if (!leftovers) return say("spool " + options_.spool_dir + ": " + leftovers.error().message() +
                             "; an earlier run's batches there are not sent");
  for (const std::string& file : skipped) {
    say("spool " + options_.spool_dir + ": " + file + "; not sent, left as it is");
  }
  for (const LeftoverRecording& leftover : *leftovers) {
    auto adopted = Spool::adopt(options_.spool_dir, leftover);
    if (!adopted) {
      say("spool " + options_.spool_dir + ": the earlier run's recording " + leftover.collector_id +
          " is not sent: " + adopted.error().message());
      continue;
    }
    const std::uint64_t batches = (*adopted)->pending_batches();
    if (batches == 0) continue;  // its files held no whole batch, and are gone
    say("spool " + options_.spool_dir + ": an earlier run left " + std::to_string(batches) + " batches (" +
        std::to_string(leftover.names.size()) + " file" + (leftover.names.size() == 1 ? "" : "s") + ", " +
        std::to_string(leftover.bytes) + " bytes) of its recording " + leftover.collector_id +
        " unacknowledged; sending them to the sink as that recording");
    std::unique_ptr<StreamClient> child(new StreamClient());
    child->options_ = options_;
    child->earlier_id_ = leftover.collector_id;
    child->spool_ = std::move(*adopted);
    child->sender_ = std::make_unique<Sender>(child->options_, *child->spool_, leftover.header, leftover.collector_id,
                                              tls, "the earlier run's recording " + leftover.collector_id + ": ", true);
    earlier_.push_back(std::move(child));
  }
}

Status StreamClient::give_spool_to(uid_t uid, gid_t gid) {
  if (auto st = spool_->give_to(uid, gid); !st) return st;
  for (auto& earlier : earlier_) {
    if (auto st = earlier->spool_->give_to(uid, gid); !st) return st;
  }
  return {};
}

bool StreamClient::wait_for_earlier_runs(std::chrono::steady_clock::time_point deadline,
                                         const std::function<bool()>& give_up) {
  for (;;) {
    const bool all = std::all_of(earlier_.begin(), earlier_.end(), [](const auto& e) { return e->sender_->delivered.load(); });
    if (all) return true;
    if (std::chrono::steady_clock::now() >= deadline || (give_up && give_up())) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

StreamClient::~StreamClient() {
  if (sender_) {
    Sender* sender = sender_.get();
    asio::post(sender->io(), [sender] { sender->shutdown(); });
  }
  if (thread_.joinable()) thread_.join();
  if (spool_) spool_->set_notify(nullptr);
}

Status StreamClient::write_batch(const EncodedBatch& batch) { return spool_->append_batch(batch); }

Status StreamClient::start() {
  if (thread_.joinable()) return {};
  Sender* sender = sender_.get();
  asio::post(sender->io(), [sender] { sender->begin(); });
  thread_ = std::thread([sender] { sender->run(); });
  for (auto& earlier : earlier_) (void)earlier->start();
  return {};
}

Result<bool> StreamClient::finish(const v1::TraceTrailer& trailer, std::chrono::milliseconds timeout,
                                  const std::function<bool()>& give_up) {
  auto compressor = ZstdCompressor::create(options_.trailer_compression_level);
  if (!compressor) return compressor.error().with_context("compressing the trailer");
  std::string payload;
  if (auto st = compressor->compress(trailer.SerializeAsString(), payload); !st) {
    return st.error().with_context("compressing the trailer");
  }
  std::string frame = data_frame_header(FrameType::Trailer, payload.size()) + payload;
  auto done = std::make_shared<std::promise<void>>();
  auto future = done->get_future();
  Sender* sender = sender_.get();
  asio::post(sender->io(), [sender, frame = std::move(frame), done]() mutable { sender->finish(std::move(frame), done); });
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = deadline - std::chrono::steady_clock::now();
    const auto slice = give_up ? std::min<std::chrono::steady_clock::duration>(left, std::chrono::milliseconds(50)) : left;
    if (future.wait_for(slice) == std::future_status::ready) return wait_for_earlier_runs(deadline, give_up);
    if (std::chrono::steady_clock::now() >= deadline || (give_up && give_up())) {
      // Not a slow sink when the batches could not even be read back to be sent.
      if (auto unreadable = sender->spool_error()) return *unreadable;
      return false;
    }
  }
}

StreamClientStatus StreamClient::status() const {
  StreamClientStatus s;
  s.connected = sender_->connected.load();
  s.acked_through = sender_->acked_through.load();
  s.pending_batches = spool_->pending_batches();
  s.pending_bytes = spool_->pending_bytes();
  s.refused_batches = spool_->refused_batches();
  s.connects = sender_->connects.load();
  s.sent_batches = sender_->sent.load();
  s.attempts = sender_->attempts.load();
  s.refusals = sender_->refusals.load();
  s.last_refusal = sender_->last_refusal();
  s.far_end_refuses = sender_->current_refusal();
  for (const auto& earlier : earlier_) {
    s.pending_batches += earlier->spool_->pending_batches();
    s.pending_bytes += earlier->spool_->pending_bytes();
    if (s.far_end_refuses.empty()) s.far_end_refuses = earlier->sender_->current_refusal();
  }
  return s;
}

std::string StreamClient::describe_progress() const {
  const auto s = status();
  std::string text = "acknowledged through batch " + std::to_string(s.acked_through) + ", " +
                     std::to_string(s.connects) + " connection" + (s.connects == 1 ? "" : "s") + " in " +
                     std::to_string(s.attempts) + " attempt" + (s.attempts == 1 ? "" : "s");
  if (s.refusals > 0) {
    text += ", refused " + std::to_string(s.refusals) + " time" + (s.refusals == 1 ? "" : "s") +
            " by the sink (last: " + s.last_refusal + ")";
  }
  for (const auto& earlier : earlier_) {
    const auto e = earlier->status();
    text += "; the earlier run's recording " + earlier->earlier_id_ + ": acknowledged through batch " +
            std::to_string(e.acked_through) + (earlier->sender_->delivered.load() ? ", all delivered"
                                                                              : ", " + std::to_string(e.pending_batches) + " batches not yet");
  }
  return text;
}

}  // namespace perfstream
