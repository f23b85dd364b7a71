#include "collector/kernel/bpf_globals.hpp"

#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>

namespace perfstream {
namespace {

bool is_qualifier(const btf_type* t) {
  return btf_is_const(t) || btf_is_volatile(t) || btf_is_restrict(t) || btf_is_type_tag(t);
}

// Follows typedefs and qualifiers to the type that has a shape.
const btf_type* resolve(const btf* b, std::uint32_t id) {
  const btf_type* t = btf__type_by_id(b, id);
  while (t != nullptr && (btf_is_typedef(t) || is_qualifier(t))) t = btf__type_by_id(b, t->type);
  return t;
}

std::string name_of(const btf* b, const btf_type* t) {
  const char* n = btf__name_by_offset(b, t->name_off);
  return n == nullptr ? "" : n;
}

// The type as C declares it, without qualifiers: "pid_t", "unsigned int", "char[16]", "enum mode", "void *".
std::string declared_type(const btf* b, std::uint32_t id) {
  if (id == 0) return "void";
  const btf_type* t = btf__type_by_id(b, id);
  if (t == nullptr) return "?";
  if (is_qualifier(t)) return declared_type(b, t->type);
  if (btf_is_array(t)) return declared_type(b, btf_array(t)->type) + "[" + std::to_string(btf_array(t)->nelems) + "]";
  if (btf_is_ptr(t)) return declared_type(b, t->type) + " *";
  const std::string name = name_of(b, t);
  if (btf_is_enum(t) || btf_is_enum64(t)) return "enum " + (name.empty() ? "(anonymous)" : name);
  if (btf_is_struct(t)) return "struct " + (name.empty() ? "(anonymous)" : name);
  if (btf_is_union(t)) return "union " + (name.empty() ? "(anonymous)" : name);
  if (btf_is_func_proto(t)) return "function";
  return name.empty() ? "?" : name;
}

bool is_char_element(const btf* b, std::uint32_t elem_id) {
  const btf_type* t = btf__type_by_id(b, elem_id);
  while (t != nullptr && is_qualifier(t)) t = btf__type_by_id(b, t->type);
  if (t == nullptr || !btf_is_int(t) || t->size != 1) return false;
  const std::string n = name_of(b, t);
  return n == "char" || n == "signed char" || n == "unsigned char" || (btf_int_encoding(t) & BTF_INT_CHAR) != 0;
}

// What a variable of this (resolved) type holds, for the settable kinds.
enum class Shape { Signed, Unsigned, Bool, Enum, Float, String, Other };

Shape shape_of(const btf* b, const btf_type* t) {
  if (t == nullptr) return Shape::Other;
  if (btf_is_int(t)) {
    const std::uint8_t encoding = btf_int_encoding(t);
    if (encoding & BTF_INT_BOOL) return t->size == 1 ? Shape::Bool : Shape::Other;
    if (btf_int_bits(t) != t->size * 8 || btf_int_offset(t) != 0) return Shape::Other;  // a bit-field type
    if (t->size != 1 && t->size != 2 && t->size != 4 && t->size != 8) return Shape::Other;  // __int128
    return (encoding & BTF_INT_SIGNED) ? Shape::Signed : Shape::Unsigned;
  }
  if (btf_is_enum(t) || btf_is_enum64(t)) return Shape::Enum;
  if (btf_is_float(t)) return t->size == 4 || t->size == 8 ? Shape::Float : Shape::Other;
  if (btf_is_array(t) && is_char_element(b, btf_array(t)->type) && btf_array(t)->nelems > 0) return Shape::String;
  return Shape::Other;
}

bool enum_is_signed(const btf_type* t) { return btf_kflag(t); }

// The enumerators of an enum type, as (name, value) with the value sign- or zero-extended to 64 bits.
std::vector<std::pair<std::string, std::int64_t>> enumerators(const btf* b, const btf_type* t) {
  std::vector<std::pair<std::string, std::int64_t>> out;
  if (btf_is_enum(t)) {
    const struct btf_enum* e = btf_enum(t);
    for (unsigned i = 0; i < btf_vlen(t); ++i) {
      const std::int64_t v = enum_is_signed(t) ? std::int64_t{e[i].val} : std::int64_t{static_cast<std::uint32_t>(e[i].val)};
      out.emplace_back(btf__name_by_offset(b, e[i].name_off), v);
    }
  } else if (btf_is_enum64(t)) {
    const struct btf_enum64* e = btf_enum64(t);
    for (unsigned i = 0; i < btf_vlen(t); ++i) {
      out.emplace_back(btf__name_by_offset(b, e[i].name_off), static_cast<std::int64_t>(btf_enum64_value(&e[i])));
    }
  }
  return out;
}

std::string bits_text(std::uint32_t size) { return std::to_string(size * 8) + "-bit"; }

// The range an integer of `size` bytes takes, as the error shows it.
std::string range_text(bool is_signed, std::uint32_t size) {
  const unsigned bits = size * 8;
  if (is_signed) {
    const std::uint64_t max = (std::uint64_t{1} << (bits - 1)) - 1;
    return "-" + std::to_string(max + 1) + " to " + std::to_string(max);
  }
  const std::uint64_t max = bits == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << bits) - 1;
  return "0 to " + std::to_string(max);
}

struct ParsedInteger {
  bool negative = false;
  std::uint64_t magnitude = 0;
};

// "42", "-42", "0x2a", "-0x2a"; nullopt when it is not an integer or does not fit 64 bits.
std::optional<ParsedInteger> parse_integer(const std::string& text) {
  ParsedInteger out;
  std::string_view s = text;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    out.negative = s[0] == '-';
    s.remove_prefix(1);
  }
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s.remove_prefix(2);
  }
  if (s.empty()) return std::nullopt;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out.magnitude, base);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return out;
}

// The integer as the low `size` bytes of its two's complement, if it is in range for the type.
std::optional<std::uint64_t> fit_integer(const ParsedInteger& v, bool is_signed, std::uint32_t size) {
  const unsigned bits = size * 8;
  if (is_signed) {
    const std::uint64_t max_positive = (std::uint64_t{1} << (bits - 1)) - 1;
    if (v.negative ? v.magnitude > max_positive + 1 : v.magnitude > max_positive) return std::nullopt;
    return v.negative ? ~v.magnitude + 1 : v.magnitude;
  }
  // -1 is every bit set, as a C loader's `targ_uid = -1` (libbpf-tools' INVALID_UID) stores it; any other
  // negative number is out of range.
  if (v.negative && v.magnitude == 1) return bits == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << bits) - 1;
  if (v.negative && v.magnitude != 0) return std::nullopt;
  if (bits < 64 && v.magnitude >> bits) return std::nullopt;
  return v.magnitude;
}

std::uint64_t load_le(const char* bytes, std::uint32_t size) {
  std::uint64_t v = 0;
  std::memcpy(&v, bytes, size);  // BPF objects are built for the host's byte order (libbpf refuses others)
  return v;
}

std::int64_t sign_extend(std::uint64_t raw, std::uint32_t size) {
  if (size < 8 && (raw >> (size * 8 - 1)) & 1) raw |= ~std::uint64_t{0} << (size * 8);
  return static_cast<std::int64_t>(raw);
}

std::string hex_bytes(const char* p, std::size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < n; ++i) {
    out += digits[static_cast<unsigned char>(p[i]) >> 4];
    out += digits[static_cast<unsigned char>(p[i]) & 15];
  }
  return out;
}

// The value at `p` as --set would write it.
std::string render_value(const btf* b, const btf_type* t, Shape shape, const char* p, std::uint32_t size) {
  switch (shape) {
    case Shape::Signed: return std::to_string(sign_extend(load_le(p, size), size));
    case Shape::Unsigned: return std::to_string(load_le(p, size));
    case Shape::Bool: return p[0] ? "true" : "false";
    case Shape::Enum: {
      const std::uint64_t raw = load_le(p, size);
      const std::int64_t v = enum_is_signed(t) ? sign_extend(raw, size) : static_cast<std::int64_t>(raw);
      for (const auto& [name, value] : enumerators(b, t)) {
        if (value == v) return name;
      }
      return std::to_string(v);
    }
    case Shape::Float: {
      char buf[64];
      double d = 0;
      if (size == 4) {
        float f = 0;
        std::memcpy(&f, p, 4);
        d = f;
      } else {
        std::memcpy(&d, p, 8);
      }
      auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), d);
      return ec == std::errc() ? std::string(buf, end) : "?";
    }
    case Shape::String: return "\"" + std::string(p, strnlen(p, size)) + "\"";
    case Shape::Other: return "0x" + hex_bytes(p, size);
  }
  return "";
}

std::string kind_text(const btf* b, const btf_type* t, Shape shape, std::uint32_t size) {
  switch (shape) {
    case Shape::Signed: return "signed " + bits_text(size) + " integer";
    case Shape::Unsigned: return "unsigned " + bits_text(size) + " integer";
    case Shape::Bool: return "true or false";
    case Shape::Enum: {
      std::string names;
      for (const auto& [name, value] : enumerators(b, t)) names += (names.empty() ? "" : ", ") + name;
      return "one of " + names;
    }
    case Shape::Float: return size == 4 ? "float" : "double";
    case Shape::String: return "string of at most " + std::to_string(size - 1) + " bytes";
    case Shape::Other: return "not settable";
  }
  return "";
}

// The data section an internal map holds: libbpf names them "<object prefix>.rodata" (or the custom
// section's own name, ".data.NAME"), and gives them the DATASEC as their BTF value type.
const btf_type* datasec_of_map(const btf* b, const bpf_map* map) {
  const std::uint32_t value_id = bpf_map__btf_value_type_id(map);
  if (const btf_type* t = btf__type_by_id(b, value_id); value_id != 0 && t != nullptr && btf_is_datasec(t)) return t;
  const char* dot = std::strchr(bpf_map__name(map), '.');
  if (dot == nullptr) return nullptr;
  const std::int32_t id = btf__find_by_name_kind(b, dot, BTF_KIND_DATASEC);
  return id < 0 ? nullptr : btf__type_by_id(b, id);
}

}  // namespace

Result<GlobalSetting> parse_global_setting(const std::string& text) {
  const std::size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    return Error("--set '" + text + "': give NAME=VALUE (perfstream probes --object FILE lists the globals)");
  }
  return GlobalSetting{text.substr(0, eq), text.substr(eq + 1)};
}

Result<BpfGlobals> BpfGlobals::of(bpf_object* object, std::string object_name) {
  BpfGlobals globals;
  globals.object_name_ = std::move(object_name);
  globals.btf_ = bpf_object__btf(object);
  if (globals.btf_ == nullptr) return globals;  // no BTF: no typed globals (none are listed)
  const btf* b = globals.btf_;
  bpf_map* map = nullptr;
  bpf_object__for_each_map(map, object) {
    if (!bpf_map__is_internal(map)) continue;
    const btf_type* sec = datasec_of_map(b, map);
    if (sec == nullptr) continue;  // .rodata.str1.1 (string literals), .kconfig externs
    std::size_t map_size = 0;
    const char* initial = static_cast<const char*>(bpf_map__initial_value(map, &map_size));
    const btf_var_secinfo* vars = btf_var_secinfos(sec);
    for (unsigned i = 0; i < btf_vlen(sec); ++i) {
      const btf_type* var = btf__type_by_id(b, vars[i].type);
      if (var == nullptr || !btf_is_var(var) || btf_var(var)->linkage != BTF_VAR_GLOBAL_ALLOCATED) continue;
      if (std::uint64_t{vars[i].offset} + vars[i].size > map_size) continue;  // libbpf would have refused it
      BpfGlobal global;
      global.name = name_of(b, var);
      global.section = name_of(b, sec);
      global.type = declared_type(b, var->type);
      global.size = vars[i].size;
      const btf_type* resolved = resolve(b, var->type);
      const Shape shape = shape_of(b, resolved);
      global.settable = shape != Shape::Other;
      global.kind = kind_text(b, resolved, shape, vars[i].size);
      global.value = initial == nullptr ? "" : render_value(b, resolved, shape, initial + vars[i].offset, vars[i].size);
      globals.globals_.push_back(std::move(global));
      globals.slots_.push_back(Slot{map, vars[i].offset, var->type});
    }
  }
  return globals;
}

std::string BpfGlobals::names() const {
  std::string out;
  for (const auto& g : globals_) {
    if (g.settable) out += (out.empty() ? "" : ", ") + g.name;
  }
  return out;
}

Result<std::string> BpfGlobals::encode(const BpfGlobal& global, const Slot& slot, const std::string& value) const {
  const btf* b = btf_;
  const btf_type* t = resolve(b, slot.type_id);
  const Shape shape = shape_of(b, t);
  const std::uint32_t size = global.size;
  const std::string what = global.name + " is " + global.type;
  auto integer_bytes = [&](std::uint64_t bits) { return std::string(reinterpret_cast<const char*>(&bits), size); };
  switch (shape) {
    case Shape::Signed:
    case Shape::Unsigned: {
      const bool is_signed = shape == Shape::Signed;
      const std::string range = "(" + std::string(is_signed ? "signed " : "unsigned ") + bits_text(size) + " integer: " +
                                range_text(is_signed, size) + ")";
      auto parsed = parse_integer(value);
      if (!parsed) return Error("'" + value + "' is not an integer; " + what + " " + range);
      auto bits = fit_integer(*parsed, is_signed, size);
      if (!bits) {
        std::string hint;
        if (!is_signed && parsed->negative) {
          hint = "; for all bits set write -1 or 0x" + std::string(size * 2, 'f');
        }
        return Error(value + " is out of range: " + what + " " + range + hint);
      }
      return integer_bytes(*bits);
    }
    case Shape::Bool:
      if (value == "true" || value == "1") return std::string(1, '\1');
      if (value == "false" || value == "0") return std::string(1, '\0');
      return Error("'" + value + "' is not a bool; " + what + " (true, false, 1 or 0)");
    case Shape::Enum: {
      const auto list = enumerators(b, t);
      for (const auto& [name, v] : list) {
        if (name == value) return integer_bytes(static_cast<std::uint64_t>(v));
      }
      if (auto parsed = parse_integer(value)) {
        if (auto bits = fit_integer(*parsed, enum_is_signed(t), size)) return integer_bytes(*bits);
        return Error(value + " is out of range: " + what + " (" + bits_text(size) + ": " +
                     range_text(enum_is_signed(t), size) + ")");
      }
      std::string names;
      for (const auto& [name, v] : list) names += (names.empty() ? "" : ", ") + name;
      return Error("'" + value + "' is no enumerator of " + global.type + " (" + names + ")");
    }
    case Shape::Float: {
      double d = 0;
      auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), d);
      if (ec != std::errc() || ptr != value.data() + value.size() || value.empty()) {
        return Error("'" + value + "' is not a number; " + what);
      }
      if (size == 4) {
        if (std::abs(d) > std::numeric_limits<float>::max()) return Error(value + " is out of range: " + what + " (float)");
        const float f = static_cast<float>(d);
        return std::string(reinterpret_cast<const char*>(&f), 4);
      }
      return std::string(reinterpret_cast<const char*>(&d), 8);
    }
    case Shape::String: {
      if (value.size() + 1 > size) {
        return Error("\"" + value + "\" is " + std::to_string(value.size()) + " bytes; " + what + ", at most " +
                     std::to_string(size - 1) + " bytes and the NUL");
      }
      if (value.find('\0') != std::string::npos) return Error("a string for " + global.name + " cannot hold a NUL");
      std::string bytes(size, '\0');
      std::memcpy(bytes.data(), value.data(), value.size());
      return bytes;
    }
    case Shape::Other: break;
  }
  return Error(what + ", which --set cannot write (integers, bools, enums, floats and char arrays only)");
}

Status BpfGlobals::set(const GlobalSetting& setting) {
  const std::string what = object_name_ + ": --set " + setting.name + "=" + setting.value;
  for (std::size_t i = 0; i < globals_.size(); ++i) {
    const BpfGlobal& global = globals_[i];
    if (global.name != setting.name) continue;
    const Slot& slot = slots_[i];
    auto bytes = encode(global, slot, setting.value);
    if (!bytes) return bytes.error().with_context(what);
    std::size_t size = 0;
    const void* initial = bpf_map__initial_value(slot.map, &size);
    if (initial == nullptr) return Error(what + ": the section " + global.section + " has no initial value to write");
    std::string data(static_cast<const char*>(initial), size);
    std::memcpy(data.data() + slot.offset, bytes->data(), bytes->size());
    if (int err = bpf_map__set_initial_value(slot.map, data.data(), data.size()); err != 0) {
      return Error::from_errno(what + ": writing " + global.section, -err, "globals are set before the object is loaded");
    }
    globals_[i].value = render_value(btf_, resolve(btf_, slot.type_id), shape_of(btf_, resolve(btf_, slot.type_id)),
                                     bytes->data(), global.size);
    return {};
  }
  const std::string known = names();
  return Error(what + ": no global named '" + setting.name + "'; " +
               (known.empty() ? "the object has no settable globals" : "its globals: " + known));
}

Status BpfGlobals::set_all(const std::vector<GlobalSetting>& settings) {
  for (const auto& s : settings) {
    if (auto st = set(s); !st) return st;
  }
  return {};
}

}  // namespace perfstream
