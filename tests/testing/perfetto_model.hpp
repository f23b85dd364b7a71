// A Perfetto trace (.pftrace) read back with the protobuf library and the subset of Perfetto's schema in
// tests/export/perfetto_trace_subset.proto, flattened into what the tests check: per-CPU sched_switches
// in the order written (compact ones with their deltas resolved), processes and threads with their names,
// task events, instants with their tracks and arguments, lost markers, the clock snapshot.
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "perfetto_trace_subset.pb.h"

namespace perfstream::testing {

struct PfSwitch {
  std::uint64_t ts = 0;
  std::int32_t next_pid = 0, next_prio = 0;
  std::int64_t prev_state = 0;
  std::string next_comm;
  bool full = false;  // a full sched_switch event (with prev_*), not the compact form
  std::int32_t prev_pid = 0;
  bool operator==(const PfSwitch&) const = default;
};

struct PfTaskEvent {
  std::uint32_t cpu = 0;
  std::uint64_t ts = 0;
  std::uint32_t pid = 0;  // FtraceEvent.pid: the thread it happened in
  std::string kind;       // task_newtask, task_rename, sched_process_free
  std::int32_t tid = 0;   // the task it is about
  std::string comm;
  std::uint64_t clone_flags = 0;
};

struct PfInstant {
  std::uint64_t ts = 0;
  std::string name;
  std::uint64_t track = 0;
  std::map<std::string, std::string> args;  // every value as text; arrays as [a b c]
  std::uint32_t sequence_flags = 0;
};

struct PfModel {
  std::map<std::uint32_t, std::vector<PfSwitch>> switches;  // by CPU
  std::map<std::uint32_t, int> lost_bundles;                 // bundles with lost_events, by CPU
  std::vector<PfTaskEvent> tasks;
  std::map<std::int32_t, perfetto::protos::ProcessTree::Process> processes;  // the latest entry per pid
  std::map<std::int32_t, perfetto::protos::ProcessTree::Thread> threads;
  std::map<std::uint64_t, perfetto::protos::TrackDescriptor> tracks;  // by uuid, the latest
  std::vector<PfInstant> instants;
  std::optional<perfetto::protos::ClockSnapshot> clock;
  std::size_t packets = 0;
  bool first_track_packet_clears_state = false;
  std::string error;  // empty: it parsed

  // The track's thread (pid, tid), or nullopt for a named track.
  std::optional<std::pair<std::int64_t, std::int64_t>> thread_of(std::uint64_t track) const {
    auto it = tracks.find(track);
    if (it == tracks.end() || !it->second.has_thread()) return std::nullopt;
    return std::make_pair(std::int64_t{it->second.thread().pid()}, it->second.thread().tid());
  }
  std::string track_name(std::uint64_t track) const {
    auto it = tracks.find(track);
    return it == tracks.end() ? std::string() : it->second.name();
  }
};

inline std::string annotation_text(const perfetto::protos::DebugAnnotation& a) {
  if (a.has_int_value()) return std::to_string(a.int_value());
  if (a.has_uint_value()) return std::to_string(a.uint_value());
  if (a.has_string_value()) return a.string_value();
  if (a.has_bool_value()) return a.bool_value() ? "true" : "false";
  {  // otherwise an array (of strings): its values joined by spaces, in brackets
    std::string out = "[";
    for (const auto& v : a.array_values()) out += (out.size() > 1 ? " " : "") + annotation_text(v);
    return out + "]";
  }
}

inline PfModel parse_perfetto(const std::string& bytes) {
  PfModel m;
  perfetto::protos::Trace trace;
  if (!trace.ParseFromString(bytes)) {
    m.error = "not a perfetto.protos.Trace";
    return m;
  }
  m.packets = static_cast<std::size_t>(trace.packet_size());
  bool seen_track_packet = false;
  for (const auto& p : trace.packet()) {
    if (p.has_trusted_packet_sequence_id() && p.trusted_packet_sequence_id() == 2 && !seen_track_packet) {
      seen_track_packet = true;
      m.first_track_packet_clears_state = (p.sequence_flags() & 1) != 0;
    }
    if (p.has_clock_snapshot()) m.clock = p.clock_snapshot();
    if (p.has_process_tree()) {
      for (const auto& pr : p.process_tree().processes()) m.processes[pr.pid()] = pr;
      for (const auto& t : p.process_tree().threads()) m.threads[t.tid()] = t;
    }
    if (p.has_track_descriptor()) m.tracks[p.track_descriptor().uuid()] = p.track_descriptor();
    if (p.has_track_event()) {
      const auto& e = p.track_event();
      PfInstant i;
      i.ts = p.timestamp();
      i.name = e.name();
      i.track = e.track_uuid();
      i.sequence_flags = p.sequence_flags();
      if (e.type() != perfetto::protos::TrackEvent::TYPE_INSTANT) i.name = "(not an instant) " + i.name;
      for (const auto& a : e.debug_annotations()) i.args[a.name()] = annotation_text(a);
      m.instants.push_back(std::move(i));
    }
    if (p.has_ftrace_events()) {
      const auto& b = p.ftrace_events();
      if (b.lost_events()) ++m.lost_bundles[b.cpu()];
      for (const auto& e : b.event()) {
        if (e.has_sched_switch()) {
          const auto& s = e.sched_switch();
          m.switches[b.cpu()].push_back(PfSwitch{e.timestamp(), s.next_pid(), s.next_prio(), s.prev_state(),
                                                 s.next_comm(), true, s.prev_pid()});
        } else {
          PfTaskEvent t;
          t.cpu = b.cpu();
          t.ts = e.timestamp();
          t.pid = e.pid();
          if (e.has_task_newtask()) {
            t.kind = "task_newtask";
            t.tid = e.task_newtask().pid();
            t.comm = e.task_newtask().comm();
            t.clone_flags = e.task_newtask().clone_flags();
          } else if (e.has_task_rename()) {
            t.kind = "task_rename";
            t.tid = e.task_rename().pid();
            t.comm = e.task_rename().newcomm();
          } else if (e.has_sched_process_free()) {
            t.kind = "sched_process_free";
            t.tid = e.sched_process_free().pid();
            t.comm = e.sched_process_free().comm();
          } else {
            t.kind = "other";
          }
          m.tasks.push_back(std::move(t));
        }
      }
      if (b.has_compact_sched()) {
        const auto& c = b.compact_sched();
        const int n = c.switch_timestamp_size();
        if (c.switch_prev_state_size() != n || c.switch_next_pid_size() != n || c.switch_next_prio_size() != n ||
            c.switch_next_comm_index_size() != n) {
          m.error = "compact_sched arrays of different lengths";
          return m;
        }
        std::uint64_t ts = 0;
        for (int i = 0; i < n; ++i) {
          ts += c.switch_timestamp(i);
          const std::uint32_t ci = c.switch_next_comm_index(i);
          if (ci >= static_cast<std::uint32_t>(c.intern_table_size())) {
            m.error = "comm index out of the intern table";
            return m;
          }
          m.switches[b.cpu()].push_back(PfSwitch{ts, c.switch_next_pid(i), c.switch_next_prio(i),
                                                 c.switch_prev_state(i), c.intern_table(static_cast<int>(ci)),
                                                 false, 0});
        }
      }
    }
  }
  return m;
}

inline PfModel parse_perfetto_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_perfetto(ss.str());
}

}  // namespace perfstream::testing
