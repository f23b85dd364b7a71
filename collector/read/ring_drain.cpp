#include "collector/read/ring_drain.hpp"

#include <array>
#include <cstring>

#include "collector/util/clock.hpp"

namespace perfstream {
namespace {

void add(std::atomic<std::uint64_t>& counter, std::uint64_t n) {
  if (n != 0) counter.fetch_add(n, std::memory_order_relaxed);
}

}  // namespace

DrainResult drain_ring(PerfRing& ring, unsigned cpu, const RecordDecoder& decoder, RecordConsumer& consumer,
                       CpuCounters& counters, const SampleTiming& timing) {
  const bool fill_time = (decoder.sample_type() & PERF_SAMPLE_TIME) == 0;
  const bool fill_cpu = (decoder.sample_type() & PERF_SAMPLE_CPU) == 0;
  std::uint64_t drained_at = 0;  // read once per pass, when first needed
  auto drain_time = [&] {
    if (drained_at == 0) drained_at = clock_ns(timing.clock);
    return drained_at;
  };
  DrainResult result;
  // Samples go to the consumer a block at a time (RecordConsumer::on_samples); the block is handed over
  // before any other call, so the consumer sees the ring's order.
  constexpr std::size_t kBlock = 32;
  std::array<SampleView, kBlock> block;
  std::size_t blocked = 0;
  auto hand_over = [&] {
    if (blocked != 0) consumer.on_samples(cpu, std::span<const SampleView>(block.data(), blocked));
    blocked = 0;
  };
  std::uint64_t samples = 0, sample_bytes = 0, lost = 0, lost_notices = 0, malformed = 0, other = 0;
  consumer.on_pass_begin(cpu);
  {
    PerfRing::Pass pass = ring.begin_pass();
    const std::uint64_t fill = pass.fill_at_start();
    counters.fill_bytes.store(fill, std::memory_order_relaxed);
    if (fill > counters.fill_high_water.load(std::memory_order_relaxed)) {
      counters.fill_high_water.store(fill, std::memory_order_relaxed);
    }
    while (auto record = pass.next()) {
      ++result.records;
      result.bytes += record->bytes.size();
      // A sample, the common case, is decoded straight into the block (RecordDecoder::decode_sample); any
      // other record field by field, and a sample found that way is put into the block too.
      SampleView& slot = block[blocked];
      if (!decoder.decode_sample(record->bytes, slot)) {
        DecodedRecord decoded;
        decoder.decode_slow(record->bytes, decoded);
        switch (decoded.kind) {
          case RecordKind::Sample:
            slot = decoded.sample;
            break;
          case RecordKind::Lost:
          case RecordKind::LostSamples:
            if (decoded.lost.lost != 0) {
              hand_over();
              lost += decoded.lost.lost;
              ++lost_notices;
              if (fill_cpu) decoded.lost.cpu = cpu;
              if (fill_time) decoded.lost.time = drain_time();
              consumer.on_lost(cpu, decoded.lost);
            }
            continue;
          case RecordKind::Other:
            ++other;
            continue;
          case RecordKind::Malformed:
            ++malformed;
            continue;
        }
      }
      ++samples;
      sample_bytes += slot.raw.size();
      if (fill_cpu) slot.cpu = cpu;
      if (fill_time && !payload_time(timing, slot.raw, slot.time)) slot.time = drain_time();
      if (++blocked == kBlock) hand_over();
    }
    hand_over();
    if (pass.corruption()) {
      result.corrupt = true;
      add(counters.corrupt, 1);
      add(counters.corrupt_bytes, pass.corruption()->bytes_skipped);
      consumer.on_corruption(cpu, *pass.corruption());
    }
    consumer.on_pass_end(cpu);
    result.bytes += pass.corruption() ? pass.corruption()->bytes_skipped : 0;
    // The pass commits data_tail here, after the consumer is done with its views.
  }
  add(counters.passes, 1);
  add(counters.samples, samples);
  add(counters.sample_bytes, sample_bytes);
  add(counters.ring_bytes, result.bytes);
  add(counters.lost, lost);
  add(counters.lost_notices, lost_notices);
  add(counters.malformed, malformed);
  add(counters.other_records, other);
  return result;
}

}  // namespace perfstream
