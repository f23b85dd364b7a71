// Fuzzes PerfRing passes, RecordDecoder and drain_ring over a synthetic ring laid out like the kernel's
// (tests/testing/fake_ring.hpp): one metadata page, then a power-of-two data area whose bytes come from the
// input. Input: u8 log2(data_size) | u64 tail | 4 x u16 head steps (x8 when the flag says aligned) | u8 flags
// | u64 sample_type | data area bytes (zero-filled when short).
// Invariants: a pass ends; every view lies inside the data area or is a wrapped copy of at most
// kMaxRecordSize bytes; views are 8-byte multiples that start at increasing positions below head; the tail
// never passes the head the pass loaded; a decoded sample's raw bytes lie inside its record.
#include <linux/perf_event.h>

#include <cstdlib>
#include <vector>

#include "collector/decode/record_decoder.hpp"
#include "collector/kernel/perf_ring.hpp"
#include "collector/read/ring_drain.hpp"
#include "fuzz/fuzz_input.hpp"

using namespace perfstream;
using perfstream::fuzz::FuzzInput;
using perfstream::fuzz::touch;

namespace {

constexpr std::size_t kPage = 4096;

struct Mapping {
  explicit Mapping(std::size_t data_size) : size(kPage + data_size) {
    // aligned_alloc wants a multiple of the alignment: the tail of the last page is left unused.
    base = static_cast<std::byte*>(std::aligned_alloc(kPage, (size + kPage - 1) / kPage * kPage));
    std::memset(base, 0, size);
    meta()->data_offset = kPage;
    meta()->data_size = data_size;
  }
  ~Mapping() { std::free(base); }
  perf_event_mmap_page* meta() { return reinterpret_cast<perf_event_mmap_page*>(base); }
  std::byte* data() { return base + kPage; }
  std::byte* base;
  std::size_t size;
};

class TouchingConsumer : public RecordConsumer {
 public:
  void on_sample(unsigned, const SampleView& s) override { sum += touch(s.raw.data(), s.raw.size()) + s.time; }
  void on_lost(unsigned, const LostView& l) override {
    FUZZ_CHECK(l.lost > 0);
    sum += l.lost;
  }
  void on_corruption(unsigned, const RingCorruption& c) override { sum += c.bytes_skipped; }
  std::uint64_t sum = 0;
};

bool inside(std::span<const std::byte> view, const std::byte* area, std::size_t size) {
  return view.data() >= area && view.data() + view.size() <= area + size;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  const std::size_t data_size = std::size_t{1} << (3 + in.take<std::uint8_t>() % 14);  // 8 B .. 64 KiB
  const std::uint64_t tail = in.take<std::uint64_t>();
  std::uint16_t steps[4];
  for (auto& s : steps) s = in.take<std::uint16_t>();
  const std::uint8_t flags = in.take<std::uint8_t>();
  const std::uint64_t sample_type = in.take<std::uint64_t>();
  const bool aligned_steps = flags & 1;  // heads 8-byte aligned, like the kernel's
  const bool commit_early = flags & 2;   // commit after every record
  const bool sample_id_all = flags & 4;

  Mapping map(data_size);
  auto bytes = in.rest();
  std::memcpy(map.data(), bytes.data(), std::min(bytes.size(), data_size));

  auto decoder = RecordDecoder::create(sample_type, sample_id_all);
  auto fallback = RecordDecoder::create(PERF_SAMPLE_TIME | PERF_SAMPLE_CPU | PERF_SAMPLE_RAW, true);
  const RecordDecoder& dec = decoder ? *decoder : *fallback;

  map.meta()->data_tail = tail;
  map.meta()->data_head = tail;
  auto ring = PerfRing::over(map.base, map.size);
  FUZZ_CHECK(static_cast<bool>(ring));
  FUZZ_CHECK(ring->data_size() == data_size);

  std::uint64_t sum = 0;
  std::uint64_t head = tail;
  for (std::uint16_t step : steps) {
    head += aligned_steps ? std::uint64_t{step} * 8 : step;
    map.meta()->data_head = head;  // the "kernel" publishes more
    const std::uint64_t before = map.meta()->data_tail;
    {
      auto pass = ring->begin_pass();
      FUZZ_CHECK(pass.head() == head);
      FUZZ_CHECK(pass.start() == before);
      std::uint64_t expect = before;
      std::size_t records = 0;
      while (auto view = pass.next()) {
        FUZZ_CHECK(++records <= data_size / 8);  // the pass ends
        FUZZ_CHECK(view->position == expect);
        FUZZ_CHECK(view->bytes.size() >= sizeof(perf_event_header) && view->bytes.size() % 8 == 0);
        FUZZ_CHECK(view->position + view->bytes.size() - before <= head - before);
        if (view->wrapped) {
          FUZZ_CHECK(view->bytes.size() <= PerfRing::kMaxRecordSize);
          FUZZ_CHECK(!inside(view->bytes, map.data(), data_size));
        } else {
          FUZZ_CHECK(inside(view->bytes, map.data(), data_size));
        }
        expect += view->bytes.size();
        sum += touch(view->bytes.data(), view->bytes.size());
        const DecodedRecord r = dec.decode(view->bytes);
        if (r.kind == RecordKind::Sample && !r.sample.raw.empty()) {
          FUZZ_CHECK(r.sample.raw.data() >= view->bytes.data() &&
                     r.sample.raw.data() + r.sample.raw.size() <= view->bytes.data() + view->bytes.size());
          sum += touch(r.sample.raw.data(), r.sample.raw.size());
        }
        if (commit_early) {
          pass.commit();
          FUZZ_CHECK(map.meta()->data_tail == expect);
        }
      }
      pass.commit();
      // The tail never passes the head this pass loaded.
      FUZZ_CHECK(map.meta()->data_tail - before <= head - before);
      if (!pass.corruption()) FUZZ_CHECK(map.meta()->data_tail == expect);
      else FUZZ_CHECK(map.meta()->data_tail == head);
    }
    FUZZ_CHECK(map.meta()->data_tail == head);  // a pass ends at head, or resynchronises there
  }

  // The same bytes once more through drain_ring, whose consumer reads every byte it is handed.
  map.meta()->data_tail = tail;
  map.meta()->data_head = head;
  auto ring2 = PerfRing::over(map.base, map.size);
  TouchingConsumer consumer;
  CpuCounters counters;
  const DrainResult result = drain_ring(*ring2, 0, dec, consumer, counters);
  FUZZ_CHECK(map.meta()->data_tail == head);
  FUZZ_CHECK(result.bytes <= head - tail);
  perfstream::fuzz::keep(sum + consumer.sum);
  return 0;
}
