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
// record_time_field) is stored as its difference from the record's time, which is 0 when the time came from
// it. ColumnarEncoder takes a record only when the plan rebuilds its payload exactly: a payload of an
// unplanned kind, or shorter than the fixed part, is refused (nothing written), and the caller stores it raw,
// as in version 1.
// Payload bytes are read from the caller's span once: during add() (PayloadViews::ReadInAdd), or, when the caller
// keeps its views until flush() (KeptUntilFlush, a ring reader within a pass), a block of records at a time.
//
// Reader: rebuild_payloads() checks everything a crafted batch could get wrong (counts, offsets, widths,
// indices, prefix lengths, the total size against a limit) before it writes, and says what in the message:
// "batch 9: group 0 (kind 2) column at offset 4 has 3 values for 4 records".
//
// Threads: a layout is immutable and may be shared; an encoder belongs to one thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "collector/util/result.hpp"
#include "perfstream.pb.h"

namespace perfstream {

// Writes v as a base-128 varint at p, which has room for kMaxVarintBytes, and returns the end. A plain loop:
// a branch-free form (7-bit groups spread into a word with shifts and masks, continuation bits from the
// length, one 8-byte store) measured 1.5x slower on the bench corpora, whose columns mostly hold one-byte
// values of a steady length that the loop's branch predicts.
inline constexpr std::size_t kMaxVarintBytes = 10;
[[gnu::always_inline]] inline char* put_varint_unchecked(char* p, std::uint64_t v) {
  while (v >= 0x80) {
    *p++ = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<char>(v);
  return p;
}

// A growable byte buffer whose capacity survives clear(): the encoder's columns fill these record by record
// without allocating once they have reached a batch's size. Bytes go in through the checked calls (grow,
// append, put_varint), or, after reserve(n), through the cursor: up to n bytes stored from end() on, then
// set_end() past the last one. The storage is not zero-filled: only the bytes written are touched.
class ByteBuffer {
 public:
  ByteBuffer() = default;
  ByteBuffer(ByteBuffer&& other) noexcept { *this = std::move(other); }
  ByteBuffer& operator=(ByteBuffer&& other) noexcept {
    data_ = std::move(other.data_);
    end_ = std::exchange(other.end_, nullptr);
    capacity_end_ = std::exchange(other.capacity_end_, nullptr);
    return *this;
  }

  char* grow(std::size_t n) {
    reserve(n);
    char* p = end_;
    end_ += n;
    return p;
  }
  void append(const void* p, std::size_t n) {
    if (n != 0) __builtin_memcpy(grow(n), p, n);
  }
  // Returns the bytes written (1-10).
  std::size_t put_varint(std::uint64_t v) {
    reserve(kMaxVarintBytes);
    char* start = end_;
    end_ = put_varint_unchecked(end_, v);
    return static_cast<std::size_t>(end_ - start);
  }
  // Room for n more bytes after end().
  void reserve(std::size_t n) {
    if (static_cast<std::size_t>(capacity_end_ - end_) < n) expand(size() + n);
  }
  char* end() { return end_; }
  void set_end(char* end) { end_ = end; }
  std::span<const char> view() const { return {data_.get(), size()}; }
  std::size_t size() const { return static_cast<std::size_t>(end_ - data_.get()); }
  void clear() { end_ = data_.get(); }
  // Keeps the first n bytes (n <= size()).
  void truncate(std::size_t n) { end_ = data_.get() + n; }

 private:
  void expand(std::size_t need);
  std::unique_ptr<char[]> data_;
  char* end_ = nullptr;
  char* capacity_end_ = nullptr;
};

enum class ColumnEncoding : std::uint8_t {
  Raw = 0,
  Zigzag = 1,
  Delta = 2,
  String = 3,
  Prefix = 4,      // tails: shared with the previous record's, then suffixes (read; no longer written)
  TimeOffset = 5,
  Repeat = 6,      // tails: as Prefix, or the same bytes as an earlier tail of the group
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

// How long the payload views handed to an encoder stay valid.
//   ReadInAdd:      only during the call that takes them (a test's reused buffer).
//   KeptUntilFlush: until the encoder's flush() (or the batch's finish()), which the owner calls before the
//                   views go: a ring reader's views live until its pass ends (RecordConsumer::on_pass_end).
//                   The encoder then reads a group's records a block at a time, column by column: each column
//                   in one tight loop over the block's records, and the tails hashed and their table slots
//                   fetched for the whole block before any is looked up.
enum class PayloadViews : std::uint8_t { ReadInAdd, KeptUntilFlush };

class ColumnarEncoder {
 public:
  explicit ColumnarEncoder(std::shared_ptr<const ColumnarLayout> layout,
                           PayloadViews views = PayloadViews::ReadInAdd);

  // The most add() adds to encoded_size_estimate() for each byte of a payload, before the record is read
  // and after, besides a varint for its tail: the guess for a 1-byte string column before its group's first
  // block is read (the string with its length and its index, the constructor's guess) is the largest; a
  // number's column guesses at most kMaxVarintBytes, a raw byte and a tail byte count once.
  static constexpr std::size_t kMostEstimateBytesPerPayloadByte = 1 + 2 * kMaxVarintBytes;

  // Takes `payload`, a record of time `time_ns`, into its group and sets `group` (0-based, in order of first
  // use in the batch); false, with nothing taken, when no plan rebuilds it exactly. With KeptUntilFlush the
  // payload is read by a later add() or flush(), and must stay valid until then.
  bool add(std::span<const std::byte> payload, std::uint64_t time_ns, std::uint32_t& group);
  // Reads every payload taken and not read yet: after it, the views given to add() may go.
  void flush();
  // Bytes the groups will take, encoded, about, with the bytes of new tails that share a prefix with the
  // previous one (the tail table keeps them whole): a batch closed on it bounds the encoder's memory too.
  // Records not read yet count as many column bytes as their group's last block took (before its first, the
  // most they can), and their tails whole: after flush() the estimate is what one-at-a-time reading gives.
  std::size_t encoded_size_estimate() const { return estimate_; }
  // Appends every group used since reset() as Batch field `field` (repeated ColumnGroup), after flush().
  void append_groups(std::string& out, std::uint32_t field);
  void reset();

 private:
  // Interned strings of one column: an open-addressing table of slots, the strings by index. A string is a
  // char array without its trailing zeros; its key is the array's first 16 bytes as two words (zero past
  // the array), which for arrays of up to 16 bytes (comm) is the whole string, so a hit is a hash, one slot
  // load and two word compares, no allocation. Longer arrays compare the rest too.
  class InternTable {
   public:
    struct Key {
      std::uint64_t w0 = 0, w1 = 0;
    };
    // The index of the string `array[0, text_size)` of the column's `width`-byte arrays, whose key is `key`.
    std::uint32_t intern(Key key, const char* array, std::uint32_t width, std::size_t text_size);
    const std::vector<std::string>& strings() const { return strings_; }
    std::size_t size() const { return strings_.size(); }
    void clear();

   private:
    struct Slot {
      Key key;
      std::uint64_t hash = 0;
      std::uint32_t index = UINT32_MAX;  // UINT32_MAX: empty
    };
    std::uint32_t insert(Slot& slot, Key key, std::uint64_t hash, const char* array, std::size_t text_size);
    void grow();
    std::vector<Slot> slots_;
    std::vector<std::string> strings_;
  };
  // The tails of one group in a batch, in the order the reader's table gets them (Repeat): a tail
  // seen before is written as its index; any other as the bytes it shares with the previous record's tail
  // and the rest, and becomes the next entry. Entries' bytes are kept in one buffer, so the previous tail is
  // always an entry and never copied again.
  class TailTable {
   public:
    // Whether `tail` has the bytes of the tail added last (then nothing else is needed: fixed-size payload
    // areas, a path opened twice in a row).
    bool same_as_last(const char* tail, std::size_t size) const;
    // Writes the value of the tail added last again, `times` times (records whose tails have the same bytes);
    // returns the bytes written.
    std::size_t add_last_again(ByteBuffer& values, std::uint32_t times) const;
    // A tail's hash, its slot fetched into the cache ahead of add().
    std::uint32_t look_ahead(const char* tail, std::size_t size);
    // Writes the value (and suffix) of a tail with this hash. Returns what the record costs the batch: the
    // bytes written, and for a new entry also the bytes the table keeps of it, so that a batch closed on its
    // estimate bounds the table too (32 MiB at most: offsets fit 32 bits).
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
    std::uint32_t last_at_ = 0;  // the tail added last in bytes_
    std::uint32_t last_size_ = 0;
    std::uint32_t last_entry_ = UINT32_MAX;  // and its entry; UINT32_MAX: none yet
  };
  // What add() does for a column, chosen once from its (encoding, width) when the encoder is made, so that
  // the per-record loop neither re-derives it nor takes a variable-size path for the common widths.
  enum class ColumnOp : std::uint8_t {
    Raw1, Raw2, Raw4, Raw8, Raw16, RawOther,
    Zigzag1, Zigzag2, Zigzag4, Zigzag8, ZigzagOther,
    Delta1, Delta2, Delta4, Delta8, DeltaOther,
    TimeOffset8, TimeOffsetOther,
    String16, StringOther,
  };
  static ColumnOp column_op(const ColumnPlan::Column& column);
  // The most bytes one record adds to a column of this op (a varint's room, or the raw width).
  static std::size_t max_value_bytes(ColumnOp op, std::uint32_t width);
  struct ColumnState {
    ColumnPlan::Column plan;
    ColumnOp op = ColumnOp::RawOther;
    std::uint64_t previous = 0;  // Delta
    ByteBuffer values;
    InternTable table;           // String
  };
  // Columns of one op, next to each other in GroupState::columns: add() dispatches once per run and then
  // loops over the run's columns doing the same thing, which the branch predictors follow far better than a
  // dispatch per column.
  struct ColumnRun {
    ColumnOp op;
    std::uint32_t count;
  };
  // A group's records taken and not read yet (at most kRoomRecords: a block), read column by column by
  // encode_pending(), which first reserves in every column the most the block can add and then writes with
  // no capacity check. (The tail goes through TailTable's checked writes: its bytes have no bound.)
  static constexpr std::uint32_t kRoomRecords = 64;
  struct Pending {
    const std::byte* payload;
    std::uint64_t time;
    std::uint32_t tail_size;  // payload bytes after the fixed part
  };
  struct GroupState {
    int plan = -1;
    std::uint32_t fixed_size = 0;
    std::uint32_t records = 0;
    std::array<Pending, kRoomRecords> pending;
    std::uint32_t pending_count = 0;
    std::uint32_t row_guess = 0;  // column bytes a record took in the group's last block, rounded up
    std::vector<ColumnState> columns;       // by op (the runs), then by offset
    std::vector<ColumnRun> runs;
    std::vector<std::uint32_t> plan_order;  // the plan's column i is columns[plan_order[i]] (the written order)
    bool tailed = false;         // a record of the group so far has bytes after the fixed part
    std::uint32_t untailed = 0;  // records before the first such one (their values, all 0, come later)
    ByteBuffer tail_values;      // tail: a varint per record (Repeat)
    ByteBuffer suffixes;         // tail: the bytes after the shared prefixes
    TailTable tails;
  };
  // Reads the group's pending records into its columns, then their tails.
  void encode_pending(GroupState& g);
  void encode_pending_tails(GroupState& g, std::uint32_t n);
  // The group's index in this batch, the plan's group being given one on first use.
  std::uint32_t batch_group(int plan) {
    const int g = batch_group_[static_cast<std::size_t>(plan)];
    return g >= 0 ? static_cast<std::uint32_t>(g) : first_use(plan);
  }
  std::uint32_t first_use(int plan);

  std::shared_ptr<const ColumnarLayout> layout_;
  std::vector<GroupState> groups_;    // one per plan, made on first use and kept (buffers reused)
  std::vector<int> batch_group_;      // plan -> group index in this batch, -1 when unused so far
  std::vector<int> batch_order_;      // group index in this batch -> plan
  std::size_t estimate_ = 0;
  PayloadViews views_ = PayloadViews::ReadInAdd;
};

// Inline: called for every record (BatchEncoder::add_record).
inline bool ColumnarEncoder::add(std::span<const std::byte> payload, std::uint64_t time_ns, std::uint32_t& group) {
  if (!layout_) return false;
  const int plan_index = layout_->plan_for(payload);
  if (plan_index < 0) return false;
  GroupState& g = groups_[static_cast<std::size_t>(plan_index)];
  if (payload.size() < g.fixed_size) return false;
  group = batch_group(plan_index);
  const std::byte* p = payload.data();
  const auto tail_size = static_cast<std::uint32_t>(payload.size() - g.fixed_size);
  g.pending[g.pending_count++] = Pending{p, time_ns, tail_size};
  // Until the block is encoded, the record counts its columns as the group's last block did, and its tail
  // as at most all of its bytes and a varint.
  estimate_ += g.row_guess + tail_size + kMaxVarintBytes;
  ++g.records;
  if (g.pending_count == kRoomRecords || views_ == PayloadViews::ReadInAdd) encode_pending(g);
  return true;
}

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
