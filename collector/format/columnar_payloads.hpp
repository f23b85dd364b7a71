// Columnar payloads (trace format version 2): a batch's record payloads stored field by field, the way
// Perfetto's CompactSched stores sched_switch (a structure of arrays, deltas, interned strings), and rebuilt
// byte for byte by a reader. proto/perfstream.proto (Batch fields 10-11, ColumnGroup, Column) and
// docs/FORMAT.md ("Columnar batches") are the contract; this file is the writer's and readers' code for it.
//
// Writer: ColumnarLayout plans, from the recording's EventSchemas, how each event kind's payload splits into
// columns: integer fields of 1-8 bytes as zigzag varints (8-byte ones, pids, tids and sequence numbers as
// deltas from the previous record of the group), char arrays as an index into a table of interned strings
// (each array without its trailing zero bytes, so an array with bytes after its NUL is rebuilt exactly too),
// any other bytes (gaps, byte arrays, padding inside the fixed part) as raw bytes, and the bytes after the
// fixed part (the variable-length array and the kernel's zero padding) as a tail that shares its leading bytes
// with the previous record's tail (paths), or, when the group had the same tail before, names that one
// (Repeat: a build opens the same headers again and again). The field that holds each record's time (the header's
// record_time_field) is stored as its difference from the record's time, which is 0 when the time came from it. ColumnarEncoder takes a record only when the plan rebuilds its
// payload exactly: a payload of an unplanned kind, or shorter than the fixed part, is refused (nothing
// written), and the caller stores it raw, as in version 1.
// Payload bytes are read from the caller's span once, during add(); nothing keeps the span.
//
// Reader: rebuild_payloads() checks everything a crafted batch could get wrong (counts, offsets, widths,
// indices, prefix lengths, the total size against a limit) before it writes, and says what in the message:
// "batch 9: group 0 (kind 2) column at offset 4 has 3 values for 4 records".
//
// Threads: a layout is immutable and may be shared; an encoder belongs to one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "collector/util/result.hpp"
#include "perfstream.pb.h"

namespace perfstream {

// A growable byte buffer whose capacity survives clear(): the encoder's columns fill these record by record
// without allocating once they have reached a batch's size.
class ByteBuffer {
 public:
  char* grow(std::size_t n) {
    if (size_ + n > data_.size()) expand(size_ + n);
    char* p = data_.data() + size_;
    size_ += n;
    return p;
  }
  void append(const void* p, std::size_t n) {
    if (n != 0) __builtin_memcpy(grow(n), p, n);
  }
  // Returns the bytes written (1-10).
  std::size_t put_varint(std::uint64_t v) {
    if (size_ + 10 > data_.size()) expand(size_ + 10);
    char* p = data_.data() + size_;
    std::size_t n = 0;
    while (v >= 0x80) {
      p[n++] = static_cast<char>((v & 0x7f) | 0x80);
      v >>= 7;
    }
    p[n++] = static_cast<char>(v);
    size_ += n;
    return n;
  }
  std::span<const char> view() const { return {data_.data(), size_}; }
  std::size_t size() const { return size_; }
  void clear() { size_ = 0; }

 private:
  void expand(std::size_t need);
  std::string data_;
  std::size_t size_ = 0;
};

enum class ColumnEncoding : std::uint8_t {
  Raw = 0,
  Zigzag = 1,
  Delta = 2,
  String = 3,
  Prefix = 4,      // tails: shared with the previous record's, then suffixes (read; no longer written)
  TimeOffset = 5,
  Repeat = 6,      // tails: as Prefix, or the same bytes as an earlier distinct tail of the group
};

// How one event kind's payloads split into columns.
struct ColumnPlan {
  struct Column {
    std::uint32_t offset = 0;
    std::uint32_t width = 0;
    ColumnEncoding encoding = ColumnEncoding::Raw;
  };
  std::uint32_t kind = 0;
  std::uint32_t fixed_size = 0;  // the columns tile [0, fixed_size); the rest of a payload is its tail
  std::vector<Column> columns;
};

class ColumnarLayout {
 public:
  // No plans: every record is stored raw (the batch is a version 1 batch).
  ColumnarLayout() = default;
  // A plan for each schema that has a fixed size, the first schema of each kind (docs/FORMAT.md, "Pick the
  // schema"): the same schema a reader decodes the payload with, though the plan need not be (any plan that
  // rebuilds the bytes is right). `time_field`, when not empty, names the 8-byte integer field that holds each
  // record's time: it is planned as TimeOffset.
  static ColumnarLayout from_schemas(const google::protobuf::RepeatedPtrField<v1::EventSchema>& schemas,
                                     std::string_view time_field = {});
  // The plans `record` uses for a recording with this header: its events, and its record_time_field when the
  // records' times come from that field.
  static ColumnarLayout for_header(const v1::TraceHeader& header);
  static ColumnPlan plan_for_schema(const v1::EventSchema& schema, std::string_view time_field = {});

  // The plan for this payload, or -1.
  int plan_for(std::span<const std::byte> payload) const {
    if (untagged_) return 0;
    if (payload.size() < 4) return -1;
    std::uint32_t kind;
    __builtin_memcpy(&kind, payload.data(), 4);
    if (kind < by_small_kind_.size()) return by_small_kind_[kind];
    for (std::size_t i = 0; i < plans_.size(); ++i) {
      if (plans_[i].kind == kind) return static_cast<int>(i);
    }
    return -1;
  }
  const std::vector<ColumnPlan>& plans() const { return plans_; }
  bool empty() const { return plans_.empty(); }

 private:
  std::vector<ColumnPlan> plans_;
  std::vector<int> by_small_kind_;  // kind -> plan for kinds below 64
  bool untagged_ = false;           // one schema of kind 0: it plans every payload
};

class ColumnarEncoder {
 public:
  explicit ColumnarEncoder(std::shared_ptr<const ColumnarLayout> layout);

  // Appends `payload`, a record of time `time_ns`, to its group and sets `group` (0-based, in order of first
  // use in the batch); false, with nothing written, when no plan rebuilds it exactly.
  bool add(std::span<const std::byte> payload, std::uint64_t time_ns, std::uint32_t& group);
  // Bytes the groups will take, encoded, about.
  std::size_t encoded_size_estimate() const { return estimate_; }
  // Appends every group used since reset() as Batch field `field` (repeated ColumnGroup).
  void append_groups(std::string& out, std::uint32_t field) const;
  void reset();

 private:
  // Interned strings of one column: an open-addressing table of (hash, index), the strings by index. A
  // string is a char array without its trailing zeros, so the hash is of the array's words (zero past the
  // string); a hit costs two word loads and a compare, no allocation.
  class InternTable {
   public:
    std::uint32_t intern(const char* array, std::uint32_t width, std::size_t text_size);
    const std::vector<std::string>& strings() const { return strings_; }
    std::size_t size() const { return strings_.size(); }
    void clear();

   private:
    struct Slot {
      std::uint64_t hash = 0;
      std::uint32_t index = UINT32_MAX;  // UINT32_MAX: empty
    };
    void grow();
    std::vector<Slot> slots_;
    std::vector<std::string> strings_;
  };
  // The distinct tails of one group in a batch, in the order the reader's table gets them (Repeat): a tail
  // seen before is written as its index; any other as the bytes it shares with the previous record's tail
  // and the rest, and becomes the next entry. Entries' bytes are kept in one buffer, so the previous tail is
  // always an entry and never copied again.
  class TailTable {
   public:
    // The tail's hash, its slot fetched into the cache ahead of add().
    std::uint32_t prepare(const char* tail, std::size_t size);
    // Writes this tail's value (and suffix) and returns the bytes written.
    std::size_t add(std::uint32_t hash, const char* tail, std::size_t size, ByteBuffer& values, ByteBuffer& suffixes);
    // `n` empty tails written as 0 before the first tail of the group (each is an entry, as for the reader).
    void add_empty(std::uint32_t n, ByteBuffer& values);
    void clear();

   private:
    // Everything a lookup needs but the bytes, so that a hit costs one slot and one compare of bytes.
    struct Slot {
      std::uint32_t hash = 0;
      std::uint32_t entry = UINT32_MAX;  // UINT32_MAX: empty
      std::uint32_t at = 0;              // the entry's bytes in bytes_
      std::uint32_t size = 0;
    };
    void insert(std::size_t slot, std::uint32_t hash, const char* tail, std::size_t size);
    void grow();
    std::uint32_t entries_ = 0;
    std::vector<Slot> slots_;
    ByteBuffer bytes_;
    std::uint32_t previous_at_ = 0;  // the previous record's tail in bytes_
    std::uint32_t previous_size_ = 0;
  };
  struct ColumnState {
    ColumnPlan::Column plan;
    ByteBuffer values;
    std::uint64_t previous = 0;  // Delta
    InternTable table;           // String
  };
  struct GroupState {
    int plan = -1;
    std::uint32_t records = 0;
    std::vector<ColumnState> columns;
    bool tailed = false;         // a record of the group so far has bytes after the fixed part
    std::uint32_t untailed = 0;  // records before the first such one (their values, all 0, come later)
    ByteBuffer tail_values;      // tail: a varint per record (Repeat)
    ByteBuffer suffixes;         // tail: the bytes after the shared prefixes
    TailTable tails;
  };
  GroupState& group_for_plan(int plan, std::uint32_t& index);

  std::shared_ptr<const ColumnarLayout> layout_;
  std::vector<GroupState> groups_;    // one per plan, made on first use and kept (buffers reused)
  std::vector<int> batch_group_;      // plan -> group index in this batch, -1 when unused so far
  std::vector<int> batch_order_;      // group index in this batch -> plan
  std::size_t estimate_ = 0;
};

// A ColumnGroup as read from a batch: spans into the message bytes.
struct ColumnView {
  std::uint32_t offset = 0;
  std::uint32_t width = 0;
  std::uint32_t encoding = 0;
  std::span<const char> values;
  std::vector<std::span<const char>> strings;
  std::span<const char> suffixes;
};
struct GroupView {
  std::uint32_t kind = 0;
  std::uint64_t record_count = 0;
  std::vector<ColumnView> columns;
  bool has_tail = false;
  ColumnView tail;
};

// Reads one ColumnGroup message from its wire bytes; false when they are not a valid message.
bool parse_group_view(std::span<const char> bytes, GroupView& out);
GroupView group_view(const v1::ColumnGroup& group);

// Rebuilds every record's payload into `out` (replacing it), records back to back in record order, from the
// raw payloads (records whose group is 0) and the groups; `times` are the records' times (TimeOffset columns
// add to them), one per size. `name` starts every error ("batch 9"). Fails, with `out` unspecified, on any
// inconsistency, or when the payloads add up to more than max_bytes.
Status rebuild_payloads(const std::string& name, std::span<const std::uint32_t> sizes,
                        std::span<const std::uint64_t> times,
                        std::span<const std::uint32_t> record_groups, std::span<const char> raw,
                        const std::vector<GroupView>& groups, std::size_t max_bytes, std::string& out);

}  // namespace perfstream
