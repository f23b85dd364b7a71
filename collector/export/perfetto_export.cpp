#include "collector/export/perfetto_export.hpp"

#include <cstring>

#include "collector/decode/display_hints.hpp"

namespace perfstream::exporter {
namespace {

std::optional<PerfettoClock> perfetto_clock(v1::Clock clock) {
  switch (clock) {
    case v1::REALTIME: return PerfettoClock::kRealtime;
    case v1::MONOTONIC: return PerfettoClock::kMonotonic;
    case v1::MONOTONIC_RAW: return PerfettoClock::kMonotonicRaw;
    case v1::BOOTTIME: return PerfettoClock::kBoottime;
    default: return std::nullopt;
  }
}

void append_hex(std::string& out, std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (char c : bytes) {
    const auto u = static_cast<unsigned char>(c);
    out += kDigits[u >> 4];
    out += kDigits[u & 15];
  }
}

// The strings after the file name in an exec record's `filename` (NUL-separated: file name, argv[0..n)),
// read from the payload itself: the decoded STRING stops at the first NUL.
std::vector<std::string> exec_argv(const v1::EventSchema& schema, std::span<const char> payload, std::uint64_t used,
                                   std::uint64_t count) {
  std::vector<std::string> argv;
  for (const auto& f : schema.fields()) {
    if (f.name() != "filename") continue;
    if (f.offset() >= payload.size()) return argv;
    const std::size_t n = std::min<std::uint64_t>({used, f.size(), payload.size() - f.offset()});
    std::string_view all(payload.data() + f.offset(), n);
    std::size_t at = all.find('\0');  // past the file name
    while (at != std::string_view::npos && at + 1 < all.size() && argv.size() < count) {
      const std::size_t end = all.find('\0', at + 1);
      argv.emplace_back(all.substr(at + 1, (end == std::string_view::npos ? all.size() : end) - at - 1));
      at = end;
    }
  }
  return argv;
}

}  // namespace

int PerfettoExporter::SchemaInfo::at(const std::string& field) const {
  auto it = index.find(field);
  return it == index.end() ? -1 : it->second;
}

PerfettoExporter::PerfettoExporter(recording::RecordingReader& reader, const PerfettoExportOptions& options,
                                   std::ostream& out)
    : reader_(reader), options_(options), writer_(out, options.bundle_events) {
  unknown_.name = "unknown";
}

PerfettoExporter::~PerfettoExporter() = default;

const PerfettoExporter::SchemaInfo& PerfettoExporter::info(const v1::EventSchema* schema) {
  if (schema == nullptr) return unknown_;
  auto [it, added] = schemas_.try_emplace(schema);
  if (!added) return it->second;
  SchemaInfo& s = it->second;
  s.name = !schema->name().empty() ? schema->name() : schema->type_name();
  // By struct: a --object event may call itself "exec"; the built-in structs are what the mapping reads.
  const std::string& t = schema->type_name();
  if (t == "ps_sched_switch_event") s.role = Role::kSchedSwitch;
  if (t == "ps_exec_event") s.role = Role::kExec;
  if (t == "ps_fork_event") s.role = Role::kFork;
  if (t == "ps_exit_event") s.role = Role::kExit;
  for (int i = 0; i < schema->fields_size(); ++i) {
    const auto& f = schema->fields(i);
    s.index.emplace(f.name(), i);
    if (f.hint() == "argv") s.argv_fields.insert(f.name());
    if (f.hint() == "path_argv") s.path_argv_fields.insert(f.name());
  }
  return s;
}

std::int64_t PerfettoExporter::sval(const SchemaInfo& s, const char* field, std::int64_t otherwise) const {
  const int i = s.at(field);
  if (i < 0 || static_cast<std::size_t>(i) >= values_.size() || values_[i].missing) return otherwise;
  const FieldValue& v = values_[i];
  return v.type == v1::Field::SIGNED ? v.signed_value : static_cast<std::int64_t>(v.unsigned_value);
}

std::string PerfettoExporter::text(const SchemaInfo& s, const char* field) const {
  const int i = s.at(field);
  if (i < 0 || static_cast<std::size_t>(i) >= values_.size() || values_[i].missing) return {};
  return values_[i].text;
}

Result<PerfettoExportSummary> PerfettoExporter::run() {
  const v1::TraceHeader& h = reader_.header();
  if (h.start_time_ns() != 0) {
    writer_.clock_snapshot(h.start_time_ns(), perfetto_clock(h.clock()),
                           h.start_realtime_ns() != 0 ? std::optional<std::uint64_t>(h.start_realtime_ns())
                                                      : std::nullopt);
  }
  merge_ = std::make_unique<recording::TimeOrderedReader>(reader_, options_.merge);
  recording::TimeOrderedReader::Entry e;
  while (merge_->next(e)) {
    if (e.is_lost) {
      lost(e);
    } else {
      record(e);
    }
  }
  if (auto st = writer_.finish(); !st) return st.error();
  summary_.packets = writer_.packets();
  summary_.bytes = writer_.bytes();
  return summary_;
}

void PerfettoExporter::record(const recording::TimeOrderedReader::Entry& e) {
  ++summary_.records;
  const auto& schemas = reader_.pieces()[e.piece].header.events();
  const std::span<const char> payload = e.payload();
  const v1::EventSchema* schema = schema_for_payload(schemas, payload);
  const SchemaInfo& s = info(schema);
  if (schema != nullptr) {
    decode_payload_into(*schema, payload, values_);
  } else {
    values_.clear();
  }
  if (s.role == Role::kSchedSwitch) {
    sched_switch(s, e);
    return;
  }
  if (schema != nullptr && s.role != Role::kGeneric) process_events(s, *schema, e);
  instant(s, e);
}

void PerfettoExporter::sched_switch(const SchemaInfo& s, const recording::TimeOrderedReader::Entry& e) {
  SchedSwitch sw;
  sw.ts = e.time_ns;
  sw.prev_pid = static_cast<std::int32_t>(sval(s, "prev_pid"));
  sw.prev_prio = static_cast<std::int32_t>(sval(s, "prev_prio"));
  sw.prev_state = sval(s, "prev_state");
  sw.prev_comm = text(s, "prev_comm");
  sw.next_pid = static_cast<std::int32_t>(sval(s, "next_pid"));
  sw.next_prio = static_cast<std::int32_t>(sval(s, "next_prio"));
  sw.next_comm = text(s, "next_comm");
  writer_.sched_switch(e.cpu, sw);
  ++summary_.sched_switches;
}

void PerfettoExporter::note_task(std::uint64_t ts, std::int32_t pid, std::int32_t tid, const std::string& comm) {
  if (pid <= 0) return;
  std::vector<ProcessInfo> processes;
  std::vector<std::tuple<std::int32_t, std::int32_t, std::string>> threads;
  if (processes_seen_.insert(pid).second) {
    ProcessInfo p;
    p.pid = pid;
    p.cmdline = {comm};
    p.cmdline_is_comm = true;
    processes.push_back(std::move(p));
  }
  if (tid > 0 && threads_seen_.insert(tid).second) threads.emplace_back(tid, pid, comm);
  if (!processes.empty() || !threads.empty()) writer_.process_tree(ts, processes, threads);
}

void PerfettoExporter::process_events(const SchemaInfo& s, const v1::EventSchema& schema,
                                      const recording::TimeOrderedReader::Entry& e) {
  const std::uint64_t ts = e.time_ns;
  switch (s.role) {
    case Role::kFork: {
      const auto parent_pid = static_cast<std::int32_t>(sval(s, "parent_pid"));
      const auto parent_tid = static_cast<std::int32_t>(sval(s, "parent_tid"));
      const auto child_pid = static_cast<std::int32_t>(sval(s, "child_pid"));
      const auto child_tid = static_cast<std::int32_t>(sval(s, "child_tid"));
      const std::string comm = text(s, "comm");
      const bool is_thread = child_pid == parent_pid;
      note_task(ts, parent_pid, parent_tid, comm);
      writer_.new_task(e.cpu, ts, parent_tid, child_tid, comm, is_thread);
      std::vector<ProcessInfo> processes;
      if (!is_thread) {
        ProcessInfo p;
        p.pid = child_pid;
        p.ppid = parent_pid;
        p.cmdline = {comm};
        p.cmdline_is_comm = true;
        p.uid = static_cast<std::int32_t>(sval(s, "uid"));
        processes.push_back(std::move(p));
        processes_seen_.insert(child_pid);
      }
      threads_seen_.insert(child_tid);
      writer_.process_tree(ts, processes, {{child_tid, child_pid, comm}});
      break;
    }
    case Role::kExec: {
      const auto pid = static_cast<std::int32_t>(sval(s, "pid"));
      const auto tid = static_cast<std::int32_t>(sval(s, "tid"));
      const std::string comm = text(s, "comm");
      if (sval(s, "ret", -1) != 0) {
        note_task(ts, pid, tid, comm);  // failed: the caller is unchanged
        break;
      }
      writer_.rename_task(e.cpu, ts, tid, "", comm);
      ProcessInfo p;
      p.pid = pid;
      p.ppid = static_cast<std::int32_t>(sval(s, "ppid"));
      p.uid = static_cast<std::int32_t>(sval(s, "uid"));
      p.cmdline = exec_argv(schema, e.payload(), static_cast<std::uint64_t>(sval(s, "filename_len")),
                            static_cast<std::uint64_t>(sval(s, "args_count")));
      if (p.cmdline.empty()) p.cmdline = {text(s, "filename").c_str()};  // the path, up to its NUL
      processes_seen_.insert(pid);
      threads_seen_.insert(tid);
      writer_.process_tree(ts, {p}, {{tid, pid, comm}});
      break;
    }
    case Role::kExit: {
      const auto pid = static_cast<std::int32_t>(sval(s, "pid"));
      const auto tid = static_cast<std::int32_t>(sval(s, "tid"));
      const std::string comm = text(s, "comm");
      note_task(ts, pid, tid, comm);
      writer_.free_task(e.cpu, ts, tid, comm);
      break;
    }
    default:
      break;
  }
}

// A field hinted argv (a list of strings) or path_argv (a path, then argv): the words, as an array; for
// path_argv the field keeps the path and the rest follow as `args`, as dump shows them.
bool PerfettoExporter::list_hint(const SchemaInfo& s, const std::string& field) const {
  return s.argv_fields.count(field) != 0 || s.path_argv_fields.count(field) != 0;
}

void PerfettoExporter::split_words(const std::string& text, Annotation& a) {
  std::vector<std::string_view> words;
  hints::split_argv(text, words);
  const SchemaInfo* s = current_;
  if (s != nullptr && s->path_argv_fields.count(a.name)) {
    a.string_value = words.empty() ? std::string() : std::string(words.front());
    Annotation args;
    args.name = "args";
    args.kind = Annotation::Kind::kStringArray;
    for (std::size_t i = 1; i < words.size(); ++i) args.strings.emplace_back(words[i]);
    pending_.push_back(std::move(args));
    return;
  }
  a.kind = Annotation::Kind::kStringArray;
  a.string_value.clear();
  for (auto w : words) a.strings.emplace_back(w);
}

void PerfettoExporter::instant(const SchemaInfo& s, const recording::TimeOrderedReader::Entry& e) {
  annotations_.clear();
  current_ = &s;
  for (const FieldValue& v : values_) {
    if (v.missing) continue;
    Annotation a;
    a.name = v.name;
    switch (v.type) {
      case v1::Field::SIGNED:
        a.kind = Annotation::Kind::kInt;
        a.int_value = v.signed_value;
        break;
      case v1::Field::UNSIGNED:
        a.kind = Annotation::Kind::kUint;
        a.uint_value = v.unsigned_value;
        break;
      case v1::Field::STRING:
        a.kind = Annotation::Kind::kString;
        a.string_value = v.text;
        if (list_hint(s, v.name)) split_words(v.text, a);  // NUL-separated strings (exec's file name and argv)
        break;
      default:
        a.kind = Annotation::Kind::kString;
        append_hex(a.string_value, v.text);
        break;
    }
    annotations_.push_back(std::move(a));
    for (auto& p : pending_) annotations_.push_back(std::move(p));
    pending_.clear();
  }
  if (values_.empty()) {  // no schema fits: the raw payload
    Annotation a;
    a.name = "payload";
    a.kind = Annotation::Kind::kString;
    append_hex(a.string_value, std::string_view(e.payload().data(), e.payload().size()));
    annotations_.push_back(std::move(a));
  }
  annotations_.push_back(Annotation{Annotation::Kind::kUint, "cpu", 0, e.cpu, {}, {}});
  // The thread the event happened in: a fork in its parent.
  const bool fork = s.role == Role::kFork;
  const auto pid = static_cast<std::int32_t>(sval(s, fork ? "parent_pid" : "pid"));
  auto tid = static_cast<std::int32_t>(sval(s, fork ? "parent_tid" : "tid", pid));
  if (tid <= 0) tid = pid;
  if (pid > 0) {
    const std::string comm = text(s, "comm");
    if (s.role == Role::kGeneric) note_task(e.time_ns, pid, tid, comm);
    writer_.thread_instant(e.time_ns, pid, tid, comm, s.name, annotations_);
  } else {
    writer_.named_instant(e.time_ns, s.name, s.name, annotations_);
  }
  ++summary_.instants;
}

void PerfettoExporter::lost(const recording::TimeOrderedReader::Entry& e) {
  const recording::LostEntry& l = e.lost();
  ++summary_.lost_notices;
  writer_.lost_events(l.cpu);
  std::vector<Annotation> a;
  a.push_back(Annotation{Annotation::Kind::kUint, "count", 0, l.count, {}, {}});
  a.push_back(Annotation{Annotation::Kind::kString, "source", 0, 0, l.from_collector ? "collector" : "kernel", {}});
  a.push_back(Annotation{Annotation::Kind::kUint, "cpu", 0, l.cpu, {}, {}});
  writer_.named_instant(l.sort_time_ns, "CPU " + std::to_string(l.cpu) + ": lost records",
                        "lost " + std::to_string(l.count) + " records", a);
}

}  // namespace perfstream::exporter
