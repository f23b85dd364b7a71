// The cheap producer in the real kernel: perf events opened without PERF_SAMPLE_CPU and PERF_SAMPLE_TIME
// still give every record the CPU that wrote it and a time on the recording's clock, taken from the
// payload's BPF-written `ts`; loss notices get the ring's CPU and the drain's time.
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

#include "collector/read/capture_session.hpp"
#include "collector/util/clock.hpp"
#include "testing/kernel_fixture.hpp"

extern "C" {
#include <linux/types.h>
#include "events.h"
}

namespace perfstream::testing {
namespace {

EventArrayOptions cheap_array(std::optional<CpuSet> cpus = std::nullopt) {
  EventArrayOptions options;
  options.sample_time = false;
  options.cpus = std::move(cpus);
  return options;
}

ReaderOptions loadgen_timing() {
  ReaderOptions options;
  options.timing.fields = {{PS_EVENT_LOADGEN, static_cast<std::uint32_t>(offsetof(ps_loadgen_event, ts))}};
  options.timing.clock = CLOCK_MONOTONIC;
  return options;
}

std::uint64_t monotonic_ns() { return clock_ns(CLOCK_MONOTONIC); }

TEST(CheapSampleType, EveryRecordHasItsRingsCpuAndItsPayloadTimeInOrderAcrossCpus) {
  std::string skip;
  auto probe = load_probe("loadgen", ProbeOptions{}, &skip);
  if (!probe) GTEST_SKIP() << skip;
  auto collector = Collector::create(*probe, cheap_array(), loadgen_timing());
  ASSERT_TRUE(collector);
  EXPECT_EQ(collector->array->sample_type(), std::uint64_t{PERF_SAMPLE_RAW});
  collector->pool->start();
  Loadgen loadgen(*probe);
  loadgen.configure(64, 2);

  // One CPU after the other, each window bounded by the clock: the records of a later window must all be
  // later than every record of an earlier one, whichever ring they are on.
  const auto cpus = collector->array->candidates().intersect(*CpuSet::online()).cpus();
  constexpr std::uint64_t kCalls = 1500;  // 3000 records of 72 bytes (64 + 8) per CPU: they fit in the ring
  std::map<unsigned, std::pair<std::uint64_t, std::uint64_t>> window;
  for (unsigned cpu : cpus) {
    const std::uint64_t before = monotonic_ns();
    ASSERT_TRUE(loadgen.trigger_on_cpu(cpu, kCalls)) << "could not pin to CPU " << cpu;
    window[cpu] = {before, monotonic_ns()};
  }
  loadgen.disable();
  probe->detach();
  collector->pool->stop();

  std::map<unsigned, std::vector<std::uint64_t>> times;
  for (const auto& r : collector->store.records()) {
    ASSERT_FALSE(r.is_lost) << "nothing was lost: the ring holds every record";
    LoadgenSample s;
    ASSERT_TRUE(parse_loadgen(r.raw, &s));
    EXPECT_EQ(s.cpu, r.ring_cpu) << "the CPU the BPF program ran on";
    EXPECT_EQ(r.cpu, r.ring_cpu) << "no PERF_SAMPLE_CPU: the drain gives the ring's CPU";
    EXPECT_EQ(r.time, s.ts) << "no PERF_SAMPLE_TIME: the time is the payload's ts";
    EXPECT_GE(r.time, window[r.ring_cpu].first) << "CPU " << r.ring_cpu << ": the recording's clock";
    EXPECT_LE(r.time, window[r.ring_cpu].second) << "CPU " << r.ring_cpu << ": the recording's clock";
    times[r.ring_cpu].push_back(r.time);
  }
  std::uint64_t previous_max = 0;
  for (unsigned cpu : cpus) {
    const auto counts = loadgen.counts(cpu);
    EXPECT_EQ(counts.emitted, kCalls * 2) << "CPU " << cpu;
    EXPECT_EQ(counts.failed, 0u) << "CPU " << cpu;
    ASSERT_EQ(times[cpu].size(), kCalls * 2) << "CPU " << cpu;
    EXPECT_TRUE(std::is_sorted(times[cpu].begin(), times[cpu].end())) << "CPU " << cpu << ": in ring order";
    EXPECT_GT(times[cpu].front(), previous_max) << "CPU " << cpu << " ran after the CPUs before it";
    previous_max = times[cpu].back();
  }
}

// A loss notice carries no sample_id fields with this sample_type: it is attributed to the ring's CPU and
// timed when the drain read it, after the loss and no later than the end of the drain.
TEST(CheapSampleType, LossNoticeHasTheRingsCpuAndTheDrainTime) {
  std::string skip;
  auto probe = load_probe("loadgen", ProbeOptions{}, &skip);
  if (!probe) GTEST_SKIP() << skip;
  const auto online = CpuSet::online();
  ASSERT_TRUE(online);
  const unsigned cpu = online->max();  // not CPU 0, where it can be: a CPU number of 0 proves less
  EventArrayOptions array_options = cheap_array(CpuSet({cpu}));
  array_options.size = RingSize{RingSize::Unit::PagesPerCpu, 1};
  auto collector = Collector::create(*probe, array_options, loadgen_timing());
  ASSERT_TRUE(collector);
  Loadgen loadgen(*probe);
  loadgen.configure(64);

  // The pool is not started: nobody drains while the producer overruns the ring.
  ASSERT_TRUE(loadgen.trigger_on_cpu(cpu, 1000));
  const std::uint64_t overrun_end = monotonic_ns();
  ASSERT_GT(loadgen.counts(cpu).failed_nospace, 0u) << "the ring never filled up: the test proves nothing";
  collector->pool->flush();
  ASSERT_TRUE(loadgen.trigger_on_cpu(cpu, 10));  // the kernel reports the loss with the next record that fits
  loadgen.disable();
  probe->detach();
  collector->pool->stop();
  const std::uint64_t drained = monotonic_ns();

  std::uint64_t lost = 0;
  std::size_t notices = 0;
  for (const auto& r : collector->store.records()) {
    EXPECT_EQ(r.ring_cpu, cpu);
    EXPECT_EQ(r.cpu, cpu);
    if (!r.is_lost) continue;
    ++notices;
    lost += r.lost;
    EXPECT_GE(r.time, overrun_end) << "a loss notice is timed when it is drained";
    EXPECT_LE(r.time, drained);
  }
  EXPECT_GE(notices, 1u);
  EXPECT_EQ(lost, loadgen.counts(cpu).failed_nospace);
}

// The decision a capture makes: with every event type's `ts`, no PERF_SAMPLE_TIME (nor CPU) and the field
// named; forced to the kernel's time, PERF_SAMPLE_TIME and no field.
TEST(CheapSampleType, CaptureSessionDropsTimeOnlyWhenEveryEventHasItsTimestampUnlessToldNot) {
  CaptureOptions options;
  options.probes = {"openat", "fork"};  // ts at different offsets: chosen by kind
  options.trace_self = true;            // the forks are this process's
  auto session = CaptureSession::open(options);
  if (!session && kernel_refuses_bpf(session.error())) GTEST_SKIP() << session.error().message();
  ASSERT_TRUE(session) << session.error().message();
  EXPECT_EQ((*session)->array().sample_type(), std::uint64_t{PERF_SAMPLE_RAW});
  EXPECT_EQ((*session)->time_field(), "ts");

  RecordStore store;
  ASSERT_TRUE((*session)->start([&](unsigned) { return std::make_unique<StoreConsumer>(store); }));
  const std::uint64_t before = monotonic_ns();
  const auto dir = std::filesystem::temp_directory_path() / ("perfstream-cheap-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  for (int i = 0; i < 20; ++i) {
    const pid_t child = fork();
    if (child == 0) {
      std::ofstream((dir / ("f" + std::to_string(i))).string()) << i;
      _exit(0);
    }
    ASSERT_GT(child, 0);
    int status = 0;
    waitpid(child, &status, 0);
  }
  (*session)->stop();
  const std::uint64_t after = monotonic_ns();
  std::filesystem::remove_all(dir);

  std::size_t our_forks = 0;
  for (const auto& r : store.records()) {
    if (r.is_lost) continue;
    ASSERT_GE(r.raw.size(), 4u);
    std::uint32_t kind = 0;
    std::memcpy(&kind, r.raw.data(), sizeof(kind));
    std::uint64_t ts = 0;
    if (kind == PS_EVENT_OPENAT) {
      ASSERT_GE(r.raw.size(), offsetof(ps_openat_event, ts) + 8);
      std::memcpy(&ts, r.raw.data() + offsetof(ps_openat_event, ts), sizeof(ts));
    } else {
      ASSERT_EQ(kind, std::uint32_t{PS_EVENT_FORK});
      ASSERT_GE(r.raw.size(), sizeof(ps_fork_event));
      ps_fork_event e{};
      std::memcpy(&e, r.raw.data(), sizeof(e));
      ts = e.ts;
      if (e.parent_pid == static_cast<__u32>(getpid()) && e.child_pid != e.parent_pid) {  // not a reader thread
        ++our_forks;
        EXPECT_GE(r.time, before) << "the recording's clock";
        EXPECT_LE(r.time, after) << "the recording's clock";
      }
    }
    EXPECT_EQ(r.time, ts) << "kind " << kind;
    EXPECT_EQ(r.cpu, r.ring_cpu);
  }
  EXPECT_EQ(our_forks, 20u);

  options.sample_time = SampleTimeSource::Kernel;
  session->reset();
  auto kernel_time = CaptureSession::open(options);
  ASSERT_TRUE(kernel_time) << kernel_time.error().message();
  EXPECT_EQ((*kernel_time)->array().sample_type(), std::uint64_t{PERF_SAMPLE_RAW | PERF_SAMPLE_TIME});
  EXPECT_EQ((*kernel_time)->time_field(), "");
}

}  // namespace
}  // namespace perfstream::testing
