// perfstream stream --to kafka:// -> Kafka -> perfstream sink --from kafka:// end to end, as a user runs them:
// the real binary capturing the real loadgen probe, librdkafka's mock cluster (three brokers in this test
// process, the Kafka protocol on loopback), the sink's real files. Every record loadgen emitted must be in
// the sink's file exactly once and byte for byte what the BPF program wrote, through a failed broker and a
// sink killed with SIGKILL. Needs root; skips only when the kernel refuses BPF.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "collector/format/trace_reader.hpp"
#include "testing/kafka_mock.hpp"
#include "testing/remote_loadgen.hpp"
#include "testing/subprocess.hpp"
#include "testing/synthetic_stream.hpp"

namespace perfstream::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr std::uint32_t kRecordSize = 64;

class KafkaEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("perfstream-kafka-e2e-" + std::to_string(getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    ASSERT_EQ(mkfifo((dir_ / "go").c_str(), 0600), 0) << std::strerror(errno);
    kafka_ = std::make_unique<MockKafka>(3);
    kafka_->create_topics("events", 3);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // `perfstream stream` with a command that holds it until release(); null after a skip or a failure.
  std::unique_ptr<Background> start_stream() {
    const std::string ready = (dir_ / "ready").string();
    auto stream = std::make_unique<Background>(std::vector<std::string>{
        perfstream_binary(), "stream", "--to", kafka_->url("events"), "--probe", "loadgen", "--spool",
        (dir_ / "spool").string(), "--batch-age", "50ms", "--batch-records", "500", "-X",
        "reconnect.backoff.max.ms=500", "--", "/bin/sh", "-c",
        "echo > " + ready + " && cat " + (dir_ / "go").string() + " >/dev/null"});
    wait_until([&] { return fs::exists(ready) || stream->exited(); }, 20s);
    if (fs::exists(ready)) return stream;
    RunResult r = stream->exited() ? stream->wait() : stream->stop(SIGKILL);
    if (r.err.find("refused") != std::string::npos) {
      [&] { GTEST_SKIP() << "the kernel refuses BPF here: " << r.err; }();
      return nullptr;
    }
    ADD_FAILURE() << "the stream did not start: exit " << r.exit_status << ": " << r.err;
    return nullptr;
  }

  // Lets the command exit: the capture stops by itself, publishes its trailer and exits.
  RunResult release(Background& stream) {
    int fd = -1;
    wait_until([&] { return (fd = open((dir_ / "go").c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC)) >= 0; }, 10s);
    if (fd >= 0) close(fd);
    return stream.wait();
  }

  std::unique_ptr<Background> start_sink() {
    return std::make_unique<Background>(std::vector<std::string>{
        perfstream_binary(), "sink", "--from", kafka_->url("events"), "--group", "sinks", "-d",
        (dir_ / "sink").string(), "--status-interval", "0", "-X", "session.timeout.ms=6000", "-X",
        "heartbeat.interval.ms=500", "-X", "reconnect.backoff.max.ms=500"});
  }

  // `calls` records of kRecordSize bytes from each CPU through the stream's loadgen; emitted per CPU.
  void produce(pid_t pid, int calls) {
    RemoteLoadgen loadgen(pid);
    ASSERT_TRUE(loadgen.found()) << "the stream's loadgen maps";
    loadgen.configure(kRecordSize);
    for (unsigned cpu = 0; cpu < std::thread::hardware_concurrency(); ++cpu) loadgen.trigger_on_cpu(cpu, calls);
    loadgen.configure(0);
    for (unsigned cpu = 0; cpu < std::thread::hardware_concurrency(); ++cpu) {
      const auto counts = loadgen.counts(cpu);
      EXPECT_EQ(counts.failed, 0u) << "CPU " << cpu;
      emitted_[cpu] = counts.emitted;
    }
  }

  // The sink's one recording, once its trailer is in.
  std::optional<StoredRecording> finished_recording(std::chrono::milliseconds limit) {
    std::optional<StoredRecording> out;
    wait_until(
        [&] {
          std::error_code ec;
          for (const auto& e : fs::directory_iterator(dir_ / "sink", ec)) {
            if (e.path().extension() != ".data") continue;
            auto r = read_recording(e.path().string());
            if (!r.trailers.empty()) out = std::move(r);
          }
          return out.has_value();
        },
        limit);
    return out;
  }

  // Every record emitted is there once, and is byte for byte the ps_loadgen_event loadgen wrote.
  void expect_exactly_what_loadgen_emitted(const StoredRecording& stored) {
    EXPECT_TRUE(stored.damage.empty()) << stored.damage.front();
    std::map<unsigned, std::set<std::uint64_t>> seen;
    std::uint64_t records = 0, duplicates = 0, foreign = 0;
    for (const auto& b : stored.batches) {
      auto view = BatchView::parse(b.message);
      ASSERT_TRUE(view) << view.error().message();
      for (std::uint32_t i = 0; i < view->size(); ++i) {
        const auto r = view->record(i);
        ++records;
        ASSERT_GE(r.payload.size(), kRecordSize);
        ASSERT_LT(r.payload.size(), kRecordSize + 8) << "at most the perf ring's alignment padding";
        ps_loadgen_event e{};
        std::memcpy(&e, r.payload.data(), kRecordSize);
        if (e.pid != static_cast<__u32>(getpid())) {
          ++foreign;
          continue;
        }
        ps_loadgen_event want{};
        want.kind = PS_EVENT_LOADGEN;
        want.payload_len = kRecordSize - PS_LOADGEN_HEADER_SIZE;
        want.seq = e.seq;
        want.cpu = r.cpu;
        want.pid = static_cast<__u32>(getpid());
        want.ts = e.ts;
        EXPECT_EQ(r.time_ns, e.ts) << "timed by its own ts: the perf events ask for no PERF_SAMPLE_TIME";
        EXPECT_EQ(std::memcmp(r.payload.data(), &want, kRecordSize), 0) << "record " << e.seq << " of CPU " << r.cpu;
        // The bytes after kRecordSize are the ring's alignment padding: the kernel skips them (__output_skip)
        // without writing, so they hold whatever the ring held there, and are no part of the record.
        if (!seen[r.cpu].insert(e.seq).second) ++duplicates;
      }
    }
    EXPECT_EQ(duplicates, 0u);
    EXPECT_EQ(foreign, 0u);
    std::uint64_t total = 0;
    for (const auto& [cpu, emitted] : emitted_) {
      total += emitted;
      EXPECT_EQ(seen[cpu].size(), emitted) << "CPU " << cpu;
      if (!seen[cpu].empty()) {
        EXPECT_EQ(*seen[cpu].begin(), 0u);
        EXPECT_EQ(*seen[cpu].rbegin(), emitted - 1) << "CPU " << cpu << ": no gaps";
      }
    }
    EXPECT_EQ(records, total);
    ASSERT_EQ(stored.trailers.size(), 1u);
    EXPECT_EQ(stored.trailers[0].records(), total);
  }

  fs::path dir_;
  std::unique_ptr<MockKafka> kafka_;
  std::map<unsigned, std::uint64_t> emitted_;  // loadgen's own count, per CPU
};

TEST_F(KafkaEndToEnd, LoadgenThroughThreeBrokersWithALeaderFailedMidStreamExactlyOnceByteExact) {
  for (int p = 0; p < 3; ++p) kafka_->set_leader("events", p, 1);  // broker 1 leads every partition
  auto sink = start_sink();
  auto stream = start_stream();
  if (!stream) return;
  produce(stream->pid(), 3000);
  std::this_thread::sleep_for(500ms);
  kafka_->broker_down(1);
  produce(stream->pid(), 3000);  // published while the leader is down: they wait in the spool
  std::this_thread::sleep_for(2s);
  kafka_->broker_up(1);
  produce(stream->pid(), 2000);
  RunResult streamed = release(*stream);
  ASSERT_EQ(streamed.exit_status, 0) << streamed.err;
  EXPECT_NE(streamed.err.find("the command exited"), std::string::npos) << streamed.err;
  EXPECT_NE(streamed.err.find("published to " + kafka_->url("events") + ": delivered through batch"), std::string::npos)
      << streamed.err;
  EXPECT_NE(streamed.err.find(", 0 batches refused by a full spool"), std::string::npos) << streamed.err;
  EXPECT_NE(streamed.err.find("lost 0 in the kernel and 0 in perfstream"), std::string::npos) << streamed.err;

  auto stored = finished_recording(60s);
  RunResult sunk = sink->stop(SIGINT);
  ASSERT_TRUE(stored) << "no finished recording at the sink:\n" << sunk.err;
  EXPECT_EQ(sunk.exit_status, 0) << sunk.err;
  EXPECT_NE(sunk.err.find(" finished: "), std::string::npos) << sunk.err;
  expect_exactly_what_loadgen_emitted(*stored);
  EXPECT_FALSE(fs::exists(dir_ / "spool") && !fs::is_empty(dir_ / "spool")) << "every spooled batch was delivered";
}

TEST_F(KafkaEndToEnd, SinkKilledMidStreamAndStartedAgainStoresEveryRecordOnce) {
  auto sink = start_sink();
  auto stream = start_stream();
  if (!stream) return;
  produce(stream->pid(), 3000);
  // Some of it is on the sink's disk when the sink dies, uncommitted offsets and all.
  ASSERT_TRUE(wait_until(
      [&] {
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(dir_ / "sink", ec)) {
          if (e.path().extension() == ".data" && !read_recording(e.path().string()).batches.empty()) return true;
        }
        return false;
      },
      30s));
  RunResult killed = sink->stop(SIGKILL);
  EXPECT_EQ(killed.exit_status, 128 + SIGKILL);
  produce(stream->pid(), 3000);
  sink = start_sink();
  produce(stream->pid(), 2000);
  RunResult streamed = release(*stream);
  ASSERT_EQ(streamed.exit_status, 0) << streamed.err;

  auto stored = finished_recording(60s);
  RunResult sunk = sink->stop(SIGINT);
  ASSERT_TRUE(stored) << "no finished recording at the sink:\n" << sunk.err;
  EXPECT_EQ(sunk.exit_status, 0) << sunk.err;
  EXPECT_NE(sunk.err.find("resuming"), std::string::npos) << "the second sink goes on in the same file:\n" << sunk.err;
  EXPECT_EQ(stored->files.size(), 1u);
  expect_exactly_what_loadgen_emitted(*stored);
}

}  // namespace
}  // namespace perfstream::testing
