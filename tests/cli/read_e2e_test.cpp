// Reading recordings live, as a user does: `record -o - | dump -` shows events while they happen, and
// `dump --follow` prints a recording that is being written, across rotation, every record once. The real
// binary, the real kernel. Needs root (it loads BPF); skips only when the kernel refuses BPF.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <thread>

#include "testing/subprocess.hpp"

namespace perfstream::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

class ReadLive : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("perfstream-read-" + std::to_string(getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  static void skip_if_bpf_refused(const std::string& err) {
    if (err.find("refused") != std::string::npos || err.find("Operation not permitted") != std::string::npos) {
      GTEST_SKIP() << "the kernel refuses BPF here: " << err;
    }
  }
  fs::path dir_;
};

// An exec of a command run while recording appears in dump's output before record stops.
TEST_F(ReadLive, RecordToAPipeIsPrintedByDumpAsEventsHappen) {
  const fs::path tool = dir_ / "perfstream-live-marker";
  fs::copy_file("/bin/true", tool);
  const std::string p = perfstream_binary();
  const auto started = std::chrono::steady_clock::now();
  Background pipeline({"/bin/sh", "-c", p + " record --probe exec -o - --duration 8s -q | " + p + " dump -"});
  // Once the probes are up, run the marker (again every half second until it shows: the probe may still be
  // loading the first time).
  bool seen = false;
  auto seen_at = started;
  while (std::chrono::steady_clock::now() - started < 6s && !pipeline.exited()) {
    const pid_t child = fork();
    if (child == 0) {
      execl(tool.c_str(), tool.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    int status = 0;
    waitpid(child, &status, 0);
    std::this_thread::sleep_for(500ms);
    if (pipeline.out_so_far().find("perfstream-live-marker") != std::string::npos) {
      seen = true;
      seen_at = std::chrono::steady_clock::now();
      break;
    }
  }
  RunResult r = pipeline.wait();
  skip_if_bpf_refused(r.err);
  ASSERT_EQ(r.exit_status, 0) << r.err;
  ASSERT_TRUE(seen) << "dump printed no exec of the marker while record ran:\n" << r.out << r.err;
  EXPECT_LT(seen_at - started, 7s) << "it was printed before record stopped (8 s)";
  EXPECT_NE(r.out.find("exec  pid="), std::string::npos);
}

// dump --follow started before the recording grows, through rotations, until its trailer: the same lines as
// a dump of the finished recording, each once.
TEST_F(ReadLive, FollowPrintsAGrowingRotatingRecordingOnceAndEndsAtItsTrailer) {
  const fs::path trace = dir_ / "live.data";
  const std::string p = perfstream_binary();
  Background recorder({p, "record", "--probe", "openat", "-p", std::to_string(getpid()), "--rotate-size", "16K",
                       "--batch-age", "100ms", "--duration", "5s", "-o", trace.string(), "-q"});
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!(fs::exists(trace) && fs::file_size(trace) > 16) && !recorder.exited() &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  if (recorder.exited()) {
    RunResult r = recorder.wait();
    skip_if_bpf_refused(r.err);
    FAIL() << "the recorder stopped early: " << r.err;
  }
  Background follower({p, "dump", "--follow", trace.string()});
  int opened = 0;
  std::mt19937_64 rng(42);
  while (!recorder.exited()) {
    for (int i = 0; i < 50; ++i) {
      // Names that compress poorly, so that the pieces fill up.
      const std::string name = (dir_ / ("f-" + std::to_string(opened++) + "-" + std::to_string(rng()))).string();
      const int fd = open(name.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
      if (fd >= 0) close(fd);
    }
    std::this_thread::sleep_for(10ms);
  }
  RunResult rec = recorder.wait();
  ASSERT_EQ(rec.exit_status, 0) << rec.err;
  ASSERT_TRUE(fs::exists(trace.string() + ".1")) << "the recording rotated";
  // The follower ends by itself at the last piece's trailer.
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (!follower.exited() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(follower.exited()) << "dump --follow did not end at the trailer";
  RunResult followed = follower.wait();
  EXPECT_EQ(followed.exit_status, 0) << followed.err;
  RunResult whole = run({p, "dump", trace.string()});
  ASSERT_EQ(whole.exit_status, 0) << whole.err;
  EXPECT_GT(opened, 500);
  EXPECT_NE(whole.out.find("f-499-"), std::string::npos);
  EXPECT_EQ(followed.out, whole.out);
}

}  // namespace
}  // namespace perfstream::testing
