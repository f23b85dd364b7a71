// The sink's bounds under cheap attacks (issue 16), on loopback with an honest StreamClient streaming
// meanwhile: the memory held for frames grows with the bytes received, never with the bytes declared, and
// stays within the --max-memory budget; the honest collector's records are all stored, each once.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
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
using testing::LogLines;
using testing::RawPeer;
using testing::SyntheticSource;
using testing::TempDir;
using testing::wait_until;
using testing::start_sink;
using testing::hello_frame;

constexpr std::size_t kMiB = 1u << 20;

SinkOptions tcp_sink_options(const std::string& dir, LogLines& log) {
  SinkOptions o;
  auto ep = Endpoint::parse("tcp://127.0.0.1:0");
  o.listen.push_back(*ep);
  o.store.dir = dir;
  o.store.log = log.sink();
  return o;
}

std::string frame_header(FrameType type, std::uint32_t length) {
  std::string header;
  append_frame_header(header, FrameHeader{type, type == FrameType::Hello ? kEncodingNone : kEncodingZstd, length});
  return header;
}

// This process's resident set (VmRSS), in bytes.
std::size_t rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

// The highest VmRSS seen while it lives, sampled every few milliseconds.
class RssPeak {
 public:
  RssPeak() : start_(rss_bytes()), peak_(start_), thread_([this] {
    while (!done_) {
      peak_ = std::max(peak_.load(), rss_bytes());
      std::this_thread::sleep_for(5ms);
    }
  }) {}
  ~RssPeak() { stop(); }
  void stop() {
    done_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::size_t growth() const { return peak_ > start_ ? peak_ - start_ : 0; }

 private:
  std::size_t start_;
  std::atomic<std::size_t> peak_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// An honest collector streaming `batches` batches on its own thread, as reader threads would.
class HonestCollector {
 public:
  HonestCollector(const Endpoint& sink, const std::string& spool, std::uint64_t batches)
      : batches_(batches), client_(testing::make_client(testing::fast_client_options(sink, spool), "honest")) {
    if (!client_->start()) throw std::runtime_error("the honest client does not start");
    feeder_ = std::thread([this] {
      SyntheticSource source(1, 24);
      for (std::uint64_t s = 0; s < batches_; ++s) {
        Status st = client_->write_batch(source.batch(s));
        EXPECT_TRUE(st) << "batch " << s << ": " << st.error().message();
        std::this_thread::sleep_for(2ms);
      }
    });
  }
  ~HonestCollector() {
    if (feeder_.joinable()) feeder_.join();
  }

  // Waits for the feeder, sends the trailer, and checks that the sink holds every batch exactly once.
  void finish_and_check(SinkServer& sink, LogLines& log) {
    feeder_.join();
    v1::TraceTrailer trailer;
    trailer.set_batches(batches_);
    ASSERT_TRUE(testing::finished_in_time(client_->finish(trailer, 20s)));
    std::optional<CollectorSummary> s;
    ASSERT_TRUE(wait_until([&] {
      for (const auto& c : sink.summaries()) {
        if (c.id == "honest" && c.finished) s = c;
      }
      return s.has_value();
    }, 10s)) << log.text();
    EXPECT_EQ(s->batches, batches_);
    SyntheticSource source(1, 24);
    EXPECT_TRUE(testing::holds_exactly_once(testing::read_recording(s->file), source, batches_));
  }

 private:
  std::uint64_t batches_;
  std::unique_ptr<StreamClient> client_;
  std::thread feeder_;
};

TEST(SinkBounds, HeadersDeclaringHugeFramesBeforeHelloHoldNoMemory) {
  TempDir dir;
  LogLines log;
  SinkOptions options = tcp_sink_options(dir.file("sink"), log);
  options.max_frame = kMaxFramePayload;  // the largest a sink takes: 64 MiB
  options.hello_timeout = 20s;           // the stallers stay for the whole test
  options.max_connections_per_peer = 1000;  // every peer here is 127.0.0.1
  auto sink = start_sink(options);
  const std::uint16_t port = sink->bound()[0].port;
  HonestCollector honest(sink->bound()[0], dir.file("spool"), 150);

  RssPeak rss;
  // 100 peers declare a maximum-size hello and send nothing more; 100 declare a hello of the largest size
  // allowed and stall half-way through it; 100 declare a maximum-size batch before any hello.
  std::vector<RawPeer> huge, stalled, batches;
  const std::string part(kMaxHelloPayload / 2, 'x');
  for (int i = 0; i < 100; ++i) {
    huge.push_back(RawPeer::tcp(port));
    ASSERT_TRUE(huge.back().send(frame_header(FrameType::Hello, kMaxFramePayload)));
    stalled.push_back(RawPeer::tcp(port));
    ASSERT_TRUE(stalled.back().send(frame_header(FrameType::Hello, kMaxHelloPayload) + part));
    batches.push_back(RawPeer::tcp(port));
    ASSERT_TRUE(batches.back().send(frame_header(FrameType::Batch, kMaxFramePayload)));
  }
  for (auto& p : huge) EXPECT_TRUE(p.closed_within(3s));
  for (auto& p : batches) EXPECT_TRUE(p.closed_within(3s));
  ASSERT_TRUE(wait_until([&] { return sink->frame_memory().held >= 100 * part.size(); }, 5s))
      << sink->frame_memory().held;
  rss.stop();

  const auto memory = sink->frame_memory();
  // Each stalled hello holds what it sent rounded up to its buffer's capacity, at most the hello limit.
  EXPECT_LE(memory.peak, 100 * std::size_t{kMaxHelloPayload} + 4 * kMiB) << "the honest collector's frames";
  EXPECT_LT(rss.growth(), 100 * kMiB);
  EXPECT_EQ(memory.waits, 0u);
  std::printf("[   INFO   ] 300 hostile peers before hello: frame memory peak %.1f MiB, RSS growth %.1f MiB\n",
              static_cast<double>(memory.peak) / kMiB, static_cast<double>(rss.growth()) / kMiB);
  // 100 drops for one cause from one address: the first is written, the other 99 go through the rate limit
  // (counted in one summary line at the end of the interval: Log's own tests check that count).
  EXPECT_EQ(log.count("a hello of 67108864 bytes, over the limit of 65536; disconnected"), 1u) << log.text();
  EXPECT_EQ(log.count("the first frame is not a hello; disconnected"), 1u);

  stalled.clear();  // their memory comes back as they go
  EXPECT_TRUE(wait_until([&] { return sink->frame_memory().held <= 4 * kMiB; }, 5s)) << sink->frame_memory().held;
  honest.finish_and_check(*sink, log);
}

TEST(SinkBounds, FramesStalledAfterHelloStayWithinTheBudgetAndWaitForIt) {
  TempDir dir;
  LogLines log;
  SinkOptions options = tcp_sink_options(dir.file("sink"), log);
  options.max_frame = 16 * kMiB;
  options.max_memory = 48 * kMiB;
  options.idle_timeout = 30s;  // the stallers stay until the test lets them go
  options.max_connections_per_peer = 1000;  // every peer here is 127.0.0.1
  auto sink = start_sink(options);
  const std::uint16_t port = sink->bound()[0].port;
  HonestCollector honest(sink->bound()[0], dir.file("spool"), 150);

  RssPeak rss;
  // 100 collectors say hello, declare a 16 MiB batch and send 1 MiB of it (what the socket takes), then
  // stall: 1.6 GB declared, 100 MiB offered, more than twice the budget.
  std::vector<RawPeer> stalled;
  const std::string chunk(kMiB, 'z');
  std::size_t offered = 0;
  for (int i = 0; i < 100; ++i) {
    stalled.push_back(RawPeer::tcp(port));
    RawPeer& p = stalled.back();
    ASSERT_TRUE(p.send(hello_frame("staller-" + std::to_string(i))));
    auto welcome = p.read_frame();
    ASSERT_TRUE(welcome);
    ASSERT_EQ(welcome->first, FrameType::Welcome);
    ASSERT_TRUE(p.send(frame_header(FrameType::Batch, 16 * kMiB)));
    const long sent = p.send_now(chunk);
    ASSERT_GE(sent, 0);
    offered += static_cast<std::size_t>(sent);
  }
  // The sink reads until the budget is spent, then stops reading: the rest stays in the sockets.
  EXPECT_TRUE(wait_until([&] { return sink->frame_memory().waits > 0; }, 5s))
      << "offered " << offered << ", held " << sink->frame_memory().held;
  std::this_thread::sleep_for(500ms);
  rss.stop();
  const auto memory = sink->frame_memory();
  EXPECT_EQ(memory.limit, 48 * kMiB);
  EXPECT_LE(memory.peak, memory.limit + 100 * std::size_t{kMaxHelloPayload}) << "only hellos pass the limit";
  EXPECT_LT(rss.growth(), memory.limit + 16 * kMiB) << "allocations follow the budget";
  std::printf("[   INFO   ] 100 stalled frames after hello: %.1f MiB offered, frame memory peak %.1f MiB of %.1f, "
              "RSS growth %.1f MiB, %llu waits\n",
              static_cast<double>(offered) / kMiB, static_cast<double>(memory.peak) / kMiB,
              static_cast<double>(memory.limit) / kMiB, static_cast<double>(rss.growth()) / kMiB,
              static_cast<unsigned long long>(memory.waits));

  // The stallers go: their memory comes back, and the honest collector, which waited for the budget (or
  // reconnected), delivers everything exactly once.
  stalled.clear();
  EXPECT_TRUE(wait_until([&] { return sink->frame_memory().held <= 4 * kMiB; }, 5s)) << sink->frame_memory().held;
  honest.finish_and_check(*sink, log);
}

TEST(SinkBounds, TheBudgetIsAtLeastTwoFrames) {
  TempDir dir;
  LogLines log;
  SinkOptions options = tcp_sink_options(dir.file("sink"), log);
  options.max_frame = 16 * kMiB;
  options.max_memory = 1 * kMiB;
  auto sink = SinkServer::create(options);
  ASSERT_TRUE(sink) << sink.error().message();
  EXPECT_EQ((*sink)->frame_memory().limit, 32 * kMiB);
  options.max_memory = 0;
  auto by_default = SinkServer::create(options);
  ASSERT_TRUE(by_default) << by_default.error().message();
  EXPECT_EQ((*by_default)->frame_memory().limit, std::max(default_frame_memory_budget(), 32 * kMiB));
}

TEST(SinkBounds, ConnectionsPastTheLimitsAreClosedAtOnceWithOneLogLinePerInterval) {
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
  SinkOptions options;
  options.listen.push_back(*Endpoint::parse("tcp://127.0.0.1:0"));
  options.store.dir = dir.file("sink");
  options.store.log = &log;
  options.max_connections = 20;
  options.max_connections_per_peer = 8;
  options.hello_timeout = 20s;
  auto sink = start_sink(options);
  const std::uint16_t port = sink->bound()[0].port;
  HonestCollector honest(sink->bound()[0], dir.file("spool"), 100);  // one of 127.0.0.1's 8
  ASSERT_TRUE(wait_until([&] { return sink->open_connections() == 1; }, 5s));

  constexpr std::uint32_t kLocal1 = 0x7f000001, kLocal2 = 0x7f000002, kLocal3 = 0x7f000003;
  std::vector<RawPeer> kept;
  for (int i = 0; i < 7; ++i) kept.push_back(RawPeer::tcp(port, kLocal1));
  ASSERT_TRUE(wait_until([&] { return sink->open_connections() == 8; }, 5s)) << sink->open_connections();
  for (int i = 0; i < 30; ++i) {
    RawPeer p = RawPeer::tcp(port, kLocal1);
    EXPECT_TRUE(p.closed_within(2s)) << "past the per-peer limit: " << i;
  }
  // Other addresses still get in, up to the total.
  for (int i = 0; i < 8; ++i) kept.push_back(RawPeer::tcp(port, kLocal2));
  for (int i = 0; i < 4; ++i) kept.push_back(RawPeer::tcp(port, kLocal3));
  ASSERT_TRUE(wait_until([&] { return sink->open_connections() == 20; }, 5s)) << sink->open_connections();
  for (int i = 0; i < 10; ++i) {
    RawPeer p = RawPeer::tcp(port, 0x7f000004);
    EXPECT_TRUE(p.closed_within(2s)) << "past the total: " << i;
  }
  for (auto& p : kept) EXPECT_FALSE(p.closed_within(50ms)) << "admitted connections stay";
  EXPECT_EQ(sink->connections_over_limit(), 40u);

  // One line per limit so far; after the interval, one summary each with the count of the rest.
  EXPECT_EQ(count("refused at once: 8 connections open from 127.0.0.1 (--max-connections-per-peer 8)"), 1);
  EXPECT_EQ(count("refused at once: 20 connections open (--max-connections 20)"), 1);
  std::this_thread::sleep_for(400ms);
  log.flush();
  EXPECT_EQ(count("(29 more like this suppressed in the last 300 ms)"), 1);
  EXPECT_EQ(count("(9 more like this suppressed in the last 300 ms)"), 1);
  EXPECT_EQ(count("refused at once"), 4);

  // Slots come back as connections go.
  kept.clear();
  ASSERT_TRUE(wait_until([&] { return sink->open_connections() == 1; }, 5s)) << sink->open_connections();
  RawPeer again = RawPeer::tcp(port, kLocal1);
  EXPECT_FALSE(again.closed_within(200ms));
  LogLines unused;
  honest.finish_and_check(*sink, unused);
}

}  // namespace
}  // namespace perfstream
