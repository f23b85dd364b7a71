// PerfettoTraceWriter: writes Perfetto's trace format, the protobuf `Trace` of Perfetto's public protos
// (protos/perfetto/trace/trace.proto: `repeated TracePacket packet = 1`), so a file is its packets back to
// back, each as field 1, length-delimited. Encoded by hand from the wire format; the field numbers are
// Perfetto's (google/perfetto, protos/perfetto/trace/...), listed in perfetto_trace.cpp with the file each
// comes from.
//
// What it writes, as Perfetto's own traced_probes does for a kernel trace:
//   - scheduling: one FtraceEventBundle per CPU at a time, sched_switch in the compact sched encoding
//     (FtraceEventBundle.CompactSched: structure of arrays, delta-encoded times, interned comms). The
//     compact form has no prev_pid: Perfetto takes it from the previous switch on the CPU. So the first
//     switch of a CPU, and the first after a loss on it, are written as full sched_switch events instead;
//   - task events in the same bundles: task_newtask (fork), task_rename (exec), sched_process_free (exit),
//     the events Perfetto's trace processor reads thread and process lifetimes from;
//   - ProcessTree packets (pid, ppid, cmdline; tid, tgid, name);
//   - instants (TrackEvent TYPE_INSTANT) on thread tracks (TrackDescriptor with a ThreadDescriptor) or on
//     named tracks, with debug annotations;
//   - a ClockSnapshot.
//
// Memory: a CPU's bundle is written when it holds `bundle_events` events, so what is held is bounded by
// CPUs x bundle_events; the thread tracks already described are remembered (one entry per thread).
// Timestamps must come in non-decreasing order per CPU for the compact encoding's deltas: a switch earlier
// than the last one of its CPU closes the bundle and starts another (still correct, only less compact).
//
// Errors: the stream's state; finish() says whether everything was written. One writer per thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "collector/util/result.hpp"

namespace perfstream::exporter {

// A protobuf message under construction: fields appended in wire format. Nested messages are built in their
// own ProtoMessage and appended whole (packets are small: the largest is a bundle).
class ProtoMessage {
 public:
  // Scalars are written even when zero (Perfetto's protos are proto2: presence matters, pid 0 is a pid).
  ProtoMessage& varint(std::uint32_t field, std::uint64_t v);
  ProtoMessage& int64(std::uint32_t field, std::int64_t v) { return varint(field, static_cast<std::uint64_t>(v)); }
  ProtoMessage& boolean(std::uint32_t field, bool v) { return varint(field, v ? 1 : 0); }
  ProtoMessage& string(std::uint32_t field, std::string_view s);
  ProtoMessage& message(std::uint32_t field, const ProtoMessage& m) { return string(field, m.bytes()); }
  // A packed repeated varint field; nothing when empty.
  ProtoMessage& packed(std::uint32_t field, const std::vector<std::uint64_t>& values);

  const std::string& bytes() const { return buf_; }
  std::size_t size() const { return buf_.size(); }
  void clear() { buf_.clear(); }

 private:
  std::string buf_;
};

// Perfetto's BuiltinClock ids (protos/perfetto/common/builtin_clock.proto).
enum class PerfettoClock : std::uint32_t { kRealtime = 1, kMonotonic = 3, kMonotonicRaw = 5, kBoottime = 6 };

struct SchedSwitch {
  std::uint64_t ts = 0;
  std::int32_t prev_pid = 0, prev_prio = 0;
  std::int64_t prev_state = 0;
  std::string prev_comm;
  std::int32_t next_pid = 0, next_prio = 0;
  std::string next_comm;
};

// One debug annotation of an instant: a name and an integer, unsigned, string or list-of-strings value.
struct Annotation {
  enum class Kind { kInt, kUint, kString, kStringArray } kind = Kind::kInt;
  std::string name;
  std::int64_t int_value = 0;
  std::uint64_t uint_value = 0;
  std::string string_value;
  std::vector<std::string> strings;  // kStringArray
};

struct ProcessInfo {
  std::int32_t pid = 0;
  std::optional<std::int32_t> ppid;
  std::vector<std::string> cmdline;
  bool cmdline_is_comm = false;   // cmdline is just the comm (no argv known)
  std::optional<std::int32_t> uid;
};

class PerfettoTraceWriter {
 public:
  explicit PerfettoTraceWriter(std::ostream& out, std::size_t bundle_events = 1024);

  // The clocks at one moment: `trace_clock_ns` is the clock all times are written in; Perfetto takes ftrace
  // times as BOOTTIME, so the snapshot names that clock BOOTTIME (and, when it is another clock, that clock
  // too, at the same value), and pairs it with REALTIME for wall-clock time. Written first.
  void clock_snapshot(std::uint64_t trace_clock_ns, std::optional<PerfettoClock> recording_clock,
                      std::optional<std::uint64_t> realtime_ns);

  // Per-CPU ftrace events.
  void sched_switch(std::uint32_t cpu, const SchedSwitch& s);
  void new_task(std::uint32_t cpu, std::uint64_t ts, std::int32_t parent_tid, std::int32_t child_tid,
                const std::string& comm, bool is_thread);
  void rename_task(std::uint32_t cpu, std::uint64_t ts, std::int32_t tid, const std::string& old_comm,
                   const std::string& new_comm);
  void free_task(std::uint32_t cpu, std::uint64_t ts, std::int32_t tid, const std::string& comm);
  // Records were lost on `cpu` before what comes next on it: the next bundle says so (lost_events), and its
  // next switch is written in full.
  void lost_events(std::uint32_t cpu);

  // One ProcessTree packet.
  void process_tree(std::uint64_t ts, const std::vector<ProcessInfo>& processes,
                    const std::vector<std::tuple<std::int32_t, std::int32_t, std::string>>& threads);

  // An instant on the thread's track (described the first time a (pid, tid) is seen, and again when its
  // name changes).
  void thread_instant(std::uint64_t ts, std::int32_t pid, std::int32_t tid, const std::string& thread_name,
                      const std::string& name, const std::vector<Annotation>& annotations);
  // An instant on a track of its own, named `track` (one per name).
  void named_instant(std::uint64_t ts, const std::string& track, const std::string& name,
                     const std::vector<Annotation>& annotations);

  // Writes every bundle still held. OK when every byte reached the stream.
  Status finish();

  std::uint64_t packets() const { return packets_; }
  std::uint64_t bytes() const { return bytes_; }

 private:
  struct Bundle {
    // Compact sched arrays (switch_timestamp as absolute times here; deltas when written).
    std::vector<std::uint64_t> ts, prev_state, next_pid, next_prio, comm_index;
    std::vector<std::string> intern_table;
    std::unordered_map<std::string, std::uint32_t> interned;
    ProtoMessage events;       // FtraceEvent entries (field 2), already encoded
    std::size_t event_count = 0;
    bool lost = false;         // lost_events on the next bundle written
    bool need_full = true;     // the next switch is written in full
    std::uint64_t last_ts = 0;
    std::size_t held() const { return ts.size() + event_count; }
  };
  Bundle& bundle(std::uint32_t cpu);
  void ftrace_event(std::uint32_t cpu, std::uint64_t ts, std::int32_t pid, std::uint32_t field,
                    const ProtoMessage& body);
  void maybe_flush(std::uint32_t cpu);
  void flush(std::uint32_t cpu);
  // Packets of the process-tree and track-event sequence: the first clears its incremental state, track
  // events after it say they need it (Perfetto drops track events on a sequence whose state is not valid).
  void begin_track_packet(ProtoMessage& packet, bool needs_state);
  void track_event_packet(std::uint64_t ts, const ProtoMessage& body);
  std::uint64_t thread_track(std::int32_t pid, std::int32_t tid, const std::string& name);
  void write_packet(const ProtoMessage& packet);

  std::ostream& out_;
  std::size_t bundle_events_;
  std::map<std::uint32_t, Bundle> bundles_;
  std::map<std::pair<std::int32_t, std::int32_t>, std::string> thread_tracks_;  // (pid, tid) -> name described
  std::map<std::string, std::uint64_t> named_tracks_;
  bool track_sequence_started_ = false;
  std::uint64_t packets_ = 0;
  std::uint64_t bytes_ = 0;
};

}  // namespace perfstream::exporter
