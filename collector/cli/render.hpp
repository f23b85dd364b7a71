// Text and JSON rendering shared by `dump` and `stats`: quoting, hex, times, aligned tables.
//
// Text strings are quoted C-style: \" \\ \n \t \r, \xNN for other control bytes and for bytes that are not
// valid UTF-8; valid UTF-8 passes through. JSON strings always come out valid: \" \\, \u00XX for control
// characters, and a byte that is not part of valid UTF-8 as \u00XX (its Latin-1 reading), so a path with
// stray bytes still parses.
#pragma once

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <cstring>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "collector/util/text.hpp"
#include "perfstream.pb.h"

namespace perfstream::cli::render {

// Length of the valid UTF-8 sequence starting at s[i] (1 to 4), or 0 when the byte there starts none.
// Overlong forms, surrogates and code points past U+10FFFF are invalid.
inline std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xbf;  // the range of the second byte
  if (c >= 0xc2 && c <= 0xdf) n = 2;
  else if (c == 0xe0) n = 3, lo = 0xa0;
  else if (c >= 0xe1 && c <= 0xec) n = 3;
  else if (c == 0xed) n = 3, hi = 0x9f;
  else if (c >= 0xee && c <= 0xef) n = 3;
  else if (c == 0xf0) n = 4, lo = 0x90;
  else if (c >= 0xf1 && c <= 0xf3) n = 4;
  else if (c == 0xf4) n = 4, hi = 0x8f;
  else return 0;
  if (i + n > s.size()) return 0;
  if (b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k) {
    if (b(i + k) < 0x80 || b(i + k) > 0xbf) return 0;
  }
  return n;
}

inline void append_hex_byte(std::string& out, unsigned char c) {
  static constexpr char kDigits[] = "0123456789abcdef";
  out.push_back(kDigits[c >> 4]);
  out.push_back(kDigits[c & 0xf]);
}

// Lower-case hex of the bytes; with max_bytes > 0 and more bytes than that, the first max_bytes and "...".
inline void append_hex(std::string& out, std::string_view bytes, std::size_t max_bytes = 0) {
  const bool cut = max_bytes != 0 && bytes.size() > max_bytes;
  const std::size_t n = cut ? max_bytes : bytes.size();
  for (std::size_t i = 0; i < n; ++i) append_hex_byte(out, static_cast<unsigned char>(bytes[i]));
  if (cut) out += "...";
}

inline void append_text_quoted(std::string& out, std::string_view s) {
  out.push_back('"');
  for (std::size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"': out += "\\\""; ++i; continue;
      case '\\': out += "\\\\"; ++i; continue;
      case '\n': out += "\\n"; ++i; continue;
      case '\t': out += "\\t"; ++i; continue;
      case '\r': out += "\\r"; ++i; continue;
      default: break;
    }
    const std::size_t n = (c < 0x20 || c == 0x7f) ? 0 : utf8_sequence(s, i);
    if (n == 0) {
      out += "\\x";
      append_hex_byte(out, c);
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  out.push_back('"');
}

inline void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (std::size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    const std::size_t n = (c < 0x20 || c == 0x7f) ? 0 : utf8_sequence(s, i);
    if (n == 0) {
      out += "\\u00";
      append_hex_byte(out, c);
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  out.push_back('"');
}

inline std::string json_string(std::string_view s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

// Integers without a format string: dump prints millions of them.
using perfstream::append_number;

inline void append_signed(std::string& out, std::int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, end);
}

// "<seconds>.<9-digit nanoseconds>".
inline void append_time(std::string& out, std::uint64_t ns) { append_seconds(out, ns); }

inline std::string format_time(std::uint64_t ns) {
  std::string out;
  append_time(out, ns);
  return out;
}

// A double as JSON accepts it (never NaN or infinity), with `decimals` places.
inline std::string format_fixed(double v, int decimals) {
  if (!(v == v) || v > 1e300 || v < -1e300) v = 0;
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  return buf;
}

inline const char* clock_name(v1::Clock clock) {
  switch (clock) {
    case v1::REALTIME: return "REALTIME";
    case v1::MONOTONIC: return "MONOTONIC";
    case v1::MONOTONIC_RAW: return "MONOTONIC_RAW";
    case v1::BOOTTIME: return "BOOTTIME";
    default: return "unspecified";
  }
}

inline const char* field_type_name(v1::Field::Type type) {
  switch (type) {
    case v1::Field::SIGNED: return "signed";
    case v1::Field::UNSIGNED: return "unsigned";
    case v1::Field::STRING: return "string";
    case v1::Field::BYTES: return "bytes";
    default: return "unspecified";
  }
}

// Columns padded to their widest cell: the first `left_columns` left-aligned (names), the others
// right-aligned (numbers).
class Table {
 public:
  explicit Table(std::vector<std::string> heading, std::size_t left_columns = 1) : left_columns_(left_columns) {
    rows_.push_back(std::move(heading));
  }
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }

  std::string render(const std::string& indent = "") const {
    std::vector<std::size_t> width;
    for (const auto& row : rows_) {
      if (width.size() < row.size()) width.resize(row.size(), 0);
      for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
    }
    std::string out;
    for (const auto& row : rows_) {
      std::string line = indent;
      for (std::size_t c = 0; c < row.size(); ++c) {
        const std::string pad(width[c] - row[c].size(), ' ');
        if (c < left_columns_) {
          line += (c == 0 ? "" : "  ") + row[c] + pad;
        } else {
          line += "  " + pad + row[c];
        }
      }
      while (!line.empty() && line.back() == ' ') line.pop_back();
      out += line + "\n";
    }
    return out;
  }

 private:
  std::size_t left_columns_;
  std::vector<std::vector<std::string>> rows_;
};

// Why the BPF programs could not write records on a CPU (CpuTotals.unwritable), from the errno of the
// latest failure: "no live ring on that CPU: it was offline or just came back; EOPNOTSUPP".
inline std::string unwritable_reason(std::uint32_t error) {
  const char* name = error != 0 ? strerrorname_np(static_cast<int>(error)) : nullptr;
  const std::string errno_name = name != nullptr ? name : error != 0 ? "errno " + std::to_string(error) : "";
  if (error == 0 || error == EOPNOTSUPP || error == ENOENT) {
    return "no live ring on that CPU: it was offline or just came back" +
           (errno_name.empty() ? std::string() : "; " + errno_name);
  }
  return "bpf_perf_event_output failed: " + errno_name;
}

}  // namespace perfstream::cli::render
