// Fuzzes decode_payload and schema_for_payload with schemas built from the input, as a trace file's header
// may carry any schema. Input: u8 schema count (1-3) | per schema: u32 kind, u8 field count (0-7), per field:
// u8 type, u32 offset, u32 size, u8 length field (index, 0xff none) | payload bytes.
// Invariants: a field the payload does not reach is missing; STRING/BYTES text is never longer than the
// payload nor the field; integers are read only from whole fields of 1-8 bytes. Every decoded value also goes
// through every display hint renderer (decode/display_hints.hpp), which must take any value.
#include <cstdint>
#include <string>

#include "collector/decode/display_hints.hpp"
#include "collector/decode/payload_schema.hpp"
#include "fuzz/fuzz_input.hpp"

using namespace perfstream;
using perfstream::fuzz::FuzzInput;

namespace {

std::uint64_t render_every_hint(const FieldValue& v, std::uint32_t size) {
  namespace h = perfstream::hints;
  std::string out;
  const std::int64_t sv = h::sign_extend(v.unsigned_value, size);
  h::append_open_flags(out, static_cast<std::uint32_t>(v.unsigned_value));
  h::append_mode(out, v.unsigned_value);
  h::append_task_state(out, sv);
  h::append_signal(out, sv);
  h::append_wait_signal(out, v.unsigned_value);
  h::append_bytes(out, v.unsigned_value);
  h::append_duration(out, sv);
  const std::int64_t negated = sv == INT64_MIN ? 0 : -sv;
  const char* names[] = {h::errno_name(negated), h::errno_name(sv), h::tcp_state_name(sv), h::address_family_name(sv)};
  for (const char* n : names) out += n != nullptr ? n : "";
  h::append_ip(out, v.text, v.unsigned_value & 0xffff);
  h::append_ip(out, h::int_bytes(v.unsigned_value, size), std::nullopt);
  std::vector<std::string_view> words;
  h::split_argv(v.text, words);
  std::size_t total = 0;
  for (auto w : words) total += w.size();
  FUZZ_CHECK(total + (words.empty() ? 0 : words.size() - 1) <= v.text.size());
  return out.size() + total;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  google::protobuf::RepeatedPtrField<v1::EventSchema> schemas;
  const int count = 1 + in.take<std::uint8_t>() % 3;
  for (int s = 0; s < count; ++s) {
    v1::EventSchema* schema = schemas.Add();
    schema->set_kind(in.take<std::uint32_t>());
    const int fields = in.take<std::uint8_t>() % 8;
    for (int i = 0; i < fields; ++i) {
      v1::Field* f = schema->add_fields();
      f->set_name("f" + std::to_string(i));
      f->set_type(static_cast<v1::Field::Type>(in.take<std::uint8_t>() % 5));
      f->set_offset(in.take<std::uint32_t>());
      f->set_size(in.take<std::uint32_t>());
      const std::uint8_t length_field = in.take<std::uint8_t>();
      if (length_field != 0xff) f->set_length_field("f" + std::to_string(length_field % 8));
    }
  }
  auto rest = in.rest();
  const std::span<const char> payload(reinterpret_cast<const char*>(rest.data()), rest.size());

  const v1::EventSchema* picked = schema_for_payload(schemas, payload);
  if (picked != nullptr) {
    bool found = false;
    for (const auto& s : schemas) found |= (&s == picked);
    FUZZ_CHECK(found);
  }
  std::uint64_t sum = 0;
  for (const auto& schema : schemas) {
    const std::vector<FieldValue> values = decode_payload(schema, payload);
    FUZZ_CHECK(values.size() == static_cast<std::size_t>(schema.fields_size()));
    for (int i = 0; i < schema.fields_size(); ++i) {
      const v1::Field& f = schema.fields(i);
      const FieldValue& v = values[i];
      FUZZ_CHECK(v.name == f.name());
      if (v.missing) continue;
      FUZZ_CHECK(std::uint64_t{f.offset()} <= payload.size());
      if (f.type() == v1::Field::STRING || f.type() == v1::Field::BYTES) {
        FUZZ_CHECK(v.text.size() <= payload.size() - f.offset());
        FUZZ_CHECK(v.text.size() <= f.size());
      } else if (f.type() == v1::Field::SIGNED || f.type() == v1::Field::UNSIGNED) {
        FUZZ_CHECK(f.size() >= 1 && f.size() <= 8 && std::uint64_t{f.offset()} + f.size() <= payload.size());
      }
      sum += v.unsigned_value + v.text.size();
      sum += render_every_hint(v, f.size());
    }
  }
  perfstream::fuzz::keep(sum);
  return 0;
}
