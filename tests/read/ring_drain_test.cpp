// drain_ring over a FakeKernelRing: what reaches the consumer, in what order, what is counted, and when the
// tail moves.
#include "collector/read/ring_drain.hpp"

#include <gtest/gtest.h>
#include <linux/perf_event.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <iterator>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "testing/fake_ring.hpp"

namespace perfstream {
namespace {

using perfstream::testing::FakeKernelRing;
using Bytes = std::vector<std::byte>;

constexpr std::size_t kPage = 4096;
constexpr std::uint64_t kSampleType = PERF_SAMPLE_TIME | PERF_SAMPLE_CPU | PERF_SAMPLE_RAW;

Bytes payload(std::uint64_t seq, std::size_t size) {
  Bytes out(size);
  for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<std::byte>((seq * 17 + i + 1) & 0xff);
  if (size > 0) std::memcpy(out.data(), &seq, std::min(size, sizeof(seq)));  // data() is null when empty
  return out;
}

Bytes padded(const Bytes& data) {
  Bytes out = data;
  out.resize(((data.size() + 4 + 7) / 8) * 8 - 4);
  return out;
}

RecordDecoder decoder() {
  auto d = RecordDecoder::create(kSampleType, true);
  if (!d) throw std::runtime_error(d.error().message());
  return std::move(d).value();
}

PerfRing wrap(FakeKernelRing& fake) {
  auto ring = PerfRing::over(fake.base(), fake.mapping_size());
  if (!ring) throw std::runtime_error(ring.error().message());
  return std::move(ring).value();
}

// Writes every call down, in order; raw bytes are copied at once, and the views are also kept to check they
// are still intact when the pass ends.
class RecordingConsumer : public RecordConsumer {
 public:
  struct Event {
    enum Kind { Sample, Lost, Corruption, PassEnd } kind = Sample;
    unsigned cpu = 0;
    SampleView sample;
    Bytes raw;
    LostView lost;
    RingCorruption corruption;
    std::uint64_t tail = 0;  // the ring's data_tail when the call was made
  };
  Event make(Event::Kind kind, unsigned cpu) const {
    Event e;
    e.kind = kind;
    e.cpu = cpu;
    e.tail = fake_.tail();
    return e;
  }

  explicit RecordingConsumer(FakeKernelRing& fake) : fake_(fake) {}

  void on_sample(unsigned cpu, const SampleView& sample) override {
    Event e = make(Event::Sample, cpu);
    e.sample = sample;
    e.raw.assign(sample.raw.begin(), sample.raw.end());
    events.push_back(std::move(e));
  }
  void on_lost(unsigned cpu, const LostView& lost) override {
    Event e = make(Event::Lost, cpu);
    e.lost = lost;
    events.push_back(std::move(e));
  }
  void on_corruption(unsigned cpu, const RingCorruption& corruption) override {
    Event e = make(Event::Corruption, cpu);
    e.corruption = corruption;
    events.push_back(std::move(e));
  }
  void on_pass_end(unsigned cpu) override {
    // Every view handed out in this pass must still show the bytes it showed when it was handed out.
    for (std::size_t i = pass_begin_; i < events.size(); ++i) {
      const Event& e = events[i];
      if (e.kind != Event::Sample) continue;
      ++views_checked;
      if (e.sample.raw.size() != e.raw.size() || !std::equal(e.raw.begin(), e.raw.end(), e.sample.raw.begin())) {
        views_intact = false;
      }
    }
    Event e = make(Event::PassEnd, cpu);
    events.push_back(std::move(e));
    pass_begin_ = events.size();
  }

  std::vector<Event> of(Event::Kind kind) const {
    std::vector<Event> out;
    for (const Event& e : events)
      if (e.kind == kind) out.push_back(e);
    return out;
  }

  std::vector<Event> events;
  bool views_intact = true;
  std::size_t views_checked = 0;

 private:
  FakeKernelRing& fake_;
  std::size_t pass_begin_ = 0;
};

TEST(DrainRing, DeliversSamplesInOrderWithCpuTimeAndRaw) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  const RecordDecoder dec = decoder();
  RecordingConsumer consumer(fake);
  CpuCounters counters;
  const std::size_t sizes[] = {0, 5, 12, 13, 100};
  std::uint64_t ring_bytes = 0, raw_bytes = 0;
  for (std::size_t i = 0; i < std::size(sizes); ++i) {
    const Bytes rec = FakeKernelRing::sample(1000 + i, 3, payload(i, sizes[i]));
    ring_bytes += rec.size();
    raw_bytes += padded(payload(i, sizes[i])).size();
    ASSERT_TRUE(fake.write_record(rec));
  }

  const DrainResult result = drain_ring(ring, 3, dec, consumer, counters);
  EXPECT_EQ(result.records, 5u);
  EXPECT_EQ(result.bytes, ring_bytes);
  EXPECT_FALSE(result.corrupt);
  const auto samples = consumer.of(RecordingConsumer::Event::Sample);
  ASSERT_EQ(samples.size(), 5u);
  for (std::size_t i = 0; i < samples.size(); ++i) {
    SCOPED_TRACE("sample " + std::to_string(i));
    EXPECT_EQ(samples[i].cpu, 3u);
    EXPECT_EQ(samples[i].sample.cpu, 3u);
    EXPECT_EQ(samples[i].sample.time, 1000 + i);
    EXPECT_EQ(samples[i].raw, padded(payload(i, sizes[i])));
  }
  EXPECT_EQ(counters.samples.load(), 5u);
  EXPECT_EQ(counters.sample_bytes.load(), raw_bytes);
  EXPECT_EQ(counters.ring_bytes.load(), ring_bytes);
  EXPECT_EQ(counters.passes.load(), 1u);
  EXPECT_EQ(counters.lost.load(), 0u);
  EXPECT_EQ(counters.corrupt.load(), 0u);
  EXPECT_EQ(counters.malformed.load(), 0u);
  EXPECT_EQ(counters.other_records.load(), 0u);
}

TEST(DrainRing, ForwardsLostNoticesInRingOrderAndCountsThem) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  const RecordDecoder dec = decoder();
  RecordingConsumer consumer(fake);
  CpuCounters counters;
  ASSERT_TRUE(fake.write_record(FakeKernelRing::sample(1, 2, payload(1, 8))));
  ASSERT_TRUE(fake.write_record(FakeKernelRing::lost(77, 5, 1500, 2)));
  ASSERT_TRUE(fake.write_record(FakeKernelRing::sample(2, 2, payload(2, 8))));
  ASSERT_TRUE(fake.write_record(FakeKernelRing::lost(77, 3, 2500, 2)));

  drain_ring(ring, 2, dec, consumer, counters);
  ASSERT_EQ(consumer.events.size(), 5u);
  EXPECT_EQ(consumer.events[0].kind, RecordingConsumer::Event::Sample);
  ASSERT_EQ(consumer.events[1].kind, RecordingConsumer::Event::Lost);
  EXPECT_EQ(consumer.events[1].cpu, 2u);
  EXPECT_EQ(consumer.events[1].lost.lost, 5u);
  EXPECT_EQ(consumer.events[1].lost.id, 77u);
  EXPECT_EQ(consumer.events[1].lost.time, 1500u);
  EXPECT_EQ(consumer.events[1].lost.cpu, 2u);
  EXPECT_EQ(consumer.events[2].kind, RecordingConsumer::Event::Sample);
  ASSERT_EQ(consumer.events[3].kind, RecordingConsumer::Event::Lost);
  EXPECT_EQ(consumer.events[3].lost.lost, 3u);
  EXPECT_EQ(consumer.events[4].kind, RecordingConsumer::Event::PassEnd);
  EXPECT_EQ(counters.lost.load(), 8u);
  EXPECT_EQ(counters.lost_notices.load(), 2u);
  EXPECT_EQ(counters.samples.load(), 2u);
}

// A consumer that takes samples in blocks (as BatchingConsumer does) gets them in ring order, in blocks of
// at most 32, and a block is handed over before the lost notice that follows it and before the pass ends.
TEST(DrainRing, SamplesComeInBlocksHandedOverBeforeALossAndThePassEnd) {
  class BlockConsumer : public RecordingConsumer {
   public:
    using RecordingConsumer::RecordingConsumer;
    void on_samples(unsigned cpu, std::span<const SampleView> samples) override {
      calls.push_back("samples " + std::to_string(samples.size()));
      for (const SampleView& sample : samples) on_sample(cpu, sample);
    }
    void on_lost(unsigned cpu, const LostView& lost) override {
      calls.push_back("lost " + std::to_string(lost.lost));
      RecordingConsumer::on_lost(cpu, lost);
    }
    void on_pass_end(unsigned cpu) override {
      calls.push_back("pass end");
      RecordingConsumer::on_pass_end(cpu);
    }
    std::vector<std::string> calls;
  };
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  const RecordDecoder dec = decoder();
  BlockConsumer consumer(fake);
  CpuCounters counters;
  for (std::uint64_t i = 0; i < 70; ++i) ASSERT_TRUE(fake.write_record(FakeKernelRing::sample(i, 1, payload(i, 4))));
  ASSERT_TRUE(fake.write_record(FakeKernelRing::lost(9, 4, 70, 1)));
  for (std::uint64_t i = 70; i < 75; ++i) ASSERT_TRUE(fake.write_record(FakeKernelRing::sample(i, 1, payload(i, 4))));

  drain_ring(ring, 1, dec, consumer, counters);
  EXPECT_EQ(consumer.calls, (std::vector<std::string>{"samples 32", "samples 32", "samples 6", "lost 4", "samples 5",
                                                      "pass end"}));
  const auto samples = consumer.of(RecordingConsumer::Event::Sample);
  ASSERT_EQ(samples.size(), 75u);
  for (std::size_t i = 0; i < samples.size(); ++i) {
    EXPECT_EQ(samples[i].sample.time, i) << "sample " << i;
    EXPECT_EQ(samples[i].raw, padded(payload(i, 4))) << "sample " << i;
  }
  EXPECT_TRUE(consumer.views_intact);
  EXPECT_EQ(consumer.views_checked, 75u);
  EXPECT_EQ(counters.samples.load(), 75u);
}

TEST(DrainRing, LostNoticeWithZeroCountIsNotForwarded) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  const RecordDecoder dec = decoder();
  RecordingConsumer consumer(fake);
  CpuCounters counters;
  const Bytes zero = FakeKernelRing::lost(1, 0, 100, 0);
  ASSERT_TRUE(fake.write_record(zero));
  Bytes lost_samples(32);  // PERF_RECORD_LOST_SAMPLES with lost = 0 and the TIME | CPU trailer
  perf_event_header header{PERF_RECORD_LOST_SAMPLES, 0, 32};
  std::memcpy(lost_samples.data(), &header, sizeof(header));
  ASSERT_TRUE(fake.write_record(lost_samples));

  const DrainResult result = drain_ring(ring, 0, dec, consumer, counters);
  EXPECT_TRUE(consumer.of(RecordingConsumer::Event::Lost).empty());
  EXPECT_EQ(counters.lost.load(), 0u);
  EXPECT_EQ(counters.lost_notices.load(), 0u);
  EXPECT_EQ(result.records, 2u);  // read and consumed all the same
  EXPECT_EQ(counters.ring_bytes.load(), zero.size() + lost_samples.size());
  EXPECT_EQ(fake.tail(), fake.head());
}

TEST(DrainRing, OtherRecordTypesAreCountedAndSkipped) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  const RecordDecoder dec = decoder();
  RecordingConsumer consumer(fake);
  CpuCounters counters;
  ASSERT_TRUE(fake.write_record(FakeKernelRing::sample(1, 0, payload(1, 4))));
  ASSERT_TRUE(fake.write_record(FakeKernelRing::other(PERF_RECORD_COMM, 24)));
  ASSERT_TRUE(fake.write_record(FakeKernelRing::other(PERF_RECORD_THROTTLE, 24)));
  ASSERT_TRUE(fake.write_record(FakeKernelRing::sample(2, 0, payload(2, 4))));

  const DrainResult result = drain_ring(ring, 0, dec, consumer, counters);
  EXPECT_EQ(result.records, 4u);
  const auto samples = consumer.of(RecordingConsumer::Event::Sample);
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[0].sample.time, 1u);
  EXPECT_EQ(samples[1].sample.time, 2u);
  EXPECT_EQ(consumer.events.size(), 3u);  // two samples and the pass end
  EXPECT_EQ(counters.other_records.load(), 2u);
  EXPECT_EQ(counters.samples.load(), 2u);
}

TEST(DrainRing, MalformedSamplesAreCountedAndSkipped) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  const RecordDecoder dec = decoder();
  RecordingConsumer consumer(fake);
  CpuCounters counters;
  Bytes bad = FakeKernelRing::sample(1, 0, payload(1, 12));
  const std::uint32_t raw_size = 64;  // runs past the record
  std::memcpy(bad.data() + 24, &raw_size, 4);
  ASSERT_TRUE(fake.write_record(bad));
  ASSERT_TRUE(fake.write_record(FakeKernelRing::sample(2, 0, payload(2, 4))));

  drain_ring(ring, 0, dec, consumer, counters);
  const auto samples = consumer.of(RecordingConsumer::Event::Sample);
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(samples[0].sample.time, 2u);
  EXPECT_EQ(counters.malformed.load(), 1u);
  EXPECT_EQ(counters.samples.load(), 1u);
}

TEST(DrainRing, CorruptionIsCountedAndReportedBeforeThePassEnds) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  const RecordDecoder dec = decoder();
  RecordingConsumer consumer(fake);
  CpuCounters counters;
  const Bytes good = FakeKernelRing::sample(1, 4, payload(1, 12));  // 40 bytes
  ASSERT_TRUE(fake.write_record(good));
  Bytes bad(48);
  perf_event_header header{PERF_RECORD_SAMPLE, 0, 12};  // not a multiple of 8
  std::memcpy(bad.data(), &header, sizeof(header));
  ASSERT_TRUE(fake.write_record(bad));
  ASSERT_TRUE(fake.write_record(FakeKernelRing::sample(2, 4, payload(2, 12))));

  const DrainResult result = drain_ring(ring, 4, dec, consumer, counters);
  EXPECT_TRUE(result.corrupt);
  EXPECT_EQ(result.records, 1u);
  EXPECT_EQ(result.bytes, 40u + 88u);
  ASSERT_EQ(consumer.events.size(), 3u);
  EXPECT_EQ(consumer.events[0].kind, RecordingConsumer::Event::Sample);
  ASSERT_EQ(consumer.events[1].kind, RecordingConsumer::Event::Corruption);
  EXPECT_EQ(consumer.events[1].cpu, 4u);
  EXPECT_EQ(consumer.events[1].corruption.position, 40u);
  EXPECT_EQ(consumer.events[1].corruption.header_size, 12u);
  EXPECT_EQ(consumer.events[1].corruption.bytes_skipped, 88u);
  EXPECT_STREQ(consumer.events[1].corruption.reason, "record size not a multiple of 8");
  EXPECT_EQ(consumer.events[2].kind, RecordingConsumer::Event::PassEnd);
  EXPECT_EQ(counters.corrupt.load(), 1u);
  EXPECT_EQ(counters.corrupt_bytes.load(), 88u);
  EXPECT_EQ(counters.ring_bytes.load(), 128u);
  EXPECT_EQ(fake.tail(), fake.head());

  // The next pass starts clean at head.
  ASSERT_TRUE(fake.write_record(FakeKernelRing::sample(3, 4, payload(3, 12))));
  const DrainResult next = drain_ring(ring, 4, dec, consumer, counters);
  EXPECT_FALSE(next.corrupt);
  EXPECT_EQ(next.records, 1u);
  EXPECT_EQ(counters.corrupt.load(), 1u);
}

TEST(DrainRing, TailMovesOnlyAfterOnPassEndReturns) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  const RecordDecoder dec = decoder();
  RecordingConsumer consumer(fake);
  CpuCounters counters;
  fake.set_position(10 * kPage - 96);  // the second record crosses the end: its view is in the scratch buffer
  std::vector<Bytes> payloads;
  for (std::uint64_t seq = 0; seq < 6; ++seq) {
    payloads.push_back(payload(seq, 20 + 8 * seq));
    ASSERT_TRUE(fake.write_record(FakeKernelRing::sample(seq, 1, payloads.back())));
  }
  const std::uint64_t start = fake.tail();
  const std::uint64_t head = fake.head();

  drain_ring(ring, 1, dec, consumer, counters);
  const auto ends = consumer.of(RecordingConsumer::Event::PassEnd);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(ends[0].tail, start);  // not moved while the consumer could still read the views
  EXPECT_TRUE(consumer.views_intact);
  EXPECT_EQ(consumer.views_checked, 6u);
  std::size_t in_scratch = 0;
  for (const auto& e : consumer.of(RecordingConsumer::Event::Sample)) {
    EXPECT_EQ(e.tail, start);
    const bool in_ring = e.sample.raw.data() >= fake.data() && e.sample.raw.data() < fake.data() + fake.data_size();
    in_scratch += in_ring ? 0 : 1;
  }
  EXPECT_EQ(in_scratch, 1u);
  EXPECT_EQ(fake.tail(), head);
}

TEST(DrainRing, OnPassEndIsCalledOncePerPassEvenWhenEmpty) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  const RecordDecoder dec = decoder();
  RecordingConsumer consumer(fake);
  CpuCounters counters;
  drain_ring(ring, 0, dec, consumer, counters);
  ASSERT_TRUE(fake.write_record(FakeKernelRing::sample(1, 0, payload(1, 4))));
  drain_ring(ring, 0, dec, consumer, counters);
  drain_ring(ring, 0, dec, consumer, counters);
  EXPECT_EQ(consumer.of(RecordingConsumer::Event::PassEnd).size(), 3u);
  EXPECT_EQ(consumer.events.size(), 4u);
  EXPECT_EQ(counters.passes.load(), 3u);
}

TEST(DrainRing, FillBytesAndHighWaterTrackPendingBytesAtPassStart) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  const RecordDecoder dec = decoder();
  RecordingConsumer consumer(fake);
  CpuCounters counters;
  auto write_records = [&](std::size_t records) {  // of 64 bytes each
    for (std::size_t i = 0; i < records; ++i) {
      ASSERT_TRUE(fake.write_record(FakeKernelRing::sample(i, 0, payload(i, 36))));
    }
  };
  write_records(4);
  drain_ring(ring, 0, dec, consumer, counters);
  EXPECT_EQ(counters.fill_bytes.load(), 256u);
  EXPECT_EQ(counters.fill_high_water.load(), 256u);
  write_records(1);
  drain_ring(ring, 0, dec, consumer, counters);
  EXPECT_EQ(counters.fill_bytes.load(), 64u);
  EXPECT_EQ(counters.fill_high_water.load(), 256u);
  write_records(64);  // the whole ring
  drain_ring(ring, 0, dec, consumer, counters);
  EXPECT_EQ(counters.fill_bytes.load(), kPage);
  EXPECT_EQ(counters.fill_high_water.load(), kPage);
  drain_ring(ring, 0, dec, consumer, counters);
  EXPECT_EQ(counters.fill_bytes.load(), 0u);
  EXPECT_EQ(counters.fill_high_water.load(), kPage);
}

TEST(DrainRing, RecordsWrittenDuringADrainWaitForTheNextOne) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  const RecordDecoder dec = decoder();
  CpuCounters counters;
  // A producer faster than the reader: every sample delivered makes it write two more.
  struct Flooding : RecordingConsumer {
    using RecordingConsumer::RecordingConsumer;
    FakeKernelRing* ring = nullptr;
    std::uint64_t next = 100;
    void on_sample(unsigned cpu, const SampleView& sample) override {
      RecordingConsumer::on_sample(cpu, sample);
      for (int i = 0; i < 2; ++i) {
        if (ring->write_record(FakeKernelRing::sample(next, 0, payload(next, 4)))) ++next;
      }
    }
  } consumer(fake);
  consumer.ring = &fake;
  ASSERT_TRUE(fake.write_record(FakeKernelRing::sample(0, 0, payload(0, 4))));
  std::uint64_t expected_records = 1;
  for (int pass = 0; pass < 5; ++pass) {
    const std::uint64_t pending = fake.head() - fake.tail();
    const DrainResult result = drain_ring(ring, 0, dec, consumer, counters);
    EXPECT_EQ(result.bytes, pending);  // what was there when the pass began, nothing more
    EXPECT_EQ(result.records, expected_records);
    expected_records *= 2;
  }
}

// The kernel's side of a full ring (perf_output_begin): a record that does not fit is dropped and counted;
// the count goes out as PERF_RECORD_LOST just before the next record that fits together with it.
class LossyProducer {
 public:
  explicit LossyProducer(FakeKernelRing& fake) : fake_(fake) {}

  void emit(std::size_t payload_size) {
    const Bytes rec = FakeKernelRing::sample(seq_, 0, payload(seq_, payload_size));
    ++seq_;
    if (dropped_ != 0) {
      const Bytes notice = FakeKernelRing::lost(1, dropped_, seq_, 0);
      if (fake_.free_space() < notice.size() + rec.size()) {
        ++dropped_;
        return;
      }
      EXPECT_TRUE(fake_.write_record(notice));
      ++notices_;
      dropped_ = 0;
    }
    if (!fake_.write_record(rec)) ++dropped_;
  }
  // A lost notice for what is still owed, once there is room for it.
  bool flush() {
    if (dropped_ == 0) return true;
    if (!fake_.write_record(FakeKernelRing::lost(1, dropped_, seq_, 0))) return false;
    ++notices_;
    dropped_ = 0;
    return true;
  }
  std::uint64_t attempted() const { return seq_; }
  std::uint64_t notices() const { return notices_; }

 private:
  FakeKernelRing& fake_;
  std::uint64_t seq_ = 0, dropped_ = 0, notices_ = 0;
};

TEST(DrainRing, RingThatFillsUpAccountsForEveryRecordAsDeliveredOrLost) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  const RecordDecoder dec = decoder();
  RecordingConsumer consumer(fake);
  CpuCounters counters;
  LossyProducer producer(fake);
  for (int burst = 0; burst < 50; ++burst) {
    for (int i = 0; i < 150; ++i) producer.emit((burst * 7 + i * 13) % 120);  // ~3 rings' worth per burst
    drain_ring(ring, 0, dec, consumer, counters);
  }
  ASSERT_TRUE(producer.flush());
  drain_ring(ring, 0, dec, consumer, counters);

  const std::uint64_t delivered = counters.samples.load();
  EXPECT_GT(counters.lost.load(), 0u);
  EXPECT_GT(delivered, 0u);
  EXPECT_EQ(delivered + counters.lost.load(), producer.attempted());
  EXPECT_EQ(counters.lost_notices.load(), producer.notices());

  // In ring order, each notice accounts exactly for the gap in sequence numbers that follows it.
  std::uint64_t expected_seq = 0, lost_sum = 0;
  for (const auto& e : consumer.events) {
    if (e.kind == RecordingConsumer::Event::Lost) {
      EXPECT_GT(e.lost.lost, 0u);
      expected_seq += e.lost.lost;
      lost_sum += e.lost.lost;
    } else if (e.kind == RecordingConsumer::Event::Sample) {
      ASSERT_EQ(e.sample.time, expected_seq);
      std::uint64_t stamped = 0;
      std::memcpy(&stamped, e.raw.data(), std::min<std::size_t>(e.raw.size(), 8));
      if (e.raw.size() >= 8) {
        EXPECT_EQ(stamped, expected_seq);
      }
      ++expected_seq;
    }
  }
  EXPECT_EQ(expected_seq, producer.attempted());
  EXPECT_EQ(lost_sum, counters.lost.load());
  EXPECT_EQ(fake.tail(), fake.head());
}

// A payload as the built-in probes write it: u32 kind, then `ts` at `offset`, then filler up to `size`. A
// payload too short to hold all of `ts` gets none of it (filler only past the kind).
Bytes stamped_payload(std::uint32_t kind, std::uint64_t ts, std::size_t offset, std::size_t size) {
  Bytes out(size, std::byte{0x5a});
  std::memcpy(out.data(), &kind, sizeof(kind));
  if (offset + sizeof(ts) <= size) std::memcpy(out.data() + offset, &ts, sizeof(ts));
  return out;
}

RecordDecoder raw_only_decoder() {
  auto d = RecordDecoder::create(PERF_SAMPLE_RAW, true);
  if (!d) throw std::runtime_error(d.error().message());
  return std::move(d).value();
}

TEST(DrainRing, WithoutCpuAndTimeFieldsSamplesGetTheRingsCpuAndTheirPayloadTime) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  const RecordDecoder dec = raw_only_decoder();
  RecordingConsumer consumer(fake);
  CpuCounters counters;
  SampleTiming timing;
  timing.fields = {{4, 24}};  // one event type: its kind is not looked at
  for (std::uint64_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(fake.write_record(FakeKernelRing::raw_sample(stamped_payload(99, 5000 + i, 24, 40))));
  }
  drain_ring(ring, 6, dec, consumer, counters, timing);
  const auto samples = consumer.of(RecordingConsumer::Event::Sample);
  ASSERT_EQ(samples.size(), 3u);
  for (std::uint64_t i = 0; i < 3; ++i) {
    EXPECT_EQ(samples[i].cpu, 6u);
    EXPECT_EQ(samples[i].sample.cpu, 6u);
    EXPECT_EQ(samples[i].sample.time, 5000 + i);
    EXPECT_EQ(samples[i].raw, padded(stamped_payload(99, 5000 + i, 24, 40)));
  }
  EXPECT_EQ(counters.samples.load(), 3u);
}

TEST(DrainRing, SeveralEventTypesFindTheirTimeByKindAndARecordWithoutOneIsTimedAtTheDrain) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  const RecordDecoder dec = raw_only_decoder();
  RecordingConsumer consumer(fake);
  CpuCounters counters;
  SampleTiming timing;
  timing.fields = {{2, 64}, {6, 40}};
  timing.clock = CLOCK_MONOTONIC;
  ASSERT_TRUE(fake.write_record(FakeKernelRing::raw_sample(stamped_payload(2, 111, 64, 80))));
  ASSERT_TRUE(fake.write_record(FakeKernelRing::raw_sample(stamped_payload(6, 222, 40, 48))));
  ASSERT_TRUE(fake.write_record(FakeKernelRing::raw_sample(stamped_payload(6, 333, 40, 44))));  // too short
  ASSERT_TRUE(fake.write_record(FakeKernelRing::raw_sample(stamped_payload(7, 444, 8, 16))));   // no field
  ASSERT_TRUE(fake.write_record(FakeKernelRing::raw_sample({})));                               // kind 0: none
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  const std::uint64_t before = static_cast<std::uint64_t>(now.tv_sec) * 1000000000ull + now.tv_nsec;
  drain_ring(ring, 1, dec, consumer, counters, timing);
  clock_gettime(CLOCK_MONOTONIC, &now);
  const std::uint64_t after = static_cast<std::uint64_t>(now.tv_sec) * 1000000000ull + now.tv_nsec;

  const auto samples = consumer.of(RecordingConsumer::Event::Sample);
  ASSERT_EQ(samples.size(), 5u);
  EXPECT_EQ(samples[0].sample.time, 111u);
  EXPECT_EQ(samples[1].sample.time, 222u);
  // The padding makes the 44-byte payload 44 bytes still (44 + 4 is a multiple of 8): ts would need 48.
  ASSERT_EQ(samples[2].raw.size(), 44u);
  for (std::size_t i = 2; i < 5; ++i) {
    SCOPED_TRACE("sample " + std::to_string(i));
    EXPECT_GE(samples[i].sample.time, before);
    EXPECT_LE(samples[i].sample.time, after);
    EXPECT_EQ(samples[i].sample.time, samples[2].sample.time) << "the clock is read once per pass";
  }
  for (const auto& s : samples) EXPECT_EQ(s.sample.cpu, 1u);
}

TEST(DrainRing, WithoutSampleIdFieldsALossNoticeGetsTheRingsCpuAndTheDrainTime) {
  FakeKernelRing fake(kPage);
  PerfRing ring = wrap(fake);
  const RecordDecoder dec = raw_only_decoder();
  RecordingConsumer consumer(fake);
  CpuCounters counters;
  SampleTiming timing;
  timing.fields = {{4, 8}};
  ASSERT_TRUE(fake.write_record(FakeKernelRing::raw_sample(stamped_payload(4, 10, 8, 16))));
  ASSERT_TRUE(fake.write_record(FakeKernelRing::raw_lost(77, 9)));
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  const std::uint64_t before = static_cast<std::uint64_t>(now.tv_sec) * 1000000000ull + now.tv_nsec;
  drain_ring(ring, 5, dec, consumer, counters, timing);

  const auto lost = consumer.of(RecordingConsumer::Event::Lost);
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].cpu, 5u);
  EXPECT_EQ(lost[0].lost.lost, 9u);
  EXPECT_EQ(lost[0].lost.cpu, 5u) << "not 0: the trailer has no CPU, the ring's is given";
  EXPECT_GE(lost[0].lost.time, before);
  EXPECT_EQ(counters.lost.load(), 9u);
  EXPECT_EQ(counters.lost_notices.load(), 1u);
}

}  // namespace
}  // namespace perfstream
