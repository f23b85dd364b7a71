// Payload schemas: how the bytes a BPF program wrote are laid out, read from the object's BTF, and how a
// payload is turned into named values with such a schema.
//
// Finding the layout: a BPF object names its record struct with a global `ps_event_layout` whose type is
// a pointer to it (PS_EVENT_LAYOUT in bpf/common.bpf.h), or the caller names the struct (--event-type),
// which another BTF may hold (--btf). Members become fields: integers SIGNED or UNSIGNED by their encoding,
// enums SIGNED with hint "enum" and their enumerators, char arrays STRING, arrays of other 1-byte integers
// BYTES; nested structs and small arrays are flattened to dotted and indexed names (`fname.pathes`,
// `callers[0]`), see StructFlattener in payload_schema.cpp and docs/FORMAT.md for the exact rule.
// The last member, when it is an array with a sibling member named `<array>_len`, is variable: the payload
// may end inside it, and `<array>_len` says how many of its bytes are used. A member's display hint and
// its parameters come from BTF decl tags "perfstream:hint=NAME" and "perfstream:hint.KEY=FIELD" (PS_HINT in
// bpf/events.h); they are copied as written, and what they mean is decode/display_hints.hpp's business.
//
// Decoding never reads past the payload: a field the payload does not reach is reported as missing. A STRING
// ends at its first NUL, except one hinted "argv" or "path_argv" (NUL-separated strings), which keeps all its
// used bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "collector/util/result.hpp"
#include "perfstream.pb.h"

struct btf;
struct bpf_object;

namespace perfstream {

// The schema of `type_name` (a struct) in `btf`.
Result<v1::EventSchema> schema_from_btf(const btf* btf, const std::string& type_name);

// The schema of the struct (or typedef of a struct) `type_name` (--event-type): from the object's own BTF,
// else, when the object lacks it, from the BTF in `btf_path` (--btf: an ELF object built with clang -g, or
// a raw BTF file); "" looks nowhere else. Errors name the object, the file and what to do.
Result<v1::EventSchema> schema_of_event_type(bpf_object* object, const std::string& object_name,
                                             const std::string& type_name, const std::string& btf_path);

// The schema an object declares with ps_event_layout; nullopt when it declares none.
Result<std::optional<v1::EventSchema>> schema_of_object(bpf_object* object);

// The record layout of a built-in probe (kernel/bpf_probe), read from its embedded object's BTF (nothing
// is loaded; no privileges needed). kind and name are filled in.
Result<v1::EventSchema> builtin_probe_schema(const std::string& name);

struct FieldValue {
  std::string name;
  v1::Field::Type type = v1::Field::TYPE_UNSPECIFIED;
  std::int64_t signed_value = 0;
  std::uint64_t unsigned_value = 0;
  std::string text;  // STRING: up to the first NUL; BYTES: the raw bytes
  bool missing = false;
};

// Decodes `payload` field by field with `schema`.
std::vector<FieldValue> decode_payload(const v1::EventSchema& schema, std::span<const char> payload);
// The same into `out`, whose strings keep their memory from one call to the next (a reader of millions of
// records reuses one vector).
void decode_payload_into(const v1::EventSchema& schema, std::span<const char> payload, std::vector<FieldValue>& out);

// Picks the schema for a payload among a header's: by the leading u32 `kind` when schemas are tagged,
// else the only schema there is. nullptr when none fits.
const v1::EventSchema* schema_for_payload(const google::protobuf::RepeatedPtrField<v1::EventSchema>& schemas,
                                          std::span<const char> payload);

}  // namespace perfstream
