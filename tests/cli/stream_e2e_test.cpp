// perfstream stream -> perfstream sink end to end, as a user runs them: the real binary, the real kernel,
// real sockets on loopback, real files. Needs root (it loads BPF); skips only when the kernel refuses BPF.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "collector/transport/sink_server.hpp"
#include "testing/ports.hpp"
#include "testing/sink_and_stream.hpp"
#include "testing/subprocess.hpp"
#include "testing/synthetic_stream.hpp"

namespace perfstream::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream ss(text);
  std::string line;
  while (std::getline(ss, line)) lines.push_back(line);
  return lines;
}

// The trace files (not pieces) in a sink's directory.
std::vector<fs::path> data_files(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".data" && e.file_size() > 16) out.push_back(e.path());
  }
  return out;
}

struct Dumped {
  std::multiset<std::string> paths;  // openat paths under the test's directory
  std::size_t records = 0;           // every record of the file
  std::size_t lost = 0;
};

// `live`: the file is still being written, and may end in a partial frame.
Dumped dump(const std::vector<fs::path>& files, const fs::path& under, bool live = false) {
  std::vector<std::string> argv = {perfstream_binary(), "dump", "--json"};
  for (const auto& f : files) argv.push_back(f.string());
  RunResult r = run(argv);
  if (!live) {
    EXPECT_EQ(r.exit_status, 0) << r.err;
  }
  const std::regex path_re("\"path\":\"([^\"]*)\"");
  Dumped d;
  for (const auto& line : lines_of(r.out)) {
    if (line.find("\"lost\"") != std::string::npos) {
      ++d.lost;
      continue;
    }
    ++d.records;
    std::smatch m;
    if (line.find("\"event\":\"openat\"") != std::string::npos && std::regex_search(line, m, path_re) &&
        m[1].str().rfind(under.string(), 0) == 0) {
      d.paths.insert(m[1].str());
    }
  }
  return d;
}

class StreamEndToEnd : public SinkAndStreamTest {
 protected:
  StreamEndToEnd() : SinkAndStreamTest("perfstream-stream-e2e") {}

  // True once the stream has said hello (the sink made its file): its probes are attached by then. On
  // false, *skip says why when the kernel refused BPF.
  bool wait_for_stream(Background& stream, std::size_t files_before, std::string* skip) {
    if (wait_until([&] { return data_files(dir_ / "sink").size() > files_before || stream.exited(); }, 20s) &&
        !stream.exited()) {
      return true;
    }
    explain_stream_exit(stream, "did not start", skip);
    return false;
  }
};

TEST_F(StreamEndToEnd, OpenatStreamReachesTheSinkExactlyOnce) {
  auto sink = start_sink();
  ASSERT_TRUE(sink);
  auto stream = start_stream();
  std::string skip;
  if (!wait_for_stream(*stream, 0, &skip)) {
    if (!skip.empty()) GTEST_SKIP() << skip;
    return;
  }
  constexpr int kFiles = 300;
  const std::set<std::string> expected = open_files(0, kFiles);
  RunResult streamed = stream->stop(SIGINT);
  ASSERT_EQ(streamed.exit_status, 0) << streamed.err;
  EXPECT_NE(streamed.err.find("connected to " + to_), std::string::npos) << streamed.err;
  EXPECT_NE(streamed.err.find("0 batches refused by a full spool"), std::string::npos) << streamed.err;

  const auto files = data_files(dir_ / "sink");
  ASSERT_EQ(files.size(), 1u);
  const Dumped d = dump(files, dir_ / "files");
  EXPECT_EQ(d.paths.size(), static_cast<std::size_t>(kFiles)) << "each path exactly once";
  EXPECT_EQ(std::set<std::string>(d.paths.begin(), d.paths.end()), expected);
  EXPECT_EQ(d.lost, 0u);

  RunResult stats = run({perfstream_binary(), "stats", "--json", files[0].string()});
  ASSERT_EQ(stats.exit_status, 0) << stats.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(stats.out, m, std::regex("\"records\":([0-9]+)"))) << stats.out;
  EXPECT_EQ(std::stoull(m[1].str()), d.records) << "stats and dump disagree";

  RunResult sunk = sink->stop(SIGINT);
  EXPECT_EQ(sunk.exit_status, 0) << sunk.err;
  EXPECT_NE(sunk.err.find(" finished: "), std::string::npos) << sunk.err;
  EXPECT_NE(sunk.err.find(": left"), std::string::npos) << "the sink shows the peer leaving:\n" << sunk.err;
}

TEST_F(StreamEndToEnd, SinkKilledAndRestartedMidStreamKeepsEveryPathOnce) {
  auto sink = start_sink();
  ASSERT_TRUE(sink);
  auto stream = start_stream();
  std::string skip;
  if (!wait_for_stream(*stream, 0, &skip)) {
    if (!skip.empty()) GTEST_SKIP() << skip;
    return;
  }
  constexpr int kFiles = 240;
  std::set<std::string> expected = open_files(0, kFiles / 3);
  // Mid-stream: some of them are at the sink when it dies.
  ASSERT_TRUE(wait_until([&] { return !dump(data_files(dir_ / "sink"), dir_ / "files", true).paths.empty(); }, 10s));
  RunResult killed = sink->stop(SIGKILL);
  EXPECT_EQ(killed.exit_status, 128 + SIGKILL);

  // No sink: the stream spools.
  auto more = open_files(kFiles / 3, 2 * kFiles / 3);
  expected.insert(more.begin(), more.end());
  std::this_thread::sleep_for(300ms);

  sink = start_sink();
  ASSERT_TRUE(sink);
  more = open_files(2 * kFiles / 3, kFiles);
  expected.insert(more.begin(), more.end());
  RunResult streamed = stream->stop(SIGINT);
  ASSERT_EQ(streamed.exit_status, 0) << streamed.err;
  std::size_t connects = 0;
  for (const auto& line : lines_of(streamed.err)) connects += line.find("connected to " + to_) != std::string::npos;
  EXPECT_EQ(connects, 2u) << streamed.err;

  const auto files = data_files(dir_ / "sink");
  ASSERT_EQ(files.size(), 1u) << "the restarted sink goes on in the same file";
  EXPECT_FALSE(fs::exists(files[0].string() + ".1"));
  const Dumped d = dump(files, dir_ / "files");
  EXPECT_EQ(d.paths.size(), static_cast<std::size_t>(kFiles)) << "each path exactly once";
  EXPECT_EQ(std::set<std::string>(d.paths.begin(), d.paths.end()), expected);
  EXPECT_EQ(d.lost, 0u);
  RunResult sunk = sink->stop(SIGINT);
  EXPECT_EQ(sunk.exit_status, 0) << sunk.err;
  EXPECT_NE(sunk.err.find("resuming"), std::string::npos) << sunk.err;
}

// Three collectors at one sink: the real kernel through `perfstream stream`, and two synthetic ones.
TEST_F(StreamEndToEnd, RealAndSyntheticCollectorsShareOneSinkExactlyOnce) {
  LogLines log;
  SinkOptions options;
  options.listen = {*Endpoint::parse(to_)};
  options.store.dir = (dir_ / "sink").string();
  options.store.log = log.sink();
  auto created = SinkServer::create(options);
  ASSERT_TRUE(created) << created.error().message();
  auto sink = std::move(*created);
  sink->start();

  auto stream = start_stream();
  std::string skip;
  if (!wait_for_stream(*stream, 0, &skip)) {
    if (!skip.empty()) GTEST_SKIP() << skip;
    return;
  }
  constexpr std::uint64_t kBatches = 80;
  const std::vector<std::string> ids = {"synthetic-a", "synthetic-b"};
  std::vector<std::unique_ptr<StreamClient>> clients;
  std::vector<std::thread> feeders;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    clients.push_back(make_client(fast_client_options(options.listen[0], (dir_ / ("spool-" + ids[i])).string()), ids[i]));
    ASSERT_TRUE(clients.back()->start());
  }
  for (std::size_t i = 0; i < ids.size(); ++i) {
    feeders.emplace_back([&, i] {
      SyntheticSource source(static_cast<unsigned>(10 + i), 30);
      for (std::uint64_t s = 0; s < kBatches; ++s) {
        EXPECT_TRUE(clients[i]->write_batch(source.batch(s)));
        std::this_thread::sleep_for(1ms);
      }
    });
  }
  constexpr int kFiles = 200;
  const std::set<std::string> expected = open_files(0, kFiles);
  for (auto& f : feeders) f.join();
  RunResult streamed = stream->stop(SIGINT);
  ASSERT_EQ(streamed.exit_status, 0) << streamed.err;
  for (auto& c : clients) EXPECT_TRUE(testing::finished_in_time(c->finish(v1::TraceTrailer(), 10s)));
  ASSERT_TRUE(wait_until(
      [&] {
        const auto all = sink->summaries();
        return all.size() == 3 && std::all_of(all.begin(), all.end(), [](const auto& s) { return s.finished; });
      },
      10s))
      << log.text();

  for (std::size_t i = 0; i < ids.size(); ++i) {
    SyntheticSource source(static_cast<unsigned>(10 + i), 30);
    const auto summaries = sink->summaries();
    auto s = std::find_if(summaries.begin(), summaries.end(), [&](const auto& c) { return c.id == ids[i]; });
    ASSERT_NE(s, summaries.end());
    EXPECT_EQ(s->batches, kBatches);
    EXPECT_EQ(s->duplicates, 0u);
    EXPECT_TRUE(holds_exactly_once(read_recording(s->file), source, kBatches)) << ids[i];
  }
  for (const auto& s : sink->summaries()) {
    if (s.id.rfind("synthetic-", 0) == 0) continue;
    const Dumped d = dump({fs::path(s.file)}, dir_ / "files");
    EXPECT_EQ(d.paths.size(), static_cast<std::size_t>(kFiles)) << "each path exactly once";
    EXPECT_EQ(std::set<std::string>(d.paths.begin(), d.paths.end()), expected);
    EXPECT_EQ(s.records, d.records) << "the sink's count and the file agree";
    EXPECT_EQ(s.lost_kernel + s.lost_collector, 0u);
  }
}

}  // namespace
}  // namespace perfstream::testing
