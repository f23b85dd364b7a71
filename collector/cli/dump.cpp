// `perfstream dump`: prints the records of a recording, decoded by the schemas in its header, in time order
// across CPUs, with lost-event notices where they happened.
//
// Text, one line per record (perf script style):
//   12.000001000  [003]  openat  pid=42 tid=42 dfd=-100 flags=0x241 mode=0644 comm="bash" path="/tmp/x"
//   12.000002000  [001]  LOST 17 samples (kernel ring full)
// Integers in decimal, except fields whose name contains "flags" (hex, 0x...) or "mode" (octal, 0...);
// strings quoted (see render.hpp); byte arrays as hex, cut after 64 bytes with "...". The `kind` and
// `reserved` fields and the length fields of variable arrays are left out; fields past the end of a
// payload are left out.
// --json, one object per line:
//   {"time_ns":12000001000,"cpu":3,"event":"openat","fields":{"kind":2,"pid":42,...,"path":"/tmp/x"}}
//   {"time_ns":12000002000,"cpu":1,"lost":17,"source":"kernel"}
// with every field, integers as numbers, byte arrays as hex strings, fields past the payload as null.
// A record that no schema describes is event "unknown" with its payload as hex in "raw".
//
// Filters: --cpu selects records and lost notices; --pid, --event and --filter select records only, and
// lost notices stay in the output, since a loss may have hidden records that would have matched.
// --filter FIELD=VALUE compares strings exactly, integers by value (decimal, 0x hex or 0-prefixed octal,
// so a value can be pasted from the text output), byte arrays by their hex.
//
// Reading goes through the reader library (collector/recording/): in time order, in bounded memory, one
// batch at a time; FILE's rotated pieces (FILE.1, ...) are read after it; "-" reads standard input, as it
// is written (perfstream record -o - | perfstream dump -); --follow waits at the end of a recording that is
// still being written, like tail -f, across rotations, until its trailer. --since and --until (trace
// seconds, or +SECONDS from the recording's start) keep a time range; reading stops once past it.
//
// Exit status: 0; 1 when a file cannot be read at all, has a corrupt frame and --skip-corrupt was not given
// (everything before it is printed first), has missing, duplicated or reordered batches or totals that
// disagree with its trailer, or when records came out of time order; 2 for bad usage. A cut is a warning.
#include <cctype>
#include <charconv>
#include <limits>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "collector/cli/commands.hpp"
#include "collector/cli/options.hpp"
#include "collector/cli/render.hpp"
#include "collector/cli/recording_report.hpp"
#include "collector/decode/payload_schema.hpp"
#include "collector/kernel/cpu_set.hpp"

namespace perfstream::cli {
namespace {

constexpr std::size_t kTextBytesShown = 64;

struct FieldFilter {
  std::string field;
  std::string value;
};

struct DumpOptions {
  bool json = false;
  bool header = false;
  recording::RecordingOptions read;
  recording::MergeOptions merge;
  std::optional<std::string> since, until;
  std::optional<CpuSet> cpus;
  std::optional<std::uint64_t> pid;
  std::vector<std::string> events;
  std::vector<FieldFilter> filters;
  std::vector<std::string> files;
};

ArgParser make_parser() {
  ArgParser parser("dump", "perfstream dump [flags] FILE...");
  parser.flag("json", 0, "one JSON object per line")
      .flag("header", 0, "print the trace header first (host, kernel, CPUs, clock, probes, schemas)")
      .option("cpu", 'C', "LIST", "only these CPUs (like 0-3,5)")
      .option("pid", 'p', "PID", "only records whose pid field is PID")
      .option("event", 0, "NAME", "only events of this name (repeatable)")
      .option("filter", 0, "FIELD=VALUE", "only records whose FIELD equals VALUE (repeatable)")
      .option("since", 0, "TIME", "only from this trace time on: seconds (12.5), or +SECONDS from the start")
      .option("until", 0, "TIME", "only before this trace time: seconds, or +SECONDS from the start")
      .flag("follow", 'f', "wait for more at the end of a recording still being written, until its trailer")
      .option("window", 0, "SIZE", "look-ahead for recordings without watermarks (default 32M)")
      .flag("help", 'h', "show this help");
  add_reading_flags(parser);
  parser.notes("FILE may be - (standard input). A rotated recording is read from its first file on: FILE.1, "
               "FILE.2, ... follow by themselves.");
  return parser;
}

// An integer as the user wrote it: decimal, 0x hex, 0-prefixed octal, optionally negative.
struct IntLiteral {
  bool negative = false;
  std::uint64_t magnitude = 0;
};

std::optional<IntLiteral> parse_int_literal(std::string_view s) {
  IntLiteral lit;
  if (!s.empty() && s[0] == '-') {
    lit.negative = true;
    s.remove_prefix(1);
  }
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s.remove_prefix(2);
  } else if (s.size() > 1 && s[0] == '0') {
    base = 8;
    s.remove_prefix(1);
  }
  if (s.empty()) return std::nullopt;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), lit.magnitude, base);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return lit;
}

bool value_equals(const FieldValue& v, const std::string& wanted) {
  if (v.missing) return false;
  switch (v.type) {
    case v1::Field::STRING:
      return v.text == wanted;
    case v1::Field::BYTES: {
      std::string hex;
      render::append_hex(hex, v.text);
      std::string lower = wanted;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      return hex == lower || v.text == wanted;
    }
    case v1::Field::SIGNED:
    case v1::Field::UNSIGNED: {
      auto lit = parse_int_literal(wanted);
      if (!lit) return false;
      if (lit->negative) {
        if (lit->magnitude > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) + 1) return false;
        return v.signed_value == static_cast<std::int64_t>(0 - lit->magnitude);
      }
      // The value as printed (raw bits for flags in hex) or as a number (a sign-extended field).
      return v.unsigned_value == lit->magnitude || static_cast<std::uint64_t>(v.signed_value) == lit->magnitude;
    }
    default:
      return false;
  }
}

// How text output prints an integer field: hex for names with "flags", octal for "mode", else decimal.
enum class IntStyle : std::uint8_t { Signed, Unsigned, Hex, Octal };

IntStyle int_style(const v1::Field& f) {
  if (f.name().find("flags") != std::string::npos) return IntStyle::Hex;
  if (f.name().find("mode") != std::string::npos) return IntStyle::Octal;
  return f.type() == v1::Field::SIGNED ? IntStyle::Signed : IntStyle::Unsigned;
}

void append_integer_text(std::string& out, const FieldValue& v, IntStyle style) {
  switch (style) {
    case IntStyle::Hex:
      out += "0x";
      render::append_number(out, v.unsigned_value, 16);
      break;
    case IntStyle::Octal:
      out += '0';
      if (v.unsigned_value != 0) render::append_number(out, v.unsigned_value, 8);
      break;
    case IntStyle::Signed: render::append_signed(out, v.signed_value); break;
    case IntStyle::Unsigned: render::append_number(out, v.unsigned_value); break;
  }
}

void append_integer_json(std::string& out, const FieldValue& v) {
  if (v.type == v1::Field::SIGNED) {
    render::append_signed(out, v.signed_value);
  } else {
    render::append_number(out, v.unsigned_value);
  }
}


// Which fields of a schema text output leaves out: kind, reserved, and the length fields of arrays.
std::vector<bool> hidden_in_text(const v1::EventSchema& schema) {
  std::vector<bool> hidden(schema.fields_size(), false);
  for (int i = 0; i < schema.fields_size(); ++i) {
    const std::string& name = schema.fields(i).name();
    if (name == "kind" || name.rfind("reserved", 0) == 0) hidden[i] = true;
    for (const auto& other : schema.fields()) {
      if (!other.length_field().empty() && other.length_field() == name) hidden[i] = true;
    }
  }
  return hidden;
}

const std::string& event_name(const v1::EventSchema* schema) {
  static const std::string unknown = "unknown";
  if (schema == nullptr) return unknown;
  if (!schema->name().empty()) return schema->name();
  if (!schema->type_name().empty()) return schema->type_name();
  return unknown;
}

class Dumper {
 public:
  Dumper(const DumpOptions& options, recording::RecordingReader& reader, std::ostream& out, bool live)
      : options_(options), reader_(reader), out_(out), live_(live) {}

  // Prints everything; the merge is returned for its counters.
  std::unique_ptr<recording::TimeOrderedReader> run() {
    if (options_.header) options_.json ? header_json() : header_text();
    recording::MergeOptions merge = options_.merge;
    // Live: what is printed goes out before the reader waits for more input.
    if (live_) merge.before_read = [this] { flush(); };
    auto timeline = std::make_unique<recording::TimeOrderedReader>(reader_, merge);
    recording::TimeOrderedReader::Entry e;
    while (timeline->next(e)) {
      if (e.is_lost) {
        lost(e);
      } else {
        record(e);
      }
      if (buf_.size() >= (1u << 16)) flush();
    }
    flush();
    return timeline;
  }

 private:
  void flush() {
    out_ << buf_;
    buf_.clear();
    if (live_) out_.flush();  // past the stream's own buffer too: a reader of a pipe sees the lines now
  }

  void lost(const recording::TimeOrderedReader::Entry& e) {
    const recording::LostEntry& l = e.lost();
    const bool kernel = !l.from_collector;
    if (options_.json) {
      buf_ += "{\"time_ns\":" + std::to_string(l.sort_time_ns) + ",\"cpu\":" + std::to_string(l.cpu) +
              ",\"lost\":" + std::to_string(l.count) + ",\"source\":\"" + (kernel ? "kernel" : "collector") + "\"}\n";
    } else {
      line_start(l.sort_time_ns, l.cpu);
      buf_ += "LOST " + std::to_string(l.count) + " samples " +
              (kernel ? "(kernel ring full)" : "(dropped by perfstream)") + "\n";
    }
  }

  struct Rec {
    std::uint64_t time_ns;
    std::uint32_t cpu;
    std::span<const char> payload;
  };

  void record(const recording::TimeOrderedReader::Entry& e) {
    const Rec r{e.time_ns, e.cpu, e.payload()};
    const auto& schemas = reader_.pieces()[e.piece].header.events();
    const v1::EventSchema* schema = schema_for_payload(schemas, r.payload);
    const std::string& name = event_name(schema);
    if (!options_.events.empty()) {
      bool match = false;
      for (const auto& e : options_.events) match = match || e == name;
      if (!match) return;
    }
    std::vector<FieldValue>& values = values_;
    if (schema != nullptr) {
      decode_payload_into(*schema, r.payload, values);
    } else {
      values.clear();
    }
    if (options_.pid && !field_matches(values, "pid", pid_text_)) return;
    for (const auto& f : options_.filters) {
      if (!field_matches(values, f.field, f.value)) return;
    }
    if (options_.json) {
      record_json(r, name, schema, values);
    } else {
      record_text(r, name, schema, values);
    }
  }

  static bool field_matches(const std::vector<FieldValue>& values, const std::string& field, const std::string& want) {
    for (const auto& v : values) {
      if (v.name == field) return value_equals(v, want);
    }
    return false;
  }

  void line_start(std::uint64_t time_ns, std::uint32_t cpu) {
    render::append_time(buf_, time_ns);
    buf_ += "  [";
    if (cpu < 100) buf_ += cpu < 10 ? "00" : "0";
    render::append_number(buf_, cpu);
    buf_ += "]  ";
  }

  // What text output needs of a schema, worked out once: which fields it hides, how it prints integers.
  struct TextLayout {
    std::vector<bool> hidden;
    std::vector<IntStyle> styles;
  };
  const TextLayout& layout_of(const v1::EventSchema* schema) {
    if (schema == last_schema_) return *last_layout_;
    auto it = layouts_.find(schema);
    if (it == layouts_.end()) {
      TextLayout layout;
      layout.hidden = hidden_in_text(*schema);
      for (const auto& f : schema->fields()) layout.styles.push_back(int_style(f));
      it = layouts_.emplace(schema, std::move(layout)).first;
    }
    last_schema_ = schema;
    last_layout_ = &it->second;
    return it->second;
  }

  void record_text(const Rec& r, const std::string& name, const v1::EventSchema* schema,
                   const std::vector<FieldValue>& values) {
    line_start(r.time_ns, r.cpu);
    buf_ += name;
    if (schema == nullptr) {
      buf_ += "  raw=";
      render::append_hex(buf_, std::string_view(r.payload.data(), r.payload.size()), kTextBytesShown);
      buf_ += "\n";
      return;
    }
    const TextLayout& layout = layout_of(schema);
    const std::vector<bool>& hidden = layout.hidden;
    bool first = true;
    for (std::size_t i = 0; i < values.size(); ++i) {
      const FieldValue& v = values[i];
      if (hidden[i] || v.missing) continue;
      buf_ += first ? "  " : " ";
      first = false;
      buf_ += v.name;
      buf_ += '=';
      switch (v.type) {
        case v1::Field::STRING: render::append_text_quoted(buf_, v.text); break;
        case v1::Field::BYTES: render::append_hex(buf_, v.text, kTextBytesShown); break;
        default: append_integer_text(buf_, v, layout.styles[i]); break;
      }
    }
    buf_ += "\n";
  }

  void record_json(const Rec& r, const std::string& name, const v1::EventSchema* schema,
                   const std::vector<FieldValue>& values) {
    buf_ += "{\"time_ns\":";
    render::append_number(buf_, r.time_ns);
    buf_ += ",\"cpu\":";
    render::append_number(buf_, r.cpu);
    buf_ += ",\"event\":";
    render::append_json_string(buf_, name);
    if (schema == nullptr) {
      buf_ += ",\"raw\":\"";
      render::append_hex(buf_, std::string_view(r.payload.data(), r.payload.size()));
      buf_ += "\"}\n";
      return;
    }
    buf_ += ",\"fields\":{";
    for (std::size_t i = 0; i < values.size(); ++i) {
      const FieldValue& v = values[i];
      if (i != 0) buf_ += ',';
      render::append_json_string(buf_, v.name);
      buf_ += ':';
      if (v.missing) {
        buf_ += "null";
        continue;
      }
      switch (v.type) {
        case v1::Field::STRING: render::append_json_string(buf_, v.text); break;
        case v1::Field::BYTES:
          buf_ += '"';
          render::append_hex(buf_, v.text);
          buf_ += '"';
          break;
        default: append_integer_json(buf_, v); break;
      }
    }
    buf_ += "}}\n";
  }

  void header_text() {
    const v1::TraceHeader& h = reader_.header();
    std::string pieces;
    for (const auto& [path, piece] : reader_.inputs()) {
      if (!pieces.empty()) pieces += ", ";
      pieces += path + " (piece " + std::to_string(piece) + ")";
    }
    buf_ += "# recording: " + (h.recording_id().empty() ? std::string("-") : h.recording_id()) + "; files: " + pieces + "\n";
    buf_ += "# perfstream: " + h.perfstream_version() + ", format " + std::to_string(h.format_version()) + "\n";
    buf_ += "# host: " + h.host() + "\n";
    buf_ += "# kernel: " + h.kernel_release() + "\n";
    buf_ += "# cpus: recorded " + h.recorded_cpus() + "; online " + h.online_cpus() + "; possible " +
            std::to_string(h.possible_cpus()) + "\n";
    buf_ += std::string("# clock: ") + render::clock_name(h.clock()) + "; start " + render::format_time(h.start_time_ns()) +
            " (realtime " + render::format_time(h.start_realtime_ns()) + ")\n";
    std::string probes;
    for (const auto& p : h.probes()) probes += (probes.empty() ? "" : ", ") + p;
    buf_ += "# probes: " + probes + "\n";
    if (h.command_size() > 0) {
      std::string command;
      for (const auto& c : h.command()) command += (command.empty() ? "" : " ") + c;
      buf_ += "# command: " + command + "\n";
    }
    if (h.has_ring()) {
      buf_ += "# ring: " + std::to_string(h.ring().data_pages()) + " data pages of " +
              std::to_string(h.ring().page_size()) + " bytes per CPU, wakeup at " +
              std::to_string(h.ring().wakeup_bytes()) + " bytes\n";
    }
    for (const auto& s : h.events()) {
      buf_ += "# event " + event_name(&s) + ": struct " + s.type_name() + ", kind " + std::to_string(s.kind()) + ", " +
              std::to_string(s.fixed_size()) + " fixed bytes\n";
      for (const auto& f : s.fields()) {
        buf_ += "#   " + f.name() + ": " + render::field_type_name(f.type()) + ", " + std::to_string(f.size()) +
                " bytes at " + std::to_string(f.offset());
        if (f.variable()) buf_ += ", variable";
        if (!f.length_field().empty()) buf_ += ", length in " + f.length_field();
        buf_ += "\n";
      }
    }
  }

  void header_json() {
    const v1::TraceHeader& h = reader_.header();
    auto str = [](const std::string& s) { return render::json_string(s); };
    auto str_list = [&](const auto& list) {
      std::string out = "[";
      for (const auto& s : list) out += (out.size() > 1 ? "," : "") + str(s);
      return out + "]";
    };
    std::vector<std::string> files;
    for (const auto& [path, piece] : reader_.inputs()) files.push_back(path);
    std::string o = "{\"header\":{";
    o += "\"recording_id\":" + str(h.recording_id());
    o += ",\"files\":" + str_list(files);
    o += ",\"perfstream_version\":" + str(h.perfstream_version());
    o += ",\"format_version\":" + std::to_string(h.format_version());
    o += ",\"host\":" + str(h.host());
    o += ",\"kernel\":" + str(h.kernel_release());
    o += ",\"possible_cpus\":" + std::to_string(h.possible_cpus());
    o += ",\"online_cpus\":" + str(h.online_cpus());
    o += ",\"recorded_cpus\":" + str(h.recorded_cpus());
    o += ",\"clock\":" + str(render::clock_name(h.clock()));
    o += ",\"start_time_ns\":" + std::to_string(h.start_time_ns());
    o += ",\"start_realtime_ns\":" + std::to_string(h.start_realtime_ns());
    o += ",\"probes\":" + str_list(h.probes());
    o += ",\"command\":" + str_list(h.command());
    o += ",\"schemas\":[";
    for (int i = 0; i < h.events_size(); ++i) {
      const auto& s = h.events(i);
      if (i != 0) o += ',';
      o += "{\"name\":" + str(s.name()) + ",\"type_name\":" + str(s.type_name()) +
           ",\"kind\":" + std::to_string(s.kind()) + ",\"fixed_size\":" + std::to_string(s.fixed_size()) + ",\"fields\":[";
      for (int j = 0; j < s.fields_size(); ++j) {
        const auto& f = s.fields(j);
        if (j != 0) o += ',';
        o += "{\"name\":" + str(f.name()) + ",\"type\":" + str(render::field_type_name(f.type())) +
             ",\"offset\":" + std::to_string(f.offset()) + ",\"size\":" + std::to_string(f.size());
        if (f.variable()) o += ",\"variable\":true";
        if (!f.length_field().empty()) o += ",\"length_field\":" + str(f.length_field());
        o += "}";
      }
      o += "]}";
    }
    o += "]}}\n";
    buf_ += o;
  }

  const DumpOptions& options_;
  recording::RecordingReader& reader_;
  std::ostream& out_;
  bool live_;
  std::string buf_;
  std::map<const v1::EventSchema*, TextLayout> layouts_;
  const v1::EventSchema* last_schema_ = nullptr;
  const TextLayout* last_layout_ = nullptr;
  std::vector<FieldValue> values_;  // reused from record to record
  std::string pid_text_ = options_.pid ? std::to_string(*options_.pid) : std::string();
};

// A trace time as the user wrote it: seconds on the recording's clock (as dump prints them), or +SECONDS from
// the recording's start. Nanoseconds, or nullopt when it does not parse.
std::optional<std::uint64_t> parse_trace_time(const std::string& text, std::uint64_t start_ns) {
  std::string_view s = text;
  const bool relative = !s.empty() && s[0] == '+';
  if (relative) s.remove_prefix(1);
  std::uint64_t whole = 0, frac = 0;
  int frac_digits = 0;
  std::size_t i = 0;
  if (s.empty()) return std::nullopt;
  for (; i < s.size() && s[i] != '.'; ++i) {
    if (s[i] < '0' || s[i] > '9' || whole > 10'000'000'000ull) return std::nullopt;
    whole = whole * 10 + static_cast<std::uint64_t>(s[i] - '0');
  }
  if (i < s.size()) {
    for (++i; i < s.size(); ++i) {
      if (s[i] < '0' || s[i] > '9') return std::nullopt;
      if (frac_digits < 9) {
        frac = frac * 10 + static_cast<std::uint64_t>(s[i] - '0');
        ++frac_digits;
      }
    }
  }
  for (; frac_digits < 9; ++frac_digits) frac *= 10;
  const std::uint64_t ns = whole * 1'000'000'000ull + frac;
  return relative ? start_ns + ns : ns;
}

}  // namespace

int run_dump(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  ArgParser parser = make_parser();
  if (auto exit_status = parser.parse_or_exit(args, out, err)) return *exit_status;
  DumpOptions options;
  options.json = parser.has("json");
  options.header = parser.has("header");
  if (!reading_options(parser, "dump", options.read, err)) return 2;
  options.read.follow = parser.has("follow");
  options.since = parser.value("since");
  options.until = parser.value("until");
  if (auto w = parser.value("window")) {
    auto n = parse_bytes("window", *w);
    if (!n || *n < (1u << 20)) {
      err << "perfstream dump: --window: " << (n ? "must be at least 1M" : n.error().message()) << "\n";
      return 2;
    }
    options.merge.window_bytes = *n;
  }
  options.files = parser.positionals();
  options.files.insert(options.files.end(), parser.rest().begin(), parser.rest().end());
  if (auto cpu = parser.value("cpu")) {
    auto set = CpuSet::parse(*cpu);
    if (!set) {
      err << "perfstream dump: --cpu: " << set.error().message() << "\n";
      return 2;
    }
    options.cpus = std::move(*set);
    options.merge.cpus = std::vector<std::uint32_t>();
    for (unsigned c : options.cpus->cpus()) options.merge.cpus->push_back(c);
  }
  if (auto pid = parser.value("pid")) {
    auto n = parse_count("pid", *pid);
    if (!n) {
      err << "perfstream dump: " << n.error().message() << "\n";
      return 2;
    }
    options.pid = *n;
  }
  options.events = parser.values("event");
  for (const auto& f : parser.values("filter")) {
    const auto eq = f.find('=');
    if (eq == std::string::npos || eq == 0) {
      err << "perfstream dump: --filter '" << f << "': expected FIELD=VALUE\n";
      return 2;
    }
    options.filters.push_back(FieldFilter{f.substr(0, eq), f.substr(eq + 1)});
  }
  if (options.files.empty()) {
    err << "perfstream dump: no trace file given (usage: perfstream dump [flags] FILE...)\n";
    return 2;
  }
  for (const char* flag : {"since", "until"}) {
    if (auto v = parser.value(flag); v && !parse_trace_time(*v, 0)) {
      err << "perfstream dump: --" << flag << " '" << *v << "': expected seconds (12.5) or +seconds from the start\n";
      return 2;
    }
  }
  options.read.note = [&err](const std::string& line) { err << "perfstream dump: " << line << "\n"; };

  auto reader = recording::RecordingReader::open(options.files, options.read);
  if (!reader) {
    err << "perfstream dump: " << reader.error().message() << "\n";
    return 1;
  }
  const std::uint64_t start = (*reader)->header().start_time_ns();
  if (options.since) options.merge.since_ns = parse_trace_time(*options.since, start);
  if (options.until) options.merge.until_ns = parse_trace_time(*options.until, start);
  for (const auto& f : options.filters) {
    bool known = false;
    for (const auto& s : (*reader)->header().events()) {
      for (const auto& field : s.fields()) known = known || field.name() == f.field;
    }
    if (!known) err << "perfstream dump: warning: --filter " << f.field << ": no event of this trace has that field\n";
  }
  // A pipe or a followed file: print each batch's records as they come, not when 64 KiB have gathered.
  const bool live = options.read.follow || !(*reader)->reads_regular_files();
  auto timeline = Dumper(options, **reader, out, live).run();
  out.flush();
  return report_reading("dump", **reader, options.read.skip_corrupt, timeline.get(), options.merge.window_bytes, err)
             ? 1
             : 0;
}

}  // namespace perfstream::cli
