#include "collector/format/batch_worker.hpp"

#include <time.h>

#include <algorithm>
#include <limits>

#include "collector/format/batch_encoder.hpp"
#include "collector/util/clock.hpp"

namespace perfstream {
namespace {
constexpr std::uint64_t kRetired = std::numeric_limits<std::uint64_t>::max();
}  // namespace

BatchWorker::BatchWorker(ZstdCompressor compressor, BatchSink& sink, PipelineCounters& counters,
                         const BatchWorkerOptions& options)
    : compressor_(std::move(compressor)), sink_(sink), counters_(counters), options_(options) {
  options_.max_queued = std::max<std::size_t>(1, options_.max_queued);
  thread_ = std::thread([this] { run(); });
}

BatchWorker::~BatchWorker() { finish(); }

BatchWorker::Producer BatchWorker::add_producer() {
  std::lock_guard<std::mutex> lock(mutex_);
  producers_.push_back(std::make_unique<std::atomic<std::uint64_t>>(0));
  flush_requests_.push_back(std::make_unique<std::atomic<bool>>(false));
  return producers_.size() - 1;
}

void BatchWorker::advance(Producer producer, std::uint64_t watermark) {
  std::atomic<std::uint64_t>& slot = *producers_[producer];
  // Never backwards: a record that came in below an earlier promise is late, not a reason to take it back.
  if (watermark > slot.load(std::memory_order_relaxed)) slot.store(watermark, std::memory_order_release);
}

void BatchWorker::retire(Producer producer) {
  producers_[producer]->store(kRetired, std::memory_order_release);
  std::lock_guard<std::mutex> lock(mutex_);
  not_empty_.notify_one();
}

bool BatchWorker::flush_requested(Producer producer) {
  std::atomic<bool>& asked = *flush_requests_[producer];
  return asked.load(std::memory_order_relaxed) && asked.exchange(false, std::memory_order_acq_rel);
}

std::uint64_t BatchWorker::least_watermark() const {
  std::uint64_t least = kRetired;
  for (const auto& p : producers_) least = std::min(least, p->load(std::memory_order_acquire));
  return least;
}

void BatchWorker::submit(Producer producer, const EncodedBatch& batch, std::string& encoded,
                         std::uint64_t watermark) {
  std::unique_lock<std::mutex> lock(mutex_);
  not_full_.wait(lock, [this] { return queue_.size() < options_.max_queued || finishing_; });
  Job job;
  job.batch = batch;
  job.batch.compressed.clear();
  job.encoded.swap(encoded);
  // The producer's promise covers the records of this batch, so it is published only now, under the mutex
  // and with the batch about to be queued: published before (while this producer waited for room in a
  // full queue), another producer's batch could be stamped with it and written first, and a reader would
  // release records past this batch's before reading them. Under the mutex: every batch holding a record
  // below the stamp was queued before this one.
  advance(producer, watermark);
  stamped_watermark_ = std::max(stamped_watermark_, least_watermark());
  if (batch.records > 0) submitted_max_time_ = std::max(submitted_max_time_, batch.max_time_ns);
  const auto lag = static_cast<std::uint64_t>(std::chrono::nanoseconds(options_.max_watermark_lag).count());
  for (std::size_t p = 0; p < producers_.size(); ++p) {
    const std::uint64_t mark = producers_[p]->load(std::memory_order_acquire);
    if (mark != kRetired && mark + lag < submitted_max_time_) flush_requests_[p]->store(true, std::memory_order_relaxed);
  }
  job.watermark = stamped_watermark_;
  if (!spare_.empty()) {
    encoded.swap(spare_.back());
    spare_.pop_back();
  }
  encoded.clear();
  queue_.push_back(std::move(job));
  not_empty_.notify_one();
}

void BatchWorker::wait_idle() {
  std::unique_lock<std::mutex> lock(mutex_);
  idle_.wait(lock, [this] { return (queue_.empty() && !delivering_) || !thread_.joinable(); });
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
  std::lock_guard<std::mutex> lock(mutex_);
  idle_.notify_all();
}

std::optional<Error> BatchWorker::first_error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return first_error_;
}

// An empty batch carrying a watermark that moved past records already written, or nothing.
std::optional<BatchWorker::Job> BatchWorker::idle_watermark_job() {
  const std::uint64_t least = least_watermark();
  if (least == kRetired || least <= stamped_watermark_) return std::nullopt;
  if (!written_any_time_ || written_max_time_ < written_watermark_) return std::nullopt;  // nothing held back
  if (least <= written_max_time_) return std::nullopt;  // wait until it can release all that was written
  stamped_watermark_ = least;
  Job job;
  job.watermark = least;
  return job;
}

void BatchWorker::run() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      const bool woken = not_empty_.wait_for(lock, options_.idle_interval, [this] { return !queue_.empty() || finishing_; });
      if (!woken) {
        auto idle_job = idle_watermark_job();
        if (!idle_job) continue;
        job = std::move(*idle_job);
      } else {
        if (queue_.empty()) break;
        job = std::move(queue_.front());
        queue_.pop_front();
        not_full_.notify_one();
      }
      delivering_ = true;
    }
    deliver(job);
    std::lock_guard<std::mutex> lock(mutex_);
    delivering_ = false;
    if (spare_.size() < options_.max_queued + 2) spare_.push_back(std::move(job.encoded));
    if (queue_.empty()) idle_.notify_all();
  }
  report_drops();
}

bool BatchWorker::write(Job& job) {
  // A watermark-only batch has an empty body: every field of an empty Batch is its default.
  append_batch_stamp(job.encoded, next_sequence_, job.watermark);
  job.batch.sequence = next_sequence_;
  job.batch.encoded_bytes = job.encoded.size();
  Status st = compressor_.compress(job.encoded, job.batch.compressed);
  if (st) st = sink_.write_batch(job.batch);
  // A refused sequence number is used up all the same: a stream stands in an empty batch for it.
  ++next_sequence_;
  if (!st) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!first_error_) first_error_ = st.error();
    return false;
  }
  written_watermark_ = std::max(written_watermark_, job.watermark);
  if (job.batch.records > 0 || job.batch.lost_notices > 0) {
    if (!written_any_time_ || job.batch.max_time_ns > written_max_time_) written_max_time_ = job.batch.max_time_ns;
    written_any_time_ = true;
  }
  return true;
}

void BatchWorker::deliver(Job& job) {
  report_drops();
  if (!write(job)) {
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
  BatchEncoder encoder;
  encoder.add_lost(0, dropped_to_report_, clock_ns(CLOCK_MONOTONIC), 1);
  Job notice;
  notice.batch.lost_notices = 1;
  notice.batch.lost = dropped_to_report_;
  notice.batch.first_time_ns = encoder.first_time();
  notice.batch.max_time_ns = encoder.max_time();
  encoder.finish_unstamped(notice.encoded);
  notice.watermark = written_watermark_;
  if (write(notice)) {
    dropped_to_report_ = 0;
    counters_.batches.fetch_add(1, std::memory_order_relaxed);
  } else {
    counters_.dropped_batches.fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace perfstream
