// `perfstream dump` and `perfstream stats` on synthetic traces written with TraceFileWriter: exact text and
// JSON lines, time order across CPUs and batches, lost notices, filters, damaged files, and usage errors.
// Also the reader library they share (RecordingReader, TimeOrderedReader) and the rendering helpers (quoting, JSON escaping).
#include <gtest/gtest.h>
#include <linux/types.h>  // events.h includes nothing: the includer provides __u32 and friends

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "bpf/events.h"
#include "collector/cli/commands.hpp"
#include "collector/cli/render.hpp"
#include "collector/recording/recording_reader.hpp"
#include "collector/recording/time_ordered_reader.hpp"
#include "collector/format/batch_encoder.hpp"
#include "collector/format/trace_reader.hpp"
#include "collector/format/trace_writer.hpp"
#include "collector/format/zstd_codec.hpp"
#include "testing/schema_field.hpp"
#include "testing/temp_dir.hpp"

namespace perfstream::cli {
namespace {

using perfstream::testing::TempDir;

// --- A minimal JSON checker: is this one valid JSON value (RFC 8259), strings valid UTF-8? -------------

class JsonChecker {
 public:
  static bool valid(std::string_view s) {
    JsonChecker c(s);
    c.space();
    if (!c.value()) return false;
    c.space();
    return c.i_ == s.size();
  }

 private:
  explicit JsonChecker(std::string_view s) : s_(s) {}
  bool eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }
  bool value() {
    if (i_ >= s_.size()) return false;
    switch (s_[i_]) {
      case '{': return object();
      case '[': return array();
      case '"': return string();
      case 't': return literal("true");
      case 'f': return literal("false");
      case 'n': return literal("null");
      default: return number();
    }
  }
  bool object() {
    eat('{');
    space();
    if (eat('}')) return true;
    for (;;) {
      space();
      if (!string()) return false;
      space();
      if (!eat(':')) return false;
      space();
      if (!value()) return false;
      space();
      if (eat('}')) return true;
      if (!eat(',')) return false;
    }
  }
  bool array() {
    eat('[');
    space();
    if (eat(']')) return true;
    for (;;) {
      space();
      if (!value()) return false;
      space();
      if (eat(']')) return true;
      if (!eat(',')) return false;
    }
  }
  bool string() {
    if (!eat('"')) return false;
    while (i_ < s_.size()) {
      const unsigned char c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        ++i_;
        if (i_ >= s_.size()) return false;
        const char e = s_[i_++];
        if (e == 'u') {
          for (int k = 0; k < 4; ++k) {
            if (i_ >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[i_++]))) return false;
          }
        } else if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos) {
          return false;
        }
        continue;
      }
      const std::size_t n = render::utf8_sequence(s_, i_);
      if (n == 0) return false;
      i_ += n;
    }
    return false;
  }
  bool number() {
    const std::size_t start = i_;
    eat('-');
    if (eat('0')) {
    } else {
      if (i_ >= s_.size() || s_[i_] < '1' || s_[i_] > '9') return false;
      while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    if (eat('.')) {
      const std::size_t d = i_;
      while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
      if (i_ == d) return false;
    }
    if (eat('e') || eat('E')) {
      if (!eat('+')) eat('-');
      const std::size_t d = i_;
      while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
      if (i_ == d) return false;
    }
    return i_ > start;
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// --- The synthetic recording -------------------------------------------------------------------------------

std::string padded(std::string p) {
  p.resize((p.size() + 7) / 8 * 8, '\0');  // the kernel pads raw samples to 8 bytes
  return p;
}

// The recordings here are laid out as perfstream wrote openat and exec before issue 13 (48- and 40-byte
// headers, no result, no argv): a trace file carries its own schemas, so such files must keep dumping exactly
// as they did, whatever bpf/events.h says today.
struct legacy_openat_event {
  __u32 kind, pid, tid;
  __s32 dfd, flags;
  __u32 mode;
  char comm[16];
  __u32 path_len, reserved;
  char path[4096];
};
constexpr std::size_t kLegacyOpenatHeader = 48;
struct legacy_exec_event {
  __u32 kind, pid, ppid, uid;
  char comm[16];
  __u32 filename_len, reserved;
  char filename[4096];
};
constexpr std::size_t kLegacyExecHeader = 40;
static_assert(offsetof(legacy_openat_event, path) == kLegacyOpenatHeader);
static_assert(offsetof(legacy_exec_event, filename) == kLegacyExecHeader);

// A field as those schemas had it: an array with a length field is the variable part.
v1::Field legacy_field(const std::string& name, v1::Field::Type type, std::uint32_t offset, std::uint32_t size,
                       const std::string& length_field = "") {
  return testing::schema_field(name, type, offset, size, length_field, !length_field.empty());
}

// The schemas the recorder wrote for those layouts (as read from their BTF then).
v1::EventSchema legacy_openat_schema() {
  v1::EventSchema s;
  s.set_name("openat");
  s.set_kind(PS_EVENT_OPENAT);
  s.set_type_name("ps_openat_event");
  s.set_fixed_size(kLegacyOpenatHeader);
  const auto U = v1::Field::UNSIGNED, S = v1::Field::SIGNED, T = v1::Field::STRING;
  for (auto f : {legacy_field("kind", U, 0, 4), legacy_field("pid", U, 4, 4), legacy_field("tid", U, 8, 4),
                 legacy_field("dfd", S, 12, 4), legacy_field("flags", S, 16, 4), legacy_field("mode", U, 20, 4),
                 legacy_field("comm", T, 24, 16), legacy_field("path_len", U, 40, 4),
                 legacy_field("reserved", U, 44, 4), legacy_field("path", T, 48, 4096, "path_len")}) {
    *s.add_fields() = f;
  }
  return s;
}

v1::EventSchema legacy_exec_schema() {
  v1::EventSchema s;
  s.set_name("exec");
  s.set_kind(PS_EVENT_EXEC);
  s.set_type_name("ps_exec_event");
  s.set_fixed_size(kLegacyExecHeader);
  const auto U = v1::Field::UNSIGNED, T = v1::Field::STRING;
  for (auto f : {legacy_field("kind", U, 0, 4), legacy_field("pid", U, 4, 4), legacy_field("ppid", U, 8, 4),
                 legacy_field("uid", U, 12, 4), legacy_field("comm", T, 16, 16),
                 legacy_field("filename_len", U, 32, 4), legacy_field("reserved", U, 36, 4),
                 legacy_field("filename", T, 40, 4096, "filename_len")}) {
    *s.add_fields() = f;
  }
  return s;
}

std::string openat_payload(std::uint32_t pid, std::uint32_t tid, std::int32_t dfd, std::int32_t flags,
                           std::uint32_t mode, const char* comm, const std::string& path) {
  legacy_openat_event e{};
  e.kind = PS_EVENT_OPENAT;
  e.pid = pid;
  e.tid = tid;
  e.dfd = dfd;
  e.flags = flags;
  e.mode = mode;
  std::strncpy(e.comm, comm, sizeof(e.comm) - 1);
  std::memcpy(e.path, path.data(), path.size());
  e.path_len = static_cast<__u32>(path.size() + 1);
  return padded(std::string(reinterpret_cast<const char*>(&e), kLegacyOpenatHeader + e.path_len));
}

std::string exec_payload(std::uint32_t pid, std::uint32_t ppid, std::uint32_t uid, const char* comm,
                         const std::string& filename) {
  legacy_exec_event e{};
  e.kind = PS_EVENT_EXEC;
  e.pid = pid;
  e.ppid = ppid;
  e.uid = uid;
  std::strncpy(e.comm, comm, sizeof(e.comm) - 1);
  std::memcpy(e.filename, filename.data(), filename.size());
  e.filename_len = static_cast<__u32>(filename.size() + 1);
  return padded(std::string(reinterpret_cast<const char*>(&e), kLegacyExecHeader + e.filename_len));
}

std::span<const std::byte> bytes_of(const std::string& s) {
  return std::span<const std::byte>(reinterpret_cast<const std::byte*>(s.data()), s.size());
}

v1::TraceHeader dump_header(const std::string& recording_id) {
  v1::TraceHeader h;
  h.set_format_version(1);
  h.set_perfstream_version("0.1.0");
  h.set_host("buildbox");
  h.set_kernel_release("6.1.0-test");
  h.set_possible_cpus(8);
  h.set_online_cpus("0-7");
  h.set_recorded_cpus("0-3");
  h.set_clock(v1::MONOTONIC);
  h.set_start_time_ns(999'000'000);
  h.set_start_realtime_ns(1'700'000'000'000'000'000ull);
  h.add_probes("openat");
  h.add_probes("exec");
  h.set_recording_id(recording_id);
  // The layouts of before argv and results, with no display hints: these tests pin that a recording made
  // before hints dumps exactly as it did then (the lines below are that output). Hints have their own golden
  // files (dump_golden_test.cpp).
  *h.add_events() = legacy_openat_schema();
  *h.add_events() = legacy_exec_schema();
  return h;
}

// One batch as the collector would write it: records (in arrival order) with lost notices between them.
struct Item {
  bool lost = false;
  std::uint64_t time_ns = 0;
  std::uint32_t cpu = 0;
  std::string payload;       // record
  std::uint64_t count = 0;   // lost
  std::uint32_t source = 0;  // lost: 0 kernel, 1 collector
};

Item rec(std::uint64_t t, std::uint32_t cpu, std::string payload) { return Item{false, t, cpu, std::move(payload), 0, 0}; }
Item lost(std::uint64_t t, std::uint32_t cpu, std::uint64_t count, std::uint32_t source) {
  return Item{true, t, cpu, "", count, source};
}

EncodedBatch encode(const std::vector<Item>& items, std::uint64_t sequence) {
  BatchEncoder enc;
  for (const auto& it : items) {
    if (it.lost) enc.add_lost(it.cpu, it.count, it.time_ns, it.source);
    else enc.add_record(it.time_ns, it.cpu, bytes_of(it.payload));
  }
  std::string message;
  enc.finish(sequence, message);
  EncodedBatch b;
  b.sequence = sequence;
  b.records = enc.record_count();
  b.lost_notices = enc.lost_count();
  b.encoded_bytes = message.size();
  b.first_time_ns = enc.first_time();
  auto c = ZstdCompressor::create(3);
  if (!c || !c->compress(message, b.compressed)) throw std::runtime_error("compressing a test batch");
  return b;
}

// The recording: two reader threads' batches (CPUs 0 and 2, CPUs 1 and 3), then a third batch; records out
// of time order across batches, a kernel loss, a collector loss, and a record no schema describes.
std::vector<std::vector<Item>> recording_batches() {
  std::string unknown("\x09\x00\x00\x00\x01\x02\x03\x04", 8);
  return {
      {rec(1'000'000'500, 0, openat_payload(100, 101, -100, 0x241, 0644, "bash", "/tmp/out.txt")),
       rec(1'000'003'000, 2, exec_payload(200, 100, 1000, "ls", "/usr/bin/ls")),
       lost(1'000'004'000, 0, 17, 0),
       rec(1'000'005'000, 0, openat_payload(200, 200, -100, 0x80000, 0, "ls", "/etc/ld.so.cache"))},
      {rec(1'000'001'000, 1, openat_payload(300, 300, 3, 0, 0, "sh", "/tmp/a\"b\nc\xff")),
       rec(1'000'002'000, 3, unknown),
       rec(1'000'004'000, 1, exec_payload(300, 1, 0, "sh", "/bin/sh")),
       lost(1'000'006'000, 0, 5, 1)},
      {rec(1'000'007'000, 2, openat_payload(400, 401, -100, 0, 0, "cat", "/etc/hosts"))},
  };
}

v1::TraceTrailer recording_trailer() {
  v1::TraceTrailer t;
  t.set_end_time_ns(1'000'008'000);
  // Consistent with the batches, as the reader checks: per CPU the records read, and on CPU 0 also the five
  // the collector dropped (its notice says so) after they were drained.
  const std::uint64_t samples[] = {7, 2, 2, 1};
  for (std::uint32_t cpu = 0; cpu < 4; ++cpu) {
    v1::CpuTotals* c = t.add_cpus();
    c->set_cpu(cpu);
    c->set_samples(samples[cpu]);
    c->set_sample_bytes(100 + cpu);
    c->set_lost(cpu == 0 ? 17 : 0);
    c->set_corrupt(0);
    c->set_fill_high_water(8192 * (cpu + 1));
    c->set_ring_size(65536);
    c->set_wakeups(3);
    c->set_passes(4);
    if (cpu == 1) {  // CPU 1 went offline and came back: the BPF programs could not write 42 records
      c->set_unwritable(42);
      c->set_unwritable_errno(EOPNOTSUPP);
    }
  }
  return t;
}

void write_recording(const std::string& path, const std::string& recording_id = "rec-dump",
                     std::uint64_t rotate_bytes = 0) {
  TraceWriterOptions options;
  options.path = path;
  options.rotate_bytes = rotate_bytes;
  auto w = TraceFileWriter::create(options, dump_header(recording_id));
  if (!w) throw std::runtime_error(w.error().message());
  const auto batches = recording_batches();
  for (std::size_t i = 0; i < batches.size(); ++i) {
    if (auto st = (*w)->write_batch(encode(batches[i], i)); !st) throw std::runtime_error(st.error().message());
  }
  if (auto st = (*w)->close(recording_trailer()); !st) throw std::runtime_error(st.error().message());
}

struct FrameAt {
  std::uint64_t offset;
  std::uint64_t end;
};

// The frames after the file header: the trace header, the batches, the trailer.
std::vector<FrameAt> frames_of(const std::string& path) {
  const std::string bytes = perfstream::testing::read_file(path);
  std::vector<FrameAt> frames;
  std::uint64_t at = kFileHeaderSize;
  while (at < bytes.size()) {
    std::string why;
    auto h = parse_frame_header(std::span<const char>(bytes.data() + at, kFrameHeaderSize), &why);
    if (!h) throw std::runtime_error(why);
    frames.push_back(FrameAt{at, at + kFrameHeaderSize + h->payload_length});
    at = frames.back().end;
  }
  return frames;
}

const char* const kLineA =
    "1.000000500  [000]  openat  pid=100 tid=101 dfd=-100 flags=0x241 mode=0644 comm=\"bash\" path=\"/tmp/out.txt\"";
const char* const kLineD =
    "1.000001000  [001]  openat  pid=300 tid=300 dfd=3 flags=0x0 mode=0 comm=\"sh\" path=\"/tmp/a\\\"b\\nc\\xff\"";
const char* const kLineE = "1.000002000  [003]  unknown  raw=0900000001020304";
const char* const kLineB = "1.000003000  [002]  exec  pid=200 ppid=100 uid=1000 comm=\"ls\" filename=\"/usr/bin/ls\"";
const char* const kLineK = "1.000004000  [000]  LOST 17 samples (kernel ring full)";
const char* const kLineF = "1.000004000  [001]  exec  pid=300 ppid=1 uid=0 comm=\"sh\" filename=\"/bin/sh\"";
const char* const kLineC =
    "1.000005000  [000]  openat  pid=200 tid=200 dfd=-100 flags=0x80000 mode=0 comm=\"ls\" path=\"/etc/ld.so.cache\"";
const char* const kLineL = "1.000006000  [000]  LOST 5 samples (dropped by perfstream)";
const char* const kLineG =
    "1.000007000  [002]  openat  pid=400 tid=401 dfd=-100 flags=0x0 mode=0 comm=\"cat\" path=\"/etc/hosts\"";

const char* const kJsonA =
    R"({"time_ns":1000000500,"cpu":0,"event":"openat","fields":{"kind":2,"pid":100,"tid":101,"dfd":-100,"flags":577,"mode":420,"comm":"bash","path_len":13,"reserved":0,"path":"/tmp/out.txt"}})";
const char* const kJsonD =
    R"({"time_ns":1000001000,"cpu":1,"event":"openat","fields":{"kind":2,"pid":300,"tid":300,"dfd":3,"flags":0,"mode":0,"comm":"sh","path_len":12,"reserved":0,"path":"/tmp/a\"b\u000ac\u00ff"}})";
const char* const kJsonE = R"({"time_ns":1000002000,"cpu":3,"event":"unknown","raw":"0900000001020304"})";
const char* const kJsonB =
    R"({"time_ns":1000003000,"cpu":2,"event":"exec","fields":{"kind":1,"pid":200,"ppid":100,"uid":1000,"comm":"ls","filename_len":12,"reserved":0,"filename":"/usr/bin/ls"}})";
const char* const kJsonK = R"({"time_ns":1000004000,"cpu":0,"lost":17,"source":"kernel"})";
const char* const kJsonF =
    R"({"time_ns":1000004000,"cpu":1,"event":"exec","fields":{"kind":1,"pid":300,"ppid":1,"uid":0,"comm":"sh","filename_len":8,"reserved":0,"filename":"/bin/sh"}})";
const char* const kJsonC =
    R"({"time_ns":1000005000,"cpu":0,"event":"openat","fields":{"kind":2,"pid":200,"tid":200,"dfd":-100,"flags":524288,"mode":0,"comm":"ls","path_len":17,"reserved":0,"path":"/etc/ld.so.cache"}})";
const char* const kJsonL = R"({"time_ns":1000006000,"cpu":0,"lost":5,"source":"collector"})";
const char* const kJsonG =
    R"({"time_ns":1000007000,"cpu":2,"event":"openat","fields":{"kind":2,"pid":400,"tid":401,"dfd":-100,"flags":0,"mode":0,"comm":"cat","path_len":11,"reserved":0,"path":"/etc/hosts"}})";

std::string joined_lines(std::initializer_list<const char*> lines) {
  std::string out;
  for (const char* l : lines) out += std::string(l) + "\n";
  return out;
}

struct CommandRun {
  int status;
  std::string out;
  std::string err;
};

CommandRun dump(std::vector<std::string> args) {
  std::ostringstream out, err;
  const int status = run_dump(args, out, err);
  return CommandRun{status, out.str(), err.str()};
}

CommandRun stats(std::vector<std::string> args) {
  std::ostringstream out, err;
  const int status = run_stats(args, out, err);
  return CommandRun{status, out.str(), err.str()};
}

class DumpStatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.file("trace.data");
    write_recording(path_);
  }
  TempDir dir_;
  std::string path_;
};

// --- dump --------------------------------------------------------------------------------------------------

using Dump = DumpStatsTest;

TEST_F(Dump, PrintsEveryRecordDecodedInTimeOrderWithLosses) {
  const CommandRun r = dump({path_});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out, joined_lines({kLineA, kLineD, kLineE, kLineB, kLineK, kLineF, kLineC, kLineL, kLineG}));
}

TEST_F(Dump, JsonGivesOneValidObjectPerLineWithEveryField) {
  const CommandRun r = dump({"--json", path_});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out, joined_lines({kJsonA, kJsonD, kJsonE, kJsonB, kJsonK, kJsonF, kJsonC, kJsonL, kJsonG}));
  for (const auto& line : lines_of(r.out)) EXPECT_TRUE(JsonChecker::valid(line)) << line;
}

TEST_F(Dump, FlagsMayFollowTheFile) {
  const CommandRun r = dump({path_, "--json"});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(lines_of(r.out).front(), kJsonA);
}

TEST_F(Dump, CpuFilterKeepsRecordsAndLossesOfThoseCpus) {
  EXPECT_EQ(dump({"--cpu", "0", path_}).out, joined_lines({kLineA, kLineK, kLineC, kLineL}));
  EXPECT_EQ(dump({"-C", "1-2", path_}).out, joined_lines({kLineD, kLineB, kLineF, kLineG}));
  EXPECT_EQ(dump({"-C3", path_}).out, joined_lines({kLineE}));
}

TEST_F(Dump, PidFilterMatchesThePidFieldAndKeepsLosses) {
  EXPECT_EQ(dump({"--pid", "300", path_}).out, joined_lines({kLineD, kLineK, kLineF, kLineL}));
  EXPECT_EQ(dump({"-p", "200", "-C", "0", path_}).out, joined_lines({kLineK, kLineC, kLineL}));
}

TEST_F(Dump, EventFilterMatchesTheSchemaName) {
  EXPECT_EQ(dump({"--event", "exec", path_}).out, joined_lines({kLineB, kLineK, kLineF, kLineL}));
  EXPECT_EQ(dump({"--event", "unknown", path_}).out, joined_lines({kLineE, kLineK, kLineL}));
  EXPECT_EQ(dump({"--event", "exec", "--event", "unknown", "-C", "1-3", path_}).out,
            joined_lines({kLineE, kLineB, kLineF}));
}

TEST_F(Dump, FieldFilterComparesStringsAndIntegers) {
  EXPECT_EQ(dump({"--filter", "comm=sh", "-C", "1-3", path_}).out, joined_lines({kLineD, kLineF}));
  EXPECT_EQ(dump({"--filter", "path=/etc/hosts", "-C", "2", path_}).out, joined_lines({kLineG}));
  // An integer as printed (hex flags, octal mode) or in decimal.
  EXPECT_EQ(dump({"--filter", "flags=0x241", "-C", "0", path_}).out, joined_lines({kLineA, kLineK, kLineL}));
  EXPECT_EQ(dump({"--filter", "flags=577", "-C", "0", path_}).out, joined_lines({kLineA, kLineK, kLineL}));
  EXPECT_EQ(dump({"--filter", "mode=0644", "-C", "0-3", "--event", "openat", path_}).out,
            joined_lines({kLineA, kLineK, kLineL}));
  EXPECT_EQ(dump({"--filter", "dfd=-100", "--filter", "comm=ls", path_}).out, joined_lines({kLineK, kLineC, kLineL}));
  EXPECT_EQ(dump({"--filter=uid=1000", "-C2", path_}).out, joined_lines({kLineB}));
}

TEST_F(Dump, FieldFilterOperatorsCompareAndSearch) {
  // != keeps records that have the field and a different value; records without it pass no filter on it.
  EXPECT_EQ(dump({"--filter", "comm!=sh", "-C", "1-3", path_}).out, joined_lines({kLineB, kLineG}));
  EXPECT_EQ(dump({"--filter", "uid!=0", path_}).out, joined_lines({kLineB, kLineK, kLineL}));
  // < > <= >= on integers by value, signed fields signed; in any base.
  EXPECT_EQ(dump({"--filter", "pid<300", "-C", "0-2", path_}).out, joined_lines({kLineA, kLineB, kLineK, kLineC, kLineL}));
  EXPECT_EQ(dump({"--filter", "pid>300", path_}).out, joined_lines({kLineK, kLineL, kLineG}));
  EXPECT_EQ(dump({"--filter", "pid>=300", "--filter", "pid<=0x12c", path_}).out,
            joined_lines({kLineD, kLineK, kLineF, kLineL}));
  EXPECT_EQ(dump({"--filter", "dfd<0", "-C", "0", path_}).out, joined_lines({kLineA, kLineK, kLineC, kLineL}));
  EXPECT_EQ(dump({"--filter", "dfd>-101", "--filter", "dfd<3", "-C", "1-2", path_}).out, joined_lines({kLineG}));
  // ~ and !~: a substring of a string, of an integer's decimal.
  EXPECT_EQ(dump({"--filter", "path~/etc/", path_}).out, joined_lines({kLineK, kLineC, kLineL, kLineG}));
  EXPECT_EQ(dump({"--filter", "path!~/etc/", "-C", "0-2", path_}).out, joined_lines({kLineA, kLineD, kLineK, kLineL}));
  EXPECT_EQ(dump({"--filter", "filename~bin/s", path_}).out, joined_lines({kLineK, kLineF, kLineL}));
  EXPECT_EQ(dump({"--filter", "tid~40", path_}).out, joined_lines({kLineK, kLineL, kLineG}));
  // Strings compare byte by byte.
  EXPECT_EQ(dump({"--filter", "comm<c", "-C", "0-2", path_}).out, joined_lines({kLineA, kLineK, kLineL}));
}

TEST_F(Dump, OrderedFilterWithAValueThatIsNoNumberIsAUsageError) {
  const CommandRun r = dump({"--filter", "pid<abc", path_});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "perfstream dump: --filter 'pid<abc': pid is an integer in event openat, and 'abc' is no number "
                   "(decimal, 0x hex or 0 octal)\n");
}

TEST_F(Dump, EventNameNoSchemaHasWarns) {
  const CommandRun r = dump({"--event", "opnat", path_});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, joined_lines({kLineK, kLineL}));
  EXPECT_EQ(r.err, "perfstream dump: warning: --event opnat: no event of this trace has that name (it has: openat, exec)\n");
}

TEST_F(Dump, FieldFilterOnAFieldTheChosenEventsLackWarns) {
  const CommandRun r = dump({"--event", "exec", "--filter", "path~x", path_});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, joined_lines({kLineK, kLineL}));
  EXPECT_EQ(r.err, "perfstream dump: warning: --filter path: no event chosen with --event has that field\n");
}

TEST_F(Dump, FieldFilterThatMatchesNothingPrintsOnlyLosses) {
  const CommandRun r = dump({"--filter", "pid=abc", path_});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, joined_lines({kLineK, kLineL}));
}

TEST_F(Dump, FieldFilterOnAFieldNoEventHasWarns) {
  const CommandRun r = dump({"--filter", "color=red", "-C", "1", path_});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "perfstream dump: warning: --filter color: no event of this trace has that field\n");
}

TEST_F(Dump, FilterWithoutEqualsIsAUsageError) {
  const CommandRun r = dump({"--filter", "comm", path_});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "perfstream dump: --filter 'comm': expected FIELD OP VALUE, OP one of = != < <= > >= ~ !~\n");
}

TEST_F(Dump, BadCpuListIsAUsageError) {
  const CommandRun r = dump({"--cpu", "3-1", path_});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("perfstream dump: --cpu: CPU list \"3-1\""), std::string::npos) << r.err;
}

TEST_F(Dump, BadPidIsAUsageError) {
  const CommandRun r = dump({"--pid", "12x", path_});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err, "perfstream dump: --pid '12x': not a whole number\n");
}

TEST_F(Dump, HeaderFlagPrintsTheHeaderAsComments) {
  const CommandRun r = dump({"--header", "-C", "9", path_});
  EXPECT_EQ(r.status, 0);
  const auto lines = lines_of(r.out);
  ASSERT_GE(lines.size(), 9u);
  EXPECT_EQ(lines[0], "# recording: rec-dump; files: " + path_ + " (piece 0)");
  EXPECT_EQ(lines[1], "# perfstream: 0.1.0, format 1");
  EXPECT_EQ(lines[2], "# host: buildbox");
  EXPECT_EQ(lines[3], "# kernel: 6.1.0-test");
  EXPECT_EQ(lines[4], "# cpus: recorded 0-3; online 0-7; possible 8");
  EXPECT_EQ(lines[5], "# clock: MONOTONIC; start 0.999000000 (realtime 1700000000.000000000)");
  EXPECT_EQ(lines[6], "# probes: openat, exec");
  EXPECT_EQ(lines[7], "# event openat: struct ps_openat_event, kind 2, 48 fixed bytes");
  EXPECT_EQ(lines[8], "#   kind: unsigned, 4 bytes at 0");
  EXPECT_NE(r.out.find("\n#   path: string, 4096 bytes at 48, variable, length in path_len\n"), std::string::npos);
  EXPECT_NE(r.out.find("\n# event exec: struct ps_exec_event, kind 1, 40 fixed bytes\n"), std::string::npos);
  for (const auto& line : lines) EXPECT_EQ(line.rfind("# ", 0), 0u) << line;  // CPU 9 has no records
}

TEST_F(Dump, HeaderIsNotPrintedWithoutTheFlag) {
  EXPECT_EQ(dump({path_}).out.find('#'), std::string::npos);
}

TEST_F(Dump, JsonHeaderIsOneObjectFirst) {
  const CommandRun r = dump({"--json", "--header", path_});
  EXPECT_EQ(r.status, 0);
  const auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 10u);
  EXPECT_TRUE(JsonChecker::valid(lines[0])) << lines[0];
  EXPECT_EQ(lines[0].rfind(R"({"header":{"recording_id":"rec-dump","files":[)", 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find(R"("host":"buildbox","kernel":"6.1.0-test","possible_cpus":8,"online_cpus":"0-7",)"
                          R"("recorded_cpus":"0-3","clock":"MONOTONIC","start_time_ns":999000000,)"),
            std::string::npos)
      << lines[0];
  EXPECT_NE(lines[0].find(R"("probes":["openat","exec"])"), std::string::npos);
  EXPECT_NE(lines[0].find(R"({"name":"path","type":"string","offset":48,"size":4096,"variable":true,)"
                          R"("length_field":"path_len"})"),
            std::string::npos);
  EXPECT_EQ(lines[1], kJsonA);
}

TEST_F(Dump, FileCutShortPrintsCompleteRecordsAndWarnsWithTheOffset) {
  const auto frames = frames_of(path_);
  ASSERT_EQ(frames.size(), 5u);  // header, 3 batches, trailer
  const std::uint64_t batch2 = frames[3].offset;
  std::filesystem::resize_file(path_, batch2 + 20);
  const CommandRun r = dump({path_});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, joined_lines({kLineA, kLineD, kLineE, kLineB, kLineK, kLineF, kLineC, kLineL}));
  EXPECT_EQ(r.err.rfind("perfstream dump: warning: " + path_ + ": stopped at byte " + std::to_string(batch2) + ": ", 0),
            0u)
      << r.err;
  EXPECT_NE(r.err.find("every complete record before it was read"), std::string::npos);
  EXPECT_EQ(lines_of(r.err).size(), 1u);
}

TEST_F(Dump, CorruptFrameStopsWithAnErrorNamingFileOffsetAndHint) {
  const auto frames = frames_of(path_);
  const std::uint64_t batch1 = frames[2].offset;
  std::string bytes = perfstream::testing::read_file(path_);
  bytes[frames[2].end - 1] ^= 0x01;
  perfstream::testing::write_file(path_, bytes);
  const CommandRun r = dump({path_});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, joined_lines({kLineA, kLineB, kLineK, kLineC}));  // batch 0 only
  EXPECT_EQ(r.err, "perfstream dump: " + path_ + ": corrupt frame at byte " + std::to_string(batch1) +
                       ": zstd frame: Restored data doesn't match checksum; the records before it were read, the "
                       "rest of the file was not (pass --skip-corrupt to skip damaged frames and read on)\n");
}

TEST_F(Dump, SkipCorruptReadsOnAfterTheDamageAndWarns) {
  const auto frames = frames_of(path_);
  std::string bytes = perfstream::testing::read_file(path_);
  bytes[frames[2].end - 1] ^= 0x01;
  perfstream::testing::write_file(path_, bytes);
  const CommandRun r = dump({"--skip-corrupt", path_});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, joined_lines({kLineA, kLineB, kLineK, kLineC, kLineG}));
  EXPECT_EQ(r.err, "perfstream dump: warning: " + path_ + ": skipped a corrupt frame at byte " +
                       std::to_string(frames[2].offset) +
                       ": zstd frame: Restored data doesn't match checksum; read on from byte " +
                       std::to_string(frames[3].offset) + "\n" +
                       "perfstream dump: warning: batch 1 is missing (1 batch)\n");
}

TEST_F(Dump, BatchWhoseColumnsDisagreeIsACorruptFrame) {
  // A frame that checks out and decompresses, holding a batch whose sizes run past its payloads.
  v1::Batch bad;
  bad.set_sequence(9);
  bad.set_record_count(1);
  bad.add_time_deltas(0);
  bad.add_cpus(0);
  bad.add_sizes(100);
  std::string compressed;
  auto c = ZstdCompressor::create(3);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->compress(bad.SerializeAsString(), compressed));
  std::string frame;
  append_frame_header(frame, FrameHeader{FrameType::Batch, kEncodingZstd, static_cast<std::uint32_t>(compressed.size())});
  frame += compressed;
  const auto frames = frames_of(path_);
  std::string bytes = perfstream::testing::read_file(path_);
  bytes.insert(frames[3].offset, frame);  // before batch 2
  perfstream::testing::write_file(path_, bytes);

  const CommandRun r = dump({path_});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, joined_lines({kLineA, kLineD, kLineE, kLineB, kLineK, kLineF, kLineC, kLineL}));
  EXPECT_NE(r.err.find("corrupt frame at byte " + std::to_string(frames[3].offset) +
                       ": batch 9: record sizes run past the payload bytes"),
            std::string::npos)
      << r.err;

  const CommandRun skipped = dump({"--skip-corrupt", path_});
  EXPECT_EQ(skipped.status, 0);
  EXPECT_EQ(skipped.out, joined_lines({kLineA, kLineD, kLineE, kLineB, kLineK, kLineF, kLineC, kLineL, kLineG}));
}

TEST_F(Dump, NotATraceIsAnErrorNamingTheFile) {
  const std::string other = dir_.file("notes.txt");
  perfstream::testing::write_file(other, "just some text, not a trace at all\n");
  const CommandRun r = dump({other});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "perfstream dump: " + other + ": not a perfstream trace (no PERFSTRM magic at the start)\n");
}

TEST_F(Dump, MissingFileIsAnErrorNamingIt) {
  const std::string absent = dir_.file("absent.data");
  const CommandRun r = dump({absent});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "perfstream dump: opening trace file " + absent + ": No such file or directory\n");
}

TEST_F(Dump, UnknownFlagIsAUsageError) {
  const CommandRun r = dump({"--bogus", path_});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "perfstream dump: unknown flag '--bogus' (see perfstream dump --help)\n");
}

TEST_F(Dump, NoFileIsAUsageError) {
  const CommandRun r = dump({"--json"});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err, "perfstream dump: no trace file given (usage: perfstream dump [flags] FILE...)\n");
}

TEST_F(Dump, HelpPrintsUsage) {
  const CommandRun r = dump({"--help"});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out.rfind("usage: perfstream dump [flags] FILE...\n", 0), 0u);
  EXPECT_NE(r.out.find("--skip-corrupt"), std::string::npos);
  EXPECT_EQ(dump({"-h"}).status, 0);
}

TEST_F(Dump, RotatedPiecesMergeInTimeOrderWhateverOrderTheyAreNamed) {
  const std::string rotated = dir_.file("rot.data");
  write_recording(rotated, "rec-rot", 300);  // one batch per piece
  ASSERT_TRUE(std::filesystem::exists(rotated + ".2"));
  const CommandRun r = dump({rotated + ".2", rotated, rotated + ".1"});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out, joined_lines({kLineA, kLineD, kLineE, kLineB, kLineK, kLineF, kLineC, kLineL, kLineG}));
}

// Named alone, a rotated recording's first file brings the pieces after it, and dump says so.
TEST_F(Dump, ARotatedRecordingIsReadOnFromItsFirstPieceAndSaysSo) {
  const std::string rotated = dir_.file("rot.data");
  write_recording(rotated, "rec-rot", 300);
  ASSERT_TRUE(std::filesystem::exists(rotated + ".2"));
  const CommandRun r = dump({rotated});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, joined_lines({kLineA, kLineD, kLineE, kLineB, kLineK, kLineF, kLineC, kLineL, kLineG}));
  EXPECT_EQ(r.err, "perfstream dump: reading on in " + rotated + ".1 (piece 1)\nperfstream dump: reading on in " +
                       rotated + ".2 (piece 2)\n");
  // Named pieces are read and no others.
  const CommandRun named = dump({rotated});
  const CommandRun first = dump({rotated, rotated + ".1"});
  EXPECT_EQ(first.status, 0) << first.err;
  EXPECT_EQ(first.err, "");
  EXPECT_NE(first.out, named.out);
}

TEST_F(Dump, PiecesOfDifferentRecordingsAreRefused) {
  const std::string other = dir_.file("other.data");
  write_recording(other, "rec-other");
  const CommandRun r = dump({path_, other});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "perfstream dump: " + other + " belongs to recording 'rec-other', " + path_ +
                       " to recording 'rec-dump': name the pieces of one recording only\n");
}

TEST_F(Dump, TheSamePieceTwiceIsRefused) {
  const CommandRun r = dump({path_, path_});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "perfstream dump: " + path_ + " and " + path_ +
                       " are both piece 0 of recording 'rec-dump': name each piece once\n");
}

TEST_F(Dump, LongByteFieldsAreCutInTextButWholeInJson) {
  // A custom single schema: one byte array, untagged (kind 0), so every payload is decoded with it.
  v1::TraceHeader h = dump_header("rec-bytes");
  h.clear_events();
  v1::EventSchema* s = h.add_events();
  s->set_name("blob");
  v1::Field* f = s->add_fields();
  f->set_name("data");
  f->set_type(v1::Field::BYTES);
  f->set_offset(0);
  f->set_size(200);
  f->set_variable(true);
  const std::string path = dir_.file("bytes.data");
  TraceWriterOptions options;
  options.path = path;
  auto w = TraceFileWriter::create(options, h);
  ASSERT_TRUE(w);
  std::string payload;
  for (int i = 0; i < 100; ++i) payload.push_back(static_cast<char>(i));
  ASSERT_TRUE((*w)->write_batch(encode({rec(5, 1, payload)}, 0)));
  ASSERT_TRUE((*w)->close(v1::TraceTrailer()));
  std::string hex;
  render::append_hex(hex, payload);

  const CommandRun text = dump({path});
  EXPECT_EQ(text.out, "0.000000005  [001]  blob  data=" + hex.substr(0, 128) + "...\n");
  const CommandRun json = dump({"--json", path});
  EXPECT_EQ(json.out, R"({"time_ns":5,"cpu":1,"event":"blob","fields":{"data":")" + hex + "\"}}\n");
}

TEST_F(Dump, FieldsPastAShortPayloadAreLeftOutInTextAndNullInJson) {
  const std::string path = dir_.file("short.data");
  TraceWriterOptions options;
  options.path = path;
  auto w = TraceFileWriter::create(options, dump_header("rec-short"));
  ASSERT_TRUE(w);
  // An openat record cut after its tid.
  std::string payload = openat_payload(7, 8, 0, 0, 0, "x", "/y").substr(0, 12);
  ASSERT_TRUE((*w)->write_batch(encode({rec(1'000'000'000, 0, payload)}, 0)));
  ASSERT_TRUE((*w)->close(v1::TraceTrailer()));
  EXPECT_EQ(dump({path}).out, "1.000000000  [000]  openat  pid=7 tid=8\n");
  EXPECT_EQ(dump({"--json", path}).out,
            R"({"time_ns":1000000000,"cpu":0,"event":"openat","fields":{"kind":2,"pid":7,"tid":8,"dfd":null,)"
            R"("flags":null,"mode":null,"comm":null,"path_len":null,"reserved":null,"path":null}})"
            "\n");
}

// --- stats -------------------------------------------------------------------------------------------------

using Stats = DumpStatsTest;

TEST_F(Stats, TextShowsTheRecordingPerCpuPerEventAndTotals) {
  const CommandRun r = stats({path_});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.err, "");
  const std::string& o = r.out;
  EXPECT_NE(o.find("recording  rec-dump\n"), std::string::npos) << o;
  EXPECT_NE(o.find("files      " + path_ + "\n"), std::string::npos) << o;
  EXPECT_NE(o.find("host       buildbox\n"), std::string::npos) << o;
  EXPECT_NE(o.find("kernel     6.1.0-test\n"), std::string::npos) << o;
  EXPECT_NE(o.find("probes     openat, exec\n"), std::string::npos) << o;
  EXPECT_NE(o.find("time span  1.000000500 to 1.000007000 (0.000006500 s)\n"), std::string::npos) << o;
  EXPECT_NE(o.find("ended      cleanly\n"), std::string::npos) << o;
  EXPECT_NE(o.find("CPU    records  lost (kernel)  unwritable (BPF)  lost (collector)  payload bytes\n"
                   "0            2             17                 0                 5            136\n"
                   "1            2              0                42                 0            112\n"
                   "2            2              0                 0                 0            120\n"
                   "3            1              0                 0                 0              8\n"
                   "total        7             17                42                 5            376\n"
                   "CPU 1: 42 records could not be written by the BPF programs (no live ring on that CPU: it was "
                   "offline or just came back; EOPNOTSUPP)\n"),
            std::string::npos)
      << o;
  EXPECT_NE(o.find("event    records  payload bytes\n"
                   "openat         4            264\n"
                   "exec           2            104\n"
                   "unknown        1              8\n"
                   "total          7            376\n"),
            std::string::npos)
      << o;
  EXPECT_NE(o.find("rate   1076923.1 records/s, 57.846 MB/s of payload\n"), std::string::npos) << o;
  EXPECT_NE(o.find("bytes  376 payload, "), std::string::npos) << o;
  EXPECT_NE(o.find("collector counters (trailer):\n"
                   "CPU  samples  sample bytes  lost  unwritable  corrupt  fill high water  ring size  wakeups  passes\n"
                   "0          7           100    17           0        0             8192      65536        3       4\n"
                   "1          2           101     0          42        0            16384      65536        3       4\n"
                   "2          2           102     0           0        0            24576      65536        3       4\n"
                   "3          1           103     0           0        0            32768      65536        3       4\n"),
            std::string::npos)
      << o;
  EXPECT_EQ(o.find("damage"), std::string::npos);
}

TEST_F(Stats, BytesCompareBatchMessagesWithFramesOnDisk) {
  // What the file holds, measured independently.
  auto reader = TraceFileReader::open(path_);
  ASSERT_TRUE(reader);
  std::uint64_t messages = 0, on_disk = 0;
  for (;;) {
    const std::uint64_t at = (*reader)->offset();
    ReadOutcome o = (*reader)->next();
    if (o.status != ReadStatus::Frame) break;
    if (o.type != FrameType::Batch) continue;
    messages += o.message.size();
    on_disk += (*reader)->offset() - at;
  }
  const CommandRun r = stats({"--json", path_});
  EXPECT_EQ(r.status, 0);
  char ratio[32];
  std::snprintf(ratio, sizeof(ratio), "%.3f", static_cast<double>(messages) / static_cast<double>(on_disk));
  EXPECT_NE(r.out.find(R"("bytes":{"payload":376,"batch_messages":)" + std::to_string(messages) +
                       R"(,"on_disk":)" + std::to_string(on_disk) + R"(,"files":)" +
                       std::to_string(std::filesystem::file_size(path_)) + R"(,"ratio":)" + ratio + "}"),
            std::string::npos)
      << r.out;
}

TEST_F(Stats, JsonIsOneValidObjectWithTheSameNumbers) {
  const CommandRun r = stats({"--json", path_});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.err, "");
  ASSERT_EQ(lines_of(r.out).size(), 1u);
  EXPECT_TRUE(JsonChecker::valid(r.out)) << r.out;
  const std::string& o = r.out;
  EXPECT_NE(o.find(R"("recording_id":"rec-dump")"), std::string::npos);
  EXPECT_NE(o.find(R"("host":"buildbox","kernel":"6.1.0-test","probes":["openat","exec"],"clock":"MONOTONIC")"),
            std::string::npos)
      << o;
  EXPECT_NE(o.find(R"("time":{"first_ns":1000000500,"last_ns":1000007000,"duration_s":0.000006500})"),
            std::string::npos)
      << o;
  EXPECT_NE(o.find(R"("cpus":[{"cpu":0,"records":2,"lost_kernel":17,"unwritable":0,"lost_collector":5,)"
                   R"("payload_bytes":136},)"
                   R"({"cpu":1,"records":2,"lost_kernel":0,"unwritable":42,"lost_collector":0,"payload_bytes":112},)"
                   R"({"cpu":2,"records":2,"lost_kernel":0,"unwritable":0,"lost_collector":0,"payload_bytes":120},)"
                   R"({"cpu":3,"records":1,"lost_kernel":0,"unwritable":0,"lost_collector":0,"payload_bytes":8}])"),
            std::string::npos)
      << o;
  EXPECT_NE(o.find(R"("events":[{"event":"openat","records":4,"payload_bytes":264},)"
                   R"({"event":"exec","records":2,"payload_bytes":104},)"
                   R"({"event":"unknown","records":1,"payload_bytes":8}])"),
            std::string::npos)
      << o;
  EXPECT_NE(o.find(R"("totals":{"records":7,"batches":3,"lost_kernel":17,"unwritable":42,"lost_collector":5,)"
                   R"("payload_bytes":376})"),
            std::string::npos)
      << o;
  EXPECT_NE(o.find(R"("rates":{"records_per_s":1076923.077,"payload_mb_per_s":57.846154})"), std::string::npos) << o;
  EXPECT_NE(o.find(R"("ended_cleanly":true)"), std::string::npos);
  EXPECT_NE(o.find(R"("collector":[{"cpu":0,"samples":7,"sample_bytes":100,"lost":17,"unwritable":0,)"
                   R"("unwritable_errno":0,"corrupt":0,"fill_high_water":8192,"ring_size":65536,"wakeups":3,)"
                   R"("passes":4},{"cpu":1,"samples":2,"sample_bytes":101,"lost":0,"unwritable":42,)"
                   R"("unwritable_errno":95,)"),
            std::string::npos)
      << o;
  EXPECT_NE(o.find(R"("trailer":{"batches":3,"records":7,"end_time_ns":1000008000,"rotated":false,"expired_after_ns":0})"),
            std::string::npos)
      << o;
  EXPECT_NE(o.find(R"("damage":[])"), std::string::npos);
}

// Cut exactly between two frames, a file has no damage to show; the missing trailer is said all the same.
TEST_F(Dump, FileCutAtAFrameBoundarySaysItHasNoTrailer) {
  const auto frames = frames_of(path_);
  std::filesystem::resize_file(path_, frames[3].offset);
  for (const auto& r : {dump({path_}), stats({path_})}) {
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find(path_ + " has no trailer: the recording did not end cleanly"), std::string::npos) << r.err;
  }
  EXPECT_EQ(dump({path_}).out, joined_lines({kLineA, kLineD, kLineE, kLineB, kLineK, kLineF, kLineC, kLineL}));
}

TEST_F(Stats, CutShortFileSaysItDidNotEndCleanlyAndWarns) {
  const auto frames = frames_of(path_);
  std::filesystem::resize_file(path_, frames[3].offset + 20);
  const CommandRun r = stats({path_});
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("ended      no trailer: the recording did not end cleanly"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("total        6"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("damage:\n  " + path_ + " at byte " + std::to_string(frames[3].offset) + ": cut short: "),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.err.rfind("perfstream stats: warning: " + path_ + ": stopped at byte " +
                            std::to_string(frames[3].offset),
                        0),
            0u)
      << r.err;

  const CommandRun json = stats({"--json", path_});
  EXPECT_EQ(json.status, 0);
  EXPECT_TRUE(JsonChecker::valid(json.out)) << json.out;
  EXPECT_NE(json.out.find(R"("ended_cleanly":false)"), std::string::npos);
  EXPECT_NE(json.out.find(R"("damage":[{"path":)" + render::json_string(path_) + R"(,"offset":)" +
                          std::to_string(frames[3].offset) + R"(,"kind":"truncated")"),
            std::string::npos)
      << json.out;
}

// A recording a sink ended at --expire: its trailer (written as the sink writes it, on the file cut back to
// its last batch) says how long the collector had been gone; stats says "expired", dump notes it.
TEST_F(Stats, ARecordingTheSinkExpiredSaysSo) {
  const auto frames = frames_of(path_);
  v1::TraceTrailer original;
  {
    auto reader = TraceFileReader::open(path_);
    ASSERT_TRUE(reader);
    for (ReadOutcome o = (*reader)->next(); o.status == ReadStatus::Frame; o = (*reader)->next()) {
      if (o.type == FrameType::Trailer) {
        ASSERT_TRUE(original.ParseFromString(o.message));
      }
    }
  }
  TraceWriterOptions wo;
  wo.path = path_;
  wo.resume_piece = 0;
  wo.resume_offset = frames.back().offset;
  wo.resume_batches = original.batches();
  wo.resume_records = original.records();
  auto writer = TraceFileWriter::create(wo, v1::TraceHeader());
  ASSERT_TRUE(writer) << writer.error().message();
  v1::TraceTrailer expired;
  expired.set_expired_after_ns(30'000'000'123);
  ASSERT_TRUE((*writer)->close(expired));

  const CommandRun r = stats({path_});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("ended      expired: the sink ended it after its collector had been gone 30.000000123 s "
                       "(sink --expire); the collector never sent its own trailer"),
            std::string::npos)
      << r.out;
  const CommandRun json = stats({"--json", path_});
  EXPECT_TRUE(JsonChecker::valid(json.out)) << json.out;
  EXPECT_NE(json.out.find(R"("rotated":false,"expired_after_ns":30000000123})"), std::string::npos) << json.out;
  const CommandRun d = dump({path_});
  EXPECT_NE(d.err.find(path_ + ": the sink ended this recording, its collector gone for 30.000000123 s (sink "
                               "--expire): the collector never sent its own trailer"),
            std::string::npos)
      << d.err;
}

TEST_F(Stats, CorruptFrameIsAnErrorUnlessSkipped) {
  const auto frames = frames_of(path_);
  std::string bytes = perfstream::testing::read_file(path_);
  bytes[frames[2].end - 1] ^= 0x01;
  perfstream::testing::write_file(path_, bytes);
  const CommandRun r = stats({path_});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("corrupt frame at byte " + std::to_string(frames[2].offset)), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--skip-corrupt"), std::string::npos);
  EXPECT_NE(r.out.find("total        3"), std::string::npos) << r.out;

  const CommandRun skipped = stats({"--skip-corrupt", path_});
  EXPECT_EQ(skipped.status, 0);
  EXPECT_NE(skipped.out.find("total        4"), std::string::npos) << skipped.out;
  EXPECT_NE(skipped.out.find("(read on from byte " + std::to_string(frames[3].offset) + ")"), std::string::npos);
}

TEST_F(Stats, RotatedRecordingNamedInPartSaysItContinues) {
  const std::string rotated = dir_.file("rot.data");
  write_recording(rotated, "rec-rot", 300);
  const CommandRun part = stats({rotated, rotated + ".1"});
  EXPECT_EQ(part.status, 0);
  EXPECT_NE(part.out.find("ended      continues in piece 2, which was not read\n"), std::string::npos) << part.out;
  const CommandRun whole = stats({rotated, rotated + ".1", rotated + ".2"});
  const CommandRun found = stats({rotated});
  EXPECT_EQ(found.out, whole.out) << "the first piece brings the others";
  EXPECT_NE(whole.out.find("ended      cleanly\n"), std::string::npos) << whole.out;
  EXPECT_NE(whole.out.find("total        7"), std::string::npos) << whole.out;
}

TEST_F(Stats, RecordingWithoutRecordsHasNoTimeSpanAndNoRates) {
  const std::string path = dir_.file("empty.data");
  TraceWriterOptions options;
  options.path = path;
  auto w = TraceFileWriter::create(options, dump_header("rec-empty"));
  ASSERT_TRUE(w);
  ASSERT_TRUE((*w)->close(v1::TraceTrailer()));
  const CommandRun text = stats({path});
  EXPECT_EQ(text.status, 0);
  EXPECT_NE(text.out.find("time span  no records\n"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("rate   n/a (the records span no time)\n"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("bytes  0 payload, 0 in batch messages (0 batches, raw) -> 0 on disk"), std::string::npos)
      << text.out;
  const CommandRun json = stats({"--json", path});
  EXPECT_TRUE(JsonChecker::valid(json.out)) << json.out;
  EXPECT_NE(json.out.find(R"("time":null,"cpus":[],"events":[{"event":"openat","records":0,"payload_bytes":0},)"),
            std::string::npos)
      << json.out;
  EXPECT_NE(json.out.find(R"("rates":{"records_per_s":null,"payload_mb_per_s":null})"), std::string::npos);
  EXPECT_NE(json.out.find(R"("ratio":0.000)"), std::string::npos);
  EXPECT_EQ(dump({path}).out, "");
}

TEST_F(Stats, UsageErrors) {
  const CommandRun unknown = stats({"--cpu", "1", path_});
  EXPECT_EQ(unknown.status, 2);
  EXPECT_EQ(unknown.err, "perfstream stats: unknown flag '--cpu' (see perfstream stats --help)\n");
  EXPECT_EQ(stats({}).status, 2);
  const CommandRun not_trace = stats({"/dev/null"});
  EXPECT_EQ(not_trace.status, 1);
  EXPECT_EQ(not_trace.err, "perfstream stats: /dev/null: not a perfstream trace (shorter than the 16-byte file header)\n");
}

// --by counts records and payload bytes per value, most records first; ties by bytes, then by value. The
// unknown record has no comm: it counts under "-" (null in JSON). The total is the summary's.
TEST_F(Stats, ByCountsRecordsAndBytesPerValue) {
  const CommandRun r = stats({"--by", "comm", path_});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out,
            "comm   records       %  payload bytes\n"
            "ls           2   28.57            128\n"
            "sh           2   28.57            112\n"
            "bash         1   14.29             64\n"
            "cat          1   14.29             64\n"
            "-            1   14.29              8\n"
            "total        7  100.00            376\n");
}

TEST_F(Stats, ByTwoKeysWithTopSumsTheRestAsOther) {
  const CommandRun r = stats({"--by", "event,cpu", "--top", "2", path_});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out,
            "event             cpu  records       %  payload bytes\n"
            "openat            0          2   28.57            136\n"
            "openat            1          1   14.29             64\n"
            "other (4 values)             4   57.14            176\n"
            "total                        7  100.00            376\n");
  const CommandRun json = stats({"--json", "--by", "event,cpu", "--top", "2", path_});
  EXPECT_EQ(json.status, 0);
  EXPECT_TRUE(JsonChecker::valid(json.out)) << json.out;
  EXPECT_EQ(json.out,
            R"({"by":["event","cpu"],"rows":[{"event":"openat","cpu":0,"records":2,"payload_bytes":136},)"
            R"({"event":"openat","cpu":1,"records":1,"payload_bytes":64}],)"
            R"("other":{"values":4,"records":4,"payload_bytes":176},"total":{"records":7,"payload_bytes":376}})"
            "\n");
  const CommandRun all = stats({"--json", "--by", "comm", path_});
  EXPECT_NE(all.out.find(R"({"comm":null,"records":1,"payload_bytes":8}],"other":null,)"), std::string::npos)
      << all.out;
}

// Values show as dump shows them: a string with a quote or an odd byte quoted and escaped, flags without a
// hint in hex; a field only some events have leaves the others under "-".
TEST_F(Stats, ByShowsValuesAsDumpDoes) {
  const CommandRun r = stats({"--by", "path", path_});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out,
            "path                records       %  payload bytes\n"
            "-                         3   42.86            112\n"
            "/etc/ld.so.cache          1   14.29             72\n"
            "/etc/hosts                1   14.29             64\n"
            "\"/tmp/a\\\"b\\nc\\xff\"        1   14.29             64\n"
            "/tmp/out.txt              1   14.29             64\n"
            "total                     7  100.00            376\n");
  const CommandRun flags = stats({"--by", "flags", path_});
  EXPECT_EQ(flags.out,
            "flags    records       %  payload bytes\n"
            "-              3   42.86            112\n"
            "0x0            2   28.57            128\n"
            "0x80000        1   14.29             72\n"
            "0x241          1   14.29             64\n"
            "total          7  100.00            376\n");
}

TEST_F(Stats, ByAndTopUsageErrors) {
  const CommandRun unknown = stats({"--by", "comm,nope", path_});
  EXPECT_EQ(unknown.status, 2);
  EXPECT_EQ(unknown.err,
            "perfstream stats: --by nope: no event of this recording has that field (keys: event, cpu, kind, pid, "
            "tid, dfd, flags, mode, comm, path_len, reserved, path, ppid, uid, filename_len, filename)\n");
  EXPECT_EQ(stats({"--by", "comm,", path_}).err,
            "perfstream stats: --by 'comm,': an empty key (expected KEY[,KEY...])\n");
  EXPECT_EQ(stats({"--top", "3", path_}).err, "perfstream stats: --top needs --by\n");
  const CommandRun zero = stats({"--by", "comm", "--top", "0", path_});
  EXPECT_EQ(zero.status, 2);
  EXPECT_EQ(zero.err, "perfstream stats: --top '0': expected a count of at least 1\n");
}

// --- The reader library ------------------------------------------------------------------------------------

using RecordingLibrary = DumpStatsTest;

TEST_F(RecordingLibrary, KeepsBatchOrderAndMergesTheTimeline) {
  auto reader = recording::RecordingReader::open({path_}, recording::RecordingOptions{});
  ASSERT_TRUE(reader) << reader.error().message();
  std::vector<recording::ReadBatch> batches;
  {
    auto again = recording::RecordingReader::open({path_}, recording::RecordingOptions{});
    ASSERT_TRUE(again);
    recording::ReadBatch rb;
    while ((*again)->next(rb)) batches.push_back(rb);
  }
  ASSERT_EQ(batches.size(), 3u);
  std::size_t records = 0, lost = 0;
  for (const auto& b : batches) {
    records += b.batch.size();
    lost += b.batch.lost.size();
  }
  EXPECT_EQ(records, 7u);
  EXPECT_EQ(lost, 2u);
  EXPECT_EQ(batches[1].batch.sequence, 1u);
  EXPECT_EQ(batches[1].batch.times[0], 1'000'001'000u);

  recording::TimeOrderedReader timeline(**reader, recording::MergeOptions{});
  std::vector<std::uint64_t> times;
  recording::TimeOrderedReader::Entry e;
  while (timeline.next(e)) times.push_back(e.time_ns);
  EXPECT_TRUE(std::is_sorted(times.begin(), times.end()));
  EXPECT_EQ(times.size(), 9u);
  EXPECT_EQ(timeline.late(), 0u);
  const auto& piece = (*reader)->pieces()[0];
  EXPECT_EQ((*reader)->pieces().size(), 1u);
  EXPECT_EQ(piece.batches, 3u);
  EXPECT_EQ(piece.records, 7u);
  EXPECT_EQ(piece.payload_bytes, 376u);
  EXPECT_EQ(piece.batch_frame_bytes, piece.compressed_payload_bytes + 3 * kFrameHeaderSize);
  EXPECT_TRUE((*reader)->ended_cleanly()) << ((*reader)->problems().empty() ? "" : (*reader)->problems().front());
  ASSERT_NE((*reader)->last_trailer(), nullptr);
  EXPECT_EQ((*reader)->last_trailer()->cpus_size(), 4);
}

TEST_F(RecordingLibrary, LossWithoutATimeTakesTheTimeOfTheRecordItPreceded) {
  const std::string path = dir_.file("notime.data");
  TraceWriterOptions options;
  options.path = path;
  auto w = TraceFileWriter::create(options, dump_header("rec-notime"));
  const std::string kind7("\x07\x00\x00\x00", 4);
  ASSERT_TRUE(w);
  ASSERT_TRUE((*w)->write_batch(encode({rec(500, 0, kind7), lost(0, 0, 4, 0), rec(900, 0, kind7)}, 0)));
  ASSERT_TRUE((*w)->close(v1::TraceTrailer()));
  const CommandRun r = dump({path});
  EXPECT_EQ(r.out,
            "0.000000500  [000]  unknown  raw=07000000\n"
            "0.000000900  [000]  LOST 4 samples (kernel ring full)\n"
            "0.000000900  [000]  unknown  raw=07000000\n");
}

// --- Rendering ---------------------------------------------------------------------------------------------

TEST(Render, JsonStringOfEveryByteIsValidJson) {
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  const std::string json = render::json_string(all);
  EXPECT_TRUE(JsonChecker::valid(json)) << json;
  EXPECT_EQ(json.substr(0, 13), R"("\u0000\u0001)");
  EXPECT_NE(json.find(R"(\u001f !\"#)"), std::string::npos);
  EXPECT_NE(json.find(R"([\\]^_)"), std::string::npos);
  EXPECT_NE(json.find(R"(}~\u007f\u0080)"), std::string::npos);
  EXPECT_EQ(json.substr(json.size() - 7), R"(\u00ff")");
}

TEST(Render, JsonKeepsValidUtf8AndEscapesBrokenSequences) {
  EXPECT_EQ(render::json_string("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"), "\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\"");
  EXPECT_EQ(render::json_string("\xc3"), R"("\u00c3")");                  // cut short
  EXPECT_EQ(render::json_string("\xc0\xaf"), R"("\u00c0\u00af")");        // overlong
  EXPECT_EQ(render::json_string("\xed\xa0\x80"), R"("\u00ed\u00a0\u0080")");  // a surrogate
  EXPECT_EQ(render::json_string("\xf4\x90\x80\x80"), R"("\u00f4\u0090\u0080\u0080")");  // past U+10FFFF
  EXPECT_EQ(render::json_string("a\tb\nc\"d\\"), R"("a\u0009b\u000ac\"d\\")");
}

TEST(Render, TextQuotingEscapesLikeC) {
  std::string out;
  render::append_text_quoted(out, std::string("a\"b\\c\nd\te\rf\x01g\x7f\xff h\xc3\xa9", 19));
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\nd\\te\\rf\\x01g\\x7f\\xff h\xc3\xa9\"");
}

TEST(Render, TimesHaveNineDigitsOfNanoseconds) {
  EXPECT_EQ(render::format_time(0), "0.000000000");
  EXPECT_EQ(render::format_time(1'000'000'500), "1.000000500");
  EXPECT_EQ(render::format_time(18446744073709551615ull), "18446744073.709551615");
}

TEST(Render, TableAlignsColumns) {
  render::Table t({"name", "n"});
  t.add({"a", "100"});
  t.add({"longer", "2"});
  EXPECT_EQ(t.render(), "name      n\na       100\nlonger    2\n");
}

}  // namespace
}  // namespace perfstream::cli
