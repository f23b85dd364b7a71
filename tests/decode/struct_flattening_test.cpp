// Record layouts of any struct (--event-type): nested structs, arrays, unions and enums flattened into a
// schema, on BTF built by hand here (libbpf's btf__add_*), so every rule of docs/FORMAT.md "Any struct as a
// record" is pinned with exact names, offsets and sizes; then the same with the BTF clang makes of a header.
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>

#include <cstring>
#include <memory>

#include "collector/decode/payload_schema.hpp"

namespace perfstream {
namespace {

using BtfPtr = std::unique_ptr<btf, void (*)(btf*)>;

struct Flat {
  std::string name;
  v1::Field::Type type;
  std::uint32_t offset;
  std::uint32_t size;
  bool operator==(const Flat&) const = default;
};

std::vector<Flat> flat(const v1::EventSchema& schema) {
  std::vector<Flat> out;
  for (const auto& f : schema.fields()) out.push_back({f.name(), f.type(), f.offset(), f.size()});
  return out;
}

void PrintTo(const Flat& f, std::ostream* os) {
  *os << f.name << " " << v1::Field::Type_Name(f.type) << " @" << f.offset << " size " << f.size;
}

// struct event {                      offset
//   unsigned long long ts;               0
//   enum colour colour;                  8   (RED = 1, BLUE = -2)
//   unsigned long long callers[3];      16
//   struct pair { int a; int b; } pairs[2];   40
//   union { unsigned int x; unsigned long long y; } value;   56
//   struct path { unsigned int len; char pathes[16]; } fname;   64
//   unsigned int big[20];               84
//   __u8 raw[4];                       164
//   int m[2][3];                       168
//   struct { unsigned int anon_a; };   192
//   union { unsigned int ux; int uy; };   196
// };                                   200
BtfPtr build_event_btf() {
  BtfPtr b(btf__new_empty(), btf__free);
  btf* p = b.get();
  const int u32 = btf__add_int(p, "unsigned int", 4, 0);
  const int s32 = btf__add_int(p, "int", 4, BTF_INT_SIGNED);
  const int u64 = btf__add_int(p, "unsigned long long", 8, 0);
  const int chr = btf__add_int(p, "char", 1, BTF_INT_SIGNED);
  const int uchar = btf__add_int(p, "unsigned char", 1, 0);
  const int u8 = btf__add_typedef(p, "__u8", uchar);
  const int colour = btf__add_enum(p, "colour", 4);
  btf__add_enum_value(p, "RED", 1);
  btf__add_enum_value(p, "BLUE", -2);
  const int callers = btf__add_array(p, u32, u64, 3);
  const int pair = btf__add_struct(p, "pair", 8);
  btf__add_field(p, "a", s32, 0, 0);
  btf__add_field(p, "b", s32, 32, 0);
  const int pairs = btf__add_array(p, u32, pair, 2);
  const int value = btf__add_union(p, "value_u", 8);
  btf__add_field(p, "x", u32, 0, 0);
  btf__add_field(p, "y", u64, 0, 0);
  const int pathes = btf__add_array(p, u32, chr, 16);
  const int path = btf__add_struct(p, "path", 20);
  btf__add_field(p, "len", u32, 0, 0);
  btf__add_field(p, "pathes", pathes, 32, 0);
  const int big = btf__add_array(p, u32, u32, 20);
  const int raw = btf__add_array(p, u32, u8, 4);
  const int row = btf__add_array(p, u32, s32, 3);
  const int m = btf__add_array(p, u32, row, 2);
  const int anon_struct = btf__add_struct(p, nullptr, 4);
  btf__add_field(p, "anon_a", u32, 0, 0);
  const int anon_union = btf__add_union(p, nullptr, 4);
  btf__add_field(p, "ux", u32, 0, 0);
  btf__add_field(p, "uy", s32, 0, 0);
  btf__add_struct(p, "event", 200);
  btf__add_field(p, "ts", u64, 0, 0);
  btf__add_field(p, "colour", colour, 8 * 8, 0);
  btf__add_field(p, "callers", callers, 16 * 8, 0);
  btf__add_field(p, "pairs", pairs, 40 * 8, 0);
  btf__add_field(p, "value", value, 56 * 8, 0);
  btf__add_field(p, "fname", path, 64 * 8, 0);
  btf__add_field(p, "big", big, 84 * 8, 0);
  btf__add_field(p, "raw", raw, 164 * 8, 0);
  btf__add_field(p, "m", m, 168 * 8, 0);
  btf__add_field(p, nullptr, anon_struct, 192 * 8, 0);
  btf__add_field(p, nullptr, anon_union, 196 * 8, 0);
  btf__add_typedef(p, "event_t", btf__find_by_name_kind(p, "event", BTF_KIND_STRUCT));
  return b;
}

TEST(StructFlattening, NestedStructsArraysUnionsAndEnumsBecomeNamedFields) {
  BtfPtr b = build_event_btf();
  auto schema = schema_from_btf(b.get(), "event");
  ASSERT_TRUE(schema) << schema.error().message();
  const auto S = v1::Field::SIGNED;
  const auto U = v1::Field::UNSIGNED;
  const std::vector<Flat> expected = {
      {"ts", U, 0, 8},
      {"colour", S, 8, 4},
      {"callers[0]", U, 16, 8},
      {"callers[1]", U, 24, 8},
      {"callers[2]", U, 32, 8},
      {"pairs[0].a", S, 40, 4},
      {"pairs[0].b", S, 44, 4},
      {"pairs[1].a", S, 48, 4},
      {"pairs[1].b", S, 52, 4},
      {"value", v1::Field::BYTES, 56, 8},
      {"fname.len", U, 64, 4},
      {"fname.pathes", v1::Field::STRING, 68, 16},
      {"big", v1::Field::BYTES, 84, 80},  // 20 elements: past the limit of 16, one byte field
      {"raw", v1::Field::BYTES, 164, 4},
      {"m[0][0]", S, 168, 4},
      {"m[0][1]", S, 172, 4},
      {"m[0][2]", S, 176, 4},
      {"m[1][0]", S, 180, 4},
      {"m[1][1]", S, 184, 4},
      {"m[1][2]", S, 188, 4},
      {"anon_a", U, 192, 4},
      {"ux", v1::Field::BYTES, 196, 4},
  };
  EXPECT_EQ(flat(*schema), expected);
  EXPECT_EQ(schema->fixed_size(), 200u);
  const v1::Field& colour = schema->fields(1);
  EXPECT_EQ(colour.hint(), "enum");
  ASSERT_EQ(colour.enumerators_size(), 2);
  EXPECT_EQ(colour.enumerators(0).name(), "RED");
  EXPECT_EQ(colour.enumerators(0).value(), 1);
  EXPECT_EQ(colour.enumerators(1).name(), "BLUE");
  EXPECT_EQ(colour.enumerators(1).value(), -2);
}

TEST(StructFlattening, FlattenedFieldsDecodeFromTheirOffsets) {
  BtfPtr b = build_event_btf();
  auto schema = schema_from_btf(b.get(), "event_t");  // a typedef of the struct names it too
  ASSERT_TRUE(schema) << schema.error().message();
  std::string payload(200, '\0');
  auto put = [&](std::size_t at, auto v) { std::memcpy(payload.data() + at, &v, sizeof(v)); };
  put(8, std::int32_t{-2});
  put(24, std::uint64_t{0xffffffff81000000});
  put(52, std::int32_t{-7});
  std::memcpy(payload.data() + 68, "/etc/hosts", 11);
  put(64, std::uint32_t{11});
  put(188, std::int32_t{42});
  const auto values = decode_payload(*schema, payload);
  auto value = [&](const std::string& name) -> const FieldValue& {
    for (const auto& v : values) {
      if (v.name == name) return v;
    }
    static const FieldValue none;
    ADD_FAILURE() << "no field " << name;
    return none;
  };
  EXPECT_EQ(value("colour").signed_value, -2);
  EXPECT_EQ(value("callers[1]").unsigned_value, 0xffffffff81000000u);
  EXPECT_EQ(value("pairs[1].b").signed_value, -7);
  EXPECT_EQ(value("fname.pathes").text, "/etc/hosts");
  EXPECT_EQ(value("fname.len").unsigned_value, 11u);
  EXPECT_EQ(value("m[1][2]").signed_value, 42);
  EXPECT_EQ(value("value").text, std::string(8, '\0'));
}

TEST(StructFlattening, BitFieldsAndMissingStructsAreErrors) {
  BtfPtr b(btf__new_empty(), btf__free);
  const int u32 = btf__add_int(b.get(), "unsigned int", 4, 0);
  btf__add_struct(b.get(), "bits", 4);
  btf__add_field(b.get(), "low", u32, 0, 3);
  auto bits = schema_from_btf(b.get(), "bits");
  ASSERT_FALSE(bits);
  EXPECT_EQ(bits.error().message(), "struct bits: bit-field 'low' is not supported in record layouts");
  auto none = schema_from_btf(b.get(), "nothing");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().message(), "BTF has no struct named 'nothing'");
}

// The object leaves `struct event` out of its BTF (a stack variable only); --btf takes it from the BTF clang
// made of the header.
TEST(EventTypeSchema, ComesFromTheObjectOrElseFromTheBtfFile) {
  const std::string object_path = std::string(PERFSTREAM_BPF_GEN_DIR) + "/test_opensnoop.bpf.o";
  const std::string btf_path = std::string(PERFSTREAM_BPF_GEN_DIR) + "/test_opensnoop_btf.o";
  std::unique_ptr<bpf_object, void (*)(bpf_object*)> object(bpf_object__open_file(object_path.c_str(), nullptr),
                                                            bpf_object__close);
  ASSERT_NE(object, nullptr);
  auto missing = schema_of_event_type(object.get(), "opensnoop.o", "event", "");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message(),
            "--event-type event: opensnoop.o has no struct event in its BTF (clang leaves out a struct used only as "
            "a stack variable); give --btf FILE with it, such as what clang -g -c makes of the header that declares "
            "it");
  auto schema = schema_of_event_type(object.get(), "opensnoop.o", "event", btf_path);
  ASSERT_TRUE(schema) << schema.error().message();
  const auto S = v1::Field::SIGNED;
  const auto U = v1::Field::UNSIGNED;
  const std::vector<Flat> expected = {
      {"ts", U, 0, 8},          {"pid", S, 8, 4},        {"uid", U, 12, 4},       {"ret", S, 16, 4},
      {"flags", S, 20, 4},      {"outcome", S, 24, 4},   {"args[0]", S, 32, 8},   {"args[1]", S, 40, 8},
      {"args[2]", S, 48, 8},    {"comm", v1::Field::STRING, 56, 16},             {"tag", v1::Field::STRING, 72, 8},
      {"fname.len", U, 80, 4},  {"fname.pathes", v1::Field::STRING, 84, 255},
  };
  EXPECT_EQ(flat(*schema), expected);
  EXPECT_EQ(schema->fixed_size(), 344u);
  // A struct the object has (its own BTF first): no --btf needed.
  auto own = schema_of_event_type(object.get(), "opensnoop.o", "args_t", "");
  ASSERT_TRUE(own) << own.error().message();
  EXPECT_EQ(own->fields(0).name(), "fname");
  auto nowhere = schema_of_event_type(object.get(), "opensnoop.o", "evnt", btf_path);
  ASSERT_FALSE(nowhere);
  EXPECT_EQ(nowhere.error().message(), "--event-type evnt: neither opensnoop.o nor --btf " + btf_path +
                                           " has it: BTF has no struct named 'evnt'");
}

}  // namespace
}  // namespace perfstream
