// perfstream-soak-load: a steady load for the loadgen probe of a running `perfstream record`, for
// scripts/soak.sh. The recorder owns the loadgen program and its maps; this process borrows them:
//
//   perfstream record --probe loadgen ... -- perfstream-soak-load --rate 200000 --seconds 600 --size 64
//
// Started as the recorder's command, it takes the recorder's `loadgen_config` and `loadgen_stats` maps and
// its ps_loadgen program with pidfd_getfd (the recorder is its parent; --recorder PID names another
// process), points loadgen at itself (getppid, one record of --size bytes per call), then calls getppid()
// at --rate calls per second, paced on 1 ms ticks of CLOCK_MONOTONIC, for --seconds. A tick that comes late (the CPU was busy) makes up the calls
// it missed, at most 100 ms worth, so a stall shows as a lower achieved rate rather than a burst that
// overruns the rings. SIGINT and SIGTERM end the run early, as a normal end.
//
// At the end it turns loadgen off, and prints one line on stdout, `soak-load: key=value ...`:
//   calls, seconds, rate      getppid calls made, over how long, and calls per second
//   skipped                   calls given up because a stall left more than 100 ms of them to make up
//   emitted, failed, nospace  loadgen's own per-CPU counters, summed: records it wrote to a ring, writes that
//                             failed, and of those the ones refused by a full ring (the kernel's "lost")
//   misses                    runs of ps_loadgen the kernel skipped (bpf_prog_info.recursion_misses) during the
//                             run, for any process: a call of ours it skipped is in calls but not in emitted
// `emitted` is the truth a recording is checked against: every record in the trace files, and nothing else.
// Errors: one line on stderr, exit 1. Needs what reading another process's fds needs (root).
//
// Like perfstream-libbpf-baseline it uses only libbpf and bpf/events.h, nothing of perfstream.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

extern "C" {
#include <linux/types.h>

#include "events.h"
}

namespace {

volatile sig_atomic_t g_stop = 0;  // set by SIGINT/SIGTERM; the only state a signal handler may touch

void on_signal(int) { g_stop = 1; }

[[noreturn]] void fail(const std::string& what, int err = 0) {
  std::fprintf(stderr, "perfstream-soak-load: %s%s%s\n", what.c_str(), err ? ": " : "", err ? std::strerror(err) : "");
  std::exit(1);
}

std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

// Our copies of the recorder's loadgen fds (-1: not found): its two maps and its program.
struct BorrowedLoadgen {
  int config = -1;
  int stats = -1;
  int prog = -1;
};

// Every BPF map and program the recorder holds is duplicated and named; loadgen's are kept. A recorder with
// loadgen loaded twice would be ambiguous, and is refused.
BorrowedLoadgen borrow_loadgen(pid_t recorder) {
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, recorder, 0));
  if (pidfd < 0) fail("pidfd_open(" + std::to_string(recorder) + ")", errno);
  const std::string dir = "/proc/" + std::to_string(recorder) + "/fd";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) fail("listing " + dir, errno);
  BorrowedLoadgen maps;
  while (dirent* entry = readdir(d)) {
    char target[64] = {};
    const std::string link = dir + "/" + entry->d_name;
    if (readlink(link.c_str(), target, sizeof(target) - 1) < 0) continue;
    const bool is_map = std::string_view(target) == "anon_inode:bpf-map";
    if (!is_map && std::string_view(target) != "anon_inode:bpf-prog") continue;
    const int fd = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, std::atoi(entry->d_name), 0));
    if (fd < 0) fail("pidfd_getfd of the recorder's fd " + std::string(entry->d_name), errno);
    int* slot = nullptr;
    if (is_map) {
      bpf_map_info info{};
      __u32 len = sizeof(info);
      if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) {
        if (std::string_view(info.name) == "loadgen_config") slot = &maps.config;
        if (std::string_view(info.name) == "loadgen_stats") slot = &maps.stats;
      }
    } else {
      bpf_prog_info info{};
      __u32 len = sizeof(info);
      if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && std::string_view(info.name) == "ps_loadgen") {
        slot = &maps.prog;
      }
    }
    if (slot == nullptr) {
      close(fd);
      continue;
    }
    if (*slot >= 0) fail("process " + std::to_string(recorder) + " holds two loadgen probes; which one is ambiguous");
    *slot = fd;
  }
  closedir(d);
  close(pidfd);
  return maps;
}

void configure(int config_fd, const ps_loadgen_config& cfg) {
  const __u32 key = 0;
  if (bpf_map_update_elem(config_fd, &key, &cfg, BPF_ANY) != 0) fail("writing loadgen_config", errno);
}

// How often the kernel skipped the program because a run of it was already active on that CPU (one that was
// preempted, for any process). A skipped run counts nothing: the call is in no loadgen counter.
std::uint64_t recursion_misses(int prog_fd) {
  bpf_prog_info info{};
  __u32 len = sizeof(info);
  if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) != 0) fail("reading ps_loadgen's info", errno);
  return info.recursion_misses;
}

ps_loadgen_stats read_stats(int stats_fd) {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) fail("counting possible CPUs", -cpus);
  static_assert(sizeof(ps_loadgen_stats) % 8 == 0);  // per-CPU values are 8-byte aligned; no padding to skip
  std::vector<ps_loadgen_stats> values(static_cast<std::size_t>(cpus));
  const __u32 key = 0;
  if (bpf_map_lookup_elem(stats_fd, &key, values.data()) != 0) fail("reading loadgen_stats", errno);
  ps_loadgen_stats sum{};
  for (const auto& v : values) {
    sum.emitted += v.emitted;
    sum.failed += v.failed;
    sum.failed_nospace += v.failed_nospace;
  }
  return sum;
}

std::uint64_t number(const char* flag, const char* text) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0') fail(std::string(flag) + " '" + text + "': not a number");
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t rate = 100000, seconds = 10, size = 64;
  pid_t recorder = getppid();
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::printf("usage: perfstream-soak-load [--rate CALLS_PER_S] [--seconds S] [--size BYTES] [--recorder PID]\n");
      return 0;
    }
    if (i + 1 >= argc) fail(std::string(flag) + " needs a value (see --help)");
    const char* value = argv[++i];
    if (flag == "--rate") rate = number("--rate", value);
    else if (flag == "--seconds") seconds = number("--seconds", value);
    else if (flag == "--size") size = number("--size", value);
    else if (flag == "--recorder") recorder = static_cast<pid_t>(number("--recorder", value));
    else fail("unknown flag " + std::string(flag) + " (see --help)");
  }
  if (rate == 0 || rate > 100000000) fail("--rate: between 1 and 100000000 calls per second");
  if (size < PS_LOADGEN_HEADER_SIZE || size > PS_LOADGEN_MAX) {
    fail("--size: between " + std::to_string(PS_LOADGEN_HEADER_SIZE) + " and " + std::to_string(PS_LOADGEN_MAX));
  }

  const BorrowedLoadgen maps = borrow_loadgen(recorder);
  if (maps.config < 0 || maps.stats < 0 || maps.prog < 0) {
    fail("process " + std::to_string(recorder) + " has no loadgen probe loaded (perfstream record --probe loadgen)");
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  ps_loadgen_config cfg{};
  cfg.tgid = static_cast<__u32>(getpid());
  cfg.syscall_nr = SYS_getppid;
  cfg.record_size = static_cast<__u32>(size);
  cfg.records_per_call = 1;
  const std::uint64_t misses_before = recursion_misses(maps.prog);
  configure(maps.config, cfg);

  constexpr std::uint64_t tick_ns = 1000000;
  const std::uint64_t max_backlog = rate / 10 + 1;  // 100 ms of calls
  const std::uint64_t start = now_ns();
  const std::uint64_t end = start + seconds * 1000000000ull;
  std::uint64_t calls = 0;
  std::uint64_t skipped = 0;  // calls given up after a stall longer than 100 ms
  std::uint64_t next_tick = start;
  while (!g_stop) {
    const std::uint64_t now = now_ns();
    if (now >= end) break;
    std::uint64_t due = static_cast<std::uint64_t>(static_cast<double>(rate) * (now - start) / 1e9) - skipped;
    if (due > calls + max_backlog) {
      skipped += due - calls - max_backlog;
      due = calls + max_backlog;
    }
    for (; calls < due; ++calls) syscall(SYS_getppid);
    next_tick += tick_ns;
    if (next_tick < now) next_tick = now + tick_ns;
    timespec ts{static_cast<time_t>(next_tick / 1000000000ull), static_cast<long>(next_tick % 1000000000ull)};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
  }
  const double ran_s = static_cast<double>(now_ns() - start) / 1e9;
  configure(maps.config, ps_loadgen_config{});  // off: nothing this process does from here is recorded
  const ps_loadgen_stats st = read_stats(maps.stats);
  const std::uint64_t misses = recursion_misses(maps.prog) - misses_before;
  std::printf(
      "soak-load: calls=%llu skipped=%llu seconds=%.3f rate=%.0f emitted=%llu failed=%llu nospace=%llu misses=%llu\n",
              static_cast<unsigned long long>(calls), static_cast<unsigned long long>(skipped), ran_s,
              ran_s > 0 ? calls / ran_s : 0.0,
              static_cast<unsigned long long>(st.emitted), static_cast<unsigned long long>(st.failed),
              static_cast<unsigned long long>(st.failed_nospace), static_cast<unsigned long long>(misses));
  return 0;
}
