// perfstream record when its output goes bad mid-run: the directory removed (rm -rf) or renamed, the file
// system turned read-only under the open file (as on a disk error), a read-only mount over the directory at
// rotation. Each time: exit status 1 without a signal, an error naming the file and the cause, what was
// written before readable to its last complete batch, and the records on disk equal to what the summary says
// was written. (The full disk is in record_e2e_test.cpp.) Needs root (BPF, mounts); skips only when the
// kernel refuses BPF or the mounts cannot be made here, and says why.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <regex>
#include <thread>

#include "testing/scoped_mount.hpp"
#include "testing/subprocess.hpp"

namespace perfstream::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::optional<std::uint64_t> number_after(const std::string& text, const std::string& pattern) {
  std::smatch m;
  if (!std::regex_search(text, m, std::regex(pattern))) return std::nullopt;
  return std::stoull(m[1].str());
}

std::uintmax_t size_of(const fs::path& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  return ec ? 0 : size;
}

class OutputFaults : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("perfstream-faults-" + std::to_string(getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_ / "out");
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Records openat of this process into `trace`, in small batches. Returns once the first batch is in the
  // file; on false, *skip says why when the kernel refused BPF.
  std::unique_ptr<Background> start(const fs::path& trace, const std::vector<std::string>& extra, std::string* skip) {
    std::vector<std::string> argv = {perfstream_binary(), "record", "--probe", "openat", "-p", std::to_string(getpid()),
                                     "-o", trace.string(), "--batch-records", "100", "--batch-age", "50ms"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto recorder = std::make_unique<Background>(argv);
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    std::uintmax_t header_size = 0;  // the file as made: headers, no batch yet
    while (std::chrono::steady_clock::now() < deadline && !recorder->exited()) {
      if (header_size == 0 && recorder->err_so_far().find("recording openat") != std::string::npos) {
        header_size = size_of(trace);
      }
      open_missing(10);
      if (header_size > 0 && size_of(trace) > header_size) return recorder;
      std::this_thread::sleep_for(20ms);
    }
    RunResult r = recorder->wait();
    if (r.err.find("refused") != std::string::npos || r.err.find("Operation not permitted") != std::string::npos) {
      *skip = "the kernel refuses BPF here: " + r.err;
    } else {
      ADD_FAILURE() << "the recorder did not start: exit " << r.exit_status << ": " << r.err;
    }
    return nullptr;
  }

  // Opens `n` missing files (the probe sees each attempt): records for the recorder.
  void open_missing(int n) {
    for (int i = 0; i < n; ++i) {
      const std::string path = (dir_ / ("missing-" + std::to_string(opened_++) + std::string(40, 'q'))).string();
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd >= 0) ::close(fd);
    }
  }

  bool wait_until_exists(const fs::path& path) {
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (fs::exists(path)) return true;
      open_missing(20);
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  // Keeps making records until the recorder stops by itself (it must: nobody signals it).
  RunResult wait_for_it_to_stop(Background& recorder, bool busy) {
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (!recorder.exited() && std::chrono::steady_clock::now() < deadline) {
      if (busy) open_missing(20);
      std::this_thread::sleep_for(10ms);
    }
    EXPECT_TRUE(recorder.exited()) << "the recorder went on with a broken output";
    return recorder.exited() ? recorder.wait() : recorder.stop(SIGKILL);
  }

  // The pieces read back to their last complete batch and together hold what the summary says was written.
  // Named alone, the first piece brings the others. When the last piece was closed for a rotation whose next
  // piece could not be created, its trailer says the recording goes on: the readers say that piece is
  // missing (exit 1), and read everything before it.
  static void expect_pieces_hold_what_was_written(const std::vector<fs::path>& pieces, const RunResult& r,
                                                  bool last_has_trailer) {
    const auto written = number_after(r.err, "wrote ([0-9]+) records in");
    ASSERT_TRUE(written) << r.err;
    const int expected_status = last_has_trailer ? 1 : 0;
    const std::string missing = pieces.front().string() + "." + std::to_string(pieces.size()) + "), which is missing";
    RunResult stats = run({perfstream_binary(), "stats", "--json", pieces.front().string()});
    ASSERT_EQ(stats.exit_status, expected_status) << stats.err;
    if (last_has_trailer) {
      EXPECT_NE(stats.err.find(missing), std::string::npos) << stats.err;
    }
    EXPECT_NE(stats.out.find("\"damage\":[]"), std::string::npos) << "ends on a frame boundary: " << stats.out;
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      const bool trailer = i + 1 < pieces.size() || last_has_trailer;
      const auto at = stats.out.find("\"path\":\"" + pieces[i].string() + "\"");
      ASSERT_NE(at, std::string::npos) << pieces[i] << " was read: " << stats.out;
      const auto end = stats.out.find('}', stats.out.find("\"trailer\":", at));
      EXPECT_EQ(stats.out.substr(at, end - at).find("\"trailer\":{") != std::string::npos, trailer) << stats.out;
    }
    const std::uint64_t on_disk = number_after(stats.out, "\"totals\":\\{\"records\":([0-9]+)").value_or(0);
    EXPECT_EQ(on_disk, *written) << r.err;
    EXPECT_GT(on_disk, 0u);
    RunResult dump = run({perfstream_binary(), "dump", pieces.front().string()});
    EXPECT_EQ(dump.exit_status, expected_status) << dump.err;
  }

  fs::path dir_;
  int opened_ = 0;
};

TEST_F(OutputFaults, OutputDirectoryRemovedStopsTheRecordingSayingTheFileWasDeleted) {
  const fs::path out = dir_ / "out";
  const fs::path trace = out / "x.data";
  std::string skip;
  auto recorder = start(trace, {}, &skip);
  if (!recorder) {
    if (!skip.empty()) GTEST_SKIP() << skip;
    return;
  }
  fs::remove_all(out);
  // Idle from here: the status tick notices, not a batch.
  RunResult r = wait_for_it_to_stop(*recorder, false);
  EXPECT_EQ(r.exit_status, 1) << r.err;
  EXPECT_NE(r.err.find("trace file " + trace.string() + " was deleted while being written (its directory " +
                       out.string() + " was removed): the "),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("the trace file cannot be written after"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out)) << "nothing is recreated";
}

TEST_F(OutputFaults, OutputDirectoryRemovedWhileRotatingStopsAtTheNextBatch) {
  const fs::path out = dir_ / "out";
  const fs::path trace = out / "x.data";
  std::string skip;
  auto recorder = start(trace, {"--rotate-size", "8K"}, &skip);
  if (!recorder) {
    if (!skip.empty()) GTEST_SKIP() << skip;
    return;
  }
  ASSERT_TRUE(wait_until_exists(out / "x.data.1")) << "no rotation";
  fs::remove_all(out);
  RunResult r = wait_for_it_to_stop(*recorder, true);
  EXPECT_EQ(r.exit_status, 1) << r.err;
  EXPECT_NE(r.err.find(" was deleted while being written (its directory " + out.string() + " was removed)"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(out));
  // Batches refused after the deletion are counted as the collector's loss.
  EXPECT_TRUE(number_after(r.err, "lost [0-9]+ in the kernel and ([0-9]+) in perfstream")) << r.err;
}

TEST_F(OutputFaults, OutputDirectoryRenamedWhileRotatingStopsWhenTheNextPieceCannotBeCreated) {
  const fs::path out = dir_ / "out";
  const fs::path trace = out / "x.data";
  std::string skip;
  auto recorder = start(trace, {"--rotate-size", "8K"}, &skip);
  if (!recorder) {
    if (!skip.empty()) GTEST_SKIP() << skip;
    return;
  }
  ASSERT_TRUE(wait_until_exists(out / "x.data.1")) << "no rotation";
  const fs::path moved = dir_ / "moved";
  fs::rename(out, moved);
  RunResult r = wait_for_it_to_stop(*recorder, true);
  EXPECT_EQ(r.exit_status, 1) << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.err, m,
                                std::regex("creating trace file " + trace.string() +
                                           "\\.([0-9]+): No such file or directory \\(its directory " + out.string() +
                                           " was removed or renamed\\)")))
      << r.err;
  // Every piece before the one that could not be made is complete, in the directory's new place.
  const int failed_piece = std::stoi(m[1].str());
  std::vector<fs::path> pieces = {moved / "x.data"};
  for (int i = 1; i < failed_piece; ++i) pieces.push_back(moved / ("x.data." + std::to_string(i)));
  EXPECT_FALSE(fs::exists(moved / ("x.data." + std::to_string(failed_piece))));
  expect_pieces_hold_what_was_written(pieces, r, true);
}

TEST_F(OutputFaults, FileSystemTurnedReadOnlyStopsTheRecordingAndKeepsEveryBatchWritten) {
  const fs::path mount_point = dir_ / "ext4";
  fs::create_directories(mount_point);
  const ScopedMount ext4 = ScopedMount::ext4_image((dir_ / "ext4.img").string(), mount_point.string(), 16);
  if (!ext4.ok()) GTEST_SKIP() << ext4.error();
  const fs::path trace = mount_point / "x.data";
  std::string skip;
  auto recorder = start(trace, {}, &skip);
  if (!recorder) {
    if (!skip.empty()) GTEST_SKIP() << skip;
    return;
  }
  open_missing(500);
  std::this_thread::sleep_for(150ms);
  // What a failing disk does with errors=remount-ro: the open file's next write gets EROFS.
  ASSERT_EQ(ext4.trigger_error(), "");
  RunResult r = wait_for_it_to_stop(*recorder, true);
  EXPECT_EQ(r.exit_status, 1) << r.err;
  EXPECT_NE(r.err.find("writing to trace file " + trace.string() + ": Read-only file system (the file ends at its "
                       "last complete frame: "),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("records) written before stay readable"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("the trace file cannot be written after"), std::string::npos) << r.err;
  expect_pieces_hold_what_was_written({trace}, r, false);
}

TEST_F(OutputFaults, ReadOnlyMountOverTheDirectoryStopsTheRotationAtTheNextPiece) {
  const fs::path out = dir_ / "out";
  const fs::path trace = out / "x.data";
  std::string skip;
  auto recorder = start(trace, {"--rotate-size", "8K"}, &skip);
  if (!recorder) {
    if (!skip.empty()) GTEST_SKIP() << skip;
    return;
  }
  ASSERT_TRUE(wait_until_exists(out / "x.data.1")) << "no rotation";
  // The open piece keeps its writable mount; the next one is looked up through the read-only one.
  const ScopedMount read_only = ScopedMount::read_only_bind(out.string());
  if (!read_only.ok()) {
    recorder->stop(SIGINT);
    GTEST_SKIP() << read_only.error();
  }
  RunResult r = wait_for_it_to_stop(*recorder, true);
  EXPECT_EQ(r.exit_status, 1) << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      r.err, m, std::regex("creating trace file " + trace.string() + "\\.([0-9]+): Read-only file system")))
      << r.err;
  const int failed_piece = std::stoi(m[1].str());
  std::vector<fs::path> pieces = {trace};
  for (int i = 1; i < failed_piece; ++i) pieces.push_back(out / ("x.data." + std::to_string(i)));
  expect_pieces_hold_what_was_written(pieces, r, true);
}

}  // namespace
}  // namespace perfstream::testing
