// PerfettoExporter: a recording as a Perfetto trace (PerfettoTraceWriter), read in time order through the
// reader library, so memory stays bounded and rotated recordings are read whole.
//
// The mapping (docs/FORMAT.md, "Perfetto"):
//   - sched_switch (struct ps_sched_switch_event) -> the CPU's ftrace bundle, compact sched encoding;
//   - fork -> task_newtask on its CPU (clone_flags CLONE_THREAD for a new thread) and a ProcessTree entry
//     for the child; exec (successful) -> task_rename to the new comm and a ProcessTree entry with argv as
//     cmdline; exit -> sched_process_free (the event Perfetto ends a thread at);
//   - every record but sched_switch (exec, fork and exit too, openat, tcp, any --object event, records no
//     schema fits) -> an instant named after its event on the track of its thread (from its `pid`/`tid`
//     fields, with `comm` as the thread's name), every decoded field a debug annotation (integers as
//     integers, strings as strings, bytes as lower-case hex); records with no pid (or pid 0) go on a track
//     named after the event;
//   - the first record of a process or thread not seen before (from any event but sched_switch) gives a
//     ProcessTree entry, so every process has its name (its comm until an exec gives its argv);
//   - a lost notice -> lost_events on the CPU's next bundle, and an instant "lost N records" on the track
//     "CPU N: lost records" with the count and who lost them (kernel, collector);
//   - times: the recording's clock, unchanged, with a ClockSnapshot from the header's start_time_ns and
//     start_realtime_ns.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "collector/decode/payload_schema.hpp"
#include "collector/export/perfetto_trace.hpp"
#include "collector/recording/recording_reader.hpp"
#include "collector/recording/time_ordered_reader.hpp"

namespace perfstream::exporter {

struct PerfettoExportOptions {
  std::size_t bundle_events = 1024;  // per CPU, before a bundle is written
  recording::MergeOptions merge;
};

struct PerfettoExportSummary {
  std::uint64_t records = 0;
  std::uint64_t sched_switches = 0;
  std::uint64_t instants = 0;
  std::uint64_t lost_notices = 0;
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;
};

class PerfettoExporter {
 public:
  PerfettoExporter(recording::RecordingReader& reader, const PerfettoExportOptions& options, std::ostream& out);
  ~PerfettoExporter();

  // Reads the whole recording and writes the trace. The reader's damage and problems are for the caller.
  Result<PerfettoExportSummary> run();
  // The merge, for the caller's report of records out of time order.
  const recording::TimeOrderedReader& merge() const { return *merge_; }

 private:
  enum class Role { kGeneric, kSchedSwitch, kExec, kFork, kExit };
  // A schema's role and where its fields are in decoded values (-1: it has no such field).
  struct SchemaInfo {
    Role role = Role::kGeneric;
    std::string name;
    std::map<std::string, int> index;
    std::set<std::string> argv_fields, path_argv_fields;  // STRING fields holding NUL-separated strings
    int at(const std::string& field) const;
  };
  const SchemaInfo& info(const v1::EventSchema* schema);
  void record(const recording::TimeOrderedReader::Entry& e);
  void lost(const recording::TimeOrderedReader::Entry& e);
  void sched_switch(const SchemaInfo& s, const recording::TimeOrderedReader::Entry& e);
  void process_events(const SchemaInfo& s, const v1::EventSchema& schema, const recording::TimeOrderedReader::Entry& e);
  void instant(const SchemaInfo& s, const recording::TimeOrderedReader::Entry& e);
  void note_task(std::uint64_t ts, std::int32_t pid, std::int32_t tid, const std::string& comm);
  std::int64_t sval(const SchemaInfo& s, const char* field, std::int64_t otherwise = 0) const;
  std::string text(const SchemaInfo& s, const char* field) const;
  bool list_hint(const SchemaInfo& s, const std::string& field) const;
  void split_words(const std::string& text, Annotation& a);

  recording::RecordingReader& reader_;
  PerfettoExportOptions options_;
  PerfettoTraceWriter writer_;
  std::unique_ptr<recording::TimeOrderedReader> merge_;
  std::map<const v1::EventSchema*, SchemaInfo> schemas_;
  SchemaInfo unknown_;
  std::vector<FieldValue> values_;  // reused from record to record
  std::vector<Annotation> annotations_;
  std::vector<Annotation> pending_;  // annotations a field adds after itself (path_argv's args)
  const SchemaInfo* current_ = nullptr;
  std::set<std::int32_t> processes_seen_;
  std::set<std::int32_t> threads_seen_;
  PerfettoExportSummary summary_;
};

}  // namespace perfstream::exporter
