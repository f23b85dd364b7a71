// BpfRingbuf without a kernel: what a real ring cannot be made to show on demand, a record still reserved
// (BUSY) when the pass reaches it, and headers that cannot be trusted. The memory is laid out like the
// kernel's mapping: the data area followed by a second copy of itself.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "collector/kernel/bpf_ringbuf.hpp"

namespace perfstream {
namespace {

class FakeRingbuf {
 public:
  explicit FakeRingbuf(std::size_t size) : size_(size), data_(2 * size) {}

  // Appends a record of `payload` bytes (each byte = its index + fill) with `flags` in its length word.
  std::uint64_t add(std::uint32_t payload, std::uint32_t flags = 0, std::uint8_t fill = 0) {
    const std::uint64_t at = producer_;
    put_u32(at, payload | flags);
    put_u32(at + 4, 0);
    for (std::uint32_t k = 0; k < payload; ++k) put_byte(at + 8 + k, static_cast<std::uint8_t>(k + fill));
    producer_ += (payload + 8 + 7) / 8 * 8;
    return at;
  }
  void set_len(std::uint64_t at, std::uint32_t len) { put_u32(at, len); }

  BpfRingbuf ring() { return *BpfRingbuf::over(&consumer_, &producer_, data_.data(), size_); }
  std::uint64_t consumer() const { return consumer_; }
  void set_consumer(std::uint64_t c) { consumer_ = c; }

 private:
  void put_byte(std::uint64_t pos, std::uint8_t b) {
    const std::size_t off = pos & (size_ - 1);
    data_[off] = std::byte{b};
    data_[off + size_] = std::byte{b};
  }
  void put_u32(std::uint64_t pos, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) put_byte(pos + i, static_cast<std::uint8_t>(v >> (8 * i)));
  }

  std::size_t size_;
  std::vector<std::byte> data_;
  std::uint64_t consumer_ = 0;
  std::uint64_t producer_ = 0;
};

TEST(BpfRingbuf, BusyRecordStopsThePassUntilItIsSubmitted) {
  FakeRingbuf fake(256);
  fake.add(5);
  const std::uint64_t busy = fake.add(12, BpfRingbuf::kBusyBit, 1);
  fake.add(3, 0, 2);
  BpfRingbuf ring = fake.ring();
  {
    auto pass = ring.begin_pass();
    auto first = pass.next();
    ASSERT_TRUE(first);
    EXPECT_EQ(first->payload.size(), 5u);
    EXPECT_FALSE(pass.next());
    EXPECT_TRUE(pass.busy());
    EXPECT_FALSE(pass.next()) << "a pass stays stopped at the busy record";
  }
  EXPECT_EQ(fake.consumer(), 16u) << "consumer_pos stops before the busy record";
  fake.set_len(busy, 12);  // submitted
  auto pass = ring.begin_pass();
  auto second = pass.next();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->position, busy);
  ASSERT_EQ(second->payload.size(), 12u);
  EXPECT_EQ(second->payload[11], std::byte{12});
  auto third = pass.next();
  ASSERT_TRUE(third);
  EXPECT_EQ(third->payload.size(), 3u);
  EXPECT_FALSE(pass.next());
  EXPECT_FALSE(pass.busy());
  pass.commit();
  EXPECT_EQ(fake.consumer(), 16u + 24u + 16u);
}

TEST(BpfRingbuf, ExtendTakesInRecordsProducedDuringThePassWithoutMovingTheConsumer) {
  FakeRingbuf fake(256);
  fake.add(5);
  BpfRingbuf ring = fake.ring();
  auto pass = ring.begin_pass();
  auto first = pass.next();
  ASSERT_TRUE(first);
  EXPECT_FALSE(pass.next());
  EXPECT_FALSE(pass.extend()) << "nothing produced since the pass began";
  const std::uint64_t second_at = fake.add(20, 0, 7);
  fake.add(9, BpfRingbuf::kDiscardBit);
  const std::uint64_t busy = fake.add(4, BpfRingbuf::kBusyBit);
  ASSERT_TRUE(pass.extend());
  EXPECT_EQ(fake.consumer(), 0u) << "consumer_pos stays where the pass began until it commits";
  auto second = pass.next();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->position, second_at);
  EXPECT_EQ(second->payload[0], std::byte{7});
  EXPECT_EQ(first->payload.size(), 5u) << "the first view is still valid";
  EXPECT_FALSE(pass.next()) << "the discarded record is stepped over, the busy one ends the pass";
  EXPECT_TRUE(pass.busy());
  EXPECT_EQ(pass.discarded(), 1u);
  fake.set_len(busy, 4);
  EXPECT_FALSE(pass.extend()) << "a pass stopped at a busy record stays stopped";
  EXPECT_EQ(pass.fill_at_start(), 16u) << "the fill level is the one the pass began with";
  pass.commit();
  EXPECT_EQ(fake.consumer(), busy);
  EXPECT_FALSE(pass.extend()) << "nothing is taken in after the commit";
}

TEST(BpfRingbuf, PositionsWrapPastTwoToThe64) {
  const std::uint64_t start = ~std::uint64_t{0} - 15;  // 16 bytes below the u64 wrap
  // A ring whose positions are near 2^64 behaves like one near 0: positions are masked, differences unsigned.
  std::uint64_t consumer = start, producer = start;
  std::vector<std::byte> data(128);
  auto put = [&](std::uint64_t pos, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) {
      data[(pos + i) & 63] = std::byte(static_cast<std::uint8_t>(v >> (8 * i)));
      data[((pos + i) & 63) + 64] = data[(pos + i) & 63];
    }
  };
  put(producer, 4);
  put(producer + 4, 0);
  producer += 16;
  put(producer, 4);
  producer += 16;  // crosses 2^64
  auto r = BpfRingbuf::over(&consumer, &producer, data.data(), 64);
  ASSERT_TRUE(r);
  {
    auto pass = r->begin_pass();
    EXPECT_EQ(pass.fill_at_start(), 32u);
    EXPECT_TRUE(pass.next());
    EXPECT_TRUE(pass.next());
    EXPECT_FALSE(pass.next());
    EXPECT_FALSE(pass.corruption());
  }
  EXPECT_EQ(consumer, start + 32);
}

TEST(BpfRingbuf, LengthPastProducerIsCorruptionAndSkipsToProducer) {
  FakeRingbuf fake(256);
  fake.add(8);
  const std::uint64_t bad = fake.add(8);
  fake.set_len(bad, 200);  // claims more than the 16 bytes before producer_pos
  BpfRingbuf ring = fake.ring();
  {
    auto pass = ring.begin_pass();
    EXPECT_TRUE(pass.next());
    EXPECT_FALSE(pass.next());
    ASSERT_TRUE(pass.corruption());
    EXPECT_EQ(pass.corruption()->position, bad);
    EXPECT_EQ(pass.corruption()->header_size, 200u);
    EXPECT_EQ(pass.corruption()->bytes_skipped, 16u);
    EXPECT_STREQ(pass.corruption()->reason, "record runs past producer_pos");
  }
  EXPECT_EQ(fake.consumer(), 32u);
}

TEST(BpfRingbuf, OverRefusesADataSizeThatIsNoPowerOfTwo) {
  std::uint64_t c = 0, p = 0;
  std::vector<std::byte> data(96);
  auto r = BpfRingbuf::over(&c, &p, data.data(), 48);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "ring buffer: data area of 48 bytes is not a power of two");
}

}  // namespace
}  // namespace perfstream
