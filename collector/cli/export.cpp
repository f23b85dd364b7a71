// `perfstream export --to perfetto|csv|jsonl FILE... [-o OUT]`: a recording in another tool's format, read
// in time order in bounded memory (collector/export/):
//   perfetto  Perfetto's trace format (default OUT: FILE.pftrace);
//   csv       one event type (--event NAME), RFC 4180 with a header line (default OUT: standard output);
//   jsonl     one JSON object per line, exactly as `dump --json` prints them (default OUT: standard output).
// A file OUT is written as OUT.partial and renamed to OUT when complete, so an interrupted export never
// leaves a file that looks finished.
// Exit status: 0; 1 for an unreadable recording, a write failure, or damage and problems as `dump` reports
// them (the output then holds what could be read); 2 usage.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "collector/cli/commands.hpp"
#include "collector/cli/options.hpp"
#include "collector/cli/recording_report.hpp"
#include "collector/export/csv_export.hpp"
#include "collector/export/perfetto_export.hpp"

namespace perfstream::cli {
namespace {

ArgParser make_parser() {
  ArgParser parser("export", "perfstream export --to perfetto|csv|jsonl [flags] FILE... [-o OUT]");
  parser.option("to", 0, "FORMAT", "perfetto (ui.perfetto.dev, trace_processor), csv (with --event), jsonl")
      .option("output", 'o', "OUT", "where to write (default: FILE.pftrace for perfetto, else standard output; - for it)")
      .option("event", 0, "NAME", "csv: the event type to write (one); jsonl: only these (repeatable)")
      .option("window", 0, "SIZE", "look-ahead for recordings without watermarks (default 32M)")
      .flag("quiet", 'q', "no summary on stderr")
      .flag("help", 'h', "show this help");
  add_reading_flags(parser);
  parser.notes(
      "perfetto: sched_switch becomes CPU scheduling (compact sched), exec/fork/exit the process tree, every\n"
      "other record an instant on its thread's track with its fields as arguments, lost records markers on\n"
      "the track \"CPU N: lost records\"; times are on the recording's clock, with wall-clock time from the\n"
      "header. csv: time_ns, cpu and the event's fields; lost notices are not rows. jsonl: as dump --json.\n"
      "A rotated recording is read from its first file on.\n");
  return parser;
}

// Where the export goes: standard output, or OUT.partial renamed to OUT by commit().
class Output {
 public:
  Output(std::string path, std::ostream& out) : path_(std::move(path)), stdout_(out) {}
  ~Output() {
    if (file_.is_open()) {
      file_.close();
      std::remove(partial().c_str());
    }
  }
  bool open(std::ostream& err) {
    if (path_ == "-") return true;
    file_.open(partial(), std::ios::binary | std::ios::trunc);
    if (!file_) err << "perfstream export: cannot create " << partial() << ": " << std::strerror(errno) << "\n";
    return static_cast<bool>(file_);
  }
  std::ostream& stream() { return path_ == "-" ? stdout_ : file_; }
  bool commit(std::ostream& err) {
    if (path_ == "-") return static_cast<bool>(stdout_.flush());
    file_.close();
    if (!file_) {
      err << "perfstream export: writing " << partial() << " failed\n";
      std::remove(partial().c_str());
      return false;
    }
    if (std::rename(partial().c_str(), path_.c_str()) != 0) {
      err << "perfstream export: cannot rename " << partial() << " to " << path_ << ": " << std::strerror(errno) << "\n";
      std::remove(partial().c_str());
      return false;
    }
    return true;
  }
  std::string describe() const { return path_ == "-" ? "standard output" : path_; }

 private:
  std::string partial() const { return path_ + ".partial"; }
  std::string path_;
  std::ostream& stdout_;
  std::ofstream file_;
};

// jsonl is dump --json: the same records, fields and notices, by the same code.
int run_jsonl(const ArgParser& parser, const std::vector<std::string>& files, Output& output, std::ostream& err) {
  std::vector<std::string> args = {"--json"};
  for (const char* flag : {"max-batch-bytes", "max-batch-records", "window"}) {
    if (auto v = parser.value(flag)) args.insert(args.end(), {std::string("--") + flag, *v});
  }
  if (parser.has("skip-corrupt")) args.push_back("--skip-corrupt");
  for (const auto& e : parser.values("event")) args.insert(args.end(), {"--event", e});
  args.push_back("--");
  args.insert(args.end(), files.begin(), files.end());
  std::ostringstream dump_err;
  const int status = run_dump(args, output.stream(), dump_err);
  std::string text = dump_err.str();
  for (std::size_t at = 0; (at = text.find("perfstream dump:", at)) != std::string::npos;) {
    text.replace(at, 16, "perfstream export:");
  }
  err << text;
  if (!output.commit(err)) return 1;
  return status;
}

}  // namespace

int run_export(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  ArgParser parser = make_parser();
  if (auto exit_status = parser.parse_or_exit(args, out, err)) return *exit_status;
  std::vector<std::string> files = parser.positionals();
  files.insert(files.end(), parser.rest().begin(), parser.rest().end());
  const std::string to = parser.value("to").value_or("");
  if (to.empty()) {
    err << "perfstream export: --to is required (perfetto, csv or jsonl)\n";
    return 2;
  }
  if (to != "perfetto" && to != "csv" && to != "jsonl") {
    err << "perfstream export: --to " << to << ": unknown format (perfetto, csv or jsonl)\n";
    return 2;
  }
  const std::vector<std::string> events = parser.values("event");
  if (to == "csv" && events.size() != 1) {
    err << "perfstream export: --to csv needs one --event NAME (a CSV has one set of columns)\n";
    return 2;
  }
  if (to == "perfetto" && !events.empty()) {
    err << "perfstream export: --event: a Perfetto trace holds every event\n";
    return 2;
  }
  if (files.empty()) {
    err << "perfstream export: no trace file given (usage: perfstream export --to FORMAT FILE... [-o OUT])\n";
    return 2;
  }
  recording::MergeOptions merge;
  if (auto w = parser.value("window")) {
    auto n = parse_bytes("window", *w);
    if (!n || *n < (1u << 20)) {
      err << "perfstream export: --window: " << (n ? "must be at least 1M" : n.error().message()) << "\n";
      return 2;
    }
    merge.window_bytes = *n;
  }
  recording::RecordingOptions read;
  if (!reading_options(parser, "export", read, err)) return 2;
  const bool quiet = parser.has("quiet");
  read.note = [&err, quiet](const std::string& line) {
    if (!quiet) err << "perfstream export: " << line << "\n";
  };
  const std::string default_output = to == "perfetto" && files.front() != "-" ? files.front() + ".pftrace" : "-";
  Output output(parser.value("output").value_or(default_output), out);
  if (!output.open(err)) return 1;
  if (to == "jsonl") return run_jsonl(parser, files, output, err);

  auto reader = recording::RecordingReader::open(files, read);
  if (!reader) {
    err << "perfstream export: " << reader.error().message() << "\n";
    return 1;
  }
  std::string summary_line;
  const recording::TimeOrderedReader* timeline = nullptr;
  std::unique_ptr<exporter::PerfettoExporter> perfetto;
  std::unique_ptr<exporter::CsvExporter> csv;
  if (to == "perfetto") {
    exporter::PerfettoExportOptions options;
    options.merge = merge;
    perfetto = std::make_unique<exporter::PerfettoExporter>(**reader, options, output.stream());
    auto s = perfetto->run();
    if (!s) {
      err << "perfstream export: " << s.error().message() << "\n";
      return 1;
    }
    timeline = &perfetto->merge();
    summary_line = std::to_string(s->records) + " records (" + std::to_string(s->sched_switches) + " sched_switch, " +
                   std::to_string(s->instants) + " instants), " + std::to_string(s->lost_notices) + " lost notices -> " +
                   output.describe() + " (" + std::to_string(s->packets) + " packets, " + std::to_string(s->bytes) +
                   " bytes)";
  } else {
    csv = std::make_unique<exporter::CsvExporter>(**reader, merge, events.front(), output.stream());
    auto rows = csv->run();
    if (!rows) {
      err << "perfstream export: " << rows.error().message() << "\n";
      return 1;
    }
    timeline = csv->merge();
    summary_line = std::to_string(*rows) + " " + events.front() + " rows -> " + output.describe();
  }
  if (!output.commit(err)) return 1;
  const bool failed = report_reading("export", **reader, read.skip_corrupt, timeline, merge.window_bytes, err);
  if (!quiet) err << "perfstream export: " << summary_line << (failed ? "; incomplete: see above" : "") << "\n";
  return failed ? 1 : 0;
}

}  // namespace perfstream::cli
