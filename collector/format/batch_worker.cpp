#include "collector/format/batch_worker.hpp"

#include <time.h>

#include "collector/format/batch_encoder.hpp"

namespace perfstream {

BatchWorker::BatchWorker(ZstdCompressor compressor, BatchSink& sink, PipelineCounters& counters, std::size_t max_queued)
    : compressor_(std::move(compressor)), sink_(sink), counters_(counters), max_queued_(std::max<std::size_t>(1, max_queued)) {
  thread_ = std::thread([this] { run(); });
}

BatchWorker::~BatchWorker() { finish(); }

void BatchWorker::submit(const EncodedBatch& batch, std::string& encoded) {
  std::unique_lock<std::mutex> lock(mutex_);
  not_full_.wait(lock, [this] { return queue_.size() < max_queued_ || finishing_; });
  Job job;
  job.batch = batch;
  job.batch.compressed.clear();
  job.encoded.swap(encoded);
  if (!spare_.empty()) {
    encoded.swap(spare_.back());
    spare_.pop_back();
  }
  encoded.clear();
  queue_.push_back(std::move(job));
  not_empty_.notify_one();
}

void BatchWorker::finish() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (finishing_ && !thread_.joinable()) return;
    finishing_ = true;
    not_empty_.notify_all();
    not_full_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

std::string BatchWorker::first_error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return first_error_;
}

void BatchWorker::run() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      not_empty_.wait(lock, [this] { return !queue_.empty() || finishing_; });
      if (queue_.empty()) break;
      job = std::move(queue_.front());
      queue_.pop_front();
      not_full_.notify_one();
    }
    deliver(job);
    std::lock_guard<std::mutex> lock(mutex_);
    if (spare_.size() < max_queued_ + 2) spare_.push_back(std::move(job.encoded));
  }
  report_drops();
}

void BatchWorker::deliver(Job& job) {
  report_drops();
  Status st = compressor_.compress(job.encoded, job.batch.compressed);
  if (st) st = sink_.write_batch(job.batch);
  if (!st) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (first_error_.empty()) first_error_ = st.error().message();
    }
    counters_.dropped_batches.fetch_add(1, std::memory_order_relaxed);
    counters_.dropped_records.fetch_add(job.batch.records, std::memory_order_relaxed);
    dropped_to_report_ += job.batch.records;
    return;
  }
  counters_.batches.fetch_add(1, std::memory_order_relaxed);
  counters_.records.fetch_add(job.batch.records, std::memory_order_relaxed);
  counters_.encoded_bytes.fetch_add(job.batch.encoded_bytes, std::memory_order_relaxed);
  counters_.compressed_bytes.fetch_add(job.batch.compressed.size(), std::memory_order_relaxed);
}

// Writes a batch holding only a COLLECTOR loss notice for what the sink refused so far.
void BatchWorker::report_drops() {
  if (dropped_to_report_ == 0) return;
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  BatchEncoder encoder;
  encoder.add_lost(0, dropped_to_report_, static_cast<std::uint64_t>(now.tv_sec) * 1000000000ull + now.tv_nsec, 1);
  EncodedBatch notice;
  notice.sequence = counters_.next_sequence.fetch_add(1, std::memory_order_relaxed);
  notice.lost_notices = 1;
  notice.lost = dropped_to_report_;
  std::string encoded;
  encoder.finish(notice.sequence, encoded);
  notice.encoded_bytes = encoded.size();
  if (!compressor_.compress(encoded, notice.compressed)) return;
  if (sink_.write_batch(notice)) {
    dropped_to_report_ = 0;
    counters_.batches.fetch_add(1, std::memory_order_relaxed);
  } else {
    // This sequence number will never reach the sink; a stream's sink would wait for it forever, so the
    // stream client stands in an empty batch for any refused sequence (see StreamClient).
    counters_.dropped_batches.fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace perfstream
