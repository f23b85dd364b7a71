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
#include <set>
#include <signal.h>
#include <tuple>
#include <thread>

#include "collector/recording/recording_reader.hpp"
#include "collector/recording/time_ordered_reader.hpp"
#include "testing/subprocess.hpp"
#include "testing/temp_dir.hpp"

namespace perfstream::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// True when the recorder's stderr says the kernel refused BPF: the caller skips, saying why.
bool bpf_refused(const std::string& err) {
  return err.find("refused") != std::string::npos || err.find("Operation not permitted") != std::string::npos;
}

class ReadLive : public ::testing::Test {
 protected:
  TempDir temp_;
  fs::path dir_ = temp_.path();
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
  if (bpf_refused(r.err)) GTEST_SKIP() << "the kernel refuses BPF here: " << r.err;
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
    if (bpf_refused(r.err)) GTEST_SKIP() << "the kernel refuses BPF here: " << r.err;
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

// A real recording of two reader threads: the merge gives exactly what a stable sort of the whole
// recording gives (records and lost notices), with nothing late.
TEST_F(ReadLive, ARealRecordingOfTwoReaderThreadsMergesAsAWholeSortWould) {
  const fs::path trace = dir_ / "sched.data";
  Background recorder({perfstream_binary(), "record", "--probe", "sched_switch", "--threads", "2", "--duration",
                       "2s", "-o", trace.string(), "-q"});
  // Context switches while it records: a child and this process pass a byte back and forth through pipes.
  int ping[2], pong[2];
  ASSERT_EQ(pipe(ping), 0);
  ASSERT_EQ(pipe(pong), 0);
  const pid_t child = fork();
  if (child == 0) {
    close(ping[1]);  // or its own write end would keep its read from ever seeing the end
    close(pong[0]);
    char c;
    while (read(ping[0], &c, 1) == 1 && write(pong[1], &c, 1) == 1) {
    }
    _exit(0);
  }
  close(ping[0]);
  close(pong[1]);
  const auto until = std::chrono::steady_clock::now() + 3s;
  char c = 'x';
  while (std::chrono::steady_clock::now() < until && !recorder.exited()) {
    for (int i = 0; i < 100; ++i) {
      if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1) break;
    }
  }
  close(ping[1]);
  close(pong[0]);
  waitpid(child, nullptr, 0);
  RunResult rec = recorder.wait();
  if (bpf_refused(rec.err)) GTEST_SKIP() << "the kernel refuses BPF here: " << rec.err;
  ASSERT_EQ(rec.exit_status, 0) << rec.err;

  using Key = std::tuple<std::uint64_t, int, std::size_t>;  // time, lost first, file order
  struct Entry {
    Key key;
    std::uint32_t cpu;
    std::string what;
  };
  std::vector<Entry> whole;
  {
    auto reader = recording::RecordingReader::open({trace.string()}, recording::RecordingOptions{});
    ASSERT_TRUE(reader) << reader.error().message();
    recording::ReadBatch rb;
    while ((*reader)->next(rb)) {
      for (const auto& l : rb.batch.lost) {
        whole.push_back(Entry{Key{l.sort_time_ns, 0, whole.size()}, l.cpu, "lost " + std::to_string(l.count)});
      }
      for (std::size_t i = 0; i < rb.batch.size(); ++i) {
        whole.push_back(Entry{Key{rb.batch.times[i], 1, whole.size()}, rb.batch.cpus[i],
                              std::string(rb.batch.payload(i).data(), rb.batch.payload(i).size())});
      }
    }
    EXPECT_TRUE((*reader)->ended_cleanly()) << ((*reader)->problems().empty() ? "" : (*reader)->problems()[0]);
  }
  // Lost notices of a batch were listed before its records above; a whole-file sort keeps file order within
  // (time, kind), and notices never tie with records, so the order of listing does not matter.
  std::stable_sort(whole.begin(), whole.end(), [](const Entry& a, const Entry& b) {
    return std::get<0>(a.key) != std::get<0>(b.key) ? std::get<0>(a.key) < std::get<0>(b.key)
                                                    : std::get<1>(a.key) < std::get<1>(b.key);
  });
  ASSERT_GT(whole.size(), 1000u) << "too few context switches recorded to test anything";
  std::set<std::uint32_t> cpus;
  for (const auto& e : whole) cpus.insert(e.cpu);
  EXPECT_GE(cpus.size(), 2u);

  auto reader = recording::RecordingReader::open({trace.string()}, recording::RecordingOptions{});
  ASSERT_TRUE(reader);
  recording::TimeOrderedReader merge(**reader, recording::MergeOptions{});
  recording::TimeOrderedReader::Entry e;
  std::size_t i = 0;
  std::string first_difference;
  while (merge.next(e)) {
    ASSERT_LT(i, whole.size());
    const std::string what = e.is_lost ? "lost " + std::to_string(e.lost().count)
                                       : std::string(e.payload().data(), e.payload().size());
    if (first_difference.empty() &&
        (e.time_ns != std::get<0>(whole[i].key) || e.cpu != whole[i].cpu || what != whole[i].what)) {
      first_difference = "entry " + std::to_string(i) + ": merged " + (e.is_lost ? what : "a record") + " at " +
                         std::to_string(e.time_ns) + " on CPU " + std::to_string(e.cpu) + ", whole sort " +
                         (whole[i].what.rfind("lost ", 0) == 0 ? whole[i].what : "a record") + " at " +
                         std::to_string(std::get<0>(whole[i].key)) + " on CPU " + std::to_string(whole[i].cpu) +
                         "; late so far " + std::to_string(merge.late());
    }
    ++i;
  }
  EXPECT_EQ(first_difference, "") << "late in all " << merge.late() << ", window full " << merge.window_was_full()
                                  << ", peak held " << merge.peak_held_bytes() << " bytes";
  EXPECT_EQ(i, whole.size());
  EXPECT_EQ(merge.late(), 0u);
  // One busy CPU and one quiet: the quiet reader thread is asked to close its batch early, so what the
  // merge holds stays well inside its window.
  EXPECT_FALSE(merge.window_was_full()) << "peak held " << merge.peak_held_bytes() << " bytes";
}

}  // namespace
}  // namespace perfstream::testing
