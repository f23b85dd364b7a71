#include "collector/kafka/kafka_sink.hpp"

#include <unistd.h>

#include <map>
#include <optional>
#include <set>

#include "collector/format/frame.hpp"
#include "collector/format/trace_reader.hpp"
#include "collector/format/zstd_codec.hpp"
#include "collector/kafka/kafka_publisher.hpp"

namespace perfstream {

namespace {

struct MessageDeleter {
  void operator()(rd_kafka_message_t* m) const { rd_kafka_message_destroy(m); }
};
using KafkaMessage = std::unique_ptr<rd_kafka_message_t, MessageDeleter>;

struct PartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const { rd_kafka_topic_partition_list_destroy(l); }
};
using PartitionList = std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter>;

std::optional<std::string> header_value(const rd_kafka_message_t* msg, const char* name) {
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(msg, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR) return std::nullopt;
  const void* value = nullptr;
  size_t size = 0;
  if (rd_kafka_header_get_last(headers, name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR || !value) {
    return std::nullopt;
  }
  return std::string(static_cast<const char*>(value), size);
}

// The perfstream-format header names a version this sink reads: "1" to "3", digits only.
bool readable_format_header(const std::string& value) {
  if (value.empty() || value.size() > 3 || value.find_first_not_of("0123456789") != std::string::npos) return false;
  return readable_format_version(static_cast<std::uint32_t>(std::stoul(value)));
}

std::string position(const rd_kafka_message_t* msg) {
  return std::string(rd_kafka_topic_name(msg->rkt)) + "[" + std::to_string(msg->partition) + "]@" +
         std::to_string(msg->offset);
}

std::string client_id() {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  return std::string("perfstream-sink-") + host;
}

// The TraceHeaders published in TOPIC.headers, read from the beginning on demand by a consumer that
// belongs to no group (it commits nothing: a restart reads the topic again; it is compacted and small).
class HeaderDirectory {
 public:
  HeaderDirectory(const KafkaSinkOptions& options) : options_(options) {}

  enum class Lookup { Found, Missing, Unreachable };

  // Missing: the headers topic was read to its end and holds no such id (remembered: asked again, the
  // answer is the same at once). Unreachable: it could not be read to its end within header_timeout.
  Lookup find(const std::string& schema_id, v1::TraceHeader* out, std::string* why) {
    if (auto it = known_.find(schema_id); it != known_.end()) {
      *out = it->second;
      return Lookup::Found;
    }
    const std::string topic = options_.address.headers_topic();
    if (missing_.count(schema_id) != 0) {
      *why = "no TraceHeader with schema id " + schema_id + " in " + topic;
      return Lookup::Missing;
    }
    if (!rk_) {
      // It has a group id because librdkafka's consumer API needs one; it never joins (assign, not
      // subscribe) and never commits.
      auto conf = make_kafka_conf({{"bootstrap.servers", options_.address.bootstrap_servers()},
                                   {"group.id", options_.group + ".headers-reader"},
                                   {"client.id", client_id() + "-headers"},
                                   {"enable.auto.commit", "false"},
                                   {"enable.partition.eof", "true"}},
                                  options_.properties, {});
      if (!conf) {
        *why = conf.error().message();
        return Lookup::Unreachable;
      }
      char error[512];
      rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf->get(), error, sizeof(error));
      if (!rk) {
        *why = "Kafka consumer for " + topic + ": " + error;
        return Lookup::Unreachable;
      }
      (void)conf->release();
      rk_.reset(rk);
      rd_kafka_poll_set_consumer(rk_.get());
    }
    const auto started = std::chrono::steady_clock::now();
    const auto deadline = started + options_.header_timeout;
    std::string last_error = "the topic's partitions were not found";
    while (std::chrono::steady_clock::now() < deadline) {
      if (!assigned_ && !assign()) {
        usleep(100 * 1000);
        continue;
      }
      // Every partition read to its end, and nothing new for a moment: it is not there.
      const auto quiet = std::min<std::chrono::milliseconds>(std::chrono::milliseconds(500), options_.header_timeout / 2);
      if (at_end_.size() == partitions_ && std::chrono::steady_clock::now() - started >= quiet) {
        missing_.insert(schema_id);
        *why = "no TraceHeader with schema id " + schema_id + " in " + topic + " (read to its end)";
        return Lookup::Missing;
      }
      KafkaMessage msg(rd_kafka_consumer_poll(rk_.get(), 100));
      if (!msg) continue;
      if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        at_end_.insert(msg->partition);
        continue;
      }
      if (msg->err) {
        last_error = position(msg.get()) + ": " + rd_kafka_message_errstr(msg.get());
        continue;
      }
      at_end_.erase(msg->partition);
      const std::string key(static_cast<const char*>(msg->key), msg->key_len);
      const std::string value(static_cast<const char*>(msg->payload), msg->len);
      v1::TraceHeader header;
      if (kafka_schema_id(value) != key || !header.ParseFromString(value)) {
        log("skipping " + position(msg.get()) + ": not a TraceHeader whose SHA-256 matches its key");
        continue;
      }
      known_[key] = header;
      missing_.erase(key);
      if (key == schema_id) {
        *out = header;
        return Lookup::Found;
      }
    }
    *why = "cannot read " + topic + " to its end within " + std::to_string(options_.header_timeout.count()) +
           " ms (" + last_error + ")";
    return Lookup::Unreachable;
  }

 private:
  // Every partition of the headers topic, from its beginning; false while the topic is not there yet.
  bool assign() {
    const std::string topic = options_.address.headers_topic();
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk_.get(), topic.c_str(), nullptr);
    const rd_kafka_metadata_t* metadata = nullptr;
    const auto err = rd_kafka_metadata(rk_.get(), 0, rkt, &metadata, 2000);
    rd_kafka_topic_destroy(rkt);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return false;
    PartitionList list(rd_kafka_topic_partition_list_new(4));
    for (int t = 0; t < metadata->topic_cnt; ++t) {
      const auto& mt = metadata->topics[t];
      if (mt.err != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
      for (int p = 0; p < mt.partition_cnt; ++p) {
        rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), mt.partitions[p].id)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
      }
    }
    rd_kafka_metadata_destroy(metadata);
    if (list->cnt == 0) return false;
    assigned_ = rd_kafka_assign(rk_.get(), list.get()) == RD_KAFKA_RESP_ERR_NO_ERROR;
    partitions_ = static_cast<std::size_t>(list->cnt);
    return assigned_;
  }

  void log(const std::string& line) {
    if (options_.store.log) options_.store.log->line(line);
  }

  const KafkaSinkOptions& options_;
  KafkaHandle rk_;
  bool assigned_ = false;
  std::size_t partitions_ = 0;
  std::set<std::int32_t> at_end_;  // partitions read to their end since the last message
  std::map<std::string, v1::TraceHeader> known_;
  std::set<std::string> missing_;  // ids looked for and not there when the topic was read to its end
};

}  // namespace

class KafkaSink::Consumer {
 public:
  Consumer(const KafkaSinkOptions& options, RecordingStore& store)
      : options_(options), store_(store), headers_(options_), decompressor_(*ZstdDecompressor::create()) {}

  ~Consumer() {
    if (rk_) {
      rd_kafka_consumer_close(rk_.get());
      rk_.reset();
    }
  }

  Status make_handle() {
    auto conf = make_kafka_conf(
        {{"bootstrap.servers", options_.address.bootstrap_servers()},
         {"group.id", options_.group},
         {"client.id", client_id()},
         {"enable.auto.commit", "false"},
         {"enable.auto.offset.store", "false"},
         {"auto.offset.reset", "earliest"}},
        options_.properties,
        {{"enable.auto.commit", "offsets are committed by perfstream, only after the batches are on disk"},
         {"enable.auto.offset.store", "offsets are stored by perfstream, only after the batches are on disk"},
         {"group.id", "the group is --group"}});
    if (!conf) return conf.error();
    rd_kafka_conf_set_opaque(conf->get(), this);
    rd_kafka_conf_set_rebalance_cb(conf->get(), &Consumer::on_rebalance);
    rd_kafka_conf_set_error_cb(conf->get(), &Consumer::on_error);
    char why[512];
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf->get(), why, sizeof(why));
    if (!rk) return Error("Kafka consumer for " + options_.address.to_string() + ": " + why);
    (void)conf->release();
    rk_.reset(rk);
    rd_kafka_poll_set_consumer(rk_.get());
    return {};
  }

  Status run(const std::atomic<bool>& stopping) {
    PartitionList topics(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(topics.get(), options_.address.topic.c_str(), RD_KAFKA_PARTITION_UA);
    if (auto err = rd_kafka_subscribe(rk_.get(), topics.get()); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return Error("subscribing to " + options_.address.to_string() + ": " + rd_kafka_err2str(err));
    }
    log("consuming " + options_.address.to_string() + " as a member of group " + options_.group + ", writing into " +
        options_.store.dir);
    auto last_commit = std::chrono::steady_clock::now();
    while (!stopping.load() && failure_.empty()) {
      KafkaMessage msg(rd_kafka_consumer_poll(rk_.get(), 100));
      if (msg) handle(msg.get());
      if (!failure_.empty()) break;
      if (std::chrono::steady_clock::now() - last_commit >= options_.commit_interval) {
        commit();
        last_commit = std::chrono::steady_clock::now();
      }
    }
    if (failure_.empty()) commit();
    if (!failure_.empty()) return Error(failure_);
    rd_kafka_consumer_close(rk_.get());
    rk_.reset();
    return {};
  }

  std::atomic<std::uint64_t> messages{0}, batches{0}, records{0}, compressed_bytes{0}, duplicates{0}, trailers{0},
      rejected{0}, commits{0}, partitions{0};

 private:
  void log(const std::string& line) {
    if (options_.store.log) options_.store.log->line(line);
  }

  void reject(const rd_kafka_message_t* msg, const std::string& why) {
    ++rejected;
    log("skipping " + position(msg) + ": " + why);
  }

  void handle(const rd_kafka_message_t* msg) {
    if (msg->err) {
      if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return;
      log("Kafka: " + (msg->rkt ? position(msg) + ": " : std::string()) + rd_kafka_message_errstr(msg));
      return;
    }
    ++messages;
    // Whatever happens to it, the message is done with once handled: its offset may be committed after
    // the batches before it are synced.
    pending_[{rd_kafka_topic_name(msg->rkt), msg->partition}] = msg->offset + 1;
    const auto type = header_value(msg, "perfstream-type");
    const auto format = header_value(msg, "perfstream-format");
    const auto schema = header_value(msg, "perfstream-schema");
    const auto collector = header_value(msg, "perfstream-collector");
    if (!type || !format || !schema || !collector || collector->empty()) {
      return reject(msg, "not a perfstream message (perfstream-type, -format, -schema or -collector header missing)");
    }
    if (!readable_format_header(*format)) {
      return reject(msg, "trace format version " + *format + "; this sink reads versions " +
                             std::to_string(kOldestFormatVersion) + " to " + std::to_string(kFormatVersion));
    }
    if (*type != "batch" && *type != "trailer") return reject(msg, "unknown perfstream-type '" + *type + "'");

    auto recording = store_.find(*collector);
    if (!recording) {
      v1::TraceHeader header;
      std::string why;
      switch (headers_.find(*schema, &header, &why)) {
        case HeaderDirectory::Lookup::Found:
          break;
        case HeaderDirectory::Lookup::Missing:
          return reject(msg, why);
        case HeaderDirectory::Lookup::Unreachable:
          // Not the message's fault: stop without committing it, so that it is read again later.
          return fail("the recording of " + *collector + " at " + position(msg) + " needs its header: " + why);
      }
      auto opened = store_.recording(*collector, header);
      if (!opened) return fail("opening the recording of " + *collector + ": " + opened.error().message());
      recording = *opened;
    }
    value_.assign(static_cast<const char*>(msg->payload), msg->len);
    if (*type == "trailer") {
      v1::TraceTrailer trailer;
      if (!decompressor_.decompress(value_, 1 << 20, message_) || !trailer.ParseFromString(message_)) {
        return reject(msg, "the trailer does not decode");
      }
      if (auto st = store_.finish(recording, trailer); !st) return fail(st.error().message());
      ++trailers;
      const auto s = recording->summary();
      log("collector " + s.id + " finished: " + s.describe());
      return;
    }
    if (auto st = decompressor_.decompress(value_, options_.max_batch, message_); !st) {
      return reject(msg, "the batch does not decompress: " + st.error().message());
    }
    auto view = BatchView::parse(message_);
    if (!view) return reject(msg, "the batch does not parse: " + view.error().message());
    auto stored = recording->store(value_, view->batch());
    if (!stored) {
      // After the trailer: a late copy of a batch the recording ended without. Anything else: the disk.
      if (recording->summary().finished) return reject(msg, stored.error().message());
      return fail("writing " + recording->summary().file + ": " + stored.error().message());
    }
    if (*stored == Recording::Stored::Duplicate) {
      ++duplicates;
    } else {
      ++batches;
      records += view->batch().record_count();
      compressed_bytes += value_.size();  // store() hands the compressed batch back
      dirty_.insert(recording);
    }
  }

  void fail(const std::string& why) {
    failure_ = why;
    log(why + "; stopping without committing what was not written");
  }

  // Syncs every recording written since the last commit, then commits the offsets after what is synced.
  void commit() {
    if (!failure_.empty()) return;  // something was not written: commit nothing more
    for (const auto& recording : dirty_) {
      if (auto st = recording->sync(); !st) return fail(st.error().message());
    }
    dirty_.clear();
    if (pending_.empty()) return;
    PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(pending_.size())));
    for (const auto& [where, offset] : pending_) {
      rd_kafka_topic_partition_list_add(list.get(), where.first.c_str(), where.second)->offset = offset;
    }
    const auto err = rd_kafka_commit(rk_.get(), list.get(), 0);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      // Kept: the next commit tries again; a crash before then only means reading some batches again.
      log(std::string("committing offsets to group ") + options_.group + ": " + rd_kafka_err2str(err));
      return;
    }
    ++commits;
    pending_.clear();
  }

  static void on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* list,
                           void* opaque) {
    auto* self = static_cast<Consumer*>(opaque);
    const bool cooperative = std::string(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
    std::string names;
    for (int i = 0; i < list->cnt; ++i) names += (names.empty() ? "" : ",") + std::to_string(list->elems[i].partition);
    auto check = [self](rd_kafka_error_t* error, const char* what) {
      if (!error) return;
      self->log(std::string("group ") + self->options_.group + ": " + what + ": " + rd_kafka_error_string(error));
      rd_kafka_error_destroy(error);
    };
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      if (cooperative) check(rd_kafka_incremental_assign(rk, list), "taking the assigned partitions");
      else rd_kafka_assign(rk, list);
      self->partitions = cooperative ? self->partitions + list->cnt : list->cnt;
      self->log("group " + self->options_.group + " assigned partitions " + (names.empty() ? "(none)" : names));
      return;
    }
    // Revoked: what this member wrote of them is committed before another member takes them over.
    self->commit();
    for (int i = 0; i < list->cnt; ++i) self->pending_.erase({list->elems[i].topic, list->elems[i].partition});
    if (cooperative && err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
      check(rd_kafka_incremental_unassign(rk, list), "giving up the revoked partitions");
      self->partitions = self->partitions >= static_cast<std::uint64_t>(list->cnt) ? self->partitions - list->cnt : 0;
    } else {
      rd_kafka_assign(rk, nullptr);
      self->partitions = 0;
    }
    self->log("group " + self->options_.group + " revoked partitions " + (names.empty() ? "(none)" : names));
  }

  static void on_error(rd_kafka_t* rk, int code, const char* reason, void* opaque) {
    auto* self = static_cast<Consumer*>(opaque);
    if (code == RD_KAFKA_RESP_ERR__FATAL) {
      char why[512];
      rd_kafka_fatal_error(rk, why, sizeof(why));
      self->fail("Kafka consumer of " + self->options_.address.to_string() + " failed for good: " + why);
      return;
    }
    // Connection errors repeat with librdkafka's reconnect backoff: the log lets one through per interval.
    if (self->options_.store.log) self->options_.store.log->limited("kafka error", std::string("Kafka: ") + reason);
  }

  const KafkaSinkOptions& options_;
  RecordingStore& store_;
  HeaderDirectory headers_;
  KafkaHandle rk_;
  ZstdDecompressor decompressor_;
  std::string value_;
  std::string message_;
  std::map<std::pair<std::string, std::int32_t>, std::int64_t> pending_;  // next offset to commit
  std::set<std::shared_ptr<Recording>> dirty_;                            // written, not synced
  std::string failure_;
};

Result<std::unique_ptr<KafkaSink>> KafkaSink::create(const KafkaSinkOptions& options) {
  if (options.group.empty()) return Error("a Kafka sink needs a consumer group (--group NAME)");
  std::unique_ptr<KafkaSink> sink(new KafkaSink());
  auto store = RecordingStore::open(options.store);
  if (!store) return store.error();
  sink->store_ = std::move(*store);
  sink->options_ = options;
  sink->consumer_ = std::make_unique<Consumer>(sink->options_, *sink->store_);
  if (auto st = sink->consumer_->make_handle(); !st) return st.error();
  return sink;
}

KafkaSink::~KafkaSink() { consumer_.reset(); }

Status KafkaSink::run() { return consumer_->run(stopping_); }

KafkaSinkStats KafkaSink::stats() const {
  KafkaSinkStats s;
  s.messages = consumer_->messages.load();
  s.batches = consumer_->batches.load();
  s.records = consumer_->records.load();
  s.compressed_bytes = consumer_->compressed_bytes.load();
  s.duplicates = consumer_->duplicates.load();
  s.trailers = consumer_->trailers.load();
  s.rejected = consumer_->rejected.load();
  s.commits = consumer_->commits.load();
  s.partitions = consumer_->partitions.load();
  return s;
}

}  // namespace perfstream
