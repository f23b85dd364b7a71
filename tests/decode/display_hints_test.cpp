// The display hint renderers (decode/display_hints.hpp), value by value, including values no table names;
// the hints the built-in schemas carry from their BTF decl tags; and the table for old recordings, which
// must agree with those tags.
#include "collector/decode/display_hints.hpp"

#include <gtest/gtest.h>

#include <cstdint>

#include <map>
#include <string>
#include <vector>

#include "testing/builtin_schemas.hpp"

namespace perfstream::hints {
namespace {

std::string open_flags(std::uint32_t v) {
  std::string s;
  append_open_flags(s, v);
  return s;
}
std::string mode(std::uint64_t v) {
  std::string s;
  append_mode(s, v);
  return s;
}
std::string state(std::int64_t v) {
  std::string s;
  append_task_state(s, v);
  return s;
}
std::string signal(std::int64_t v) {
  std::string s;
  return append_signal(s, v) ? s : "<none>";
}
std::string wait_signal(std::uint64_t v) {
  std::string s;
  return append_wait_signal(s, v) ? s : "<none>";
}
std::string ip(const std::string& bytes, std::optional<std::uint64_t> port = std::nullopt) {
  std::string s;
  return append_ip(s, bytes, port) ? s : "<none>";
}
std::string bytes(std::uint64_t v) {
  std::string s;
  append_bytes(s, v);
  return s;
}
std::string duration(std::int64_t v) {
  std::string s;
  append_duration(s, v);
  return s;
}

TEST(DisplayHints, NamesParseAndUnknownNamesAreKeptApart) {
  EXPECT_EQ(parse_hint(""), Hint::None);
  EXPECT_EQ(parse_hint("open_flags"), Hint::OpenFlags);
  EXPECT_EQ(parse_hint("argv"), Hint::Argv);
  EXPECT_EQ(parse_hint("path_argv"), Hint::PathArgv);
  EXPECT_EQ(parse_hint("hidden"), Hint::Hidden);
  EXPECT_EQ(parse_hint("colour"), Hint::Unknown);
  EXPECT_EQ(parse_hint("Open_Flags"), Hint::Unknown);
}

TEST(DisplayHints, OpenFlagsByNameWithUnknownBitsInHex) {
  EXPECT_EQ(open_flags(0), "O_RDONLY");
  EXPECT_EQ(open_flags(02000000), "O_RDONLY|O_CLOEXEC");
  EXPECT_EQ(open_flags(01101), "O_WRONLY|O_CREAT|O_TRUNC");
  EXPECT_EQ(open_flags(2), "O_RDWR");
  EXPECT_EQ(open_flags(3), "O_ACCMODE");
  EXPECT_EQ(open_flags(04010000), "O_RDONLY|O_SYNC");         // both bits: one name
  EXPECT_EQ(open_flags(010000), "O_RDONLY|O_DSYNC");
  EXPECT_EQ(open_flags(020200002), "O_RDWR|O_TMPFILE");
  EXPECT_EQ(open_flags(0200000), "O_RDONLY|O_DIRECTORY");
  EXPECT_EQ(open_flags(010000000 | 0400000), "O_RDONLY|O_NOFOLLOW|O_PATH");
  EXPECT_EQ(open_flags(0x40000000), "O_RDONLY|0x40000000");   // no such flag
  EXPECT_EQ(open_flags(0xc0000001), "O_WRONLY|0xc0000000");
  EXPECT_EQ(open_flags(0xffffffff),
            "O_ACCMODE|O_CREAT|O_EXCL|O_NOCTTY|O_TRUNC|O_APPEND|O_NONBLOCK|O_SYNC|FASYNC|O_DIRECT|O_LARGEFILE|"
            "O_TMPFILE|O_NOFOLLOW|O_NOATIME|O_CLOEXEC|O_PATH|0xff80003c");  // octal 074: no flags there
}

TEST(DisplayHints, ModeIsOctalWithALeadingZero) {
  EXPECT_EQ(mode(0644), "0644");
  EXPECT_EQ(mode(0), "0");
  EXPECT_EQ(mode(04755), "04755");
  EXPECT_EQ(mode(0100644), "0100644");
  EXPECT_EQ(mode(0xffffffffull), "037777777777");
}

TEST(DisplayHints, ErrnoNamesAndNumbersPastTheTable) {
  EXPECT_STREQ(errno_name(2), "ENOENT");
  EXPECT_STREQ(errno_name(13), "EACCES");
  EXPECT_STREQ(errno_name(11), "EAGAIN");   // not EWOULDBLOCK: the first name of a number
  EXPECT_STREQ(errno_name(35), "EDEADLK");
  EXPECT_STREQ(errno_name(133), "EHWPOISON");
  EXPECT_STREQ(errno_name(512), "ERESTARTSYS");
  EXPECT_STREQ(errno_name(524), "ENOTSUPP");
  EXPECT_EQ(errno_name(0), nullptr);
  EXPECT_EQ(errno_name(41), nullptr);       // a hole in the table
  EXPECT_EQ(errno_name(134), nullptr);
  EXPECT_EQ(errno_name(520), nullptr);
  EXPECT_EQ(errno_name(4095), nullptr);
  EXPECT_EQ(errno_name(-2), nullptr);
  // Found by fuzz_payload_decoder: the kernel table's offset must not be taken from a number far below it.
  EXPECT_EQ(errno_name(INT64_MIN + 134), nullptr);
  EXPECT_EQ(errno_name(INT64_MIN), nullptr);
  EXPECT_EQ(errno_name(INT64_MAX), nullptr);
}

TEST(DisplayHints, TaskStateAsTheTracepointPrintsIt) {
  EXPECT_EQ(state(0), "R");
  EXPECT_EQ(state(1), "S");
  EXPECT_EQ(state(2), "D");
  EXPECT_EQ(state(4), "T");
  EXPECT_EQ(state(8), "t");
  EXPECT_EQ(state(16), "X");
  EXPECT_EQ(state(32), "Z");
  EXPECT_EQ(state(64), "P");
  EXPECT_EQ(state(128), "I");
  EXPECT_EQ(state(0x100), "R+");
  EXPECT_EQ(state(3), "S|D");
  EXPECT_EQ(state(0x101), "S+");
  EXPECT_EQ(state(0x200), "0x200");         // no known letter
  EXPECT_EQ(state(0x301), "S|0x200+");
  EXPECT_EQ(state(-1), "S|D|T|t|X|Z|P|I|0xfffffffffffffe00+");
}

TEST(DisplayHints, SignalsByNameRealTimeByOffset) {
  EXPECT_EQ(signal(9), "SIGKILL");
  EXPECT_EQ(signal(1), "SIGHUP");
  EXPECT_EQ(signal(31), "SIGSYS");
  EXPECT_EQ(signal(32), "SIGRTMIN");
  EXPECT_EQ(signal(34), "SIGRTMIN+2");
  EXPECT_EQ(signal(64), "SIGRTMIN+32");
  EXPECT_EQ(signal(0), "<none>");
  EXPECT_EQ(signal(65), "<none>");
  EXPECT_EQ(signal(-9), "<none>");
}

TEST(DisplayHints, WaitStatusGivesTheSignalOrTheExitCode) {
  EXPECT_EQ(wait_signal(9), "SIGKILL");
  EXPECT_EQ(wait_signal(11 | 0x80), "SIGSEGV+core");
  EXPECT_EQ(wait_signal(3 << 8), "<none>");
  EXPECT_EQ(exit_code_of(3 << 8), 3u);
  EXPECT_EQ(wait_signal(0x7f), "<none>");   // stopped, not ended
  EXPECT_EQ(wait_signal(0x7e), "<none>");   // no signal 126
}

TEST(DisplayHints, TcpStatesAndAddressFamilies) {
  EXPECT_STREQ(tcp_state_name(1), "ESTABLISHED");
  EXPECT_STREQ(tcp_state_name(7), "CLOSE");
  EXPECT_STREQ(tcp_state_name(10), "LISTEN");
  EXPECT_STREQ(tcp_state_name(12), "NEW_SYN_RECV");
  EXPECT_EQ(tcp_state_name(0), nullptr);
  EXPECT_EQ(tcp_state_name(99), nullptr);
  EXPECT_STREQ(address_family_name(2), "AF_INET");
  EXPECT_STREQ(address_family_name(10), "AF_INET6");
  EXPECT_EQ(address_family_name(3), nullptr);
}

TEST(DisplayHints, AddressesWithAndWithoutPorts) {
  EXPECT_EQ(ip(std::string("\x0a\x00\x00\x01", 4)), "10.0.0.1");
  EXPECT_EQ(ip(std::string("\x0a\x00\x00\x01", 4), 443), "10.0.0.1:443");
  std::string v6(16, '\0');
  v6[15] = 1;
  EXPECT_EQ(ip(v6), "::1");
  EXPECT_EQ(ip(v6, 8080), "[::1]:8080");
  std::string mapped(16, '\0');
  mapped[10] = mapped[11] = '\xff';
  mapped[12] = 10, mapped[15] = 1;
  EXPECT_EQ(ip(mapped), "::ffff:10.0.0.1");
  EXPECT_EQ(ip(std::string("\x20\x01\x0d\xb8", 4) + std::string(11, '\0') + "\x01"), "2001:db8::1");
  EXPECT_EQ(ip("abc"), "<none>");
  EXPECT_EQ(ip(""), "<none>");
  EXPECT_EQ(int_bytes(0x0100000a, 4), std::string("\x0a\x00\x00\x01", 4));  // 10.0.0.1 read as a little-endian u32
}

TEST(DisplayHints, BytesInBinaryUnits) {
  EXPECT_EQ(bytes(0), "0B");
  EXPECT_EQ(bytes(1023), "1023B");
  EXPECT_EQ(bytes(1024), "1.0KiB");
  EXPECT_EQ(bytes(1536), "1.5KiB");
  EXPECT_EQ(bytes(1048575), "1024.0KiB");  // rounds up to 1024.0 but stays in the unit it was scaled to
  EXPECT_EQ(bytes(3 * 1048576 + 104858), "3.1MiB");
  EXPECT_EQ(bytes(~0ull), "16.0EiB");
}

TEST(DisplayHints, DurationsInSeconds) {
  EXPECT_EQ(duration(1'500'000'000), "1.500000000s");
  EXPECT_EQ(duration(0), "0.000000000s");
  EXPECT_EQ(duration(-100), "-0.000000100s");
  EXPECT_EQ(duration(INT64_MIN), "-9223372036.854775808s");
}

TEST(DisplayHints, ArgvSplitsAtNuls) {
  std::vector<std::string_view> words;
  const std::string echo("echo\0a\0c d\0", 11), empty_arg("x\0\0y", 4), cut("cut sho", 7);
  split_argv(echo, words);
  EXPECT_EQ(words, (std::vector<std::string_view>{"echo", "a", "c d"}));
  split_argv(empty_arg, words);  // an empty argument in the middle is one
  EXPECT_EQ(words, (std::vector<std::string_view>{"x", "", "y"}));
  split_argv(cut, words);        // no last NUL: the last word was cut
  EXPECT_EQ(words, (std::vector<std::string_view>{"cut sho"}));
  split_argv("", words);
  EXPECT_TRUE(words.empty());
}

TEST(DisplayHints, SignExtensionBySize) {
  EXPECT_EQ(sign_extend(0xfffffffe, 4), -2);
  EXPECT_EQ(sign_extend(0x7fffffff, 4), 0x7fffffff);
  EXPECT_EQ(sign_extend(0xff, 1), -1);
  EXPECT_EQ(sign_extend(0x1ff, 1), -1);
  EXPECT_EQ(sign_extend(~0ull, 8), -1);
}

// The hints come from the probes' BTF decl tags (PS_HINT in bpf/events.h) into the schema.
TEST(DisplayHints, BuiltInSchemasCarryTheirTags) {
  auto hint_of = [](const v1::EventSchema& s, const std::string& field) {
    for (const auto& f : s.fields()) {
      if (f.name() == field) return f.hint();
    }
    return std::string("<no field>");
  };
  const v1::EventSchema openat = perfstream::testing::builtin_schema("openat", 2);
  EXPECT_EQ(hint_of(openat, "flags"), "open_flags");
  EXPECT_EQ(hint_of(openat, "mode"), "mode");
  EXPECT_EQ(hint_of(openat, "kind"), "hidden");
  EXPECT_EQ(hint_of(openat, "path_len"), "hidden");
  EXPECT_EQ(hint_of(openat, "pid"), "");
  EXPECT_EQ(hint_of(perfstream::testing::builtin_schema("sched_switch", 3), "prev_state"), "task_state");
  auto tcp = builtin_probe_schema("tcp");
  ASSERT_TRUE(tcp) << tcp.error().message();
  for (const auto& f : tcp->fields()) {
    if (f.name() != "daddr") continue;
    EXPECT_EQ(f.hint(), "ip");
    EXPECT_EQ(f.hint_args().at("port"), "dport");
    EXPECT_EQ(f.hint_args().at("family"), "family");
  }
}

// Every entry of the table for old recordings is what today's struct says, so that an old recording with
// --guess-hints reads as a new one.
TEST(DisplayHints, TableForOldRecordingsAgreesWithTheTags) {
  for (const char* name : {"exec", "openat", "sched_switch", "loadgen", "exit", "fork", "tcp"}) {
    auto built = builtin_probe_schema(name);
    ASSERT_TRUE(built) << built.error().message();
    const v1::EventSchema today = *built;
    v1::EventSchema old = today;
    for (auto& f : *old.mutable_fields()) {
      f.clear_hint();
      f.clear_hint_args();
    }
    add_builtin_hints(old);
    for (int i = 0; i < today.fields_size(); ++i) {
      const BuiltinHint* h = builtin_hint(today.type_name(), today.fields(i).name());
      if (h == nullptr) continue;
      EXPECT_EQ(today.fields(i).hint(), h->hint) << name << "." << today.fields(i).name();
      EXPECT_EQ(old.fields(i).hint(), today.fields(i).hint()) << name << "." << today.fields(i).name();
      using Args = std::map<std::string, std::string>;
      const Args old_args(old.fields(i).hint_args().begin(), old.fields(i).hint_args().end());
      const Args today_args(today.fields(i).hint_args().begin(), today.fields(i).hint_args().end());
      EXPECT_EQ(old_args, today_args) << name << "." << today.fields(i).name();
    }
  }
}

TEST(DisplayHints, TableLeavesHintedAndMistypedFieldsAlone) {
  v1::EventSchema s;
  s.set_type_name("ps_openat_event");
  v1::Field* flags = s.add_fields();
  flags->set_name("flags");
  flags->set_type(v1::Field::BYTES);  // not an integer: open_flags does not fit
  v1::Field* mode = s.add_fields();
  mode->set_name("mode");
  mode->set_type(v1::Field::UNSIGNED);
  mode->set_hint("hex");
  v1::Field* kind = s.add_fields();
  kind->set_name("kind");
  kind->set_type(v1::Field::UNSIGNED);
  EXPECT_EQ(add_builtin_hints(s), 1);
  EXPECT_EQ(s.fields(0).hint(), "");
  EXPECT_EQ(s.fields(1).hint(), "hex");
  EXPECT_EQ(s.fields(2).hint(), "hidden");
  v1::EventSchema other = s;
  other.set_type_name("my_event");  // not a built-in struct: nothing is guessed
  other.mutable_fields(2)->clear_hint();
  EXPECT_EQ(add_builtin_hints(other), 0);
}

}  // namespace
}  // namespace perfstream::hints
