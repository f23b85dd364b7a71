#include "collector/decode/payload_schema.hpp"

#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <cstring>
#include <string_view>

namespace perfstream {
namespace {

// Follows typedefs and qualifiers to the type that has a shape.
const btf_type* resolve(const btf* b, std::uint32_t id, std::uint32_t* out_id = nullptr) {
  const btf_type* t = btf__type_by_id(b, id);
  while (t != nullptr && (btf_is_typedef(t) || btf_is_const(t) || btf_is_volatile(t) || btf_is_restrict(t))) {
    id = t->type;
    t = btf__type_by_id(b, id);
  }
  if (out_id != nullptr) *out_id = id;
  return t;
}

std::string name_of(const btf* b, const btf_type* t) {
  const char* n = btf__name_by_offset(b, t->name_off);
  return n == nullptr ? "" : n;
}

// Strips const/volatile/restrict but keeps typedefs: an array of `char` is text, one of `__u8` (a typedef
// of unsigned char) is bytes.
const btf_type* unqualified(const btf* b, std::uint32_t id) {
  const btf_type* t = btf__type_by_id(b, id);
  while (t != nullptr && (btf_is_const(t) || btf_is_volatile(t) || btf_is_restrict(t))) t = btf__type_by_id(b, t->type);
  return t;
}

bool is_char(const btf* b, const btf_type* t) {
  if (!btf_is_int(t) || t->size != 1) return false;
  const std::string n = name_of(b, t);
  return n == "char" || n == "signed char" || n == "unsigned char" || (btf_int_encoding(t) & BTF_INT_CHAR) != 0;
}

constexpr std::string_view kHintTag = "perfstream:hint=";
constexpr std::string_view kHintArgTag = "perfstream:hint.";

// Display hints are BTF decl tags on the struct's members (PS_HINT and PS_HINT_ARG in bpf/events.h):
// "perfstream:hint=NAME" and "perfstream:hint.KEY=FIELD". Other tags are someone else's and are skipped.
void copy_hints(const btf* b, std::uint32_t struct_id, v1::EventSchema& schema) {
  const std::uint32_t count = btf__type_cnt(b);
  for (std::uint32_t id = 1; id < count; ++id) {
    const btf_type* t = btf__type_by_id(b, id);
    if (t == nullptr || !btf_is_decl_tag(t) || t->type != struct_id) continue;
    const std::int32_t member = btf_decl_tag(t)->component_idx;
    if (member < 0 || member >= schema.fields_size()) continue;  // -1: a tag on the struct itself
    const char* name = btf__name_by_offset(b, t->name_off);
    const std::string_view tag = name == nullptr ? "" : name;
    v1::Field* field = schema.mutable_fields(member);
    if (tag.substr(0, kHintTag.size()) == kHintTag) {
      field->set_hint(std::string(tag.substr(kHintTag.size())));
    } else if (tag.substr(0, kHintArgTag.size()) == kHintArgTag) {
      const std::string_view arg = tag.substr(kHintArgTag.size());
      const std::size_t eq = arg.find('=');
      if (eq == std::string_view::npos || eq == 0) continue;
      (*field->mutable_hint_args())[std::string(arg.substr(0, eq))] = std::string(arg.substr(eq + 1));
    }
  }
}

}  // namespace

Result<v1::EventSchema> schema_from_btf(const btf* b, const std::string& type_name) {
  const std::int32_t id = btf__find_by_name_kind(b, type_name.c_str(), BTF_KIND_STRUCT);
  if (id < 0) return Error("BTF has no struct named '" + type_name + "'");
  const btf_type* st = btf__type_by_id(b, id);
  v1::EventSchema schema;
  schema.set_type_name(type_name);
  schema.set_fixed_size(st->size);
  const btf_member* members = btf_members(st);
  const unsigned n = btf_vlen(st);
  std::vector<std::string> names;
  for (unsigned i = 0; i < n; ++i) names.push_back(btf__name_by_offset(b, members[i].name_off));

  for (unsigned i = 0; i < n; ++i) {
    const btf_member& m = members[i];
    if (btf_member_bitfield_size(st, i) != 0) {
      return Error("struct " + type_name + ": bit-field '" + names[i] + "' is not supported in record layouts");
    }
    v1::Field field;
    field.set_name(names[i]);
    field.set_offset(btf_member_bit_offset(st, i) / 8);
    const btf_type* t = resolve(b, m.type);
    if (t == nullptr) return Error("struct " + type_name + ": member '" + names[i] + "' has no type");
    if (btf_is_int(t)) {
      field.set_type((btf_int_encoding(t) & BTF_INT_SIGNED) ? v1::Field::SIGNED : v1::Field::UNSIGNED);
      field.set_size(t->size);
    } else if (btf_is_enum(t)) {
      field.set_type(v1::Field::SIGNED);
      field.set_size(t->size);
    } else if (btf_is_array(t)) {
      const struct btf_array* arr = btf_array(t);
      const btf_type* elem = resolve(b, arr->type);
      const std::int64_t elem_size = btf__resolve_size(b, arr->type);
      if (elem == nullptr || elem_size <= 0) return Error("struct " + type_name + ": array '" + names[i] + "' of unknown size");
      const btf_type* declared = unqualified(b, arr->type);
      field.set_type(declared != nullptr && is_char(b, declared) ? v1::Field::STRING : v1::Field::BYTES);
      field.set_size(static_cast<std::uint32_t>(elem_size * arr->nelems));
      // A trailing array is variable-length when the struct says how much of it is used.
      if (i + 1 == n) {
        for (const auto& other : names) {
          if (other == names[i] + "_len") {
            field.set_length_field(other);
            field.set_variable(true);
            schema.set_fixed_size(field.offset());
          }
        }
      }
    } else if (btf_is_ptr(t)) {
      field.set_type(v1::Field::UNSIGNED);
      field.set_size(8);
    } else {
      field.set_type(v1::Field::BYTES);
      const std::int64_t size = btf__resolve_size(b, m.type);
      field.set_size(size > 0 ? static_cast<std::uint32_t>(size) : 0);
    }
    *schema.add_fields() = field;
  }
  copy_hints(b, static_cast<std::uint32_t>(id), schema);
  return schema;
}

Result<std::optional<v1::EventSchema>> schema_of_object(bpf_object* object) {
  const btf* b = bpf_object__btf(object);
  if (b == nullptr) return std::optional<v1::EventSchema>();
  const std::int32_t var = btf__find_by_name_kind(b, "ps_event_layout", BTF_KIND_VAR);
  if (var < 0) return std::optional<v1::EventSchema>();
  const btf_type* ptr = resolve(b, btf__type_by_id(b, var)->type);
  if (ptr == nullptr || !btf_is_ptr(ptr)) return Error("ps_event_layout is not a pointer to the record struct");
  const btf_type* st = resolve(b, ptr->type);
  if (st == nullptr || !btf_is_struct(st)) return Error("ps_event_layout does not point to a struct");
  auto schema = schema_from_btf(b, name_of(b, st));
  if (!schema) return schema.error();
  return std::optional<v1::EventSchema>(std::move(*schema));
}

std::vector<FieldValue> decode_payload(const v1::EventSchema& schema, std::span<const char> payload) {
  std::vector<FieldValue> out;
  decode_payload_into(schema, payload, out);
  return out;
}

void decode_payload_into(const v1::EventSchema& schema, std::span<const char> payload, std::vector<FieldValue>& out) {
  out.resize(static_cast<std::size_t>(schema.fields_size()));
  std::size_t at = 0;
  auto read_uint = [&](std::uint32_t offset, std::uint32_t size, std::uint64_t* v) {
    // 64-bit sum: a schema comes from the trace file, and a huge offset must not wrap past the check.
    if (size == 0 || size > 8 || std::uint64_t{offset} + size > payload.size()) return false;
    std::uint64_t x = 0;
    std::memcpy(&x, payload.data() + offset, size);  // little-endian hosts, as the kernel wrote them
    *v = x;
    return true;
  };
  for (const auto& f : schema.fields()) {
    FieldValue& v = out[at++];
    if (v.name != f.name()) v.name = f.name();  // a reused vector keeps its names: no copy per record
    v.type = f.type();
    v.missing = false;
    v.signed_value = 0;
    v.unsigned_value = 0;
    v.text.clear();
    switch (f.type()) {
      case v1::Field::SIGNED:
      case v1::Field::UNSIGNED: {
        std::uint64_t raw = 0;
        if (!read_uint(f.offset(), f.size(), &raw)) {
          v.missing = true;
          break;
        }
        v.unsigned_value = raw;
        if (f.type() == v1::Field::SIGNED && f.size() < 8 && (raw >> (f.size() * 8 - 1)) & 1) {
          raw |= ~std::uint64_t{0} << (f.size() * 8);  // sign-extend
        }
        v.signed_value = static_cast<std::int64_t>(raw);
        break;
      }
      case v1::Field::STRING:
      case v1::Field::BYTES: {
        if (f.offset() > payload.size()) {
          v.missing = true;
          break;
        }
        std::size_t len = std::min<std::size_t>(f.size(), payload.size() - f.offset());
        if (!f.length_field().empty()) {
          for (const auto& g : schema.fields()) {
            std::uint64_t used = 0;
            if (g.name() == f.length_field() && read_uint(g.offset(), g.size(), &used)) len = std::min<std::size_t>(len, used);
          }
        }
        const char* p = payload.data() + f.offset();
        // A string is text up to its first NUL, except a list of NUL-separated strings (hints argv, path_argv).
        if (f.type() == v1::Field::STRING && f.hint() != "argv" && f.hint() != "path_argv") len = strnlen(p, len);
        v.text.assign(p, len);
        break;
      }
      default:
        v.missing = true;
    }
  }
}

const v1::EventSchema* schema_for_payload(const google::protobuf::RepeatedPtrField<v1::EventSchema>& schemas,
                                          std::span<const char> payload) {
  if (schemas.size() == 1 && schemas[0].kind() == 0) return &schemas[0];
  if (payload.size() < 4) return nullptr;
  std::uint32_t kind = 0;
  std::memcpy(&kind, payload.data(), 4);
  for (const auto& s : schemas) {
    if (s.kind() == kind) return &s;
  }
  return nullptr;
}

}  // namespace perfstream
