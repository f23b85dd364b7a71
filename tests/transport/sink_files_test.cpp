// A sink's open files under many collector ids (issue 16, item 3), on loopback: 2,000 distinct ids from
// many peer addresses keep the recordings' open files at --max-open-files, 2,000 from one address stop at
// --max-collectors-per-peer, and an honest collector streaming afterwards stores every batch exactly once.
// Also: a collector whose idle file was closed comes back and resumes exactly; when every open file has a
// live connection a new collector is refused in-band, with the reason.
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "collector/transport/sink_server.hpp"
#include "collector/transport/stream_client.hpp"
#include "collector/transport/stream_protocol.hpp"
#include "testing/raw_peer.hpp"
#include "testing/sink_peer.hpp"
#include "testing/synthetic_stream.hpp"
#include "testing/temp_dir.hpp"

namespace perfstream {
namespace {

using namespace std::chrono_literals;
using testing::RawPeer;
using testing::SyntheticSource;
using testing::TempDir;
using testing::wait_until;
using testing::start_sink;
using testing::hello_frame;
using testing::batch_frame;
using testing::open_files_under;

// This process's descriptors: all of them, and those open on files under `dir`.
std::size_t open_fds() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& fd : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// A hello from `source` (an address in host order), and the sink's answer: Welcome or Refusal.
struct Answer {
  FrameType type = FrameType::Batch;
  std::string reason;  // of a refusal
  std::uint64_t next_sequence = 0;  // of a welcome
};

Answer say_hello(std::uint16_t port, std::uint32_t source, const std::string& id) {
  RawPeer p = RawPeer::tcp(port, source);
  if (!p.send(hello_frame(id))) throw std::runtime_error("hello of " + id + " not sent");
  auto frame = p.read_frame();
  if (!frame) throw std::runtime_error("no answer to the hello of " + id);
  Answer a;
  a.type = frame->first;
  if (a.type == FrameType::Refusal) {
    v1::StreamRefusal refusal;
    if (!refusal.ParseFromString(frame->second)) throw std::runtime_error("a refusal that does not decode");
    a.reason = refusal.reason();
  } else if (a.type == FrameType::Welcome) {
    v1::StreamWelcome welcome;
    if (!welcome.ParseFromString(frame->second)) throw std::runtime_error("a welcome that does not decode");
    a.next_sequence = welcome.next_sequence();
  }
  return a;
}

SinkOptions sink_options(const std::string& dir, Log* log) {
  SinkOptions o;
  o.listen.push_back(*Endpoint::parse("tcp://127.0.0.1:0"));
  o.store.dir = dir;
  o.store.log = log;
  o.max_connections_per_peer = 1000;  // the hellos come one after the other, but the sink sees them go later
  return o;
}

// An honest StreamClient (from 127.0.0.1) streams `batches` batches and its trailer; the sink must hold
// every one exactly once.
void honest_collector_stores_everything(SinkServer& sink, const std::string& spool, std::uint64_t batches) {
  auto client = testing::make_client(testing::fast_client_options(sink.bound()[0], spool), "honest");
  ASSERT_TRUE(client->start());
  SyntheticSource source(7, 24);
  for (std::uint64_t s = 0; s < batches; ++s) ASSERT_TRUE(client->write_batch(source.batch(s)));
  v1::TraceTrailer trailer;
  ASSERT_TRUE(testing::finished_in_time(client->finish(trailer, 20s)));
  std::optional<CollectorSummary> stored;
  ASSERT_TRUE(wait_until([&] {
    for (const auto& c : sink.summaries()) {
      if (c.id == "honest" && c.finished) stored = c;
    }
    return stored.has_value();
  }, 10s));
  EXPECT_EQ(stored->batches, batches);
  EXPECT_EQ(stored->records, batches * 24);
  EXPECT_EQ(stored->duplicates, 0u);
  EXPECT_TRUE(testing::holds_exactly_once(testing::read_recording(stored->file), source, batches));
}

constexpr int kIds = 2000;

TEST(SinkFiles, TwoThousandCollectorIdsFromManyPeersKeepTheOpenFilesAtTheCap) {
  TempDir dir;
  testing::LogLines log;
  SinkOptions options = sink_options(dir.file("sink"), log.sink());
  options.store.files.max_open = 50;
  options.max_collectors_per_peer = 8;
  const std::size_t fds_before = open_fds();
  auto sink = start_sink(options);
  const std::uint16_t port = sink->bound()[0].port;
  const std::size_t fds_of_sink = open_fds() - fds_before;  // listener, epoll, eventfd/timerfd

  // 250 addresses 127.1.x.y, 8 ids each (their cap): every hello is welcomed, each new file closes the
  // one idle longest.
  std::size_t files_peak = 0, fds_peak = 0;
  for (int i = 0; i < kIds; ++i) {
    const std::uint32_t address = 0x7f010000u + 1 + static_cast<std::uint32_t>(i / 8);
    const Answer a = say_hello(port, address, "fleet-" + std::to_string(i));
    ASSERT_EQ(a.type, FrameType::Welcome) << "id " << i << ": " << a.reason;
    if (i % 50 == 49) {
      files_peak = std::max(files_peak, open_files_under(dir.file("sink")));
      fds_peak = std::max(fds_peak, open_fds() - fds_before);
    }
  }
  ASSERT_TRUE(wait_until([&] { return sink->open_connections() == 0; }, 5s)) << sink->open_connections();
  const auto files = sink->files();
  EXPECT_EQ(files.open, 50u);
  EXPECT_EQ(files.closed_for_room, std::uint64_t{kIds - 50});
  EXPECT_EQ(files.refused_full, 0u);
  EXPECT_EQ(open_files_under(dir.file("sink")), 50u);
  EXPECT_LE(files_peak, 50u);
  // The sink's own descriptors, at most 50 files and the few connections it had not yet seen close (and
  // our client sockets, one at a time).
  EXPECT_LE(fds_peak, fds_of_sink + 50 + 16) << "fds of the sink alone: " << fds_of_sink;
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.file("sink")), {}), kIds) << "each id its file";
  std::printf("[   INFO   ] %d ids from 250 addresses, --max-open-files 50: recording files open at most %zu, "
              "fds at most %zu (sink's own %zu), %zu log lines\n",
              kIds, files_peak, fds_peak, fds_of_sink, log.lines().size());

  honest_collector_stores_everything(*sink, dir.file("spool"), 200);
  EXPECT_LE(open_files_under(dir.file("sink")), 50u);
}

TEST(SinkFiles, TwoThousandCollectorIdsFromOnePeerStopAtItsCapWithOneLogLinePerInterval) {
  TempDir dir;
  testing::LogLines lines;
  // A minute's interval: however slow the machine, the refusals all fall in the first one.
  Log* kept = lines.sink();
  Log log([kept](const std::string& line) { kept->line(line); }, Log::Options{60s, {}});
  SinkOptions options = sink_options(dir.file("sink"), &log);
  options.max_collectors_per_peer = 64;
  const std::size_t fds_before = open_fds();
  auto sink = start_sink(options);
  const std::uint16_t port = sink->bound()[0].port;
  const std::size_t fds_of_sink = open_fds() - fds_before;

  constexpr std::uint32_t kAttacker = 0x7f000002;  // 127.0.0.2; the honest collector comes from 127.0.0.1
  std::size_t welcomed = 0, refused = 0, fds_peak = 0;
  std::string reason;
  for (int i = 0; i < kIds; ++i) {
    const Answer a = say_hello(port, kAttacker, "attacker-" + std::to_string(i));
    if (a.type == FrameType::Welcome) ++welcomed;
    if (a.type == FrameType::Refusal) {
      ++refused;
      reason = a.reason;
    }
    if (i % 50 == 49) fds_peak = std::max(fds_peak, open_fds() - fds_before);
  }
  EXPECT_EQ(welcomed, 64u);
  EXPECT_EQ(refused, std::size_t{kIds - 64});
  EXPECT_EQ(reason, "collector attacker-1999: 127.0.0.2 has 64 collectors with unfinished recordings on this sink "
                    "(--max-collectors-per-peer 64)");
  EXPECT_EQ(sink->collectors_over_limit(), std::uint64_t{kIds - 64});
  EXPECT_EQ(open_files_under(dir.file("sink")), 64u);
  EXPECT_LE(fds_peak, fds_of_sink + 64 + 16);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.file("sink")), {}), 64) << "no file for a refused id";
  // One line for the first refusal; the rest are counted in a summary after the interval (10 s).
  EXPECT_EQ(lines.count("(--max-collectors-per-peer 64)"), 1u) << lines.text();
  std::printf("[   INFO   ] %d ids from one address, --max-collectors-per-peer 64: %zu welcomed, %zu refused, "
              "fds at most %zu (sink's own %zu), %zu log lines\n",
              kIds, welcomed, refused, fds_peak, fds_of_sink, lines.lines().size());

  honest_collector_stores_everything(*sink, dir.file("spool"), 200);
}

TEST(SinkFiles, ACollectorWhoseIdleFileWasClosedResumesExactly) {
  TempDir dir;
  testing::LogLines log;
  SinkOptions options = sink_options(dir.file("sink"), log.sink());
  options.store.files.idle_close = 100ms;
  auto sink = start_sink(options);
  const std::uint16_t port = sink->bound()[0].port;
  SyntheticSource source(4, 16);
  {
    RawPeer p = RawPeer::tcp(port);
    ASSERT_TRUE(p.send(hello_frame("returning")));
    ASSERT_EQ(p.read_frame()->first, FrameType::Welcome);
    std::string frames;
    for (std::uint64_t s = 0; s < 10; ++s) frames += batch_frame(source, s);
    ASSERT_TRUE(p.send(frames));
    for (int acks = 0; acks < 10; ++acks) ASSERT_EQ(p.read_frame()->first, FrameType::Ack);
  }
  ASSERT_TRUE(wait_until([&] { return sink->files().closed_idle == 1; }, 5s)) << log.text();
  EXPECT_EQ(open_files_under(dir.file("sink")), 0u);

  RawPeer p = RawPeer::tcp(port);
  ASSERT_TRUE(p.send(hello_frame("returning")));
  auto welcome = p.read_frame();
  ASSERT_EQ(welcome->first, FrameType::Welcome);
  v1::StreamWelcome w;
  ASSERT_TRUE(w.ParseFromString(welcome->second));
  EXPECT_EQ(w.next_sequence(), 10u);
  EXPECT_EQ(sink->files().reopened, 1u);
  // Resends from 6 (acks it did not see), then new batches.
  std::string frames;
  for (std::uint64_t s = 6; s < 25; ++s) frames += batch_frame(source, s);
  ASSERT_TRUE(p.send(frames));
  v1::StreamAck ack;
  for (int acks = 0; acks < 19; ++acks) {
    auto a = p.read_frame();
    ASSERT_TRUE(a);
    ASSERT_EQ(a->first, FrameType::Ack);
    ASSERT_TRUE(ack.ParseFromString(a->second));
  }
  EXPECT_EQ(ack.through(), 25u);
  EXPECT_EQ(ack.duplicates(), 4u);
  ASSERT_TRUE(wait_until([&] { return sink->summaries().size() == 1 && sink->summaries()[0].batches == 25; }, 5s));
  const auto stored = testing::read_recording(sink->summaries()[0].file);
  EXPECT_EQ(stored.files.size(), 1u);
  EXPECT_TRUE(stored.damage.empty());
  EXPECT_TRUE(testing::holds_exactly_once(stored, source, 25));
}

TEST(SinkFiles, WhenEveryOpenFileHasALiveConnectionANewCollectorIsRefusedInBand) {
  TempDir dir;
  std::mutex mutex;
  std::vector<std::string> lines;
  Log log([&](const std::string& line) {
    std::lock_guard<std::mutex> lock(mutex);
    lines.push_back(line);
  }, Log::Options{300ms, {}});
  auto count = [&](const std::string& needle) {
    std::lock_guard<std::mutex> lock(mutex);
    return std::count_if(lines.begin(), lines.end(), [&](const std::string& l) { return l.find(needle) != l.npos; });
  };
  SinkOptions options = sink_options(dir.file("sink"), &log);
  options.store.files.max_open = 4;
  auto sink = start_sink(options);
  const std::uint16_t port = sink->bound()[0].port;
  std::vector<RawPeer> live;
  for (int i = 0; i < 4; ++i) {
    live.push_back(RawPeer::tcp(port));
    ASSERT_TRUE(live.back().send(hello_frame("live-" + std::to_string(i))));
    ASSERT_EQ(live.back().read_frame()->first, FrameType::Welcome);
  }
  for (int i = 0; i < 20; ++i) {
    const Answer a = say_hello(port, INADDR_ANY, "late-" + std::to_string(i));
    ASSERT_EQ(a.type, FrameType::Refusal);
    EXPECT_EQ(a.reason, "no file for collector late-" + std::to_string(i) +
                            ": all 4 recording files the sink may keep open (--max-open-files 4) have a live "
                            "connection");
  }
  EXPECT_EQ(sink->files().refused_full, 20u);
  EXPECT_EQ(open_files_under(dir.file("sink")), 4u);
  EXPECT_EQ(count("(--max-open-files 4)"), 1) << "one line per interval";
  std::this_thread::sleep_for(400ms);
  log.flush();
  EXPECT_EQ(count("(19 more like this suppressed in the last 300 ms)"), 1);

  // One goes: its file becomes the one to close, and the next collector gets in.
  live.pop_back();
  ASSERT_TRUE(wait_until([&] { return sink->files().idle == 1; }, 5s));
  EXPECT_EQ(say_hello(port, INADDR_ANY, "late-20").type, FrameType::Welcome);
  EXPECT_EQ(sink->files().closed_for_room, 1u);
  EXPECT_EQ(open_files_under(dir.file("sink")), 4u);
}

}  // namespace
}  // namespace perfstream
