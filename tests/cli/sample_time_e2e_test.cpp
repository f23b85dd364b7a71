// record --sample-time event|kernel end to end: the real binary, the real kernel. By default a built-in
// probe's records are timed by their own `ts` and the perf events ask for PERF_SAMPLE_RAW alone; with
// kernel, the kernel adds PERF_SAMPLE_TIME. Either way dump gives every record its CPU (the one the
// command was pinned to) and shows records in time order. Needs root; skips only when the kernel refuses
// BPF.
#include <linux/perf_event.h>
#include <unistd.h>

#include <filesystem>
#include <regex>
#include <sstream>

#include "collector/kernel/cpu_set.hpp"
#include "collector/recording/recording_reader.hpp"
#include "testing/kernel_fixture.hpp"
#include "testing/subprocess.hpp"

namespace perfstream::testing {
namespace {

namespace fs = std::filesystem;

class SampleTimeEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("perfstream-sample-time-" + std::to_string(getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  struct Line {
    std::uint64_t time = 0, ts = 0;
    unsigned cpu = 0;
    std::string event, filename;
  };

  // Records exec and exit of a shell pinned to `cpu` that runs /bin/true five times, and returns dump's
  // records in dump's order; *header gets the trace header.
  std::vector<Line> record_pinned(const std::string& mode, unsigned cpu, v1::TraceHeader* header) {
    const fs::path trace = dir_ / (mode + ".data");
    std::vector<std::string> args = {perfstream_binary(), "record", "--probe", "exec,exit", "-q", "-o",
                                     trace.string()};
    if (!mode.empty()) {
      args.push_back("--sample-time");
      args.push_back(mode);
    }
    for (const char* a : {"--", "/usr/bin/taskset", "-c"}) args.push_back(a);
    args.push_back(std::to_string(cpu));
    for (const char* a : {"/bin/sh", "-c", "for i in 1 2 3 4 5; do /bin/true; done"}) args.push_back(a);
    RunResult rec = run(args);
    if (rec.exit_status != 0 && rec.err.find("refused") != std::string::npos) {
      skipped_ = rec.err;
      return {};
    }
    EXPECT_EQ(rec.exit_status, 0) << rec.err;

    auto reader = recording::RecordingReader::open({trace.string()}, {});
    EXPECT_TRUE(reader) << reader.error().message();
    if (!reader) return {};
    *header = (*reader)->header();

    RunResult dump = run({perfstream_binary(), "dump", "--json", "--raw-fields", trace.string()});
    EXPECT_EQ(dump.exit_status, 0) << dump.err;
    const std::regex time_re("^\\{\"time_ns\":([0-9]+),\"cpu\":([0-9]+),\"event\":\"([a-z_]+)\"");
    const std::regex ts_re("\"ts\":([0-9]+)");
    const std::regex filename_re("\"filename\":\"([^\"]*)\"");
    std::vector<Line> lines;
    std::stringstream out(dump.out);
    std::string text;
    while (std::getline(out, text)) {
      std::smatch m;
      EXPECT_TRUE(std::regex_search(text, m, time_re)) << text;
      if (m.empty()) continue;
      Line line;
      line.time = std::stoull(m[1].str());
      line.cpu = static_cast<unsigned>(std::stoul(m[2].str()));
      line.event = m[3].str();
      EXPECT_TRUE(std::regex_search(text, m, ts_re)) << "--raw-fields shows the hidden ts: " << text;
      if (!m.empty()) line.ts = std::stoull(m[1].str());
      // Raw, exec's filename is the file name and argv, NUL-separated: keep the file name.
      if (std::regex_search(text, m, filename_re)) line.filename = m[1].str().substr(0, m[1].str().find("\\u0000"));
      lines.push_back(line);
    }
    return lines;
  }

  fs::path dir_;
  std::string skipped_;
};

unsigned last_online_cpu() {
  auto online = CpuSet::online();
  return online && !online->empty() ? online->max() : 0;
}

TEST_F(SampleTimeEndToEnd, ByDefaultRecordsAreTimedByTheirTsAndTheEventsAskForRawAlone) {
  if (!fs::exists("/usr/bin/taskset")) GTEST_SKIP() << "no /usr/bin/taskset (util-linux) to pin the command";
  const unsigned cpu = last_online_cpu();
  v1::TraceHeader header;
  const auto lines = record_pinned("", cpu, &header);
  if (!skipped_.empty()) GTEST_SKIP() << "the kernel refuses BPF here: " << skipped_;
  EXPECT_EQ(header.sample_type(), std::uint64_t{PERF_SAMPLE_RAW});
  EXPECT_EQ(header.record_time(), v1::RECORD_TIME_EVENT_FIELD);
  EXPECT_EQ(header.record_time_field(), "ts");
  EXPECT_EQ(header.clock(), v1::MONOTONIC);

  int trues = 0, exits = 0;
  std::uint64_t previous = 0;
  for (const auto& line : lines) {
    EXPECT_EQ(line.time, line.ts) << "the record's time is its ts field";
    EXPECT_GE(line.time, previous) << "dump shows records in time order";
    previous = line.time;
    EXPECT_GE(line.time, header.start_time_ns()) << "on the recording's clock";
    if (line.event == "exec" && line.filename == "/bin/true") {
      ++trues;
      EXPECT_EQ(line.cpu, cpu) << "the command was pinned to CPU " << cpu;
    }
    exits += line.event == "exit";
  }
  EXPECT_EQ(trues, 5);
  EXPECT_GE(exits, 6) << "five /bin/true and the shell";
}

TEST_F(SampleTimeEndToEnd, KernelAsksForTheKernelsTimeWhichFollowsTheProgramsOwnOnTheSameClock) {
  if (!fs::exists("/usr/bin/taskset")) GTEST_SKIP() << "no /usr/bin/taskset (util-linux) to pin the command";
  const unsigned cpu = last_online_cpu();
  v1::TraceHeader header;
  const auto lines = record_pinned("kernel", cpu, &header);
  if (!skipped_.empty()) GTEST_SKIP() << "the kernel refuses BPF here: " << skipped_;
  EXPECT_EQ(header.sample_type(), std::uint64_t{PERF_SAMPLE_RAW | PERF_SAMPLE_TIME});
  EXPECT_EQ(header.record_time(), v1::RECORD_TIME_PERF_SAMPLE);
  EXPECT_EQ(header.record_time_field(), "");

  int trues = 0;
  std::uint64_t previous = 0;
  for (const auto& line : lines) {
    // The kernel takes its time inside bpf_perf_event_output, after ps_output_stamped took ts: the same
    // clock (CLOCK_MONOTONIC), a little later.
    EXPECT_LE(line.ts, line.time);
    EXPECT_LT(line.time - line.ts, 10'000'000u) << "ts " << line.ts << ", kernel time " << line.time;
    EXPECT_GE(line.time, previous) << "dump shows records in time order";
    previous = line.time;
    if (line.event == "exec" && line.filename == "/bin/true") {
      ++trues;
      EXPECT_EQ(line.cpu, cpu) << "the command was pinned to CPU " << cpu;
    }
  }
  EXPECT_EQ(trues, 5);
}

TEST_F(SampleTimeEndToEnd, AnUnknownSampleTimeIsAUsageError) {
  RunResult r = run({perfstream_binary(), "record", "--probe", "exec", "--sample-time", "wall", "-o",
                     (dir_ / "x.data").string(), "--duration", "100ms"});
  EXPECT_NE(r.exit_status, 0);
  EXPECT_NE(r.err.find("--sample-time: 'wall' is neither event nor kernel"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "x.data"));
}

}  // namespace
}  // namespace perfstream::testing
