// Payload schemas: decoding payloads with hand-built schemas, picking a schema by kind, and reading the
// schemas of the built-in BPF objects from their BTF (opened from the skeletons' embedded bytes, not loaded).
#include "collector/decode/payload_schema.hpp"

#include <gtest/gtest.h>
#include <linux/types.h>  // events.h includes nothing: the includer provides __u32 and friends

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "bpf/events.h"
#include "testing/builtin_schemas.hpp"
#include "testing/schema_field.hpp"

namespace perfstream {
namespace {

using testing::schema_field;

template <typename T>
void put(std::string& payload, std::size_t offset, T value) {
  if (payload.size() < offset + sizeof(T)) payload.resize(offset + sizeof(T));
  std::memcpy(payload.data() + offset, &value, sizeof(T));
}

std::span<const char> span_of(const std::string& s) { return std::span<const char>(s.data(), s.size()); }

// Signed and unsigned integers of every width, at offsets 0..30.
v1::EventSchema integer_schema() {
  v1::EventSchema s;
  s.set_name("ints");
  *s.add_fields() = schema_field("s8", v1::Field::SIGNED, 0, 1);
  *s.add_fields() = schema_field("u8", v1::Field::UNSIGNED, 1, 1);
  *s.add_fields() = schema_field("s16", v1::Field::SIGNED, 2, 2);
  *s.add_fields() = schema_field("u16", v1::Field::UNSIGNED, 4, 2);
  *s.add_fields() = schema_field("s32", v1::Field::SIGNED, 8, 4);
  *s.add_fields() = schema_field("u32", v1::Field::UNSIGNED, 12, 4);
  *s.add_fields() = schema_field("s64", v1::Field::SIGNED, 16, 8);
  *s.add_fields() = schema_field("u64", v1::Field::UNSIGNED, 24, 8);
  return s;
}

TEST(DecodePayload, SignedFieldsAreSignExtendedFromTheirWidth) {
  std::string p(32, '\0');
  put<std::int8_t>(p, 0, -5);
  put<std::uint8_t>(p, 1, 0xfb);
  put<std::int16_t>(p, 2, -300);
  put<std::uint16_t>(p, 4, 0xfed4);
  put<std::int32_t>(p, 8, -70000);
  put<std::uint32_t>(p, 12, 0xfffeee90u);
  put<std::int64_t>(p, 16, std::numeric_limits<std::int64_t>::min());
  put<std::uint64_t>(p, 24, 0xfedcba9876543210ull);
  const auto v = decode_payload(integer_schema(), span_of(p));
  ASSERT_EQ(v.size(), 8u);
  for (const auto& f : v) EXPECT_FALSE(f.missing) << f.name;

  EXPECT_EQ(v[0].name, "s8");
  EXPECT_EQ(v[0].type, v1::Field::SIGNED);
  EXPECT_EQ(v[0].signed_value, -5);
  EXPECT_EQ(v[0].unsigned_value, 0xfbu);  // the raw bits, not extended
  EXPECT_EQ(v[1].unsigned_value, 0xfbu);
  EXPECT_EQ(v[1].signed_value, 0xfb);     // unsigned: never extended
  EXPECT_EQ(v[2].signed_value, -300);
  EXPECT_EQ(v[2].unsigned_value, 0xfed4u);
  EXPECT_EQ(v[3].unsigned_value, 0xfed4u);
  EXPECT_EQ(v[3].signed_value, 0xfed4);
  EXPECT_EQ(v[4].signed_value, -70000);
  EXPECT_EQ(v[4].unsigned_value, 0xfffeee90u);
  EXPECT_EQ(v[5].unsigned_value, 0xfffeee90u);
  EXPECT_EQ(v[5].signed_value, 0xfffeee90ll);
  EXPECT_EQ(v[6].signed_value, std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(v[6].unsigned_value, 0x8000000000000000ull);
  EXPECT_EQ(v[7].unsigned_value, 0xfedcba9876543210ull);
}

TEST(DecodePayload, PositiveSignedValuesStayPositive) {
  std::string p(32, '\0');
  put<std::int8_t>(p, 0, 127);
  put<std::int16_t>(p, 2, 32767);
  put<std::int32_t>(p, 8, 2147483647);
  put<std::int64_t>(p, 16, 1);
  const auto v = decode_payload(integer_schema(), span_of(p));
  EXPECT_EQ(v[0].signed_value, 127);
  EXPECT_EQ(v[2].signed_value, 32767);
  EXPECT_EQ(v[4].signed_value, 2147483647);
  EXPECT_EQ(v[6].signed_value, 1);
}

TEST(DecodePayload, FieldsPastThePayloadAreMissing) {
  std::string p(32, '\0');
  put<std::int32_t>(p, 8, -1);
  p.resize(15);  // u32 at 12 needs 16 bytes: one short
  const auto v = decode_payload(integer_schema(), span_of(p));
  ASSERT_EQ(v.size(), 8u);
  EXPECT_FALSE(v[4].missing);
  EXPECT_EQ(v[4].signed_value, -1);
  EXPECT_TRUE(v[5].missing);
  EXPECT_TRUE(v[6].missing);
  EXPECT_TRUE(v[7].missing);
  EXPECT_EQ(v[5].name, "u32");
}

TEST(DecodePayload, EmptyPayloadHasEveryFieldMissing) {
  const auto v = decode_payload(integer_schema(), std::span<const char>());
  ASSERT_EQ(v.size(), 8u);
  for (const auto& f : v) EXPECT_TRUE(f.missing) << f.name;
}

TEST(DecodePayload, StringStopsAtTheFirstNul) {
  v1::EventSchema s;
  *s.add_fields() = schema_field("comm", v1::Field::STRING, 4, 8);
  std::string p(12, '\0');
  std::memcpy(p.data() + 4, "ab\0cdefg", 8);
  const auto v = decode_payload(s, span_of(p));
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].type, v1::Field::STRING);
  EXPECT_EQ(v[0].text, "ab");
}

TEST(DecodePayload, StringWithoutNulFillsItsArray) {
  v1::EventSchema s;
  *s.add_fields() = schema_field("comm", v1::Field::STRING, 0, 4);
  const std::string p = "abcdefgh";  // the array is 4 bytes; the next bytes are not part of it
  const auto v = decode_payload(s, span_of(p));
  EXPECT_EQ(v[0].text, "abcd");
}

TEST(DecodePayload, StringStopsAtItsLengthField) {
  v1::EventSchema s;
  *s.add_fields() = schema_field("path_len", v1::Field::UNSIGNED, 0, 4);
  *s.add_fields() = schema_field("path", v1::Field::STRING, 4, 64, "path_len", true);
  std::string p;
  put<std::uint32_t>(p, 0, 4);
  p += "/tmpXXXXXXXX";  // no NUL: only path_len bytes are used
  const auto v = decode_payload(s, span_of(p));
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].unsigned_value, 4u);
  EXPECT_EQ(v[1].text, "/tmp");
}

TEST(DecodePayload, StringLengthIncludingNulGivesTheTextWithoutIt) {
  v1::EventSchema s;
  *s.add_fields() = schema_field("path_len", v1::Field::UNSIGNED, 0, 4);
  *s.add_fields() = schema_field("path", v1::Field::STRING, 4, 64, "path_len", true);
  std::string p;
  put<std::uint32_t>(p, 0, 5);
  p += std::string("/tmp\0", 5);
  p += std::string(3, '\0');  // the kernel's padding to 8 bytes
  EXPECT_EQ(decode_payload(s, span_of(p))[1].text, "/tmp");
}

TEST(DecodePayload, LengthFieldLargerThanThePayloadIsCutAtThePayload) {
  v1::EventSchema s;
  *s.add_fields() = schema_field("data_len", v1::Field::UNSIGNED, 0, 4);
  *s.add_fields() = schema_field("data", v1::Field::BYTES, 4, 64, "data_len", true);
  std::string p;
  put<std::uint32_t>(p, 0, 60);
  p += std::string("\x01\x02\x00\x03", 4);
  const auto v = decode_payload(s, span_of(p));
  EXPECT_FALSE(v[1].missing);
  EXPECT_EQ(v[1].text, std::string("\x01\x02\x00\x03", 4));  // BYTES keep NULs
}

TEST(DecodePayload, VariableTrailingArrayIsCutByAShortPayload) {
  v1::EventSchema s;
  *s.add_fields() = schema_field("n", v1::Field::UNSIGNED, 0, 4);
  *s.add_fields() = schema_field("data", v1::Field::BYTES, 4, 4096, "", true);
  std::string p;
  put<std::uint32_t>(p, 0, 7);
  p += std::string("\xaa\xbb\xcc\x00\xdd\xee", 6);
  const auto v = decode_payload(s, span_of(p));
  ASSERT_EQ(v.size(), 2u);
  EXPECT_FALSE(v[1].missing);
  EXPECT_EQ(v[1].type, v1::Field::BYTES);
  EXPECT_EQ(v[1].text, std::string("\xaa\xbb\xcc\x00\xdd\xee", 6));
}

TEST(DecodePayload, ArrayStartingAtThePayloadEndIsEmptyNotMissing) {
  v1::EventSchema s;
  *s.add_fields() = schema_field("n", v1::Field::UNSIGNED, 0, 4);
  *s.add_fields() = schema_field("path", v1::Field::STRING, 4, 4096, "", true);
  std::string p;
  put<std::uint32_t>(p, 0, 0);
  const auto v = decode_payload(s, span_of(p));
  EXPECT_FALSE(v[1].missing);
  EXPECT_EQ(v[1].text, "");
}

TEST(DecodePayload, ArrayStartingPastThePayloadIsMissing) {
  v1::EventSchema s;
  *s.add_fields() = schema_field("comm", v1::Field::STRING, 8, 16);
  *s.add_fields() = schema_field("blob", v1::Field::BYTES, 8, 16);
  const std::string p(6, 'x');
  const auto v = decode_payload(s, span_of(p));
  EXPECT_TRUE(v[0].missing);
  EXPECT_TRUE(v[1].missing);
}

TEST(DecodePayload, OffsetNearTheTopOfTheRangeIsMissingNotWrapped) {
  // A schema read from a damaged file: offset + size overflows 32 bits.
  v1::EventSchema s;
  *s.add_fields() = schema_field("far", v1::Field::UNSIGNED, 0xffffffffu, 2);
  *s.add_fields() = schema_field("far_text", v1::Field::STRING, 0xfffffff0u, 64);
  const std::string p(16, '\x01');
  const auto v = decode_payload(s, span_of(p));
  EXPECT_TRUE(v[0].missing);
  EXPECT_TRUE(v[1].missing);
}

TEST(DecodePayload, IntegerOfZeroBytesIsMissing) {
  v1::EventSchema s;
  *s.add_fields() = schema_field("none", v1::Field::SIGNED, 0, 0);
  const std::string p(8, '\xff');
  EXPECT_TRUE(decode_payload(s, span_of(p))[0].missing);
}

TEST(DecodePayload, UnspecifiedTypeIsMissing) {
  v1::EventSchema s;
  *s.add_fields() = schema_field("what", v1::Field::TYPE_UNSPECIFIED, 0, 4);
  const std::string p(8, '\0');
  EXPECT_TRUE(decode_payload(s, span_of(p))[0].missing);
}

TEST(DecodePayload, IntegerWiderThanEightBytesIsMissing) {
  v1::EventSchema s;
  *s.add_fields() = schema_field("wide", v1::Field::UNSIGNED, 0, 16);
  const std::string p(16, '\x01');
  EXPECT_TRUE(decode_payload(s, span_of(p))[0].missing);
}

google::protobuf::RepeatedPtrField<v1::EventSchema> tagged_schemas() {
  google::protobuf::RepeatedPtrField<v1::EventSchema> schemas;
  for (auto [kind, name] : {std::pair{1u, "exec"}, std::pair{2u, "openat"}}) {
    v1::EventSchema* s = schemas.Add();
    s->set_kind(kind);
    s->set_name(name);
  }
  return schemas;
}

TEST(SchemaForPayload, PicksTheSchemaOfThePayloadsKind) {
  const auto schemas = tagged_schemas();
  std::string p;
  put<std::uint32_t>(p, 0, 2);
  p += "rest";
  const v1::EventSchema* s = schema_for_payload(schemas, span_of(p));
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->name(), "openat");
  put<std::uint32_t>(p, 0, 1);
  s = schema_for_payload(schemas, span_of(p));
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->name(), "exec");
}

TEST(SchemaForPayload, UnknownKindHasNoSchema) {
  const auto schemas = tagged_schemas();
  std::string p;
  put<std::uint32_t>(p, 0, 9);
  EXPECT_EQ(schema_for_payload(schemas, span_of(p)), nullptr);
}

TEST(SchemaForPayload, PayloadShorterThanAKindHasNoSchema) {
  const auto schemas = tagged_schemas();
  EXPECT_EQ(schema_for_payload(schemas, span_of(std::string("\x02\x00\x00", 3))), nullptr);
  EXPECT_EQ(schema_for_payload(schemas, std::span<const char>()), nullptr);
}

TEST(SchemaForPayload, SingleUntaggedSchemaTakesEveryPayload) {
  google::protobuf::RepeatedPtrField<v1::EventSchema> schemas;
  schemas.Add()->set_name("custom");
  std::string p;
  put<std::uint32_t>(p, 0, 77);
  ASSERT_NE(schema_for_payload(schemas, span_of(p)), nullptr);
  EXPECT_EQ(schema_for_payload(schemas, span_of(p))->name(), "custom");
  EXPECT_EQ(schema_for_payload(schemas, std::span<const char>())->name(), "custom");
}

TEST(SchemaForPayload, NoSchemasNoMatch) {
  google::protobuf::RepeatedPtrField<v1::EventSchema> schemas;
  std::string p;
  put<std::uint32_t>(p, 0, 0);
  EXPECT_EQ(schema_for_payload(schemas, span_of(p)), nullptr);
}

// --- The built-in objects' BTF -------------------------------------------------------------------------

void expect_field(const v1::EventSchema& s, int i, const std::string& name, v1::Field::Type type, std::size_t offset,
                  std::size_t size, const std::string& length_field = "", bool variable = false) {
  ASSERT_LT(i, s.fields_size());
  const v1::Field& f = s.fields(i);
  EXPECT_EQ(f.name(), name) << "field " << i;
  EXPECT_EQ(f.type(), type) << name;
  EXPECT_EQ(f.offset(), offset) << name;
  EXPECT_EQ(f.size(), size) << name;
  EXPECT_EQ(f.length_field(), length_field) << name;
  EXPECT_EQ(f.variable(), variable) << name;
}

#define FIELD_AT(type, field) offsetof(type, field), sizeof(type::field)

TEST(SchemaFromBtf, OpenatObjectDescribesPsOpenatEvent) {
  auto object = testing::open_builtin_object("openat");
  auto schema = schema_of_object(object.get());
  ASSERT_TRUE(schema) << schema.error().message();
  ASSERT_TRUE(schema->has_value());
  const v1::EventSchema& s = **schema;
  EXPECT_EQ(s.type_name(), "ps_openat_event");
  EXPECT_EQ(s.fixed_size(), std::uint32_t{PS_OPENAT_HEADER_SIZE});
  ASSERT_EQ(s.fields_size(), 15);
  using E = ps_openat_event;
  expect_field(s, 0, "kind", v1::Field::UNSIGNED, FIELD_AT(E, kind));
  expect_field(s, 1, "pid", v1::Field::UNSIGNED, FIELD_AT(E, pid));
  expect_field(s, 2, "tid", v1::Field::UNSIGNED, FIELD_AT(E, tid));
  expect_field(s, 3, "dfd", v1::Field::SIGNED, FIELD_AT(E, dfd));
  expect_field(s, 4, "flags", v1::Field::SIGNED, FIELD_AT(E, flags));
  expect_field(s, 5, "mode", v1::Field::UNSIGNED, FIELD_AT(E, mode));
  expect_field(s, 6, "comm", v1::Field::STRING, FIELD_AT(E, comm));
  expect_field(s, 7, "ret", v1::Field::SIGNED, FIELD_AT(E, ret));
  expect_field(s, 8, "path_err", v1::Field::SIGNED, FIELD_AT(E, path_err));
  expect_field(s, 9, "call", v1::Field::UNSIGNED, FIELD_AT(E, call));
  expect_field(s, 10, "resolve", v1::Field::UNSIGNED, FIELD_AT(E, resolve));
  expect_field(s, 11, "path_len", v1::Field::UNSIGNED, FIELD_AT(E, path_len));
  expect_field(s, 12, "reserved", v1::Field::UNSIGNED, FIELD_AT(E, reserved));
  expect_field(s, 13, "ts", v1::Field::UNSIGNED, FIELD_AT(E, ts));
  expect_field(s, 14, "path", v1::Field::STRING, FIELD_AT(E, path), "path_len", true);
  EXPECT_EQ(s.fields(6).size(), 16u);
}

TEST(SchemaFromBtf, ExecObjectDescribesPsExecEvent) {
  auto object = testing::open_builtin_object("exec");
  auto schema = schema_of_object(object.get());
  ASSERT_TRUE(schema) << schema.error().message();
  ASSERT_TRUE(schema->has_value());
  const v1::EventSchema& s = **schema;
  EXPECT_EQ(s.type_name(), "ps_exec_event");
  EXPECT_EQ(s.fixed_size(), std::uint32_t{PS_EXEC_HEADER_SIZE});
  ASSERT_EQ(s.fields_size(), 15);
  using E = ps_exec_event;
  expect_field(s, 0, "kind", v1::Field::UNSIGNED, FIELD_AT(E, kind));
  expect_field(s, 1, "pid", v1::Field::UNSIGNED, FIELD_AT(E, pid));
  expect_field(s, 2, "tid", v1::Field::UNSIGNED, FIELD_AT(E, tid));
  expect_field(s, 3, "ppid", v1::Field::UNSIGNED, FIELD_AT(E, ppid));
  expect_field(s, 4, "uid", v1::Field::UNSIGNED, FIELD_AT(E, uid));
  expect_field(s, 5, "ret", v1::Field::SIGNED, FIELD_AT(E, ret));
  expect_field(s, 6, "comm", v1::Field::STRING, FIELD_AT(E, comm));
  expect_field(s, 7, "args_count", v1::Field::UNSIGNED, FIELD_AT(E, args_count));
  expect_field(s, 8, "args_truncated", v1::Field::UNSIGNED, FIELD_AT(E, args_truncated));
  expect_field(s, 9, "filename_err", v1::Field::SIGNED, FIELD_AT(E, filename_err));
  expect_field(s, 10, "args_err", v1::Field::SIGNED, FIELD_AT(E, args_err));
  expect_field(s, 11, "filename_len", v1::Field::UNSIGNED, FIELD_AT(E, filename_len));
  expect_field(s, 12, "reserved", v1::Field::UNSIGNED, FIELD_AT(E, reserved));
  expect_field(s, 13, "ts", v1::Field::UNSIGNED, FIELD_AT(E, ts));
  expect_field(s, 14, "filename", v1::Field::STRING, FIELD_AT(E, filename), "filename_len", true);
}

TEST(SchemaFromBtf, SchedSwitchObjectDescribesItsSignedFields) {
  auto object = testing::open_builtin_object("sched_switch");
  auto schema = schema_of_object(object.get());
  ASSERT_TRUE(schema) << schema.error().message();
  ASSERT_TRUE(schema->has_value());
  const v1::EventSchema& s = **schema;
  EXPECT_EQ(s.type_name(), "ps_sched_switch_event");
  ASSERT_EQ(s.fields_size(), 10);
  using E = ps_sched_switch_event;
  expect_field(s, 0, "kind", v1::Field::UNSIGNED, FIELD_AT(E, kind));
  expect_field(s, 1, "prev_pid", v1::Field::SIGNED, FIELD_AT(E, prev_pid));
  expect_field(s, 2, "prev_prio", v1::Field::SIGNED, FIELD_AT(E, prev_prio));
  expect_field(s, 3, "next_pid", v1::Field::SIGNED, FIELD_AT(E, next_pid));
  expect_field(s, 4, "next_prio", v1::Field::SIGNED, FIELD_AT(E, next_prio));
  expect_field(s, 5, "reserved", v1::Field::UNSIGNED, FIELD_AT(E, reserved));
  expect_field(s, 6, "prev_state", v1::Field::SIGNED, FIELD_AT(E, prev_state));
  expect_field(s, 7, "prev_comm", v1::Field::STRING, FIELD_AT(E, prev_comm));
  // An array without a next_comm_len member is fixed-size: the record is exactly the struct.
  expect_field(s, 8, "next_comm", v1::Field::STRING, FIELD_AT(E, next_comm), "", false);
  expect_field(s, 9, "ts", v1::Field::UNSIGNED, FIELD_AT(E, ts));
  EXPECT_EQ(s.fixed_size(), sizeof(E));
}

TEST(SchemaFromBtf, LoadgenPayloadIsAVariableByteArray) {
  auto object = testing::open_builtin_object("loadgen");
  auto schema = schema_of_object(object.get());
  ASSERT_TRUE(schema) << schema.error().message();
  ASSERT_TRUE(schema->has_value());
  const v1::EventSchema& s = **schema;
  EXPECT_EQ(s.type_name(), "ps_loadgen_event");
  EXPECT_EQ(s.fixed_size(), std::uint32_t{PS_LOADGEN_HEADER_SIZE});
  ASSERT_EQ(s.fields_size(), 7);
  using E = ps_loadgen_event;
  expect_field(s, 2, "seq", v1::Field::UNSIGNED, FIELD_AT(E, seq));
  expect_field(s, 1, "payload_len", v1::Field::UNSIGNED, FIELD_AT(E, payload_len));
  expect_field(s, 5, "ts", v1::Field::UNSIGNED, FIELD_AT(E, ts));
  expect_field(s, 6, "payload", v1::Field::BYTES, FIELD_AT(E, payload), "payload_len", true);
}

TEST(SchemaFromBtf, UnknownStructIsAnErrorNamingIt) {
  auto object = testing::open_builtin_object("openat");
  auto schema = schema_from_btf(bpf_object__btf(object.get()), "ps_no_such_event");
  ASSERT_FALSE(schema);
  EXPECT_EQ(schema.error().message(), "BTF has no struct named 'ps_no_such_event'");
}

TEST(SchemaFromBtf, DecodesARecordLaidOutByEventsH) {
  const v1::EventSchema s = testing::builtin_schema("openat", PS_EVENT_OPENAT);
  ps_openat_event e{};
  e.kind = PS_EVENT_OPENAT;
  e.pid = 1234;
  e.tid = 1235;
  e.dfd = -100;
  e.flags = 0x80241;
  e.mode = 0644;
  std::memcpy(e.comm, "cat", 4);
  e.ret = 3;
  std::memcpy(e.path, "/etc/hosts", 11);
  e.path_len = 11;
  e.ts = 123456789;
  // What the BPF program emits: the header and the used part of the path, padded to 8 by the kernel.
  std::string p(reinterpret_cast<const char*>(&e), PS_OPENAT_HEADER_SIZE + 11);
  p.resize((p.size() + 7) / 8 * 8, '\0');
  const auto v = decode_payload(s, span_of(p));
  ASSERT_EQ(v.size(), 15u);
  EXPECT_EQ(v[1].unsigned_value, 1234u);
  EXPECT_EQ(v[2].unsigned_value, 1235u);
  EXPECT_EQ(v[3].signed_value, -100);
  EXPECT_EQ(v[4].signed_value, 0x80241);
  EXPECT_EQ(v[5].unsigned_value, 0644u);
  EXPECT_EQ(v[6].text, "cat");
  EXPECT_EQ(v[7].signed_value, 3);
  EXPECT_EQ(v[11].unsigned_value, 11u);
  EXPECT_EQ(v[13].unsigned_value, 123456789u);
  EXPECT_EQ(v[14].text, "/etc/hosts");
  for (const auto& f : v) EXPECT_FALSE(f.missing) << f.name;
}

}  // namespace
}  // namespace perfstream
