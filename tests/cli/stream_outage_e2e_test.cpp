// The sink gone for minutes while the collector spools: perfstream stream with a steady loadgen load into a
// perfstream sink; the sink is killed early (SIGKILL), the collector goes on capturing for about two
// minutes into its spool, saying it is disconnected and retrying with a backoff capped at 5 s, then the
// sink comes back on the same directory and port. Every record loadgen emitted must arrive exactly once
// (per CPU: no duplicate sequence numbers, no gap that the counters do not explain), and the spool must be
// empty at the end. Needs root (it loads BPF); skips only when the kernel refuses BPF.
//
// It takes about 2.5 minutes: its suite's name starts with "Long", which keeps it out of the sanitizer runs
// (scripts/sanitize.sh), so CI runs it once, in the plain build.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "testing/ports.hpp"
#include "testing/remote_loadgen.hpp"
#include "testing/sink_and_stream.hpp"
#include "testing/subprocess.hpp"
#include "testing/synthetic_stream.hpp"

extern "C" {
#include <linux/types.h>
#include "events.h"
}

namespace perfstream::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr auto kOutage = 120s;             // the sink is away this long while the collector captures
constexpr int kCallsPerSecond = 1500;      // loadgen records per second (one per getppid)
constexpr auto kBackoffCap = 5000ms;       // what the stream's backoff is documented to stop at

std::uint64_t directory_bytes(const fs::path& dir) {
  std::uint64_t total = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_regular_file(ec)) total += e.file_size(ec);
  }
  return total;
}

std::size_t count_lines(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (std::size_t at = 0; (at = text.find(needle, at)) != std::string::npos; at += needle.size()) ++n;
  return n;
}

void progress(const std::string& what) { std::cout << "[          ] " << what << std::endl; }

class LongSinkOutage : public SinkAndStreamTest {
 protected:
  LongSinkOutage() : SinkAndStreamTest("perfstream-outage") {}
};

TEST_F(LongSinkOutage, SinkGoneForTwoMinutesEveryRecordArrivesOnceAndTheSpoolEmpties) {
  auto sink = start_sink();
  ASSERT_TRUE(sink);
  const fs::path spool = dir_ / "spool";
  Background stream({perfstream_binary(), "stream", "--to", to_, "--probe", "loadgen", "--spool", spool.string(),
                     "--batch-age", "500ms"});
  ASSERT_TRUE(wait_until([&] { return stream.err_so_far().find("connected to " + to_) != std::string::npos ||
                                      stream.exited(); },
                         20s));
  if (stream.exited()) {
    std::string skip;
    explain_stream_exit(stream, "did not start", &skip);
    if (!skip.empty()) GTEST_SKIP() << skip;
    return;
  }

  // loadgen in the stream's process emits one 64-byte record per getppid() of ours.
  const int config_fd = map_of_process(stream.pid(), "loadgen_config");
  const int stats_fd = map_of_process(stream.pid(), "loadgen_stats");
  ASSERT_GE(config_fd, 0);
  ASSERT_GE(stats_fd, 0);
  ps_loadgen_config cfg{};
  cfg.tgid = static_cast<__u32>(getpid());
  cfg.syscall_nr = SYS_getppid;
  cfg.record_size = 64;
  cfg.records_per_call = 1;
  __u32 key = 0;
  ASSERT_EQ(bpf_map_update_elem(config_fd, &key, &cfg, BPF_ANY), 0) << std::strerror(errno);
  std::atomic<bool> producing{true};
  std::thread producer([&] {
    while (producing.load()) {
      for (int i = 0; i < kCallsPerSecond / 100; ++i) syscall(SYS_getppid);
      std::this_thread::sleep_for(10ms);
    }
  });

  // Early: some batches reach the sink, then it dies without a word.
  ASSERT_TRUE(wait_until([&] { return directory_bytes(dir_ / "sink") > 4096; }, 20s));
  RunResult killed = sink->stop(SIGKILL);
  EXPECT_EQ(killed.exit_status, 128 + SIGKILL);
  progress("sink killed; the stream spools for " + std::to_string(kOutage.count()) + " s");

  // The outage: the spool grows, and the stream keeps saying it is disconnected and retrying.
  const auto outage_start = std::chrono::steady_clock::now();
  std::vector<std::uint64_t> spool_sizes;
  while (std::chrono::steady_clock::now() - outage_start < kOutage) {
    std::this_thread::sleep_for(10s);
    spool_sizes.push_back(directory_bytes(spool));
    ASSERT_FALSE(stream.exited()) << stream.wait().err;
  }
  progress("spool: " + std::to_string(spool_sizes.front()) + " -> " + std::to_string(spool_sizes.back()) + " bytes");
  for (std::size_t i = 1; i < spool_sizes.size(); ++i) {
    EXPECT_GT(spool_sizes[i], spool_sizes[i - 1]) << "the spool grows all along: sample " << i;
  }
  const std::string during = stream.err_so_far();
  const std::regex retry_re("sink " + to_ + ": [^\n]*; ([0-9]+) batches spooled; retrying in ([0-9]+) ms");
  std::vector<std::uint64_t> spooled, waits;
  for (auto it = std::sregex_iterator(during.begin(), during.end(), retry_re); it != std::sregex_iterator(); ++it) {
    spooled.push_back(std::stoull((*it)[1].str()));
    waits.push_back(std::stoull((*it)[2].str()));
  }
  // 0.1 s doubling to 5 s, then every 5 s: about 24 attempts in 2 minutes.
  EXPECT_GE(waits.size(), 20u) << during;
  EXPECT_EQ(*std::max_element(waits.begin(), waits.end()), static_cast<std::uint64_t>(kBackoffCap.count())) << during;
  EXPECT_GT(spooled.back(), spooled.front()) << "the log shows the backlog growing";

  // The sink comes back on the same port and directory: the stream reconnects within one capped backoff.
  const std::size_t connects_before = count_lines(stream.err_so_far(), "connected to " + to_);
  sink = start_sink();
  ASSERT_TRUE(sink);
  const auto back = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_until(
      [&] { return count_lines(stream.err_so_far(), "connected to " + to_) > connects_before; }, 15s));
  const auto reconnect = std::chrono::steady_clock::now() - back;
  progress("reconnected " + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(reconnect).count()) +
           " ms after the sink came back");
  EXPECT_LT(reconnect, kBackoffCap + 2s);

  // A few more seconds live, then stop producing, read loadgen's counters, and stop the stream.
  std::this_thread::sleep_for(3s);
  producing = false;
  producer.join();
  ps_loadgen_config off{};
  bpf_map_update_elem(config_fd, &key, &off, BPF_ANY);
  const int ncpus = libbpf_num_possible_cpus();
  std::vector<ps_loadgen_stats> counts(ncpus > 0 ? ncpus : 1);
  ASSERT_EQ(bpf_map_lookup_elem(stats_fd, &key, counts.data()), 0) << std::strerror(errno);
  ::close(config_fd);
  ::close(stats_fd);
  RunResult streamed = stream.stop(SIGINT);
  ASSERT_EQ(streamed.exit_status, 0) << streamed.err;
  EXPECT_TRUE(fs::is_empty(spool)) << "everything acknowledged, nothing left in the spool";

  // Exactly once: per CPU, the sequence numbers delivered are distinct, and those missing are the emits
  // that failed (the ring full: reported as lost; no ring: counted by loadgen only).
  RunResult sunk = sink->stop(SIGINT);
  EXPECT_EQ(sunk.exit_status, 0) << sunk.err;
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir_ / "sink")) {
    if (e.path().extension() == ".data") files.push_back(e.path().string());
  }
  ASSERT_EQ(files.size(), 1u) << "the restarted sink goes on in the same file";
  RunResult dump = run({perfstream_binary(), "dump", "--json", files[0]});
  ASSERT_EQ(dump.exit_status, 0) << dump.err;
  std::map<std::uint32_t, std::set<std::uint64_t>> seqs;
  std::map<std::uint32_t, std::uint64_t> reported_lost;
  std::uint64_t duplicates = 0, records = 0, lost_in_collector = 0;
  const std::regex lost_re("\"cpu\":([0-9]+),\"lost\":([0-9]+),\"source\":\"(kernel|collector)\"");
  std::istringstream lines(dump.out);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find("\"event\":\"loadgen\"") != std::string::npos) {
      const auto seq_at = line.find("\"seq\":");
      const auto cpu_at = line.find("\"cpu\":", seq_at);
      ASSERT_NE(cpu_at, std::string::npos) << line;
      const auto seq = std::stoull(line.substr(seq_at + 6));
      const auto cpu = static_cast<std::uint32_t>(std::stoul(line.substr(cpu_at + 6)));
      duplicates += seqs[cpu].insert(seq).second ? 0 : 1;
      ++records;
      continue;
    }
    std::smatch m;
    if (!std::regex_search(line, m, lost_re)) continue;
    (m[3].str() == "kernel" ? reported_lost[std::stoul(m[1].str())] : lost_in_collector) += std::stoull(m[2].str());
  }
  progress(std::to_string(records) + " records at the sink");
  EXPECT_EQ(duplicates, 0u);
  EXPECT_EQ(lost_in_collector, 0u) << "the spool never filled";
  std::uint64_t emitted_total = 0;
  for (std::size_t cpu = 0; cpu < counts.size(); ++cpu) {
    SCOPED_TRACE("CPU " + std::to_string(cpu));
    const auto& c = counts[cpu];
    const auto& got = seqs[static_cast<std::uint32_t>(cpu)];
    emitted_total += c.emitted;
    EXPECT_EQ(got.size(), c.emitted) << "delivered == emitted";
    EXPECT_EQ(reported_lost[static_cast<std::uint32_t>(cpu)], c.failed_nospace) << "every ring loss reported";
    // With every number distinct and below emitted + failed, the ones missing are exactly the failures.
    if (!got.empty()) {
      EXPECT_LT(*got.rbegin(), c.emitted + c.failed) << "no sequence number from nowhere";
    }
  }
  EXPECT_GT(emitted_total, static_cast<std::uint64_t>(kCallsPerSecond) * kOutage.count() / 2);
  EXPECT_NE(sunk.err.find("resuming"), std::string::npos) << sunk.err;
}

}  // namespace
}  // namespace perfstream::testing
