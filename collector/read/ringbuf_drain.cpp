#include "collector/read/ringbuf_drain.hpp"

#include "collector/util/clock.hpp"

namespace perfstream {
namespace {

void add(std::atomic<std::uint64_t>& counter, std::uint64_t n) {
  if (n != 0) counter.fetch_add(n, std::memory_order_relaxed);
}

}  // namespace

DrainResult drain_ringbuf(BpfRingbuf& ring, const SampleTiming& timing, RecordConsumer& consumer,
                          CpuCounters& counters) {
  DrainResult result;
  std::uint64_t samples = 0, sample_bytes = 0, discarded = 0;
  consumer.on_pass_begin(kRingbufCpu);
  {
    std::uint64_t drained_at = clock_ns(timing.clock);
    BpfRingbuf::Pass pass = ring.begin_pass();
    const std::uint64_t fill = pass.fill_at_start();
    counters.fill_bytes.store(fill, std::memory_order_relaxed);
    if (fill > counters.fill_high_water.load(std::memory_order_relaxed)) {
      counters.fill_high_water.store(fill, std::memory_order_relaxed);
    }
    SampleView sample;
    sample.cpu = kRingbufCpu;
    // What one pass may read before it commits: records submitted while it runs are taken into it (extend())
    // up to this much, so that consumer_pos stays behind a busy producer (no wakeups) without holding back
    // more than a quarter of the ring from it.
    const std::uint64_t budget = ring.data_size() / 4;
    do {
      while (auto record = pass.next()) {
        sample.raw = record->payload;
        if (!payload_time(timing, record->payload, sample.time)) sample.time = drained_at;
        ++samples;
        sample_bytes += record->payload.size();
        consumer.on_sample(kRingbufCpu, sample);
      }
      // Records taken in by extend() were submitted after drained_at was read: read it again, so that a drain
      // time is never earlier than its record.
      if (timing.fields.empty()) drained_at = clock_ns(timing.clock);
    } while (pass.consumed() < budget && pass.extend());
    discarded = pass.discarded();
    result.records = samples + discarded;
    if (pass.corruption()) {
      result.corrupt = true;
      add(counters.corrupt, 1);
      add(counters.corrupt_bytes, pass.corruption()->bytes_skipped);
      consumer.on_corruption(kRingbufCpu, *pass.corruption());
    }
    consumer.on_pass_end(kRingbufCpu);
    result.bytes = pass.consumed();
    // The pass commits consumer_pos here, after the consumer is done with its views.
  }
  add(counters.passes, 1);
  add(counters.samples, samples);
  add(counters.sample_bytes, sample_bytes);
  add(counters.ring_bytes, result.bytes);
  add(counters.discarded, discarded);
  return result;
}

}  // namespace perfstream
