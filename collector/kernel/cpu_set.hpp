// CpuSet: a set of CPU numbers, parsed from and printed as the kernel's list syntax ("0-3,5,8-9"), and the
// online/possible sets the kernel publishes in /sys/devices/system/cpu. Plain value type.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "collector/util/result.hpp"

namespace perfstream {

class CpuSet {
 public:
  CpuSet() = default;
  explicit CpuSet(std::vector<unsigned> cpus);

  // "0-3,5": ranges and single CPUs separated by commas; whitespace and a trailing newline are allowed.
  static Result<CpuSet> parse(std::string_view list);

  // The kernel's view; `sysfs_dir` is a test seam (default /sys/devices/system/cpu).
  static Result<CpuSet> online(const std::string& sysfs_dir = kSysfsCpuDir);
  static Result<CpuSet> possible(const std::string& sysfs_dir = kSysfsCpuDir);

  bool contains(unsigned cpu) const;
  bool empty() const { return cpus_.empty(); }
  std::size_t size() const { return cpus_.size(); }
  const std::vector<unsigned>& cpus() const { return cpus_; }  // sorted, unique
  unsigned max() const { return cpus_.empty() ? 0 : cpus_.back(); }

  CpuSet intersect(const CpuSet& other) const;
  CpuSet minus(const CpuSet& other) const;
  std::string to_string() const;  // the list syntax, "" when empty

  bool operator==(const CpuSet&) const = default;

  static constexpr const char* kSysfsCpuDir = "/sys/devices/system/cpu";

 private:
  std::vector<unsigned> cpus_;
};

}  // namespace perfstream
