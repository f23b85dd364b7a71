// Protocol Buffers wire-format primitives, for encoding messages straight from ring views without building
// message objects: base-128 varints, zigzag for sint fields, tags, and length-delimited fields.
// https://protobuf.dev/programming-guides/encoding/ is the contract; the generated parser reads what this
// writes (the batch tests check that).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace perfstream::wire {

enum WireType : std::uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

inline std::size_t varint_size(std::uint64_t v) {
  std::size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

inline void put_varint(std::string& out, std::uint64_t v) {
  char buf[10];
  std::size_t n = 0;
  while (v >= 0x80) {
    buf[n++] = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  buf[n++] = static_cast<char>(v);
  out.append(buf, n);
}

inline std::uint64_t zigzag(std::int64_t v) {
  return (static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63);
}

inline void put_tag(std::string& out, std::uint32_t field, WireType type) { put_varint(out, (field << 3) | type); }

inline void put_uint_field(std::string& out, std::uint32_t field, std::uint64_t v) {
  if (v == 0) return;  // proto3 default: omitted
  put_tag(out, field, kVarint);
  put_varint(out, v);
}

// A length-delimited field whose bytes are already encoded (packed repeated, bytes, sub-message).
inline void put_bytes_field(std::string& out, std::uint32_t field, std::span<const char> bytes) {
  if (bytes.empty()) return;
  put_tag(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out.append(bytes.data(), bytes.size());
}

}  // namespace perfstream::wire
