// The subcommands of the perfstream binary. Each takes its arguments (after the subcommand name) and the
// streams to write to, and returns the process exit status: 0 success, 1 failure, 2 bad usage.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace perfstream::cli {

int run_record(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int run_dump(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int run_stats(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int run_stream(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int run_sink(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int run_bench(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int run_export(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int run_probes(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace perfstream::cli
