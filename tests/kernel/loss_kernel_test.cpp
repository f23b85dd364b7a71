// Loss, exactly: what the kernel could not write is reported as lost, with the right count, and nothing
// is reported that was not lost.
#include <unistd.h>

#include <map>

#include "testing/kernel_fixture.hpp"

namespace perfstream::testing {
namespace {

// A small ring and a stalled reader: the producer overruns the ring, the kernel refuses the emits that do
// not fit (-ENOSPC in the BPF program), and reports them with the next record that fits.
TEST(KernelLoss, DeliveredPlusReportedLossEqualsEmittedWithAStalledReader) {
  std::string skip;
  auto probe = load_probe("loadgen", ProbeOptions{}, &skip);
  if (!probe) GTEST_SKIP() << skip;
  EventArrayOptions array_options;
  array_options.size = RingSize{RingSize::Unit::PagesPerCpu, 1};  // 4 KiB of data
  array_options.cpus = CpuSet({0});
  auto collector = Collector::create(*probe, array_options);
  ASSERT_TRUE(collector);
  Loadgen loadgen(*probe);
  loadgen.configure(64);

  // The pool is not started: nobody drains while the producer fills the ring.
  constexpr std::uint64_t kOverrun = 1000;  // ~100 records fit in 4 KiB
  ASSERT_TRUE(loadgen.trigger_on_cpu(0, kOverrun));
  const auto during = loadgen.counts(0);
  ASSERT_GT(during.failed_nospace, 0u) << "the ring never filled up: the test proves nothing";
  EXPECT_EQ(during.failed, during.failed_nospace);

  collector->pool->flush();  // the reader catches up
  // The kernel reports the loss together with the next record that fits.
  constexpr std::uint64_t kAfter = 10;
  ASSERT_TRUE(loadgen.trigger_on_cpu(0, kAfter));
  loadgen.disable();
  probe->detach();
  collector->pool->stop();

  const auto counts = loadgen.counts(0);
  const auto t = tally_loadgen(collector->store.records(), 0);
  EXPECT_EQ(counts.emitted + counts.failed, kOverrun + kAfter);
  EXPECT_EQ(t.delivered, counts.emitted);
  EXPECT_EQ(t.lost, counts.failed_nospace);
  EXPECT_EQ(t.delivered + t.lost, counts.emitted + counts.failed);
  EXPECT_EQ(t.gaps, counts.failed) << "the missing sequence numbers are exactly the failed emits";
  EXPECT_EQ(collector->store.zero_lost_notices(), 0u);
  EXPECT_EQ(collector->stats->snapshot(0).lost, counts.failed_nospace);
  // Full: less than one more record (64 + 32 bytes) of room was left.
  EXPECT_GT(collector->stats->snapshot(0).fill_high_water, 4096u - 96u);
  EXPECT_LE(collector->stats->snapshot(0).fill_high_water, 4096u);
}

TEST(KernelLoss, NoLossNoticeWhenNothingWasLost) {
  std::string skip;
  auto probe = load_probe("loadgen", ProbeOptions{}, &skip);
  if (!probe) GTEST_SKIP() << skip;
  EventArrayOptions array_options;
  array_options.cpus = CpuSet({0});
  auto collector = Collector::create(*probe, array_options);
  ASSERT_TRUE(collector);
  collector->pool->start();
  Loadgen loadgen(*probe);
  loadgen.configure(200);
  ASSERT_TRUE(loadgen.trigger_on_cpu(0, 2000));
  loadgen.disable();
  probe->detach();
  collector->pool->stop();

  const auto counts = loadgen.counts(0);
  EXPECT_EQ(counts.failed, 0u);
  const auto t = tally_loadgen(collector->store.records(), 0);
  EXPECT_EQ(t.delivered, 2000u);
  EXPECT_EQ(t.lost, 0u);
  EXPECT_EQ(collector->stats->snapshot(0).lost_notices, 0u);
  for (const auto& r : collector->store.records()) EXPECT_FALSE(r.is_lost);
}

// Repeated overruns: every loss is reported once, none twice.
TEST(KernelLoss, RepeatedOverrunsAreEachReportedOnce) {
  std::string skip;
  auto probe = load_probe("loadgen", ProbeOptions{}, &skip);
  if (!probe) GTEST_SKIP() << skip;
  EventArrayOptions array_options;
  array_options.size = RingSize{RingSize::Unit::PagesPerCpu, 1};
  array_options.cpus = CpuSet({0});
  auto collector = Collector::create(*probe, array_options);
  ASSERT_TRUE(collector);
  Loadgen loadgen(*probe);
  loadgen.configure(48, 8);
  std::uint64_t attempts = 0;
  for (int round = 0; round < 5; ++round) {
    ASSERT_TRUE(loadgen.trigger_on_cpu(0, 100));
    attempts += 800;
    collector->pool->flush();
  }
  ASSERT_TRUE(loadgen.trigger_on_cpu(0, 1));
  attempts += 8;
  loadgen.disable();
  probe->detach();
  collector->pool->stop();

  const auto counts = loadgen.counts(0);
  const auto t = tally_loadgen(collector->store.records(), 0);
  ASSERT_GT(counts.failed_nospace, 0u);
  EXPECT_EQ(counts.emitted + counts.failed, attempts);
  EXPECT_EQ(t.delivered, counts.emitted);
  EXPECT_EQ(t.lost, counts.failed_nospace);
  EXPECT_EQ(t.gaps, counts.failed);
  EXPECT_EQ(collector->store.zero_lost_notices(), 0u);
}

}  // namespace
}  // namespace perfstream::testing
