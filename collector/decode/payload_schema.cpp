#include "collector/decode/payload_schema.hpp"

#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>
#include <memory>
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
// A tag names a top-level member; it applies when that member is one field (a nested struct's members carry
// their own tags on their own struct, which a flattened schema does not look at).
void copy_hints(const btf* b, std::uint32_t struct_id, const std::vector<int>& first_field,
                const std::vector<int>& field_count, v1::EventSchema& schema) {
  const std::uint32_t count = btf__type_cnt(b);
  for (std::uint32_t id = 1; id < count; ++id) {
    const btf_type* t = btf__type_by_id(b, id);
    if (t == nullptr || !btf_is_decl_tag(t) || t->type != struct_id) continue;
    const std::int32_t member = btf_decl_tag(t)->component_idx;
    if (member < 0 || static_cast<std::size_t>(member) >= first_field.size()) continue;  // -1: on the struct
    if (field_count[member] != 1) continue;
    const char* name = btf__name_by_offset(b, t->name_off);
    const std::string_view tag = name == nullptr ? "" : name;
    v1::Field* field = schema.mutable_fields(first_field[member]);
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

// StructFlattener: turns one struct of a BTF into the flat field list of a schema (docs/FORMAT.md, "Any
// struct as a record"). Nested structs become dotted names (`fname.pathes`), an anonymous struct's members
// keep their own names, arrays of char are STRING, arrays of other 1-byte integers BYTES, other arrays one
// field per element (`callers[0]`, `a[1].x`, `m[0][1]`) up to kMaxArrayElements elements and BYTES beyond,
// unions BYTES (an anonymous one named after its first member), enums SIGNED with hint "enum" and their
// enumerators, pointers UNSIGNED 8 bytes, floats BYTES. Bit-fields are refused: no field type holds them.
class StructFlattener {
 public:
  static constexpr std::uint64_t kMaxArrayElements = 16;
  static constexpr int kMaxDepth = 16;
  static constexpr int kMaxFields = 4096;

  StructFlattener(const btf* b, std::string type_name, v1::EventSchema& schema)
      : btf_(b), type_name_(std::move(type_name)), schema_(schema) {}

  Status add_members(const btf_type* st, const std::string& prefix, std::uint32_t base, int depth) {
    if (depth > kMaxDepth) return Error("struct " + type_name_ + ": nested deeper than " + std::to_string(kMaxDepth));
    for (unsigned i = 0; i < btf_vlen(st); ++i) {
      if (auto added = add_member(st, i, prefix, base, depth); !added) return added;
    }
    return {};
  }

  // Member i of the struct `st` that lies at `base`, its name after `prefix`.
  Status add_member(const btf_type* st, unsigned i, const std::string& prefix, std::uint32_t base, int depth) {
    const btf_member& member = btf_members(st)[i];
    const std::string name = btf__name_by_offset(btf_, member.name_off);
    if (btf_member_bitfield_size(st, i) != 0) {
      return Error("struct " + type_name_ + ": bit-field '" + prefix + name + "' is not supported in record layouts");
    }
    const std::uint32_t offset = base + btf_member_bit_offset(st, i) / 8;
    if (name.empty()) {  // an anonymous struct or union: C reaches its members by their own names
      const btf_type* t = resolve(btf_, member.type);
      if (t != nullptr && btf_is_struct(t)) return add_members(t, prefix, offset, depth + 1);
      if (t != nullptr && btf_is_union(t) && btf_vlen(t) > 0) {
        const std::string first = btf__name_by_offset(btf_, btf_members(t)[0].name_off);
        return add_value(member.type, prefix + first, offset, depth + 1);
      }
    }
    return add_value(member.type, prefix + name, offset, depth + 1);
  }

  Status add_value(std::uint32_t type_id, const std::string& name, std::uint32_t offset, int depth) {
    if (schema_.fields_size() >= kMaxFields) {
      return Error("struct " + type_name_ + ": more than " + std::to_string(kMaxFields) + " fields once flattened");
    }
    const btf_type* t = resolve(btf_, type_id);
    if (t == nullptr) return Error("struct " + type_name_ + ": member '" + name + "' has no type");
    v1::Field field;
    field.set_name(name);
    field.set_offset(offset);
    if (btf_is_int(t)) {
      field.set_type((btf_int_encoding(t) & BTF_INT_SIGNED) ? v1::Field::SIGNED : v1::Field::UNSIGNED);
      field.set_size(t->size);
    } else if (btf_is_enum(t) || btf_is_enum64(t)) {
      field.set_type(v1::Field::SIGNED);
      field.set_size(t->size);
      add_enumerators(t, field);
    } else if (btf_is_ptr(t)) {
      field.set_type(v1::Field::UNSIGNED);
      field.set_size(8);
    } else if (btf_is_struct(t)) {
      return add_members(t, name + ".", offset, depth);
    } else if (btf_is_array(t)) {
      const struct btf_array* arr = btf_array(t);
      const std::int64_t elem_size = btf__resolve_size(btf_, arr->type);
      if (elem_size < 0) return Error("struct " + type_name_ + ": array '" + name + "' of unknown size");
      const btf_type* declared = unqualified(btf_, arr->type);
      const btf_type* elem = resolve(btf_, arr->type);
      const bool text = declared != nullptr && is_char(btf_, declared);
      const bool bytes = elem != nullptr && btf_is_int(elem) && elem->size == 1;
      if (!text && !bytes && elem_size > 0 && elements_of(t) <= kMaxArrayElements) {
        for (std::uint32_t k = 0; k < arr->nelems; ++k) {
          const std::string element = name + "[" + std::to_string(k) + "]";
          const std::uint32_t at = offset + static_cast<std::uint32_t>(k * elem_size);
          if (auto st = add_value(arr->type, element, at, depth + 1); !st) return st;
        }
        return {};
      }
      field.set_type(text ? v1::Field::STRING : v1::Field::BYTES);
      field.set_size(static_cast<std::uint32_t>(elem_size * arr->nelems));
    } else {  // unions, floats
      field.set_type(v1::Field::BYTES);
      const std::int64_t size = btf__resolve_size(btf_, type_id);
      field.set_size(size > 0 ? static_cast<std::uint32_t>(size) : 0);
    }
    *schema_.add_fields() = std::move(field);
    return {};
  }

 private:
  // Elements of an array counted through its nested arrays: int m[4][8] has 32.
  std::uint64_t elements_of(const btf_type* t) const {
    std::uint64_t n = 1;
    while (t != nullptr && btf_is_array(t) && n <= kMaxArrayElements) {
      n *= btf_array(t)->nelems;
      t = resolve(btf_, btf_array(t)->type);
    }
    return n;
  }

  void add_enumerators(const btf_type* t, v1::Field& field) const {
    field.set_hint("enum");
    if (btf_is_enum(t)) {
      const struct btf_enum* e = btf_enum(t);
      for (unsigned i = 0; i < btf_vlen(t); ++i) {
        v1::Enumerator* out = field.add_enumerators();
        out->set_name(btf__name_by_offset(btf_, e[i].name_off));
        // The field is SIGNED: a value is read sign-extended from the enum's size.
        out->set_value(static_cast<std::int32_t>(e[i].val));
      }
    } else {
      const struct btf_enum64* e = btf_enum64(t);
      for (unsigned i = 0; i < btf_vlen(t); ++i) {
        v1::Enumerator* out = field.add_enumerators();
        out->set_name(btf__name_by_offset(btf_, e[i].name_off));
        out->set_value(static_cast<std::int64_t>(btf_enum64_value(&e[i])));
      }
    }
  }

  const btf* btf_;
  std::string type_name_;
  v1::EventSchema& schema_;
};

}  // namespace

Result<v1::EventSchema> schema_from_btf(const btf* b, const std::string& type_name) {
  std::int32_t id = btf__find_by_name_kind(b, type_name.c_str(), BTF_KIND_STRUCT);
  if (id < 0) {  // a typedef of a struct (`typedef struct {...} event_t`) names it as well
    const std::int32_t alias = btf__find_by_name_kind(b, type_name.c_str(), BTF_KIND_TYPEDEF);
    std::uint32_t target = 0;
    if (alias >= 0) {
      const btf_type* t = resolve(b, static_cast<std::uint32_t>(alias), &target);
      if (t != nullptr && btf_is_struct(t)) id = static_cast<std::int32_t>(target);
    }
  }
  if (id < 0) return Error("BTF has no struct named '" + type_name + "'");
  const btf_type* st = btf__type_by_id(b, id);
  v1::EventSchema schema;
  schema.set_type_name(type_name);
  schema.set_fixed_size(st->size);
  const btf_member* members = btf_members(st);
  const unsigned n = btf_vlen(st);
  std::vector<std::string> names;
  for (unsigned i = 0; i < n; ++i) names.push_back(btf__name_by_offset(b, members[i].name_off));

  // Member by member, so that each top-level member's first field is known (decl tags name members).
  StructFlattener flattener(b, type_name, schema);
  std::vector<int> first_field(n, -1);
  std::vector<int> field_count(n, 0);
  for (unsigned i = 0; i < n; ++i) {
    first_field[i] = schema.fields_size();
    if (auto added = flattener.add_member(st, i, "", 0, 0); !added) return added.error();
    field_count[i] = schema.fields_size() - first_field[i];
  }
  // A trailing array is variable-length when the struct says how much of it is used.
  if (n > 0 && field_count[n - 1] == 1) {
    v1::Field* last = schema.mutable_fields(first_field[n - 1]);
    const bool array = last->type() == v1::Field::STRING || last->type() == v1::Field::BYTES;
    const btf_type* t = resolve(b, members[n - 1].type);
    for (const auto& other : names) {
      if (array && t != nullptr && btf_is_array(t) && other == names[n - 1] + "_len") {
        last->set_length_field(other);
        last->set_variable(true);
        schema.set_fixed_size(last->offset());
      }
    }
  }
  copy_hints(b, static_cast<std::uint32_t>(id), first_field, field_count, schema);
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

Result<v1::EventSchema> schema_of_event_type(bpf_object* object, const std::string& object_name,
                                             const std::string& type_name, const std::string& btf_path) {
  const btf* own = bpf_object__btf(object);
  const bool in_object = own != nullptr && (btf__find_by_name_kind(own, type_name.c_str(), BTF_KIND_STRUCT) >= 0 ||
                                            btf__find_by_name_kind(own, type_name.c_str(), BTF_KIND_TYPEDEF) >= 0);
  if (in_object) {
    auto schema = schema_from_btf(own, type_name);
    if (schema) return schema;
    if (btf_path.empty()) return schema.error().with_context(object_name);
  }
  if (btf_path.empty()) {
    return Error("--event-type " + type_name + ": " + object_name + " has no struct " + type_name +
                 " in its BTF (clang leaves out a struct used only as a stack variable); give --btf FILE with it, "
                 "such as what clang -g -c makes of the header that declares it");
  }
  std::unique_ptr<btf, void (*)(btf*)> other(btf__parse(btf_path.c_str(), nullptr), btf__free);
  if (other == nullptr) {
    return Error::from_errno("--btf " + btf_path + ": reading its BTF", errno,
                             "give an object built with clang -g or a raw BTF file");
  }
  auto schema = schema_from_btf(other.get(), type_name);
  if (!schema) {
    return Error("--event-type " + type_name + ": neither " + object_name + " nor --btf " + btf_path +
                 " has it: " + schema.error().message());
  }
  return schema;
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
