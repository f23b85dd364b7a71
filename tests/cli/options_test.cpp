// ArgParser and the value parsers the subcommands share.
#include "collector/cli/options.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace perfstream {
namespace {

using Args = std::vector<std::string>;

ArgParser make_parser() {
  ArgParser p("dump", "perfstream dump [flags] FILE...");
  p.flag("json", 0, "JSON lines")
      .flag("verbose", 'v', "say more")
      .option("cpu", 'C', "LIST", "only these CPUs")
      .option("pid", 'p', "PID", "only this process")
      .option("filter", 0, "FIELD=VALUE", "only matching records");
  return p;
}

TEST(ArgParser, LongFlagWithoutValue) {
  ArgParser p = make_parser();
  ASSERT_TRUE(p.parse({"--json"}));
  EXPECT_TRUE(p.has("json"));
  EXPECT_FALSE(p.has("verbose"));
  EXPECT_EQ(p.value("json"), std::optional<std::string>(""));
}

TEST(ArgParser, ShortFlagWithoutValue) {
  ArgParser p = make_parser();
  ASSERT_TRUE(p.parse({"-v"}));
  EXPECT_TRUE(p.has("verbose"));
}

TEST(ArgParser, LongOptionTakesTheNextWord) {
  ArgParser p = make_parser();
  ASSERT_TRUE(p.parse({"--cpu", "0-3"}));
  EXPECT_EQ(p.value("cpu"), std::optional<std::string>("0-3"));
  EXPECT_TRUE(p.positionals().empty());
}

TEST(ArgParser, LongOptionWithEquals) {
  ArgParser p = make_parser();
  ASSERT_TRUE(p.parse({"--cpu=1,2", "--filter=path=/a=b"}));
  EXPECT_EQ(p.value("cpu"), std::optional<std::string>("1,2"));
  // Only the first '=' separates the flag from its value.
  EXPECT_EQ(p.value("filter"), std::optional<std::string>("path=/a=b"));
}

TEST(ArgParser, LongOptionWithEmptyValueAfterEquals) {
  ArgParser p = make_parser();
  ASSERT_TRUE(p.parse({"--pid="}));
  EXPECT_EQ(p.value("pid"), std::optional<std::string>(""));
}

TEST(ArgParser, ShortOptionTakesTheNextWord) {
  ArgParser p = make_parser();
  ASSERT_TRUE(p.parse({"-p", "42"}));
  EXPECT_EQ(p.value("pid"), std::optional<std::string>("42"));
}

TEST(ArgParser, ShortOptionWithValueAttached) {
  ArgParser p = make_parser();
  ASSERT_TRUE(p.parse({"-p42", "-C0-1"}));
  EXPECT_EQ(p.value("pid"), std::optional<std::string>("42"));
  EXPECT_EQ(p.value("cpu"), std::optional<std::string>("0-1"));
}

TEST(ArgParser, RepeatedOptionKeepsEveryValueInOrder) {
  ArgParser p = make_parser();
  ASSERT_TRUE(p.parse({"--filter", "a=1", "--filter=b=2", "--filter", "c=3"}));
  EXPECT_EQ(p.values("filter"), (Args{"a=1", "b=2", "c=3"}));
  EXPECT_EQ(p.value("filter"), std::optional<std::string>("c=3"));
}

TEST(ArgParser, AbsentOptionHasNoValue) {
  ArgParser p = make_parser();
  ASSERT_TRUE(p.parse({}));
  EXPECT_FALSE(p.has("cpu"));
  EXPECT_EQ(p.value("cpu"), std::nullopt);
  EXPECT_TRUE(p.values("cpu").empty());
}

TEST(ArgParser, PositionalsAreCollectedBetweenFlags) {
  ArgParser p = make_parser();
  ASSERT_TRUE(p.parse({"a.data", "--json", "b.data", "-p", "7", "c.data"}));
  EXPECT_EQ(p.positionals(), (Args{"a.data", "b.data", "c.data"}));
  EXPECT_TRUE(p.has("json"));
  EXPECT_EQ(p.value("pid"), std::optional<std::string>("7"));
}

TEST(ArgParser, NegativeNumberAndLoneDashArePositionals) {
  ArgParser p = make_parser();
  ASSERT_TRUE(p.parse({"-5", "-"}));
  EXPECT_EQ(p.positionals(), (Args{"-5", "-"}));
}

TEST(ArgParser, DoubleDashEndsTheFlags) {
  ArgParser p = make_parser();
  ASSERT_TRUE(p.parse({"--json", "--", "ls", "-l", "--cpu", "3"}));
  EXPECT_TRUE(p.has("json"));
  EXPECT_FALSE(p.has("cpu"));
  EXPECT_EQ(p.rest(), (Args{"ls", "-l", "--cpu", "3"}));
  EXPECT_TRUE(p.positionals().empty());
}

TEST(ArgParser, DoubleDashAtTheEndLeavesAnEmptyRest) {
  ArgParser p = make_parser();
  ASSERT_TRUE(p.parse({"x", "--"}));
  EXPECT_TRUE(p.rest().empty());
  EXPECT_EQ(p.positionals(), (Args{"x"}));
}

TEST(ArgParser, AFlagWhereAValueBelongsIsAnErrorNotAValue) {
  ArgParser p = make_parser();
  auto st = p.parse({"--filter", "--json"});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "perfstream dump: --filter needs a value (FIELD=VALUE), not the flag '--json'");
  st = make_parser().parse({"--cpu", "-v"});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "perfstream dump: --cpu needs a value (LIST), not the flag '-v'");
  st = make_parser().parse({"--pid", "--"});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "perfstream dump: --pid needs a value (PID), not the flag '--'");
  // An unknown long flag is no value either; a lone dash, a negative number and `=` values are.
  EXPECT_FALSE(make_parser().parse({"--filter", "--duration"}));
  ArgParser q = make_parser();
  ASSERT_TRUE(q.parse({"--filter", "-", "--cpu", "-1", "--pid=--odd", "-C", "-x"}));
  EXPECT_EQ(q.value("filter"), std::optional<std::string>("-"));
  EXPECT_EQ(q.values("cpu"), (Args{"-1", "-x"}));
  EXPECT_EQ(q.value("pid"), std::optional<std::string>("--odd"));
}

TEST(ArgParser, UnknownLongFlagIsAnErrorNamingIt) {
  ArgParser p = make_parser();
  auto st = p.parse({"--json", "--bogus", "x"});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "perfstream dump: unknown flag '--bogus' (see perfstream dump --help)");
}

TEST(ArgParser, UnknownLongFlagWithValueIsNamedWithItsValue) {
  ArgParser p = make_parser();
  auto st = p.parse({"--bogus=1"});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "perfstream dump: unknown flag '--bogus=1' (see perfstream dump --help)");
}

TEST(ArgParser, UnknownShortFlagIsAnErrorNamingIt) {
  ArgParser p = make_parser();
  auto st = p.parse({"-x"});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "perfstream dump: unknown flag '-x' (see perfstream dump --help)");
}

TEST(ArgParser, ShortFlagWithoutValueRefusesAttachedText) {
  ArgParser p = make_parser();
  auto st = p.parse({"-vv"});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "perfstream dump: unknown flag '-vv' (see perfstream dump --help)");
}

TEST(ArgParser, FlagWithoutValueRefusesEqualsValue) {
  ArgParser p = make_parser();
  auto st = p.parse({"--json=yes"});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "perfstream dump: --json takes no value");
}

TEST(ArgParser, MissingValueIsAnErrorNamingTheFlagAndValue) {
  ArgParser p = make_parser();
  auto st = p.parse({"--cpu"});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "perfstream dump: --cpu needs a value (LIST)");

  ArgParser q = make_parser();
  auto st2 = q.parse({"-p"});
  ASSERT_FALSE(st2);
  EXPECT_EQ(st2.error().message(), "perfstream dump: --pid needs a value (PID)");
}

TEST(ArgParser, HelpListsEveryFlag) {
  const std::string help = make_parser().help();
  EXPECT_EQ(help.rfind("usage: perfstream dump [flags] FILE...\n", 0), 0u);
  EXPECT_NE(help.find("  -C, --cpu LIST"), std::string::npos);
  EXPECT_NE(help.find("      --json"), std::string::npos);
  EXPECT_NE(help.find("  -p, --pid PID"), std::string::npos);
  EXPECT_NE(help.find("only matching records"), std::string::npos);
}

TEST(ParseCount, WholeNumbers) {
  EXPECT_EQ(*parse_count("pid", "0"), 0u);
  EXPECT_EQ(*parse_count("pid", "4242"), 4242u);
  EXPECT_EQ(*parse_count("pid", "18446744073709551615"), 18446744073709551615ull);
}

TEST(ParseCount, RefusesWhatIsNotAWholeNumber) {
  for (const char* text : {"", "x", "12x", "-1", " 1", "1.5", "18446744073709551616"}) {
    auto r = parse_count("pid", text);
    ASSERT_FALSE(r) << text;
    EXPECT_EQ(r.error().message(), std::string("--pid '") + text + "': not a whole number");
  }
}

TEST(ParseBytes, PlainNumberAndUnits) {
  EXPECT_EQ(*parse_bytes("rotate-size", "4096"), 4096u);
  EXPECT_EQ(*parse_bytes("rotate-size", "4096B"), 4096u);
  EXPECT_EQ(*parse_bytes("rotate-size", "64K"), 65536u);
  EXPECT_EQ(*parse_bytes("rotate-size", "64k"), 65536u);
  EXPECT_EQ(*parse_bytes("rotate-size", "2KiB"), 2048u);
  EXPECT_EQ(*parse_bytes("rotate-size", "4M"), 4u << 20);
  EXPECT_EQ(*parse_bytes("rotate-size", "3MiB"), 3u << 20);
  EXPECT_EQ(*parse_bytes("rotate-size", "1G"), 1u << 30);
  EXPECT_EQ(*parse_bytes("rotate-size", "5GiB"), 5ull << 30);
  EXPECT_EQ(*parse_bytes("rotate-size", "0"), 0u);
}

TEST(ParseBytes, RefusesUnknownUnit) {
  auto r = parse_bytes("rotate-size", "3T");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "--rotate-size '3T': unknown unit 'T' (use K, M or G)");
}

TEST(ParseBytes, RefusesTextWithoutNumber) {
  for (const char* text : {"", "K", "-1K", "x"}) {
    auto r = parse_bytes("rotate-size", text);
    ASSERT_FALSE(r) << text;
    EXPECT_EQ(r.error().message(), std::string("--rotate-size '") + text + "': not a size (like 64K, 4M)");
  }
}

TEST(ParseBytes, RefusesOverflow) {
  auto r = parse_bytes("rotate-size", "17179869184G");  // 2^34 GiB = 2^64 bytes
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "--rotate-size '17179869184G': too large");
  EXPECT_EQ(*parse_bytes("rotate-size", "17179869183G"), 17179869183ull << 30);
}

TEST(ParseDurationMs, UnitsAndBareSeconds) {
  EXPECT_EQ(*parse_duration_ms("duration", "500ms"), 500u);
  EXPECT_EQ(*parse_duration_ms("duration", "10s"), 10000u);
  EXPECT_EQ(*parse_duration_ms("duration", "10"), 10000u);
  EXPECT_EQ(*parse_duration_ms("duration", "2m"), 120000u);
  EXPECT_EQ(*parse_duration_ms("duration", "5min"), 300000u);
  EXPECT_EQ(*parse_duration_ms("duration", "1h"), 3600000u);
  EXPECT_EQ(*parse_duration_ms("duration", "0ms"), 0u);
}

TEST(ParseDurationMs, RefusesUnknownUnit) {
  auto r = parse_duration_ms("duration", "3d");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "--duration '3d': unknown unit 'd' (use ms, s, m or h)");
}

TEST(ParseDurationMs, RefusesTextWithoutNumber) {
  for (const char* text : {"", "ms", "-5s", "s10"}) {
    auto r = parse_duration_ms("duration", text);
    ASSERT_FALSE(r) << text;
    EXPECT_EQ(r.error().message(), std::string("--duration '") + text + "': not a duration (like 500ms, 10s, 2m)");
  }
}

TEST(ParseDurationMs, RefusesOverflow) {
  auto r = parse_duration_ms("duration", "18446744073709551615h");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "--duration '18446744073709551615h': too large");
}

}  // namespace
}  // namespace perfstream
