// perfstream probes: the built-in probes and the fields of their records; with --object FILE, what that
// object holds: its programs (and where they attach), its output maps, the globals --set can write (with
// their types and defaults), and the fields of its records when it declares them or --event-type names them.
// The object is opened, never loaded: no privileges needed.
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <memory>

#include "collector/cli/commands.hpp"
#include "collector/cli/options.hpp"
#include "collector/decode/payload_schema.hpp"
#include "collector/kernel/bpf_globals.hpp"
#include "collector/kernel/bpf_probe.hpp"

namespace perfstream::cli {

namespace {

void print_fields(const v1::EventSchema& schema, std::ostream& out) {
  std::size_t width = 15;  // the longest built-in name (args_truncated) fills the column
  for (const auto& f : schema.fields()) width = std::max(width, f.name().size());
  for (const auto& f : schema.fields()) {
    const char* type = f.type() == v1::Field::SIGNED     ? "int"
                       : f.type() == v1::Field::UNSIGNED ? "uint"
                       : f.type() == v1::Field::STRING   ? "string"
                                                         : "bytes";
    out << "    " << std::left << std::setw(static_cast<int>(width)) << f.name() << " " << std::setw(7) << type
        << " offset " << std::setw(4) << f.offset() << " size " << f.size();
    if (f.variable()) out << " (variable" << (f.length_field().empty() ? "" : ", length in " + f.length_field()) << ")";
    if (f.hint() == "enum") {
      std::string names;
      for (const auto& e : f.enumerators()) names += (names.empty() ? "" : " ") + e.name() + "=" + std::to_string(e.value());
      out << ", enum: " << names;
    } else if (!f.hint().empty()) {
      out << ", shown as " << f.hint();  // docs/FORMAT.md, "Display hints"
    }
    out << "\n";
  }
}

const char* output_map_kind(bpf_map_type type) {
  switch (type) {
    case BPF_MAP_TYPE_PERF_EVENT_ARRAY: return "perf event array";
    case BPF_MAP_TYPE_RINGBUF: return "ring buffer";
    default: return nullptr;
  }
}

// probes --object FILE [--event-type STRUCT [--btf FILE]].
int describe_object(const ArgParser& parser, std::ostream& out, std::ostream& err) {
  const std::string path = *parser.value("object");
  std::unique_ptr<bpf_object, void (*)(bpf_object*)> object(bpf_object__open_file(path.c_str(), nullptr),
                                                            bpf_object__close);
  if (object == nullptr) {
    err << "perfstream probes: " << Error::from_errno("opening BPF object " + path, errno,
                                                      "is it a BPF ELF object built with clang -target bpf?").message()
        << "\n";
    return 1;
  }
  out << path << "\n  programs (name, attach section):\n";
  std::size_t width = 0;
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, object.get()) width = std::max(width, std::strlen(bpf_program__name(prog)));
  bpf_object__for_each_program(prog, object.get()) {
    out << "    " << std::left << std::setw(static_cast<int>(width)) << bpf_program__name(prog) << " "
        << bpf_program__section_name(prog) << "\n";
  }
  out << "  output maps (--map):\n";
  bool any_output = false;
  bpf_map* map = nullptr;
  bpf_object__for_each_map(map, object.get()) {
    const char* kind = output_map_kind(bpf_map__type(map));
    if (kind == nullptr) continue;
    any_output = true;
    out << "    " << bpf_map__name(map) << " " << kind;
    if (bpf_map__type(map) == BPF_MAP_TYPE_RINGBUF) out << ", " << bpf_map__max_entries(map) << " bytes";
    out << "\n";
  }
  if (!any_output) out << "    (none)\n";
  auto globals = BpfGlobals::of(object.get(), path);
  if (!globals) {
    err << "perfstream probes: " << globals.error().message() << "\n";
    return 1;
  }
  out << "  globals (--set NAME=VALUE):\n";
  std::size_t name_width = 0;
  std::size_t type_width = 0;
  for (const auto& g : globals->list()) {
    name_width = std::max(name_width, g.name.size());
    type_width = std::max(type_width, g.type.size());
  }
  for (const auto& g : globals->list()) {
    out << "    " << std::left << std::setw(static_cast<int>(name_width)) << g.name << " "
        << std::setw(static_cast<int>(type_width)) << g.type << " " << std::setw(7) << g.section << " = " << g.value
        << "  (" << g.kind << ")\n";
  }
  if (globals->list().empty()) out << "    (none)\n";
  Result<std::optional<v1::EventSchema>> schema = std::optional<v1::EventSchema>();
  if (auto type = parser.value("event-type")) {
    auto named = schema_of_event_type(object.get(), path, *type, parser.value("btf").value_or(""));
    if (!named) {
      err << "perfstream probes: " << named.error().message() << "\n";
      return 1;
    }
    schema = std::optional<v1::EventSchema>(std::move(*named));
  } else {
    schema = schema_of_object(object.get());
  }
  if (!schema) {
    err << "perfstream probes: " << path << ": " << schema.error().message() << "\n";
    return 1;
  }
  if (*schema) {
    out << "  record " << (*schema)->type_name() << ", " << (*schema)->fixed_size() << " bytes\n";
    print_fields(**schema, out);
  } else {
    out << "  record: not declared (dumped as hex; name its struct with --event-type)\n";
  }
  return 0;
}

}  // namespace

int run_probes(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  ArgParser parser("probes", "perfstream probes [NAME...] | perfstream probes --object FILE [--event-type STRUCT [--btf FILE]]");
  parser.flag("help", 'h', "show this help")
      .option("object", 0, "FILE", "describe this BPF object: programs, output maps, globals, record fields")
      .option("event-type", 0, "STRUCT", "with --object: show this struct's fields as its records' layout")
      .option("btf", 0, "FILE", "with --event-type: the BTF to take it from when the object lacks it");
  if (auto exit_status = parser.parse_or_exit(args, out, err)) return *exit_status;
  if (parser.has("object")) {
    if (!parser.positionals().empty()) {
      err << "perfstream probes: give probe names or --object FILE, not both\n";
      return 2;
    }
    return describe_object(parser, out, err);
  }
  if (parser.has("event-type") || parser.has("btf")) {
    err << "perfstream probes: --event-type and --btf go with --object FILE\n";
    return 2;
  }
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
    print_fields(*schema, out);
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
