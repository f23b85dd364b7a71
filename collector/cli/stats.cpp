// `perfstream stats`: what a recording holds: where and when it was made, records and losses per CPU and
// per event type, rates over its time span, how well it compressed, how it ended, the collector's own
// counters from the trailer, and any damage. An aligned table by default, one JSON object with --json.
//
// Bytes: "payload" is the record payloads; "batch messages" the batches decompressed (payloads plus the
// time/CPU/size columns and lost notices); "on disk" the batch frames as stored (frame headers and zstd
// frames); the ratio is batch messages to on disk. Rates are over the span from the first record's time
// to the last's; MB is 10^6 bytes.
// Reading: batch by batch in file order through the reader library (no time order is needed to count), so
// memory does not grow with the recording; "-" reads standard input; a rotated recording is read from its
// first file on.
// --by KEY[,KEY] prints, instead of the summary, records and payload bytes per distinct value of the keys
// ("event", "cpu" or any field of the recording's events; cli/value_counts.hpp), most records first, as
// `perf report --sort comm` does; --top N keeps the first N rows and sums the rest into one "other" row.
// Exit status as for dump: 0; 1 for an unreadable file, a corrupt frame without --skip-corrupt, or
// sequence and totals problems; 2 usage.
#include <algorithm>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "collector/cli/commands.hpp"
#include "collector/cli/options.hpp"
#include "collector/cli/render.hpp"
#include "collector/cli/recording_report.hpp"
#include "collector/cli/value_counts.hpp"
#include "collector/decode/payload_schema.hpp"
#include "collector/util/text.hpp"

namespace perfstream::cli {
namespace {

struct CpuRow {
  std::uint64_t records = 0;
  std::uint64_t lost_kernel = 0;
  std::uint64_t lost_collector = 0;
  std::uint64_t unwritable = 0;  // from the last trailer: records the BPF programs could not write
  std::uint64_t payload_bytes = 0;
};

struct EventRow {
  std::string name;
  std::uint64_t records = 0;
  std::uint64_t payload_bytes = 0;
};

struct Summary {
  std::map<std::uint32_t, CpuRow> cpus;
  std::vector<EventRow> events;  // the header's schemas in order, then "unknown" when there were such records
  CpuRow total;
  std::uint64_t batches = 0;
  std::uint64_t first_ns = 0, last_ns = 0;
  double duration_s = 0;
  double records_per_s = 0, payload_mb_per_s = 0;
  std::uint64_t file_bytes = 0, batch_message_bytes = 0, on_disk_bytes = 0;
  double ratio = 0;
};

// Reads the whole recording, batch by batch, into the summary, and into `by` when given.
Summary summarize(recording::RecordingReader& reader, ValueCounts* by) {
  Summary s;
  const auto& schemas = reader.header().events();
  std::map<std::string, std::size_t> event_index;
  for (const auto& schema : schemas) {
    const std::string name = !schema.name().empty() ? schema.name() : schema.type_name();
    if (event_index.emplace(name, s.events.size()).second) s.events.push_back(EventRow{name, 0, 0});
  }
  // Events by schema (per piece: every piece has its own header), so names are looked up once a schema.
  std::map<const v1::EventSchema*, std::size_t> row_of_schema;
  auto row_of = [&](const v1::EventSchema* schema) -> std::size_t {
    auto it = row_of_schema.find(schema);
    if (it != row_of_schema.end()) return it->second;
    std::string name = "unknown";
    if (schema != nullptr) name = !schema->name().empty() ? schema->name() : schema->type_name();
    auto [row, added] = event_index.emplace(name, s.events.size());
    if (added) s.events.push_back(EventRow{name, 0, 0});
    row_of_schema.emplace(schema, row->second);
    return row->second;
  };
  bool any = false;
  recording::ReadBatch rb;
  while (reader.next(rb)) {
    const recording::DecodedBatch& b = rb.batch;
    const auto& piece_schemas = reader.pieces()[rb.piece].header.events();
    // Records and losses per CPU are the reader's counts (below); payload bytes are counted here.
    CpuRow* row = nullptr;
    std::uint32_t row_cpu = 0;
    for (std::size_t i = 0; i < b.size(); ++i) {
      if (row == nullptr || b.cpus[i] != row_cpu) {
        row_cpu = b.cpus[i];
        row = &s.cpus[row_cpu];
      }
      const std::span<const char> payload = b.payload(i);
      row->payload_bytes += payload.size();
      const v1::EventSchema* schema = schema_for_payload(piece_schemas, payload);
      EventRow& event = s.events[row_of(schema)];
      if (by != nullptr) by->add(schema, event.name, b.cpus[i], payload);
      ++event.records;
      event.payload_bytes += payload.size();
      const std::uint64_t t = b.times[i];
      if (!any || t < s.first_ns) s.first_ns = t;
      if (!any || t > s.last_ns) s.last_ns = t;
      any = true;
    }
  }
  for (const auto& [cpu, counts] : reader.cpu_counts()) {
    CpuRow& row = s.cpus[cpu];
    row.records = counts.records;
    row.lost_kernel = counts.lost_kernel;
    row.lost_collector = counts.lost_collector;
  }
  // Cumulative over the whole recording, so the last piece's trailer has them all.
  if (const v1::TraceTrailer* trailer = reader.last_trailer(); trailer != nullptr) {
    for (const auto& t : trailer->cpus()) {
      if (t.unwritable() > 0) s.cpus[t.cpu()].unwritable = t.unwritable();
    }
  }
  for (const auto& [cpu, row] : s.cpus) {
    s.total.unwritable += row.unwritable;
    s.total.records += row.records;
    s.total.lost_kernel += row.lost_kernel;
    s.total.lost_collector += row.lost_collector;
    s.total.payload_bytes += row.payload_bytes;
  }
  for (const auto& f : reader.pieces()) {
    s.batches += f.batches;
    s.file_bytes += f.file_size;
    s.batch_message_bytes += f.batch_message_bytes;
    s.on_disk_bytes += f.batch_frame_bytes;
  }
  s.duration_s = static_cast<double>(s.last_ns - s.first_ns) / 1e9;
  if (s.duration_s > 0) {
    s.records_per_s = static_cast<double>(s.total.records) / s.duration_s;
    s.payload_mb_per_s = static_cast<double>(s.total.payload_bytes) / 1e6 / s.duration_s;
  }
  if (s.on_disk_bytes > 0) s.ratio = static_cast<double>(s.batch_message_bytes) / static_cast<double>(s.on_disk_bytes);
  return s;
}

std::string joined(const google::protobuf::RepeatedPtrField<std::string>& list, const char* sep) {
  std::string out;
  for (const auto& s : list) out += (out.empty() ? "" : sep) + s;
  return out;
}

// How the recording ended, in words.
std::string ending(const recording::RecordingReader& reader) {
  const recording::PieceInfo& last = reader.pieces().back();
  if (!last.trailer) return "no trailer: the recording did not end cleanly (stopped hard, or still being written)";
  if (last.trailer->rotated()) {
    return "continues in piece " + std::to_string(last.header.piece() + 1) + ", which was not read";
  }
  if (last.trailer->expired_after_ns() != 0) {
    std::string gone;
    append_seconds(gone, last.trailer->expired_after_ns());
    return "expired: the sink ended it after its collector had been gone " + gone +
           " s (sink --expire); the collector never sent its own trailer";
  }
  if (!reader.problems().empty()) {
    return "with a trailer, but not cleanly: " + std::to_string(reader.problems().size()) +
           (reader.problems().size() == 1 ? " problem" : " problems") + " (below)";
  }
  return "cleanly";
}

std::string u(std::uint64_t v) { return std::to_string(v); }

// Where, when and from what the recording was made, and how it ended: keys and values both left-aligned.
void print_overview(const recording::RecordingReader& trace, const Summary& s, std::ostream& out) {
  const v1::TraceHeader& h = trace.header();
  std::string files;
  for (const auto& f : trace.pieces()) files += (files.empty() ? "" : ", ") + f.path;
  std::size_t key_width = 0;
  std::vector<std::pair<std::string, std::string>> lines = {
      {"recording", h.recording_id().empty() ? "-" : h.recording_id()},
      {"files", files},
      {"host", h.host()},
      {"kernel", h.kernel_release()},
      {"probes", joined(h.probes(), ", ")},
      {"cpus", "recorded " + h.recorded_cpus() + " (online " + h.online_cpus() + ", possible " +
                   u(h.possible_cpus()) + ")"},
      {"clock", render::clock_name(h.clock())},
      {"time span", s.total.records > 0 ? render::format_time(s.first_ns) + " to " + render::format_time(s.last_ns) +
                                              " (" + render::format_fixed(s.duration_s, 9) + " s)"
                                        : std::string("no records")},
      {"ended", ending(trace)},
  };
  for (const auto& [k, v] : lines) key_width = std::max(key_width, k.size());
  for (const auto& [k, v] : lines) out << k << std::string(key_width - k.size() + 2, ' ') << v << "\n";
}

// A CPU column's value: the number, or "ring" for the records and counters of a BPF ring buffer, which
// carry no CPU (kRingbufCpu, docs/FORMAT.md).
std::string cpu_label(std::uint32_t cpu) { return cpu == 0xffffffffu ? std::string("ring") : u(cpu); }

// What the kernel does not report for a ring buffer, said where its counters are shown.
void print_ringbuf_notes(const v1::TraceTrailer& trailer, std::ostream& out) {
  for (const auto& t : trailer.cpus()) {
    if (!t.lost_not_counted()) continue;
    out << "ring buffer: the kernel counts no lost records for a BPF ring buffer, so lost (kernel) is 0 whatever "
           "happened: a record that did not fit failed in the BPF program, which alone can count it; the ring "
           "was at most "
        << t.fill_high_water() << " of " << t.ring_size() << " bytes full\n";
    if (t.discarded() > 0) out << "ring buffer: " << t.discarded() << " records discarded by the BPF program\n";
  }
}

// "unwritable (BPF)": records the BPF programs could not write at all (no live ring on the CPU); the
// kernel reports nothing about them, the built-in probes count them (trailer).
void print_cpu_table(const recording::RecordingReader& trace, const Summary& s, std::ostream& out) {
  render::Table cpus({"CPU", "records", "lost (kernel)", "unwritable (BPF)", "lost (collector)", "payload bytes"});
  for (const auto& [cpu, row] : s.cpus) {
    cpus.add({cpu_label(cpu), u(row.records), u(row.lost_kernel), u(row.unwritable), u(row.lost_collector),
              u(row.payload_bytes)});
  }
  cpus.add({"total", u(s.total.records), u(s.total.lost_kernel), u(s.total.unwritable), u(s.total.lost_collector),
            u(s.total.payload_bytes)});
  out << cpus.render();
  if (const v1::TraceTrailer* trailer = trace.last_trailer(); trailer != nullptr) {
    print_ringbuf_notes(*trailer, out);
    for (const auto& t : trailer->cpus()) {
      if (t.unwritable() > 0) {
        out << "CPU " << t.cpu() << ": " << t.unwritable() << " records could not be written by the BPF programs ("
            << render::unwritable_reason(t.unwritable_errno()) << ")\n";
      }
      if (t.untracked_syscalls() > 0) {
        out << "CPU " << t.cpu() << ": " << t.untracked_syscalls()
            << " syscalls were not recorded: the probes' map of syscalls in progress was full\n";
      }
    }
  }
}

void print_event_table(const Summary& s, std::ostream& out) {
  render::Table events({"event", "records", "payload bytes"});
  for (const auto& e : s.events) events.add({e.name, u(e.records), u(e.payload_bytes)});
  events.add({"total", u(s.total.records), u(s.total.payload_bytes)});
  out << events.render();
}

void print_rate_and_bytes(const Summary& s, std::ostream& out) {
  if (s.duration_s > 0) {
    out << "rate   " << render::format_fixed(s.records_per_s, 1) << " records/s, "
        << render::format_fixed(s.payload_mb_per_s, 3) << " MB/s of payload\n";
  } else {
    out << "rate   n/a (the records span no time)\n";
  }
  out << "bytes  " << s.total.payload_bytes << " payload, " << s.batch_message_bytes << " in batch messages ("
      << s.batches << (s.batches == 1 ? " batch" : " batches") << ", raw) -> " << s.on_disk_bytes
      << " on disk (compressed), ratio " << render::format_fixed(s.ratio, 2) << "; files " << s.file_bytes
      << " bytes\n";
}

// The collector's own counters from the last trailer, when it has any.
void print_collector_counters(const recording::RecordingReader& trace, std::ostream& out) {
  const v1::TraceTrailer* trailer = trace.last_trailer();
  if (trailer == nullptr || trailer->cpus_size() == 0) return;
  out << "\ncollector counters (trailer):\n";
  render::Table c({"CPU", "samples", "sample bytes", "lost", "unwritable", "corrupt", "fill high water", "ring size",
                   "wakeups", "passes"});
  for (const auto& t : trailer->cpus()) {
    c.add({cpu_label(t.cpu()), u(t.samples()), u(t.sample_bytes()), u(t.lost()), u(t.unwritable()), u(t.corrupt()),
           u(t.fill_high_water()), u(t.ring_size()), u(t.wakeups()), u(t.passes())});
  }
  out << c.render();
}

void print_problems_and_damage(const recording::RecordingReader& trace, std::ostream& out) {
  if (!trace.problems().empty()) {
    out << "\nproblems:\n";
    for (const auto& p : trace.problems()) out << "  " << p << "\n";
  }
  if (!trace.damage().empty()) {
    out << "\ndamage:\n";
    for (const auto& d : trace.damage()) {
      out << "  " << d.path << " at byte " << d.offset << ": " << (d.truncated ? "cut short" : "corrupt") << ": "
          << d.message;
      if (d.resumed_at) out << " (read on from byte " << *d.resumed_at << ")";
      out << "\n";
    }
  }
}

void print_text(const recording::RecordingReader& trace, const Summary& s, std::ostream& out) {
  print_overview(trace, s, out);
  out << "\n";
  print_cpu_table(trace, s, out);
  out << "\n";
  print_event_table(s, out);
  out << "\n";
  print_rate_and_bytes(s, out);
  print_collector_counters(trace, out);
  print_problems_and_damage(trace, out);
}

std::string json_str(const std::string& v) { return render::json_string(v); }

// The JSON arrays of print_json, one function each: "[...]".
std::string json_files(const recording::RecordingReader& trace) {
  std::string o = "[";
  for (std::size_t i = 0; i < trace.pieces().size(); ++i) {
    const auto& f = trace.pieces()[i];
    if (i != 0) o += ',';
    o += "{\"path\":" + json_str(f.path) + ",\"piece\":" + u(f.header.piece()) + ",\"size\":" + u(f.file_size) +
         ",\"batches\":" + u(f.batches) + ",\"records\":" + u(f.records) + ",\"trailer\":";
    if (f.trailer) {
      o += "{\"batches\":" + u(f.trailer->batches()) + ",\"records\":" + u(f.trailer->records()) +
           ",\"end_time_ns\":" + u(f.trailer->end_time_ns()) + ",\"rotated\":" + (f.trailer->rotated() ? "true" : "false") +
           ",\"expired_after_ns\":" + u(f.trailer->expired_after_ns()) + "}";
    } else {
      o += "null";
    }
    o += "}";
  }
  return o + "]";
}

std::string json_cpus(const Summary& s) {
  std::string o = "[";
  bool first = true;
  for (const auto& [cpu, row] : s.cpus) {
    o += first ? "" : ",";
    first = false;
    o += "{\"cpu\":" + u(cpu) + ",\"records\":" + u(row.records) + ",\"lost_kernel\":" + u(row.lost_kernel) +
         ",\"unwritable\":" + u(row.unwritable) + ",\"lost_collector\":" + u(row.lost_collector) +
         ",\"payload_bytes\":" + u(row.payload_bytes) + "}";
  }
  return o + "]";
}

std::string json_events(const Summary& s) {
  std::string o = "[";
  for (std::size_t i = 0; i < s.events.size(); ++i) {
    o += (i ? "," : "") + std::string("{\"event\":") + json_str(s.events[i].name) + ",\"records\":" +
         u(s.events[i].records) + ",\"payload_bytes\":" + u(s.events[i].payload_bytes) + "}";
  }
  return o + "]";
}

// The collector's own counters from the last trailer: [] without one.
std::string json_collector(const recording::RecordingReader& trace) {
  std::string o = "[";
  if (const v1::TraceTrailer* trailer = trace.last_trailer(); trailer != nullptr) {
    for (int i = 0; i < trailer->cpus_size(); ++i) {
      const auto& t = trailer->cpus(i);
      o += (i ? "," : "") + std::string("{\"cpu\":") + u(t.cpu()) + ",\"samples\":" + u(t.samples()) +
           ",\"sample_bytes\":" + u(t.sample_bytes()) + ",\"lost\":" + u(t.lost()) +
           ",\"unwritable\":" + u(t.unwritable()) + ",\"unwritable_errno\":" + u(t.unwritable_errno()) +
           ",\"corrupt\":" + u(t.corrupt()) +
           ",\"fill_high_water\":" + u(t.fill_high_water()) + ",\"ring_size\":" + u(t.ring_size()) +
           ",\"wakeups\":" + u(t.wakeups()) + ",\"passes\":" + u(t.passes()) +
           (t.lost_not_counted() ? ",\"lost_not_counted\":true,\"discarded\":" + u(t.discarded()) : std::string()) +
           "}";
    }
  }
  return o + "]";
}

std::string json_damage(const recording::RecordingReader& trace) {
  std::string o = "[";
  for (std::size_t i = 0; i < trace.damage().size(); ++i) {
    const recording::Damage& d = trace.damage()[i];
    o += (i ? "," : "") + std::string("{\"path\":") + json_str(d.path) + ",\"offset\":" + u(d.offset) +
         ",\"kind\":" + (d.truncated ? "\"truncated\"" : "\"corrupt\"") + ",\"message\":" + json_str(d.message) +
         ",\"resumed_at\":" + (d.resumed_at ? u(*d.resumed_at) : std::string("null")) + "}";
  }
  return o + "]";
}

void print_json(const recording::RecordingReader& trace, const Summary& s, std::ostream& out) {
  const v1::TraceHeader& h = trace.header();
  std::string o = "{";
  o += "\"recording_id\":" + json_str(h.recording_id());
  o += ",\"files\":" + json_files(trace);
  o += ",\"host\":" + json_str(h.host());
  o += ",\"kernel\":" + json_str(h.kernel_release());
  o += ",\"probes\":[";
  for (int i = 0; i < h.probes_size(); ++i) o += (i ? "," : "") + json_str(h.probes(i));
  o += "]";
  o += ",\"clock\":" + json_str(render::clock_name(h.clock()));
  o += ",\"recorded_cpus\":" + json_str(h.recorded_cpus());
  if (s.total.records > 0) {
    o += ",\"time\":{\"first_ns\":" + u(s.first_ns) + ",\"last_ns\":" + u(s.last_ns) +
         ",\"duration_s\":" + render::format_fixed(s.duration_s, 9) + "}";
  } else {
    o += ",\"time\":null";
  }
  o += ",\"cpus\":" + json_cpus(s);
  o += ",\"events\":" + json_events(s);
  o += ",\"totals\":{\"records\":" + u(s.total.records) + ",\"batches\":" + u(s.batches) +
       ",\"lost_kernel\":" + u(s.total.lost_kernel) + ",\"unwritable\":" + u(s.total.unwritable) +
       ",\"lost_collector\":" + u(s.total.lost_collector) +
       ",\"payload_bytes\":" + u(s.total.payload_bytes) + "}";
  // No time span, no rate: null rather than a made-up number.
  o += ",\"rates\":{\"records_per_s\":" + (s.duration_s > 0 ? render::format_fixed(s.records_per_s, 3) : "null") +
       ",\"payload_mb_per_s\":" + (s.duration_s > 0 ? render::format_fixed(s.payload_mb_per_s, 6) : "null") + "}";
  o += ",\"bytes\":{\"payload\":" + u(s.total.payload_bytes) + ",\"batch_messages\":" + u(s.batch_message_bytes) +
       ",\"on_disk\":" + u(s.on_disk_bytes) + ",\"files\":" + u(s.file_bytes) +
       ",\"ratio\":" + render::format_fixed(s.ratio, 3) + "}";
  o += std::string(",\"ended_cleanly\":") + (trace.ended_cleanly() ? "true" : "false");
  o += ",\"problems\":[";
  for (std::size_t i = 0; i < trace.problems().size(); ++i) o += (i ? "," : "") + json_str(trace.problems()[i]);
  o += "]";
  o += ",\"collector\":" + json_collector(trace);
  o += ",\"damage\":" + json_damage(trace);
  o += "}\n";
  out << o;
}

std::string percent(std::uint64_t part, std::uint64_t whole) {
  return whole == 0 ? std::string("-") : render::format_fixed(100.0 * static_cast<double>(part) / static_cast<double>(whole), 2);
}

// The rows past --top, summed.
struct OtherRows {
  std::uint64_t values = 0, records = 0, payload_bytes = 0;
};

OtherRows keep_top(std::vector<ValueCounts::Row>& rows, std::uint64_t top) {
  OtherRows other;
  if (top == 0 || rows.size() <= top) return other;
  for (std::size_t i = top; i < rows.size(); ++i) {
    ++other.values;
    other.records += rows[i].records;
    other.payload_bytes += rows[i].payload_bytes;
  }
  rows.resize(top);
  return other;
}

void print_value_counts_text(const ValueCounts& by, std::uint64_t top, const Summary& s, std::ostream& out) {
  std::vector<ValueCounts::Row> rows = by.sorted();
  const OtherRows other = keep_top(rows, top);
  std::vector<std::string> heading = by.keys();
  heading.insert(heading.end(), {"records", "%", "payload bytes"});
  render::Table table(std::move(heading), by.keys().size());
  const std::size_t blanks = by.keys().size() - 1;
  auto add = [&](std::vector<std::string> cells, std::uint64_t records, std::uint64_t bytes) {
    cells.insert(cells.end(), {u(records), percent(records, s.total.records), u(bytes)});
    table.add(std::move(cells));
  };
  for (const auto& row : rows) add(row.text, row.records, row.payload_bytes);
  auto label = [&](std::string first) {
    std::vector<std::string> cells{std::move(first)};
    cells.resize(blanks + 1);
    return cells;
  };
  if (other.values > 0) {
    add(label("other (" + u(other.values) + (other.values == 1 ? " value)" : " values)")), other.records,
        other.payload_bytes);
  }
  add(label("total"), s.total.records, s.total.payload_bytes);
  out << table.render();
}

void print_value_counts_json(const ValueCounts& by, std::uint64_t top, const Summary& s, std::ostream& out) {
  std::vector<ValueCounts::Row> rows = by.sorted();
  const OtherRows other = keep_top(rows, top);
  std::string o = "{\"by\":[";
  for (std::size_t k = 0; k < by.keys().size(); ++k) o += (k ? "," : "") + json_str(by.keys()[k]);
  o += "],\"rows\":[";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    o += i ? ",{" : "{";
    for (std::size_t k = 0; k < by.keys().size(); ++k) o += json_str(by.keys()[k]) + ":" + rows[i].json[k] + ",";
    o += "\"records\":" + u(rows[i].records) + ",\"payload_bytes\":" + u(rows[i].payload_bytes) + "}";
  }
  o += "],\"other\":";
  o += other.values == 0 ? std::string("null")
                         : "{\"values\":" + u(other.values) + ",\"records\":" + u(other.records) +
                               ",\"payload_bytes\":" + u(other.payload_bytes) + "}";
  o += ",\"total\":{\"records\":" + u(s.total.records) + ",\"payload_bytes\":" + u(s.total.payload_bytes) + "}}\n";
  out << o;
}

// The --by keys, checked against the recording's events: an error names a key no event has, and the keys
// there are.
Result<std::vector<std::string>> by_keys(const std::string& text, const v1::TraceHeader& header) {
  std::vector<std::string> keys;
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = text.find(',', start);
    keys.push_back(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  std::vector<std::string> known = {"event", "cpu"};
  for (const auto& schema : header.events()) {
    for (const auto& field : schema.fields()) {
      if (std::find(known.begin(), known.end(), field.name()) == known.end()) known.push_back(field.name());
    }
  }
  for (const auto& key : keys) {
    if (key.empty()) return Error("--by '" + text + "': an empty key (expected KEY[,KEY...])");
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      return Error("--by " + key + ": no event of this recording has that field (keys: " + list + ")");
    }
  }
  return keys;
}

}  // namespace

int run_stats(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  ArgParser parser("stats", "perfstream stats [flags] FILE...");
  parser.flag("json", 0, "one JSON object")
      .option("by", 0, "KEY[,KEY]",
              "records and payload bytes per value of event, cpu or any field (comm, pid, path...), instead of "
              "the summary")
      .option("top", 0, "N", "with --by: the N rows with the most records, the rest summed as other")
      .flag("help", 'h', "show this help");
  add_reading_flags(parser);
  if (auto exit_status = parser.parse_or_exit(args, out, err)) return *exit_status;
  std::vector<std::string> files = parser.positionals();
  files.insert(files.end(), parser.rest().begin(), parser.rest().end());
  if (files.empty()) {
    err << "perfstream stats: no trace file given (usage: perfstream stats [flags] FILE...)\n";
    return 2;
  }
  recording::RecordingOptions read;
  if (!reading_options(parser, "stats", read, err)) return 2;
  std::uint64_t top = 0;
  if (auto t = parser.value("top")) {
    if (!parser.has("by")) {
      err << "perfstream stats: --top needs --by\n";
      return 2;
    }
    auto n = parse_count("--top", *t);
    if (!n || *n == 0) {
      err << "perfstream stats: " << (n ? "--top '" + *t + "': expected a count of at least 1" : n.error().message())
          << "\n";
      return 2;
    }
    top = *n;
  }
  read.note = [&err](const std::string& line) { err << "perfstream stats: " << line << "\n"; };
  auto reader = recording::RecordingReader::open(files, read);
  if (!reader) {
    err << "perfstream stats: " << reader.error().message() << "\n";
    return 1;
  }
  std::optional<ValueCounts> by;
  if (auto text = parser.value("by")) {
    auto keys = by_keys(*text, (*reader)->header());
    if (!keys) {
      err << "perfstream stats: " << keys.error().message() << "\n";
      return 2;
    }
    by.emplace(std::move(*keys));
  }
  const Summary summary = summarize(**reader, by ? &*by : nullptr);
  if (by && parser.has("json")) {
    print_value_counts_json(*by, top, summary, out);
  } else if (by) {
    print_value_counts_text(*by, top, summary, out);
  } else if (parser.has("json")) {
    print_json(**reader, summary, out);
  } else {
    print_text(**reader, summary, out);
  }
  out.flush();
  return report_reading("stats", **reader, read.skip_corrupt, nullptr, 0, err) ? 1 : 0;
}

}  // namespace perfstream::cli
