#include "collector/export/perfetto_trace.hpp"

#include "collector/format/protobuf_wire.hpp"

namespace perfstream::exporter {
namespace {

// Field numbers, from Perfetto's protos (google/perfetto, protos/perfetto/...). Never renumbered there:
// they are a public, versioned format.
namespace trace {                         // trace/trace.proto
constexpr std::uint32_t kPacket = 1;
}
namespace packet {                        // trace/trace_packet.proto
constexpr std::uint32_t kFtraceEvents = 1;
constexpr std::uint32_t kProcessTree = 2;
constexpr std::uint32_t kClockSnapshot = 6;
constexpr std::uint32_t kTimestamp = 8;
constexpr std::uint32_t kTrustedPacketSequenceId = 10;
constexpr std::uint32_t kTrackEvent = 11;
constexpr std::uint32_t kSequenceFlags = 13;
constexpr std::uint32_t kTrackDescriptor = 60;
constexpr std::uint64_t kSeqIncrementalStateCleared = 1;  // TracePacket.SequenceFlags
constexpr std::uint64_t kSeqNeedsIncrementalState = 2;
}  // namespace packet
namespace bundle {                        // trace/ftrace/ftrace_event_bundle.proto, FtraceEventBundle
constexpr std::uint32_t kCpu = 1;
constexpr std::uint32_t kEvent = 2;
constexpr std::uint32_t kLostEvents = 3;
constexpr std::uint32_t kCompactSched = 4;
}  // namespace bundle
namespace compact {                       // FtraceEventBundle.CompactSched
constexpr std::uint32_t kSwitchTimestamp = 1;
constexpr std::uint32_t kSwitchPrevState = 2;
constexpr std::uint32_t kSwitchNextPid = 3;
constexpr std::uint32_t kSwitchNextPrio = 4;
constexpr std::uint32_t kInternTable = 5;
constexpr std::uint32_t kSwitchNextCommIndex = 6;
}  // namespace compact
namespace fevent {                        // trace/ftrace/ftrace_event.proto, FtraceEvent
constexpr std::uint32_t kTimestamp = 1;
constexpr std::uint32_t kPid = 2;
constexpr std::uint32_t kSchedSwitch = 4;
constexpr std::uint32_t kTaskNewtask = 235;
constexpr std::uint32_t kTaskRename = 236;
constexpr std::uint32_t kSchedProcessFree = 240;
}  // namespace fevent
namespace sswitch {                       // trace/ftrace/sched.proto, SchedSwitchFtraceEvent
constexpr std::uint32_t kPrevComm = 1, kPrevPid = 2, kPrevPrio = 3, kPrevState = 4, kNextComm = 5, kNextPid = 6,
                        kNextPrio = 7;
}
namespace newtask {                       // trace/ftrace/task.proto, TaskNewtaskFtraceEvent
constexpr std::uint32_t kPid = 1, kComm = 2, kCloneFlags = 3;
constexpr std::uint64_t kCloneThread = 0x00010000;  // the kernel's CLONE_THREAD, which Perfetto checks
}  // namespace newtask
namespace rename {                        // trace/ftrace/task.proto, TaskRenameFtraceEvent
constexpr std::uint32_t kPid = 1, kOldcomm = 2, kNewcomm = 3;
}
namespace pfree {                         // trace/ftrace/sched.proto, SchedProcessFreeFtraceEvent
constexpr std::uint32_t kComm = 1, kPid = 2;
}
namespace ptree {                         // trace/ps/process_tree.proto, ProcessTree
constexpr std::uint32_t kProcesses = 1, kThreads = 2;
constexpr std::uint32_t kProcPid = 1, kProcPpid = 2, kProcCmdline = 3, kProcUid = 5, kProcCmdlineIsComm = 9;
constexpr std::uint32_t kThreadTid = 1, kThreadName = 2, kThreadTgid = 3;
}  // namespace ptree
namespace clock {                         // trace/clock_snapshot.proto, ClockSnapshot
constexpr std::uint32_t kClocks = 1, kPrimaryTraceClock = 2;
constexpr std::uint32_t kClockId = 1, kClockTimestamp = 2;  // ClockSnapshot.Clock
}  // namespace clock
namespace tdesc {                         // trace/track_event/track_descriptor.proto, TrackDescriptor
constexpr std::uint32_t kUuid = 1, kName = 2, kThread = 4;
constexpr std::uint32_t kThreadPid = 1, kThreadTid = 2, kThreadName = 5;  // thread_descriptor.proto
}  // namespace tdesc
namespace tevent {                        // trace/track_event/track_event.proto, TrackEvent
constexpr std::uint32_t kDebugAnnotations = 4, kType = 9, kTrackUuid = 11, kCategories = 22, kName = 23;
constexpr std::uint64_t kTypeInstant = 3;
}  // namespace tevent
namespace annot {                         // trace/track_event/debug_annotation.proto, DebugAnnotation
constexpr std::uint32_t kUintValue = 3, kIntValue = 4, kStringValue = 6, kName = 10, kArrayValues = 12;
}

// Sequences: ftrace bundles on one, process tree and track events on another (Perfetto keeps track events'
// incremental state per sequence).
constexpr std::uint32_t kFtraceSequence = 1;
constexpr std::uint32_t kTrackSequence = 2;

// Track uuids: thread tracks carry (pid, tid) so that a reused tid gets a new track; named tracks live in
// their own range (top bit set).
std::uint64_t thread_uuid(std::int32_t pid, std::int32_t tid) {
  return ((static_cast<std::uint64_t>(static_cast<std::uint32_t>(pid)) << 32) |
          static_cast<std::uint32_t>(tid)) + 1;
}
constexpr std::uint64_t kNamedTrackBase = std::uint64_t{1} << 63;

}  // namespace

ProtoMessage& ProtoMessage::varint(std::uint32_t field, std::uint64_t v) {
  wire::put_tag(buf_, field, wire::kVarint);
  wire::put_varint(buf_, v);
  return *this;
}

ProtoMessage& ProtoMessage::string(std::uint32_t field, std::string_view s) {
  wire::put_tag(buf_, field, wire::kLengthDelimited);
  wire::put_varint(buf_, s.size());
  buf_.append(s.data(), s.size());
  return *this;
}

ProtoMessage& ProtoMessage::packed(std::uint32_t field, const std::vector<std::uint64_t>& values) {
  if (values.empty()) return *this;
  std::size_t n = 0;
  for (std::uint64_t v : values) n += wire::varint_size(v);
  wire::put_tag(buf_, field, wire::kLengthDelimited);
  wire::put_varint(buf_, n);
  for (std::uint64_t v : values) wire::put_varint(buf_, v);
  return *this;
}

PerfettoTraceWriter::PerfettoTraceWriter(std::ostream& out, std::size_t bundle_events)
    : out_(out), bundle_events_(bundle_events == 0 ? 1 : bundle_events) {}

void PerfettoTraceWriter::write_packet(const ProtoMessage& packet) {
  std::string head;
  wire::put_tag(head, trace::kPacket, wire::kLengthDelimited);
  wire::put_varint(head, packet.size());
  out_.write(head.data(), static_cast<std::streamsize>(head.size()));
  out_.write(packet.bytes().data(), static_cast<std::streamsize>(packet.size()));
  ++packets_;
  bytes_ += head.size() + packet.size();
}

void PerfettoTraceWriter::clock_snapshot(std::uint64_t trace_clock_ns, std::optional<PerfettoClock> recording_clock,
                                         std::optional<std::uint64_t> realtime_ns) {
  ProtoMessage snapshot;
  auto add = [&](PerfettoClock id, std::uint64_t ts) {
    ProtoMessage c;
    c.varint(clock::kClockId, static_cast<std::uint32_t>(id)).varint(clock::kClockTimestamp, ts);
    snapshot.message(clock::kClocks, c);
  };
  add(PerfettoClock::kBoottime, trace_clock_ns);
  if (recording_clock && *recording_clock != PerfettoClock::kBoottime && *recording_clock != PerfettoClock::kRealtime) {
    add(*recording_clock, trace_clock_ns);
  }
  if (realtime_ns) add(PerfettoClock::kRealtime, *realtime_ns);
  snapshot.varint(clock::kPrimaryTraceClock, static_cast<std::uint32_t>(PerfettoClock::kBoottime));
  ProtoMessage p;
  p.varint(packet::kTimestamp, trace_clock_ns);
  p.varint(packet::kTrustedPacketSequenceId, kFtraceSequence);
  p.message(packet::kClockSnapshot, snapshot);
  write_packet(p);
}

PerfettoTraceWriter::Bundle& PerfettoTraceWriter::bundle(std::uint32_t cpu) { return bundles_[cpu]; }

void PerfettoTraceWriter::sched_switch(std::uint32_t cpu, const SchedSwitch& s) {
  Bundle& b = bundle(cpu);
  if (!b.ts.empty() && s.ts < b.last_ts) flush(cpu);  // deltas are unsigned: start a new bundle
  Bundle& c = bundle(cpu);
  if (c.need_full) {
    ProtoMessage e;
    e.string(sswitch::kPrevComm, s.prev_comm).int64(sswitch::kPrevPid, s.prev_pid);
    e.int64(sswitch::kPrevPrio, s.prev_prio).int64(sswitch::kPrevState, s.prev_state);
    e.string(sswitch::kNextComm, s.next_comm).int64(sswitch::kNextPid, s.next_pid).int64(sswitch::kNextPrio, s.next_prio);
    ftrace_event(cpu, s.ts, s.prev_pid, fevent::kSchedSwitch, e);
    bundle(cpu).need_full = false;
    return;
  }
  auto [it, added] = c.interned.try_emplace(s.next_comm, static_cast<std::uint32_t>(c.intern_table.size()));
  if (added) c.intern_table.push_back(s.next_comm);
  c.ts.push_back(s.ts);
  c.prev_state.push_back(static_cast<std::uint64_t>(s.prev_state));
  c.next_pid.push_back(static_cast<std::uint64_t>(std::int64_t{s.next_pid}));
  c.next_prio.push_back(static_cast<std::uint64_t>(std::int64_t{s.next_prio}));
  c.comm_index.push_back(it->second);
  c.last_ts = s.ts;
  maybe_flush(cpu);
}

void PerfettoTraceWriter::ftrace_event(std::uint32_t cpu, std::uint64_t ts, std::int32_t pid, std::uint32_t field,
                                       const ProtoMessage& body) {
  Bundle& b = bundle(cpu);
  ProtoMessage e;
  e.varint(fevent::kTimestamp, ts).varint(fevent::kPid, static_cast<std::uint32_t>(pid)).message(field, body);
  b.events.message(bundle::kEvent, e);
  ++b.event_count;
  maybe_flush(cpu);
}

void PerfettoTraceWriter::new_task(std::uint32_t cpu, std::uint64_t ts, std::int32_t parent_tid,
                                   std::int32_t child_tid, const std::string& comm, bool is_thread) {
  ProtoMessage e;
  e.int64(newtask::kPid, child_tid).string(newtask::kComm, comm);
  e.varint(newtask::kCloneFlags, is_thread ? newtask::kCloneThread : 0);
  ftrace_event(cpu, ts, parent_tid, fevent::kTaskNewtask, e);
}

void PerfettoTraceWriter::rename_task(std::uint32_t cpu, std::uint64_t ts, std::int32_t tid,
                                      const std::string& old_comm, const std::string& new_comm) {
  ProtoMessage e;
  e.int64(rename::kPid, tid).string(rename::kOldcomm, old_comm).string(rename::kNewcomm, new_comm);
  ftrace_event(cpu, ts, tid, fevent::kTaskRename, e);
}

void PerfettoTraceWriter::free_task(std::uint32_t cpu, std::uint64_t ts, std::int32_t tid, const std::string& comm) {
  ProtoMessage e;
  e.string(pfree::kComm, comm).int64(pfree::kPid, tid);
  ftrace_event(cpu, ts, tid, fevent::kSchedProcessFree, e);
}

void PerfettoTraceWriter::lost_events(std::uint32_t cpu) {
  Bundle& b = bundle(cpu);
  if (b.held() > 0) flush(cpu);  // the loss lies between what is held and what comes next
  Bundle& c = bundle(cpu);
  c.lost = true;
  c.need_full = true;
}

void PerfettoTraceWriter::maybe_flush(std::uint32_t cpu) {
  if (bundle(cpu).held() >= bundle_events_) flush(cpu);
}

void PerfettoTraceWriter::flush(std::uint32_t cpu) {
  Bundle& b = bundle(cpu);
  if (b.held() == 0 && !b.lost) return;
  ProtoMessage m;
  m.varint(bundle::kCpu, cpu);
  // Events (already encoded as repeated field 2) go first, then the flag and the compact arrays.
  std::string body = m.bytes() + b.events.bytes();
  ProtoMessage tail;
  if (b.lost) tail.boolean(bundle::kLostEvents, true);
  if (!b.ts.empty()) {
    ProtoMessage cs;
    for (const auto& comm : b.intern_table) cs.string(compact::kInternTable, comm);
    std::vector<std::uint64_t> deltas(b.ts.size());
    for (std::size_t i = 0; i < b.ts.size(); ++i) deltas[i] = i == 0 ? b.ts[0] : b.ts[i] - b.ts[i - 1];
    cs.packed(compact::kSwitchTimestamp, deltas);
    cs.packed(compact::kSwitchPrevState, b.prev_state);
    cs.packed(compact::kSwitchNextPid, b.next_pid);
    cs.packed(compact::kSwitchNextPrio, b.next_prio);
    cs.packed(compact::kSwitchNextCommIndex, b.comm_index);
    tail.message(bundle::kCompactSched, cs);
  }
  body += tail.bytes();
  ProtoMessage p;
  p.varint(packet::kTrustedPacketSequenceId, kFtraceSequence);
  p.string(packet::kFtraceEvents, body);
  write_packet(p);
  const bool need_full = b.need_full;
  b = Bundle();
  b.need_full = need_full;
}

void PerfettoTraceWriter::process_tree(std::uint64_t ts, const std::vector<ProcessInfo>& processes,
                                       const std::vector<std::tuple<std::int32_t, std::int32_t, std::string>>& threads) {
  ProtoMessage tree;
  for (const auto& pr : processes) {
    ProtoMessage m;
    m.int64(ptree::kProcPid, pr.pid);
    if (pr.ppid) m.int64(ptree::kProcPpid, *pr.ppid);
    for (const auto& arg : pr.cmdline) m.string(ptree::kProcCmdline, arg);
    if (pr.uid) m.int64(ptree::kProcUid, *pr.uid);
    if (pr.cmdline_is_comm) m.boolean(ptree::kProcCmdlineIsComm, true);
    tree.message(ptree::kProcesses, m);
  }
  for (const auto& [tid, tgid, name] : threads) {
    ProtoMessage m;
    m.int64(ptree::kThreadTid, tid).int64(ptree::kThreadTgid, tgid);
    if (!name.empty()) m.string(ptree::kThreadName, name);
    tree.message(ptree::kThreads, m);
  }
  ProtoMessage p;
  p.varint(packet::kTimestamp, ts);
  begin_track_packet(p, false);
  p.message(packet::kProcessTree, tree);
  write_packet(p);
}

void PerfettoTraceWriter::begin_track_packet(ProtoMessage& p, bool needs_state) {
  p.varint(packet::kTrustedPacketSequenceId, kTrackSequence);
  if (!track_sequence_started_) {
    p.varint(packet::kSequenceFlags, packet::kSeqIncrementalStateCleared);
    track_sequence_started_ = true;
  } else if (needs_state) {
    p.varint(packet::kSequenceFlags, packet::kSeqNeedsIncrementalState);
  }
}

void PerfettoTraceWriter::track_event_packet(std::uint64_t ts, const ProtoMessage& body) {
  ProtoMessage p;
  p.varint(packet::kTimestamp, ts);
  begin_track_packet(p, true);
  p.message(packet::kTrackEvent, body);
  write_packet(p);
}

std::uint64_t PerfettoTraceWriter::thread_track(std::int32_t pid, std::int32_t tid, const std::string& name) {
  const std::uint64_t uuid = thread_uuid(pid, tid);
  auto it = thread_tracks_.find({pid, tid});
  if (it != thread_tracks_.end() && it->second == name) return uuid;
  thread_tracks_[{pid, tid}] = name;
  ProtoMessage thread;
  thread.int64(tdesc::kThreadPid, pid).int64(tdesc::kThreadTid, tid);
  if (!name.empty()) thread.string(tdesc::kThreadName, name);
  ProtoMessage desc;
  desc.varint(tdesc::kUuid, uuid).message(tdesc::kThread, thread);
  ProtoMessage p;
  begin_track_packet(p, false);
  p.message(packet::kTrackDescriptor, desc);
  write_packet(p);
  return uuid;
}

namespace {

ProtoMessage instant_event(std::uint64_t track, const std::string& name, const std::vector<Annotation>& annotations) {
  ProtoMessage e;
  e.varint(tevent::kType, tevent::kTypeInstant).varint(tevent::kTrackUuid, track);
  e.string(tevent::kCategories, "perfstream").string(tevent::kName, name);
  for (const auto& a : annotations) {
    ProtoMessage d;
    d.string(annot::kName, a.name);
    switch (a.kind) {
      case Annotation::Kind::kInt: d.int64(annot::kIntValue, a.int_value); break;
      case Annotation::Kind::kUint: d.varint(annot::kUintValue, a.uint_value); break;
      case Annotation::Kind::kString: d.string(annot::kStringValue, a.string_value); break;
      case Annotation::Kind::kStringArray:
        for (const auto& word : a.strings) {
          ProtoMessage w;
          w.string(annot::kStringValue, word);
          d.message(annot::kArrayValues, w);
        }
        break;
    }
    e.message(tevent::kDebugAnnotations, d);
  }
  return e;
}

}  // namespace

void PerfettoTraceWriter::thread_instant(std::uint64_t ts, std::int32_t pid, std::int32_t tid,
                                         const std::string& thread_name, const std::string& name,
                                         const std::vector<Annotation>& annotations) {
  const std::uint64_t track = thread_track(pid, tid, thread_name);
  ProtoMessage e = instant_event(track, name, annotations);
  track_event_packet(ts, e);
}

void PerfettoTraceWriter::named_instant(std::uint64_t ts, const std::string& track, const std::string& name,
                                        const std::vector<Annotation>& annotations) {
  auto [it, added] = named_tracks_.try_emplace(track, kNamedTrackBase + named_tracks_.size() + 1);
  if (added) {
    ProtoMessage desc;
    desc.varint(tdesc::kUuid, it->second).string(tdesc::kName, track);
    ProtoMessage p;
    begin_track_packet(p, false);
    p.message(packet::kTrackDescriptor, desc);
    write_packet(p);
  }
  ProtoMessage e = instant_event(it->second, name, annotations);
  track_event_packet(ts, e);
}

Status PerfettoTraceWriter::finish() {
  for (auto& [cpu, b] : bundles_) {
    if (b.held() > 0 || b.lost) flush(cpu);
  }
  out_.flush();
  if (!out_) return Error("writing the Perfetto trace failed");
  return {};
}

}  // namespace perfstream::exporter
