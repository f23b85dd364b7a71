// BpfGlobals: the global variables of an opened BPF object, read and set through its BTF before load, as a
// tool's own loader sets them through its skeleton (`obj->rodata->targ_pid = ...`). This is what
// `--set NAME=VALUE` and `perfstream probes --object FILE` use.
//
// Which globals: every variable of global linkage (what bpftool gen skeleton exposes; `static` ones are the
// program's own business) in the object's data sections: .rodata, .data, .bss, and custom .rodata.NAME /
// .data.NAME sections. Each section is one internal map of libbpf; a variable is the [offset, size) its
// section's BTF DATASEC gives it inside that map's initial value.
//
// Values are typed by the variable's BTF type (typedefs and qualifiers followed):
//   - integers of 1, 2, 4 or 8 bytes, signed or not: decimal, or hex with 0x, a leading '-' for negative
//     numbers; a value outside the type's range is refused naming the type and its range, except -1 for an
//     unsigned type, which is every bit set, as a C loader's `targ_uid = -1` stores it (-2 is refused);
//   - bool (_Bool): true, false, 1, 0;
//   - enums: an enumerator's name, or a number that fits the enum's size;
//   - float and double: a decimal number;
//   - char arrays: a string of at most size - 1 bytes (the NUL always fits), the rest zero-filled.
// Anything else (structs, pointers, other arrays) is listed but not settable.
//
// Contract: a BpfGlobals refers to the object it was made from and is valid while that object is open;
// set() works only before bpf_object__load (libbpf refuses to change an initial value after), and each call
// rewrites the section's whole initial value. Errors name the object, the variable and the cause.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "collector/util/result.hpp"

struct bpf_object;
struct bpf_map;
struct btf;

namespace perfstream {

// One --set NAME=VALUE, as the user wrote it.
struct GlobalSetting {
  std::string name;
  std::string value;
};

// Splits "NAME=VALUE" (the value may contain '='; it may be empty, which only a string takes).
Result<GlobalSetting> parse_global_setting(const std::string& text);

struct BpfGlobal {
  std::string name;
  std::string section;    // ".rodata", ".data", ".bss", ".data.NAME", ...
  std::string type;       // as declared, qualifiers left out: "pid_t", "bool", "char[16]", "enum mode"
  std::string kind;       // what --set takes: "signed 32-bit integer", "string of at most 15 bytes", ...
  std::string value;      // the current value as --set would write it; hex bytes when not settable
  std::uint32_t size = 0;
  bool settable = false;
};

class BpfGlobals {
 public:
  // The globals of `object` (opened, not loaded). `object_name` (its path) goes into error messages.
  static Result<BpfGlobals> of(bpf_object* object, std::string object_name);

  const std::vector<BpfGlobal>& list() const { return globals_; }
  // Writes `value` into the global `name` (see the top of this file for the forms it takes).
  Status set(const GlobalSetting& setting);
  // Every setting in order; stops at the first that fails.
  Status set_all(const std::vector<GlobalSetting>& settings);

 private:
  struct Slot {
    bpf_map* map = nullptr;
    std::uint32_t offset = 0;
    std::uint32_t type_id = 0;  // the variable's declared type
  };
  BpfGlobals() = default;
  Result<std::string> encode(const BpfGlobal& global, const Slot& slot, const std::string& value) const;
  std::string names() const;

  const btf* btf_ = nullptr;
  std::string object_name_;
  std::vector<BpfGlobal> globals_;
  std::vector<Slot> slots_;  // parallel to globals_
};

}  // namespace perfstream
