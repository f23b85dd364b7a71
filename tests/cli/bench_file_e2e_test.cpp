// perfstream bench --mode file writes a real recording: the header record writes (loadgen's schema, clock,
// start times, host), a trailer with the collector's counters, so that dump and stats read it back like a
// recording of record's: loadgen records with their fields by name, never "unknown". Needs root; skips
// only when the kernel refuses BPF.
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>
#include <sstream>

#include "testing/subprocess.hpp"
#include "testing/temp_dir.hpp"

namespace perfstream::testing {
namespace {

namespace fs = std::filesystem;

TEST(BenchFileEndToEnd, FileModeRecordingReadsBackLikeARecording) {
  const fs::path dir = fs::temp_directory_path() / ("perfstream-bench-file-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const fs::path file = dir / "bench.data";
  RunResult bench = run({perfstream_binary(), "bench", "--mode", "file", "--sizes", "64", "--duration", "300ms",
                         "-o", file.string()});
  if (bench.exit_status != 0 && (bench.err.find("refused") != std::string::npos ||
                                 bench.err.find("Operation not permitted") != std::string::npos)) {
    GTEST_SKIP() << "the kernel refuses BPF here: " << bench.err;
  }
  ASSERT_EQ(bench.exit_status, 0) << bench.err << bench.out;
  ASSERT_TRUE(fs::exists(file));

  RunResult header = run({perfstream_binary(), "dump", "--header", "--json", "--event", "nothing", file.string()});
  ASSERT_EQ(header.exit_status, 0) << header.err;
  EXPECT_NE(header.out.find("\"name\":\"loadgen\""), std::string::npos) << "the loadgen schema:\n" << header.out;
  EXPECT_NE(header.out.find("\"clock\":\"MONOTONIC\""), std::string::npos) << header.out;
  EXPECT_EQ(header.out.find("\"start_time_ns\":0,"), std::string::npos) << header.out;
  EXPECT_EQ(header.out.find("\"host\":\"\""), std::string::npos) << header.out;

  RunResult dump = run({perfstream_binary(), "dump", "--json", file.string()});
  ASSERT_EQ(dump.exit_status, 0) << dump.err;  // also: trailer totals agree with what was read
  std::stringstream lines(dump.out);
  std::string line;
  std::size_t records = 0, loadgen = 0, unknown = 0;
  while (std::getline(lines, line)) {
    if (line.find("\"lost\"") != std::string::npos) continue;
    ++records;
    loadgen += line.find("\"event\":\"loadgen\"") != std::string::npos && line.find("\"seq\":") != std::string::npos &&
               line.find("\"payload\":\"") != std::string::npos;
    unknown += line.find("unknown") != std::string::npos;
  }
  EXPECT_GT(records, 100u) << dump.out.substr(0, 2000);
  EXPECT_EQ(loadgen, records) << dump.out.substr(0, 2000);
  EXPECT_EQ(unknown, 0u);

  RunResult stats = run({perfstream_binary(), "stats", file.string()});
  ASSERT_EQ(stats.exit_status, 0) << stats.err;
  EXPECT_NE(stats.out.find("loadgen"), std::string::npos) << stats.out;
  EXPECT_NE(stats.out.find("cleanly"), std::string::npos) << stats.out;
  std::error_code ec;
  fs::remove_all(dir, ec);
}

bool kernel_refuses(const RunResult& r) {
  return r.exit_status != 0 && (r.err.find("refused") != std::string::npos ||
                                r.err.find("Operation not permitted") != std::string::npos);
}

// --compare needs the libbpf baseline: a perfstream with none beside it says so before running anything,
// naming where it looked, instead of failing after its own first run.
TEST(BenchCompare, MissingBaselineIsAnErrorAtOnce) {
  const fs::path dir = fs::temp_directory_path() / ("perfstream-bench-alone-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const fs::path alone = dir / "perfstream";
  fs::copy_file(perfstream_binary(), alone, fs::copy_options::overwrite_existing);
  const RunResult r = run({alone.string(), "bench", "--compare", "libbpf", "--duration", "10s"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "perfstream bench: --compare runs perfstream-libbpf-baseline, which is not next to perfstream "
                   "(looked for " + dir.string() + "/perfstream-libbpf-baseline and " + dir.string() +
                   "/../bench/perfstream-libbpf-baseline): build it (cmake --build build --target "
                   "perfstream-libbpf-baseline) or give --baseline PATH\n");
  const RunResult given = run({perfstream_binary(), "bench", "--compare", "ringbuf", "--baseline", (dir / "nope").string()});
  EXPECT_EQ(given.exit_status, 2);
  EXPECT_EQ(given.err, "perfstream bench: --baseline " + (dir / "nope").string() +
                           ": No such file or directory (expected the perfstream-libbpf-baseline program)\n");
  std::error_code ec;
  fs::remove_all(dir, ec);
}

// Numbers in a text, in order: "1.5 k" is 1500.
std::vector<double> tick_values(const std::string& svg, const std::string& chart_title) {
  std::vector<double> values;
  const auto from = svg.find(">" + chart_title + "<");
  const auto to = svg.find("font-weight='bold'", from + 1);
  std::size_t at = from;
  while ((at = svg.find("text-anchor='end'>", at + 1)) != std::string::npos && at < to) {
    const std::size_t start = at + std::string("text-anchor='end'>").size();
    const std::string label = svg.substr(start, svg.find('<', start) - start);
    double v = std::stod(label);
    if (label.find(" k") != std::string::npos) v *= 1e3;
    if (label.find(" M") != std::string::npos) v *= 1e6;
    values.push_back(v);
  }
  return values;
}

// --repeat: every run in the table with what the BPF side could not write and how busy the machine was, the
// spread of each implementation's runs, ratios of medians; --plot: three charts with labelled axes whose
// ticks are round values, evenly spaced from 0.
TEST(BenchCompare, RepeatShowsTheSpreadAndThePlotHasRoundTicks) {
  const fs::path dir = fs::temp_directory_path() / ("perfstream-bench-repeat-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const fs::path plot = dir / "bench.svg";
  // The sanitizer builds have no libbpf baseline beside their perfstream (bench/ is not built there): they
  // run perfstream alone, which still has a spread and a plot; the plain build compares with libbpf too.
  const fs::path beside = fs::path(perfstream_binary()).parent_path();
  const bool baseline = fs::exists(beside / "perfstream-libbpf-baseline") ||
                        fs::exists(beside / ".." / "bench" / "perfstream-libbpf-baseline");
  std::vector<std::string> args = {perfstream_binary(), "bench", "--sizes", "64", "--duration", "200ms", "--repeat", "2",
                                   "--plot", plot.string()};
  if (baseline) args.insert(args.end(), {"--compare", "libbpf"});
  const RunResult r = run(args);
  if (kernel_refuses(r)) GTEST_SKIP() << "the kernel refuses BPF here: " << r.err;
  ASSERT_EQ(r.exit_status, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("lost  unwritable   lost% CPU ns/rec  wakeups/s  other CPU\n"), std::string::npos) << r.out;
  std::vector<const char*> impls = {"perfstream-count "};
  if (baseline) impls.insert(impls.end(), {"libbpf-default ", "libbpf-watermark "});
  for (const char* impl : impls) {
    std::size_t at = 0, n = 0;
    while ((at = r.out.find(std::string("\n") + impl, at + 1)) != std::string::npos) ++n;
    EXPECT_EQ(n, 3u) << impl << ": 2 runs in the table, 1 line in the spread\n" << r.out;
  }
  EXPECT_NE(r.out.find("spread over 2 runs (min / median / max):\n"), std::string::npos) << r.out;
  if (baseline) {
    EXPECT_NE(r.out.find("ratios (perfstream-count / other, same size, same invocation, medians):\n"),
              std::string::npos)
        << r.out;
  }
  const std::string svg = read_file(plot.string());
  for (const char* label : {">delivered<", ">collector CPU per record<", ">lost<", ">records per second<",
                            ">ns of CPU per record<", ">% of records attempted<", ">record size (bytes, log scale)<"}) {
    EXPECT_NE(svg.find(label), std::string::npos) << label;
  }
  for (const char* chart : {"delivered", "collector CPU per record", "lost"}) {
    const std::vector<double> ticks = tick_values(svg, chart);
    ASSERT_GE(ticks.size(), 2u) << chart;
    EXPECT_EQ(ticks.front(), 0) << chart;
    const double step = ticks[1];
    const double mantissa = step / std::pow(10.0, std::floor(std::log10(step)));
    bool round = false;
    for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) round = round || std::abs(mantissa - m) < 1e-9;
    EXPECT_TRUE(round) << chart << ": step " << step;
    for (std::size_t i = 0; i < ticks.size(); ++i) EXPECT_NEAR(ticks[i], step * i, step * 1e-6) << chart;
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

// --sample-fields: one perfstream run per set of perf sample fields, each in the table under its name with
// no loss of records the ring had room for, and the ratios of every set against the first.
TEST(BenchCompare, SampleFieldsRunsEverySetAndComparesThemWithTheFirst) {
  const RunResult r = run({perfstream_binary(), "bench", "--sizes", "64", "--duration", "200ms", "--sample-fields", "all"});
  if (kernel_refuses(r)) GTEST_SKIP() << "the kernel refuses BPF here: " << r.err;
  ASSERT_EQ(r.exit_status, 0) << r.err << r.out;
  for (const char* impl : {"perfstream-count:raw ", "perfstream-count:raw+cpu ", "perfstream-count:raw+time ",
                           "perfstream-count:raw+time+cpu "}) {
    std::size_t at = 0, n = 0;
    while ((at = r.out.find(std::string("\n") + impl, at + 1)) != std::string::npos) ++n;
    EXPECT_EQ(n, 1u) << impl << ": one run in the table\n" << r.out;
  }
  EXPECT_NE(r.out.find("ratios (perfstream-count:raw / other, same size, same invocation):\n"), std::string::npos)
      << r.out;
  for (const char* other : {"  perfstream-count:raw+cpu ", "  perfstream-count:raw+time ", "  perfstream-count:raw+time+cpu "}) {
    EXPECT_NE(r.out.find(other), std::string::npos) << other << "\n" << r.out;
  }

  const RunResult bad = run({perfstream_binary(), "bench", "--sample-fields", "raw+ip"});
  EXPECT_EQ(bad.exit_status, 2) << bad.err;
  EXPECT_NE(bad.err.find("--sample-fields: raw, raw+cpu, raw+time, raw+time+cpu or all, not 'raw+ip'"), std::string::npos)
      << bad.err;
}

// Another process taking CPU during a run marks the run busy and the table ends with a warning, so a figure
// measured on a loaded machine is not quoted as if it were not.
TEST(BenchCompare, AnotherProcessTakingCpuMarksTheRunsBusy) {
  Background spinner({"/bin/sh", "-c", "while :; do :; done"});
  const RunResult r = run({perfstream_binary(), "bench", "--sizes", "64", "--duration", "300ms"});
  spinner.stop(SIGKILL);
  if (kernel_refuses(r)) GTEST_SKIP() << "the kernel refuses BPF here: " << r.err;
  ASSERT_EQ(r.exit_status, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("% busy\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\nwarning: the machine was busy during 1 of 1 runs (marked busy: other processes took up to "),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("): their figures are not comparable; run again on an idle machine\n"), std::string::npos);
}

}  // namespace
}  // namespace perfstream::testing
