// perfstream-libbpf-baseline (bench/libbpf_baseline.cpp) end to end: the real binary, the real kernel. Each
// mode must deliver every record the BPF producer wrote and account for every one it failed to write, or
// the numbers `perfstream bench --compare` puts next to perfstream's mean nothing. Needs root (it loads
// BPF); skips only when the kernel refuses BPF.
#include <gtest/gtest.h>
#include <sched.h>

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <regex>
#include <string>
#include <utility>

#include "testing/subprocess.hpp"

namespace perfstream::testing {
namespace {

std::string baseline_binary() {
  if (const char* env = std::getenv("PERFSTREAM_LIBBPF_BASELINE")) return env;
  return PERFSTREAM_LIBBPF_BASELINE_PATH;
}

// The first two CPUs this test may run on (the same one twice on a single-CPU machine): producer, consumer.
std::pair<int, int> two_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return {0, 0};
  int first = -1;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &set)) continue;
    if (first < 0) {
      first = cpu;
    } else {
      return {first, cpu};
    }
  }
  return {first < 0 ? 0 : first, first < 0 ? 0 : first};
}

// A field of the baseline's one-line JSON report, as written (numbers and strings only, no nesting).
std::optional<std::string> json_field(const std::string& json, const std::string& key) {
  const std::regex field("\"" + key + "\":(\"([^\"]*)\"|(-?[0-9][0-9.eE+-]*))");
  std::smatch m;
  if (!std::regex_search(json, m, field)) return std::nullopt;
  return m[2].matched ? m[2].str() : m[3].str();
}

// A non-negative integer field; fails the test if it is missing.
std::uint64_t count_field(const std::string& json, const std::string& key) {
  auto text = json_field(json, key);
  EXPECT_TRUE(text.has_value()) << "no \"" << key << "\" in " << json;
  return text ? std::stoull(*text) : 0;
}

double real_field(const std::string& json, const std::string& key) {
  auto text = json_field(json, key);
  EXPECT_TRUE(text.has_value()) << "no \"" << key << "\" in " << json;
  return text ? std::stod(*text) : 0.0;
}

bool kernel_refuses(const RunResult& r) {
  return r.exit_status == 1 && (r.err.find("Operation not permitted") != std::string::npos ||
                                r.err.find("Permission denied") != std::string::npos);
}

class LibbpfBaseline : public ::testing::TestWithParam<const char*> {};

TEST_P(LibbpfBaseline, DeliversEveryEmittedRecordAndAccountsForEveryFailure) {
  const std::string mode = GetParam();
  const auto [producer_cpu, consumer_cpu] = two_cpus();
  const RunResult r = run({baseline_binary(), "--mode", mode, "--producer-cpu", std::to_string(producer_cpu),
                           "--consumer-cpu", std::to_string(consumer_cpu), "--size", "64", "--duration-ms", "300"});
  if (kernel_refuses(r)) GTEST_SKIP() << "the kernel refuses BPF here: " << r.err;
  ASSERT_EQ(r.exit_status, 0) << r.err;
  ASSERT_EQ(r.out.find('\n'), r.out.size() - 1) << "expected exactly one line: " << r.out;
  const std::string& json = r.out;

  EXPECT_EQ(json_field(json, "mode"), mode);
  EXPECT_EQ(count_field(json, "size"), 64u);
  const std::uint64_t emitted = count_field(json, "emitted");
  const std::uint64_t failed = count_field(json, "failed");
  const std::uint64_t delivered = count_field(json, "delivered");
  const std::uint64_t lost = count_field(json, "lost");

  EXPECT_GT(delivered, 0u) << json;
  // Exact: the producer is reaped before the final drain, so every record it wrote is in a ring and read.
  EXPECT_EQ(delivered, emitted) << json;
  // The record's own length, never the kernel's padding (perf pads a 64-byte raw sample to 68).
  EXPECT_EQ(count_field(json, "delivered_bytes"), delivered * 64) << json;
  if (mode == "ringbuf") {
    // A ringbuf tells its reader nothing about drops: lost is the producer's own failure count.
    EXPECT_EQ(lost, failed) << json;
  } else {
    // The kernel writes PERF_RECORD_LOST only once there is room again, so the losses at the very end of a
    // run may go unreported; it never reports more than were refused.
    EXPECT_LE(lost, failed) << json;
    if (failed == 0) {
      EXPECT_EQ(lost, 0u) << json;
    }
  }
  EXPECT_GE(real_field(json, "duration_s"), 0.3) << json;
  EXPECT_GT(real_field(json, "producer_calls_per_s"), 0.0) << json;
  EXPECT_GE(real_field(json, "collector_cpu_s"), 0.0) << json;
  EXPECT_GE(real_field(json, "wakeups"), 0.0) << json;
  EXPECT_GT(count_field(json, "ring_bytes"), 0u) << json;
}

INSTANTIATE_TEST_SUITE_P(Modes, LibbpfBaseline, ::testing::Values("perfbuf-default", "perfbuf-watermark", "ringbuf"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string name = info.param;
                           for (char& c : name) c = c == '-' ? '_' : c;
                           return name;
                         });

TEST(LibbpfBaselineUsage, UnknownModeIsAnErrorThatSaysWhy) {
  const RunResult r = run({baseline_binary(), "--mode", "spsc", "--producer-cpu", "0", "--consumer-cpu", "0",
                           "--size", "64", "--duration-ms", "10"});
  EXPECT_EQ(r.exit_status, 1);
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_NE(r.err.find("--mode spsc"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace perfstream::testing
