// `perfstream export --to perfetto FILE -o FILE.pftrace`: a recording in another tool's format, read in
// time order in bounded memory (collector/export/). The output is written to OUT.partial and renamed to OUT
// when complete, so an interrupted export never leaves a file that looks finished.
// Exit status: 0; 1 for an unreadable recording, a write failure, or damage and problems as `dump` reports
// them (the output then holds what could be read); 2 usage.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "collector/cli/commands.hpp"
#include "collector/cli/options.hpp"
#include "collector/cli/recording_report.hpp"
#include "collector/export/perfetto_export.hpp"

namespace perfstream::cli {
namespace {

ArgParser make_parser() {
  ArgParser parser("export", "perfstream export --to perfetto [flags] FILE... [-o OUT]");
  parser.option("to", 0, "FORMAT", "perfetto: a Perfetto trace (ui.perfetto.dev, trace_processor)")
      .option("output", 'o', "OUT", "where to write (default FILE.pftrace; - for standard output)")
      .option("window", 0, "SIZE", "look-ahead for recordings without watermarks (default 32M)")
      .flag("quiet", 'q', "no summary on stderr")
      .flag("help", 'h', "show this help");
  add_reading_flags(parser);
  parser.notes(
      "Perfetto: sched_switch becomes CPU scheduling (compact sched), exec/fork/exit the process tree, every\n"
      "other record an instant on its thread's track with its fields as arguments, lost records markers on\n"
      "the track \"CPU N: lost records\"; times are on the recording's clock, with wall-clock time from the\n"
      "header. A rotated recording is read from its first file on.\n");
  return parser;
}

}  // namespace

int run_export(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  ArgParser parser = make_parser();
  if (auto exit_status = parser.parse_or_exit(args, out, err)) return *exit_status;
  std::vector<std::string> files = parser.positionals();
  files.insert(files.end(), parser.rest().begin(), parser.rest().end());
  const std::string to = parser.value("to").value_or("");
  if (to.empty()) {
    err << "perfstream export: --to is required (perfetto)\n";
    return 2;
  }
  if (to != "perfetto") {
    err << "perfstream export: --to " << to << ": unknown format (perfetto)\n";
    return 2;
  }
  if (files.empty()) {
    err << "perfstream export: no trace file given (usage: perfstream export --to perfetto FILE -o OUT)\n";
    return 2;
  }
  exporter::PerfettoExportOptions options;
  if (auto w = parser.value("window")) {
    auto n = parse_bytes("window", *w);
    if (!n || *n < (1u << 20)) {
      err << "perfstream export: --window: " << (n ? "must be at least 1M" : n.error().message()) << "\n";
      return 2;
    }
    options.merge.window_bytes = *n;
  }
  recording::RecordingOptions read;
  if (!reading_options(parser, "export", read, err)) return 2;
  const bool quiet = parser.has("quiet");
  read.note = [&err, quiet](const std::string& line) {
    if (!quiet) err << "perfstream export: " << line << "\n";
  };
  std::string output = parser.value("output").value_or(files.front() == "-" ? "-" : files.front() + ".pftrace");

  auto reader = recording::RecordingReader::open(files, read);
  if (!reader) {
    err << "perfstream export: " << reader.error().message() << "\n";
    return 1;
  }
  const bool to_stdout = output == "-";
  const std::string partial = output + ".partial";
  std::ofstream file;
  if (!to_stdout) {
    file.open(partial, std::ios::binary | std::ios::trunc);
    if (!file) {
      err << "perfstream export: cannot create " << partial << ": " << std::strerror(errno) << "\n";
      return 1;
    }
  }
  std::ostream& sink = to_stdout ? out : file;
  exporter::PerfettoExporter exporter(**reader, options, sink);
  auto summary = exporter.run();
  if (!to_stdout) file.close();
  if (!summary || (!to_stdout && !file)) {
    err << "perfstream export: " << (summary ? std::string("writing ") + partial + " failed" : summary.error().message())
        << "\n";
    if (!to_stdout) std::remove(partial.c_str());
    return 1;
  }
  if (!to_stdout && std::rename(partial.c_str(), output.c_str()) != 0) {
    err << "perfstream export: cannot rename " << partial << " to " << output << ": " << std::strerror(errno) << "\n";
    std::remove(partial.c_str());
    return 1;
  }
  const bool failed =
      report_reading("export", **reader, read.skip_corrupt, &exporter.merge(), options.merge.window_bytes, err);
  if (!quiet) {
    err << "perfstream export: " << summary->records << " records (" << summary->sched_switches << " sched_switch, "
        << summary->instants << " instants), " << summary->lost_notices << " lost notices -> "
        << (to_stdout ? std::string("standard output") : output) << " (" << summary->packets << " packets, "
        << summary->bytes << " bytes)" << (failed ? "; incomplete: see above" : "") << "\n";
  }
  return failed ? 1 : 0;
}

}  // namespace perfstream::cli
