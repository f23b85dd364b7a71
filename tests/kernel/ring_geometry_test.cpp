// RingSize::parse (the -m option) and plan_ring_geometry: how a request becomes 1 + 2^n pages per CPU.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "collector/kernel/perf_event_array.hpp"

namespace perfstream {
namespace {

constexpr std::size_t kPage = 4096;
constexpr std::uint64_t KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB;

RingSize size_of(const std::string& text) {
  auto size = RingSize::parse(text);
  if (!size) throw std::runtime_error(size.error().message());
  return *size;
}

RingGeometry plan(RingSize::Unit unit, std::uint64_t value, std::size_t cpus = 1, std::size_t page = kPage,
                  std::uint64_t wakeup = 0) {
  auto geometry = plan_ring_geometry(RingSize{unit, value}, wakeup, cpus, page);
  if (!geometry) throw std::runtime_error(geometry.error().message());
  return *geometry;
}

TEST(RingSize, PlainNumberIsPagesPerCpu) {
  for (std::uint64_t pages : {1ull, 64ull, 100ull, 4096ull}) {
    const RingSize size = size_of(std::to_string(pages));
    EXPECT_EQ(size.unit, RingSize::Unit::PagesPerCpu);
    EXPECT_EQ(size.value, pages);
  }
}

TEST(RingSize, UnitSuffixesAreBytesPerCpu) {
  struct Case {
    const char* text;
    std::uint64_t bytes;
  };
  const Case cases[] = {{"256K", 256 * KiB}, {"256k", 256 * KiB}, {"256KiB", 256 * KiB},
                        {"4M", 4 * MiB},     {"4m", 4 * MiB},     {"4MiB", 4 * MiB},
                        {"1G", GiB},         {"2g", 2 * GiB},     {"8192B", 8192}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    const RingSize size = size_of(c.text);
    EXPECT_EQ(size.unit, RingSize::Unit::BytesPerCpu);
    EXPECT_EQ(size.value, c.bytes);
  }
}

TEST(RingSize, TotalPrefixIsABudgetForAllCpus) {
  RingSize size = size_of("total:64M");
  EXPECT_EQ(size.unit, RingSize::Unit::TotalBytes);
  EXPECT_EQ(size.value, 64 * MiB);
  size = size_of("total:1G");
  EXPECT_EQ(size.unit, RingSize::Unit::TotalBytes);
  EXPECT_EQ(size.value, GiB);
}

TEST(RingSize, RejectsUnknownUnits) {
  for (const char* unit : {"X", "MB", "KB", "T", " M", "M2"}) {
    const std::string text = std::string("4") + unit;
    SCOPED_TRACE(text);
    auto size = RingSize::parse(text);
    ASSERT_FALSE(size);
    EXPECT_EQ(size.error().message(), "ring size \"" + text + "\": unknown unit \"" + unit + "\" (use K, M or G)");
  }
}

TEST(RingSize, RejectsZero) {
  for (const char* text : {"0", "0K", "0M", "total:0M"}) {
    SCOPED_TRACE(text);
    auto size = RingSize::parse(text);
    ASSERT_FALSE(size);
    EXPECT_EQ(size.error().message(), "ring size \"" + std::string(text) + "\": must be at least one page");
  }
}

TEST(RingSize, RejectsEmptyAndNonNumbers) {
  auto empty = RingSize::parse("");
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().message(), "ring size \"\": empty");
  auto total_empty = RingSize::parse("total:");
  ASSERT_FALSE(total_empty);
  EXPECT_EQ(total_empty.error().message(), "ring size \"total:\": empty");
  for (const char* text : {"K", "abc", "total:M", "big", "99999999999999999999"}) {
    SCOPED_TRACE(text);
    auto size = RingSize::parse(text);
    ASSERT_FALSE(size);
    EXPECT_EQ(size.error().message(), "ring size \"" + std::string(text) +
                                          "\": not a number (use pages like 64, bytes like 256K or 4M, or total:64M)");
  }
}

// std::stoull reads "-1" as 2^64 - 1 (and skips leading blanks): a sign must not turn into a huge ring.
TEST(RingSize, RejectsSignsAndLeadingBlanks) {
  for (const char* text : {"-1", "-4M", "total:-64M", "+64", " 64"}) {
    SCOPED_TRACE(text);
    auto size = RingSize::parse(text);
    ASSERT_FALSE(size);
    EXPECT_EQ(size.error().message(), "ring size \"" + std::string(text) +
                                          "\": not a number (use pages like 64, bytes like 256K or 4M, or total:64M)");
  }
}

TEST(RingSize, RejectsSizesThatOverflow) {
  for (const char* text : {"17179869184G", "total:17179869184G", "18014398509481984K"}) {  // 2^64 bytes
    SCOPED_TRACE(text);
    auto size = RingSize::parse(text);
    ASSERT_FALSE(size);
    EXPECT_EQ(size.error().message(), "ring size \"" + std::string(text) + "\": too large");
  }
}

TEST(RingGeometry, DefaultIs4MiBPerCpuWithin64MiBInAllAndNeverBelow512KiB) {
  // cpus -> data bytes per CPU
  const std::pair<std::size_t, std::uint64_t> cases[] = {
      {1, 4 * MiB},     {2, 4 * MiB},    {16, 4 * MiB},   {17, 2 * MiB},  {32, 2 * MiB},
      {48, 1 * MiB},    {64, 1 * MiB},   {100, 512 * KiB}, {128, 512 * KiB}, {1024, 512 * KiB}};
  for (std::size_t page : {std::size_t{4096}, std::size_t{16384}, std::size_t{65536}}) {
    for (const auto& [cpus, bytes] : cases) {
      SCOPED_TRACE("page size " + std::to_string(page) + ", " + std::to_string(cpus) + " CPUs");
      const RingGeometry g = plan(RingSize::Unit::Default, 0, cpus, page);
      EXPECT_EQ(g.page_size, page);
      EXPECT_EQ(g.data_bytes, bytes);
      EXPECT_EQ(g.data_pages, bytes / page);
      EXPECT_EQ(g.wakeup_bytes, bytes / 4);
    }
  }
}

TEST(RingGeometry, PagesPerCpuRoundUpToAPowerOfTwo) {
  const std::pair<std::uint64_t, std::size_t> cases[] = {{1, 1},    {2, 2},     {3, 4},       {64, 64},
                                                         {65, 128}, {100, 128}, {1000, 1024}, {1u << 20, 1u << 20}};
  for (auto [asked, pages] : cases) {
    SCOPED_TRACE(asked);
    const RingGeometry g = plan(RingSize::Unit::PagesPerCpu, asked, 8);
    EXPECT_EQ(g.data_pages, pages);
    EXPECT_EQ(g.data_bytes, pages * kPage);
  }
}

TEST(RingGeometry, BytesPerCpuRoundUpToWholePagesThenAPowerOfTwo) {
  const std::pair<std::uint64_t, std::size_t> cases[] = {{1, 1},          {4096, 1},        {4097, 2},
                                                         {256 * KiB, 64}, {300 * KiB, 128}, {4 * MiB, 1024}};
  for (auto [bytes, pages] : cases) {
    SCOPED_TRACE(bytes);
    EXPECT_EQ(plan(RingSize::Unit::BytesPerCpu, bytes).data_pages, pages);
  }
  EXPECT_EQ(plan(RingSize::Unit::BytesPerCpu, 256 * KiB, 1, 65536).data_pages, 4u);
  EXPECT_EQ(plan(RingSize::Unit::BytesPerCpu, 100 * KiB, 1, 65536).data_pages, 2u);
}

TEST(RingGeometry, TotalBudgetRoundsDownSoItIsNeverExceeded) {
  // 64 MiB over 8 CPUs is 2048 pages each; the metadata page leaves room for 1024 data pages, not 2048.
  const RingGeometry g = plan(RingSize::Unit::TotalBytes, 64 * MiB, 8);
  EXPECT_EQ(g.data_pages, 1024u);
  EXPECT_EQ(g.data_bytes, 4 * MiB);

  for (std::size_t cpus : {1, 2, 3, 5, 8, 12, 64}) {
    for (std::uint64_t budget = 2 * kPage * cpus; budget <= 96 * MiB; budget = budget * 3 / 2 + 4096) {
      SCOPED_TRACE(std::to_string(cpus) + " CPUs, budget " + std::to_string(budget));
      const RingGeometry p = plan(RingSize::Unit::TotalBytes, budget, cpus);
      const std::uint64_t mapped = (p.data_pages + 1) * kPage * cpus;
      EXPECT_LE(mapped, budget);
      EXPECT_GT((2 * p.data_pages + 1) * kPage * cpus, budget);  // the next power of two would not fit
      EXPECT_EQ(p.data_pages & (p.data_pages - 1), 0u);
    }
  }
}

TEST(RingGeometry, TotalBudgetTooSmallIsAnErrorNamingTheMinimum) {
  auto g = plan_ring_geometry(RingSize{RingSize::Unit::TotalBytes, 8 * KiB}, 0, 2, kPage);
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().message(),
            "ring budget 8 KiB for 2 CPUs leaves less than 1 data page + 1 metadata page per CPU; "
            "give at least 16 KiB");
  EXPECT_FALSE(plan_ring_geometry(RingSize{RingSize::Unit::TotalBytes, 16 * KiB - 1}, 0, 2, kPage));
  // Exactly the minimum: one data page and one metadata page each.
  EXPECT_EQ(plan(RingSize::Unit::TotalBytes, 16 * KiB, 2).data_pages, 1u);
}

TEST(RingGeometry, WakeupDefaultsToAQuarterOfTheDataArea) {
  EXPECT_EQ(plan(RingSize::Unit::PagesPerCpu, 64).wakeup_bytes, 64 * KiB);
  EXPECT_EQ(plan(RingSize::Unit::PagesPerCpu, 1).wakeup_bytes, 1 * KiB);
}

TEST(RingGeometry, ExplicitWakeupIsKeptUpToTheWholeDataArea) {
  EXPECT_EQ(plan(RingSize::Unit::PagesPerCpu, 64, 1, kPage, 4096).wakeup_bytes, 4096u);
  EXPECT_EQ(plan(RingSize::Unit::PagesPerCpu, 64, 1, kPage, 1).wakeup_bytes, 1u);
  EXPECT_EQ(plan(RingSize::Unit::PagesPerCpu, 64, 1, kPage, 256 * KiB).wakeup_bytes, 256 * KiB);
}

TEST(RingGeometry, WakeupLargerThanTheRingIsAnError) {
  auto g = plan_ring_geometry(RingSize{RingSize::Unit::PagesPerCpu, 64}, 256 * KiB + 1, 1, kPage);
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().message(),
            "wakeup size 262145 bytes is larger than the ring's data area of 256 KiB: the reader would never be woken");
  g = plan_ring_geometry(RingSize{RingSize::Unit::PagesPerCpu, 64}, 1 * MiB, 1, kPage);
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().message(),
            "wakeup size 1 MiB is larger than the ring's data area of 256 KiB: the reader would never be woken");
}

TEST(RingGeometry, MoreThanAMillionPagesPerCpuIsAnError) {
  auto g = plan_ring_geometry(RingSize{RingSize::Unit::PagesPerCpu, (1u << 20) + 1}, 0, 1, kPage);
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().message(), "ring size of 2097152 pages per CPU is too large");
}

// Requests near 2^64 must be refused, not loop forever rounding up.
TEST(RingGeometry, HugeRequestsAreErrorsNotHangs) {
  const std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
  for (std::uint64_t value : {max, max / 2 + 2, max - kPage + 2}) {
    SCOPED_TRACE(value);
    EXPECT_FALSE(plan_ring_geometry(RingSize{RingSize::Unit::PagesPerCpu, value}, 0, 1, kPage));
    EXPECT_FALSE(plan_ring_geometry(RingSize{RingSize::Unit::BytesPerCpu, value}, 0, 1, kPage));
  }
}

TEST(RingGeometry, DescribeMentionsPagesKiBAndWhatIsMapped) {
  EXPECT_EQ(plan(RingSize::Unit::PagesPerCpu, 64).describe(2),
            "64 pages (256 KiB) + 1 metadata page per CPU, wakeup at 64 KiB; 2 CPUs: 520 KiB mapped");
  EXPECT_EQ(plan(RingSize::Unit::PagesPerCpu, 1024).describe(1),
            "1024 pages (4 MiB) + 1 metadata page per CPU, wakeup at 1 MiB; 1 CPU: 4100 KiB mapped");
  EXPECT_EQ(plan(RingSize::Unit::PagesPerCpu, 255, 1, kPage, 1000).describe(4),
            "256 pages (1 MiB) + 1 metadata page per CPU, wakeup at 1000 bytes; 4 CPUs: 4112 KiB mapped");
}

}  // namespace
}  // namespace perfstream
