// schema_field: one perfstream.v1.Field of an EventSchema, for tests that write schemas by hand.
#pragma once

#include <cstdint>
#include <string>

#include "perfstream.pb.h"

namespace perfstream::testing {

inline v1::Field schema_field(const std::string& name, v1::Field::Type type, std::uint32_t offset, std::uint32_t size,
                              const std::string& length_field = "", bool variable = false) {
  v1::Field f;
  f.set_name(name);
  f.set_type(type);
  f.set_offset(offset);
  f.set_size(size);
  f.set_length_field(length_field);
  f.set_variable(variable);
  return f;
}

}  // namespace perfstream::testing
