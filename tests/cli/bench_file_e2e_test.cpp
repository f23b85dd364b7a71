// perfstream bench --mode file writes a real recording: the header record writes (loadgen's schema, clock,
// start times, host), a trailer with the collector's counters, so that dump and stats read it back like a
// recording of record's: loadgen records with their fields by name, never "unknown". Needs root; skips
// only when the kernel refuses BPF.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>

#include "testing/subprocess.hpp"

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

}  // namespace
}  // namespace perfstream::testing
