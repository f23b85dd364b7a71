// Protocol Buffers wire-format primitives, for encoding messages straight from ring views without building
// message objects: base-128 varints, zigzag for sint fields, tags, and length-delimited fields; and Reader,
// a bounds-checked cursor for decoding them without message objects.
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

inline std::int64_t unzigzag(std::uint64_t v) {
  return static_cast<std::int64_t>(v >> 1) ^ -static_cast<std::int64_t>(v & 1);
}

// A cursor over wire bytes that may be anyone's: every read checks its bounds and, instead of running past
// them, sets `bad` (and returns 0 or an empty span); a caller checks `bad` once after a run of reads.
struct Reader {
  const unsigned char* p;
  const unsigned char* end;
  bool bad = false;

  static Reader of(std::span<const char> s) {
    const auto* b = reinterpret_cast<const unsigned char*>(s.data());
    return Reader{b, b + s.size()};
  }
  bool done() const { return p >= end || bad; }
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p >= end) break;
      const unsigned char b = *p++;
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
    bad = true;
    return 0;
  }
  // The bytes of a length-delimited field.
  std::span<const char> bytes() {
    const std::uint64_t n = varint();
    if (bad || n > static_cast<std::uint64_t>(end - p)) {
      bad = true;
      return {};
    }
    std::span<const char> s(reinterpret_cast<const char*>(p), n);
    p += n;
    return s;
  }
  // The same, as a reader of its own (a sub-message); a bad one when the field runs past the end.
  Reader sub() {
    const std::span<const char> s = bytes();
    if (bad) return Reader{end, end, true};
    return of(s);
  }
  void skip(std::uint32_t wire_type) {
    switch (wire_type) {
      case kVarint: varint(); break;
      case kFixed64: advance(8); break;
      case kLengthDelimited: bytes(); break;
      case kFixed32: advance(4); break;
      default: bad = true; break;  // groups (3, 4) and types 6, 7 have no place in perfstream's messages
    }
  }
  void advance(std::size_t n) {
    if (static_cast<std::size_t>(end - p) < n) {
      bad = true;
    } else {
      p += n;
    }
  }
};

}  // namespace perfstream::wire
