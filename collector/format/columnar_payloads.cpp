#include "collector/format/columnar_payloads.hpp"

#include <algorithm>
#include <cstring>

#include "collector/format/protobuf_wire.hpp"

namespace perfstream {
namespace {

// Field numbers of perfstream.v1.ColumnGroup and Column.
constexpr std::uint32_t kGroupKind = 1, kGroupRecordCount = 2, kGroupColumns = 3, kGroupTail = 4;
constexpr std::uint32_t kColumnOffset = 1, kColumnWidth = 2, kColumnEncoding = 3, kColumnValues = 4,
                        kColumnStrings = 5, kColumnSuffixes = 6;
// A plan's fixed part, and a group's in a batch a reader accepts: far above any event (perf samples are
// under 64 KiB), low enough that a crafted one cannot make a reader work on nothing for long.
constexpr std::uint32_t kMaxFixedSize = 1u << 16;

// Loads of a constant size: a memcpy of a variable size is a call, and its bytes stored to the stack and
// loaded back as one word miss store-to-load forwarding (most of the encoder's time, in the profile).
template <typename T>
T load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

[[gnu::always_inline]] inline std::int64_t read_signed(const std::byte* p, std::uint32_t width) {
  switch (width) {
    case 1: return load<std::int8_t>(p);
    case 2: return load<std::int16_t>(p);
    case 4: return load<std::int32_t>(p);
    case 8: return load<std::int64_t>(p);
    default: break;
  }
  std::uint64_t v = 0;
  for (std::uint32_t i = 0; i < width; ++i) v |= static_cast<std::uint64_t>(std::to_integer<unsigned char>(p[i])) << (8 * i);
  const unsigned shift = 64 - 8 * width;
  return static_cast<std::int64_t>(v << shift) >> shift;
}

// The bytes of a char array up to its last non-zero byte. comm-sized arrays (16 bytes, the common case) are
// looked at as two words.
std::size_t used_length(const char* s, std::uint32_t width) {
  if (width == 16) {
    std::uint64_t w0, w1;
    std::memcpy(&w0, s, 8);
    std::memcpy(&w1, s + 8, 8);
    if (w1 != 0) return 16 - static_cast<std::size_t>(__builtin_clzll(w1)) / 8;
    if (w0 != 0) return 8 - static_cast<std::size_t>(__builtin_clzll(w0)) / 8;
    return 0;
  }
  std::size_t n = width;
  while (n > 0 && s[n - 1] == 0) --n;
  return n;
}

// The low `width` bytes of v, little-endian.
void store_low(char* dst, std::uint64_t v, std::uint32_t width) {
  switch (width) {
    case 1: dst[0] = static_cast<char>(v); return;
    case 2: { const auto x = static_cast<std::uint16_t>(v); std::memcpy(dst, &x, 2); return; }
    case 4: { const auto x = static_cast<std::uint32_t>(v); std::memcpy(dst, &x, 4); return; }
    case 8: std::memcpy(dst, &v, 8); return;
    default: break;
  }
  for (std::uint32_t i = 0; i < width; ++i) dst[i] = static_cast<char>(v >> (8 * i));
}

// Copies n bytes, sizeof(Word) <= n <= 2 * sizeof(Word), as the first and the last word (overlapping).
template <typename Word>
[[gnu::always_inline]] inline void copy_first_and_last_word(char* dst, const char* src, std::size_t n) {
  Word head, last;
  __builtin_memcpy(&head, src, sizeof(Word));
  __builtin_memcpy(&last, src + n - sizeof(Word), sizeof(Word));
  __builtin_memcpy(dst, &head, sizeof(Word));
  __builtin_memcpy(dst + n - sizeof(Word), &last, sizeof(Word));
}

// Copies n bytes with fixed-size moves (overlapping at the end) instead of a call: raw columns are tens of
// bytes. Reads and writes only [src, src + n) and [dst, dst + n).
[[gnu::always_inline]] inline void copy_bytes(char* dst, const void* source, std::size_t n) {
  const auto* src = static_cast<const char*>(source);
  if (n >= 16) {
    if (n > 256) {
      std::memcpy(dst, src, n);
      return;
    }
    for (std::size_t i = 0; i + 16 < n; i += 16) __builtin_memcpy(dst + i, src + i, 16);
    __builtin_memcpy(dst + n - 16, src + n - 16, 16);
  } else if (n >= 8) {
    copy_first_and_last_word<std::uint64_t>(dst, src, n);
  } else if (n >= 4) {
    copy_first_and_last_word<std::uint32_t>(dst, src, n);
  } else if (n != 0) {
    dst[0] = src[0];
    dst[n / 2] = src[n / 2];
    dst[n - 1] = src[n - 1];
  }
}

template <std::size_t N>
[[gnu::always_inline]] inline char* copy_raw(char* out, const std::byte* at) {
  __builtin_memcpy(out, at, N);
  return out + N;
}

[[gnu::always_inline]] inline char* put_zigzag(char* out, std::int64_t value) {
  return put_varint_unchecked(out, wire::zigzag(value));
}

// Writes the zigzag difference of value from previous (as 64-bit words), and makes value the previous.
[[gnu::always_inline]] inline char* put_delta(char* out, std::uint64_t& previous, std::int64_t value) {
  const auto v = static_cast<std::uint64_t>(value);
  out = put_varint_unchecked(out, wire::zigzag(static_cast<std::int64_t>(v - previous)));
  previous = v;
  return out;
}

using wire::unzigzag;

bool is_sequence_like(const std::string& dotted) {
  const std::string name = dotted.substr(dotted.rfind('.') == std::string::npos ? 0 : dotted.rfind('.') + 1);
  return name.find("pid") != std::string::npos || name.find("tid") != std::string::npos ||
         name.find("seq") != std::string::npos;
}

// Sizes of the wire pieces, for length prefixes written before their contents.
std::size_t uint_field_size(std::uint32_t field, std::uint64_t v) {
  return v == 0 ? 0 : wire::varint_size(field << 3) + wire::varint_size(v);
}
std::size_t bytes_field_size(std::uint32_t field, std::size_t n) {
  return n == 0 ? 0 : wire::varint_size(field << 3) + wire::varint_size(n) + n;
}

using Cursor = wire::Reader;

bool parse_column_view(std::span<const char> bytes, ColumnView& c) {
  Cursor w = Cursor::of(bytes);
  while (!w.done()) {
    const std::uint64_t tag = w.varint();
    const auto field = static_cast<std::uint32_t>(tag >> 3);
    const auto type = static_cast<std::uint32_t>(tag & 7);
    if (w.bad || field == 0) return false;
    if (type == 0 && (field == kColumnOffset || field == kColumnWidth || field == kColumnEncoding)) {
      const std::uint64_t v = w.varint();
      const auto v32 = static_cast<std::uint32_t>(std::min<std::uint64_t>(v, UINT32_MAX));
      if (field == kColumnOffset) c.offset = v32;
      else if (field == kColumnWidth) c.width = v32;
      else c.encoding = v32;
    } else if (type == 2 && field == kColumnValues) {
      c.values = w.bytes();
    } else if (type == 2 && field == kColumnStrings) {
      c.strings.push_back(w.bytes());
    } else if (type == 2 && field == kColumnSuffixes) {
      c.suffixes = w.bytes();
    } else {
      w.skip(type);
    }
  }
  return !w.bad;
}

// The bytes of a Column message's body.
std::size_t column_size(std::uint32_t offset, std::uint32_t width, ColumnEncoding encoding, std::span<const char> values,
                        const std::vector<std::string>* strings, std::span<const char> suffixes) {
  std::size_t size = uint_field_size(kColumnOffset, offset) + uint_field_size(kColumnWidth, width) +
                     uint_field_size(kColumnEncoding, static_cast<std::uint64_t>(encoding)) +
                     bytes_field_size(kColumnValues, values.size()) + bytes_field_size(kColumnSuffixes, suffixes.size());
  if (strings != nullptr) {
    // An empty string is written too: its place in the table is its index.
    for (const std::string& s : *strings) size += wire::varint_size(kColumnStrings << 3) + wire::varint_size(s.size()) + s.size();
  }
  return size;
}

// A Column message as field `field`, its body `size` bytes (column_size()).
void put_column(std::string& out, std::uint32_t field, std::size_t size, std::uint32_t offset, std::uint32_t width,
                ColumnEncoding encoding, std::span<const char> values, const std::vector<std::string>* strings,
                std::span<const char> suffixes) {
  wire::put_tag(out, field, wire::kLengthDelimited);
  wire::put_varint(out, size);
  wire::put_uint_field(out, kColumnOffset, offset);
  wire::put_uint_field(out, kColumnWidth, width);
  wire::put_uint_field(out, kColumnEncoding, static_cast<std::uint64_t>(encoding));
  wire::put_bytes_field(out, kColumnValues, values);
  if (strings != nullptr) {
    for (const std::string& s : *strings) {
      wire::put_tag(out, kColumnStrings, wire::kLengthDelimited);
      wire::put_varint(out, s.size());
      out.append(s);
    }
  }
  wire::put_bytes_field(out, kColumnSuffixes, suffixes);
}

}  // namespace

void ByteBuffer::expand(std::size_t need) {
  const std::size_t size = this->size();
  const std::size_t capacity =
      std::max({need, 2 * static_cast<std::size_t>(capacity_end_ - data_.get()), std::size_t{4096}});
  std::unique_ptr<char[]> bigger(new char[capacity]);  // default-initialized: pages are touched as written
  if (size != 0) std::memcpy(bigger.get(), data_.get(), size);
  data_ = std::move(bigger);
  end_ = data_.get() + size;
  capacity_end_ = data_.get() + capacity;
}

// --- the plan -------------------------------------------------------------------------------------------

ColumnPlan ColumnarLayout::plan_for_schema(const v1::EventSchema& schema, std::string_view time_field) {
  ColumnPlan plan;
  plan.kind = schema.kind();
  plan.fixed_size = schema.fixed_size();
  std::vector<const v1::Field*> fields;
  for (const auto& f : schema.fields()) {
    if (f.size() > 0 && !f.variable() && std::uint64_t{f.offset()} + f.size() <= plan.fixed_size) fields.push_back(&f);
  }
  // By offset, the larger first: a field inside one taken before (a union member) is left to that one.
  std::stable_sort(fields.begin(), fields.end(), [](const v1::Field* a, const v1::Field* b) {
    return a->offset() != b->offset() ? a->offset() < b->offset() : a->size() > b->size();
  });
  std::uint32_t at = 0;
  auto raw_up_to = [&](std::uint32_t end) {
    if (end > at) plan.columns.push_back({at, end - at, ColumnEncoding::Raw});
    at = std::max(at, end);
  };
  for (const v1::Field* f : fields) {
    if (f->offset() < at) continue;
    raw_up_to(f->offset());
    ColumnEncoding encoding = ColumnEncoding::Raw;
    if ((f->type() == v1::Field::SIGNED || f->type() == v1::Field::UNSIGNED) && f->size() <= 8) {
      encoding = f->size() == 8 || is_sequence_like(f->name()) ? ColumnEncoding::Delta : ColumnEncoding::Zigzag;
      if (f->size() == 8 && !time_field.empty() && f->name() == time_field) encoding = ColumnEncoding::TimeOffset;
    } else if (f->type() == v1::Field::STRING) {
      encoding = ColumnEncoding::String;
    }
    plan.columns.push_back({f->offset(), f->size(), encoding});
    at = f->offset() + f->size();
  }
  raw_up_to(plan.fixed_size);
  return plan;
}

ColumnarLayout ColumnarLayout::for_header(const v1::TraceHeader& header) {
  return from_schemas(header.events(),
                      header.record_time() == v1::RECORD_TIME_EVENT_FIELD ? header.record_time_field() : std::string());
}

ColumnarLayout ColumnarLayout::from_schemas(const google::protobuf::RepeatedPtrField<v1::EventSchema>& schemas,
                                            std::string_view time_field) {
  ColumnarLayout layout;
  const bool untagged = schemas.size() == 1 && schemas[0].kind() == 0;
  for (const auto& schema : schemas) {
    const bool taken = std::any_of(layout.plans_.begin(), layout.plans_.end(),
                                   [&](const ColumnPlan& p) { return p.kind == schema.kind(); });
    if (taken) continue;  // a reader never decodes with a later schema of the same kind: plan with the first
    if (schema.fixed_size() == 0 || schema.fixed_size() > kMaxFixedSize || (!untagged && schema.fixed_size() < 4)) {
      continue;
    }
    layout.plans_.push_back(plan_for_schema(schema, time_field));
  }
  layout.untagged_ = untagged && !layout.plans_.empty();
  layout.by_small_kind_.assign(64, -1);
  for (std::size_t i = layout.plans_.size(); i-- > 0;) {
    if (layout.plans_[i].kind < 64) layout.by_small_kind_[layout.plans_[i].kind] = static_cast<int>(i);
  }
  return layout;
}

// --- the encoder ----------------------------------------------------------------------------------------

ColumnarEncoder::ColumnOp ColumnarEncoder::column_op(const ColumnPlan::Column& column) {
  const std::uint32_t w = column.width;
  switch (column.encoding) {
    case ColumnEncoding::Raw:
      return w == 1 ? ColumnOp::Raw1 : w == 2 ? ColumnOp::Raw2 : w == 4 ? ColumnOp::Raw4 : w == 8 ? ColumnOp::Raw8
             : w == 16 ? ColumnOp::Raw16 : ColumnOp::RawOther;
    case ColumnEncoding::Zigzag:
      return w == 1 ? ColumnOp::Zigzag1 : w == 2 ? ColumnOp::Zigzag2 : w == 4 ? ColumnOp::Zigzag4
             : w == 8 ? ColumnOp::Zigzag8 : ColumnOp::ZigzagOther;
    case ColumnEncoding::Delta:
      return w == 1 ? ColumnOp::Delta1 : w == 2 ? ColumnOp::Delta2 : w == 4 ? ColumnOp::Delta4
             : w == 8 ? ColumnOp::Delta8 : ColumnOp::DeltaOther;
    case ColumnEncoding::TimeOffset: return w == 8 ? ColumnOp::TimeOffset8 : ColumnOp::TimeOffsetOther;
    case ColumnEncoding::String: return w == 16 ? ColumnOp::String16 : ColumnOp::StringOther;
    case ColumnEncoding::Prefix:
    case ColumnEncoding::Repeat: break;  // tails' encodings: never planned for a column
  }
  return ColumnOp::RawOther;
}

std::size_t ColumnarEncoder::max_value_bytes(ColumnOp op, std::uint32_t width) {
  switch (op) {
    case ColumnOp::Raw1: case ColumnOp::Raw2: case ColumnOp::Raw4: case ColumnOp::Raw8: case ColumnOp::Raw16:
    case ColumnOp::RawOther:
      return width;
    default: return kMaxVarintBytes;
  }
}

ColumnarEncoder::ColumnarEncoder(std::shared_ptr<const ColumnarLayout> layout, PayloadViews views)
    : layout_(std::move(layout)), views_(views) {
  const std::size_t plans = layout_ ? layout_->plans().size() : 0;
  groups_.resize(plans);
  batch_group_.assign(plans, -1);
  for (std::size_t i = 0; i < plans; ++i) {
    const ColumnPlan& plan = layout_->plans()[i];
    groups_[i].plan = static_cast<int>(i);
    GroupState& g = groups_[i];
    g.fixed_size = plan.fixed_size;
    for (std::uint32_t k = 0; k < plan.columns.size(); ++k) g.plan_order.push_back(k);
    std::stable_sort(g.plan_order.begin(), g.plan_order.end(), [&](std::uint32_t a, std::uint32_t b) {
      return column_op(plan.columns[a]) < column_op(plan.columns[b]);
    });
    // plan_order is now the order in `columns`; turned around below into the plan's order.
    std::vector<std::uint32_t> at(plan.columns.size());
    for (std::uint32_t k = 0; k < g.plan_order.size(); ++k) {
      const ColumnPlan::Column& c = plan.columns[g.plan_order[k]];
      ColumnState& state = g.columns.emplace_back();
      state.plan = c;
      state.op = column_op(c);
      if (g.runs.empty() || g.runs.back().op != state.op) g.runs.push_back({state.op, 0});
      ++g.runs.back().count;
      at[g.plan_order[k]] = k;
    }
    g.plan_order = std::move(at);
    // Until its first block is read, a record is guessed to take the most its columns can (a new string
    // whole, with its length and index): kMostEstimateBytesPerPayloadByte bounds it.
    std::size_t most = 0;
    for (const ColumnState& c : g.columns) {
      most += c.plan.encoding == ColumnEncoding::String ? c.plan.width + 2 * kMaxVarintBytes
                                                        : max_value_bytes(c.op, c.plan.width);
    }
    g.row_guess = static_cast<std::uint32_t>(most);
  }
}

std::uint32_t ColumnarEncoder::first_use(int plan) {
  batch_group_[static_cast<std::size_t>(plan)] = static_cast<int>(batch_order_.size());
  batch_order_.push_back(plan);
  return static_cast<std::uint32_t>(batch_order_.size() - 1);
}

namespace {
// Runs write(out, at, time, previous) for each of `n` records on one column, `at` being the column's bytes
// in the record's payload; previous (Delta) lives in a register for the loop.
template <typename Write>
[[gnu::always_inline]] inline char* column_loop(char* out, std::uint32_t offset, const auto* rows, std::uint32_t n,
                                                std::uint64_t& previous_io, Write write) {
  std::uint64_t previous = previous_io;
  for (std::uint32_t r = 0; r < n; ++r) out = write(out, rows[r].payload + offset, rows[r].time, previous);
  previous_io = previous;
  return out;
}

// Whether a[0, n) and b[0, n) hold the same bytes: words compared, the last one overlapping, no call.
[[gnu::always_inline]] inline bool same_bytes(const char* a, const char* b, std::size_t n) {
  const auto word = [](const char* p) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    return w;
  };
  if (n >= 8) {
    std::uint64_t differ = 0;
    for (std::size_t i = 0; i + 8 <= n; i += 8) differ |= word(a + i) ^ word(b + i);
    return (differ | (word(a + n - 8) ^ word(b + n - 8))) == 0;
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

// column_loop over column `c`'s values, adding the bytes it writes to `written`.
template <typename Column, typename Row, typename Write>
[[gnu::always_inline]] inline void each_record_of(Column& c, const Row* rows, std::uint32_t n, std::size_t& written,
                                                  Write write) {
  char* const start = c.values.end();
  char* const end = column_loop(start, c.plan.offset, rows, n, c.previous, write);
  c.values.set_end(end);
  written += static_cast<std::size_t>(end - start);
}
}  // namespace

void ColumnarEncoder::encode_pending(GroupState& g) {
  const std::uint32_t n = g.pending_count;
  if (n == 0) return;
  g.pending_count = 0;
  for (ColumnState& c : g.columns) c.values.reserve(n * max_value_bytes(c.op, c.plan.width));
  const Pending* rows = g.pending.data();
  std::size_t written = 0;
  ColumnState* c = g.columns.data();
  for (const ColumnRun& run : g.runs) {
    ColumnState* const run_end = c + run.count;
    // Stores, for each column of the run and each pending record, what write() writes at the column's end:
    // at most max_value_bytes(op) bytes a record, reserved above. each_with() takes the writer from
    // make_write(column), for ops whose writer needs the column's width or table.
    auto each_with = [&](auto&& make_write) {
      for (; c != run_end; ++c) each_record_of(*c, rows, n, written, make_write(*c));
    };
    auto each = [&](auto&& write) { each_with([&](ColumnState&) { return write; }); };
    // A char array as its index in the column's table; a new string adds its bytes, its length and its index.
    auto put_interned = [&](InternTable& table, char* out, InternTable::Key key, const char* array,
                            std::uint32_t width, std::size_t length) {
      const std::size_t known = table.size();
      out = put_varint_unchecked(out, table.intern(key, array, width, length));
      if (table.size() != known) written += length + 2;
      return out;
    };
    using B = const std::byte*;
    using U = std::uint64_t;
    using C = ColumnState;
    switch (run.op) {
      case ColumnOp::Raw1: each([](char* out, B at, U, U&) { return copy_raw<1>(out, at); }); break;
      case ColumnOp::Raw2: each([](char* out, B at, U, U&) { return copy_raw<2>(out, at); }); break;
      case ColumnOp::Raw4: each([](char* out, B at, U, U&) { return copy_raw<4>(out, at); }); break;
      case ColumnOp::Raw8: each([](char* out, B at, U, U&) { return copy_raw<8>(out, at); }); break;
      case ColumnOp::Raw16: each([](char* out, B at, U, U&) { return copy_raw<16>(out, at); }); break;
      case ColumnOp::RawOther:
        each_with([](C& col) {
          return [width = col.plan.width](char* out, B at, U, U&) {
            copy_bytes(out, at, width);
            return out + width;
          };
        });
        break;
      case ColumnOp::Zigzag1: each([](char* out, B at, U, U&) { return put_zigzag(out, load<std::int8_t>(at)); }); break;
      case ColumnOp::Zigzag2: each([](char* out, B at, U, U&) { return put_zigzag(out, load<std::int16_t>(at)); }); break;
      case ColumnOp::Zigzag4: each([](char* out, B at, U, U&) { return put_zigzag(out, load<std::int32_t>(at)); }); break;
      case ColumnOp::Zigzag8: each([](char* out, B at, U, U&) { return put_zigzag(out, load<std::int64_t>(at)); }); break;
      case ColumnOp::ZigzagOther:
        each_with([](C& col) {
          return [width = col.plan.width](char* out, B at, U, U&) { return put_zigzag(out, read_signed(at, width)); };
        });
        break;
      case ColumnOp::Delta1: each([](char* out, B at, U, U& prev) { return put_delta(out, prev, load<std::int8_t>(at)); }); break;
      case ColumnOp::Delta2: each([](char* out, B at, U, U& prev) { return put_delta(out, prev, load<std::int16_t>(at)); }); break;
      case ColumnOp::Delta4: each([](char* out, B at, U, U& prev) { return put_delta(out, prev, load<std::int32_t>(at)); }); break;
      case ColumnOp::Delta8: each([](char* out, B at, U, U& prev) { return put_delta(out, prev, load<std::int64_t>(at)); }); break;
      case ColumnOp::DeltaOther:
        each_with([](C& col) {
          return [width = col.plan.width](char* out, B at, U, U& prev) { return put_delta(out, prev, read_signed(at, width)); };
        });
        break;
      case ColumnOp::TimeOffset8:
        each([](char* out, B at, U time, U&) { return put_zigzag(out, static_cast<std::int64_t>(load<std::uint64_t>(at) - time)); });
        break;
      case ColumnOp::TimeOffsetOther:
        each_with([](C& col) {
          return [width = col.plan.width](char* out, B at, U time, U&) {
            return put_zigzag(out, static_cast<std::int64_t>(static_cast<std::uint64_t>(read_signed(at, width)) - time));
          };
        });
        break;
      case ColumnOp::String16:
        each_with([&](C& col) {
          return [&, &table = col.table](char* out, B at, U, U&) {
            // The array without its trailing zero bytes: the text up to its NUL when the rest is zero, else the
            // text with what follows it (a task's comm after a rename keeps its old bytes), so every array is
            // rebuilt exactly and none sends its record raw.
            const InternTable::Key key{load<std::uint64_t>(at), load<std::uint64_t>(at + 8)};
            const std::size_t length = key.w1 != 0   ? 16 - static_cast<std::size_t>(__builtin_clzll(key.w1)) / 8
                                       : key.w0 != 0 ? 8 - static_cast<std::size_t>(__builtin_clzll(key.w0)) / 8
                                                     : 0;
            return put_interned(table, out, key, reinterpret_cast<const char*>(at), 16, length);
          };
        });
        break;
      case ColumnOp::StringOther:
        each_with([&](C& col) {
          return [&, &table = col.table, width = col.plan.width](char* out, B at, U, U&) {
            const auto* s = reinterpret_cast<const char*>(at);
            InternTable::Key key;
            std::memcpy(&key.w0, s, std::min<std::size_t>(width, 8));
            if (width > 8) std::memcpy(&key.w1, s + 8, std::min<std::size_t>(width - 8, 8));
            return put_interned(table, out, key, s, width, used_length(s, width));
          };
        });
        break;
    }
  }
  // The estimate counted row_guess bytes for each of these records; it now counts what they took, and the
  // next ones are guessed from these.
  estimate_ += written;
  estimate_ -= std::size_t{n} * g.row_guess;
  g.row_guess = static_cast<std::uint32_t>((written + n - 1) / n);
  encode_pending_tails(g, n);
}

void ColumnarEncoder::encode_pending_tails(GroupState& g, std::uint32_t n) {
  // The tails: what each shares with the previous record's, then the rest. Until a record of the group has
  // one, empty tails are only counted: a group whose records are all of the fixed size is written without a
  // tail. Each tail is looked at (hashed, its slot fetched) before any is added, so the slots' loads overlap.
  const Pending* rows = g.pending.data();
  for (std::uint32_t k = 0; k < n; ++k) estimate_ -= rows[k].tail_size + kMaxVarintBytes;
  std::uint32_t r = 0;
  if (!g.tailed) {
    while (r < n && rows[r].tail_size == 0) ++r;
    g.untailed += r;
    if (r == n) return;
    g.tailed = true;
    g.tails.add_empty(g.untailed, g.tail_values);
  }
  auto tail_of = [&](std::uint32_t k) { return reinterpret_cast<const char*>(rows[k].payload + g.fixed_size); };
  // A tail with the bytes of the record before's (the table's last for the block's first) is written as that
  // one's value again; for any other, hash and slot now, lookup after.
  static_assert(kRoomRecords <= 64, "one bit per record of a block");
  std::uint64_t same = 0;  // bit k: record k's tail is the record before's
  std::array<std::uint32_t, kRoomRecords> hashes;
  for (std::uint32_t k = r; k < n; ++k) {
    const std::uint32_t size = rows[k].tail_size;
    if (k == r ? g.tails.same_as_last(tail_of(k), size)
               : size == rows[k - 1].tail_size && same_bytes(tail_of(k - 1), tail_of(k), size)) {
      same |= std::uint64_t{1} << k;
    } else {
      hashes[k] = g.tails.look_ahead(tail_of(k), size);
    }
  }
  while (r < n) {
    if ((same >> r & 1) != 0) {  // a run of tails like the one before: one value, written once a record
      // Its end: the lowest set bit of `rest` (none when all 64 records of a full block are in the run).
      const std::uint64_t rest = ~(same >> r);
      const std::uint32_t run =
          rest == 0 ? n - r : std::min<std::uint32_t>(n - r, static_cast<std::uint32_t>(__builtin_ctzll(rest)));
      estimate_ += g.tails.add_last_again(g.tail_values, run);
      r += run;
    } else {
      estimate_ += g.tails.add(hashes[r], tail_of(r), rows[r].tail_size, g.tail_values, g.suffixes);
      ++r;
    }
  }
}

void ColumnarEncoder::flush() {
  for (const int plan_index : batch_order_) encode_pending(groups_[static_cast<std::size_t>(plan_index)]);
}

void ColumnarEncoder::append_groups(std::string& out, std::uint32_t field) {
  flush();
  // Each group straight into `out`: its size first, from its columns' sizes, so that no group is built
  // apart and copied (a batch's groups are most of its bytes).
  std::vector<std::size_t> sizes;  // the group's columns' body sizes, in the plan's order
  for (const int plan_index : batch_order_) {
    const GroupState& g = groups_[static_cast<std::size_t>(plan_index)];
    const ColumnPlan& plan = layout_->plans()[static_cast<std::size_t>(plan_index)];
    auto strings_of = [](const ColumnState& c) {
      return c.plan.encoding == ColumnEncoding::String ? &c.table.strings() : nullptr;
    };
    sizes.clear();
    for (const std::uint32_t k : g.plan_order) {
      const ColumnState& c = g.columns[k];
      sizes.push_back(column_size(c.plan.offset, c.plan.width, c.plan.encoding, c.values.view(), strings_of(c), {}));
    }
    // The tail column only when a record of the group had a tail.
    const std::size_t tail_size =
        g.tailed ? column_size(plan.fixed_size, 0, ColumnEncoding::Repeat, g.tail_values.view(), nullptr, g.suffixes.view())
                 : 0;
    std::size_t group_size = uint_field_size(kGroupKind, plan.kind) + uint_field_size(kGroupRecordCount, g.records);
    for (const std::size_t size : sizes) group_size += wire::varint_size(kGroupColumns << 3) + wire::varint_size(size) + size;
    if (g.tailed) group_size += wire::varint_size(kGroupTail << 3) + wire::varint_size(tail_size) + tail_size;
    wire::put_tag(out, field, wire::kLengthDelimited);
    wire::put_varint(out, group_size);
    wire::put_uint_field(out, kGroupKind, plan.kind);
    wire::put_uint_field(out, kGroupRecordCount, g.records);
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      const ColumnState& c = g.columns[g.plan_order[i]];
      put_column(out, kGroupColumns, sizes[i], c.plan.offset, c.plan.width, c.plan.encoding, c.values.view(),
                 strings_of(c), {});
    }
    if (g.tailed) {
      put_column(out, kGroupTail, tail_size, plan.fixed_size, 0, ColumnEncoding::Repeat, g.tail_values.view(), nullptr,
                 g.suffixes.view());
    }
  }
}

void ColumnarEncoder::reset() {
  for (const int plan_index : batch_order_) {
    GroupState& g = groups_[static_cast<std::size_t>(plan_index)];
    g.records = 0;
    g.pending_count = 0;
    for (ColumnState& c : g.columns) {
      c.values.clear();
      c.previous = 0;
      c.table.clear();
    }
    g.tail_values.clear();
    g.suffixes.clear();
    g.tails.clear();
    g.tailed = false;
    g.untailed = 0;
    batch_group_[static_cast<std::size_t>(plan_index)] = -1;
  }
  batch_order_.clear();
  estimate_ = 0;
}

std::uint32_t ColumnarEncoder::InternTable::intern(Key key, const char* array, std::uint32_t width,
                                                  std::size_t text_size) {
  std::uint64_t h = (key.w0 * 0x9E3779B97F4A7C15ull) ^ (key.w1 + 0x632BE59BD9B4E019ull + (key.w0 >> 29));
  if (text_size > 16) h ^= std::hash<std::string_view>{}(std::string_view(array + 16, text_size - 16));
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 31;
  if (slots_.empty()) slots_.resize(64);
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t i = h & mask;; i = (i + 1) & mask) {
    Slot& slot = slots_[i];
    if (slot.index == UINT32_MAX) return insert(slot, key, h, array, text_size);
    if (slot.key.w0 == key.w0 && slot.key.w1 == key.w1) {
      if (width <= 16) return slot.index;  // the key is the whole array
      const std::string& s = strings_[slot.index];
      if (slot.hash == h && s.size() == text_size && std::memcmp(s.data(), array, text_size) == 0) return slot.index;
    }
  }
}

namespace {
// A hash of a tail's bytes, eight at a time; never reads past them.
std::uint64_t hash_bytes(const char* p, std::size_t n) {
  std::uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
  }
  // The last 1-7 bytes through loads of a constant size (overlapping), never a variable-size memcpy: that is a
  // call, and its bytes stored and loaded back as one word miss store-to-load forwarding.
  const std::size_t r = n - i;
  if (r >= 4) {
    std::uint32_t lo, hi;
    std::memcpy(&lo, p + i, 4);
    std::memcpy(&hi, p + n - 4, 4);
    h = (h ^ (lo | (std::uint64_t{hi} << 32))) * 0x94D049BB133111EBull;
  } else if (r > 0) {
    const auto b = [&](std::size_t k) { return std::uint64_t{static_cast<unsigned char>(p[k])}; };
    h = (h ^ (b(i) | b(i + r / 2) << 8 | b(n - 1) << 16)) * 0x94D049BB133111EBull;
  }
  return h ^ (h >> 31);
}

// Doubles an open-addressing table (linear probing from the low bits of each slot's `hash`), placing every
// used slot again.
template <typename Slot, typename Used>
void double_table(std::vector<Slot>& slots, Used used) {
  std::vector<Slot> old(slots.size() * 2);
  old.swap(slots);
  const std::size_t mask = slots.size() - 1;
  for (const Slot& slot : old) {
    if (!used(slot)) continue;
    std::size_t i = slot.hash & mask;
    while (used(slots[i])) i = (i + 1) & mask;
    slots[i] = slot;
  }
}

std::size_t common_prefix(const char* a, const char* b, std::size_t limit) {
  std::size_t n = 0;
  // Eight bytes at a time while they match (paths share long prefixes), then byte by byte.
  while (n + 8 <= limit) {
    std::uint64_t x, y;
    std::memcpy(&x, a + n, 8);
    std::memcpy(&y, b + n, 8);
    if (x != y) return n + static_cast<std::size_t>(__builtin_ctzll(x ^ y)) / 8;
    n += 8;
  }
  while (n < limit && a[n] == b[n]) ++n;
  return n;
}

}  // namespace

std::size_t ColumnarEncoder::TailTable::add_last_again(ByteBuffer& values, std::uint32_t times) const {
  char value[kMaxVarintBytes];
  const auto size = static_cast<std::size_t>(put_varint_unchecked(value, 2 * std::uint64_t{last_entry_} + 1) - value);
  if (size == 1) {  // entries below 64
    std::memset(values.grow(times), value[0], times);
    return times;
  }
  // Whole kMaxVarintBytes copies (no call), each overwritten from `size` on by the next.
  values.reserve(size * times + kMaxVarintBytes);
  char* out = values.end();
  for (std::uint32_t k = 0; k < times; ++k, out += size) std::memcpy(out, value, kMaxVarintBytes);
  values.set_end(out);
  return size * times;
}

bool ColumnarEncoder::TailTable::same_as_last(const char* tail, std::size_t size) const {
  return last_entry_ != UINT32_MAX && size == last_size_ && same_bytes(bytes_.view().data() + last_at_, tail, size);
}

std::uint32_t ColumnarEncoder::TailTable::look_ahead(const char* tail, std::size_t size) {
  if (slots_.empty()) slots_.resize(256);
  const auto hash = static_cast<std::uint32_t>(hash_bytes(tail, size));
  __builtin_prefetch(&slots_[hash & (slots_.size() - 1)]);
  return hash;
}

std::size_t ColumnarEncoder::TailTable::add(std::uint32_t hash, const char* tail, std::size_t size, ByteBuffer& values,
                                            ByteBuffer& suffixes) {
  const std::size_t mask = slots_.size() - 1;
  std::size_t i = hash & mask;
  for (;; i = (i + 1) & mask) {
    const Slot& slot = slots_[i];
    if (slot.entry == UINT32_MAX) break;
    if (slot.hash == hash && slot.size == size && std::memcmp(bytes_.view().data() + slot.at, tail, size) == 0) {
      last_at_ = slot.at;
      last_size_ = slot.size;
      last_entry_ = slot.entry;
      return values.put_varint(2 * std::uint64_t{slot.entry} + 1);
    }
  }
  const std::size_t shared =
      common_prefix(bytes_.view().data() + last_at_, tail, std::min<std::size_t>(last_size_, size));
  const std::size_t n = values.put_varint(2 * std::uint64_t{shared});
  suffixes.append(tail + shared, size - shared);
  insert(i, hash, tail, size);
  return n + size;  // the suffix written, and the shared bytes the new entry keeps
}

void ColumnarEncoder::TailTable::add_empty(std::uint32_t n, ByteBuffer& values) {
  for (std::uint32_t k = 0; k < n; ++k) values.put_varint(0);
  entries_ += n;
  last_size_ = 0;
  if (n != 0) last_entry_ = entries_ - 1;
}

void ColumnarEncoder::TailTable::insert(std::size_t slot, std::uint32_t hash, const char* tail, std::size_t size) {
  last_at_ = static_cast<std::uint32_t>(bytes_.size());
  last_size_ = static_cast<std::uint32_t>(size);
  last_entry_ = entries_;
  bytes_.append(tail, size);
  slots_[slot] = Slot{hash, entries_++, last_at_, last_size_};
  if (std::size_t{entries_} * 2 > slots_.size()) grow();
}

void ColumnarEncoder::TailTable::grow() {
  double_table(slots_, [](const Slot& slot) { return slot.entry != UINT32_MAX; });
}

void ColumnarEncoder::TailTable::clear() {
  if (entries_ != 0) std::fill(slots_.begin(), slots_.end(), Slot{});
  entries_ = 0;
  bytes_.clear();
  last_at_ = last_size_ = 0;
  last_entry_ = UINT32_MAX;
}

std::uint32_t ColumnarEncoder::InternTable::insert(Slot& slot, Key key, std::uint64_t hash, const char* array,
                                                   std::size_t text_size) {
  const auto index = static_cast<std::uint32_t>(strings_.size());
  strings_.emplace_back(array, text_size);
  slot = Slot{key, hash, index};
  if (strings_.size() * 2 > slots_.size()) grow();
  return index;
}

void ColumnarEncoder::InternTable::grow() {
  double_table(slots_, [](const Slot& slot) { return slot.index != UINT32_MAX; });
}

void ColumnarEncoder::InternTable::clear() {
  if (!strings_.empty()) std::fill(slots_.begin(), slots_.end(), Slot{});
  strings_.clear();
}

// --- the reader -----------------------------------------------------------------------------------------

bool parse_group_view(std::span<const char> bytes, GroupView& g) {
  Cursor w = Cursor::of(bytes);
  while (!w.done()) {
    const std::uint64_t tag = w.varint();
    const auto field = static_cast<std::uint32_t>(tag >> 3);
    const auto type = static_cast<std::uint32_t>(tag & 7);
    if (w.bad || field == 0) return false;
    if (type == 0 && field == kGroupKind) {
      g.kind = static_cast<std::uint32_t>(w.varint());
    } else if (type == 0 && field == kGroupRecordCount) {
      g.record_count = w.varint();
    } else if (type == 2 && (field == kGroupColumns || field == kGroupTail)) {
      ColumnView c;
      const std::span<const char> sub = w.bytes();
      if (w.bad || !parse_column_view(sub, c)) return false;
      if (field == kGroupColumns) {
        g.columns.push_back(std::move(c));
      } else {
        g.tail = std::move(c);
        g.has_tail = true;
      }
    } else {
      w.skip(type);
    }
  }
  return !w.bad;
}

GroupView group_view(const v1::ColumnGroup& group) {
  auto column = [](const v1::Column& c) {
    ColumnView v;
    v.offset = c.offset();
    v.width = c.width();
    v.encoding = static_cast<std::uint32_t>(c.encoding());
    v.values = c.values();
    for (const std::string& s : c.strings()) v.strings.emplace_back(s);
    v.suffixes = c.suffixes();
    return v;
  };
  GroupView g;
  g.kind = group.kind();
  g.record_count = group.record_count();
  for (const auto& c : group.columns()) g.columns.push_back(column(c));
  g.has_tail = group.has_tail();
  if (g.has_tail) g.tail = column(group.tail());
  return g;
}

namespace {

// Checks a group's columns against the format; its fixed size in *fixed.
Status check_group(const std::string& name, const GroupView& g, std::uint32_t* fixed) {
  std::uint64_t at = 0;
  for (const ColumnView& c : g.columns) {
    const std::string col = name + " column at offset " + std::to_string(c.offset);
    if (c.offset != at) return Error(col + ": the previous column ends at " + std::to_string(at));
    if (c.width == 0) return Error(col + ": width 0");
    if (c.encoding > static_cast<std::uint32_t>(ColumnEncoding::TimeOffset) ||
        c.encoding == static_cast<std::uint32_t>(ColumnEncoding::Prefix)) {
      return Error(col + ": encoding " + std::to_string(c.encoding) + " is not one of a fixed column's (0-3, 5)");
    }
    if ((c.encoding == 1 || c.encoding == 2 || c.encoding == 5) && c.width > 8) {
      return Error(col + ": an integer column of width " + std::to_string(c.width) + " (at most 8)");
    }
    at += c.width;
    if (at > kMaxFixedSize) return Error(name + ": columns cover more than " + std::to_string(kMaxFixedSize) + " bytes");
  }
  if (g.has_tail && g.tail.encoding != static_cast<std::uint32_t>(ColumnEncoding::Prefix) &&
      g.tail.encoding != static_cast<std::uint32_t>(ColumnEncoding::Repeat)) {
    return Error(name + " tail: encoding " + std::to_string(g.tail.encoding) + ", not PREFIX (4) or REPEAT (6)");
  }
  *fixed = static_cast<std::uint32_t>(at);
  return {};
}

std::string count_error(const std::string& what, std::size_t values, std::size_t records) {
  return what + " has " + std::to_string(values) + " values for " + std::to_string(records) + " records";
}

// Writes one column's value into each member's payload.
Status rebuild_column(const std::string& col, const ColumnView& c, std::span<const std::uint32_t> members,
                      std::span<const std::uint64_t> offsets, std::span<const std::uint64_t> times, char* out) {
  Cursor values = Cursor::of(c.values);
  std::uint64_t previous = 0;
  std::size_t done = 0;
  for (const std::uint32_t i : members) {
    char* dst = out + offsets[i] + c.offset;
    if (c.encoding == 0) {
      if (static_cast<std::size_t>(values.end - values.p) < c.width) break;
      std::memcpy(dst, values.p, c.width);
      values.p += c.width;
    } else {
      if (values.done()) break;
      const std::uint64_t v = values.varint();
      if (values.bad) return Error(col + ": a value is not a valid varint");
      if (c.encoding == 3) {
        if (v >= c.strings.size()) {
          return Error(col + ": string index " + std::to_string(v) + " but " + std::to_string(c.strings.size()) +
                       " strings");
        }
        const std::span<const char> s = c.strings[v];
        if (s.size() > c.width) {
          return Error(col + ": a string of " + std::to_string(s.size()) + " bytes in a column of width " +
                       std::to_string(c.width));
        }
        std::memcpy(dst, s.data(), s.size());  // the bytes after it are zero already
      } else {
        std::uint64_t x = static_cast<std::uint64_t>(unzigzag(v));
        if (c.encoding == 2) x = previous += x;
        if (c.encoding == 5) x += times[i];
        store_low(dst, x, c.width);
      }
    }
    ++done;
  }
  if (done < members.size() || !values.done()) {
    std::size_t count = done;
    if (done == members.size()) {  // more values than records: count them for the message
      if (c.encoding == 0) count += static_cast<std::size_t>(values.end - values.p + c.width - 1) / c.width;
      else while (!values.done()) { values.varint(); ++count; }
    }
    return Error(count_error(col, count, members.size()));
  }
  return {};
}

Status rebuild_tail(const std::string& name, const GroupView& g, std::uint32_t fixed,
                    std::span<const std::uint32_t> members, std::span<const std::uint32_t> sizes,
                    std::span<const std::uint64_t> offsets, char* out) {
  const std::string col = name + " tail";
  const bool repeats = g.tail.encoding == static_cast<std::uint32_t>(ColumnEncoding::Repeat);
  Cursor shared = Cursor::of(g.tail.values);
  std::size_t suffix_at = 0;
  const char* previous = nullptr;
  std::size_t previous_size = 0;
  std::size_t done = 0;
  std::vector<std::pair<const char*, std::size_t>> table;  // REPEAT: the table of tails, rebuilt already
  for (const std::uint32_t i : members) {
    const std::size_t size = sizes[i] - fixed;
    char* dst = out + offsets[i] + fixed;
    if (shared.done()) break;
    std::uint64_t n = shared.varint();
    if (shared.bad) return Error(col + ": a value is not a valid varint");
    if (repeats && (n & 1) != 0) {
      const std::uint64_t k = n >> 1;
      if (k >= table.size()) {
        return Error(col + ": record " + std::to_string(i) + " repeats tail " + std::to_string(k) + " but only " +
                     std::to_string(table.size()) + " came before it");
      }
      if (table[k].second != size) {
        return Error(col + ": record " + std::to_string(i) + " repeats tail " + std::to_string(k) + " of " +
                     std::to_string(table[k].second) + " bytes, its own being " + std::to_string(size));
      }
      if (size != 0) std::memcpy(dst, table[k].first, size);
      previous = dst;
      previous_size = size;
      ++done;
      continue;
    }
    if (repeats) n >>= 1;
    if (n > size || n > previous_size) {
      return Error(col + ": record " + std::to_string(i) + " shares " + std::to_string(n) +
                   " bytes with the previous tail of " + std::to_string(previous_size) + " bytes, its own being " +
                   std::to_string(size));
    }
    if (n != 0) std::memcpy(dst, previous, n);
    const std::size_t rest = size - n;
    if (rest > g.tail.suffixes.size() - suffix_at) return Error(col + ": the suffixes run out at record " + std::to_string(i));
    if (rest != 0) std::memcpy(dst + n, g.tail.suffixes.data() + suffix_at, rest);
    suffix_at += rest;
    previous = dst;
    previous_size = size;
    if (repeats) table.emplace_back(dst, size);
    ++done;
  }
  if (done < members.size() || !shared.done()) {
    std::size_t count = done;
    while (!shared.done()) {
      shared.varint();
      ++count;
    }
    return Error(count_error(col, count, members.size()));
  }
  if (suffix_at != g.tail.suffixes.size()) {
    return Error(col + ": " + std::to_string(g.tail.suffixes.size() - suffix_at) + " suffix bytes belong to no record");
  }
  return {};
}

}  // namespace

Status rebuild_payloads(const std::string& name, std::span<const std::uint32_t> sizes,
                        std::span<const std::uint64_t> times, std::span<const std::uint32_t> record_groups, std::span<const char> raw,
                        const std::vector<GroupView>& groups, std::size_t max_bytes, std::string& out) {
  const std::size_t n = sizes.size();
  if (times.size() != n) return Error(name + ": " + count_error("the times", times.size(), n));
  if (!record_groups.empty() && record_groups.size() != n) {
    return Error(name + ": " + count_error("record_groups", record_groups.size(), n));
  }
  if (record_groups.empty() && !groups.empty()) return Error(name + ": column groups but no record_groups");
  // Members of each group, in record order (a counting sort), and where each payload starts.
  std::vector<std::uint32_t> starts(groups.size() + 2, 0);
  for (const std::uint32_t g : record_groups) {
    if (g > groups.size()) {
      return Error(name + ": a record is in group " + std::to_string(g) + " but the batch has " +
                   std::to_string(groups.size()) + " groups");
    }
    ++starts[g + 1];
  }
  for (std::size_t g = 0; g < groups.size(); ++g) {
    if (groups[g].record_count != starts[g + 2]) {
      return Error(name + ": group " + std::to_string(g) + " (kind " + std::to_string(groups[g].kind) +
                   ") has record_count " + std::to_string(groups[g].record_count) + " but " +
                   std::to_string(starts[g + 2]) + " records are in it");
    }
  }
  for (std::size_t g = 1; g < starts.size(); ++g) starts[g] += starts[g - 1];
  std::vector<std::uint32_t> members(record_groups.size());
  {
    std::vector<std::uint32_t> next(starts.begin(), starts.end() - 1);
    for (std::size_t i = 0; i < record_groups.size(); ++i) members[next[record_groups[i]]++] = static_cast<std::uint32_t>(i);
  }
  std::vector<std::uint64_t> offsets(n);
  std::uint64_t total = 0, raw_total = 0;
  for (std::size_t i = 0; i < n; ++i) {
    offsets[i] = total;
    total += sizes[i];
    if (record_groups.empty() || record_groups[i] == 0) raw_total += sizes[i];
  }
  if (total > max_bytes) {
    return Error(name + ": its records' payloads add up to " + std::to_string(total) +
                 " bytes, over the reader's limit of " + std::to_string(max_bytes));
  }
  if (raw_total != raw.size()) {
    return Error(name + ": the raw records' sizes add up to " + std::to_string(raw_total) + " bytes but payloads has " +
                 std::to_string(raw.size()));
  }
  out.clear();
  out.resize(total);
  std::size_t raw_at = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!record_groups.empty() && record_groups[i] != 0) continue;
    std::memcpy(out.data() + offsets[i], raw.data() + raw_at, sizes[i]);
    raw_at += sizes[i];
  }
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const GroupView& group = groups[g];
    const std::string gname = name + ": group " + std::to_string(g) + " (kind " + std::to_string(group.kind) + ")";
    std::uint32_t fixed = 0;
    if (auto st = check_group(gname, group, &fixed); !st) return st;
    const std::span<const std::uint32_t> mine(members.data() + starts[g + 1], starts[g + 2] - starts[g + 1]);
    for (const std::uint32_t i : mine) {
      if (sizes[i] < fixed) {
        return Error(gname + ": record " + std::to_string(i) + " has " + std::to_string(sizes[i]) +
                     " bytes, fewer than the group's fixed " + std::to_string(fixed));
      }
      if (!group.has_tail && sizes[i] != fixed) {
        return Error(gname + ": record " + std::to_string(i) + " has bytes after the fixed part but the group no tail");
      }
    }
    for (const ColumnView& c : group.columns) {
      if (auto st = rebuild_column(gname + " column at offset " + std::to_string(c.offset), c, mine, offsets, times,
                                   out.data());
          !st) {
        return st;
      }
    }
    if (group.has_tail) {
      if (auto st = rebuild_tail(gname, group, fixed, mine, sizes, offsets, out.data()); !st) return st;
    }
  }
  return {};
}

}  // namespace perfstream
