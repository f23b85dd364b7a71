// Reading a long recording takes memory that does not grow with it: dump, dump --json and stats on a
// recording of 5 M sched_switch records written through the recorder's own write path (two reader threads,
// watermarks, 1 M records/s) peak under 64 MiB, and on one of 10 M within 10% of that. The real binaries; peak RSS from
// the kernel (the reader's VmHWM as it exits).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "testing/subprocess.hpp"

namespace perfstream::testing {
namespace {

namespace fs = std::filesystem;

struct Peak {
  int exit_status = -1;
  long max_rss_kb = 0;
};

// The VmHWM line of /proc/PID/status, in KiB; 0 when there is none.
long vm_hwm_kb(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return 0;
}

// Runs argv with stdout to /dev/null; its exit status and peak resident set: the VmHWM of its own image,
// read when it exits (traced, stopped at PTRACE_EVENT_EXIT, before its memory is released). Not wait4's
// ru_maxrss: the kernel carries a forked child's high-water mark across exec, and that starts as this test
// process's resident set, so a large test process would be measured instead of the reader.
Peak run_measured(const std::vector<std::string>& argv) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int null = open("/dev/null", O_WRONLY);
    dup2(null, STDOUT_FILENO);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
    execv(args[0], args.data());  // stops with SIGTRAP once the new image is in place
    _exit(127);
  }
  Peak p;
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFSTOPPED(status)) return p;
  ptrace(PTRACE_SETOPTIONS, pid, nullptr, reinterpret_cast<void*>(PTRACE_O_TRACEEXIT));
  ptrace(PTRACE_CONT, pid, nullptr, nullptr);
  while (waitpid(pid, &status, 0) == pid) {
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      p.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    if (!WIFSTOPPED(status)) continue;
    int forward = 0;
    if ((status >> 8) == (SIGTRAP | (PTRACE_EVENT_EXIT << 8))) {
      p.max_rss_kb = vm_hwm_kb(pid);
    } else if (WSTOPSIG(status) != SIGTRAP) {
      forward = WSTOPSIG(status);  // a signal for the reader (SIGPIPE, ...): delivered as without us
    }
    ptrace(PTRACE_CONT, pid, nullptr, reinterpret_cast<void*>(static_cast<long>(forward)));
  }
  return p;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PERFSTREAM_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define PERFSTREAM_SANITIZED 1
#endif
#endif

TEST(ReadMemory, DumpAndStatsPeakUnder64MiBAndDoNotGrowWithTheRecording) {
#if defined(PERFSTREAM_SANITIZED)
  GTEST_SKIP() << "peak RSS is measured in the plain build: a sanitizer's shadow memory is not the reader's";
#endif
  const fs::path dir = fs::temp_directory_path() / ("perfstream-rss-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string one = (dir / "5m.data").string(), two = (dir / "10m.data").string();
  for (const auto& [path, records] : {std::pair{one, "5000000"}, std::pair{two, "10000000"}}) {
    // At 1 M records/s, a rate perf rings reach, so that the writer's 100 ms watermark margin is what it is
    // in a real recording (unpaced, the generator makes 12 M/s, and the margin alone spans 80 MB).
    RunResult made = run({PERFSTREAM_MAKE_RECORDING_PATH, "-o", path, "--records", records, "--cpus", "2",
                          "--readers", "2", "--rate", "1000000"});
    ASSERT_EQ(made.exit_status, 0) << made.err;
  }
  for (const std::vector<std::string>& command :
       {std::vector<std::string>{"dump"}, std::vector<std::string>{"dump", "--json"},
        std::vector<std::string>{"stats"}}) {
    auto argv = [&](const std::string& file) {
      std::vector<std::string> a{perfstream_binary()};
      a.insert(a.end(), command.begin(), command.end());
      a.push_back(file);
      return a;
    };
    const Peak small = run_measured(argv(one));
    const Peak large = run_measured(argv(two));
    const std::string what = command.size() == 2 ? "dump --json" : command[0];
    EXPECT_EQ(small.exit_status, 0) << what;
    EXPECT_EQ(large.exit_status, 0) << what;
    EXPECT_LT(small.max_rss_kb, 64 * 1024) << what << " of 5 M records";
    EXPECT_LT(large.max_rss_kb, 64 * 1024) << what << " of 10 M records";
    EXPECT_LE(large.max_rss_kb, small.max_rss_kb * 11 / 10)
        << what << ": 5 M records " << small.max_rss_kb << " KiB, 10 M " << large.max_rss_kb << " KiB";
    std::cout << what << ": peak RSS " << small.max_rss_kb << " KiB on 5 M records, " << large.max_rss_kb
              << " KiB on 10 M\n";
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
}  // namespace perfstream::testing
