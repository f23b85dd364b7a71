// CPU hotplug in the real kernel: a CPU that goes offline has its ring drained before it is closed; when it
// comes back it gets a new ring and its events resume. Runs where /sys/devices/system/cpu/cpuN/online is
// writable (CPU 0 often is not; the test uses the highest online CPU).
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <chrono>
#include <thread>

#include "collector/read/capture_session.hpp"
#include "testing/kernel_fixture.hpp"

extern "C" {
#include <linux/types.h>
#include "events.h"
}

namespace perfstream::testing {
namespace {

using namespace std::chrono_literals;

// The CPU the test takes offline: the highest online one other than 0, if the kernel lets us.
struct HotplugCpu {
  unsigned cpu = 0;
  std::string skip;
};

HotplugCpu pick_hotplug_cpu() {
  HotplugCpu out;
  auto online = CpuSet::online();
  if (!online || online->size() < 2) {
    out.skip = "needs two online CPUs";
    return out;
  }
  out.cpu = online->max();
  const std::string path = "/sys/devices/system/cpu/cpu" + std::to_string(out.cpu) + "/online";
  if (access(path.c_str(), W_OK) != 0) out.skip = path + " is not writable: this kernel does not allow hotplug here";
  return out;
}

// Brings the CPU back whatever happens in the test.
struct OnlineAgain {
  unsigned cpu;
  ~OnlineAgain() { set_cpu_online(cpu, true); }
};

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds limit = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return condition();
}

TEST(CpuHotplug, OfflineCpuIsDrainedBeforeCloseAndResumesWhenOnline) {
  const HotplugCpu target = pick_hotplug_cpu();
  if (!target.skip.empty()) GTEST_SKIP() << target.skip;
  std::string skip;
  auto probe = load_probe("loadgen", ProbeOptions{}, &skip);
  if (!probe) GTEST_SKIP() << skip;
  ReaderOptions reader_options;
  reader_options.flush_interval = 1h;   // only wakeups and hotplug drain: records sit in the ring
  reader_options.hotplug_interval = 20ms;
  // As record opens them: no PERF_SAMPLE_CPU or TIME; the ring reopened after the CPU returns must still
  // give its records that CPU, and their own ts as time.
  EventArrayOptions array_options;
  array_options.sample_time = false;
  reader_options.timing.fields = {{PS_EVENT_LOADGEN, static_cast<std::uint32_t>(offsetof(ps_loadgen_event, ts))}};
  auto collector = Collector::create(*probe, array_options, reader_options);
  ASSERT_TRUE(collector);
  collector->pool->start();
  Loadgen loadgen(*probe);
  loadgen.configure(64);
  const unsigned cpu = target.cpu;
  OnlineAgain restore{cpu};

  // Below the wakeup size: these records are still in the ring when the CPU goes offline.
  ASSERT_TRUE(loadgen.trigger_on_cpu(cpu, 700));
  ASSERT_EQ(collector->store.samples(), 0u) << "records were drained before the CPU went offline";
  ASSERT_EQ(set_cpu_online(cpu, false), "");
  ASSERT_TRUE(wait_until([&] { return !collector->pool->attached_cpus().contains(cpu); }));
  ASSERT_TRUE(wait_until([&] { return collector->store.ring_closed_count(cpu) == 1; }));
  EXPECT_EQ(tally_loadgen(collector->store.records(), cpu).delivered, 700u);
  EXPECT_FALSE(collector->stats->snapshot(cpu).attached);

  ASSERT_EQ(set_cpu_online(cpu, true), "");
  ASSERT_TRUE(wait_until([&] { return collector->pool->attached_cpus().contains(cpu); }));
  ASSERT_TRUE(loadgen.trigger_on_cpu(cpu, 300));
  loadgen.disable();
  probe->detach();
  collector->pool->stop();

  const auto counts = loadgen.counts(cpu);
  const auto t = tally_loadgen(collector->store.records(), cpu);
  EXPECT_EQ(counts.emitted, 1000u);
  EXPECT_EQ(counts.failed, 0u);
  EXPECT_EQ(t.delivered, 1000u);
  EXPECT_EQ(t.lost, 0u);
  EXPECT_EQ(t.gaps, 0u);
  EXPECT_EQ(collector->stats->snapshot(cpu).attach_count, 2u);
  for (const auto& r : collector->store.records()) {
    LoadgenSample s;
    if (r.is_lost || !parse_loadgen(r.raw, &s)) continue;
    EXPECT_EQ(r.cpu, r.ring_cpu);
    EXPECT_EQ(s.cpu, r.ring_cpu) << "the CPU the program ran on";
    EXPECT_EQ(r.time, s.ts);
  }
  bool logged_offline = false, logged_online = false;
  for (const auto& line : collector->log_lines()) {
    logged_offline |= line.find("CPU " + std::to_string(cpu) + " went offline") != std::string::npos;
    logged_online |= line.find("CPU " + std::to_string(cpu) + " is online") != std::string::npos;
  }
  EXPECT_TRUE(logged_offline);
  EXPECT_TRUE(logged_online);
}

// Offline and back online between two checks: the kernel took the old event off the CPU for good, so the
// check must notice and replace it, or the CPU's events would silently stop.
TEST(CpuHotplug, QuickOfflineOnlineBetweenChecksIsCaught) {
  const HotplugCpu target = pick_hotplug_cpu();
  if (!target.skip.empty()) GTEST_SKIP() << target.skip;
  std::string skip;
  auto probe = load_probe("loadgen", ProbeOptions{}, &skip);
  if (!probe) GTEST_SKIP() << skip;
  ReaderOptions reader_options;
  reader_options.flush_interval = 1h;
  reader_options.hotplug_interval = 1h;  // checks only when the test asks
  auto collector = Collector::create(*probe, EventArrayOptions{}, reader_options);
  ASSERT_TRUE(collector);
  collector->pool->start();
  Loadgen loadgen(*probe);
  loadgen.configure(64);
  const unsigned cpu = target.cpu;
  OnlineAgain restore{cpu};

  ASSERT_TRUE(loadgen.trigger_on_cpu(cpu, 200));
  ASSERT_EQ(set_cpu_online(cpu, false), "");
  ASSERT_EQ(set_cpu_online(cpu, true), "");
  collector->pool->check_hotplug_now();
  ASSERT_TRUE(collector->pool->attached_cpus().contains(cpu));
  ASSERT_TRUE(loadgen.trigger_on_cpu(cpu, 300));
  loadgen.disable();
  probe->detach();
  collector->pool->stop();

  const auto counts = loadgen.counts(cpu);
  const auto t = tally_loadgen(collector->store.records(), cpu);
  EXPECT_EQ(counts.emitted + counts.failed, 500u);
  EXPECT_EQ(counts.failed, 0u) << "emits failed after the CPU came back: its event was not replaced in time";
  EXPECT_EQ(t.delivered, 500u);
  EXPECT_EQ(t.gaps, 0u);
}

// Between a CPU coming back online and the hotplug check that replaces its event, the CPU has no live event:
// bpf_perf_event_output fails there with an error only the program sees, and the kernel reports no loss.
// The built-in probes count those failures themselves (ps_output_failures), and the session's `unwritable`
// must equal loadgen's own count of its failures other than a full ring, exactly, on that CPU.
TEST(CpuHotplug, WritesWithNoLiveEventAfterOnlineAreCountedAsUnwritable) {
  const HotplugCpu target = pick_hotplug_cpu();
  if (!target.skip.empty()) GTEST_SKIP() << target.skip;
  CaptureOptions options;
  options.probes = {"loadgen"};
  options.trace_self = true;  // loadgen is triggered by this process
  options.readers.flush_interval = 1h;
  options.readers.hotplug_interval = 1h;  // checks only when the test asks: the window stays open
  auto session = CaptureSession::open(options);
  if (!session && kernel_refuses_bpf(session.error())) GTEST_SKIP() << session.error().message();
  ASSERT_TRUE(session) << session.error().message();
  RecordStore store;
  ASSERT_TRUE((*session)->start([&](unsigned) { return std::make_unique<StoreConsumer>(store); }));
  Loadgen loadgen(*(*session)->probes().front());
  loadgen.configure(64);
  const unsigned cpu = target.cpu;
  OnlineAgain restore{cpu};

  ASSERT_TRUE(loadgen.trigger_on_cpu(cpu, 200));
  ASSERT_EQ(set_cpu_online(cpu, false), "");
  ASSERT_EQ(set_cpu_online(cpu, true), "");
  ASSERT_TRUE(loadgen.trigger_on_cpu(cpu, 300));  // the old event was stopped by the offline: no live event
  (*session)->pool()->check_hotplug_now();
  ASSERT_TRUE((*session)->pool()->attached_cpus().contains(cpu));
  ASSERT_TRUE(loadgen.trigger_on_cpu(cpu, 100));
  loadgen.disable();
  (*session)->stop();
  EXPECT_EQ((*session)->output_failures_error(), "");

  const auto counts = loadgen.counts(cpu);
  const auto t = tally_loadgen(store.records(), cpu);
  const auto c = (*session)->stats().snapshot(cpu);
  EXPECT_EQ(counts.emitted + counts.failed, 600u);
  EXPECT_GT(counts.failed - counts.failed_nospace, 0u) << "no write failed while the CPU had no live event";
  EXPECT_EQ(c.unwritable, counts.failed - counts.failed_nospace);
  EXPECT_TRUE(c.unwritable_errno == EOPNOTSUPP || c.unwritable_errno == ENOENT) << c.unwritable_errno;
  EXPECT_EQ(t.delivered, counts.emitted);
  EXPECT_EQ(t.lost, counts.failed_nospace);  // the kernel's loss: none here, and not counted twice
  // Every attempt is accounted for: delivered, reported lost by the kernel, or counted unwritable.
  EXPECT_EQ(t.delivered + t.lost + c.unwritable, 600u);
  for (unsigned other = 0; other < (*session)->stats().slots(); ++other) {
    if (other == cpu) continue;
    EXPECT_EQ((*session)->stats().snapshot(other).unwritable, 0u) << "CPU " << other;
  }
}

}  // namespace
}  // namespace perfstream::testing
