// ArgParser: perf-style command-line flags for perfstream's subcommands.
//
// Flags are declared with their long name, an optional one-letter short name, whether they take a value,
// and a one-line help. Accepted spellings: --name VALUE, --name=VALUE, -n VALUE, -nVALUE, and for flags
// without a value --name / -n. A flag may be repeated (values() returns all). "--" ends the flags; what
// follows is the command (rest()). Anything else that starts with '-' is an error that names it; the first
// non-flag word also ends the flags only when the parser allows positionals.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "collector/util/result.hpp"

namespace perfstream {

class ArgParser {
 public:
  ArgParser(std::string command, std::string usage) : command_(std::move(command)), usage_(std::move(usage)) {}

  ArgParser& flag(const std::string& name, char short_name, const std::string& help);          // no value
  ArgParser& option(const std::string& name, char short_name, const std::string& value_name,
                    const std::string& help);                                                   // takes a value
  ArgParser& notes(std::string text) {  // printed after the flags in help()
    notes_ = std::move(text);
    return *this;
  }

  // Parses args (without the program and subcommand names).
  Status parse(const std::vector<std::string>& args);
  // What every subcommand does first: parses args; on a usage error prints it to `err` and gives 2; with
  // --help prints the help to `out` and gives 0; otherwise nullopt, and the command goes on.
  std::optional<int> parse_or_exit(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

  bool has(const std::string& name) const;
  std::optional<std::string> value(const std::string& name) const;  // the last one given
  std::vector<std::string> values(const std::string& name) const;   // every one, in order
  const std::vector<std::string>& positionals() const { return positionals_; }
  const std::vector<std::string>& rest() const { return rest_; }   // after "--"

  std::string help() const;

 private:
  struct Spec {
    std::string name;
    char short_name;
    bool takes_value;
    std::string value_name;
    std::string help;
  };
  const Spec* find_long(const std::string& name) const;
  const Spec* find_short(char c) const;

  std::string command_;
  std::string usage_;
  std::string notes_;
  std::vector<Spec> specs_;
  std::map<std::string, std::vector<std::string>> given_;
  std::vector<std::string> positionals_;
  std::vector<std::string> rest_;
};

// Value parsers shared by the commands; errors name the flag and the text.
Result<std::uint64_t> parse_count(const std::string& flag, const std::string& text);
// "64K", "4M", "1G", "4096": bytes.
Result<std::uint64_t> parse_bytes(const std::string& flag, const std::string& text);
// "500ms", "10s", "2m", "1h", "10" (seconds): milliseconds.
Result<std::uint64_t> parse_duration_ms(const std::string& flag, const std::string& text);

}  // namespace perfstream
