// BpfGlobals on a real object (bpf/test_opensnoop.bpf.c, built by clang -target bpf -g): opened, never loaded,
// so no privileges are needed. What the globals are, their defaults, every kind of value --set takes, and
// the errors for what it refuses, word for word.
#include "collector/kernel/bpf_globals.hpp"

#include <bpf/libbpf.h>
#include <gtest/gtest.h>

#include <cstring>
#include <memory>

namespace perfstream {
namespace {

const std::string kObject = std::string(PERFSTREAM_BPF_GEN_DIR) + "/test_opensnoop.bpf.o";

class BpfGlobalsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    object_.reset(bpf_object__open_file(kObject.c_str(), nullptr));
    ASSERT_NE(object_, nullptr) << kObject << ": " << std::strerror(errno);
    auto globals = BpfGlobals::of(object_.get(), "test_opensnoop.bpf.o");
    ASSERT_TRUE(globals) << globals.error().message();
    globals_ = std::make_unique<BpfGlobals>(std::move(*globals));
  }
  const BpfGlobal& global(const std::string& name) const {
    for (const auto& g : globals_->list()) {
      if (g.name == name) return g;
    }
    ADD_FAILURE() << "no global " << name;
    static const BpfGlobal none;
    return none;
  }
  // The bytes of a global in its section's initial value, as the kernel will get them at load.
  std::string bytes_of(const std::string& section_suffix, std::uint32_t offset, std::uint32_t size) const {
    bpf_map* map = nullptr;
    bpf_object__for_each_map(map, object_.get()) {
      const std::string name = bpf_map__name(map);
      if (!bpf_map__is_internal(map) || name.size() < section_suffix.size() ||
          name.compare(name.size() - section_suffix.size(), section_suffix.size(), section_suffix) != 0) {
        continue;
      }
      std::size_t total = 0;
      const char* data = static_cast<const char*>(bpf_map__initial_value(map, &total));
      if (data == nullptr || offset + size > total) return "?";
      return std::string(data + offset, size);
    }
    return "?";
  }
  std::string error_of(const std::string& name, const std::string& value) {
    auto st = globals_->set({name, value});
    return st ? std::string("(no error)") : st.error().message();
  }

  std::unique_ptr<bpf_object, void (*)(bpf_object*)> object_{nullptr, bpf_object__close};
  std::unique_ptr<BpfGlobals> globals_;
};

TEST_F(BpfGlobalsTest, ListsEveryGlobalOfDataSectionsWithTypeAndDefault) {
  struct Expected {
    const char* name;
    const char* section;
    const char* type;
    const char* kind;
    const char* value;
  };
  const Expected expected[] = {
      {"targ_pid", ".rodata", "pid_t", "signed 32-bit integer", "0"},
      {"targ_tgid", ".rodata", "pid_t", "signed 32-bit integer", "0"},
      {"targ_uid", ".rodata", "__u32", "unsigned 32-bit integer", "0"},
      {"targ_failed", ".rodata", "bool", "true or false", "false"},
      {"targ_outcome", ".rodata", "enum snoop_outcome", "one of SNOOP_ANY, SNOOP_OPENED, SNOOP_FAILED", "SNOOP_ANY"},
      {"tag", ".rodata", "char[8]", "string of at most 7 bytes", "\"snoop\""},
      {"opens_recorded", ".bss", "__u64", "unsigned 64-bit integer", "0"},
      {"test_s8", ".data", "__s8", "signed 8-bit integer", "-8"},
      {"test_u16", ".data", "__u16", "unsigned 16-bit integer", "16"},
      {"test_s64", ".data", "__s64", "signed 64-bit integer", "-64"},
      {"test_u64", ".data", "__u64", "unsigned 64-bit integer", "64"},
  };
  ASSERT_EQ(globals_->list().size(), std::size(expected));
  for (const auto& e : expected) {
    const BpfGlobal& g = global(e.name);
    EXPECT_EQ(g.section, e.section) << e.name;
    EXPECT_EQ(g.type, e.type) << e.name;
    EXPECT_EQ(g.kind, e.kind) << e.name;
    EXPECT_EQ(g.value, e.value) << e.name;
    EXPECT_TRUE(g.settable) << e.name;
  }
}

TEST_F(BpfGlobalsTest, IntegersOfEverySizeAndSignAreWrittenLittleEndian) {
  ASSERT_TRUE(globals_->set({"targ_pid", "1234"}));
  EXPECT_EQ(bytes_of(".rodata", 0, 4), std::string("\xd2\x04\x00\x00", 4));
  ASSERT_TRUE(globals_->set({"targ_tgid", "-2147483648"}));
  EXPECT_EQ(bytes_of(".rodata", 4, 4), std::string("\x00\x00\x00\x80", 4));
  ASSERT_TRUE(globals_->set({"targ_uid", "0xffffffff"}));
  EXPECT_EQ(bytes_of(".rodata", 8, 4), std::string("\xff\xff\xff\xff", 4));
  EXPECT_EQ(global("targ_uid").value, "4294967295");
  ASSERT_TRUE(globals_->set({"targ_uid", "0"}));
  ASSERT_TRUE(globals_->set({"targ_uid", "-1"}));  // every bit set, as libbpf-tools' loaders write INVALID_UID
  EXPECT_EQ(bytes_of(".rodata", 8, 4), std::string("\xff\xff\xff\xff", 4));
  ASSERT_TRUE(globals_->set({"test_u16", "-1"}));
  EXPECT_EQ(global("test_u16").value, "65535");
  ASSERT_TRUE(globals_->set({"test_s8", "-128"}));
  EXPECT_EQ(bytes_of(".data", 0, 1), std::string("\x80", 1));
  ASSERT_TRUE(globals_->set({"test_u16", "0xBEEF"}));
  EXPECT_EQ(bytes_of(".data", 2, 2), std::string("\xef\xbe", 2));
  ASSERT_TRUE(globals_->set({"test_s64", "-9223372036854775808"}));
  EXPECT_EQ(bytes_of(".data", 8, 8), std::string("\x00\x00\x00\x00\x00\x00\x00\x80", 8));
  ASSERT_TRUE(globals_->set({"test_u64", "18446744073709551615"}));
  EXPECT_EQ(bytes_of(".data", 16, 8), std::string(8, '\xff'));
  ASSERT_TRUE(globals_->set({"opens_recorded", "7"}));
  EXPECT_EQ(bytes_of(".bss", 0, 8), std::string("\x07\0\0\0\0\0\0\0", 8));
  // Neighbours keep their bytes: test_s8's write left test_u16 alone and the other way round.
  EXPECT_EQ(global("test_s8").value, "-128");
  EXPECT_EQ(global("test_u16").value, "48879");
}

TEST_F(BpfGlobalsTest, BoolsEnumsAndStrings) {
  ASSERT_TRUE(globals_->set({"targ_failed", "true"}));
  EXPECT_EQ(bytes_of(".rodata", 12, 1), std::string("\x01", 1));
  ASSERT_TRUE(globals_->set({"targ_failed", "0"}));
  EXPECT_EQ(bytes_of(".rodata", 12, 1), std::string("\x00", 1));
  ASSERT_TRUE(globals_->set({"targ_outcome", "SNOOP_FAILED"}));
  EXPECT_EQ(bytes_of(".rodata", 16, 4), std::string("\x02\0\0\0", 4));
  EXPECT_EQ(global("targ_outcome").value, "SNOOP_FAILED");
  ASSERT_TRUE(globals_->set({"targ_outcome", "1"}));
  EXPECT_EQ(global("targ_outcome").value, "SNOOP_OPENED");
  ASSERT_TRUE(globals_->set({"tag", "abcdefg"}));  // 7 bytes and the NUL: the whole array
  EXPECT_EQ(bytes_of(".rodata", 20, 8), std::string("abcdefg\0", 8));
  ASSERT_TRUE(globals_->set({"tag", "x"}));  // the rest zero-filled, nothing of "abcdefg" left
  EXPECT_EQ(bytes_of(".rodata", 20, 8), std::string("x\0\0\0\0\0\0\0", 8));
  ASSERT_TRUE(globals_->set({"tag", ""}));
  EXPECT_EQ(bytes_of(".rodata", 20, 8), std::string(8, '\0'));
}

TEST_F(BpfGlobalsTest, AnUnknownNameListsTheGlobalsThatAre) {
  EXPECT_EQ(error_of("targ_pdi", "1"),
            "test_opensnoop.bpf.o: --set targ_pdi=1: no global named 'targ_pdi'; its globals: targ_pid, targ_tgid, "
            "targ_uid, targ_failed, targ_outcome, tag, opens_recorded, test_s8, test_u16, test_s64, test_u64");
}

TEST_F(BpfGlobalsTest, OutOfRangeValuesNameTheTypeAndItsRange) {
  EXPECT_EQ(error_of("targ_pid", "2147483648"),
            "test_opensnoop.bpf.o: --set targ_pid=2147483648: 2147483648 is out of range: targ_pid is pid_t "
            "(signed 32-bit integer: -2147483648 to 2147483647)");
  EXPECT_EQ(error_of("targ_uid", "-2"),
            "test_opensnoop.bpf.o: --set targ_uid=-2: -2 is out of range: targ_uid is __u32 (unsigned 32-bit "
            "integer: 0 to 4294967295); for all bits set write -1 or 0xffffffff");
  EXPECT_EQ(error_of("test_s8", "128"),
            "test_opensnoop.bpf.o: --set test_s8=128: 128 is out of range: test_s8 is __s8 (signed 8-bit integer: "
            "-128 to 127)");
  EXPECT_EQ(error_of("test_u16", "0x10000"),
            "test_opensnoop.bpf.o: --set test_u16=0x10000: 0x10000 is out of range: test_u16 is __u16 (unsigned "
            "16-bit integer: 0 to 65535)");
  EXPECT_EQ(error_of("test_u64", "18446744073709551616"),
            "test_opensnoop.bpf.o: --set test_u64=18446744073709551616: '18446744073709551616' is not an integer; "
            "test_u64 is __u64 (unsigned 64-bit integer: 0 to 18446744073709551615)");
  EXPECT_EQ(error_of("targ_pid", "12abc"),
            "test_opensnoop.bpf.o: --set targ_pid=12abc: '12abc' is not an integer; targ_pid is pid_t (signed "
            "32-bit integer: -2147483648 to 2147483647)");
  // Nothing was written by the refused settings.
  EXPECT_EQ(global("targ_pid").value, "0");
  EXPECT_EQ(bytes_of(".data", 0, 1), std::string("\xf8", 1));
}

TEST_F(BpfGlobalsTest, BadBoolsEnumNamesAndTooLongStringsAreRefused) {
  EXPECT_EQ(error_of("targ_failed", "yes"),
            "test_opensnoop.bpf.o: --set targ_failed=yes: 'yes' is not a bool; targ_failed is bool (true, false, 1 or 0)");
  EXPECT_EQ(error_of("targ_outcome", "SNOOP_MAYBE"),
            "test_opensnoop.bpf.o: --set targ_outcome=SNOOP_MAYBE: 'SNOOP_MAYBE' is no enumerator of enum "
            "snoop_outcome (SNOOP_ANY, SNOOP_OPENED, SNOOP_FAILED)");
  EXPECT_EQ(error_of("tag", "eightchr"),
            "test_opensnoop.bpf.o: --set tag=eightchr: \"eightchr\" is 8 bytes; tag is char[8], at most 7 bytes and "
            "the NUL");
  EXPECT_EQ(global("tag").value, "\"snoop\"");
}

TEST(GlobalSetting, ParsesNameEqualsValue) {
  auto s = parse_global_setting("tag=a=b");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->name, "tag");
  EXPECT_EQ(s->value, "a=b");
  auto empty = parse_global_setting("tag=");
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->value, "");
  auto bad = parse_global_setting("targ_pid");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "--set 'targ_pid': give NAME=VALUE (perfstream probes --object FILE lists the globals)");
  EXPECT_FALSE(parse_global_setting("=3"));
}

}  // namespace
}  // namespace perfstream
