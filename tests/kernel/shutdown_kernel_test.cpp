// Shutdown and signals: stop() delivers what was emitted just before it; signals that interrupt the readers'
// waits lose nothing.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <thread>

#include "testing/kernel_fixture.hpp"

namespace perfstream::testing {
namespace {

using namespace std::chrono_literals;

TEST(Shutdown, RecordsEmittedJustBeforeStopAreDelivered) {
  std::string skip;
  auto probe = load_probe("loadgen", ProbeOptions{}, &skip);
  if (!probe) GTEST_SKIP() << skip;
  ReaderOptions reader_options;
  reader_options.flush_interval = 1h;  // no timer drain: only stop() can deliver these
  auto collector = Collector::create(*probe, EventArrayOptions{}, reader_options);
  ASSERT_TRUE(collector);
  collector->pool->start();
  Loadgen loadgen(*probe);
  loadgen.configure(120);
  ASSERT_TRUE(loadgen.trigger_on_cpu(0, 300));  // ~38 KiB, below the 128 KiB wakeup
  EXPECT_EQ(collector->store.samples(), 0u);
  probe->detach();
  collector->pool->stop();
  EXPECT_EQ(loadgen.counts(0).emitted, 300u);
  EXPECT_EQ(collector->store.samples(), 300u);
  EXPECT_EQ(collector->store.ring_closed_count(0), 1u);
}

TEST(Shutdown, FlushDeliversRecordsBelowTheWakeupSize) {
  std::string skip;
  auto probe = load_probe("loadgen", ProbeOptions{}, &skip);
  if (!probe) GTEST_SKIP() << skip;
  ReaderOptions reader_options;
  reader_options.flush_interval = 1h;
  auto collector = Collector::create(*probe, EventArrayOptions{}, reader_options);
  ASSERT_TRUE(collector);
  collector->pool->start();
  Loadgen loadgen(*probe);
  loadgen.configure(64);
  ASSERT_TRUE(loadgen.trigger_on_cpu(0, 10));
  collector->pool->flush();
  EXPECT_EQ(collector->store.samples(), 10u);
  loadgen.disable();
  probe->detach();
}

TEST(Shutdown, TimerDeliversTrickleBelowTheWakeupSize) {
  std::string skip;
  auto probe = load_probe("loadgen", ProbeOptions{}, &skip);
  if (!probe) GTEST_SKIP() << skip;
  ReaderOptions reader_options;
  reader_options.flush_interval = 20ms;
  auto collector = Collector::create(*probe, EventArrayOptions{}, reader_options);
  ASSERT_TRUE(collector);
  collector->pool->start();
  Loadgen loadgen(*probe);
  loadgen.configure(64);
  ASSERT_TRUE(loadgen.trigger_on_cpu(0, 5));
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (collector->store.samples() < 5 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(collector->store.samples(), 5u);
  loadgen.disable();
  probe->detach();
}

void ignore_signal(int) {}

TEST(Shutdown, SignalsInterruptingTheReadersLoseNothing) {
  std::string skip;
  auto probe = load_probe("loadgen", ProbeOptions{}, &skip);
  if (!probe) GTEST_SKIP() << skip;
  struct sigaction action {};
  action.sa_handler = ignore_signal;  // no SA_RESTART: blocking calls return EINTR
  struct sigaction previous {};
  ASSERT_EQ(sigaction(SIGUSR1, &action, &previous), 0);

  ReaderOptions reader_options;
  reader_options.threads = 2;
  reader_options.flush_interval = 5ms;
  auto collector = Collector::create(*probe, EventArrayOptions{}, reader_options);
  ASSERT_TRUE(collector);
  collector->pool->start();
  Loadgen loadgen(*probe);
  loadgen.configure(64, 16);

  std::atomic<bool> done{false};
  std::thread signaller([&] {
    while (!done.load()) {
      kill(getpid(), SIGUSR1);  // lands on any thread that does not block it, readers included
      std::this_thread::sleep_for(100us);
    }
  });
  ASSERT_TRUE(loadgen.trigger_on_cpu(0, 20000));
  collector->pool->flush();
  ASSERT_TRUE(loadgen.trigger_on_cpu(0, 1));  // reports any loss of the run
  done = true;
  signaller.join();
  loadgen.disable();
  probe->detach();
  collector->pool->stop();
  sigaction(SIGUSR1, &previous, nullptr);

  const auto counts = loadgen.counts(0);
  EXPECT_EQ(counts.emitted + counts.failed, 20001u * 16);
  EXPECT_EQ(collector->store.samples(), counts.emitted);
  EXPECT_EQ(collector->store.lost(), counts.failed_nospace);
}

// Holds its reader thread for `hold` in the first sample it is given, and says when it starts to.
class HoldingConsumer : public RecordConsumer {
 public:
  HoldingConsumer(std::atomic<bool>& holding, std::chrono::milliseconds hold) : holding_(holding), hold_(hold) {}
  void on_sample(unsigned, const SampleView&) override {
    if (held_) return;
    held_ = true;
    holding_ = true;
    std::this_thread::sleep_for(hold_);
  }
  void on_lost(unsigned, const LostView&) override {}

 private:
  std::atomic<bool>& holding_;
  std::chrono::milliseconds hold_;
  bool held_ = false;
};

// The flush timer expires while a ring's wakeup handler is busy and stop() is called meanwhile: the
// timer's completion is queued behind the pool's finish, so it runs after the timer was cancelled, with no
// error. It must not arm the timer again, or the reader's run() never returns and stop() hangs for good
// (seen in CI: a capture that never ended).
TEST(Shutdown, StopReturnsWhenTheFlushTimerExpiredDuringTheLastHandler) {
  std::string skip;
  auto probe = load_probe("loadgen", ProbeOptions{}, &skip);
  if (!probe) GTEST_SKIP() << skip;
  EventArrayOptions array_options;
  array_options.wakeup_bytes = 1;  // every record wakes its reader: the record is drained by the wakeup handler
  auto array = PerfEventArray::create(probe->events_map_fd(), probe->events_map_name(), array_options);
  ASSERT_TRUE(array) << array.error().message();
  auto possible = CpuSet::possible();
  ASSERT_TRUE(possible);
  RingStats stats(possible->max() + 1);
  ReaderOptions reader_options;
  reader_options.flush_interval = 20ms;  // expires during the 200 ms hold
  reader_options.hotplug_interval = 0ms;
  std::atomic<bool> holding{false};
  auto pool = ReaderPool::create(
      **array, reader_options, [&](unsigned) { return std::make_unique<HoldingConsumer>(holding, 200ms); }, stats);
  ASSERT_TRUE(pool) << pool.error().message();
  (*pool)->start();
  Loadgen loadgen(*probe);
  loadgen.configure(64);
  ASSERT_TRUE(loadgen.trigger_on_cpu(0, 1));
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!holding && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(holding) << "the record never reached the consumer";
  loadgen.disable();
  probe->detach();
  auto stopped = std::async(std::launch::async, [&] { (*pool)->stop(); });
  if (stopped.wait_for(10s) != std::future_status::ready) {
    // The reader thread cannot be joined: report and leave, rather than hang until the suite's timeout.
    std::fprintf(stderr, "FAILED: ReaderPool::stop() had not returned after 10 s: the reader re-armed its flush "
                         "timer after finish\n");
    std::fflush(stderr);
    std::_Exit(1);
  }
  EXPECT_EQ(stats.cpu(0).attached.load(), 0u);
}

}  // namespace
}  // namespace perfstream::testing
