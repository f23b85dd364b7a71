#include "collector/format/batching_consumer.hpp"

#include <algorithm>

#include "collector/util/clock.hpp"

namespace perfstream {
namespace {
std::uint64_t less_margin(std::uint64_t t) { return t > kWatermarkMarginNs ? t - kWatermarkMarginNs : 0; }
}  // namespace

BatchingConsumer::BatchingConsumer(const BatchLimits& limits, BatchWorker& worker, clockid_t clock,
                                   std::shared_ptr<const ColumnarLayout> layout)
    : limits_(limits), worker_(worker), producer_(worker.add_producer()), clock_(clock), encoder_(std::move(layout), PayloadViews::KeptUntilFlush) {}

BatchingConsumer::~BatchingConsumer() {
  if (!stopped_) worker_.retire(producer_);
}

BatchingConsumer::RingMark& BatchingConsumer::ring(unsigned cpu) {
  auto it = rings_.find(cpu);
  if (it == rings_.end()) it = rings_.emplace(cpu, RingMark{given_, 0}).first;
  return it->second;
}

std::uint64_t BatchingConsumer::watermark() const {
  // No ring: everything this reader had was drained at its latest tick.
  std::uint64_t least = rings_.empty() ? less_margin(last_tick_) : UINT64_MAX;
  for (const auto& [cpu, mark] : rings_) least = std::min(least, mark.complete_below);
  if (encoder_.timed()) least = std::min(least, encoder_.min_time());
  return std::max(least, given_);
}

[[gnu::always_inline]] inline void BatchingConsumer::take(const SampleView& sample) {
  if (const std::size_t widening = encoder_.time_widening_bytes(sample.time); widening != 0) {
    // A time delta wider than any before widens every record's time planes, up to 7 bytes each: close the
    // batch before it when that would pass the limit, so that a batch passes max_bytes by one record at most.
    unchecked_bytes_ = 0;  // the widening is outside most_bytes_added
    if (encoder_.encoded_size_estimate() + widening >= limits_.max_bytes) {
      encoder_.flush_views();
      if (encoder_.encoded_size_estimate() + widening >= limits_.max_bytes) close_batch();
    }
  }
  if (encoder_.empty()) opened_ = std::chrono::steady_clock::now();
  encoder_.add_record(sample.time, sample.cpu, sample.raw);
  if (encoder_.record_count() >= limits_.max_records) {
    close_batch();
    return;
  }
  // The estimate is looked at only when the records since it was last could have taken it to max_bytes.
  if (const std::size_t most = BatchEncoder::most_bytes_added(sample.raw.size()); most < unchecked_bytes_) {
    unchecked_bytes_ -= most;
    return;
  }
  // Records not read yet count their columns as a guess and their tails whole: read them, so that the batch
  // closes on the exact size, where a batch read one record at a time would close, and so that what is left
  // is exact (a guess could grow once read, outside the bounds counted from here).
  encoder_.flush_views();
  const std::size_t estimate = encoder_.encoded_size_estimate();
  if (estimate >= limits_.max_bytes) {
    close_batch();
    return;
  }
  unchecked_bytes_ = limits_.max_bytes - estimate;
}

void BatchingConsumer::on_sample(unsigned cpu, const SampleView& sample) {
  (void)cpu;
  take(sample);
}

void BatchingConsumer::on_samples(unsigned cpu, std::span<const SampleView> samples) {
  (void)cpu;
  for (const SampleView& sample : samples) take(sample);
}

void BatchingConsumer::on_lost(unsigned cpu, const LostView& lost) {
  unchecked_bytes_ = 0;  // a notice's bytes are outside most_bytes_added
  if (encoder_.empty()) opened_ = std::chrono::steady_clock::now();
  encoder_.add_lost(lost.has_sample_id ? lost.cpu : cpu, lost.lost, lost.time, 0);
  lost_in_batch_ += lost.lost;
}

void BatchingConsumer::on_pass_begin(unsigned cpu) { ring(cpu).pass_began = clock_ns(clock_); }

void BatchingConsumer::on_pass_end(unsigned cpu) {
  encoder_.flush_views();  // the pass's views go after this call
  RingMark& mark = ring(cpu);
  if (mark.pass_began != 0) {
    mark.complete_below = std::max(mark.complete_below, less_margin(mark.pass_began));
    mark.pass_began = 0;
  }
  close_if_aged();
  given_ = watermark();
  worker_.advance(producer_, given_);
}

void BatchingConsumer::on_ring_opened(unsigned cpu) { ring(cpu); }

void BatchingConsumer::on_ring_closed(unsigned cpu) { rings_.erase(cpu); }

void BatchingConsumer::on_tick() {
  last_tick_ = clock_ns(clock_);
  close_if_aged();
  given_ = watermark();
  worker_.advance(producer_, given_);
}

void BatchingConsumer::on_stop() {
  if (!encoder_.empty()) close_batch();
  stopped_ = true;
  worker_.retire(producer_);
}

// Old enough, or holding the recording's watermark back while other reader threads write far ahead of it
// (BatchWorker: max_watermark_lag).
void BatchingConsumer::close_if_aged() {
  const bool asked = worker_.flush_requested(producer_);
  if (!encoder_.empty() && (asked || std::chrono::steady_clock::now() - opened_ >= limits_.max_age)) close_batch();
}

void BatchingConsumer::close_batch() {
  encoder_.finish_unstamped(encoded_);
  batch_.records = encoder_.record_count();
  batch_.lost_notices = encoder_.lost_count();
  batch_.lost = lost_in_batch_;
  batch_.encoded_bytes = encoded_.size();
  batch_.first_time_ns = encoder_.first_time();
  batch_.max_time_ns = encoder_.max_time();
  encoder_.reset();
  unchecked_bytes_ = 0;
  lost_in_batch_ = 0;
  given_ = watermark();
  worker_.submit(producer_, batch_, encoded_, given_);
}

}  // namespace perfstream
