// How `dump` shows a record's fields, in text and JSON: the display hints of the schema applied
// (decode/display_hints.hpp; docs/FORMAT.md "Display hints"), the fields a person does not need left out.
//
// A FieldDisplay is worked out once per schema and then used for every record of it; it keeps indexes into
// the schema's fields, so it is valid as long as the schema is and for values decoded with that schema.
//
// Fields without a hint print as they did before hints existed, so a recording made before them (whose
// schemas carry none) dumps exactly as it always did: integers in decimal, except hex for a name containing
// "flags" and octal for one containing "mode" (text only); text leaves out `kind`, `reserved*` and the
// length fields of variable arrays. With `raw`, no hint is applied and no field left out.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "collector/decode/display_hints.hpp"
#include "collector/decode/payload_schema.hpp"

namespace perfstream::cli {

class FieldDisplay {
 public:
  FieldDisplay(const v1::EventSchema& schema, bool raw);

  bool hidden_in_text(std::size_t i) const { return fields_[i].hidden_text; }
  bool hidden_in_json(std::size_t i) const { return fields_[i].hidden_json; }

  // The value of field i as text shows it after "name=" (strings quoted); values are a whole record's.
  void append_text(std::string& out, const std::vector<FieldValue>& values, std::size_t i) const;
  // The value of field i as a JSON value (null when missing).
  void append_json(std::string& out, const std::vector<FieldValue>& values, std::size_t i) const;
  // The hint's rendering of field i without quotes, for --filter: "O_RDONLY|O_CLOEXEC", "ENOENT", "S",
  // "10.0.0.1:443", a wait status's exit code, argv words joined by spaces (path_argv: the path alone).
  // False when the field has no hint that renders it (then a filter compares the value itself).
  bool append_shown(std::string& out, const std::vector<FieldValue>& values, std::size_t i) const;

 private:
  enum class IntStyle : std::uint8_t { Signed, Unsigned, Hex, Octal };
  struct Plan {
    hints::Hint hint = hints::Hint::None;
    IntStyle style = IntStyle::Unsigned;  // for an integer shown without a hint
    std::uint32_t size = 0;
    int port = -1;    // Ip: the field whose value follows the address
    int family = -1;  // Ip on a 16-byte array: the field with AF_INET (2, address in the first 4 bytes) or not
    const v1::Field* field = nullptr;  // Enum: the schema's field, with its enumerators
    bool hidden_text = false;
    bool hidden_json = false;
  };
  // How the hint shows the value, in the forms text and JSON both use. Symbol: bare in text, a string in
  // JSON; Number: a number in both (text may have its own form, e.g. 1.5KiB); None: the hint does not apply
  // to this value and it prints as if the field had none.
  enum class Shown : std::uint8_t { None, Symbol, Number };
  Shown show(std::string& symbol, const std::vector<FieldValue>& values, std::size_t i, bool text) const;
  bool address(std::string& out, const std::vector<FieldValue>& values, std::size_t i) const;
  void append_plain_text(std::string& out, const FieldValue& v, IntStyle style) const;

  std::vector<Plan> fields_;
  mutable std::vector<std::string_view> words_;  // scratch for argv
};

}  // namespace perfstream::cli
