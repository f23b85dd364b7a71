// `perfstream dump`: prints the records of a recording, decoded by the schemas in its header, in time order
// across CPUs, with lost-event notices where they happened.
//
// Text, one line per record (perf script style):
//   12.000001000  [003]  openat  pid=42 tid=42 dfd=AT_FDCWD flags=O_WRONLY|O_CREAT|O_TRUNC mode=0644 comm="bash" path="/tmp/x"
//   12.000002000  [001]  LOST 17 samples (kernel ring full)
// Fields are shown as their schema's display hints say (field_display.hpp, docs/FORMAT.md "Display hints"):
// O_RDONLY|O_CLOEXEC, 0644, ENOENT, S, 10.0.0.1:443, SIGKILL, exec's filename="/bin/echo" args=["echo","a b"];
// fields hinted `hidden` (kind, padding,
// lengths) and a port shown after its address are left out. A field without a hint prints as before hints
// existed, so a recording made before them dumps as it always did: integers in decimal, except fields whose
// name contains "flags" (hex, 0x...) or "mode" (octal, 0...); strings quoted (see render.hpp); byte arrays as
// hex, cut after 64 bytes with "..."; `kind`, `reserved` and the length fields of variable arrays left out.
// --guess-hints gives such a recording the hints perfstream's built-in probes have now; --raw-fields shows
// every field as recorded, with no hint. Fields past the end of a payload are left out.
// --json, one object per line:
//   {"time_ns":12000001000,"cpu":3,"event":"openat","fields":{"pid":42,...,"flags":"O_RDONLY","path":"/tmp/x"}}
//   {"time_ns":12000002000,"cpu":1,"lost":17,"source":"kernel"}
// with every field not hinted `hidden`, a hint's name as a string ("O_RDONLY", "0644", "ENOENT"), numbers as
// numbers, byte arrays as hex strings, argv as an array of strings, fields past the payload as null.
// A record that no schema describes is event "unknown" with its payload as hex in "raw".
// --time: mono (default) prints the recording clock's seconds; wall the wall-clock time in UTC, ISO 8601
// (from the header's start_realtime_ns against its start_time_ns); relative the seconds since the first
// record or loss read (after --cpu, --since; before --pid, --event, --filter). JSON keeps time_ns and adds
// "wall_time" or "rel_time_ns".
//
// Filters: --cpu selects records and lost notices; --pid, --event and --filter select records only, and
// lost notices stay in the output, since a loss may have hidden records that would have matched.
// --filter FIELD OP VALUE, OP one of = != < <= > >= ~ (contains) !~: = and != compare strings exactly,
// integers by value (decimal, 0x hex or 0-prefixed octal, so a value can be pasted from the text output) or
// by their hint's rendering (flags=O_RDONLY|O_CLOEXEC, ret=ENOENT, prev_state=S, daddr=10.0.0.1 with or
// without its port), byte arrays by their hex; < and > compare integers by value and strings byte by byte;
// ~ looks for VALUE in a string, in an integer's decimal or hinted rendering (flags~O_CREAT), in argv's
// words joined by spaces (exec's filename~"echo a b" searches the path and its argv). A record without the field passes no filter on it, != included. A name in
// --event or --filter that no schema of the recording has is warned about.
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
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "collector/cli/commands.hpp"
#include "collector/cli/field_display.hpp"
#include "collector/cli/options.hpp"
#include "collector/cli/render.hpp"
#include "collector/cli/recording_report.hpp"
#include "collector/decode/display_hints.hpp"
#include "collector/decode/payload_schema.hpp"
#include "collector/kernel/cpu_set.hpp"

namespace perfstream::cli {
namespace {

constexpr std::size_t kTextBytesShown = 64;

// --filter FIELD OP VALUE.
enum class FilterOp : std::uint8_t { Eq, Ne, Lt, Le, Gt, Ge, Contains, NotContains };

struct FieldFilter {
  std::string field;
  FilterOp op = FilterOp::Eq;
  std::string value;
  std::string text;  // as the user wrote it, for messages
};

enum class TimeStyle : std::uint8_t { Mono, Wall, Relative };

struct DumpOptions {
  bool json = false;
  bool header = false;
  bool raw_fields = false;
  bool guess_hints = false;
  TimeStyle time = TimeStyle::Mono;
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
      .option("filter", 0, "FIELD OP VALUE",
              "only records whose FIELD compares so to VALUE; OP is = != < <= > >= ~ (contains) !~ (repeatable)")
      .option("time", 0, "mono|wall|relative",
              "times on the recording's clock (default), wall-clock UTC (ISO 8601), or since the first record")
      .flag("raw-fields", 0, "every field as recorded: no display hints, kind, padding and lengths shown")
      .flag("guess-hints", 0, "a recording made before schemas carried display hints: use the built-in probes' hints")
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

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The value itself equals `wanted`: strings exactly, integers by value (as printed without hints: raw bits
// for flags in hex, or as a number, sign-extended), byte arrays by their hex.
bool value_equals(const FieldValue& v, const std::string& wanted) {
  switch (v.type) {
    case v1::Field::STRING:
      return v.text == wanted;
    case v1::Field::BYTES: {
      std::string hex;
      render::append_hex(hex, v.text);
      return hex == lower(wanted) || v.text == wanted;
    }
    case v1::Field::SIGNED:
    case v1::Field::UNSIGNED: {
      auto lit = parse_int_literal(wanted);
      if (!lit) return false;
      if (lit->negative) {
        if (lit->magnitude > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) + 1) return false;
        return v.signed_value == static_cast<std::int64_t>(0 - lit->magnitude);
      }
      return v.unsigned_value == lit->magnitude || static_cast<std::uint64_t>(v.signed_value) == lit->magnitude;
    }
    default:
      return false;
  }
}

// -1, 0, 1 as the value compares to `wanted`; nullopt when they do not compare (an integer field and a
// VALUE that is no number). Integers by value (signed fields signed), strings and byte arrays (as hex)
// byte by byte.
std::optional<int> compare_value(const FieldValue& v, const std::string& wanted) {
  auto order = [](auto a, auto b) { return a < b ? -1 : a > b ? 1 : 0; };
  switch (v.type) {
    case v1::Field::STRING: return order(v.text.compare(wanted), 0);
    case v1::Field::BYTES: {
      std::string hex;
      render::append_hex(hex, v.text);
      return order(hex.compare(lower(wanted)), 0);
    }
    case v1::Field::SIGNED:
    case v1::Field::UNSIGNED: {
      auto lit = parse_int_literal(wanted);
      if (!lit) return std::nullopt;
      if (v.type == v1::Field::UNSIGNED) {
        if (lit->negative) return lit->magnitude == 0 ? order(v.unsigned_value, std::uint64_t{0}) : 1;
        return order(v.unsigned_value, lit->magnitude);
      }
      if (!lit->negative && lit->magnitude > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return -1;
      if (lit->negative && lit->magnitude > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) + 1) return 1;
      const std::int64_t w = lit->negative ? static_cast<std::int64_t>(0 - lit->magnitude)
                                           : static_cast<std::int64_t>(lit->magnitude);
      return order(v.signed_value, w);
    }
    default:
      return std::nullopt;
  }
}

// "10.0.0.1:443" -> "10.0.0.1", "[::1]:443" -> "::1": an address filter may leave out the port.
std::string_view without_port(std::string_view shown) {
  if (!shown.empty() && shown[0] == '[') {
    const std::size_t close = shown.find(']');
    return close == std::string_view::npos ? shown : shown.substr(1, close - 1);
  }
  const std::size_t colon = shown.find(':');
  return colon != std::string_view::npos && shown.find(':', colon + 1) == std::string_view::npos ? shown.substr(0, colon)
                                                                                                 : shown;
}

// Whether field i of a record passes the filter. A record whose field is missing passes none, not even !=:
// a filter is about records that have the field.
bool filter_passes(const FieldFilter& f, const FieldDisplay& display, const std::vector<FieldValue>& values,
                   std::size_t i, std::string& shown) {
  const FieldValue& v = values[i];
  if (v.missing) return false;
  shown.clear();
  const bool has_shown = display.append_shown(shown, values, i);
  switch (f.op) {
    case FilterOp::Eq:
    case FilterOp::Ne: {
      const bool eq = value_equals(v, f.value) ||
                      (has_shown && (shown == f.value || without_port(shown) == f.value));
      return (f.op == FilterOp::Eq) == eq;
    }
    case FilterOp::Lt:
    case FilterOp::Le:
    case FilterOp::Gt:
    case FilterOp::Ge: {
      const auto c = compare_value(v, f.value);
      if (!c) return false;
      if (f.op == FilterOp::Lt) return *c < 0;
      if (f.op == FilterOp::Le) return *c <= 0;
      if (f.op == FilterOp::Gt) return *c > 0;
      return *c >= 0;
    }
    case FilterOp::Contains:
    case FilterOp::NotContains: {
      bool found = has_shown && shown.find(f.value) != std::string::npos;
      if (!found) {
        std::string plain;
        switch (v.type) {
          case v1::Field::STRING:  // NUL-separated strings (argv) read as words separated by spaces
            plain = v.text;
            std::replace(plain.begin(), plain.end(), '\0', ' ');
            break;
          case v1::Field::BYTES:
            render::append_hex(plain, v.text);
            found = v.text.find(f.value) != std::string::npos || plain.find(lower(f.value)) != std::string::npos;
            plain.clear();
            break;
          case v1::Field::SIGNED: render::append_signed(plain, v.signed_value); break;
          default: render::append_number(plain, v.unsigned_value); break;
        }
        found = found || (!plain.empty() && plain.find(f.value) != std::string::npos);
      }
      return (f.op == FilterOp::Contains) == found;
    }
  }
  return false;
}

// FIELD OP VALUE: the field is a name (letters, digits, _, and the . [ ] of flattened names such as
// fname.pathes and callers[0]), OP the longest operator that follows it.
std::optional<FieldFilter> parse_filter(const std::string& text) {
  std::size_t n = 0;
  auto in_name = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '.' || c == '[' || c == ']';
  };
  while (n < text.size() && in_name(text[n])) ++n;
  if (n == 0) return std::nullopt;
  static constexpr std::pair<std::string_view, FilterOp> kOps[] = {
      {"!=", FilterOp::Ne}, {"!~", FilterOp::NotContains}, {"<=", FilterOp::Le}, {">=", FilterOp::Ge},
      {"=", FilterOp::Eq},  {"<", FilterOp::Lt},           {">", FilterOp::Gt},  {"~", FilterOp::Contains},
  };
  const std::string_view rest = std::string_view(text).substr(n);
  for (const auto& [op, value] : kOps) {
    if (rest.substr(0, op.size()) == op) {
      return FieldFilter{text.substr(0, n), value, std::string(rest.substr(op.size())), text};
    }
  }
  return std::nullopt;
}

// "2023-11-14T22:13:20.000000500Z".
void append_iso8601(std::string& out, std::int64_t ns) {
  std::int64_t secs = ns / 1'000'000'000;
  std::int64_t frac = ns % 1'000'000'000;
  if (frac < 0) {
    frac += 1'000'000'000;
    --secs;
  }
  const std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  const std::size_t len = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  out.append(buf, len);
  char digits[11];
  std::snprintf(digits, sizeof(digits), ".%09lld", static_cast<long long>(frac));
  out += digits;
  out += 'Z';
}

// A protobuf map has no order: its entries by key, so that the header prints the same every time.
std::map<std::string, std::string> sorted_args(const v1::Field& f) {
  return std::map<std::string, std::string>(f.hint_args().begin(), f.hint_args().end());
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
      if (!first_time_) first_time_ = e.is_lost ? e.lost().sort_time_ns : e.time_ns;
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
      buf_ += "{\"time_ns\":";
      render::append_number(buf_, l.sort_time_ns);
      json_time(l.sort_time_ns);
      buf_ += ",\"cpu\":" + std::to_string(l.cpu) + ",\"lost\":" + std::to_string(l.count) + ",\"source\":\"" +
              (kernel ? "kernel" : "collector") + "\"}\n";
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
    const SchemaView* view = schema != nullptr ? &view_of(schema) : nullptr;
    if (view != nullptr) {
      decode_payload_into(view->guessed ? *view->guessed : *schema, r.payload, values);
    } else {
      values.clear();
    }
    const FieldDisplay* display = view != nullptr ? &view->display : nullptr;
    if (options_.pid && !field_matches(display, values, pid_filter_)) return;
    for (const auto& f : options_.filters) {
      if (!field_matches(display, values, f)) return;
    }
    if (options_.json) {
      record_json(r, name, display, values);
    } else {
      record_text(r, name, display, values);
    }
  }

  bool field_matches(const FieldDisplay* display, const std::vector<FieldValue>& values, const FieldFilter& f) {
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (values[i].name == f.field) return filter_passes(f, *display, values, i, scratch_);
    }
    return false;
  }

  // A time as --time asks: the recording's clock, wall-clock UTC, or since the first entry read.
  void append_time_text(std::uint64_t time_ns) {
    switch (options_.time) {
      case TimeStyle::Mono: render::append_time(buf_, time_ns); break;
      case TimeStyle::Wall: append_iso8601(buf_, wall_ns(time_ns)); break;
      case TimeStyle::Relative: {
        const std::uint64_t first = first_time_.value_or(time_ns);
        if (time_ns < first) buf_ += '-';
        render::append_time(buf_, time_ns < first ? first - time_ns : time_ns - first);
        break;
      }
    }
  }

  // JSON keeps time_ns whatever --time says; wall and relative add their own key after it.
  void json_time(std::uint64_t time_ns) {
    if (options_.time == TimeStyle::Wall) {
      buf_ += ",\"wall_time\":\"";
      append_iso8601(buf_, wall_ns(time_ns));
      buf_ += '"';
    } else if (options_.time == TimeStyle::Relative) {
      buf_ += ",\"rel_time_ns\":";
      render::append_signed(buf_, static_cast<std::int64_t>(time_ns - first_time_.value_or(time_ns)));
    }
  }

  // CLOCK_REALTIME of a trace time: the header pairs the recording clock's start with the realtime start.
  std::int64_t wall_ns(std::uint64_t time_ns) const {
    const v1::TraceHeader& h = reader_.header();
    if (h.clock() == v1::REALTIME) return static_cast<std::int64_t>(time_ns);
    return static_cast<std::int64_t>(h.start_realtime_ns()) + static_cast<std::int64_t>(time_ns - h.start_time_ns());
  }

  void line_start(std::uint64_t time_ns, std::uint32_t cpu) {
    append_time_text(time_ns);
    buf_ += "  [";
    if (cpu == 0xffffffffu) {
      buf_ += "ring]  ";  // a BPF ring buffer's record: the CPU that wrote it is unknown (FORMAT.md)
      return;
    }
    if (cpu < 100) buf_ += cpu < 10 ? "00" : "0";
    render::append_number(buf_, cpu);
    buf_ += "]  ";
  }

  // How a schema's records are decoded and shown, worked out once per schema. With --guess-hints, from a copy
  // that has the built-in probes' hints, which decodes too (an argv hint keeps a string's NULs).
  struct SchemaView {
    std::unique_ptr<v1::EventSchema> guessed;
    FieldDisplay display;
  };
  const SchemaView& view_of(const v1::EventSchema* schema) {
    if (schema == last_schema_) return *last_view_;
    auto it = views_.find(schema);
    if (it == views_.end()) {
      std::unique_ptr<v1::EventSchema> guessed;
      if (options_.guess_hints) {
        guessed = std::make_unique<v1::EventSchema>(*schema);
        hints::add_builtin_hints(*guessed);
      }
      FieldDisplay display(guessed ? *guessed : *schema, options_.raw_fields);
      it = views_.emplace(schema, SchemaView{std::move(guessed), std::move(display)}).first;
    }
    last_schema_ = schema;
    last_view_ = &it->second;
    return it->second;
  }

  void record_text(const Rec& r, const std::string& name, const FieldDisplay* display,
                   const std::vector<FieldValue>& values) {
    line_start(r.time_ns, r.cpu);
    buf_ += name;
    if (display == nullptr) {
      buf_ += "  raw=";
      render::append_hex(buf_, std::string_view(r.payload.data(), r.payload.size()), kTextBytesShown);
      buf_ += "\n";
      return;
    }
    bool first = true;
    for (std::size_t i = 0; i < values.size(); ++i) {
      const FieldValue& v = values[i];
      if (display->hidden_in_text(i) || v.missing) continue;
      buf_ += first ? "  " : " ";
      first = false;
      buf_ += v.name;
      buf_ += '=';
      display->append_text(buf_, values, i);
    }
    buf_ += "\n";
  }

  void record_json(const Rec& r, const std::string& name, const FieldDisplay* display,
                   const std::vector<FieldValue>& values) {
    buf_ += "{\"time_ns\":";
    render::append_number(buf_, r.time_ns);
    json_time(r.time_ns);
    buf_ += ",\"cpu\":";
    render::append_number(buf_, r.cpu);
    buf_ += ",\"event\":";
    render::append_json_string(buf_, name);
    if (display == nullptr) {
      buf_ += ",\"raw\":\"";
      render::append_hex(buf_, std::string_view(r.payload.data(), r.payload.size()));
      buf_ += "\"}\n";
      return;
    }
    buf_ += ",\"fields\":{";
    bool first = true;
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (display->hidden_in_json(i)) continue;
      if (!first) buf_ += ',';
      first = false;
      render::append_json_string(buf_, values[i].name);
      buf_ += ':';
      display->append_json(buf_, values, i);
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
        if (!f.hint().empty()) buf_ += ", hint " + f.hint();
        for (const auto& [key, value] : sorted_args(f)) buf_ += ", " + key + " " + value;
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
        if (!f.hint().empty()) o += ",\"hint\":" + str(f.hint());
        if (f.hint_args_size() > 0) {
          std::string args;
          for (const auto& [key, value] : sorted_args(f)) args += (args.empty() ? "" : ",") + str(key) + ":" + str(value);
          o += ",\"hint_args\":{" + args + "}";
        }
        if (f.enumerators_size() > 0) {
          std::string names;
          for (const auto& e : f.enumerators()) {
            names += (names.empty() ? "" : ",") + str(e.name()) + ":" + std::to_string(e.value());
          }
          o += ",\"enumerators\":{" + names + "}";
        }
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
  std::map<const v1::EventSchema*, SchemaView> views_;
  const v1::EventSchema* last_schema_ = nullptr;
  const SchemaView* last_view_ = nullptr;
  std::vector<FieldValue> values_;  // reused from record to record
  std::string scratch_;             // a filter's rendering of a value, reused
  std::optional<std::uint64_t> first_time_;  // of the first entry read, for --time relative
  FieldFilter pid_filter_{"pid", FilterOp::Eq, options_.pid ? std::to_string(*options_.pid) : std::string(), "pid"};
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

// Says when --event or --filter names something no schema of the recording has (the filter can then match
// nothing), and refuses < and > with a VALUE that is no number for a field that is an integer.
int check_names(const DumpOptions& options, const v1::TraceHeader& header, std::ostream& err) {
  std::string names;
  for (const auto& s : header.events()) names += (names.empty() ? "" : ", ") + event_name(&s);
  auto chosen = [&](const v1::EventSchema& s) {
    if (options.events.empty()) return true;
    for (const auto& e : options.events) {
      if (e == event_name(&s)) return true;
    }
    return false;
  };
  for (const auto& e : options.events) {
    bool known = e == "unknown";  // records no schema describes
    for (const auto& s : header.events()) known = known || e == event_name(&s);
    if (!known) {
      err << "perfstream dump: warning: --event " << e << ": no event of this trace has that name (it has: "
          << (names.empty() ? "none" : names) << ")\n";
    }
  }
  for (const auto& f : options.filters) {
    bool in_trace = false, in_chosen = false;
    for (const auto& s : header.events()) {
      for (const auto& field : s.fields()) {
        if (field.name() != f.field) continue;
        in_trace = true;
        in_chosen = in_chosen || chosen(s);
        const bool ordered = f.op == FilterOp::Lt || f.op == FilterOp::Le || f.op == FilterOp::Gt || f.op == FilterOp::Ge;
        const bool integer = field.type() == v1::Field::SIGNED || field.type() == v1::Field::UNSIGNED;
        if (ordered && integer && !parse_int_literal(f.value)) {
          err << "perfstream dump: --filter '" << f.text << "': " << f.field << " is an integer in event "
              << event_name(&s) << ", and '" << f.value << "' is no number (decimal, 0x hex or 0 octal)\n";
          return 2;
        }
      }
    }
    if (!in_trace) {
      err << "perfstream dump: warning: --filter " << f.field << ": no event of this trace has that field\n";
    } else if (!in_chosen) {
      err << "perfstream dump: warning: --filter " << f.field << ": no event chosen with --event has that field\n";
    }
  }
  return 0;
}

// The flags into `options`; on bad usage, says why on `err` and gives exit status 2.
std::optional<int> dump_options_from(const ArgParser& parser, DumpOptions& options, std::ostream& err) {
  options.json = parser.has("json");
  options.header = parser.has("header");
  options.raw_fields = parser.has("raw-fields");
  options.guess_hints = parser.has("guess-hints");
  if (auto t = parser.value("time")) {
    if (*t == "mono") options.time = TimeStyle::Mono;
    else if (*t == "wall") options.time = TimeStyle::Wall;
    else if (*t == "relative") options.time = TimeStyle::Relative;
    else {
      err << "perfstream dump: --time '" << *t << "': expected mono, wall or relative\n";
      return 2;
    }
  }
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
    auto filter = parse_filter(f);
    if (!filter) {
      err << "perfstream dump: --filter '" << f << "': expected FIELD OP VALUE, OP one of = != < <= > >= ~ !~\n";
      return 2;
    }
    options.filters.push_back(std::move(*filter));
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
  return std::nullopt;
}

}  // namespace

int run_dump(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  ArgParser parser = make_parser();
  if (auto exit_status = parser.parse_or_exit(args, out, err)) return *exit_status;
  DumpOptions options;
  if (auto exit_status = dump_options_from(parser, options, err)) return *exit_status;
  options.read.note = [&err](const std::string& line) { err << "perfstream dump: " << line << "\n"; };

  auto reader = recording::RecordingReader::open(options.files, options.read);
  if (!reader) {
    err << "perfstream dump: " << reader.error().message() << "\n";
    return 1;
  }
  const std::uint64_t start = (*reader)->header().start_time_ns();
  if (options.since) options.merge.since_ns = parse_trace_time(*options.since, start);
  if (options.until) options.merge.until_ns = parse_trace_time(*options.until, start);
  if (int status = check_names(options, (*reader)->header(), err); status != 0) return status;
  if (options.time == TimeStyle::Wall && (*reader)->header().clock() != v1::REALTIME &&
      (*reader)->header().start_realtime_ns() == 0) {
    err << "perfstream dump: --time wall: the recording's header has no realtime start (start_realtime_ns)\n";
    return 1;
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
