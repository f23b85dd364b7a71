// The payload schemas of perfstream's built-in probes, read from the BTF of the objects embedded in their
// skeletons: bpf_object__open_mem only parses the ELF (no load), so this needs neither root nor BPF.
#pragma once

#include <bpf/libbpf.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "collector/decode/payload_schema.hpp"
#include "exec.skel.h"
#include "loadgen.skel.h"
#include "openat.skel.h"
#include "sched_switch.skel.h"

namespace perfstream::testing {

using BpfObjectPtr = std::unique_ptr<bpf_object, decltype(&bpf_object__close)>;

// Opens (does not load) a built-in probe's object: "exec", "openat", "sched_switch" or "loadgen".
inline BpfObjectPtr open_builtin_object(const std::string& name) {
  std::size_t size = 0;
  const void* bytes = nullptr;
  if (name == "exec") bytes = exec_bpf__elf_bytes(&size);
  else if (name == "openat") bytes = openat_bpf__elf_bytes(&size);
  else if (name == "sched_switch") bytes = sched_switch_bpf__elf_bytes(&size);
  else if (name == "loadgen") bytes = loadgen_bpf__elf_bytes(&size);
  else throw std::invalid_argument("no built-in probe " + name);
  LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = name.c_str());
  bpf_object* object = bpf_object__open_mem(bytes, size, &opts);
  if (object == nullptr || libbpf_get_error(object) != 0) throw std::runtime_error("cannot open built-in " + name);
  return BpfObjectPtr(object, &bpf_object__close);
}

// The schema a built-in object declares, with the name and kind the recorder gives it.
inline v1::EventSchema builtin_schema(const std::string& name, std::uint32_t kind) {
  BpfObjectPtr object = open_builtin_object(name);
  auto schema = schema_of_object(object.get());
  if (!schema || !schema->has_value()) throw std::runtime_error("built-in " + name + " declares no schema");
  v1::EventSchema s = **schema;
  s.set_name(name);
  s.set_kind(kind);
  return s;
}

}  // namespace perfstream::testing
