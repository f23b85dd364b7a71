// The exporters without a kernel. Perfetto: the encoder's pieces (wire fields, compact sched deltas and
// interning, bundle limits, full switches after a loss), and whole synthetic recordings of the built-in
// probes' structs written through the real trace writer, exported and parsed back with the protobuf library
// and Perfetto's schema (perfetto_trace_subset.proto); a corrupt recording is an error naming the offset,
// never a crash. CSV: RFC 4180 quoting, and every built-in probe's CSV read by Python's csv module back to
// `dump --json --raw-fields`'s values (the values as recorded); jsonl is dump --json.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <linux/types.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "bpf/events.h"
#include "collector/cli/commands.hpp"
#include "collector/decode/payload_schema.hpp"
#include "collector/export/csv_export.hpp"
#include "collector/export/perfetto_export.hpp"
#include "collector/export/perfetto_trace.hpp"
#include "collector/format/batch_encoder.hpp"
#include "collector/format/trace_writer.hpp"
#include "collector/format/zstd_codec.hpp"
#include "testing/perfetto_model.hpp"
#include "testing/temp_dir.hpp"

namespace perfstream::exporter {
namespace {

using perfstream::testing::parse_perfetto;
using perfstream::testing::PfModel;
using perfstream::testing::TempDir;

TEST(ProtoMessage, WritesZeroScalarsAndPackedVarints) {
  ProtoMessage m;
  m.varint(1, 0).int64(2, -1).string(3, "ab").packed(4, {1, 300});
  // 08 00 | 10 ff..01 (10 bytes) | 1a 02 'a' 'b' | 22 03 01 ac 02
  const std::string expected = std::string("\x08\x00\x10", 3) + std::string(9, '\xff') + "\x01" +
                               "\x1a\x02" "ab" "\x22\x03\x01\xac\x02";
  EXPECT_EQ(m.bytes(), expected);
}

SchedSwitch sw(std::uint64_t ts, int prev, int next, const std::string& next_comm) {
  SchedSwitch s;
  s.ts = ts;
  s.prev_pid = prev;
  s.prev_comm = "p" + std::to_string(prev);
  s.prev_prio = 120;
  s.prev_state = 1;
  s.next_pid = next;
  s.next_comm = next_comm;
  s.next_prio = 100 + next;
  return s;
}

TEST(PerfettoTraceWriter, CompactSchedIsDeltaEncodedInternedAndSplitIntoBundles) {
  std::ostringstream out;
  PerfettoTraceWriter w(out, 3);
  for (int i = 0; i < 7; ++i) w.sched_switch(2, sw(1000 + 10 * i, i, i + 1, i % 2 ? "odd" : "even"));
  ASSERT_TRUE(w.finish());
  const PfModel m = parse_perfetto(out.str());
  ASSERT_EQ(m.error, "");
  const auto& s = m.switches.at(2);
  ASSERT_EQ(s.size(), 7u);
  EXPECT_TRUE(s[0].full);  // the first of a CPU: in full, so that Perfetto knows who ran before
  EXPECT_EQ(s[0].prev_pid, 0);
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(s[i].ts, 1000u + 10 * i);
    EXPECT_EQ(s[i].next_pid, i + 1);
    EXPECT_EQ(s[i].next_prio, 101 + i);
    EXPECT_EQ(s[i].prev_state, 1);
    EXPECT_EQ(s[i].next_comm, i % 2 ? "odd" : "even");
    EXPECT_EQ(s[i].full, i == 0);
  }
  // 1 full + 6 compact, at most 3 per bundle: 3 bundles.
  EXPECT_EQ(m.packets, 3u);
}

TEST(PerfettoTraceWriter, LossMarksTheNextBundleAndWritesTheNextSwitchInFull) {
  std::ostringstream out;
  PerfettoTraceWriter w(out, 100);
  w.sched_switch(0, sw(10, 1, 2, "a"));
  w.sched_switch(0, sw(20, 2, 3, "b"));
  w.lost_events(0);
  w.sched_switch(0, sw(40, 7, 8, "c"));
  w.sched_switch(0, sw(50, 8, 9, "d"));
  w.sched_switch(1, sw(45, 5, 6, "e"));
  ASSERT_TRUE(w.finish());
  const PfModel m = parse_perfetto(out.str());
  ASSERT_EQ(m.error, "");
  ASSERT_EQ(m.switches.at(0).size(), 4u);
  EXPECT_FALSE(m.switches.at(0)[1].full);
  EXPECT_TRUE(m.switches.at(0)[2].full);
  EXPECT_EQ(m.switches.at(0)[2].prev_pid, 7);
  EXPECT_EQ(m.lost_bundles.at(0), 1);
  EXPECT_EQ(m.lost_bundles.count(1), 0u);
  EXPECT_EQ(m.switches.at(1).size(), 1u);
}

TEST(PerfettoTraceWriter, SwitchEarlierThanTheLastStartsANewBundle) {
  std::ostringstream out;
  PerfettoTraceWriter w(out, 100);
  w.sched_switch(0, sw(100, 1, 2, "a"));
  w.sched_switch(0, sw(200, 2, 3, "a"));
  w.sched_switch(0, sw(150, 3, 4, "a"));  // out of order: deltas are unsigned
  ASSERT_TRUE(w.finish());
  const PfModel m = parse_perfetto(out.str());
  ASSERT_EQ(m.switches.at(0).size(), 3u);
  EXPECT_EQ(m.switches.at(0)[2].ts, 150u);
}

TEST(PerfettoTraceWriter, ClockSnapshotPairsTheRecordingClockWithRealtime) {
  std::ostringstream out;
  PerfettoTraceWriter w(out);
  w.clock_snapshot(5'000, PerfettoClock::kMonotonic, 1'700'000'000'000'000'000ull);
  ASSERT_TRUE(w.finish());
  const PfModel m = parse_perfetto(out.str());
  ASSERT_TRUE(m.clock.has_value());
  std::map<std::uint32_t, std::uint64_t> clocks;
  for (const auto& c : m.clock->clocks()) clocks[c.clock_id()] = c.timestamp();
  EXPECT_EQ(clocks.at(6), 5'000u);  // BOOTTIME: what ftrace times are read as
  EXPECT_EQ(clocks.at(3), 5'000u);  // MONOTONIC: the recording's clock
  EXPECT_EQ(clocks.at(1), 1'700'000'000'000'000'000ull);
  EXPECT_EQ(m.clock->primary_trace_clock(), 6u);
}

TEST(PerfettoTraceWriter, InstantsGoOnThreadTracksDescribedOnceAndTheSequenceStartsCleared) {
  std::ostringstream out;
  PerfettoTraceWriter w(out);
  std::vector<Annotation> a = {Annotation{Annotation::Kind::kInt, "ret", -2, 0, {}, {}},
                               Annotation{Annotation::Kind::kString, "path", 0, 0, "/etc/passwd", {}}};
  w.thread_instant(100, 10, 11, "cat", "openat", a);
  w.thread_instant(200, 10, 11, "cat", "openat", a);
  w.named_instant(300, "CPU 1: lost records", "lost 5 records", {});
  ASSERT_TRUE(w.finish());
  const PfModel m = parse_perfetto(out.str());
  ASSERT_EQ(m.error, "");
  EXPECT_TRUE(m.first_track_packet_clears_state);
  ASSERT_EQ(m.instants.size(), 3u);
  EXPECT_EQ(m.tracks.size(), 2u);  // one thread track, one named
  EXPECT_EQ(m.packets, 5u);
  EXPECT_EQ(m.thread_of(m.instants[0].track), std::make_pair(std::int64_t{10}, std::int64_t{11}));
  EXPECT_EQ(m.tracks.at(m.instants[0].track).thread().thread_name(), "cat");
  EXPECT_EQ(m.instants[1].args.at("ret"), "-2");
  EXPECT_EQ(m.instants[1].args.at("path"), "/etc/passwd");
  EXPECT_EQ(m.instants[1].sequence_flags, 2u);  // SEQ_NEEDS_INCREMENTAL_STATE
  EXPECT_EQ(m.track_name(m.instants[2].track), "CPU 1: lost records");
}

// --- whole recordings ---------------------------------------------------------------------------------

template <typename T>
std::string bytes_of(const T& v, std::size_t n = sizeof(T)) {
  return std::string(reinterpret_cast<const char*>(&v), n);
}

struct Item {
  std::uint64_t time;
  std::uint32_t cpu;
  std::string payload;
  std::uint64_t lost = 0;
};

v1::TraceHeader probe_header() {
  v1::TraceHeader h;
  h.set_format_version(1);
  h.set_recording_id("synthetic");
  h.set_clock(v1::MONOTONIC);
  h.set_start_time_ns(1'000);
  h.set_start_realtime_ns(1'700'000'000'000'000'000ull);
  h.set_batch_watermarks(false);
  for (const char* name : {"sched_switch", "exec", "fork", "exit", "openat", "tcp"}) {
    auto schema = builtin_probe_schema(name);
    EXPECT_TRUE(schema) << schema.error().message();
    if (schema) *h.add_events() = *schema;
  }
  return h;
}

void write_recording(const std::string& path, const std::vector<std::vector<Item>>& batches) {
  TraceWriterOptions o;
  o.path = path;
  auto w = TraceFileWriter::create(o, probe_header());
  ASSERT_TRUE(w) << w.error().message();
  std::uint64_t seq = 0;
  for (const auto& items : batches) {
    BatchEncoder enc;
    for (const auto& r : items) {
      if (r.lost != 0) {
        enc.add_lost(r.cpu, r.lost, r.time, 0);
      } else {
        enc.add_record(r.time, r.cpu, std::as_bytes(std::span(r.payload.data(), r.payload.size())));
      }
    }
    std::string message;
    enc.finish_unstamped(message);
    append_batch_stamp(message, seq, 0);
    EncodedBatch out;
    out.sequence = seq++;
    out.records = enc.record_count();
    auto c = ZstdCompressor::create(1);
    ASSERT_TRUE(c->compress(message, out.compressed));
    ASSERT_TRUE((*w)->write_batch(out));
  }
  ASSERT_TRUE((*w)->close(v1::TraceTrailer()));
}

std::string switch_payload(int prev, int next, const char* next_comm) {
  ps_sched_switch_event e{};
  e.kind = PS_EVENT_SCHED_SWITCH;
  e.prev_pid = prev;
  e.next_pid = next;
  e.prev_prio = 120;
  e.next_prio = 120;
  e.prev_state = 1;
  std::snprintf(e.prev_comm, sizeof e.prev_comm, "t%d", prev);
  std::snprintf(e.next_comm, sizeof e.next_comm, "%s", next_comm);
  return bytes_of(e);
}

std::string exec_payload(int pid, int ppid, const char* comm, const std::vector<std::string>& file_and_argv) {
  ps_exec_event e{};
  e.kind = PS_EVENT_EXEC;
  e.pid = pid;
  e.tid = pid;
  e.ppid = ppid;
  std::snprintf(e.comm, sizeof e.comm, "%s", comm);
  std::string all;
  for (const auto& s : file_and_argv) all += s + '\0';
  std::memcpy(e.filename, all.data(), all.size());
  e.filename_len = static_cast<__u32>(all.size());
  e.args_count = static_cast<__u32>(file_and_argv.size() - 1);
  return bytes_of(e, PS_EXEC_HEADER_SIZE + all.size());
}

std::string fork_payload(int parent, int child_pid, int child_tid, const char* comm) {
  ps_fork_event e{};
  e.kind = PS_EVENT_FORK;
  e.parent_pid = parent;
  e.parent_tid = parent;
  e.child_pid = child_pid;
  e.child_tid = child_tid;
  std::snprintf(e.comm, sizeof e.comm, "%s", comm);
  return bytes_of(e);
}

std::string exit_payload(int pid, int tid, const char* comm) {
  ps_exit_event e{};
  e.kind = PS_EVENT_EXIT;
  e.pid = pid;
  e.tid = tid;
  e.process_exit = pid == tid;
  std::snprintf(e.comm, sizeof e.comm, "%s", comm);
  return bytes_of(e);
}

std::string openat_payload(int pid, const char* comm, const char* path, int ret) {
  ps_openat_event e{};
  e.kind = PS_EVENT_OPENAT;
  e.pid = pid;
  e.tid = pid;
  e.ret = ret;
  std::snprintf(e.comm, sizeof e.comm, "%s", comm);
  const std::size_t n = std::strlen(path) + 1;
  std::memcpy(e.path, path, n);
  e.path_len = static_cast<__u32>(n);
  return bytes_of(e, PS_OPENAT_HEADER_SIZE + n);
}

std::string tcp_payload(int pid, const char* comm) {
  ps_tcp_event e{};
  e.kind = PS_EVENT_TCP;
  e.pid = pid;
  e.tid = pid;
  e.what = PS_TCP_CONNECT;
  e.family = 2;
  e.dport = 80;
  e.daddr[0] = 127;
  e.daddr[3] = 1;
  std::snprintf(e.comm, sizeof e.comm, "%s", comm);
  return bytes_of(e);
}

TEST(PerfettoExporter, SyntheticRecordingOfEveryBuiltInProbe) {
  TempDir dir;
  const std::string path = dir.file("rec.data");
  // Two batches whose times interleave across CPUs (no watermarks: the merge's window puts them in order).
  write_recording(path, {
      {
          {2'000, 0, switch_payload(0, 100, "sh")},
          {2'100, 0, fork_payload(100, 200, 200, "sh")},
          {2'500, 1, switch_payload(0, 200, "sh")},
          {2'600, 1, exec_payload(200, 100, "cat", {"/bin/cat", "cat", "/etc/hostname"})},
          {2'700, 1, openat_payload(200, "cat", "/etc/hostname", 3)},
          {2'750, 1, fork_payload(200, 200, 201, "cat")},  // a thread
      },
      {
          {2'200, 0, switch_payload(100, 0, "swapper/0")},
          {2'800, 1, {}, 4},  // 4 records lost on CPU 1
          {2'900, 1, tcp_payload(200, "cat")},
          {3'000, 1, exit_payload(200, 201, "cat")},
          {3'100, 1, exit_payload(200, 200, "cat")},
          {3'200, 1, switch_payload(200, 0, "swapper/1")},
          {3'300, 0, openat_payload(300, "old", "/tmp/x", -2)},  // a process seen only here
      },
  });
  auto reader = recording::RecordingReader::open({path}, {});
  ASSERT_TRUE(reader) << reader.error().message();
  std::ostringstream out;
  PerfettoExportOptions options;
  PerfettoExporter exporter(**reader, options, out);
  auto summary = exporter.run();
  ASSERT_TRUE(summary) << summary.error().message();
  EXPECT_EQ(summary->records, 12u);
  EXPECT_EQ(summary->sched_switches, 4u);
  EXPECT_EQ(summary->instants, 8u);
  EXPECT_EQ(summary->lost_notices, 1u);

  const PfModel m = parse_perfetto(out.str());
  ASSERT_EQ(m.error, "");
  // Scheduling, per CPU in time order.
  ASSERT_EQ(m.switches.at(0).size(), 2u);
  EXPECT_EQ(m.switches.at(0)[0].ts, 2'000u);
  EXPECT_EQ(m.switches.at(0)[0].next_comm, "sh");
  EXPECT_EQ(m.switches.at(0)[1].ts, 2'200u);
  EXPECT_EQ(m.switches.at(0)[1].next_pid, 0);
  ASSERT_EQ(m.switches.at(1).size(), 2u);
  EXPECT_EQ(m.switches.at(1)[1].ts, 3'200u);
  EXPECT_TRUE(m.switches.at(1)[1].full);  // after the loss on CPU 1
  EXPECT_EQ(m.lost_bundles.at(1), 1);
  // Processes and threads with their names.
  ASSERT_TRUE(m.processes.count(200));
  EXPECT_EQ(m.processes.at(200).ppid(), 100);
  EXPECT_EQ(std::vector<std::string>(m.processes.at(200).cmdline().begin(), m.processes.at(200).cmdline().end()),
            (std::vector<std::string>{"cat", "/etc/hostname"}));
  ASSERT_TRUE(m.processes.count(100));
  EXPECT_EQ(m.processes.at(100).cmdline(0), "sh");
  ASSERT_TRUE(m.processes.count(300));
  EXPECT_EQ(m.processes.at(300).cmdline(0), "old");
  EXPECT_EQ(m.threads.at(201).tgid(), 200);
  // Lifetimes: task_newtask (process, then thread), task_rename at exec, sched_process_free at exit.
  auto tasks = m.tasks;  // bundles are written per CPU: by time to compare
  std::stable_sort(tasks.begin(), tasks.end(), [](const auto& a, const auto& b) { return a.ts < b.ts; });
  std::vector<std::string> kinds;
  for (const auto& t : tasks) kinds.push_back(t.kind + ":" + std::to_string(t.tid));
  EXPECT_EQ(kinds, (std::vector<std::string>{"task_newtask:200", "task_rename:200", "task_newtask:201",
                                             "sched_process_free:201", "sched_process_free:200"}));
  EXPECT_EQ(tasks[0].clone_flags, 0u);
  EXPECT_EQ(tasks[0].pid, 100u);  // the parent forks
  EXPECT_EQ(tasks[2].clone_flags, 0x10000u);
  EXPECT_EQ(tasks[1].comm, "cat");
  // Instants with their fields, on their threads.
  std::vector<std::string> names;
  for (const auto& i : m.instants) names.push_back(i.name);
  EXPECT_EQ(names, (std::vector<std::string>{"fork", "exec", "openat", "fork", "lost 4 records", "tcp", "exit",
                                             "exit", "openat"}));
  const auto& open = m.instants[2];
  EXPECT_EQ(open.ts, 2'700u);
  EXPECT_EQ(open.args.at("path"), "/etc/hostname");
  EXPECT_EQ(open.args.at("ret"), "3");
  EXPECT_EQ(open.args.at("comm"), "cat");
  EXPECT_EQ(m.thread_of(open.track), std::make_pair(std::int64_t{200}, std::int64_t{200}));
  EXPECT_EQ(m.instants[1].args.at("filename"), "/bin/cat");
  EXPECT_EQ(m.instants[1].args.at("args"), "[cat /etc/hostname]");  // filename is hinted path_argv
  EXPECT_EQ(m.instants[5].args.at("daddr"), "7f000001000000000000000000000000");
  EXPECT_EQ(m.instants[8].args.at("ret"), "-2");
  const auto& lost = m.instants[4];
  EXPECT_EQ(lost.args.at("count"), "4");
  EXPECT_EQ(lost.args.at("source"), "kernel");
  EXPECT_EQ(m.track_name(lost.track), "CPU 1: lost records");
  // The clock.
  ASSERT_TRUE(m.clock.has_value());
  EXPECT_EQ(m.clock->clocks_size(), 3);
}

TEST(PerfettoExport, CorruptRecordingIsAnErrorNamingTheOffsetNeverACrash) {
  TempDir dir;
  const std::string path = dir.file("rec.data");
  std::vector<Item> items;
  for (int i = 0; i < 200; ++i) items.push_back({std::uint64_t(2'000 + i), 0, switch_payload(i, i + 1, "x")});
  write_recording(dir.file("one.data"), {items});
  const std::size_t one_batch = perfstream::testing::read_file(dir.file("one.data")).size();
  write_recording(path, {items, items});
  std::string bytes = perfstream::testing::read_file(path);
  // The second batch frame starts where the one-batch file's trailer did, and is as long as the first:
  // flip bytes a little past that start, inside it.
  ASSERT_GT(bytes.size(), one_batch + 64);
  for (std::size_t i = one_batch; i < one_batch + 8; ++i) bytes[i] ^= 0x5a;
  perfstream::testing::write_file(path, bytes);
  std::ostringstream out, err;
  const int status = cli::run_export({"--to", "perfetto", path, "-o", dir.file("out.pftrace")}, out, err);
  EXPECT_EQ(status, 1) << err.str();
  EXPECT_NE(err.str().find("at byte"), std::string::npos) << err.str();
  // What could be read was exported, and parses.
  const PfModel m = perfstream::testing::parse_perfetto_file(dir.file("out.pftrace"));
  EXPECT_EQ(m.error, "");
  EXPECT_EQ(m.switches.at(0).size(), 200u);
}

TEST(PerfettoExport, UsageErrors) {
  std::ostringstream out, err;
  EXPECT_EQ(cli::run_export({"x.data"}, out, err), 2);
  EXPECT_EQ(cli::run_export({"--to", "svg", "x.data"}, out, err), 2);
  EXPECT_EQ(cli::run_export({"--to", "perfetto", "/nonexistent/x.data"}, out, err), 1);
}

TEST(PerfettoExport, RotatedRecordingIsExportedWhole) {
  TempDir dir;
  const std::string path = dir.file("rot.data");
  TraceWriterOptions o;
  o.path = path;
  o.rotate_bytes = 1;  // every batch in a piece of its own
  auto w = TraceFileWriter::create(o, probe_header());
  ASSERT_TRUE(w) << w.error().message();
  for (std::uint64_t seq = 0; seq < 5; ++seq) {
    BatchEncoder enc;
    for (int i = 0; i < 10; ++i) {
      const std::string p = switch_payload(i, i + 1, "r");
      enc.add_record(10'000 * (seq + 1) + static_cast<std::uint64_t>(i), static_cast<std::uint32_t>(i % 2),
                     std::as_bytes(std::span(p.data(), p.size())));
    }
    std::string message;
    enc.finish_unstamped(message);
    append_batch_stamp(message, seq, 0);
    EncodedBatch out;
    out.sequence = seq;
    out.records = enc.record_count();
    auto c = ZstdCompressor::create(1);
    ASSERT_TRUE(c->compress(message, out.compressed));
    ASSERT_TRUE((*w)->write_batch(out));
  }
  ASSERT_TRUE((*w)->close(v1::TraceTrailer()));
  ASSERT_TRUE(std::filesystem::exists(path + ".3"));
  std::ostringstream out, err;
  ASSERT_EQ(cli::run_export({"--to", "perfetto", "-q", path, "-o", dir.file("rot.pftrace")}, out, err), 0) << err.str();
  const PfModel m = perfstream::testing::parse_perfetto_file(dir.file("rot.pftrace"));
  ASSERT_EQ(m.error, "");
  EXPECT_EQ(m.switches.at(0).size() + m.switches.at(1).size(), 50u);
}

TEST(CsvCell, QuotedOnlyWhenRfc4180NeedsIt) {
  std::string line;
  append_csv_cell(line, "plain");
  line += ',';
  append_csv_cell(line, "a,b");
  line += ',';
  append_csv_cell(line, "say \"hi\"");
  line += ',';
  append_csv_cell(line, "two\nlines");
  line += ',';
  append_csv_cell(line, "");
  EXPECT_EQ(line, "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",");
}

// Compares every CSV to dump --json --raw-fields, reading both with Python's csv and json modules.
constexpr const char* kCompareScript = R"PY(
import csv, json, sys
dump_path, rest = sys.argv[1], sys.argv[2:]
records = [json.loads(l) for l in open(dump_path) if l.strip()]
for pair in rest:
    event, path = pair.split('=', 1)
    with open(path, newline='') as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    want = [r for r in records if r.get('event') == event]
    assert header[:2] == ['time_ns', 'cpu'], header
    assert header[2:] == list(want[0]['fields'].keys()), (header, want[0])
    assert len(rows) == len(want), (event, len(rows), len(want))
    for row, rec in zip(rows, want):
        assert row[0] == str(rec['time_ns']) and row[1] == str(rec['cpu']), (row, rec)
        for cell, (name, value) in zip(row[2:], rec['fields'].items()):
            expected = '' if value is None else str(value)
            assert cell == expected, (event, name, cell, value)
    print(event, len(rows), 'rows match')
)PY";

TEST(CsvExport, EveryBuiltInProbeReadsBackWithPythonsCsvToDumpJsonRawValues) {
  TempDir dir;
  const std::string path = dir.file("rec.data");
  write_recording(path, {{
      {2'000, 0, switch_payload(0, 100, "sh, the \"shell\"")},
      {2'100, 0, fork_payload(100, 200, 200, "sh")},
      {2'600, 1, exec_payload(200, 100, "cat", {"/bin/cat", "cat", "/etc/hostname"})},
      {2'700, 1, openat_payload(200, "cat", "/tmp/a,b\nc", 3)},
      {2'800, 1, {}, 4},
      {2'900, 1, tcp_payload(200, "cat")},
      {3'000, 1, exit_payload(200, 200, "cat")},
      {3'100, 0, openat_payload(200, "cat", "/etc/passwd", -2)},
  }});
  std::ostringstream out, err;
  ASSERT_EQ(cli::run_dump({"--json", "--raw-fields", path}, out, err), 0) << err.str();
  perfstream::testing::write_file(dir.file("dump.jsonl"), out.str());
  std::string pairs;
  for (const char* event : {"sched_switch", "fork", "exec", "openat", "tcp", "exit"}) {
    std::ostringstream o, e;
    const std::string csv = dir.file(std::string(event) + ".csv");
    ASSERT_EQ(cli::run_export({"--to", "csv", "--event", event, path, "-o", csv}, o, e), 0) << e.str();
    pairs += std::string(" ") + event + "=" + csv;
  }
  perfstream::testing::write_file(dir.file("compare.py"), kCompareScript);
  const std::string cmd = "python3 " + dir.file("compare.py") + " " + dir.file("dump.jsonl") + pairs + " > " +
                          dir.file("py.out") + " 2>&1";
  const int status = std::system(cmd.c_str());
  const std::string py = perfstream::testing::read_file(dir.file("py.out"));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) GTEST_SKIP() << "no python3 here: " << py;
  EXPECT_EQ(status, 0) << py;
  EXPECT_NE(py.find("openat 2 rows match"), std::string::npos) << py;
  // Two openat rows: the path with a comma and a newline is one quoted cell.
  const std::string openat = perfstream::testing::read_file(dir.file("openat.csv"));
  EXPECT_NE(openat.find("\"/tmp/a,b\nc\""), std::string::npos) << openat;
}

TEST(CsvExport, UnknownEventNamesThoseThereAre) {
  TempDir dir;
  const std::string path = dir.file("rec.data");
  write_recording(path, {{{2'000, 0, switch_payload(0, 100, "sh")}}});
  std::ostringstream out, err;
  EXPECT_EQ(cli::run_export({"--to", "csv", "--event", "nope", path}, out, err), 1);
  EXPECT_NE(err.str().find("it has: sched_switch, exec, fork, exit, openat, tcp"), std::string::npos) << err.str();
  EXPECT_EQ(cli::run_export({"--to", "csv", path}, out, err), 2);
}

TEST(JsonlExport, IsDumpJson) {
  TempDir dir;
  const std::string path = dir.file("rec.data");
  write_recording(path, {{{2'000, 0, switch_payload(0, 100, "sh")},
                          {2'100, 0, fork_payload(100, 200, 200, "sh")},
                          {2'200, 0, {}, 3}}});
  std::ostringstream dump_out, dump_err, out, err;
  ASSERT_EQ(cli::run_dump({"--json", path}, dump_out, dump_err), 0);
  ASSERT_EQ(cli::run_export({"--to", "jsonl", path, "-o", dir.file("x.jsonl")}, out, err), 0) << err.str();
  EXPECT_EQ(perfstream::testing::read_file(dir.file("x.jsonl")), dump_out.str());
  ASSERT_EQ(cli::run_export({"--to", "jsonl", "--event", "fork", path}, out, err), 0) << err.str();
  EXPECT_EQ(out.str().find("sched_switch"), std::string::npos);
  EXPECT_NE(out.str().find("\"event\":\"fork\""), std::string::npos) << out.str();
}

}  // namespace
}  // namespace perfstream::exporter
