// perfstream record / dump / stats end to end, as a user runs them: the real binary, the real kernel, real
// files. Needs root (it loads BPF); skips only when the kernel refuses BPF.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <thread>

#include "testing/kernel_fixture.hpp"
#include "testing/scoped_mount.hpp"
#include "testing/subprocess.hpp"

namespace perfstream::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

class RecordEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("perfstream-e2e-" + std::to_string(getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // Skips the test when the kernel refuses BPF (the recorder says so); fails on any other error.
  bool wait_for_recording(Background& recorder, const fs::path& file) {
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (fs::exists(file) && fs::file_size(file) > 16) return true;
      if (recorder.exited()) return false;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }
  fs::path dir_;
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream ss(text);
  std::string line;
  while (std::getline(ss, line)) lines.push_back(line);
  return lines;
}

TEST_F(RecordEndToEnd, OpenatRecordingHoldsExactlyTheOpenedPathsWithTheirPid) {
  const fs::path trace = dir_ / "openat.data";
  Background recorder({perfstream_binary(), "record", "--probe", "openat", "-p", std::to_string(getpid()), "-o",
                       trace.string(), "--quiet"});
  if (!wait_for_recording(recorder, trace)) {
    RunResult r = recorder.wait();
    if (r.err.find("refused") != std::string::npos || r.err.find("Operation not permitted") != std::string::npos) {
      GTEST_SKIP() << "the kernel refuses BPF here: " << r.err;
    }
    FAIL() << "the recorder did not start: exit " << r.exit_status << ": " << r.err;
  }
  constexpr int kFiles = 250;
  std::set<std::string> expected;
  for (int i = 0; i < kFiles; ++i) {
    const std::string path = (dir_ / ("file-" + std::to_string(i) + std::string(i % 23, 'y'))).string();
    int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    close(fd);
    expected.insert(path);
  }
  RunResult rec = recorder.stop(SIGINT);
  ASSERT_EQ(rec.exit_status, 0) << rec.err;

  // Format version 3: the payloads travel in column groups and the times in byte planes; the paths below
  // come back byte for byte.
  {
    std::ifstream in(trace, std::ios::binary);
    char head[12] = {};
    in.read(head, sizeof(head));
    EXPECT_EQ(std::string(head + 8, 4), std::string("\x03\x00\x00\x00", 4));
  }
  RunResult dump = run({perfstream_binary(), "dump", "--json", trace.string()});
  ASSERT_EQ(dump.exit_status, 0) << dump.err;
  const std::regex path_re("\"path\":\"([^\"]*)\"");
  const std::regex pid_re("\"pid\":([0-9]+)");
  std::multiset<std::string> seen;
  std::size_t openat_lines = 0;
  for (const auto& line : lines_of(dump.out)) {
    ASSERT_EQ(line.find("\"lost\""), std::string::npos) << line;
    if (line.find("\"event\":\"openat\"") == std::string::npos) continue;
    ++openat_lines;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(line, m, pid_re)) << line;
    EXPECT_EQ(m[1].str(), std::to_string(getpid())) << line;
    ASSERT_TRUE(std::regex_search(line, m, path_re)) << line;
    if (m[1].str().rfind(dir_.string(), 0) == 0) seen.insert(m[1].str());
  }
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(kFiles));
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), expected);

  RunResult stats = run({perfstream_binary(), "stats", "--json", trace.string()});
  ASSERT_EQ(stats.exit_status, 0) << stats.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(stats.out, m, std::regex("\"records\":([0-9]+)"))) << stats.out;
  EXPECT_EQ(std::stoull(m[1].str()), openat_lines) << "stats and dump disagree";
}

TEST_F(RecordEndToEnd, RunsACommandAndStopsWhenItExits) {
  const fs::path trace = dir_ / "exec.data";
  RunResult rec = run({perfstream_binary(), "record", "--probe", "exec", "-o", trace.string(), "--quiet", "--",
                       "/bin/sh", "-c", "/bin/true; /bin/true; exit 3"});
  if (rec.exit_status != 3 && rec.err.find("refused") != std::string::npos) GTEST_SKIP() << rec.err;
  ASSERT_EQ(rec.exit_status, 3) << "the command's exit status, passed through as perf record does\n" << rec.err;
  RunResult dump = run({perfstream_binary(), "dump", "--json", "--event", "exec", trace.string()});
  ASSERT_EQ(dump.exit_status, 0) << dump.err;
  int trues = 0, shells = 0;
  for (const auto& line : lines_of(dump.out)) {
    trues += line.find("\"filename\":\"/bin/true\"") != std::string::npos;
    shells += line.find("\"filename\":\"/bin/sh\"") != std::string::npos;
  }
  EXPECT_EQ(trues, 2) << dump.out;
  EXPECT_EQ(shells, 1) << dump.out;
}

TEST_F(RecordEndToEnd, ACommandIsFollowedWithItsDescendantsUnlessAllCpusIsGiven) {
  const fs::path trace = dir_ / "follow.data";
  // An unrelated process execs /bin/echo all along; only the followed command's execs may be recorded. As
  // with perf record, a command is followed by default; -a records system-wide.
  Background noise({"/bin/sh", "-c", "while :; do /bin/echo noise >/dev/null; done"});
  RunResult rec = run({perfstream_binary(), "record", "--probe", "exec,openat", "-o", trace.string(),
                       "--quiet", "--", "/bin/sh", "-c", "/bin/true; /bin/sh -c '/bin/true; /bin/true'; sleep 0.3"});
  const fs::path wide = dir_ / "wide.data";
  RunResult wide_rec = run({perfstream_binary(), "record", "--probe", "exec", "-a", "-o", wide.string(), "--quiet",
                            "--", "/bin/sleep", "0.3"});
  noise.stop(SIGKILL);
  ASSERT_EQ(wide_rec.exit_status, 0) << wide_rec.err;
  RunResult wide_dump = run({perfstream_binary(), "dump", "--json", wide.string()});
  EXPECT_NE(wide_dump.out.find("/bin/echo"), std::string::npos) << "-a records every process:\n" << wide_dump.out;
  if (rec.exit_status != 0 && rec.err.find("refused") != std::string::npos) GTEST_SKIP() << rec.err;
  ASSERT_EQ(rec.exit_status, 0) << rec.err;
  RunResult dump = run({perfstream_binary(), "dump", "--json", "--event", "exec", trace.string()});
  ASSERT_EQ(dump.exit_status, 0) << dump.err;
  int trues = 0, echoes = 0, execs = 0;
  for (const auto& line : lines_of(dump.out)) {
    ++execs;
    trues += line.find("\"filename\":\"/bin/true\"") != std::string::npos;
    echoes += line.find("/bin/echo") != std::string::npos;
  }
  EXPECT_EQ(trues, 3) << dump.out;
  EXPECT_EQ(echoes, 0) << "a process outside the command was recorded";
  EXPECT_EQ(execs, 6) << "sh, true, sh, true, true, sleep:\n" << dump.out;
  RunResult bad = run({perfstream_binary(), "record", "--probe", "exec", "--follow"});
  EXPECT_EQ(bad.exit_status, 2);
  EXPECT_NE(bad.err.find("--follow needs a command"), std::string::npos) << bad.err;
  RunResult both = run({perfstream_binary(), "record", "--probe", "exec", "--follow", "-a", "--", "/bin/true"});
  EXPECT_EQ(both.exit_status, 2);
  EXPECT_NE(both.err.find("--follow and -a contradict each other"), std::string::npos) << both.err;
}

std::string bytes_of(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST_F(RecordEndToEnd, TheCommandsExitStatusPassesThroughAndACommandThatCannotStartTouchesNothing) {
  const fs::path trace = dir_ / "status.data";
  auto record = [&](std::vector<std::string> command) {
    std::vector<std::string> args = {perfstream_binary(), "record", "--probe", "exec", "-q", "-o", trace.string(), "--"};
    args.insert(args.end(), command.begin(), command.end());
    return run(args);
  };
  RunResult first = record({"/bin/true"});
  if (first.exit_status != 0 && first.err.find("refused") != std::string::npos) GTEST_SKIP() << first.err;
  ASSERT_EQ(first.exit_status, 0) << first.err;
  const std::string earlier = bytes_of(trace);
  ASSERT_FALSE(earlier.empty());

  // Cannot start: the shell's status (127 not found, 126 not executable), and no file made or moved.
  RunResult missing = record({"/nonexistent/command"});
  EXPECT_EQ(missing.exit_status, 127) << missing.err;
  EXPECT_NE(missing.err.find("cannot run '/nonexistent/command': No such file or directory"), std::string::npos)
      << missing.err;
  RunResult unknown = record({"perfstream-no-such-command"});
  EXPECT_EQ(unknown.exit_status, 127) << unknown.err;
  EXPECT_NE(unknown.err.find("cannot run 'perfstream-no-such-command': command not found"), std::string::npos)
      << unknown.err;
  const fs::path not_executable = dir_ / "not-executable";
  std::ofstream(not_executable) << "#!/bin/sh\n";
  RunResult denied = record({not_executable.string()});
  EXPECT_EQ(denied.exit_status, 126) << denied.err;
  EXPECT_EQ(bytes_of(trace), earlier) << "the earlier recording must be left as it was";
  EXPECT_FALSE(fs::exists(dir_ / "status.data.old"));

  // Started: its exit status is ours, and the earlier recording is kept as FILE.old, as perf keeps perf.data.old.
  RunResult failed = record({"/bin/false"});
  EXPECT_EQ(failed.exit_status, 1) << failed.err;
  EXPECT_EQ(bytes_of(dir_ / "status.data.old"), earlier);
  RunResult killed = record({"/bin/sh", "-c", "kill -9 $$"});
  EXPECT_EQ(killed.exit_status, 128 + SIGKILL) << killed.err;

  // The command's own exit is recorded too: following it ends only after its exit record is written.
  RunResult exited = run({perfstream_binary(), "record", "--probe", "exit", "-q", "-o", trace.string(), "--",
                          "/bin/sh", "-c", "exit 3"});
  EXPECT_EQ(exited.exit_status, 3) << exited.err;
  RunResult exits = run({perfstream_binary(), "dump", "--json", "--raw-fields", trace.string()});
  EXPECT_NE(exits.out.find("\"exit_status\":3"), std::string::npos) << exits.out;
  RunResult dump = run({perfstream_binary(), "dump", trace.string()});
  EXPECT_EQ(dump.exit_status, 0) << dump.err;
}

TEST_F(RecordEndToEnd, ASecondRecorderOnTheSameFileIsRefusedAndTheFirstReadsBackWhole) {
  const fs::path trace = dir_ / "shared.data";
  Background first({perfstream_binary(), "record", "--probe", "exec", "-q", "-o", trace.string()});
  if (!wait_for_recording(first, trace)) {
    RunResult r = first.wait();
    if (r.err.find("refused") != std::string::npos) GTEST_SKIP() << r.err;
    FAIL() << "the first recorder did not start: " << r.err;
  }
  RunResult second = run({perfstream_binary(), "record", "--probe", "exec", "-o", trace.string(), "--", "/bin/true"});
  EXPECT_EQ(second.exit_status, 1) << second.err;
  EXPECT_NE(second.err.find(trace.string() + " is being written by another recorder, pid " + std::to_string(first.pid())),
            std::string::npos)
      << second.err;
  EXPECT_FALSE(fs::exists(dir_ / "shared.data.old")) << "the refused recorder must not move the first one's file";
  run({"/bin/true"});  // one exec for the first recorder
  RunResult done = first.stop(SIGINT);
  ASSERT_EQ(done.exit_status, 0) << done.err;
  RunResult stats = run({perfstream_binary(), "stats", trace.string()});
  EXPECT_EQ(stats.exit_status, 0) << stats.err;
  EXPECT_EQ(stats.err, "") << "a whole recording, trailer and all";
}

TEST_F(RecordEndToEnd, PidListsKeepEveryNamedProcessAndOnlyThose) {
  // Three processes open a file all along, in the shell itself (a redirection): -p A -p B,B records A and B.
  auto opener = [] { return std::make_unique<Background>(std::vector<std::string>{
                         "/bin/sh", "-c", "while :; do : < /etc/hostname; sleep 0.02; done"}); };
  auto a = opener(), b = opener(), c = opener();
  const std::set<std::string> named = {std::to_string(a->pid()), std::to_string(b->pid())};
  const fs::path trace = dir_ / "pids.data";
  RunResult rec = run({perfstream_binary(), "record", "--probe", "openat", "-q", "-o", trace.string(), "-p",
                       std::to_string(a->pid()), "-p", std::to_string(b->pid()) + "," + std::to_string(b->pid()),
                       "--duration", "1s"});
  for (auto* p : {a.get(), b.get(), c.get()}) p->stop(SIGKILL);
  if (rec.exit_status != 0 && rec.err.find("refused") != std::string::npos) GTEST_SKIP() << rec.err;
  ASSERT_EQ(rec.exit_status, 0) << rec.err;
  RunResult dump = run({perfstream_binary(), "dump", "--json", trace.string()});
  ASSERT_EQ(dump.exit_status, 0) << dump.err;
  std::set<std::string> pids;
  const std::regex pid_re("\"pid\":([0-9]+)");
  for (const auto& line : lines_of(dump.out)) {
    std::smatch m;
    if (std::regex_search(line, m, pid_re)) pids.insert(m[1].str());
  }
  EXPECT_EQ(pids, named) << dump.out;

  RunResult gone = run({perfstream_binary(), "record", "--probe", "openat", "-p", "1,2000000000", "--duration", "1s"});
  EXPECT_EQ(gone.exit_status, 2);
  EXPECT_NE(gone.err.find("--pid 2000000000: not a process id"), std::string::npos) << gone.err;
  RunResult missing = run({perfstream_binary(), "record", "--probe", "openat", "-p", "4194000", "--duration", "1s"});
  EXPECT_EQ(missing.exit_status, 2);
  EXPECT_NE(missing.err.find("--pid 4194000: no such process"), std::string::npos) << missing.err;
  RunResult long_comm = run({perfstream_binary(), "record", "--probe", "openat", "--comm", "a-name-of-16-chr"});
  EXPECT_EQ(long_comm.exit_status, 2);
  EXPECT_NE(long_comm.err.find("a task name is 1 to 15 bytes"), std::string::npos) << long_comm.err;
}

TEST_F(RecordEndToEnd, UsageMistakesAreErrorsNotSilentDefaults) {
  RunResult zero = run({perfstream_binary(), "record", "--probe", "exec", "--duration", "0"});
  EXPECT_EQ(zero.exit_status, 2);
  EXPECT_NE(zero.err.find("--duration 0: give a positive time"), std::string::npos) << zero.err;
  RunResult swallowed = run({perfstream_binary(), "record", "--probe", "--duration", "1s"});
  EXPECT_EQ(swallowed.exit_status, 2);
  EXPECT_NE(swallowed.err.find("--probe needs a value (NAME), not the flag '--duration'"), std::string::npos)
      << swallowed.err;
}

TEST_F(RecordEndToEnd, AnyBpfObjectFileCanBeRecordedWithItsLayout) {
  // A BPF object built outside perfstream's probe list: the build's openat object, loaded by path.
  const fs::path trace = dir_ / "object.data";
  const std::string object = std::string(PERFSTREAM_BPF_GEN_DIR) + "/openat.bpf.o";
  Background recorder({perfstream_binary(), "record", "--object", object, "--map", "events", "-p",
                       std::to_string(getpid()), "-o", trace.string(), "--quiet"});
  if (!wait_for_recording(recorder, trace)) {
    RunResult r = recorder.wait();
    if (r.err.find("refused") != std::string::npos) GTEST_SKIP() << r.err;
    FAIL() << "the recorder did not start: " << r.err;
  }
  const std::string path = (dir_ / "from-an-object-file").string();
  int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  close(fd);
  RunResult rec = recorder.stop(SIGINT);
  ASSERT_EQ(rec.exit_status, 0) << rec.err;
  RunResult dump = run({perfstream_binary(), "dump", "--json", trace.string()});
  ASSERT_EQ(dump.exit_status, 0) << dump.err;
  EXPECT_NE(dump.out.find("\"path\":\"" + path + "\""), std::string::npos) << dump.out;
}

TEST_F(RecordEndToEnd, AnObjectTheVerifierRefusesIsReportedWithTheVerifierLog) {
  const std::string object = std::string(PERFSTREAM_BPF_GEN_DIR) + "/rejected_by_verifier.bpf.o";
  RunResult rec = run({perfstream_binary(), "record", "--object", object, "-o", (dir_ / "x.data").string(), "--quiet"});
  EXPECT_EQ(rec.exit_status, 1);
  EXPECT_NE(rec.err.find("the kernel refused to load it"), std::string::npos) << rec.err;
  EXPECT_NE(rec.err.find("verifier log:"), std::string::npos) << rec.err;
  // The verifier's own words about the unchecked pointer.
  EXPECT_NE(rec.err.find("map_value_or_null"), std::string::npos) << rec.err;
  EXPECT_LT(rec.err.size(), 6000u) << "the log is shortened to its end";
}

TEST_F(RecordEndToEnd, DurationStopsTheRecordingAndTheSummaryReportsIt) {
  const fs::path trace = dir_ / "sched.data";
  const auto start = std::chrono::steady_clock::now();
  RunResult rec = run({perfstream_binary(), "record", "--probe", "sched_switch", "--duration", "700ms", "-o",
                       trace.string()});
  const auto took = std::chrono::steady_clock::now() - start;
  if (rec.exit_status != 0 && rec.err.find("refused") != std::string::npos) GTEST_SKIP() << rec.err;
  ASSERT_EQ(rec.exit_status, 0) << rec.err;
  EXPECT_GE(took, 700ms);
  EXPECT_NE(rec.err.find("duration reached"), std::string::npos) << rec.err;
  EXPECT_NE(rec.err.find("lost 0 in the kernel and 0 in perfstream"), std::string::npos) << rec.err;
  RunResult stats = run({perfstream_binary(), "stats", trace.string()});
  ASSERT_EQ(stats.exit_status, 0) << stats.err;
  EXPECT_NE(stats.out.find("sched_switch"), std::string::npos) << stats.out;
}

TEST_F(RecordEndToEnd, FullDiskGivesAClearErrorAndKeepsWhatWasWritten) {
  const fs::path mount_point = dir_ / "small";
  fs::create_directories(mount_point);
  const ScopedMount small = ScopedMount::tmpfs(mount_point.string(), "192k");
  if (!small.ok()) GTEST_SKIP() << small.error();
  const fs::path trace = mount_point / "full.data";
  Background recorder({perfstream_binary(), "record", "--probe", "openat", "-p", std::to_string(getpid()), "-o",
                       trace.string(), "--batch-records", "200", "--batch-age", "50ms", "--quiet"});
  if (!wait_for_recording(recorder, trace)) {
    RunResult r = recorder.wait();
    if (r.err.find("refused") != std::string::npos) GTEST_SKIP() << r.err;
    FAIL() << "the recorder did not start: " << r.err;
  }
  // Random names do not compress: the 192 KiB fill up after a few thousand paths.
  std::mt19937_64 rng(42);
  bool exited = false;
  for (int i = 0; i < 200000 && !exited; ++i) {
    std::string name(180, 'a');
    for (auto& c : name) c = "0123456789abcdef"[rng() % 16];
    const std::string path = (dir_ / name).string();
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);  // fails (no such file); the probe sees it anyway
    if (fd >= 0) close(fd);
    if (i % 500 == 0) exited = recorder.exited();
  }
  RunResult rec = exited ? recorder.wait() : recorder.stop(SIGINT);
  EXPECT_EQ(rec.exit_status, 1) << rec.err;
  EXPECT_NE(rec.err.find("No space left on device"), std::string::npos) << rec.err;
  EXPECT_NE(rec.err.find(trace.string()), std::string::npos) << rec.err;
  EXPECT_NE(rec.err.find("stay readable"), std::string::npos) << rec.err;

  RunResult dump = run({perfstream_binary(), "dump", "--json", trace.string()});
  EXPECT_EQ(dump.exit_status, 0) << dump.err;
  EXPECT_GT(lines_of(dump.out).size(), 100u) << "the batches written before the disk filled are readable";
}

TEST_F(RecordEndToEnd, BadUsageAndUnknownProbesAreClearErrors) {
  RunResult unknown_flag = run({perfstream_binary(), "record", "--probe", "exec", "--bogus"});
  EXPECT_EQ(unknown_flag.exit_status, 2);
  EXPECT_NE(unknown_flag.err.find("unknown flag '--bogus'"), std::string::npos) << unknown_flag.err;
  RunResult unknown_probe = run({perfstream_binary(), "record", "--probe", "nosuch"});
  EXPECT_EQ(unknown_probe.exit_status, 2);
  EXPECT_NE(unknown_probe.err.find("unknown probe 'nosuch'"), std::string::npos) << unknown_probe.err;
  RunResult not_trace = run({perfstream_binary(), "dump", "/etc/hostname"});
  EXPECT_EQ(not_trace.exit_status, 1);
  EXPECT_NE(not_trace.err.find("not a perfstream trace"), std::string::npos) << not_trace.err;
  RunResult probes = run({perfstream_binary(), "probes"});
  EXPECT_EQ(probes.exit_status, 0) << probes.err;
  EXPECT_NE(probes.out.find("openat"), std::string::npos);
  EXPECT_NE(probes.out.find("path"), std::string::npos);
}

}  // namespace
}  // namespace perfstream::testing
