// clock_ns: a clock's current reading in nanoseconds, the unit of every time in a recording.
#pragma once

#include <time.h>

#include <cstdint>

namespace perfstream {

inline std::uint64_t clock_ns(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace perfstream
