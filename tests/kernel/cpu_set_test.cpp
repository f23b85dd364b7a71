// CpuSet: the kernel's CPU list syntax, set operations, and the online/possible files read from a fake sysfs.
#include "collector/kernel/cpu_set.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace perfstream {
namespace {

std::vector<unsigned> parsed(std::string_view text) {
  auto set = CpuSet::parse(text);
  if (!set) {
    ADD_FAILURE() << "parse(\"" << text << "\") failed: " << set.error().message();
    return {};
  }
  return set->cpus();
}

::testing::AssertionResult Contains(const std::string& haystack, const std::string& needle) {
  if (haystack.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << haystack << "\" does not contain \"" << needle << "\"";
}

TEST(CpuSet, ParsesSingleCpusAndRanges) {
  EXPECT_EQ(parsed("0"), (std::vector<unsigned>{0}));
  EXPECT_EQ(parsed("0-3,5"), (std::vector<unsigned>{0, 1, 2, 3, 5}));
  EXPECT_EQ(parsed("7-7"), (std::vector<unsigned>{7}));
  EXPECT_EQ(parsed("0,3-7"), (std::vector<unsigned>{0, 3, 4, 5, 6, 7}));  // a sparse online mask
  EXPECT_EQ(parsed("127"), (std::vector<unsigned>{127}));
}

TEST(CpuSet, ParsesTheKernelsTrailingNewlineAndWhitespace) {
  EXPECT_EQ(parsed("0-1,3\n"), (std::vector<unsigned>{0, 1, 3}));
  EXPECT_EQ(parsed("  0 - 2 ,\t4 \n"), (std::vector<unsigned>{0, 1, 2, 4}));
  EXPECT_EQ(parsed("\n"), (std::vector<unsigned>{}));  // e.g. /sys/devices/system/cpu/offline with none offline
  EXPECT_EQ(parsed(""), (std::vector<unsigned>{}));
}

TEST(CpuSet, SortsAndDeduplicates) {
  EXPECT_EQ(parsed("5,0-3,2,1-2"), (std::vector<unsigned>{0, 1, 2, 3, 5}));
  EXPECT_EQ(CpuSet({9, 1, 1, 4}).cpus(), (std::vector<unsigned>{1, 4, 9}));
}

TEST(CpuSet, RejectsMalformedListsQuotingTheInput) {
  struct Case {
    const char* text;
    const char* why;
  };
  const Case cases[] = {
      {"0-", "range without an end at position 2"},
      {"0-3,5-", "range without an end at position 6"},
      {"3-1", "range 3-1 runs backwards"},
      {"abc", "not a CPU number at position 0"},
      {"1,x", "not a CPU number at position 2"},
      {"-1", "not a CPU number at position 0"},
      {"0,,1", "not a CPU number at position 2"},
      {"0-3,", "trailing comma"},
      {"0,1, \n", "trailing comma"},
      {"0;1", "unexpected ';'"},
      {"1 2", "unexpected '2'"},
      {"65536", "CPU 65536 is out of range"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    auto set = CpuSet::parse(c.text);
    ASSERT_FALSE(set);
    const std::string& message = set.error().message();
    EXPECT_EQ(message.rfind("CPU list \"" + std::string(c.text) + "\": ", 0), 0u) << message;
    EXPECT_TRUE(Contains(message, c.why));
    EXPECT_TRUE(Contains(message, "(expected a list like 0-3,5)"));
  }
}

TEST(CpuSet, ToStringUsesRangesAndRoundTrips) {
  EXPECT_EQ(CpuSet({0, 1, 2, 3, 5, 8, 9}).to_string(), "0-3,5,8-9");
  EXPECT_EQ(CpuSet({4}).to_string(), "4");
  EXPECT_EQ(CpuSet({1, 3, 5}).to_string(), "1,3,5");
  EXPECT_EQ(CpuSet().to_string(), "");
  for (const char* text : {"0", "0-3,5", "0,3-7", "1,3,5", "0-63", "2-3,10-11,100"}) {
    SCOPED_TRACE(text);
    auto set = CpuSet::parse(text);
    ASSERT_TRUE(set) << set.error().message();
    EXPECT_EQ(set->to_string(), text);
    auto again = CpuSet::parse(set->to_string());
    ASSERT_TRUE(again);
    EXPECT_EQ(*again, *set);
  }
}

TEST(CpuSet, IntersectAndMinus) {
  const CpuSet possible({0, 1, 2, 3, 4, 5, 6, 7});
  const CpuSet online({0, 3, 4, 5, 6, 7});
  const CpuSet chosen({1, 3, 9});
  EXPECT_EQ(possible.minus(online).cpus(), (std::vector<unsigned>{1, 2}));
  EXPECT_EQ(chosen.intersect(online).cpus(), (std::vector<unsigned>{3}));
  EXPECT_EQ(chosen.minus(possible).cpus(), (std::vector<unsigned>{9}));
  EXPECT_TRUE(online.minus(possible).empty());
  EXPECT_EQ(online.intersect(CpuSet()), CpuSet());
  EXPECT_EQ(online.minus(CpuSet()), online);
}

TEST(CpuSet, ContainsSizeAndMax) {
  const CpuSet set({0, 3, 4, 5});
  EXPECT_TRUE(set.contains(0));
  EXPECT_TRUE(set.contains(4));
  EXPECT_FALSE(set.contains(1));
  EXPECT_FALSE(set.contains(6));
  EXPECT_EQ(set.size(), 4u);
  EXPECT_EQ(set.max(), 5u);
  EXPECT_EQ(CpuSet().max(), 0u);
  EXPECT_TRUE(CpuSet().empty());
}

// A directory standing in for /sys/devices/system/cpu, removed at the end of the test.
class FakeSysfs {
 public:
  FakeSysfs() {
    std::string pattern = ::testing::TempDir() + "cpu_set_test.XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp " + pattern);
    dir_ = pattern;
  }
  ~FakeSysfs() { std::filesystem::remove_all(dir_); }
  const std::string& dir() const { return dir_; }
  void write(const std::string& name, const std::string& text) { std::ofstream(dir_ + "/" + name) << text; }

 private:
  std::string dir_;
};

TEST(CpuSet, OnlineAndPossibleReadTheSysfsFiles) {
  FakeSysfs sysfs;
  sysfs.write("online", "0,3-7\n");
  sysfs.write("possible", "0-7\n");
  auto online = CpuSet::online(sysfs.dir());
  auto possible = CpuSet::possible(sysfs.dir());
  ASSERT_TRUE(online) << online.error().message();
  ASSERT_TRUE(possible) << possible.error().message();
  EXPECT_EQ(online->cpus(), (std::vector<unsigned>{0, 3, 4, 5, 6, 7}));
  EXPECT_EQ(possible->cpus(), (std::vector<unsigned>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(possible->minus(*online).to_string(), "1-2");
}

TEST(CpuSet, MissingSysfsFileIsAnErrorNamingIt) {
  FakeSysfs sysfs;
  sysfs.write("possible", "0-3\n");
  auto online = CpuSet::online(sysfs.dir());
  ASSERT_FALSE(online);
  EXPECT_EQ(online.error().errnum(), ENOENT);
  EXPECT_EQ(online.error().message(), "reading " + sysfs.dir() + "/online: No such file or directory");
  EXPECT_TRUE(CpuSet::possible(sysfs.dir()));
}

TEST(CpuSet, MalformedSysfsFileIsAnErrorNamingIt) {
  FakeSysfs sysfs;
  sysfs.write("possible", "0-3,\n");
  auto possible = CpuSet::possible(sysfs.dir());
  ASSERT_FALSE(possible);
  EXPECT_EQ(possible.error().message().rfind(sysfs.dir() + "/possible: CPU list \"0-3,\n\": trailing comma", 0), 0u)
      << possible.error().message();
}

}  // namespace
}  // namespace perfstream
