// builtin_probe_schema (declared in payload_schema.hpp). A file of its own: it needs the probes embedded in
// kernel/bpf_probe, and a binary that only decodes payloads (the unit tests, a trace file reader) should not
// link them in with payload_schema.cpp.
#include <bpf/libbpf.h>

#include <cerrno>

#include "collector/decode/payload_schema.hpp"
#include "collector/kernel/bpf_probe.hpp"

namespace perfstream {

Result<v1::EventSchema> builtin_probe_schema(const std::string& name) {
  for (const auto& info : builtin_probes()) {
    if (name != info.name) continue;
    const std::span<const char> elf = builtin_probe_object(name);
    LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = info.name);
    bpf_object* object = bpf_object__open_mem(elf.data(), elf.size(), &opts);
    if (object == nullptr) return Error::from_errno("opening built-in probe '" + name + "'", errno);
    auto schema = schema_of_object(object);
    bpf_object__close(object);
    if (!schema) return schema.error().with_context("probe '" + name + "'");
    if (!*schema) return Error("probe '" + name + "' declares no record layout");
    (*schema)->set_kind(info.event_kind);
    (*schema)->set_name(name);
    return std::move(**schema);
  }
  return Error("unknown probe '" + name + "'");
}

}  // namespace perfstream
