// BpfRingbuf on a real BPF_MAP_TYPE_RINGBUF: the map is created here with bpf_map_create, and a
// BPF_PROG_TYPE_SYSCALL program (bpf/ringbuf_test.bpf.c) writes records into it on demand through
// bpf_prog_test_run, with bpf_ringbuf_output, reserve + submit and reserve + discard. Every payload is checked
// byte for byte: its first 8 bytes are the sequence number the program stamped, the rest is the pattern.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include <chrono>
#include <thread>

#include "collector/kernel/bpf_ringbuf.hpp"
#include "collector/read/ringbuf_reader.hpp"
#include "collector/util/unique_fd.hpp"
#include "ringbuf_test.skel.h"
#include "testing/kernel_fixture.hpp"

namespace perfstream {
namespace {

enum Mode : std::uint32_t { kOutput = 0, kSubmit = 1, kDiscard = 2, kMixed = 3 };
constexpr std::size_t kFixed = 40;  // RB_TEST_FIXED

struct TestArgs {
  std::uint32_t mode, size, count, pad;
  std::uint64_t first_seq;
};

std::uint8_t pattern_byte(std::size_t k) { return static_cast<std::uint8_t>(k * 7 + 3); }

std::uint64_t span_of(std::size_t payload) { return (payload + 8 + 7) / 8 * 8; }

struct SkelDeleter {
  void operator()(ringbuf_test_bpf* skel) const { ringbuf_test_bpf__destroy(skel); }
};

// The map, made here, and the program loaded on it.
class RingbufProgram {
 public:
  static std::unique_ptr<RingbufProgram> load(std::uint32_t ring_bytes, std::string* skip) {
    auto p = std::make_unique<RingbufProgram>();
    const int fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "ps_test_rb", 0, 0, ring_bytes, nullptr);
    if (fd < 0) {
      const int err = errno;
      if (err == EPERM || err == EACCES || err == ENOSYS || err == EINVAL) {
        *skip = std::string("the kernel refuses a BPF ring buffer here: ") + std::strerror(err);
      } else {
        ADD_FAILURE() << "bpf_map_create(BPF_MAP_TYPE_RINGBUF): " << std::strerror(err);
      }
      return nullptr;
    }
    p->map = UniqueFd(fd);
    p->skel.reset(ringbuf_test_bpf__open());
    if (!p->skel) {
      ADD_FAILURE() << "opening ringbuf_test: " << std::strerror(errno);
      return nullptr;
    }
    if (int err = bpf_map__reuse_fd(p->skel->maps.rb, fd); err != 0) {
      ADD_FAILURE() << "reuse_fd: " << std::strerror(-err);
      return nullptr;
    }
    if (int err = ringbuf_test_bpf__load(p->skel.get()); err != 0) {
      if (err == -EPERM) {  // -EACCES is the verifier's refusal: a bug of ours
        *skip = std::string("the kernel refuses BPF here: ") + std::strerror(-err);
      } else {
        ADD_FAILURE() << "loading ringbuf_test: " << std::strerror(-err);
      }
      return nullptr;
    }
    for (std::size_t k = 0; k < sizeof(p->skel->bss->pattern); ++k) p->skel->bss->pattern[k] = pattern_byte(k);
    return p;
  }

  void run(Mode mode, std::uint32_t size, std::uint32_t count, std::uint64_t first_seq) {
    TestArgs args{mode, size, count, 0, first_seq};
    LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &args, .ctx_size_in = sizeof(args));
    ASSERT_EQ(bpf_prog_test_run_opts(bpf_program__fd(skel->progs.rb_test), &opts), 0) << std::strerror(errno);
  }

  std::uint64_t emitted() const { return skel->bss->emitted; }
  std::uint64_t failed() const { return skel->bss->failed; }

  UniqueFd map;
  std::unique_ptr<ringbuf_test_bpf, SkelDeleter> skel;
};

// The payload the program wrote for sequence number `seq`, `size` bytes.
std::vector<std::byte> expected_payload(std::uint64_t seq, std::size_t size) {
  std::vector<std::byte> out(size);
  std::memcpy(out.data(), &seq, sizeof(seq));
  for (std::size_t k = 8; k < size; ++k) out[k] = std::byte{pattern_byte(k)};
  return out;
}

std::vector<std::byte> copy(std::span<const std::byte> bytes) { return {bytes.begin(), bytes.end()}; }

#define LOAD_OR_SKIP(var, bytes)                          \
  std::string skip;                                       \
  auto var = RingbufProgram::load(bytes, &skip);          \
  if (!var) {                                             \
    if (!skip.empty()) GTEST_SKIP() << skip;              \
    return;                                               \
  }                                                       \
  auto ring_or = BpfRingbuf::open(var->map.get(), "ps_test_rb"); \
  ASSERT_TRUE(ring_or) << ring_or.error().message();      \
  BpfRingbuf& ring = *ring_or

TEST(BpfRingbuf, RecordsOfEverySizeFrom8To300AreReadWithTheirExactBytes) {
  LOAD_OR_SKIP(program, 64 * 1024);
  std::uint64_t total = 0;
  for (std::uint32_t size = 8; size <= 300; ++size) {
    program->run(kOutput, size, 1, size);
    total += span_of(size);
  }
  ASSERT_EQ(program->emitted(), 293u);
  ASSERT_EQ(program->failed(), 0u);
  EXPECT_EQ(ring.pending_bytes(), total);
  {
    auto pass = ring.begin_pass();
    EXPECT_EQ(pass.fill_at_start(), total);
    std::uint64_t position = 0;
    for (std::uint32_t size = 8; size <= 300; ++size) {
      auto record = pass.next();
      ASSERT_TRUE(record) << "size " << size;
      EXPECT_EQ(record->position, position);
      ASSERT_EQ(copy(record->payload), expected_payload(size, size)) << "size " << size;
      position += span_of(size);
    }
    EXPECT_FALSE(pass.next());
    EXPECT_FALSE(pass.busy());
    EXPECT_FALSE(pass.corruption());
    EXPECT_EQ(pass.discarded(), 0u);
    // Nothing is consumed before the commit.
    EXPECT_EQ(ring.pending_bytes(), total);
  }
  EXPECT_EQ(ring.pending_bytes(), 0u);
}

TEST(BpfRingbuf, ReserveSubmitRecordsArriveInOrderAcrossPasses) {
  LOAD_OR_SKIP(program, 16 * 1024);
  std::uint64_t next_seq = 0;
  for (std::uint64_t round = 0; round < 50; ++round) {
    program->run(kSubmit, 0, 100, round * 100);
    auto pass = ring.begin_pass();
    while (auto record = pass.next()) {
      ASSERT_EQ(copy(record->payload), expected_payload(next_seq, kFixed));
      ++next_seq;
    }
  }
  EXPECT_EQ(next_seq, 5000u);
  EXPECT_EQ(program->emitted(), 5000u);
  EXPECT_EQ(ring.pending_bytes(), 0u);
}

TEST(BpfRingbuf, DiscardedRecordsAreSkippedAndCountedButConsumed) {
  LOAD_OR_SKIP(program, 4096);
  program->run(kMixed, 0, 20, 0);  // even sequence numbers submitted, odd ones discarded
  program->run(kDiscard, 0, 3, 100);
  auto pass = ring.begin_pass();
  for (std::uint64_t seq = 0; seq < 20; seq += 2) {
    auto record = pass.next();
    ASSERT_TRUE(record);
    EXPECT_EQ(copy(record->payload), expected_payload(seq, kFixed));
    EXPECT_EQ(record->position, seq * span_of(kFixed));
  }
  EXPECT_FALSE(pass.next());
  EXPECT_EQ(pass.discarded(), 13u);
  pass.commit();
  EXPECT_EQ(ring.pending_bytes(), 0u) << "discarded records are consumed too";
}

TEST(BpfRingbuf, RecordAcrossTheEndOfTheDataAreaIsReadWhole) {
  LOAD_OR_SKIP(program, 4096);
  constexpr std::uint32_t kSize = 400;  // 408 bytes in the ring
  program->run(kOutput, kSize, 9, 0);   // 3672 bytes
  {
    auto pass = ring.begin_pass();
    while (pass.next()) {
    }
  }
  program->run(kOutput, kSize, 3, 9);  // at 3672, 4080 (runs 392 bytes past the end) and 4488
  auto pass = ring.begin_pass();
  std::uint64_t seq = 9;
  bool crossed = false;
  while (auto record = pass.next()) {
    crossed |= (record->position % 4096) + span_of(kSize) > 4096;
    ASSERT_EQ(copy(record->payload), expected_payload(seq, kSize)) << "seq " << seq;
    ++seq;
  }
  EXPECT_EQ(seq, 12u);
  EXPECT_TRUE(crossed) << "no record crossed the end: the test proves nothing";
}

TEST(BpfRingbuf, FullRingRefusesInTheProgramAndTheFillShowsIt) {
  LOAD_OR_SKIP(program, 4096);
  program->run(kOutput, 400, 12, 0);  // 10 fit (4080 bytes), 2 are refused
  EXPECT_EQ(program->emitted(), 10u);
  EXPECT_EQ(program->failed(), 2u) << "the kernel counts nothing for a ring buffer: only the program knows";
  std::uint64_t delivered = 0;
  {
    auto pass = ring.begin_pass();
    EXPECT_EQ(pass.fill_at_start(), 10 * span_of(400));
    while (auto record = pass.next()) {
      EXPECT_EQ(copy(record->payload), expected_payload(delivered, 400));
      ++delivered;
    }
  }
  EXPECT_EQ(delivered, 10u);
  program->run(kOutput, 400, 1, 12);  // room again once consumer_pos moved
  EXPECT_EQ(program->emitted(), 11u);
  EXPECT_EQ(ring.pending_bytes(), span_of(400));
}

// The reader thread, woken through epoll on the map fd: every submitted record exactly once and in order,
// across bursts that fill the ring, with the discarded ones absent and the counters matching the program's.
TEST(RingbufReader, DeliversEverySubmittedRecordOnceInOrderThroughWakeupsAndTimer) {
  LOAD_OR_SKIP(program, 16 * 1024);
  testing::RecordStore store;
  CpuCounters counters;
  ReaderOptions options;
  options.flush_interval = std::chrono::milliseconds(20);
  SampleTiming timing;
  timing.fields = {{0, 0}};  // the sequence number stands in for a timestamp field
  auto reader = RingbufReader::create(
      ring, program->map.get(), "ps_test_rb", timing, options,
      [&store](unsigned) { return std::make_unique<testing::StoreConsumer>(store); }, counters);
  ASSERT_TRUE(reader) << reader.error().message();
  (*reader)->start();
  std::uint64_t seq = 0;
  for (int burst = 0; burst < 200; ++burst) {
    program->run(burst % 4 == 3 ? kMixed : kSubmit, 0, 128, seq);  // 128 x 48 B: 6 KiB of a 16 KiB ring
    seq += 128;
    if (burst % 50 == 49) std::this_thread::sleep_for(std::chrono::milliseconds(30));  // the timer drains too
  }
  (*reader)->stop();
  const auto records = store.records();
  // Every attempt is accounted for exactly: submitted and delivered, refused by a full ring (the program's
  // `failed`), or discarded (the reader's count).
  EXPECT_EQ(records.size(), program->emitted()) << "every submitted record, once";
  EXPECT_EQ(counters.samples.load(), program->emitted());
  EXPECT_EQ(program->emitted() + program->failed() + counters.discarded.load(), seq);
  EXPECT_GT(counters.discarded.load(), 0u);
  std::uint64_t last = 0;
  for (std::size_t k = 0; k < records.size(); ++k) {
    ASSERT_EQ(records[k].raw.size(), kFixed);
    std::uint64_t got = 0;
    std::memcpy(&got, records[k].raw.data(), sizeof(got));
    ASSERT_EQ(copy(records[k].raw), expected_payload(got, kFixed));
    if (k > 0) {
      EXPECT_GT(got, last) << "in order: record " << k;
    }
    EXPECT_FALSE((got / 128) % 4 == 3 && (got & 1) == 1) << "discarded record " << got << " was delivered";
    EXPECT_EQ(records[k].time, got) << "the time comes from the payload where the SampleTiming says";
    EXPECT_EQ(records[k].cpu, kRingbufCpu);
    last = got;
  }
  EXPECT_GT(counters.wakeups.load(), 0u) << "the reader was woken through epoll";
  EXPECT_GT(counters.fill_high_water.load(), 0u);
  EXPECT_LE(counters.fill_high_water.load(), 16u * 1024);
}

TEST(BpfRingbuf, OpenRefusesAMapThatIsNoRingBuffer) {
  const int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "ps_not_rb", 4, 4, 1, nullptr);
  if (fd < 0) GTEST_SKIP() << "the kernel refuses BPF maps here: " << std::strerror(errno);
  UniqueFd map(fd);
  auto ring = BpfRingbuf::open(map.get(), "ps_not_rb");
  ASSERT_FALSE(ring);
  EXPECT_EQ(ring.error().message(), "ring buffer map 'ps_not_rb': map type 2 is not BPF_MAP_TYPE_RINGBUF");
}

}  // namespace
}  // namespace perfstream
