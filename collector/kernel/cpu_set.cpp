#include "collector/kernel/cpu_set.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <iterator>
#include <sstream>

namespace perfstream {
namespace {

constexpr unsigned kMaxCpu = 1u << 16;

Result<CpuSet> read_list_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Error::from_errno("reading " + path, errno);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto set = CpuSet::parse(text);
  if (!set) return set.error().with_context(path);
  return set;
}

}  // namespace

CpuSet::CpuSet(std::vector<unsigned> cpus) : cpus_(std::move(cpus)) {
  std::sort(cpus_.begin(), cpus_.end());
  cpus_.erase(std::unique(cpus_.begin(), cpus_.end()), cpus_.end());
}

Result<CpuSet> CpuSet::parse(std::string_view list) {
  std::vector<unsigned> cpus;
  auto bad = [&](const std::string& why) {
    return Error("CPU list \"" + std::string(list) + "\": " + why + " (expected a list like 0-3,5)");
  };
  std::size_t i = 0;
  auto skip_space = [&] {
    while (i < list.size() && (list[i] == ' ' || list[i] == '\n' || list[i] == '\t')) ++i;
  };
  auto number = [&](unsigned& out) -> bool {
    skip_space();
    const char* first = list.data() + i;
    const char* last = list.data() + list.size();
    auto [ptr, ec] = std::from_chars(first, last, out);
    if (ec != std::errc() || ptr == first) return false;
    i += static_cast<std::size_t>(ptr - first);
    skip_space();
    return true;
  };
  skip_space();
  while (i < list.size()) {
    unsigned lo = 0;
    if (!number(lo)) return bad("not a CPU number at position " + std::to_string(i));
    unsigned hi = lo;
    if (i < list.size() && list[i] == '-') {
      ++i;
      if (!number(hi)) return bad("range without an end at position " + std::to_string(i));
      if (hi < lo) return bad("range " + std::to_string(lo) + "-" + std::to_string(hi) + " runs backwards");
    }
    if (hi >= kMaxCpu) return bad("CPU " + std::to_string(hi) + " is out of range");
    for (unsigned c = lo; c <= hi; ++c) cpus.push_back(c);
    if (i < list.size()) {
      if (list[i] != ',') return bad(std::string("unexpected '") + list[i] + "'");
      ++i;
      skip_space();
      if (i == list.size()) return bad("trailing comma");
    }
  }
  return CpuSet(std::move(cpus));
}

Result<CpuSet> CpuSet::online(const std::string& sysfs_dir) { return read_list_file(sysfs_dir + "/online"); }
Result<CpuSet> CpuSet::possible(const std::string& sysfs_dir) { return read_list_file(sysfs_dir + "/possible"); }

bool CpuSet::contains(unsigned cpu) const { return std::binary_search(cpus_.begin(), cpus_.end(), cpu); }

CpuSet CpuSet::intersect(const CpuSet& other) const {
  std::vector<unsigned> out;
  std::set_intersection(cpus_.begin(), cpus_.end(), other.cpus_.begin(), other.cpus_.end(), std::back_inserter(out));
  return CpuSet(std::move(out));
}

CpuSet CpuSet::minus(const CpuSet& other) const {
  std::vector<unsigned> out;
  std::set_difference(cpus_.begin(), cpus_.end(), other.cpus_.begin(), other.cpus_.end(), std::back_inserter(out));
  return CpuSet(std::move(out));
}

std::string CpuSet::to_string() const {
  std::ostringstream out;
  for (std::size_t i = 0; i < cpus_.size();) {
    std::size_t j = i;
    while (j + 1 < cpus_.size() && cpus_[j + 1] == cpus_[j] + 1) ++j;
    if (i > 0) out << ',';
    out << cpus_[i];
    if (j > i) out << '-' << cpus_[j];
    i = j + 1;
  }
  return out.str();
}

}  // namespace perfstream
