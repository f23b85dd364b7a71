// Numbers into text without a format string, for the paths that print millions of them (dump, the
// display hints): one place, so that every layer writes a time the same way.
#pragma once

#include <charconv>
#include <cstdint>
#include <string>

namespace perfstream {

inline void append_number(std::string& out, std::uint64_t v, int base = 10) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v, base);
  out.append(buf, end);
}

// "<seconds>.<9-digit nanoseconds>".
inline void append_seconds(std::string& out, std::uint64_t ns) {
  append_number(out, ns / 1000000000ull);
  char frac[10];
  std::uint64_t f = ns % 1000000000ull;
  for (int i = 9; i >= 1; --i) {
    frac[i] = static_cast<char>('0' + f % 10);
    f /= 10;
  }
  frac[0] = '.';
  out.append(frac, 10);
}

}  // namespace perfstream
