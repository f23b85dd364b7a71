// Issue 16, items 4 and 5, end to end with the real binary, the real kernel (the openat probe) and real
// sockets on loopback:
//   - a collector killed with SIGKILL mid-stream and started again on its spool sends what the first run
//     spooled to the sink as the first run's recording, which then holds every batch exactly once;
//   - a sink whose disk fills up (a 2 MiB tmpfs) refuses batches in-band: the collector names the sink's
//     reason, backs off instead of reconnecting 8 times a second, and once space is back every batch
//     arrives exactly once; the sink's log stays short.
// Needs root (BPF, mount); skips only when the kernel refuses BPF or a tmpfs cannot be mounted.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "collector/format/trace_reader.hpp"
#include "collector/transport/recording_store.hpp"
#include "testing/ports.hpp"
#include "testing/scoped_mount.hpp"
#include "testing/sink_and_stream.hpp"
#include "testing/subprocess.hpp"
#include "testing/synthetic_stream.hpp"

namespace perfstream::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (std::size_t at = 0; (at = text.find(needle, at)) != std::string::npos; at += needle.size()) ++n;
  return n;
}

// The openat paths under `under` in a recording's files, with how often each appears. `live`: the file is
// still being written, and may end in a partial frame.
std::map<std::string, int> opened_paths(const std::string& file, const fs::path& under, bool live = false) {
  RunResult r = run({perfstream_binary(), "dump", "--json", "--event", "openat", file});
  if (!live) {
    EXPECT_EQ(r.exit_status, 0) << r.err;
  }
  std::map<std::string, int> paths;
  const std::regex path_re("\"path\":\"([^\"]*)\"");
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, path_re) && m[1].str().rfind(under.string(), 0) == 0) ++paths[m[1].str()];
  }
  return paths;
}

// Each batch (sequence -> records) in a spool directory's segment-*.psf files, and the recording they are of.
struct Spooled {
  std::map<std::uint64_t, std::uint32_t> batches;
  std::string collector_id;  // host-recording_id, as the collector said hello
};

Spooled read_spool(const fs::path& spool) {
  Spooled out;
  for (const auto& e : fs::directory_iterator(spool)) {
    if (e.path().filename().string().rfind("segment-", 0) != 0) continue;
    auto reader = TraceFileReader::open(e.path().string());
    if (!reader) continue;  // created but empty when the kill came
    out.collector_id = (*reader)->header().host() + "-" + (*reader)->header().recording_id();
    for (ReadOutcome o = (*reader)->next(); o.status == ReadStatus::Frame; o = (*reader)->next()) {
      if (o.type != FrameType::Batch) continue;
      auto view = BatchView::parse(o.message);
      if (!view) break;
      out.batches[view->batch().sequence()] = view->batch().record_count();
    }
  }
  return out;
}

class StreamRefusalEndToEnd : public SinkAndStreamTest {
 protected:
  StreamRefusalEndToEnd() : SinkAndStreamTest("perfstream-refusal-e2e") {}
  void SetUp() override {
    SinkAndStreamTest::SetUp();
    fs::create_directories(dir_ / "sink");  // the disk-full test mounts a small tmpfs there
  }

  // True once the stream has said it is connected. On false, *skip says why when the kernel refused BPF.
  bool wait_connected(Background& stream, std::size_t connects_before, std::string* skip) {
    if (wait_until([&] { return count_of(stream.err_so_far(), "connected to " + to_) > connects_before || stream.exited(); },
                   20s) &&
        !stream.exited()) {
      return true;
    }
    explain_stream_exit(stream, "did not connect", skip);
    return false;
  }
};

TEST_F(StreamRefusalEndToEnd, CollectorKilledMidStreamSendsItsSpoolAsTheEarlierRecordingOnRestart) {
  auto sink = start_sink();
  ASSERT_TRUE(sink);
  auto first = start_stream();
  std::string skip;
  if (!wait_connected(*first, 0, &skip)) {
    if (!skip.empty()) GTEST_SKIP() << skip;
    return;
  }
  // Some batches reach the sink; then it dies, and the collector spools the rest; then the collector dies.
  std::set<std::string> expected = open_files(0, 100);
  ASSERT_TRUE(wait_until(
      [&] {
        for (const auto& e : fs::directory_iterator(dir_ / "sink")) {
          if (!opened_paths(e.path().string(), dir_ / "files", true).empty()) return true;
        }
        return false;
      },
      10s));
  EXPECT_EQ(sink->stop(SIGKILL).exit_status, 128 + SIGKILL);
  const auto more = open_files(100, 300);
  expected.insert(more.begin(), more.end());
  std::this_thread::sleep_for(700ms);  // batch-age 20 ms: every open is in a spooled batch by now
  EXPECT_EQ(first->stop(SIGKILL).exit_status, 128 + SIGKILL);

  const Spooled spooled = read_spool(dir_ / "spool");
  ASSERT_FALSE(spooled.batches.empty()) << "the first run left batches in its spool";
  ASSERT_FALSE(spooled.collector_id.empty());
  std::printf("[   INFO   ] the killed run left %zu batches (%llu..%llu) in its spool\n", spooled.batches.size(),
              static_cast<unsigned long long>(spooled.batches.begin()->first),
              static_cast<unsigned long long>(spooled.batches.rbegin()->first));

  // Both come back: the new run sends the first run's batches as the first run's recording.
  sink = start_sink();
  ASSERT_TRUE(sink);
  auto second = start_stream();
  ASSERT_TRUE(wait_connected(*second, 0, &skip)) << skip;
  ASSERT_TRUE(wait_until([&] { return second->err_so_far().find("the sink has every batch of it") != std::string::npos ||
                                      second->exited(); },
                         15s))
      << second->err_so_far();
  RunResult streamed = second->stop(SIGINT);
  ASSERT_EQ(streamed.exit_status, 0) << streamed.err;
  EXPECT_NE(streamed.err.find("an earlier run left " + std::to_string(spooled.batches.size()) + " batches"),
            std::string::npos)
      << streamed.err;
  EXPECT_NE(streamed.err.find("of its recording " + spooled.collector_id +
                              " unacknowledged; sending them to the sink as that recording"),
            std::string::npos)
      << streamed.err;
  EXPECT_NE(streamed.err.find("the earlier run's recording " + spooled.collector_id + ": acknowledged through batch " +
                              std::to_string(spooled.batches.rbegin()->first + 1) + ", all delivered"),
            std::string::npos)
      << streamed.err;
  RunResult sunk = sink->stop(SIGINT);
  EXPECT_EQ(sunk.exit_status, 0) << sunk.err;

  // Nothing left behind in the spool, and the earlier recording at the sink holds every batch once: the
  // ones it had before the kill and the ones the second run delivered, each spooled one with its records.
  for (const auto& e : fs::directory_iterator(dir_ / "spool")) {
    EXPECT_EQ(e.path().filename().string().rfind("undelivered-", 0), std::string::npos) << e.path();
  }
  const std::string earlier_file = (dir_ / "sink" / (file_safe_id(spooled.collector_id) + ".data")).string();
  const StoredRecording stored = read_recording(earlier_file);
  const auto counts = stored.sequence_counts();
  ASSERT_EQ(counts.size(), spooled.batches.rbegin()->first + 1) << "batches 0.." << spooled.batches.rbegin()->first;
  for (const auto& [sequence, n] : counts) EXPECT_EQ(n, 1) << "batch " << sequence << " stored " << n << " times";
  std::map<std::uint64_t, std::uint32_t> stored_records;
  for (const auto& b : stored.batches) {
    v1::Batch batch;
    ASSERT_TRUE(batch.ParseFromString(b.message));
    stored_records[b.sequence] = batch.record_count();
  }
  for (const auto& [sequence, records] : spooled.batches) {
    EXPECT_EQ(stored_records[sequence], records) << "batch " << sequence << ": records as spooled";
  }
  const auto paths = opened_paths(earlier_file, dir_ / "files");
  EXPECT_EQ(paths.size(), expected.size()) << "every open of the first run";
  for (const auto& path : expected) EXPECT_EQ(paths.count(path) ? paths.at(path) : 0, 1) << path;
}

TEST_F(StreamRefusalEndToEnd, SinkDiskFullIsRefusedInBandBackedOffAndDeliveredOnceSpaceIsBack) {
  const ScopedMount disk = ScopedMount::tmpfs((dir_ / "sink").string(), "2m");
  if (!disk.error().empty()) GTEST_SKIP() << disk.error();
  auto sink = start_sink();
  ASSERT_TRUE(sink);
  auto stream = start_stream();
  std::string skip;
  if (!wait_connected(*stream, 0, &skip)) {
    if (!skip.empty()) GTEST_SKIP() << skip;
    return;
  }
  std::set<std::string> expected = open_files(0, 50);
  ASSERT_TRUE(wait_until([&] { return count_of(stream->err_so_far(), "connected") > 0; }, 5s));
  std::this_thread::sleep_for(300ms);

  // Fill the sink's disk to the last byte.
  const fs::path filler = dir_ / "sink" / "filler";
  {
    int fd = ::open(filler.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    const std::string block(4096, 'x');
    while (::write(fd, block.data(), block.size()) > 0) {
    }
    while (::write(fd, block.data(), 1) > 0) {
    }
    ::close(fd);
  }
  const auto full_since = std::chrono::steady_clock::now();
  auto more = open_files(50, 250);
  expected.insert(more.begin(), more.end());
  ASSERT_TRUE(wait_until([&] { return stream->err_so_far().find("No space left on device") != std::string::npos; }, 10s))
      << stream->err_so_far() << "\nthe sink said:\n" << sink->err_so_far();
  std::this_thread::sleep_for(6s);  // the sink keeps refusing; the collector backs off
  const std::string during = stream->err_so_far();
  const auto full_for = std::chrono::steady_clock::now() - full_since;

  // Space comes back: everything spooled arrives, once.
  fs::remove(filler);
  more = open_files(250, 300);
  expected.insert(more.begin(), more.end());
  RunResult streamed = stream->stop(SIGINT);
  ASSERT_EQ(streamed.exit_status, 0) << streamed.err;
  RunResult sunk = sink->stop(SIGINT);
  EXPECT_EQ(sunk.exit_status, 0) << sunk.err;

  // The summary names the sink's reason, and the attempts were few: 0.1 s doubling to 5 s is 7 attempts
  // in 7 s, not the 8 a second of a collector that starts over at 0.1 s each time.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(streamed.err, m,
                                std::regex("sent to " + to_ + ": acknowledged through batch ([0-9]+), ([0-9]+) connections in "
                                           "([0-9]+) attempts, refused ([0-9]+) times? by the sink \\(last: cannot store "
                                           "batch [0-9]+ in [^ ]+\\.data: No space left on device\\)")))
      << streamed.err;
  const auto attempts = std::stoull(m[3].str());
  const auto refusals = std::stoull(m[4].str());
  const double seconds = std::chrono::duration<double>(full_for).count();
  std::printf("[   INFO   ] disk full for %.1f s: %llu attempts, %llu refusals; sink log %zu bytes\n", seconds,
              static_cast<unsigned long long>(attempts), static_cast<unsigned long long>(refusals), sunk.err.size());
  EXPECT_GE(refusals, 2u);
  EXPECT_LE(attempts, 12u) << during;
  // The collector's own retry lines are rate-limited while the sink keeps refusing.
  EXPECT_LE(count_of(during, "retrying in"), 4u) << during;
  // And the sink's: one line per cause and interval, the rest counted.
  EXPECT_LE(count_of(sunk.err, "refused: cannot store batch"), 3u) << sunk.err;

  // Exactly once: the sink's file holds batches 0..N-1 once each, and every open once.
  const auto acked = std::stoull(m[1].str());
  std::string file;
  for (const auto& e : fs::directory_iterator(dir_ / "sink")) {
    if (e.path().extension() == ".data") file = e.path().string();
  }
  ASSERT_FALSE(file.empty());
  const StoredRecording stored = read_recording(file);
  EXPECT_TRUE(stored.damage.empty()) << stored.damage.front();
  const auto counts = stored.sequence_counts();
  EXPECT_EQ(counts.size(), acked);
  for (const auto& [sequence, n] : counts) EXPECT_EQ(n, 1) << "batch " << sequence;
  const auto paths = opened_paths(file, dir_ / "files");
  EXPECT_EQ(paths.size(), expected.size());
  for (const auto& path : expected) EXPECT_EQ(paths.count(path) ? paths.at(path) : 0, 1) << path;
}

}  // namespace
}  // namespace perfstream::testing
