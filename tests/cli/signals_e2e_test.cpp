// SIGINT and SIGTERM at every phase of perfstream record and perfstream stream, as a user's Ctrl-C or a
// service manager's stop: startup (arguments, BPF load and verification, perf events, rings, the output),
// capture, the drain (a second signal), and for stream the backoff with no sink and the wait for its
// acknowledgements. Whatever the moment, the process exits within a bounded time with a status that says
// what happened: 0 after a graceful stop, 128 + the signal when it came before there was an output (the
// same as a process the signal killed before main()). No BPF program stays loaded, and the output either
// does not exist or reads back complete, with its trailer. Needs root (it loads BPF); skips only when the
// kernel refuses BPF.
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <regex>
#include <thread>

#include "testing/kernel_fixture.hpp"
#include "testing/ports.hpp"
#include "testing/subprocess.hpp"
#include "testing/synthetic_stream.hpp"

namespace perfstream::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// Spread over the startup phases (the binary reaches main() after ~10 ms, has its probes loaded after
// ~20-50 ms) and into the capture.
constexpr int kDelaysMs[] = {0, 2, 5, 10, 20, 50, 100, 200, 500};
// What "promptly" means here, from the signal to the exit: a drain, not a hang. Generous for ASan builds.
constexpr auto kPrompt = 10s;

std::string name_of(int signo) { return signo == SIGINT ? "SIGINT" : "SIGTERM"; }

bool kernel_refused(const RunResult& r) {
  return r.err.find("refused to load") != std::string::npos ||
         r.err.find("Operation not permitted") != std::string::npos;
}

std::optional<std::uint64_t> number_after(const std::string& text, const std::string& pattern) {
  std::smatch m;
  if (!std::regex_search(text, m, std::regex(pattern))) return std::nullopt;
  return std::stoull(m[1].str());
}

// The file reads back to its end, trailer included, and holds `records` records.
void expect_complete_trace(const fs::path& trace, std::optional<std::uint64_t> records) {
  RunResult stats = run({perfstream_binary(), "stats", "--json", trace.string()});
  ASSERT_EQ(stats.exit_status, 0) << stats.err;
  EXPECT_NE(stats.out.find("\"ended_cleanly\":true"), std::string::npos) << stats.out;
  EXPECT_NE(stats.out.find("\"damage\":[]"), std::string::npos) << stats.out;
  if (records) {
    EXPECT_EQ(number_after(stats.out, "\"totals\":\\{\"records\":([0-9]+)"), *records) << stats.out;
  }
}

class CaptureSignals : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("perfstream-signals-" + std::to_string(getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    newest_program_ = newest_bpf_program_id();
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Every program our children loaded is gone once they are.
  void expect_no_program_left() {
    const auto left = bpf_programs_left_behind(newest_program_, 3s);
    EXPECT_TRUE(left.empty()) << "BPF programs still loaded, held by no process: " << left.front();
  }

  struct Run {
    int signo;
    fs::path output;
    std::unique_ptr<Background> process;
  };

  // When to signal a run: a delay after the start, or a phase seen from outside.
  struct Moment {
    std::string name;
    std::function<bool(const fs::path& output, std::chrono::steady_clock::duration since_start)> ready;
  };
  std::vector<Moment> sweep(const std::function<fs::path(const fs::path&)>& first_file) {
    std::vector<Moment> moments;
    for (int ms : kDelaysMs) {
      moments.push_back({std::to_string(ms) + " ms after the start",
                         [ms](const fs::path&, auto since) { return since >= std::chrono::milliseconds(ms); }});
    }
    // Aimed at two short windows: the probes half loaded, and the output made but the capture not running.
    moments.push_back({"as the first BPF program appears", [this](const fs::path&, auto) {
                         return newest_bpf_program_id() > newest_program_;
                       }});
    moments.push_back({"as the output appears", [first_file](const fs::path& output, auto) {
                         return fs::exists(first_file(output));
                       }});
    return moments;
  }

  // One run per signal, started together, each signalled at `moment` (polled every millisecond, 10 s at
  // most). Returns each result; checks the time from its signal to its exit.
  template <typename MakeArgs>
  std::vector<std::pair<Run, RunResult>> signal_pair_at(const Moment& moment, MakeArgs make_args) {
    newest_program_ = newest_bpf_program_id();
    std::vector<Run> runs;
    for (int signo : {SIGINT, SIGTERM}) {
      const fs::path output = dir_ / (name_of(signo) + "-" + std::to_string(++runs_));
      runs.push_back(Run{signo, output, std::make_unique<Background>(make_args(output))});
    }
    const auto started = std::chrono::steady_clock::now();
    std::vector<std::pair<Run, RunResult>> out;
    std::vector<std::chrono::steady_clock::time_point> signalled(runs.size());
    std::vector<bool> sent(runs.size(), false);
    for (std::size_t left = runs.size(); left > 0;) {
      const auto now = std::chrono::steady_clock::now();
      for (std::size_t i = 0; i < runs.size(); ++i) {
        if (sent[i] || !(moment.ready(runs[i].output, now - started) || now - started > 10s)) continue;
        kill(runs[i].process->pid(), runs[i].signo);
        signalled[i] = std::chrono::steady_clock::now();
        sent[i] = true;
        --left;
      }
      if (left > 0) std::this_thread::sleep_for(1ms);
    }
    for (std::size_t i = 0; i < runs.size(); ++i) {
      RunResult result = runs[i].process->wait();
      EXPECT_LT(std::chrono::steady_clock::now() - signalled[i], kPrompt) << name_of(runs[i].signo) << " " << moment.name;
      out.emplace_back(std::move(runs[i]), std::move(result));
    }
    return out;
  }

  // The sweep's anchors, whatever the build's speed (ASan too): a signal at once finds no output yet, one
  // sent once the output exists stops a capture.
  static void expect_sweep_ends(const Moment& moment, const RunResult& r, int signo) {
    if (moment.name.rfind("0 ms", 0) == 0) {
      EXPECT_EQ(r.exit_status, 128 + signo) << r.err;
    }
    if (moment.name == "as the output appears") {
      EXPECT_NE(r.exit_status, 128 + signo) << "there is an output by then: " << r.err;
    }
  }

  fs::path dir_;
  std::uint32_t newest_program_ = 0;
  int runs_ = 0;
};

TEST_F(CaptureSignals, RecordStopsCleanlyWhateverTheMomentOfTheSignal) {
  int graceful = 0, before_output = 0;
  for (const Moment& moment : sweep([](const fs::path& output) { return output.string() + ".data"; })) {
    auto results = signal_pair_at(moment, [](const fs::path& output) {
      return std::vector<std::string>{perfstream_binary(), "record", "--probe", "openat,exec", "-o",
                                      output.string() + ".data"};
    });
    for (const auto& [run, r] : results) {
      SCOPED_TRACE(name_of(run.signo) + " " + moment.name);
      if (kernel_refused(r)) GTEST_SKIP() << "the kernel refuses BPF here: " << r.err;
      const fs::path trace = run.output.string() + ".data";
      expect_sweep_ends(moment, r, run.signo);
      if (r.exit_status == 128 + run.signo) {
        ++before_output;
        EXPECT_FALSE(fs::exists(trace)) << "no output, or a complete one";
        if (!r.err.empty()) {  // empty: the signal came before main(), and its default action killed us
          EXPECT_NE(r.err.find("interrupted by " + name_of(run.signo) + " while "), std::string::npos) << r.err;
          EXPECT_NE(r.err.find("; nothing was recorded"), std::string::npos) << r.err;
        }
        continue;
      }
      ++graceful;
      ASSERT_EQ(r.exit_status, 0) << r.err;
      EXPECT_NE(r.err.find(std::string(run.signo == SIGINT ? "interrupted" : "terminated") + " after "),
                std::string::npos)
          << r.err;
      const auto written = number_after(r.err, "wrote ([0-9]+) records in");
      EXPECT_TRUE(written) << r.err;
      expect_complete_trace(trace, written);
    }
  }
  std::cout << "[          ] " << graceful << " graceful stops, " << before_output << " before the output\n";
  expect_no_program_left();
}

TEST_F(CaptureSignals, StreamStopsCleanlyWhateverTheMomentOfTheSignal) {
  const std::string to = "tcp://127.0.0.1:" + std::to_string(free_tcp_port());
  const fs::path sink_dir = dir_ / "sink";
  Background sink({perfstream_binary(), "sink", "--listen", to, "-d", sink_dir.string(), "--status-interval", "0"});
  ASSERT_TRUE(wait_until([&] { return sink.err_so_far().find("listening on") != std::string::npos || sink.exited(); },
                         10s));
  ASSERT_FALSE(sink.exited()) << sink.wait().err;

  int graceful = 0;
  for (const Moment& moment : sweep([](const fs::path& spool) { return spool; })) {
    auto results = signal_pair_at(moment, [&](const fs::path& spool) {
      return std::vector<std::string>{perfstream_binary(), "stream", "--to", to, "--probe", "openat", "--spool",
                                      spool.string(), "--batch-age", "50ms", "--drain-timeout", "5s"};
    });
    for (const auto& [run, r] : results) {
      SCOPED_TRACE(name_of(run.signo) + " " + moment.name);
      if (kernel_refused(r)) GTEST_SKIP() << "the kernel refuses BPF here: " << r.err;
      expect_sweep_ends(moment, r, run.signo);
      if (r.exit_status == 128 + run.signo) {
        EXPECT_FALSE(fs::exists(run.output)) << "no spool: the stream never started";
        if (!r.err.empty()) {
          EXPECT_NE(r.err.find("interrupted by " + name_of(run.signo) + " while "), std::string::npos) << r.err;
          EXPECT_NE(r.err.find("; nothing was sent"), std::string::npos) << r.err;
        }
        continue;
      }
      ++graceful;
      ASSERT_EQ(r.exit_status, 0) << r.err;
      EXPECT_NE(r.err.find(std::string(run.signo == SIGINT ? "interrupted" : "terminated") + " after "),
                std::string::npos)
          << r.err;
      EXPECT_TRUE(fs::is_empty(run.output)) << "everything acknowledged, so nothing left in the spool";
    }
  }
  RunResult sunk = sink.stop(SIGINT);
  EXPECT_EQ(sunk.exit_status, 0) << sunk.err;
  // One file per stream that got going, each with its trailer.
  int files = 0;
  for (const auto& e : fs::directory_iterator(sink_dir)) {
    if (e.path().extension() != ".data") continue;
    ++files;
    SCOPED_TRACE(e.path().string());
    expect_complete_trace(e.path(), std::nullopt);
  }
  EXPECT_EQ(files, graceful) << sunk.err;
  expect_no_program_left();
}

// Opens `count` missing files whose names start with `marker`, from a thread pinned to CPU 0.
void open_missing_files(const fs::path& marker, int count) {
  std::thread producer([&] {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    const std::string base = marker.string() + std::string(60, 'p') + "-";
    for (int i = 0; i < count; ++i) {
      const int fd = ::open((base + std::to_string(i)).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd >= 0) ::close(fd);
    }
  });
  producer.join();
}

TEST_F(CaptureSignals, ASecondSignalDuringTheRecordDrainLeavesTheFileComplete) {
  const fs::path trace = dir_ / "drain.data";
  // Nothing is read before the stop (no wakeup below a nearly full ring, no timer), so the stop has a large
  // backlog to drain, and the second signal lands in it.
  Background recorder({perfstream_binary(), "record", "--probe", "openat", "-p", std::to_string(getpid()), "-m",
                       "16M", "--wakeup", "15M", "--flush-interval", "1h", "-o", trace.string()});
  ASSERT_TRUE(wait_until(
      [&] { return recorder.err_so_far().find("recording openat") != std::string::npos || recorder.exited(); }, 20s));
  if (recorder.exited()) {
    RunResult r = recorder.wait();
    if (kernel_refused(r)) GTEST_SKIP() << "the kernel refuses BPF here: " << r.err;
    FAIL() << "the recorder did not start: " << r.err;
  }
  constexpr int kOpens = 30000;  // ~9 MB of records in CPU 0's ring
  open_missing_files(dir_ / "m", kOpens);
  kill(recorder.pid(), SIGINT);
  std::this_thread::sleep_for(2ms);
  const auto second = std::chrono::steady_clock::now();
  kill(recorder.pid(), SIGTERM);
  RunResult r = recorder.wait();
  EXPECT_LT(std::chrono::steady_clock::now() - second, kPrompt);
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_NE(r.err.find("interrupted after"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("SIGTERM while stopping: the drain goes on, so that " + trace.string() + " ends complete"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("lost 0 in the kernel and 0 in perfstream"), std::string::npos) << r.err;
  const auto written = number_after(r.err, "wrote ([0-9]+) records in");
  ASSERT_TRUE(written) << r.err;
  EXPECT_GE(*written, static_cast<std::uint64_t>(kOpens));
  expect_complete_trace(trace, written);
  RunResult dump = run({perfstream_binary(), "dump", "--json", "--event", "openat", trace.string()});
  ASSERT_EQ(dump.exit_status, 0) << dump.err;
  std::size_t ours = 0;
  for (std::size_t at = 0; (at = dump.out.find((dir_ / "m").string() + "ppp", at)) != std::string::npos; ++at) ++ours;
  EXPECT_EQ(ours, static_cast<std::size_t>(kOpens)) << "every open, once";
  expect_no_program_left();
}

class StreamWithoutSink : public CaptureSignals {
 protected:
  // A stream to a port nobody listens on: it spools and backs off. Returns once it has said so, with a few
  // batches spooled.
  std::unique_ptr<Background> start(const std::vector<std::string>& extra, std::string* skip) {
    to_ = "tcp://127.0.0.1:" + std::to_string(free_tcp_port());
    spool_ = dir_ / "spool";
    std::vector<std::string> argv = {perfstream_binary(), "stream", "--to", to_, "--probe", "openat", "-p",
                                     std::to_string(getpid()), "--spool", spool_.string(), "--batch-age", "20ms"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto stream = std::make_unique<Background>(argv);
    if (!wait_until([&] { return stream->err_so_far().find("retrying") != std::string::npos || stream->exited(); },
                    20s) ||
        stream->exited()) {
      RunResult r = stream->wait();
      if (kernel_refused(r)) *skip = "the kernel refuses BPF here: " + r.err;
      else ADD_FAILURE() << "the stream did not start: " << r.err;
      return nullptr;
    }
    open_missing_files(dir_ / "s", 200);
    std::this_thread::sleep_for(200ms);  // a few batch ages: the records are in the spool
    return stream;
  }
  bool spool_holds_batches() const {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(spool_, ec)) {
      if (e.is_regular_file() && e.file_size() > 0) return true;
    }
    return false;
  }
  std::string to_;
  fs::path spool_;
};

TEST_F(StreamWithoutSink, ASignalWhileBackingOffWaitsTheDrainTimeoutAndKeepsTheSpool) {
  std::string skip;
  auto stream = start({"--drain-timeout", "1s"}, &skip);
  if (!stream) {
    if (!skip.empty()) GTEST_SKIP() << skip;
    return;
  }
  const auto signalled = std::chrono::steady_clock::now();
  RunResult r = stream->stop(SIGTERM);
  const auto took = std::chrono::steady_clock::now() - signalled;
  EXPECT_GE(took, 1s);
  EXPECT_LT(took, 1s + kPrompt);
  EXPECT_EQ(r.exit_status, 1) << r.err;
  EXPECT_NE(r.err.find("terminated after"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("waiting up to 1000 ms for the sink at " + to_ + " to acknowledge "), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("the sink at " + to_ + " did not acknowledge within 1000 ms: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("it has not acknowledged stay in the spool directory " + spool_.string()), std::string::npos)
      << r.err;
  EXPECT_TRUE(spool_holds_batches());
  expect_no_program_left();

  // A stream started again on that spool (a new recording) neither deletes those batches nor sends them as
  // its own: it keeps them aside as a trace file and sends them as the first run's recording (here the sink
  // never answers, so they stay), and dump reads every open of the first run.
  Background again({perfstream_binary(), "stream", "--to", to_, "--probe", "openat", "-p", std::to_string(getpid()),
                    "--spool", spool_.string(), "--drain-timeout", "1s"});
  ASSERT_TRUE(wait_until([&] { return again.err_so_far().find("retrying") != std::string::npos || again.exited(); },
                         20s));
  RunResult second = again.stop(SIGTERM);
  std::vector<fs::path> kept;
  for (const auto& e : fs::directory_iterator(spool_)) {
    if (e.path().filename().string().rfind("undelivered-", 0) == 0) kept.push_back(e.path());
  }
  ASSERT_EQ(kept.size(), 1u) << second.err;
  EXPECT_NE(second.err.find("spool " + spool_.string() + ": an earlier run left "), std::string::npos) << second.err;
  EXPECT_NE(second.err.find(" batches (1 file, "), std::string::npos) << second.err;
  EXPECT_NE(second.err.find("unacknowledged; sending them to the sink as that recording"), std::string::npos)
      << second.err;
  RunResult dump = run({perfstream_binary(), "dump", "--json", "--event", "openat", kept[0].string()});
  ASSERT_EQ(dump.exit_status, 0) << dump.err;
  std::size_t opens = 0;
  const std::string marker = (dir_ / "s").string() + std::string(60, 'p') + "-";
  for (std::size_t at = 0; (at = dump.out.find(marker, at)) != std::string::npos; ++at) ++opens;
  EXPECT_EQ(opens, 200u) << "every open the first run spooled, once";
  expect_no_program_left();
}

TEST_F(StreamWithoutSink, ASecondSignalStopsTheWaitForAcknowledgementsAtOnce) {
  std::string skip;
  auto stream = start({}, &skip);  // the default drain timeout: 30 s
  if (!stream) {
    if (!skip.empty()) GTEST_SKIP() << skip;
    return;
  }
  kill(stream->pid(), SIGINT);
  ASSERT_TRUE(wait_until([&] { return stream->err_so_far().find("waiting up to 30000 ms") != std::string::npos; },
                         kPrompt))
      << stream->err_so_far();
  const auto second = std::chrono::steady_clock::now();
  RunResult r = stream->stop(SIGINT);
  EXPECT_LT(std::chrono::steady_clock::now() - second, 3s) << "not the 30 s drain timeout";
  EXPECT_EQ(r.exit_status, 1) << r.err;
  EXPECT_NE(r.err.find("SIGINT while stopping: not waiting for the sink's acknowledgements any longer"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("stopped waiting for the sink at " + to_ + ": "), std::string::npos) << r.err;
  EXPECT_TRUE(spool_holds_batches());
  expect_no_program_left();
}

}  // namespace
}  // namespace perfstream::testing
