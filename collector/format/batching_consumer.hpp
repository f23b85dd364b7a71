// BatchingConsumer: a RecordConsumer that packs a reader thread's records into batches, compresses each
// into one zstd frame, and hands it to a BatchSink (a trace file, a stream). One per reader thread.
//
// A batch closes when it reaches max_bytes (encoded) or max_records, when its oldest record is max_age
// old (checked on every pass and on the reader's timer tick), and at stop. Payloads are copied once, into
// the batch's payload column, before the pass ends (views die with the pass).
// A sink that refuses a batch loses it: that is counted (dropped_batches, dropped_records) and the next
// batch carries a collector-sourced LostNotice with the count, so the loss is in the recording itself.
#pragma once

#include <chrono>
#include <optional>
#include <cstdint>
#include <string>

#include "collector/format/batch_encoder.hpp"
#include "collector/format/batch_sink.hpp"
#include "collector/format/batch_worker.hpp"
#include "collector/format/zstd_codec.hpp"
#include "collector/read/record_consumer.hpp"

namespace perfstream {

struct BatchLimits {
  std::size_t max_bytes = 1 << 20;
  std::uint32_t max_records = 65536;
  std::chrono::milliseconds max_age{1000};
};

class BatchingConsumer : public RecordConsumer {
 public:
  // Compresses and writes each batch on the reader thread.
  BatchingConsumer(const BatchLimits& limits, ZstdCompressor compressor, BatchSink& sink, PipelineCounters& counters);
  // Hands each encoded batch to `worker`, which compresses and writes it on its own thread (the recorder's
  // way: the reader goes back to its rings at once). Refused batches are reported by the worker.
  BatchingConsumer(const BatchLimits& limits, BatchWorker& worker, PipelineCounters& counters);
  ~BatchingConsumer() override;

  void on_sample(unsigned cpu, const SampleView& sample) override;
  void on_lost(unsigned cpu, const LostView& lost) override;
  void on_pass_end(unsigned cpu) override;
  void on_tick() override;
  void on_stop() override;

  // The first error the sink returned, if any.
  const std::string& sink_error() const { return sink_error_; }

 private:
  void close_batch();

  BatchLimits limits_;
  std::optional<ZstdCompressor> compressor_;  // synchronous mode
  BatchSink* sink_ = nullptr;                  // synchronous mode
  BatchWorker* worker_ = nullptr;              // worker mode
  PipelineCounters& counters_;
  BatchEncoder encoder_;
  std::chrono::steady_clock::time_point opened_;
  std::uint64_t lost_in_batch_ = 0;
  std::uint64_t dropped_to_report_ = 0;  // records of refused batches, not yet noted in a batch
  std::string encoded_;
  EncodedBatch batch_;
  std::string sink_error_;
};

}  // namespace perfstream
