// perfstream: record, read and stream BPF perf-ring output. main() only dispatches; it is the one place
// that catches exceptions.
#include <iostream>
#include <string>
#include <vector>

#include "collector/cli/commands.hpp"

namespace {

void usage(std::ostream& out) {
  out << "usage: perfstream COMMAND [flags]\n\n"
         "commands:\n"
         "  record   capture BPF output into a compressed trace file (perfstream record --probe exec)\n"
         "  dump     print the records of a trace file, in time order (--json for one object per line)\n"
         "  stats    counts per CPU and event, loss, time span, rates, bytes raw and compressed\n"
         "  export   a recording as a Perfetto trace (--to perfetto), for ui.perfetto.dev\n"
         "  probes   the built-in probes and their fields\n"
         "  stream   capture like record, and send the batches to a sink (acknowledged, spooled, TLS)\n"
         "  sink     receive streams from many collectors into one trace file each\n"
         "  bench    drain rates in the real kernel, against libbpf's perf_buffer and ring buffer\n\n"
         "perfstream COMMAND --help shows the flags of a command.\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(std::cerr);
    return 2;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (command == "record") return perfstream::cli::run_record(args, std::cout, std::cerr);
    if (command == "dump") return perfstream::cli::run_dump(args, std::cout, std::cerr);
    if (command == "stats") return perfstream::cli::run_stats(args, std::cout, std::cerr);
    if (command == "export") return perfstream::cli::run_export(args, std::cout, std::cerr);
    if (command == "stream") return perfstream::cli::run_stream(args, std::cout, std::cerr);
    if (command == "sink") return perfstream::cli::run_sink(args, std::cout, std::cerr);
    if (command == "bench") return perfstream::cli::run_bench(args, std::cout, std::cerr);
    if (command == "probes") return perfstream::cli::run_probes(args, std::cout, std::cerr);
    if (command == "--help" || command == "-h" || command == "help") {
      usage(std::cout);
      return 0;
    }
    if (command == "--version" || command == "version") {
      std::cout << "perfstream " << PERFSTREAM_VERSION << "\n";
      return 0;
    }
    std::cerr << "perfstream: unknown command '" << command << "'\n\n";
    usage(std::cerr);
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "perfstream " << command << ": internal error: " << e.what() << "\n";
    return 1;
  }
}
