// BPF ring buffer objects recorded end to end, as a user records a libbpf-tools style tool: the real binary,
// the real kernel, objects compiled with clang -target bpf (bpf/opensnoop_ringbuf.bpf.c, the shape of
// libbpf-tools' current opensnoop; bpf/loadgen_ringbuf.bpf.c, which has a perf event array and a ring buffer).
// Needs root; skips only when the kernel refuses BPF.
#include <linux/perf_event.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <map>
#include <set>

#include "collector/recording/recording_reader.hpp"
#include "testing/kernel_fixture.hpp"
#include "testing/sink_and_stream.hpp"
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
  // loadgen's records carry their own `ts`: on perf rings too they are timed by it, without PERF_SAMPLE_TIME.
  EXPECT_EQ((*perf_reader)->header().record_time(), v1::RECORD_TIME_EVENT_FIELD);
  EXPECT_EQ((*perf_reader)->header().record_time_field(), "ts");
  EXPECT_EQ((*perf_reader)->header().sample_type(), std::uint64_t{PERF_SAMPLE_RAW});
}

// The same object streamed to a sink: the sink's recording says what the file would (a ring buffer, times
// from `ts`) and holds every open of the command once, each payload byte for byte as the program wrote it
// (every byte the program sets: the bytes of `fname` past its NUL are whatever the reserved slot held).
class RingbufStreamEndToEnd : public SinkAndStreamTest {
 protected:
  RingbufStreamEndToEnd() : SinkAndStreamTest("perfstream-ringbuf-stream") {}
};

TEST_F(RingbufStreamEndToEnd, AStreamedRingbufRecordingReadsBackFromTheSinkByteForByte) {
  // A short directory of our own: the object keeps the first 63 bytes of a path.
  char files_dir[] = "/tmp/psrs-XXXXXX";
  ASSERT_NE(mkdtemp(files_dir), nullptr);
  const fs::path files = files_dir;
  struct RemoveFiles {
    fs::path p;
    ~RemoveFiles() {
      std::error_code ec;
      fs::remove_all(p, ec);
    }
  } remove_files{files};
  constexpr int kFiles = 60;
  for (int i = 0; i < kFiles; ++i) std::ofstream(files / ("f" + std::to_string(i))) << i;

  auto sink = start_sink();
  ASSERT_TRUE(sink);
  const std::string script = "i=0; while [ $i -lt " + std::to_string(kFiles) + " ]; do : < '" + files.string() +
                             "/f'$i; i=$((i+1)); done";
  RunResult streamed = run({perfstream_binary(), "stream", "--object",
                            std::string(PERFSTREAM_BPF_GEN_DIR) + "/opensnoop_ringbuf.bpf.o", "--to", to_, "--spool",
                            (dir_ / "spool").string(), "--", "/bin/sh", "-c", script});
  if (streamed.exit_status != 0 && refused(streamed)) GTEST_SKIP() << "the kernel refuses BPF here: " << streamed.err;
  ASSERT_EQ(streamed.exit_status, 0) << streamed.err;
  RunResult sunk = sink->stop(SIGINT);
  ASSERT_EQ(sunk.exit_status, 0) << sunk.err;

  std::vector<std::string> stored;
  for (const auto& e : fs::directory_iterator(dir_ / "sink")) {
    if (e.path().extension() == ".data") stored.push_back(e.path().string());
  }
  ASSERT_EQ(stored.size(), 1u) << sunk.err;
  auto reader = recording::RecordingReader::open(stored, {});
  ASSERT_TRUE(reader) << reader.error().message();
  const v1::TraceHeader& header = (*reader)->header();
  EXPECT_EQ(header.output_map(), v1::OUTPUT_MAP_RINGBUF);
  EXPECT_EQ(header.output_map_name(), "events");
  EXPECT_EQ(header.record_time(), v1::RECORD_TIME_EVENT_FIELD);
  EXPECT_EQ(header.record_time_field(), "ts");

  // struct opensnoop_event: u64 ts, u32 pid, u32 uid, int flags, u32 name_len, char comm[16], char fname[64].
  constexpr std::size_t kPid = 8, kUid = 12, kNameLen = 20, kComm = 24, kFname = 40, kSize = 104;
  std::map<std::string, int> ours;
  std::set<std::uint32_t> pids;
  std::uint64_t records = 0;
  recording::ReadBatch rb;
  while ((*reader)->next(rb)) {
    const recording::DecodedBatch& b = rb.batch;
    for (std::size_t i = 0; i < b.size(); ++i) {
      ++records;
      const std::span<const char> payload = b.payload(i);
      ASSERT_EQ(payload.size(), kSize);
      std::uint64_t ts;
      std::memcpy(&ts, payload.data(), 8);
      EXPECT_EQ(b.times[i], ts) << "the record's time is its ts field";
      EXPECT_EQ(b.cpus[i], 0xffffffffu);
      const std::string fname(payload.data() + kFname);  // NUL-terminated by bpf_probe_read_user_str
      if (fname.rfind(files.string() + "/f", 0) != 0) continue;
      ++ours[fname];
      std::uint32_t pid;
      std::memcpy(&pid, payload.data() + kPid, 4);
      pids.insert(pid);
      // Every byte from uid to fname's NUL, as the program wrote it for `: < FILE` in sh run by root.
      std::string expected(kFname + fname.size() + 1 - kUid, '\0');
      const std::uint32_t name_len = static_cast<std::uint32_t>(fname.size() + 1);
      std::memcpy(expected.data() + (kNameLen - kUid), &name_len, 4);
      std::memcpy(expected.data() + (kComm - kUid), "sh", 2);
      std::memcpy(expected.data() + (kFname - kUid), fname.data(), fname.size());
      EXPECT_EQ(std::string(payload.data() + kUid, expected.size()), expected) << fname;
    }
  }
  ASSERT_EQ(ours.size(), static_cast<std::size_t>(kFiles));
  for (const auto& [fname, n] : ours) EXPECT_EQ(n, 1) << fname;
  EXPECT_EQ(pids.size(), 1u);
  const v1::TraceTrailer* trailer = (*reader)->last_trailer();
  ASSERT_NE(trailer, nullptr) << "the collector ended the recording at the sink";
  ASSERT_EQ(trailer->cpus_size(), 1);
  EXPECT_EQ(trailer->cpus(0).samples(), records);
  EXPECT_EQ(trailer->cpus(0).sample_bytes(), records * kSize);
  EXPECT_TRUE(trailer->cpus(0).lost_not_counted());
}

// -m sizes the ring buffer before load, as a libbpf loader's bpf_map__set_max_entries would: pages and bytes
// round up to a power-of-two number of pages, a total budget rounds down; the header carries the real size.
TEST_F(RingbufEndToEnd, RingSizeFlagSetsTheRingBuffersSizeRoundedToPowerOfTwoPages) {
  const long page = sysconf(_SC_PAGESIZE);
  ASSERT_GT(page, 0);
  struct Case {
    std::string flag;
    long expected;
  };
  const Case cases[] = {{"16", 16 * page}, {"100K", 128 * 1024}, {"total:100K", 64 * 1024}};
  for (const Case& c : cases) {
    const fs::path trace = dir_ / ("m" + std::to_string(&c - cases) + ".data");
    RunResult rec = run({perfstream_binary(), "record", "--object", object("loadgen_ringbuf"), "--map", "ringbuf",
                         "-m", c.flag, "--duration", "100ms", "-o", trace.string()});
    if (rec.exit_status != 0 && refused(rec)) GTEST_SKIP() << "the kernel refuses BPF here: " << rec.err;
    ASSERT_EQ(rec.exit_status, 0) << "-m " << c.flag << ": " << rec.err;
    EXPECT_NE(rec.err.find("from its ring buffer 'ringbuf' (" + std::to_string(c.expected / 1024) + " KiB, "),
              std::string::npos)
        << "-m " << c.flag << ": " << rec.err;
    auto reader = recording::RecordingReader::open({trace.string()}, {});
    ASSERT_TRUE(reader) << reader.error().message();
    EXPECT_EQ(static_cast<long>((*reader)->header().ring().data_pages()) * page, c.expected) << "-m " << c.flag;
  }
}

// Flags that only mean something for per-CPU perf rings are refused for a ring buffer, each saying why,
// before anything is recorded; the same flags still work with the object's perf event array.
TEST_F(RingbufEndToEnd, PerfRingOnlyFlagsAreRefusedForARingBufferSayingWhy) {
  struct Case {
    std::vector<std::string> flags;
    std::string message;
  };
  const std::string rb = "the output map 'ringbuf' is a BPF ring buffer: ";
  const Case cases[] = {
      {{"--wakeup", "64K"}, "--wakeup: " + rb + "its BPF program decides when the reader is woken"},
      {{"-C", "0"}, "-C: " + rb + "one ring shared by every CPU"},
      {{"--threads", "2"}, "--threads 2: " + rb + "one ring with one consumer position, read by one thread"},
  };
  for (const Case& c : cases) {
    const fs::path trace = dir_ / "refused.data";
    std::vector<std::string> args = {perfstream_binary(), "record", "--object", object("loadgen_ringbuf"),
                                     "--map", "ringbuf", "--duration", "100ms", "-o", trace.string(), "--quiet"};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    RunResult rec = run(args);
    if (rec.exit_status != 0 && refused(rec)) GTEST_SKIP() << "the kernel refuses BPF here: " << rec.err;
    EXPECT_EQ(rec.exit_status, 1) << c.flags.front() << ": " << rec.err;
    EXPECT_NE(rec.err.find(c.message), std::string::npos) << rec.err;
    EXPECT_FALSE(fs::exists(trace)) << c.flags.front();

    args[5] = "events";  // the object's perf event array takes the same flag
    RunResult perf = run(args);
    EXPECT_EQ(perf.exit_status, 0) << c.flags.front() << " with the perf event array: " << perf.err;
    std::error_code ec;
    fs::remove(trace, ec);
  }
  // --threads 1 and --no-hotplug (keep no capability after setup) have a meaning for one ring: accepted.
  RunResult rec = run({perfstream_binary(), "record", "--object", object("loadgen_ringbuf"), "--map", "ringbuf",
                       "--threads", "1", "--no-hotplug", "--duration", "100ms", "-o",
                       (dir_ / "ok.data").string(), "--quiet"});
  EXPECT_EQ(rec.exit_status, 0) << rec.err;
}

}  // namespace
}  // namespace perfstream::testing
