// KafkaSink: `perfstream sink --from kafka://BROKERS/TOPIC --group NAME -d DIR`: consumes the batches that
// KafkaPublisher publishes (see kafka_publisher.hpp for the messages) as a member of consumer group NAME,
// and writes them into a RecordingStore: one recording per collector, DIR/<host>-<recording>.data.
//
// Exactly once: offsets are committed only after the batches before them are written and synced to disk
// (every commit_interval, and before partitions are given up in a rebalance); after a crash the group
// reads again from the last commit, and the store drops every batch sequence it already holds. A batch
// of an unknown recording needs its TraceHeader: it is looked up by schema id in TOPIC.headers (read
// from its beginning by a second, group-less consumer) and checked against the id before use.
//
// Bad messages (headers missing or wrong, a value that does not decompress or parse, a header that cannot
// be found) are skipped, logged with topic, partition, offset and cause, and counted (rejected): one
// bad producer must not stop a fleet's sink. A failing disk is different: run() returns the error and
// commits nothing it could not write.
//
// Threads: run() on one thread until stop() (from any thread); summaries() and stats() from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "collector/kafka/kafka_config.hpp"
#include "collector/transport/recording_store.hpp"

namespace perfstream {

struct KafkaSinkOptions {
  KafkaAddress address;
  std::string group;
  KafkaProperties properties;  // the user's librdkafka settings, passed through
  RecordingStoreOptions store;  // the directory, rotation, and the log the sink writes to as well
  std::size_t max_batch = 64u << 20;  // largest decompressed batch accepted (no zstd bombs)
  std::chrono::milliseconds commit_interval{1000};
  std::chrono::milliseconds header_timeout{30000};  // how long to look for a recording's TraceHeader
};

struct KafkaSinkStats {
  std::uint64_t messages = 0;     // consumed from TOPIC
  std::uint64_t batches = 0;      // stored
  std::uint64_t records = 0;      // in the batches stored
  std::uint64_t compressed_bytes = 0;  // the batches stored, as written (see RecordingSummary)
  std::uint64_t duplicates = 0;   // a sequence already stored: dropped
  std::uint64_t trailers = 0;
  std::uint64_t rejected = 0;     // bad messages, skipped
  std::uint64_t commits = 0;      // offset commits that succeeded
  std::uint64_t partitions = 0;   // assigned to this member now
};

class KafkaSink {
 public:
  static Result<std::unique_ptr<KafkaSink>> create(const KafkaSinkOptions& options);
  ~KafkaSink();

  // Consumes until stop(); then commits what is written and leaves the group. An error: the disk failed
  // or the consumer failed for good.
  Status run();
  void stop() { stopping_ = true; }
  std::vector<RecordingSummary> summaries() const { return store_->summaries(); }
  KafkaSinkStats stats() const;

 private:
  class Consumer;
  KafkaSink() = default;

  KafkaSinkOptions options_;
  std::unique_ptr<RecordingStore> store_;
  std::unique_ptr<Consumer> consumer_;
  std::atomic<bool> stopping_{false};
};

}  // namespace perfstream
