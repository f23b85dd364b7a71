// PerfRing over FakeKernelRing: record views, the wrap into scratch, pass semantics (head loaded once, tail
// moved at commit), corruption recovery and metadata checks, then a long randomized run.
#include "collector/kernel/perf_ring.hpp"

#include <gtest/gtest.h>
#include <linux/perf_event.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "testing/fake_ring.hpp"

namespace perfstream {
namespace {

using perfstream::testing::FakeKernelRing;
using Bytes = std::vector<std::byte>;

constexpr std::size_t kPage = 4096;

// `size` bytes: the sequence number in the first 8 (truncated when shorter), then a pattern that depends on
// both seq and index, so a byte taken from the wrong place or the wrong record shows.
Bytes payload(std::uint64_t seq, std::size_t size) {
  Bytes out(size);
  for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<std::byte>((seq * 131 + i * 7 + (i >> 8) + 1) & 0xff);
  if (size > 0) std::memcpy(out.data(), &seq, std::min(size, sizeof(seq)));  // data() is null when empty
  return out;
}

// Bytes of the sample FakeKernelRing::sample builds for a payload of `n` bytes (TIME | CPU | RAW).
constexpr std::size_t sample_size(std::size_t n) { return 28 + (((n + 4 + 7) & ~std::size_t{7}) - 4); }

Bytes sample_record(std::uint64_t seq, std::size_t payload_size) {
  return FakeKernelRing::sample(seq, static_cast<std::uint32_t>(seq % 97), payload(seq, payload_size));
}

// A record of exactly `size` bytes (a multiple of 8, at least 32): a sample whose padded raw area fills it.
Bytes sample_of_size(std::uint64_t seq, std::size_t size) {
  Bytes rec = sample_record(seq, size - 28);
  if (rec.size() != size) throw std::logic_error("sample_of_size: bad size " + std::to_string(size));
  return rec;
}

// A record whose header says `header_size` but which is `total` bytes long in the ring.
Bytes raw_header(std::uint16_t header_size, std::size_t total) {
  Bytes out(total, std::byte{0x5a});
  perf_event_header header{PERF_RECORD_SAMPLE, 0, header_size};
  std::memcpy(out.data(), &header, sizeof(header));
  return out;
}

PerfRing wrap(FakeKernelRing& fake) {
  auto ring = PerfRing::over(fake.base(), fake.mapping_size());
  if (!ring) throw std::runtime_error(ring.error().message());
  return std::move(ring).value();
}

::testing::AssertionResult SameBytes(std::span<const std::byte> got, const Bytes& want) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << "size " << got.size() << ", expected " << want.size();
  }
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i]) {
      return ::testing::AssertionFailure() << "byte " << i << " is " << std::to_integer<int>(got[i]) << ", expected "
                                           << std::to_integer<int>(want[i]);
    }
  }
  return ::testing::AssertionSuccess();
}

bool points_into(std::span<const std::byte> bytes, FakeKernelRing& fake) {
  return bytes.data() >= fake.data() && bytes.data() + bytes.size() <= fake.data() + fake.data_size();
}

bool wraps(std::uint64_t position, std::size_t size, std::size_t data_size) {
  return (position & (data_size - 1)) + size > data_size;
}

TEST(PerfRing, EveryPayloadSizeRoundTripsByteExactOneRecordPerPass) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  std::size_t wrapped = 0;
  for (std::size_t n = 0; n <= 300; ++n) {
    SCOPED_TRACE("payload " + std::to_string(n));
    const Bytes rec = sample_record(n, n);
    ASSERT_EQ(rec.size(), sample_size(n));
    const std::uint64_t position = fake.head();
    ASSERT_TRUE(fake.write_record(rec));
    auto pass = ring.begin_pass();
    EXPECT_EQ(pass.fill_at_start(), rec.size());
    auto view = pass.next();
    ASSERT_TRUE(view.has_value());
    EXPECT_TRUE(SameBytes(view->bytes, rec));
    EXPECT_EQ(view->position, position);
    EXPECT_EQ(view->wrapped, wraps(position, rec.size(), kPage));
    EXPECT_EQ(points_into(view->bytes, fake), !view->wrapped);
    std::uint64_t seq = 0;
    std::memcpy(&seq, view->bytes.data() + 8, 8);  // the time field carries seq
    EXPECT_EQ(seq, n);
    wrapped += view->wrapped ? 1 : 0;
    EXPECT_FALSE(pass.next().has_value());
    EXPECT_FALSE(pass.corruption().has_value());
    pass.commit();
    EXPECT_EQ(fake.tail(), position + rec.size());
  }
  // 301 records of 32..328 bytes go round a 4 KiB ring 13 times; each lap ends inside a record or on its edge.
  EXPECT_GE(wrapped, 10u);
}

TEST(PerfRing, ManyRecordsPerPassArriveInOrderByteExact) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  std::uint64_t seq = 0;
  std::size_t delivered = 0, wrapped = 0;
  for (int round = 0; round < 40; ++round) {
    std::deque<std::pair<Bytes, std::uint64_t>> expected;
    for (;;) {
      Bytes rec = sample_record(seq, (seq * 37) % 301);
      const std::uint64_t position = fake.head();
      if (!fake.write_record(rec)) break;
      expected.emplace_back(std::move(rec), position);
      ++seq;
    }
    ASSERT_FALSE(expected.empty());
    auto pass = ring.begin_pass();
    while (auto view = pass.next()) {
      ASSERT_FALSE(expected.empty());
      EXPECT_TRUE(SameBytes(view->bytes, expected.front().first));
      EXPECT_EQ(view->position, expected.front().second);
      wrapped += view->wrapped ? 1 : 0;
      expected.pop_front();
      ++delivered;
    }
    EXPECT_TRUE(expected.empty());
    EXPECT_FALSE(pass.corruption().has_value());
    pass.commit();
    EXPECT_EQ(fake.tail(), fake.head());
  }
  EXPECT_EQ(delivered, seq);
  EXPECT_GE(wrapped, 30u);
}

TEST(PerfRing, RecordsNearlyAsLargeAsTheRingRoundTrip) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  std::uint64_t seq = 1;
  for (std::size_t size : {4096, 4088, 4064, 3000, 2056}) {
    for (std::uint64_t offset : {0ull, 8ull, 1024ull, 2048ull, 4000ull, 4088ull}) {
      SCOPED_TRACE("size " + std::to_string(size) + " at offset " + std::to_string(offset));
      const std::uint64_t position = 5 * kPage + offset;
      fake.set_position(position);
      const Bytes rec = sample_of_size(seq++, size);
      ASSERT_TRUE(fake.write_record(rec));
      auto pass = ring.begin_pass();
      auto view = pass.next();
      ASSERT_TRUE(view.has_value());
      EXPECT_TRUE(SameBytes(view->bytes, rec));
      EXPECT_EQ(view->position, position);
      EXPECT_EQ(view->wrapped, offset + size > kPage);
      EXPECT_FALSE(pass.next().has_value());
      pass.commit();
      EXPECT_EQ(fake.tail(), position + size);
    }
  }
}

TEST(PerfRing, WrappedRecordIsAssembledInScratch) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  std::uint64_t seq = 100;
  // Payload lengths on both sides of the kernel's padding (payload % 8 == 4 needs none).
  for (std::size_t n : {0, 1, 3, 4, 5, 12, 13, 100, 283, 284, 285, 300}) {
    const Bytes rec = sample_record(seq, n);
    // The split falls before every 8-byte word of the record, from "only the header fits" to "all of it".
    for (std::size_t before_end = 8; before_end <= rec.size(); before_end += 8) {
      SCOPED_TRACE("payload " + std::to_string(n) + ", " + std::to_string(before_end) + " bytes before the end");
      const std::uint64_t position = 7 * kPage + kPage - before_end;
      fake.set_position(position);
      ASSERT_TRUE(fake.write_record(rec));
      auto pass = ring.begin_pass();
      auto view = pass.next();
      ASSERT_TRUE(view.has_value());
      const bool split = before_end < rec.size();
      EXPECT_EQ(view->wrapped, split);
      EXPECT_EQ(points_into(view->bytes, fake), !split);
      EXPECT_TRUE(SameBytes(view->bytes, rec));
      EXPECT_EQ(view->position, position);
      EXPECT_FALSE(pass.next().has_value());
      pass.commit();
      EXPECT_EQ(fake.tail(), position + rec.size());
    }
    ++seq;
  }
}

TEST(PerfRing, LargestRecordWrapsIntoScratch) {
  FakeKernelRing fake(128 * 1024);
  PerfRing ring = wrap(fake);
  const Bytes rec = sample_of_size(9, 0xfff8);  // the largest 8-aligned size a u16 header can claim
  for (std::size_t before_end : {std::size_t{8}, std::size_t{0x8000}, std::size_t{0xfff0}, std::size_t{0xfff8}}) {
    SCOPED_TRACE(std::to_string(before_end) + " bytes before the end");
    const std::uint64_t position = 3 * fake.data_size() - before_end;
    fake.set_position(position);
    ASSERT_TRUE(fake.write_record(rec));
    auto pass = ring.begin_pass();
    auto view = pass.next();
    ASSERT_TRUE(view.has_value());
    EXPECT_EQ(view->wrapped, before_end < rec.size());
    EXPECT_TRUE(SameBytes(view->bytes, rec));
    EXPECT_FALSE(pass.next().has_value());
  }
}

TEST(PerfRing, PositionsKeepWorkingAcrossTheU64Limit) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  const std::uint64_t start = std::numeric_limits<std::uint64_t>::max() - 63;  // 2^64 - 64, 8-aligned
  fake.set_position(start);
  std::vector<Bytes> recs;
  for (std::uint64_t seq = 0; seq < 4; ++seq) {
    recs.push_back(sample_record(seq, 20));  // 48 bytes each: the third one crosses 2^64
    ASSERT_TRUE(fake.write_record(recs.back()));
  }
  EXPECT_EQ(ring.pending_bytes(), 192u);
  auto pass = ring.begin_pass();
  EXPECT_EQ(pass.fill_at_start(), 192u);
  std::uint64_t position = start;
  for (const Bytes& rec : recs) {
    auto view = pass.next();
    ASSERT_TRUE(view.has_value());
    EXPECT_EQ(view->position, position);
    EXPECT_TRUE(SameBytes(view->bytes, rec));
    position += rec.size();
  }
  EXPECT_FALSE(pass.next().has_value());
  pass.commit();
  EXPECT_EQ(fake.tail(), 128u);  // start + 192, modulo 2^64
  EXPECT_EQ(ring.pending_bytes(), 0u);
}

TEST(PerfRing, ExactlyFullRingIsDrainedCompletely) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  const std::uint64_t start = 5 * kPage + 1000;
  fake.set_position(start);
  std::vector<Bytes> recs;
  for (std::uint64_t seq = 0; seq < 16; ++seq) {
    recs.push_back(sample_of_size(seq, 256));
    ASSERT_TRUE(fake.write_record(recs.back()));
  }
  ASSERT_EQ(fake.free_space(), 0u);
  EXPECT_FALSE(fake.write_record(sample_of_size(99, 32)));  // the writer refuses, as the kernel does
  EXPECT_EQ(ring.pending_bytes(), kPage);

  auto pass = ring.begin_pass();
  EXPECT_EQ(pass.fill_at_start(), kPage);
  EXPECT_FALSE(pass.corruption().has_value());
  std::size_t wrapped = 0;
  for (std::size_t i = 0; i < recs.size(); ++i) {
    auto view = pass.next();
    ASSERT_TRUE(view.has_value()) << "record " << i;
    EXPECT_EQ(view->position, start + 256 * i);
    EXPECT_TRUE(SameBytes(view->bytes, recs[i])) << "record " << i;
    wrapped += view->wrapped ? 1 : 0;
  }
  EXPECT_EQ(wrapped, 1u);  // 1000 % 256 != 0: the record at offset 3816 + 256 crosses the end
  EXPECT_FALSE(pass.next().has_value());
  EXPECT_FALSE(pass.corruption().has_value());
  pass.commit();
  EXPECT_EQ(fake.tail(), start + kPage);
  EXPECT_EQ(fake.head(), start + kPage);
}

TEST(PerfRing, OneRecordFillingTheWholeRingIsRead) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  fake.set_position(2 * kPage + 512);
  const Bytes rec = sample_of_size(1, kPage);
  ASSERT_TRUE(fake.write_record(rec));
  ASSERT_EQ(fake.free_space(), 0u);
  auto pass = ring.begin_pass();
  auto view = pass.next();
  ASSERT_TRUE(view.has_value());
  EXPECT_TRUE(view->wrapped);
  EXPECT_TRUE(SameBytes(view->bytes, rec));
  EXPECT_FALSE(pass.next().has_value());
  EXPECT_FALSE(pass.corruption().has_value());
}

TEST(PerfRing, PassReturnsOnlyRecordsBelowTheHeadItLoaded) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  const Bytes a = sample_record(1, 10), b = sample_record(2, 20), c = sample_record(3, 30), d = sample_record(4, 40);
  ASSERT_TRUE(fake.write_record(a));
  ASSERT_TRUE(fake.write_record(b));
  const std::uint64_t head_at_start = fake.head();
  {
    auto pass = ring.begin_pass();
    ASSERT_TRUE(fake.write_record(c));  // written while the pass runs: belongs to the next pass
    auto first = pass.next();
    ASSERT_TRUE(fake.write_record(d));
    auto second = pass.next();
    ASSERT_TRUE(first && second);
    EXPECT_TRUE(SameBytes(first->bytes, a));
    EXPECT_TRUE(SameBytes(second->bytes, b));
    EXPECT_FALSE(pass.next().has_value());
    EXPECT_FALSE(pass.next().has_value());  // the end of a pass stays the end
    EXPECT_EQ(pass.head(), head_at_start);
    EXPECT_EQ(pass.fill_at_start(), a.size() + b.size());
  }
  EXPECT_EQ(fake.tail(), head_at_start);
  EXPECT_EQ(ring.pending_bytes(), c.size() + d.size());
  auto pass = ring.begin_pass();
  auto third = pass.next();
  auto fourth = pass.next();
  ASSERT_TRUE(third && fourth);
  EXPECT_TRUE(SameBytes(third->bytes, c));
  EXPECT_TRUE(SameBytes(fourth->bytes, d));
  EXPECT_FALSE(pass.next().has_value());
}

TEST(PerfRing, TailMovesOnlyAtCommit) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  const std::uint64_t start = 3 * kPage + 64;
  fake.set_position(start);
  const Bytes a = sample_record(1, 8), b = sample_record(2, 16), c = sample_record(3, 24);
  for (const Bytes* r : {&a, &b, &c}) ASSERT_TRUE(fake.write_record(*r));
  const std::uint64_t head = fake.head();

  auto pass = ring.begin_pass();
  EXPECT_EQ(pass.start(), start);
  ASSERT_TRUE(pass.next().has_value());
  ASSERT_TRUE(pass.next().has_value());
  EXPECT_EQ(fake.tail(), start);  // records handed out, tail untouched
  EXPECT_EQ(ring.pending_bytes(), head - start);

  pass.commit();
  EXPECT_EQ(fake.tail(), start + a.size() + b.size());  // the end of the last record handed out, not head
  pass.commit();
  EXPECT_EQ(fake.tail(), start + a.size() + b.size());  // idempotent

  auto last = pass.next();
  ASSERT_TRUE(last.has_value());
  EXPECT_TRUE(SameBytes(last->bytes, c));
  EXPECT_EQ(fake.tail(), start + a.size() + b.size());
  pass.commit();
  EXPECT_EQ(fake.tail(), head);
  EXPECT_LE(fake.tail(), fake.head());
}

TEST(PerfRing, DestroyingAPassCommitsWhatItHandedOut) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  const Bytes a = sample_record(1, 8), b = sample_record(2, 16);
  ASSERT_TRUE(fake.write_record(a));
  ASSERT_TRUE(fake.write_record(b));
  {
    auto pass = ring.begin_pass();
    ASSERT_TRUE(pass.next().has_value());
    EXPECT_EQ(fake.tail(), 0u);
  }
  EXPECT_EQ(fake.tail(), a.size());
  {
    auto pass = ring.begin_pass();
    EXPECT_EQ(pass.start(), a.size());
    auto view = pass.next();
    ASSERT_TRUE(view.has_value());
    EXPECT_TRUE(SameBytes(view->bytes, b));
  }
  EXPECT_EQ(fake.tail(), a.size() + b.size());
}

TEST(PerfRing, EmptyPassLeavesTailAlone) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  fake.set_position(9 * kPage + 72);
  {
    auto pass = ring.begin_pass();
    EXPECT_EQ(pass.fill_at_start(), 0u);
    EXPECT_FALSE(pass.next().has_value());
    EXPECT_FALSE(pass.corruption().has_value());
  }
  EXPECT_EQ(fake.tail(), 9 * kPage + 72);
  EXPECT_EQ(fake.head(), 9 * kPage + 72);
}

TEST(PerfRing, ViewsOfOnePassStayValidUntilCommitWhenOneRecordWrapped) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  fake.set_position(4 * kPage - 200);
  std::vector<Bytes> recs;
  std::uint64_t seq = 0;
  while (ring.pending_bytes() < 3000) {
    recs.push_back(sample_record(seq, (seq * 53) % 200));
    ASSERT_TRUE(fake.write_record(recs.back()));
    ++seq;
  }
  auto pass = ring.begin_pass();
  std::vector<RecordView> views;
  while (auto view = pass.next()) views.push_back(*view);
  ASSERT_EQ(views.size(), recs.size());
  EXPECT_EQ(std::count_if(views.begin(), views.end(), [](const RecordView& v) { return v.wrapped; }), 1);

  // The producer fills every byte it may use while the views are held; none of it is under a view.
  std::size_t written_after = 0;
  while (fake.write_record(sample_record(1000 + written_after, 60))) ++written_after;
  EXPECT_GT(written_after, 0u);
  EXPECT_EQ(fake.free_space(), kPage - ring.pending_bytes());

  for (std::size_t i = 0; i < views.size(); ++i) EXPECT_TRUE(SameBytes(views[i].bytes, recs[i])) << "record " << i;
  pass.commit();
}

// A header that cannot be stepped over ends the pass, skips to head, and says where and why.
TEST(PerfRing, CorruptHeaderEndsThePassAndSkipsToHead) {
  struct Case {
    std::uint16_t header_size;
    std::size_t bytes_in_ring;  // bytes of the bad "record" actually written
    const char* reason;
  };
  const Case cases[] = {
      {0, 48, "record size smaller than its header"},
      {4, 48, "record size smaller than its header"},
      {7, 48, "record size smaller than its header"},
      {20, 48, "record size not a multiple of 8"},
      {36, 48, "record size not a multiple of 8"},
      {49, 48, "record size not a multiple of 8"},
      {256, 48, "record runs past data_head"},     // more than the bytes up to head (48 + 40)
      {0xfff8, 48, "record runs past data_head"},  // larger than the whole ring
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("header size " + std::to_string(c.header_size));
    FakeKernelRing fake(kPage);
    PerfRing ring = wrap(fake);
    const std::uint64_t start = 3 * kPage + 512;
    fake.set_position(start);
    const Bytes good = sample_record(1, 12);  // 40 bytes
    const Bytes after = sample_record(2, 12);
    ASSERT_TRUE(fake.write_record(good));
    ASSERT_TRUE(fake.write_record(raw_header(c.header_size, c.bytes_in_ring)));
    ASSERT_TRUE(fake.write_record(after));
    const std::uint64_t head = fake.head();
    {
      auto pass = ring.begin_pass();
      auto first = pass.next();
      ASSERT_TRUE(first.has_value());
      EXPECT_TRUE(SameBytes(first->bytes, good));
      int calls = 0;
      while (pass.next() && ++calls < 100) {
      }
      EXPECT_EQ(calls, 0);  // no record after the bad header
      EXPECT_FALSE(pass.next().has_value());
      ASSERT_TRUE(pass.corruption().has_value());
      EXPECT_EQ(pass.corruption()->position, start + good.size());
      EXPECT_EQ(pass.corruption()->header_size, c.header_size);
      EXPECT_EQ(pass.corruption()->bytes_skipped, head - (start + good.size()));
      EXPECT_STREQ(pass.corruption()->reason, c.reason);
      EXPECT_EQ(fake.tail(), start);
      pass.commit();
      EXPECT_EQ(fake.tail(), head);
    }
    auto pass = ring.begin_pass();
    EXPECT_FALSE(pass.next().has_value());
    EXPECT_FALSE(pass.corruption().has_value());
  }
}

TEST(PerfRing, MisalignedTailEndsThePassAndSkipsToHead) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  const std::uint64_t start = 2 * kPage + 64;
  fake.set_position(start);
  ASSERT_TRUE(fake.write_record(sample_record(1, 30)));
  ASSERT_TRUE(fake.write_record(sample_record(2, 30)));
  const std::uint64_t head = fake.head();
  fake.meta()->data_tail = start + 4;
  {
    auto pass = ring.begin_pass();
    EXPECT_FALSE(pass.next().has_value());
    ASSERT_TRUE(pass.corruption().has_value());
    EXPECT_EQ(pass.corruption()->position, start + 4);
    EXPECT_EQ(pass.corruption()->header_size, 0u);
    EXPECT_EQ(pass.corruption()->bytes_skipped, head - start - 4);
    EXPECT_STREQ(pass.corruption()->reason, "data_tail is not 8-byte aligned");
    EXPECT_EQ(fake.tail(), start + 4);
  }
  EXPECT_EQ(fake.tail(), head);
  ASSERT_TRUE(fake.write_record(sample_record(3, 30)));
  auto pass = ring.begin_pass();
  EXPECT_TRUE(pass.next().has_value());
  EXPECT_FALSE(pass.corruption().has_value());
}

TEST(PerfRing, HeadMoreThanDataSizeAheadOfTailEndsThePass) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  const std::uint64_t start = 6 * kPage;
  fake.set_position(start);
  fake.meta()->data_head = start + kPage + 8;
  {
    auto pass = ring.begin_pass();
    EXPECT_FALSE(pass.next().has_value());
    ASSERT_TRUE(pass.corruption().has_value());
    EXPECT_EQ(pass.corruption()->position, start);
    EXPECT_EQ(pass.corruption()->header_size, 0u);
    EXPECT_EQ(pass.corruption()->bytes_skipped, kPage + 8);
    EXPECT_STREQ(pass.corruption()->reason, "data_head is more than the data size ahead of data_tail");
  }
  EXPECT_EQ(fake.tail(), start + kPage + 8);
  auto pass = ring.begin_pass();
  EXPECT_FALSE(pass.next().has_value());
  EXPECT_FALSE(pass.corruption().has_value());
}

TEST(PerfRing, FewerBytesThanAHeaderBeforeHeadEndsThePass) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  fake.set_position(kPage);
  fake.meta()->data_head = kPage + 4;
  {
    auto pass = ring.begin_pass();
    EXPECT_FALSE(pass.next().has_value());
    ASSERT_TRUE(pass.corruption().has_value());
    EXPECT_EQ(pass.corruption()->position, kPage);
    EXPECT_EQ(pass.corruption()->header_size, 0u);
    EXPECT_EQ(pass.corruption()->bytes_skipped, 4u);
    EXPECT_STREQ(pass.corruption()->reason, "fewer bytes than a record header before data_head");
  }
  EXPECT_EQ(fake.tail(), kPage + 4);
}

TEST(PerfRing, OverAcceptsTheKernelLayout) {
  FakeKernelRing fake(2 * kPage);
  auto ring = PerfRing::over(fake.base(), fake.mapping_size());
  ASSERT_TRUE(ring) << ring.error().message();
  EXPECT_EQ(ring->data_size(), 2 * kPage);
}

TEST(PerfRing, OverRejectsDataSizeThatIsNotAPowerOfTwo) {
  FakeKernelRing fake(2 * kPage);
  fake.meta()->data_size = 6144;  // fits in the mapping, a multiple of 8, but not 2^n
  auto ring = PerfRing::over(fake.base(), fake.mapping_size());
  ASSERT_FALSE(ring);
  EXPECT_EQ(ring.error().message(),
            "perf ring: metadata page gives data_offset 4096 and data_size 6144, which do not describe a power-of-two "
            "area inside the 12288-byte mapping");
  fake.meta()->data_size = 0;
  EXPECT_FALSE(PerfRing::over(fake.base(), fake.mapping_size()));
}

TEST(PerfRing, OverRejectsDataAreaOutsideTheMapping) {
  FakeKernelRing fake(2 * kPage);
  {
    auto ring = PerfRing::over(fake.base(), fake.mapping_size() - kPage);  // the mapping ends mid data area
    ASSERT_FALSE(ring);
    EXPECT_NE(ring.error().message().find("data_offset 4096 and data_size 8192"), std::string::npos)
        << ring.error().message();
    EXPECT_NE(ring.error().message().find("8192-byte mapping"), std::string::npos) << ring.error().message();
  }
  fake.meta()->data_offset = 2 * kPage;  // starts inside, ends past the end
  EXPECT_FALSE(PerfRing::over(fake.base(), fake.mapping_size()));
  fake.meta()->data_offset = 0;  // overlaps the metadata page
  EXPECT_FALSE(PerfRing::over(fake.base(), fake.mapping_size()));
  fake.meta()->data_offset = std::numeric_limits<std::uint64_t>::max() - 8;  // offset + size would overflow
  EXPECT_FALSE(PerfRing::over(fake.base(), fake.mapping_size()));
}

TEST(PerfRing, OverRejectsAMappingTooSmallForTheMetadataPage) {
  FakeKernelRing fake(kPage);
  auto ring = PerfRing::over(fake.base(), 512);
  ASSERT_FALSE(ring);
  EXPECT_EQ(ring.error().message(), "perf ring: mapping of 512 bytes is too small for its metadata page");
  EXPECT_FALSE(PerfRing::over(nullptr, fake.mapping_size()));
}

// Random record sizes, a producer that is refused when the ring is full, and passes that stop early, commit
// early or race with the producer: every record written arrives exactly once, in order, byte for byte, and
// the tail never passes the head.
TEST(PerfRing, RandomWritesAndPartialDrainsDeliverEveryRecordOnceInOrder) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  std::mt19937_64 rng(0x5eed'2024);
  fake.set_position(kPage * 1000 + 8 * (rng() % 512));

  struct Expected {
    Bytes bytes;
    std::uint64_t position;
  };
  std::deque<Expected> queue;
  std::uint64_t seq = 0, written = 0, delivered = 0, refused = 0, wrapped = 0;

  auto make = [&]() -> Bytes {
    const unsigned kind = rng() % 20;
    if (kind < 16) return sample_record(seq, rng() % 301);
    if (kind < 18) return sample_record(seq, rng() % (kPage - 28 + 1));  // up to the whole ring
    return FakeKernelRing::other(PERF_RECORD_COMM, 8 * (rng() % 64));
  };
  auto try_write = [&] {
    Bytes rec = make();
    const std::uint64_t position = fake.head();
    if (fake.write_record(rec)) {
      queue.push_back({std::move(rec), position});
      ++written;
      ++seq;
    } else {
      ++refused;
    }
  };
  auto check_counters = [&] {
    ASSERT_LE(fake.head() - fake.tail(), kPage);
    std::uint64_t pending = 0;
    for (const Expected& e : queue) pending += e.bytes.size();
    ASSERT_EQ(ring.pending_bytes(), pending);
  };

  for (int step = 0; step < 20000; ++step) {
    if (rng() % 2 == 0) {
      const int n = 1 + static_cast<int>(rng() % 6);
      for (int i = 0; i < n; ++i) try_write();
      check_counters();
      continue;
    }
    const std::uint64_t tail_before = fake.tail();
    const std::size_t limit = rng() % 4 == 0 ? queue.size() + 1 : rng() % (queue.size() + 2);
    std::vector<std::pair<RecordView, const Bytes*>> taken;
    std::deque<Expected> consumed;  // keeps the expected bytes alive while the views are checked
    {
      auto pass = ring.begin_pass();
      ASSERT_EQ(pass.start(), tail_before);
      const std::uint64_t pass_head = pass.head();
      while (taken.size() < limit) {
        if (rng() % 8 == 0) try_write();  // the producer keeps going; this pass must not see it
        auto view = pass.next();
        if (!view) break;
        ASSERT_FALSE(queue.empty());
        ASSERT_LE(view->position + view->bytes.size() - tail_before, pass_head - tail_before);
        ASSERT_EQ(view->position, queue.front().position) << "record " << delivered;
        ASSERT_TRUE(SameBytes(view->bytes, queue.front().bytes)) << "record " << delivered;
        wrapped += view->wrapped ? 1 : 0;
        consumed.push_back(std::move(queue.front()));
        queue.pop_front();
        taken.emplace_back(*view, &consumed.back().bytes);
        ++delivered;
      }
      ASSERT_FALSE(pass.corruption().has_value());
      ASSERT_EQ(fake.tail(), tail_before);
      for (auto& [view, bytes] : taken) ASSERT_TRUE(SameBytes(view.bytes, *bytes)) << "held view changed";
      if (rng() % 2 == 0) pass.commit();  // else the destructor commits
    }
    std::uint64_t end = tail_before;
    for (auto& [view, bytes] : taken) end += bytes->size();
    ASSERT_EQ(fake.tail(), end);
    check_counters();
  }

  {
    auto pass = ring.begin_pass();  // the producer has stopped: one pass reads the rest
    while (auto view = pass.next()) {
      ASSERT_FALSE(queue.empty());
      ASSERT_EQ(view->position, queue.front().position);
      ASSERT_TRUE(SameBytes(view->bytes, queue.front().bytes));
      queue.pop_front();
      ++delivered;
    }
    EXPECT_FALSE(pass.corruption().has_value());
  }
  EXPECT_TRUE(queue.empty());
  EXPECT_EQ(delivered, written);
  EXPECT_EQ(fake.tail(), fake.head());
  // The run must have exercised what it claims to: wraps, a full ring, and thousands of records.
  EXPECT_GT(written, 10000u);
  EXPECT_GT(wrapped, 100u);
  EXPECT_GT(refused, 100u);
}

}  // namespace
}  // namespace perfstream
