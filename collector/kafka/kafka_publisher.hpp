// KafkaPublisher: the collector's end of `perfstream stream --to kafka://BROKERS/TOPIC`: a SpooledSender
// (transport/spooled_sender.hpp: the contract it keeps, as the socket stream does) that publishes its
// spool to Kafka.
//
// Messages (the contract a consumer relies on; docs/SCALE.md has the table):
//   TOPIC          key = the host name, so one host's batches share a partition and keep their order
//                  (and with it each CPU's); value = the compressed batch, byte for byte the zstd frame a
//                  trace file holds (never compressed again: compression.type stays none).
//                  Headers: perfstream-type (batch | trailer), perfstream-format (trace format version),
//                  perfstream-schema (id of the recording's TraceHeader), perfstream-collector (collector
//                  id: host and recording id), perfstream-sequence and perfstream-records (batches).
//                  The trailer (a zstd frame of TraceTrailer) follows the last batch.
//   TOPIC.headers  key = the schema id, value = the TraceHeader (protobuf, unencoded), with the same
//                  headers; the schema id is the first 16 bytes of the value's SHA-256, in hex. Published,
//                  and delivered, before the first batch; a compacted topic keeps it as long as needed.
//
// Delivery: idempotent producer with acks=all by default. A batch leaves the spool only when its delivery
// report says the brokers have it; a failed report (a broker outage longer than message.timeout.ms, a
// fatal producer error) puts the unreported batches back to be produced again (a fatal error makes a new
// producer first). A batch may so reach the topic twice, never zero times; the sink stores each
// sequence once. A full spool refuses batches exactly as the socket stream's does (Spool::append_batch).
//
// Threads: write_batch from any thread; start/finish/status from the controlling thread; librdkafka's
// callbacks run on the publisher's thread, inside its poll.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "collector/kafka/kafka_config.hpp"
#include "collector/transport/spool.hpp"
#include "collector/transport/spooled_sender.hpp"
#include "collector/util/log.hpp"
#include "perfstream.pb.h"

namespace perfstream {

struct KafkaPublisherOptions {
  KafkaAddress address;
  KafkaProperties properties;  // the user's librdkafka settings, passed through
  std::string spool_dir;
  std::uint64_t spool_bytes = 1ull << 30;
  std::uint32_t window = 32;  // batches handed to librdkafka and not yet reported (each held in memory)
  Log* log = nullptr;  // not owned; called from the publisher's thread; null: nothing is logged
};

// connected: a broker answered since the last "all brokers down"; acked_through: every batch below is on
// the brokers; pending: spooled, not reported delivered; error: why publishing stopped for good (the topic
// refuses our batches, or the client would not start).
struct KafkaPublisherStatus : SenderStatus {
  std::uint64_t delivered = 0;        // delivery reports that said yes (resends included)
  std::uint64_t failed = 0;           // delivery reports that said no: produced again
  std::uint64_t producers = 0;        // producer instances made (more than 1 after a fatal error)
};

// The id of a TraceHeader as published: hex of the first 16 bytes of SHA-256 of its serialization.
std::string kafka_schema_id(const std::string& serialized_header);

class KafkaPublisher : public SpooledSender {
 public:
  static Result<std::unique_ptr<KafkaPublisher>> create(const KafkaPublisherOptions& options, v1::TraceHeader header,
                                                        std::string collector_id);
  ~KafkaPublisher() override;

  Status write_batch(const EncodedBatch& batch) override;
  // Starts the Kafka client and the publisher's thread (create() only checks the settings, so that a
  // recorder can drop its privileges while it is still single-threaded).
  // An error that start() returns is also kept as status().error.
  Status start() override;
  // See Spool::give_to; before start().
  Status give_spool_to(uid_t uid, gid_t gid) override { return spool_->give_to(uid, gid); }
  // Waits up to `timeout` until every batch is delivered, then publishes the trailer and waits for it.
  // False on timeout, or when `give_up` (polled every 50 ms) says to stop waiting: the undelivered
  // batches stay in the spool directory. An error when the trailer cannot be compressed, when the client
  // never started, or when publishing stopped for good (status().error).
  Result<bool> finish(const v1::TraceTrailer& trailer, std::chrono::milliseconds timeout,
                      const std::function<bool()>& give_up = {}) override;
  KafkaPublisherStatus status() const;
  SenderStatus sender_status() const override { return status(); }
  std::string describe_progress() const override;

 private:
  class Producer;
  KafkaPublisher() = default;

  std::unique_ptr<Spool> spool_;
  std::unique_ptr<Producer> producer_;
  std::thread thread_;
  std::optional<Error> start_error_;
};

}  // namespace perfstream
