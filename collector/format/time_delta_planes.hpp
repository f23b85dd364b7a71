// TimeDeltaPlanes: a batch's time column as byte planes (Batch field 12, time_delta_planes; format version 3).
//
// Contract (docs/FORMAT.md, "Times as byte planes"): a batch of n records whose zigzag time deltas z_0..z_n-1
// all fit in w bytes (w = 1..8, the fewest that hold the largest) stores them as n * w bytes, plane after
// plane: byte k*n + i is byte k (little-endian) of z_i. Record i's time is first_time_ns plus the unzigzagged
// deltas up to i, wrapping at 2^64, exactly as with the varints of field 4 (time_deltas), which a batch
// with planes leaves empty.
//
// Why planes: a time delta between records is a few microseconds of nanoseconds whose low byte is close to
// random and whose high bytes repeat. As varints those bytes interleave, and zstd's literal coder sees one
// mixed alphabet; as planes each byte position is a run of its own (the low plane stays near 8 bits a record,
// the others fall to a few bits or nothing). On a context-switch storm the time column is nearly all of a
// batch's compressed bytes, and planes take it from 1.86 to 1.74 bytes a record (docs/BENCHMARKS.md).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "collector/format/columnar_payloads.hpp"
#include "collector/util/result.hpp"

namespace perfstream {

// The writer's side: one zigzag value per record, kept at full width until the batch is finished, when the
// width is known.
class TimeDeltaPlanesWriter {
 public:
  // Room for `records` more add_unchecked() calls.
  void reserve(std::size_t records) { values_.reserve(records * 8); }
  void add_unchecked(std::uint64_t zigzag) {
    __builtin_memcpy(values_.end(), &zigzag, 8);
    values_.set_end(values_.end() + 8);
    all_bits_ |= zigzag;
  }
  std::size_t count() const { return values_.size() / 8; }
  // Bytes a record: the fewest that hold every value (1 when there are none, or all are 0).
  std::size_t width() const { return width_of(all_bits_); }
  std::size_t encoded_size() const { return count() * width(); }
  // What adding `zigzag` would add to the planes of the values already there: 0 when it fits their width,
  // else the extra bytes of each.
  // A value no larger than every bit seen so far fits their width (the common case, taken without a count).
  std::size_t widening_bytes(std::uint64_t zigzag) const {
    if (zigzag <= all_bits_) return 0;
    return (width_of(all_bits_ | zigzag) - width()) * count();
  }
  // Appends the planes (encoded_size() bytes, no field tag) to `out`.
  void append_planes(std::string& out) const;
  void clear() {
    values_.clear();
    all_bits_ = 0;
  }

 private:
  static std::size_t width_of(std::uint64_t bits) {
    return bits == 0 ? 1 : (71 - static_cast<std::size_t>(__builtin_clzll(bits))) / 8;
  }
  ByteBuffer values_;  // 8 bytes (host order) a record
  std::uint64_t all_bits_ = 0;
};

// The reader's side: the n deltas (unzigzagged, as two's complement) of `planes`, into `deltas` (resized to
// n). Fails, naming the batch, when the batch also has varint deltas (`varint_deltas` of them) or the planes
// are not n * w bytes for a w in 1..8.
Status read_time_delta_planes(const std::string& batch_name, std::span<const unsigned char> planes, std::size_t n,
                              std::size_t varint_deltas, std::vector<std::uint64_t>& deltas);

}  // namespace perfstream
