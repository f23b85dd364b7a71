// BPF ring buffer objects recorded end to end, as a user records a libbpf-tools style tool: the real binary,
// the real kernel, objects compiled with clang -target bpf (bpf/opensnoop_ringbuf.bpf.c, the shape of
// libbpf-tools' current opensnoop; bpf/loadgen_ringbuf.bpf.c, which has a perf event array and a ring buffer).
// Needs root; skips only when the kernel refuses BPF.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include "collector/recording/recording_reader.hpp"
#include "testing/kernel_fixture.hpp"
#include "testing/subprocess.hpp"

namespace perfstream::testing {
namespace {

namespace fs = std::filesystem;

class RingbufEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    // Short: the opensnoop object keeps the first 63 bytes of a path.
    char dir[] = "/tmp/psrb-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  static std::string object(const std::string& name) {
    return std::string(PERFSTREAM_BPF_GEN_DIR) + "/" + name + ".bpf.o";
  }
  fs::path dir_;
};

bool refused(const RunResult& r) {
  return r.err.find("refused") != std::string::npos || r.err.find("Operation not permitted") != std::string::npos;
}

TEST_F(RingbufEndToEnd, OpensnoopShapedRingbufObjectRecordsEveryOpenOfTheCommandWithItsTsAsTime) {
  constexpr int kFiles = 40;
  for (int i = 0; i < kFiles; ++i) std::ofstream(dir_ / ("f" + std::to_string(i))) << i;
  const fs::path trace = dir_ / "opensnoop.data";
  // dash opens each file once for the redirection (openat), with builtins only: no other process of ours
  // opens anything under dir_.
  const std::string script = "i=0; while [ $i -lt " + std::to_string(kFiles) + " ]; do : < '" + dir_.string() +
                             "/f'$i; i=$((i+1)); done";
  RunResult rec = run({perfstream_binary(), "record", "--object", object("opensnoop_ringbuf"), "-o", trace.string(),
                       "--", "/bin/sh", "-c", script});
  if (rec.exit_status != 0 && refused(rec)) GTEST_SKIP() << "the kernel refuses BPF here: " << rec.err;
  ASSERT_EQ(rec.exit_status, 0) << rec.err;
  EXPECT_NE(rec.err.find("from its ring buffer 'events'"), std::string::npos) << rec.err;
  EXPECT_NE(rec.err.find("record times from field 'ts'"), std::string::npos) << rec.err;
  EXPECT_NE(rec.err.find("the kernel counts no lost records for a ring buffer"), std::string::npos) << rec.err;
  EXPECT_NE(rec.err.find("fill high-water "), std::string::npos) << rec.err;

  RunResult dump = run({perfstream_binary(), "dump", "--json", trace.string()});
  ASSERT_EQ(dump.exit_status, 0) << dump.err;
  const std::regex line_re(
      R"re(^\{"time_ns":(\d+),"cpu":(\d+),"event":"[^"]*","fields":\{"ts":(\d+),"pid":(\d+),"uid":(\d+),"flags":(-?\d+),"name_len":(\d+),"comm":"([^"]*)","fname":"([^"]*)"\}\}$)re");
  std::stringstream lines(dump.out);
  std::string line;
  std::multiset<std::string> ours;
  std::set<std::string> pids;
  std::size_t records = 0;
  while (std::getline(lines, line)) {
    std::smatch m;
    ASSERT_TRUE(std::regex_match(line, m, line_re)) << line;
    ++records;
    EXPECT_EQ(m[1].str(), m[3].str()) << "the record's time is its ts field: " << line;
    EXPECT_EQ(m[2].str(), "4294967295") << "a ring buffer record has no CPU: " << line;
    const std::string fname = m[9].str();
    EXPECT_EQ(std::stoul(m[7].str()), fname.size() + 1) << line;
    if (fname.rfind(dir_.string() + "/f", 0) == 0) {
      ours.insert(fname);
      EXPECT_EQ(m[8].str(), "sh") << line;
      EXPECT_EQ(m[6].str(), "0") << "O_RDONLY: " << line;
      pids.insert(m[4].str());
    }
  }
  ASSERT_EQ(ours.size(), static_cast<std::size_t>(kFiles)) << dump.out;
  // Text says so in the CPU's place, and so does stats --by cpu.
  RunResult text = run({perfstream_binary(), "dump", trace.string()});
  ASSERT_EQ(text.exit_status, 0) << text.err;
  EXPECT_NE(text.out.find("  [ring]  "), std::string::npos) << text.out.substr(0, 500);
  EXPECT_EQ(text.out.find("4294967295"), std::string::npos) << text.out.substr(0, 500);
  RunResult by_cpu = run({perfstream_binary(), "stats", "--by", "cpu", trace.string()});
  ASSERT_EQ(by_cpu.exit_status, 0) << by_cpu.err;
  EXPECT_NE(by_cpu.out.find("\nring "), std::string::npos) << by_cpu.out;
  for (int i = 0; i < kFiles; ++i) EXPECT_EQ(ours.count((dir_ / ("f" + std::to_string(i))).string()), 1u);
  EXPECT_EQ(pids.size(), 1u);

  auto reader = recording::RecordingReader::open({trace.string()}, {});
  ASSERT_TRUE(reader) << reader.error().message();
  const v1::TraceHeader& header = (*reader)->header();
  EXPECT_EQ(header.output_map(), v1::OUTPUT_MAP_RINGBUF);
  EXPECT_EQ(header.output_map_name(), "events");
  EXPECT_EQ(header.record_time(), v1::RECORD_TIME_EVENT_FIELD);
  EXPECT_EQ(header.record_time_field(), "ts");
  EXPECT_EQ(header.clock(), v1::MONOTONIC);
  recording::ReadBatch rb;
  while ((*reader)->next(rb)) {
  }
  const v1::TraceTrailer* trailer = (*reader)->last_trailer();
  ASSERT_NE(trailer, nullptr);
  ASSERT_EQ(trailer->cpus_size(), 1);
  const v1::CpuTotals& ring = trailer->cpus(0);
  EXPECT_EQ(ring.cpu(), 0xffffffffu);
  EXPECT_TRUE(ring.lost_not_counted());
  EXPECT_EQ(ring.lost(), 0u);
  EXPECT_EQ(ring.samples(), records);
  EXPECT_EQ(ring.sample_bytes(), records * 104) << "exactly sizeof(struct opensnoop_event) per record, no padding";
  EXPECT_EQ(ring.ring_size(), 256u * 1024);
  EXPECT_GE(ring.fill_high_water(), 112u) << "at least one 104-byte record plus its header was ever pending";
  EXPECT_LE(ring.fill_high_water(), 256u * 1024);
  EXPECT_EQ(ring.discarded(), 0u);

  RunResult stats = run({perfstream_binary(), "stats", trace.string()});
  ASSERT_EQ(stats.exit_status, 0) << stats.err;
  EXPECT_NE(stats.out.find("the kernel counts no lost records for a BPF ring buffer"), std::string::npos)
      << stats.out;
  EXPECT_NE(stats.out.find("ring was at most " + std::to_string(ring.fill_high_water()) + " of 262144 bytes full"),
            std::string::npos)
      << stats.out;
}

TEST_F(RingbufEndToEnd, AnObjectWithBothKindsOfOutputMapAndNoMapNamedIsRefusedWithBothListed) {
  RunResult rec = run({perfstream_binary(), "record", "--object", object("loadgen_ringbuf"), "--duration",
                       "100ms", "-o", (dir_ / "x.data").string(), "--quiet"});
  ASSERT_EQ(rec.exit_status, 1) << rec.err;
  EXPECT_NE(rec.err.find("probe '" + object("loadgen_ringbuf") + "': 2 output maps ("), std::string::npos) << rec.err;
  EXPECT_NE(rec.err.find("perf event array 'events'"), std::string::npos) << rec.err;
  EXPECT_NE(rec.err.find("ring buffer 'ringbuf'"), std::string::npos) << rec.err;
  EXPECT_NE(rec.err.find("); name one with --map"), std::string::npos) << rec.err;
  EXPECT_FALSE(fs::exists(dir_ / "x.data"));
}

TEST_F(RingbufEndToEnd, MapNamesEitherKindAndRefusesAnyOther) {
  RunResult wrong = run({perfstream_binary(), "record", "--object", object("loadgen_ringbuf"), "--map",
                         "loadgen_config", "--duration", "100ms", "-o", (dir_ / "x.data").string(), "--quiet"});
  ASSERT_EQ(wrong.exit_status, 1) << wrong.err;
  EXPECT_NE(wrong.err.find("probe '" + object("loadgen_ringbuf") +
                           "': map 'loadgen_config' is neither a BPF_MAP_TYPE_PERF_EVENT_ARRAY nor a "
                           "BPF_MAP_TYPE_RINGBUF"),
            std::string::npos)
      << wrong.err;

  const fs::path trace = dir_ / "ring.data";
  RunResult rec = run({perfstream_binary(), "record", "--object", object("loadgen_ringbuf"), "--map", "ringbuf",
                       "--duration", "100ms", "-o", trace.string(), "--quiet"});
  if (rec.exit_status != 0 && refused(rec)) GTEST_SKIP() << "the kernel refuses BPF here: " << rec.err;
  ASSERT_EQ(rec.exit_status, 0) << rec.err;
  auto reader = recording::RecordingReader::open({trace.string()}, {});
  ASSERT_TRUE(reader) << reader.error().message();
  EXPECT_EQ((*reader)->header().output_map(), v1::OUTPUT_MAP_RINGBUF);
  EXPECT_EQ((*reader)->header().output_map_name(), "ringbuf");

  const fs::path perf_trace = dir_ / "perf.data";
  RunResult perf = run({perfstream_binary(), "record", "--object", object("loadgen_ringbuf"), "--map", "events",
                        "--duration", "100ms", "-o", perf_trace.string(), "--quiet"});
  ASSERT_EQ(perf.exit_status, 0) << perf.err;
  auto perf_reader = recording::RecordingReader::open({perf_trace.string()}, {});
  ASSERT_TRUE(perf_reader) << perf_reader.error().message();
  EXPECT_EQ((*perf_reader)->header().output_map(), v1::OUTPUT_MAP_PERF_EVENT_ARRAY);
  EXPECT_EQ((*perf_reader)->header().output_map_name(), "events");
  EXPECT_EQ((*perf_reader)->header().record_time(), v1::RECORD_TIME_PERF_SAMPLE);
}

}  // namespace
}  // namespace perfstream::testing
