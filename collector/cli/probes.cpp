// perfstream probes: the built-in probes and the fields of their records.
#include <bpf/libbpf.h>

#include <algorithm>
#include <iomanip>
#include <iostream>

#include "collector/cli/commands.hpp"
#include "collector/cli/options.hpp"
#include "collector/decode/payload_schema.hpp"
#include "collector/kernel/bpf_probe.hpp"

namespace perfstream::cli {

int run_probes(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  ArgParser parser("probes", "perfstream probes [NAME...]");
  parser.flag("help", 'h', "show this help");
  if (auto exit_status = parser.parse_or_exit(args, out, err)) return *exit_status;
  int status = 0;
  for (const auto& info : builtin_probes()) {
    if (!parser.positionals().empty() &&
        std::find(parser.positionals().begin(), parser.positionals().end(), info.name) == parser.positionals().end()) {
      continue;
    }
    out << info.name << ": " << info.description << "\n";
    if (info.driven_by_bench) {
      out << "  for perfstream bench: it records only what a driver asks of it through its loadgen_config map\n";
    }
    auto schema = builtin_probe_schema(info.name);
    if (!schema) {
      err << "perfstream probes: " << schema.error().message() << "\n";
      status = 1;
      continue;
    }
    out << "  record " << schema->type_name() << ", " << schema->fixed_size() << " bytes"
        << (schema->fields_size() > 0 && schema->fields(schema->fields_size() - 1).variable() ? " + variable" : "")
        << ", kind " << info.event_kind << "\n";
    for (const auto& f : schema->fields()) {
      const char* type = f.type() == v1::Field::SIGNED     ? "int"
                         : f.type() == v1::Field::UNSIGNED ? "uint"
                         : f.type() == v1::Field::STRING   ? "string"
                                                           : "bytes";
      // One space at least after the name: the longest built-in name (args_truncated) fills the column.
      out << "    " << std::left << std::setw(15) << f.name() << " " << std::setw(7) << type << " offset "
          << std::setw(4) << f.offset() << " size " << f.size();
      if (f.variable()) out << " (variable" << (f.length_field().empty() ? "" : ", length in " + f.length_field()) << ")";
      if (!f.hint().empty()) out << ", shown as " << f.hint();  // docs/FORMAT.md, "Display hints"
      out << "\n";
    }
  }
  for (const auto& name : parser.positionals()) {
    bool known = false;
    for (const auto& info : builtin_probes()) known |= name == info.name;
    if (!known) {
      err << "perfstream probes: unknown probe '" << name << "'\n";
      status = 1;
    }
  }
  return status;
}

}  // namespace perfstream::cli
