// The built-in probes in the real kernel: what a user traces arrives, exactly once, with its fields.
#include <bpf/bpf.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <set>

#include "testing/kernel_fixture.hpp"

extern "C" {
#include <linux/types.h>
#include "events.h"
}

namespace perfstream::testing {
namespace {

std::string c_string(const char* bytes, std::size_t max) { return std::string(bytes, strnlen(bytes, max)); }

TEST(OpenatProbe, DeliversExactlyThePathsTheTestOpened) {
  std::string skip;
  ProbeOptions options;
  options.filter_tgid = static_cast<std::uint32_t>(getpid());
  auto probe = load_probe("openat", options, &skip);
  if (!probe) GTEST_SKIP() << skip;
  auto collector = Collector::create(*probe, EventArrayOptions{});
  ASSERT_TRUE(collector);
  collector->pool->start();

  const auto dir = std::filesystem::temp_directory_path() / ("perfstream-openat-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  constexpr int kFiles = 300;
  std::set<std::string> expected;
  for (int i = 0; i < kFiles; ++i) {
    // Varying lengths, so the samples' sizes vary.
    std::string path = (dir / ("f" + std::to_string(i) + std::string(i % 37, 'x'))).string();
    int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
    close(fd);
    expected.insert(path);
  }
  probe->detach();
  collector->pool->stop();

  std::multiset<std::string> seen;
  std::size_t other_paths = 0;
  for (const auto& r : collector->store.records()) {
    ASSERT_FALSE(r.is_lost);
    ASSERT_GE(r.raw.size(), PS_OPENAT_HEADER_SIZE);
    ps_openat_event e{};
    std::memcpy(&e, r.raw.data(), std::min(r.raw.size(), sizeof(e)));
    ASSERT_EQ(e.kind, PS_EVENT_OPENAT);
    EXPECT_EQ(e.pid, static_cast<__u32>(getpid()));
    ASSERT_GT(e.path_len, 0u);
    ASSERT_LE(PS_OPENAT_HEADER_SIZE + e.path_len, r.raw.size());
    EXPECT_EQ(e.path[e.path_len - 1], '\0');
    // The sample holds only the bytes the program filled, plus at most 7 bytes of kernel padding.
    EXPECT_LT(r.raw.size(), PS_OPENAT_HEADER_SIZE + e.path_len + 8);
    std::string path(e.path, e.path_len - 1);
    if (path.rfind(dir.string(), 0) == 0) {
      seen.insert(path);
      EXPECT_EQ(e.flags & (O_CREAT | O_WRONLY), O_CREAT | O_WRONLY);
      EXPECT_EQ(e.mode, 0600u);
    } else {
      ++other_paths;  // the test binary's own runtime may open files too
    }
  }
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(kFiles));
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), expected);
  EXPECT_EQ(collector->store.lost(), 0u);
  EXPECT_EQ(collector->stats->total().lost, 0u);
  EXPECT_EQ(collector->stats->total().samples, kFiles + other_paths);
  std::filesystem::remove_all(dir);
}

TEST(ExecProbe, SeesBinTrueWithItsFilenameAndParent) {
  std::string skip;
  auto probe = load_probe("exec", ProbeOptions{}, &skip);
  if (!probe) GTEST_SKIP() << skip;
  auto collector = Collector::create(*probe, EventArrayOptions{});
  ASSERT_TRUE(collector);
  collector->pool->start();

  pid_t child = 0;
  char arg0[] = "/bin/true";
  char* argv[] = {arg0, nullptr};
  ASSERT_EQ(posix_spawn(&child, "/bin/true", nullptr, nullptr, argv, environ), 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  probe->detach();
  collector->pool->stop();

  int matches = 0;
  for (const auto& r : collector->store.records()) {
    if (r.is_lost) continue;
    ps_exec_event e{};
    std::memcpy(&e, r.raw.data(), std::min(r.raw.size(), sizeof(e)));
    ASSERT_EQ(e.kind, PS_EVENT_EXEC);
    if (e.pid != static_cast<__u32>(child)) continue;
    ++matches;
    EXPECT_EQ(e.ppid, static_cast<__u32>(getpid()));
    EXPECT_EQ(e.uid, getuid());
    // The file name, then argv: just argv[0].
    ASSERT_EQ(e.filename_len, sizeof("/bin/true") * 2);
    EXPECT_EQ(std::string(e.filename), "/bin/true");
    EXPECT_EQ(std::string(e.filename + sizeof("/bin/true")), "/bin/true");
    EXPECT_EQ(e.args_count, 1u);
    EXPECT_EQ(e.ret, 0);
    EXPECT_EQ(c_string(e.comm, sizeof(e.comm)), "true");
    EXPECT_LT(r.raw.size(), PS_EXEC_HEADER_SIZE + e.filename_len + 8);
  }
  EXPECT_EQ(matches, 1);
}

TEST(SchedSwitchProbe, RecordsFixedSizeSwitchesWithTheTracepointFields) {
  std::string skip;
  auto probe = load_probe("sched_switch", ProbeOptions{}, &skip);
  if (!probe) GTEST_SKIP() << skip;
  auto collector = Collector::create(*probe, EventArrayOptions{});
  ASSERT_TRUE(collector);
  collector->pool->start();
  for (int i = 0; i < 50; ++i) usleep(1000);  // each sleep switches this thread out and back in
  probe->detach();
  collector->pool->stop();

  const auto tid = static_cast<__s32>(syscall(SYS_gettid));
  int out_of_us = 0, asleep = 0;
  for (const auto& r : collector->store.records()) {
    if (r.is_lost) continue;
    ASSERT_EQ(r.raw.size(), ((sizeof(ps_sched_switch_event) + 4 + 7) & ~std::size_t{7}) - 4);
    ps_sched_switch_event e{};
    std::memcpy(&e, r.raw.data(), sizeof(e));
    ASSERT_EQ(e.kind, PS_EVENT_SCHED_SWITCH);
    if (e.prev_pid == tid) {
      ++out_of_us;
      // Each usleep leaves in TASK_INTERRUPTIBLE (S, 1); on a busy machine the thread may also be
      // preempted while running (R, 0).
      EXPECT_TRUE(e.prev_state == 1 || e.prev_state == 0) << "prev_state " << e.prev_state;
      asleep += e.prev_state == 1;
    }
  }
  EXPECT_GE(out_of_us, 50);
  EXPECT_GE(asleep, 50) << "every usleep switches this thread out asleep";
  EXPECT_EQ(collector->stats->total().lost, 0u);
}

TEST(LoadgenProbe, EveryCpuDeliversExactlyWhatItsBpfCounterReports) {
  std::string skip;
  auto probe = load_probe("loadgen", ProbeOptions{}, &skip);
  if (!probe) GTEST_SKIP() << skip;
  auto collector = Collector::create(*probe, EventArrayOptions{});
  ASSERT_TRUE(collector);
  collector->pool->start();
  Loadgen loadgen(*probe);
  loadgen.configure(100, 4);

  const auto cpus = collector->array->candidates().intersect(*CpuSet::online()).cpus();
  constexpr std::uint64_t kCalls = 20000;
  for (unsigned cpu : cpus) ASSERT_TRUE(loadgen.trigger_on_cpu(cpu, kCalls)) << "could not pin to CPU " << cpu;
  // The kernel reports a loss with the next record that fits: one more call per CPU after a flush makes
  // every loss of the run visible.
  collector->pool->flush();
  for (unsigned cpu : cpus) ASSERT_TRUE(loadgen.trigger_on_cpu(cpu, 1));
  loadgen.disable();
  probe->detach();
  collector->pool->stop();

  std::map<unsigned, std::vector<std::uint64_t>> seqs;
  std::map<unsigned, std::uint64_t> lost;
  for (const auto& r : collector->store.records()) {
    if (r.is_lost) {
      lost[r.ring_cpu] += r.lost;
      continue;
    }
    LoadgenSample s;
    ASSERT_TRUE(parse_loadgen(r.raw, &s));
    EXPECT_EQ(s.cpu, r.ring_cpu);
    EXPECT_EQ(r.cpu, r.ring_cpu);
    EXPECT_EQ(s.size, 100u);
    seqs[r.ring_cpu].push_back(s.seq);
  }
  for (unsigned cpu : cpus) {
    const auto counts = loadgen.counts(cpu);
    EXPECT_EQ(counts.emitted + counts.failed, (kCalls + 1) * 4) << "CPU " << cpu;
    EXPECT_EQ(seqs[cpu].size(), counts.emitted) << "CPU " << cpu;
    EXPECT_EQ(lost[cpu], counts.failed_nospace) << "CPU " << cpu;
    EXPECT_EQ(collector->stats->snapshot(cpu).samples, counts.emitted);
    // In ring order, sequence numbers only go up.
    EXPECT_TRUE(std::is_sorted(seqs[cpu].begin(), seqs[cpu].end())) << "CPU " << cpu;
  }
}

TEST(PerfEventArray, RefusesAMapSmallerThanTheCpusWithTheLimitNamed) {
  std::string skip;
  ProbeOptions options;
  options.attach = false;
  auto probe = load_probe("loadgen", options, &skip);
  if (!probe) GTEST_SKIP() << skip;
  int small = bpf_map_create(BPF_MAP_TYPE_PERF_EVENT_ARRAY, "small", 4, 4, 1, nullptr);
  ASSERT_GE(small, 0);
  auto possible = CpuSet::possible();
  ASSERT_TRUE(possible);
  if (possible->max() == 0) GTEST_SKIP() << "one possible CPU: every map is big enough";
  auto array = PerfEventArray::create(small, "small", EventArrayOptions{});
  close(small);
  ASSERT_FALSE(array);
  EXPECT_NE(array.error().message().find("max_entries 1"), std::string::npos) << array.error().message();
  EXPECT_NE(array.error().message().find("-C"), std::string::npos) << array.error().message();
}

}  // namespace
}  // namespace perfstream::testing

namespace perfstream::testing {
namespace {

// Without CAP_IPC_LOCK, perf rings count against kernel.perf_event_mlock_kb (per user) plus RLIMIT_MEMLOCK.
// A ring over both must fail with an error that names both limits and what to raise.
TEST(PerfEventArray, LockedMemoryLimitErrorNamesBothLimits) {
  std::string skip;
  ProbeOptions options;
  options.attach = false;
  auto probe = load_probe("loadgen", options, &skip);
  if (!probe) GTEST_SKIP() << skip;
  const int map_fd = probe->events_map_fd();
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(pipefd[0]);
    // Drop CAP_IPC_LOCK from the effective set, and lock nothing beyond the per-user perf allowance.
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    syscall(SYS_capget, &header, data);
    data[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
    syscall(SYS_capset, &header, data);
    rlimit none{0, 0};
    setrlimit(RLIMIT_MEMLOCK, &none);
    EventArrayOptions array_options;
    array_options.size = RingSize{RingSize::Unit::BytesPerCpu, 64u << 20};  // far above perf_event_mlock_kb
    auto array = PerfEventArray::create(map_fd, "events", array_options);
    const std::string message = array ? std::string("created") : array.error().message();
    (void)!write(pipefd[1], message.data(), message.size());
    _exit(0);
  }
  close(pipefd[1]);
  std::string message;
  char buf[1024];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof(buf))) > 0) message.append(buf, static_cast<std::size_t>(n));
  close(pipefd[0]);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_NE(message, "created") << "a 64 MiB ring was mapped without CAP_IPC_LOCK: the limit is not enforced here";
  EXPECT_NE(message.find("Operation not permitted"), std::string::npos) << message;
  EXPECT_NE(message.find("perf_event_mlock_kb"), std::string::npos) << message;
  EXPECT_NE(message.find("RLIMIT_MEMLOCK"), std::string::npos) << message;
  EXPECT_NE(message.find("CPU "), std::string::npos) << message;
}

}  // namespace
}  // namespace perfstream::testing
