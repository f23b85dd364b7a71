// BatchSink: where finished, compressed batches go: a trace file, a socket to a sink, later Kafka. The
// batch is the unit all of them carry, so a recording can be sent anywhere without re-encoding.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "collector/util/result.hpp"

namespace perfstream {

struct EncodedBatch {
  std::uint64_t sequence = 0;
  std::uint32_t records = 0;
  std::uint32_t lost_notices = 0;
  std::uint64_t lost = 0;            // samples lost (kernel and collector) noted in this batch
  std::uint64_t encoded_bytes = 0;   // protobuf bytes before compression
  std::uint64_t first_time_ns = 0;
  std::uint64_t max_time_ns = 0;     // the latest time of its records and timed lost notices
  std::string compressed;            // one zstd frame holding the Batch message
};

class BatchSink {
 public:
  virtual ~BatchSink() = default;
  // Takes one batch. Thread-safe: every reader thread's batcher calls it. An error means the batch was not
  // kept; the caller counts it as dropped.
  virtual Status write_batch(const EncodedBatch& batch) = 0;
};

// Counters of the encode/compress/write pipeline, shared by every batcher of a run.
struct PipelineCounters {
  std::atomic<std::uint64_t> batches{0};
  std::atomic<std::uint64_t> records{0};
  std::atomic<std::uint64_t> encoded_bytes{0};
  std::atomic<std::uint64_t> compressed_bytes{0};
  std::atomic<std::uint64_t> dropped_batches{0};   // the sink refused them
  std::atomic<std::uint64_t> dropped_records{0};
};

}  // namespace perfstream
