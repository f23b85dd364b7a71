// Ring drain and decode on synthetic rings (no kernel): how fast one core walks a full perf ring.
//
// The ring is a FakeKernelRing (the kernel's mmap layout) of 4 MiB, filled once with as many samples of one
// payload size as fit, laid out byte for byte as the kernel writes PERF_RECORD_SAMPLE (TIME | CPU | RAW).
// Draining never changes the data area, so each iteration "refills" the ring by putting data_tail back where
// the records start: the same records are drained again, and the refill costs one store (no PauseTiming).
// One iteration is one pass over the whole ring, so items per iteration = records in the ring.
//
// Arguments: payload = bytes the BPF program emitted per sample (the ring record is 28 bytes of header and
// fields more, rounded up to 8: 36 gives exactly 64-byte ring records); wrap = 1 starts the records half-way
// through the data area so the pass runs over its end, and one record straddles it (assembled in the
// ring's scratch buffer, as the kernel's layout requires).
//
// What this does not measure: the records were written by this core, so they come from its own caches
// (a 4 MiB ring stays in this machine's 32 MiB L3); under a real kernel they are written by another CPU and arrive through the
// cache-coherence protocol. `perfstream bench` measures that case.
//
//   BM_RingDrain_Records  PerfRing::Pass::next() alone: the ring protocol (bounds checks, wrap, tail).
//   BM_RingDrain_Decode   drain_ring(): the pass, RecordDecoder::decode, per-CPU counters and a consumer
//                         call per record (a counting consumer that does nothing else).
#include <benchmark/benchmark.h>
#include <linux/perf_event.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <utility>

#include "bench/bench_records.hpp"
#include "collector/decode/record_decoder.hpp"
#include "collector/kernel/perf_ring.hpp"
#include "collector/read/record_consumer.hpp"
#include "collector/read/ring_drain.hpp"
#include "collector/read/ring_stats.hpp"
#include "testing/fake_ring.hpp"

namespace perfstream::bench {
namespace {

using testing::FakeKernelRing;

constexpr std::size_t kRingBytes = std::size_t{4} << 20;
constexpr std::uint64_t kSampleType = PERF_SAMPLE_TIME | PERF_SAMPLE_CPU | PERF_SAMPLE_RAW;

// Ring bytes of one sample whose BPF program emitted `payload` bytes.
std::size_t ring_record_size(std::size_t payload) { return FakeKernelRing::sample(0, 0, Bytes(payload)).size(); }

// A 4 MiB ring full of samples whose BPF program emitted `payload` bytes each, all from CPU 1.
std::unique_ptr<FullRing> sized_ring(std::size_t payload, bool wrap) {
  std::uint64_t start = 0;
  if (wrap) {
    // Half-way, nudged so that the data area's end falls inside a record rather than between two.
    const std::size_t record_size = ring_record_size(payload);
    start = kRingBytes / 2 + 8;
    while ((kRingBytes - start) % record_size == 0) start += 8;
  }
  Bytes body(payload);
  return std::make_unique<FullRing>(
      kRingBytes, start,
      [&](std::size_t i) -> const Bytes& {
        std::memcpy(body.data(), &i, std::min(body.size(), sizeof(i)));
        return body;
      },
      [](std::size_t i) { return std::pair<std::uint64_t, std::uint32_t>{1'000'000 + 80 * i, 1}; });
}

// Counts what reaches it and nothing else: the consumer's cost is then one virtual call per record.
class CountingConsumer final : public RecordConsumer {
 public:
  void on_sample(unsigned, const SampleView& sample) override {
    ++samples;
    raw_bytes += sample.raw.size();
  }
  void on_lost(unsigned, const LostView& lost) override { this->lost += lost.lost; }

  std::uint64_t samples = 0;
  std::uint64_t raw_bytes = 0;
  std::uint64_t lost = 0;
};

void report(benchmark::State& state, const FullRing& full, std::uint64_t records, std::uint64_t bytes) {
  state.SetItemsProcessed(static_cast<std::int64_t>(records));
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.counters["records_per_s"] = benchmark::Counter(static_cast<double>(records), benchmark::Counter::kIsRate);
  state.counters["time_per_record"] = benchmark::Counter(
      static_cast<double>(records), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["record_bytes"] = static_cast<double>(full.bytes()) / static_cast<double>(full.records());
  state.counters["records_per_pass"] = static_cast<double>(full.records());
}

void BM_RingDrain_Records(benchmark::State& state) {
  const auto ring = sized_ring(static_cast<std::size_t>(state.range(0)), state.range(1) != 0);
  FullRing& full = *ring;
  std::uint64_t records = 0, bytes = 0, wrapped = 0;
  for (auto _ : state) {
    full.rewind();
    PerfRing::Pass pass = full.ring().begin_pass();
    while (auto record = pass.next()) {
      ++records;
      bytes += record->bytes.size();
      wrapped += record->wrapped ? 1 : 0;
      benchmark::DoNotOptimize(record->bytes.data());
    }
    if (pass.corruption()) {
      state.SkipWithError(pass.corruption()->reason);
      break;
    }
  }
  if (!state.error_occurred() && records != static_cast<std::uint64_t>(state.iterations()) * full.records()) {
    state.SkipWithError("a pass handed out a different number of records than the ring holds");
  }
  if (!state.error_occurred() && state.range(1) != 0 && wrapped != static_cast<std::uint64_t>(state.iterations())) {
    state.SkipWithError("the wrapping case did not assemble exactly one record per pass");
  }
  report(state, full, records, bytes);
}

void BM_RingDrain_Decode(benchmark::State& state) {
  const auto ring = sized_ring(static_cast<std::size_t>(state.range(0)), state.range(1) != 0);
  FullRing& full = *ring;
  auto decoder = RecordDecoder::create(kSampleType, true);
  if (!decoder) {
    state.SkipWithError(decoder.error().message().c_str());
    return;
  }
  CountingConsumer consumer;
  RingStats stats(2);
  std::uint64_t records = 0, bytes = 0;
  for (auto _ : state) {
    full.rewind();
    const DrainResult result = drain_ring(full.ring(), 1, *decoder, consumer, stats.cpu(1));
    records += result.records;
    bytes += result.bytes;
    if (result.corrupt) {
      state.SkipWithError("the drain resynchronised on a ring that holds only good records");
      break;
    }
  }
  benchmark::DoNotOptimize(consumer.raw_bytes);
  const std::uint64_t expected = static_cast<std::uint64_t>(state.iterations()) * full.records();
  if (!state.error_occurred() && (consumer.samples != expected || consumer.samples != records)) {
    state.SkipWithError("the consumer saw a different number of samples than the ring holds");
  }
  report(state, full, records, bytes);
}

void drain_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"payload", "wrap"});
  b->ArgsProduct({{16, 36, 64, 256, 1024, 4096}, {0, 1}});
}

BENCHMARK(BM_RingDrain_Records)->Apply(drain_args);
BENCHMARK(BM_RingDrain_Decode)->Apply(drain_args);

}  // namespace
}  // namespace perfstream::bench
