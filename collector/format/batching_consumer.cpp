#include "collector/format/batching_consumer.hpp"

#include <time.h>

namespace perfstream {

BatchingConsumer::BatchingConsumer(const BatchLimits& limits, ZstdCompressor compressor, BatchSink& sink,
                                   PipelineCounters& counters)
    : limits_(limits), compressor_(std::move(compressor)), sink_(&sink), counters_(counters) {}

BatchingConsumer::BatchingConsumer(const BatchLimits& limits, BatchWorker& worker, PipelineCounters& counters)
    : limits_(limits), worker_(&worker), counters_(counters) {}

BatchingConsumer::~BatchingConsumer() = default;

void BatchingConsumer::on_sample(unsigned cpu, const SampleView& sample) {
  (void)cpu;
  if (encoder_.empty()) opened_ = std::chrono::steady_clock::now();
  encoder_.add_record(sample.time, sample.cpu, sample.raw);
  if (encoder_.record_count() >= limits_.max_records || encoder_.encoded_size_estimate() >= limits_.max_bytes) {
    close_batch();
  }
}

void BatchingConsumer::on_lost(unsigned cpu, const LostView& lost) {
  if (encoder_.empty()) opened_ = std::chrono::steady_clock::now();
  encoder_.add_lost(lost.has_sample_id ? lost.cpu : cpu, lost.lost, lost.time, 0);
  lost_in_batch_ += lost.lost;
}

void BatchingConsumer::on_pass_end(unsigned cpu) {
  (void)cpu;
  if (!encoder_.empty() && std::chrono::steady_clock::now() - opened_ >= limits_.max_age) close_batch();
}

void BatchingConsumer::on_tick() { on_pass_end(0); }

void BatchingConsumer::on_stop() {
  if (!encoder_.empty() || dropped_to_report_ != 0) close_batch();
}

void BatchingConsumer::close_batch() {
  const std::uint64_t reporting = dropped_to_report_;
  if (dropped_to_report_ != 0) {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    encoder_.add_lost(0, dropped_to_report_, static_cast<std::uint64_t>(now.tv_sec) * 1000000000ull + now.tv_nsec, 1);
    lost_in_batch_ += dropped_to_report_;
    dropped_to_report_ = 0;
  }
  const std::uint64_t sequence = counters_.next_sequence.fetch_add(1, std::memory_order_relaxed);
  encoder_.finish(sequence, encoded_);
  batch_.sequence = sequence;
  batch_.records = encoder_.record_count();
  batch_.lost_notices = encoder_.lost_count();
  batch_.lost = lost_in_batch_;
  batch_.encoded_bytes = encoded_.size();
  batch_.first_time_ns = encoder_.first_time();
  encoder_.reset();
  lost_in_batch_ = 0;

  if (worker_ != nullptr) {
    worker_->submit(batch_, encoded_);
    return;
  }
  Status st = compressor_->compress(encoded_, batch_.compressed);
  if (st) st = sink_->write_batch(batch_);
  if (!st) {
    if (sink_error_.empty()) sink_error_ = st.error().message();
    counters_.dropped_batches.fetch_add(1, std::memory_order_relaxed);
    counters_.dropped_records.fetch_add(batch_.records, std::memory_order_relaxed);
    dropped_to_report_ += batch_.records + reporting;  // the notice this batch carried is lost with it
    return;
  }
  counters_.batches.fetch_add(1, std::memory_order_relaxed);
  counters_.records.fetch_add(batch_.records, std::memory_order_relaxed);
  counters_.encoded_bytes.fetch_add(batch_.encoded_bytes, std::memory_order_relaxed);
  counters_.compressed_bytes.fetch_add(batch_.compressed.size(), std::memory_order_relaxed);
}

}  // namespace perfstream
