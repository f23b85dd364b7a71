// Format version 2: column groups written by BatchEncoder with a ColumnarLayout and read back, byte for byte,
// by both readers (DecodedBatch and BatchView), on every built-in probe's layout and on random layouts.
#include "collector/format/columnar_payloads.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <deque>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "collector/decode/payload_schema.hpp"
#include "collector/format/batch_encoder.hpp"
#include "collector/format/time_delta_planes.hpp"
#include "collector/format/trace_reader.hpp"
#include "collector/recording/decoded_batch.hpp"
#include "testing/schema_field.hpp"
#include "perfstream.pb.h"

namespace perfstream {
namespace {

struct Rec {
  std::uint64_t time_ns = 0;
  std::uint32_t cpu = 0;
  std::string payload;
  bool lost = false;  // a lost notice (3 samples) instead of a record
};

std::span<const std::byte> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

std::shared_ptr<const ColumnarLayout> layout_of(const std::vector<v1::EventSchema>& schemas,
                                                std::string_view time_field = {}) {
  v1::TraceHeader h;
  for (const auto& s : schemas) *h.add_events() = s;
  return std::make_shared<const ColumnarLayout>(ColumnarLayout::from_schemas(h.events(), time_field));
}

// Sets the 8-byte field `name` of `payload`, if the schema has it and the payload reaches it, to `value`.
void set_u64_field(const v1::EventSchema& schema, const std::string& name, std::uint64_t value, std::string& payload) {
  for (const auto& f : schema.fields()) {
    if (f.name() == name && f.size() == 8 && !f.variable() && f.offset() + 8 <= payload.size()) {
      std::memcpy(payload.data() + f.offset(), &value, 8);
    }
  }
}

std::string encode(BatchEncoder& enc, const std::vector<Rec>& recs) {
  for (const Rec& r : recs) {
    if (r.lost) enc.add_lost(r.cpu, 3, r.time_ns);
    else enc.add_record(r.time_ns, r.cpu, bytes_of(r.payload));
  }
  std::string message;
  enc.finish(7, message);
  enc.reset();
  return message;
}

// The same records read a block at a time (PayloadViews::KeptUntilFlush: how a ring reader's encoder reads
// them, column by column over up to 64 records of a group) give the same bytes as records read one by one.
void expect_same_bytes_read_in_blocks(std::shared_ptr<const ColumnarLayout> layout, const std::vector<Rec>& recs,
                                      const std::string& message) {
  BatchEncoder blocks(std::move(layout), PayloadViews::KeptUntilFlush);
  EXPECT_EQ(encode(blocks, recs), message);
}

// How many records went into column groups.
std::size_t columnar_records(const std::string& message) {
  v1::Batch b;
  EXPECT_TRUE(b.ParseFromString(message));
  std::size_t n = 0;
  for (std::uint32_t g : b.record_groups()) n += g != 0;
  return n;
}

// The batch as a version 2 writer wrote it: its time deltas as varints (field 4) instead of byte planes.
std::string with_varint_time_deltas(const std::string& message) {
  v1::Batch b;
  EXPECT_TRUE(b.ParseFromString(message));
  const auto& planes = b.time_delta_planes();
  std::vector<std::uint64_t> deltas;
  EXPECT_TRUE(read_time_delta_planes("batch", {reinterpret_cast<const unsigned char*>(planes.data()), planes.size()},
                                     b.record_count(), 0, deltas));
  for (std::uint64_t d : deltas) b.add_time_deltas(static_cast<std::int64_t>(d));
  b.clear_time_delta_planes();
  return b.SerializeAsString();
}

void expect_round_trip(const std::string& message, const std::vector<Rec>& recs);

void expect_round_trip_once(const std::string& message, const std::vector<Rec>& recs) {
  std::vector<const Rec*> records;
  std::vector<std::uint32_t> lost_before;
  for (const Rec& r : recs) {
    if (r.lost) lost_before.push_back(static_cast<std::uint32_t>(records.size()));
    else records.push_back(&r);
  }
  recording::DecodedBatch d;
  std::string copy = message;
  const Status st = d.decode(copy, 1 << 20);
  ASSERT_TRUE(st) << st.error().message();
  ASSERT_EQ(d.size(), records.size());
  ASSERT_EQ(d.lost.size(), lost_before.size());
  for (std::size_t i = 0; i < lost_before.size(); ++i) EXPECT_EQ(d.lost[i].before, lost_before[i]);
  for (std::size_t i = 0; i < records.size(); ++i) {
    ASSERT_EQ(std::string(d.payload(i).data(), d.payload(i).size()), records[i]->payload) << "record " << i;
    EXPECT_EQ(d.times[i], records[i]->time_ns);
    EXPECT_EQ(d.cpus[i], records[i]->cpu);
  }
  auto view = BatchView::parse(message);
  ASSERT_TRUE(view) << view.error().message();
  ASSERT_EQ(view->size(), records.size());
  for (std::size_t i = 0; i < records.size(); ++i) {
    const auto r = view->record(i);
    ASSERT_EQ(std::string(r.payload.data(), r.payload.size()), records[i]->payload) << "record " << i;
    EXPECT_EQ(r.time_ns, records[i]->time_ns);
  }
}

// Every version 3 batch (time delta planes) reads the same as its version 2 form (varints).
void expect_round_trip(const std::string& message, const std::vector<Rec>& recs) {
  expect_round_trip_once(message, recs);
  v1::Batch b;
  ASSERT_TRUE(b.ParseFromString(message));
  if (!b.time_delta_planes().empty()) {
    SCOPED_TRACE("the same batch with its time deltas as varints");
    expect_round_trip_once(with_varint_time_deltas(message), recs);
  }
}

std::string hex(const std::string& s) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += digits[c >> 4];
    out += digits[c & 15];
    out += ' ';
  }
  return out;
}

std::string unhex(const std::string& h) {
  std::string out;
  for (std::size_t i = 0; i + 1 < h.size();) {
    if (h[i] == ' ') {
      ++i;
      continue;
    }
    out.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
    i += 2;
  }
  return out;
}

using testing::schema_field;

v1::EventSchema small_schema() {
  v1::EventSchema s;
  s.set_kind(5);
  s.set_name("small");
  s.set_fixed_size(12);
  *s.add_fields() = schema_field("kind", v1::Field::UNSIGNED, 0, 4);
  *s.add_fields() = schema_field("pid", v1::Field::UNSIGNED, 4, 4);
  *s.add_fields() = schema_field("comm", v1::Field::STRING, 8, 4);
  return s;
}

std::string small(std::uint32_t pid, const std::string& comm4, const std::string& tail) {
  std::string p(12, '\0');
  const std::uint32_t kind = 5;
  std::memcpy(p.data(), &kind, 4);
  std::memcpy(p.data() + 4, &pid, 4);
  std::memcpy(p.data() + 8, comm4.data(), 4);
  return p + tail;
}

// The whole message, byte for byte: the wire format FORMAT.md describes, as the encoder writes it.
TEST(ColumnarBatch, EncodesTheDocumentedBytes) {
  BatchEncoder enc(layout_of({small_schema()}));
  const std::vector<Rec> recs = {{1000, 0, small(100, std::string("ab\0\0", 4), "xy")},
                                 {1005, 0, small(101, std::string("ab\0\0", 4), "xz")}};
  const std::string message = encode(enc, recs);
  const std::string expected = unhex(
      "08 07 10 e8 07 18 02 62 02 00 0a 2a 02 00 00 32 02 0e 0e"  // sequence, first time, count, delta planes
                                                                  // (one: 0, 5), cpus, sizes
      " 52 02 01 01"                                              // record_groups: both in group 0
      " 5a 3a 08 05 10 02"                                        // the group: kind 5, 2 records
      " 1a 08 10 04 18 01 22 02 0a 0a"                            // kind: ZIGZAG 5, 5
      " 1a 0b 08 04 10 04 18 02 22 03 c8 01 02"                   // pid: DELTA 100, +1
      " 1a 0e 08 08 10 04 18 03 22 02 00 00 2a 02 61 62"          // comm: STRING "ab", "ab"
      " 22 0d 08 0c 18 06 22 02 00 02 32 03 78 79 7a");           // tail: REPEAT new 0 "xy", new 1 "z"
  EXPECT_EQ(hex(message), hex(expected));
  expect_round_trip(message, recs);
}

// Tails written with PREFIX (encoding 4), as perfstream wrote them before REPEAT, read as they were.
TEST(ColumnarBatch, ReadsPrefixTailsAsEarlierWritersWroteThem) {
  const std::string message = unhex(
      "08 07 10 e8 07 18 02 22 02 00 0a 2a 02 00 00 32 02 0e 0e 52 02 01 01 5a 3a 08 05 10 02"
      " 1a 08 10 04 18 01 22 02 0a 0a 1a 0b 08 04 10 04 18 02 22 03 c8 01 02"
      " 1a 0e 08 08 10 04 18 03 22 02 00 00 2a 02 61 62 22 0d 08 0c 18 04 22 02 00 01 32 03 78 79 7a");
  expect_round_trip(message, {{1000, 0, small(100, std::string("ab\0\0", 4), "xy")},
                              {1005, 0, small(101, std::string("ab\0\0", 4), "xz")}});
}

// A tail the group had before is written as its index among the group's distinct tails (odd values); a new
// one as twice the bytes it shares with the previous record's tail (even), its other bytes in the suffixes.
TEST(ColumnarBatch, ARepeatedTailIsWrittenAsTheIndexOfItsFirstOccurrence) {
  BatchEncoder enc(layout_of({small_schema()}));
  const std::string ab0 = std::string("ab\0\0", 4);
  const std::vector<Rec> recs = {{1000, 0, small(1, ab0, "/usr/lib/libc.so")},
                                 {1001, 0, small(2, ab0, "/usr/lib/libm.so")},
                                 {1002, 0, small(3, ab0, "/usr/lib/libc.so")},
                                 {1003, 0, small(4, ab0, "/etc/passwd")},
                                 {1004, 0, small(5, ab0, "/usr/lib/libm.so")},
                                 {1005, 0, small(6, ab0, "/usr/lib/libm.so.6")},
                                 {1006, 0, small(7, ab0, "")},
                                 {1007, 0, small(8, ab0, "")}};
  const std::string message = encode(enc, recs);
  v1::Batch b;
  ASSERT_TRUE(b.ParseFromString(message));
  const v1::Column& tail = b.groups(0).tail();
  EXPECT_EQ(tail.encoding(), v1::Column::REPEAT);
  // new 0 (shares 0), new 1 (shares 12), repeats 0, new 2 (shares 1), repeats 1, new 3 (shares 16 with
  // entry 1), new 4 (empty), repeats 4
  EXPECT_EQ(hex(tail.values()), "00 18 01 02 03 20 00 09 ");
  EXPECT_EQ(tail.suffixes(), "/usr/lib/libc.som.soetc/passwd.6");
  expect_round_trip(message, recs);
}

// The tail values (hex) of `small` records encoded one at a time, after checking that a block at a time
// writes the same bytes and that the batch reads back.
std::string small_tail_values(const std::vector<Rec>& recs) {
  const auto layout = layout_of({small_schema()});
  BatchEncoder one(layout);
  const std::string message = encode(one, recs);
  expect_same_bytes_read_in_blocks(layout, recs, message);
  expect_round_trip(message, recs);
  v1::Batch b;
  EXPECT_TRUE(b.ParseFromString(message));
  return b.groups_size() == 0 ? "" : hex(b.groups(0).tail().values());
}

// Read a block at a time, tails like the one before come in runs, written as one value repeated: runs that
// fill a whole block of 64, cross blocks, and end at a new tail or a repeat of an older one.
TEST(ColumnarBatch, RunsOfTheSameTailReadInBlocksAreWrittenAsTheirEntryRepeated) {
  const std::string ab0 = std::string("ab\0\0", 4);
  std::vector<Rec> recs;
  std::uint64_t t = 1000;
  auto add = [&](const std::string& tail, int times) {
    for (int i = 0; i < times; ++i) recs.push_back({t++, 0, small(static_cast<std::uint32_t>(t), ab0, tail)});
  };
  add("a", 3);
  add("bb", 130);
  add("a", 1);
  add("c", 5);
  add("bb", 1);
  std::string expected = "00 01 01 00 ";  // "a" new, again, again; "bb" new (shares nothing)
  for (int i = 0; i < 129; ++i) expected += "03 ";
  expected += "01 00 ";  // "a": entry 0; "c" new
  for (int i = 0; i < 4; ++i) expected += "05 ";
  expected += "03 ";  // "bb": entry 1
  EXPECT_EQ(small_tail_values(recs), expected);
}

// A run of the same tail whose entry's value takes two bytes (entries from 64 on).
TEST(ColumnarBatch, RunsOfATailWithATwoByteValueAreWrittenWhole) {
  const std::string ab0 = std::string("ab\0\0", 4);
  std::vector<Rec> recs;
  for (std::uint32_t i = 0; i < 70; ++i) recs.push_back({1000 + i, 0, small(i, ab0, "tail " + std::to_string(i))});
  for (std::uint32_t i = 0; i < 100; ++i) recs.push_back({2000 + i, 0, small(i, ab0, "tail 69")});
  recs.push_back({3000, 0, small(0, ab0, "tail 3")});
  std::string expected;
  for (int i = 0; i < 100; ++i) expected += "8b 01 ";  // entry 69: 2 * 69 + 1 = 139
  expected += "07 ";                                    // entry 3
  const std::string values = small_tail_values(recs);
  ASSERT_GE(values.size(), expected.size());
  EXPECT_EQ(values.substr(values.size() - expected.size()), expected);
}

// BatchingConsumer adds records without looking at the estimate while their BatchEncoder::most_bytes_added
// sum below what is left of max_bytes: no record may add more than that, even one made to cost the most
// (1-byte numbers that all become 2-byte varints, 1-byte strings each new, a tail that shares nothing), read
// one at a time or a block at a time.
TEST(ColumnarBatch, NoRecordAddsMoreToTheEstimateThanMostBytesAdded) {
  v1::EventSchema s;
  s.set_kind(9);
  s.set_name("costly");
  s.set_fixed_size(16);
  *s.add_fields() = schema_field("kind", v1::Field::UNSIGNED, 0, 4);
  *s.add_fields() = schema_field("a", v1::Field::SIGNED, 4, 1);
  *s.add_fields() = schema_field("b", v1::Field::UNSIGNED, 5, 1);
  for (std::uint32_t k = 6; k < 16; ++k) *s.add_fields() = schema_field("s" + std::to_string(k), v1::Field::STRING, k, 1);
  *s.add_fields() = schema_field("tail", v1::Field::BYTES, 16, 64, "", true);
  const auto layout = layout_of({s});
  for (const PayloadViews views : {PayloadViews::ReadInAdd, PayloadViews::KeptUntilFlush}) {
    SCOPED_TRACE(views == PayloadViews::ReadInAdd ? "read in add" : "read in blocks");
    BatchEncoder enc(layout, views);
    std::vector<std::string> payloads;
    std::uint32_t x = 7;
    for (std::uint32_t i = 0; i < 3000; ++i) {
      std::string p(16 + i % 50, '\0');
      for (char& c : p) c = static_cast<char>((x = x * 1103515245 + 12345) >> 16);
      const std::uint32_t kind = 9;
      std::memcpy(p.data(), &kind, 4);
      p[4] = static_cast<char>(i % 2 ? 127 : -128);  // deltas of 255 each way
      payloads.push_back(std::move(p));
    }
    std::size_t since_check = 0, bound = 0;
    enc.flush_views();
    std::size_t checked = enc.encoded_size_estimate();
    for (std::uint32_t i = 0; i < payloads.size(); ++i) {
      enc.add_record(1000 + i, 0, bytes_of(payloads[i]));
      bound += BatchEncoder::most_bytes_added(payloads[i].size());
      ASSERT_LE(enc.encoded_size_estimate(), checked + bound) << "record " << i;
      if (++since_check == 100) {  // as the consumer does at a check: read what is pending, start again
        enc.flush_views();
        ASSERT_LE(enc.encoded_size_estimate(), checked + bound) << "record " << i << ", read";
        checked = enc.encoded_size_estimate();
        bound = since_check = 0;
      }
    }
  }
}

// A record's time field (the header's record_time_field) is stored as its difference from the record's time:
// 0 when the time came from it.
TEST(ColumnarBatch, TheTimeFieldIsStoredAsItsOffsetFromTheRecordsTime) {
  v1::EventSchema s;
  s.set_kind(6);
  s.set_name("stamped");
  s.set_fixed_size(16);
  *s.add_fields() = schema_field("kind", v1::Field::UNSIGNED, 0, 4);
  *s.add_fields() = schema_field("value", v1::Field::UNSIGNED, 4, 4);
  *s.add_fields() = schema_field("ts", v1::Field::UNSIGNED, 8, 8);
  auto stamped = [](std::uint32_t value, std::uint64_t ts) {
    std::string p(16, '\0');
    const std::uint32_t kind = 6;
    std::memcpy(p.data(), &kind, 4);
    std::memcpy(p.data() + 4, &value, 4);
    std::memcpy(p.data() + 8, &ts, 8);
    return p;
  };
  BatchEncoder enc(layout_of({s}, "ts"));
  // The first two as `record` writes them; the third's ts is 7 ns before its time (the kernel's time was
  // asked for), the fourth's is anything at all.
  const std::vector<Rec> recs = {{1000, 0, stamped(1, 1000)},
                                 {1005, 0, stamped(2, 1005)},
                                 {1010, 1, stamped(3, 1003)},
                                 {1020, 1, stamped(4, ~std::uint64_t{0})}};
  const std::string message = encode(enc, recs);
  v1::Batch b;
  ASSERT_TRUE(b.ParseFromString(message));
  ASSERT_EQ(b.groups_size(), 1);
  ASSERT_EQ(b.groups(0).columns_size(), 3);
  const v1::Column& ts = b.groups(0).columns(2);
  EXPECT_EQ(ts.offset(), 8u);
  EXPECT_EQ(ts.width(), 8u);
  EXPECT_EQ(ts.encoding(), v1::Column::TIME_OFFSET);
  // zigzag(0), zigzag(0), zigzag(-7) = 13, zigzag(2^64 - 1 - 1020 as -1021) = 2041
  EXPECT_EQ(hex(ts.values()), hex(unhex("00 00 0d f9 0f")));
  EXPECT_EQ(hex(message), hex(unhex(
      "08 07 10 e8 07 18 04 62 04 00 0a 0a 14 2a 04 00 00 01 01 32 04 10 10 10 10"  // through sizes
      " 52 04 01 01 01 01 5a 2d 08 06 10 04"                                      // record_groups, group: kind 6
      " 1a 0a 10 04 18 01 22 04 0c 0c 0c 0c"                                      // kind: ZIGZAG 6 x4
      " 1a 0c 08 04 10 04 18 01 22 04 02 04 06 08"                                // value: ZIGZAG 1-4
      " 1a 0d 08 08 10 08 18 05 22 05 00 00 0d f9 0f")));                         // ts: TIME_OFFSET; no tail
  expect_round_trip(message, recs);
}

// Empty tails are written only once a record of the group has a tail; a group without any has no tail.
TEST(ColumnarBatch, AGroupWritesATailOnlyWhenARecordHasOne) {
  BatchEncoder enc(layout_of({small_schema()}));
  const std::string ab0 = std::string("ab\0\0", 4);
  const std::vector<Rec> fixed = {{1000, 0, small(1, ab0, "")}, {1001, 0, small(2, ab0, "")}};
  std::string message = encode(enc, fixed);
  v1::Batch b;
  ASSERT_TRUE(b.ParseFromString(message));
  EXPECT_FALSE(b.groups(0).has_tail());
  expect_round_trip(message, fixed);
  const std::vector<Rec> mixed = {{1000, 0, small(1, ab0, "")},
                                  {1001, 0, small(2, ab0, "")},
                                  {1002, 0, small(3, ab0, "ab")},
                                  {1003, 0, small(4, ab0, "")},
                                  {1004, 0, small(5, ab0, "abc")}};
  message = encode(enc, mixed);  // the same encoder: nothing of the first batch's group is left
  ASSERT_TRUE(b.ParseFromString(message));
  ASSERT_TRUE(b.groups(0).has_tail());
  EXPECT_EQ(hex(b.groups(0).tail().values()), "00 00 00 00 00 ");
  EXPECT_EQ(b.groups(0).tail().suffixes(), "ababc");
  expect_round_trip(message, mixed);
}

// Every per-column write path of the encoder (integers of 1, 2, 3, 4 and 8 bytes as zigzag, delta and time
// offset, strings of 16 and other widths, raw columns of 1, 2, 4, 8, 16 and 24 bytes), values at the ends of
// their ranges (varints of 9 and 10 bytes), tails of 0 to 600 bytes sharing prefixes of every length, two
// groups far past the records the encoder reserves room for at a time, and a group whose first 100 records
// have no tail: rebuilt byte for byte.
TEST(ColumnarBatch, LongBatchesOfEveryColumnOpAndTailLengthRoundTripByteForByte) {
  auto schema = [](std::uint32_t kind) {
    v1::EventSchema s;
    s.set_kind(kind);
    s.set_name("every_op");
    s.set_fixed_size(144);
    const struct {
      const char* name;
      v1::Field::Type type;
      std::uint32_t offset, size;
    } fields[] = {
        {"kind", v1::Field::UNSIGNED, 0, 4},   {"a", v1::Field::UNSIGNED, 4, 1},    {"b", v1::Field::SIGNED, 5, 2},
        {"c", v1::Field::UNSIGNED, 7, 3},      {"pid", v1::Field::UNSIGNED, 12, 4}, {"tid2", v1::Field::UNSIGNED, 16, 2},
        {"seq1", v1::Field::UNSIGNED, 18, 1},  {"seq3", v1::Field::SIGNED, 19, 3},  {"v8", v1::Field::SIGNED, 24, 8},
        {"ts", v1::Field::UNSIGNED, 32, 8},    {"comm", v1::Field::STRING, 40, 16}, {"name", v1::Field::STRING, 56, 20},
        {"d", v1::Field::UNSIGNED, 77, 1},     {"e", v1::Field::UNSIGNED, 82, 2},   {"f", v1::Field::UNSIGNED, 92, 4},
        {"g", v1::Field::UNSIGNED, 112, 4},    {"h", v1::Field::UNSIGNED, 140, 4},
    };  // the gaps between them are raw columns of 2, 2, 1, 4, 8, 16 and 24 bytes
    for (const auto& f : fields) *s.add_fields() = schema_field(f.name, f.type, f.offset, f.size);
    return s;
  };
  const auto layout = layout_of({schema(1), schema(2)}, "ts");
  {
    std::set<std::pair<ColumnEncoding, std::uint32_t>> ops;
    for (const ColumnPlan::Column& c : layout->plans()[0].columns) ops.insert({c.encoding, c.width});
    for (const std::pair<ColumnEncoding, std::uint32_t>& op :
         {std::pair{ColumnEncoding::Zigzag, 1u}, {ColumnEncoding::Zigzag, 2u}, {ColumnEncoding::Zigzag, 3u},
          {ColumnEncoding::Zigzag, 4u}, {ColumnEncoding::Delta, 1u}, {ColumnEncoding::Delta, 2u},
          {ColumnEncoding::Delta, 3u}, {ColumnEncoding::Delta, 4u}, {ColumnEncoding::Delta, 8u},
          {ColumnEncoding::TimeOffset, 8u}, {ColumnEncoding::String, 16u}, {ColumnEncoding::String, 20u},
          {ColumnEncoding::Raw, 1u}, {ColumnEncoding::Raw, 2u}, {ColumnEncoding::Raw, 4u}, {ColumnEncoding::Raw, 8u},
          {ColumnEncoding::Raw, 16u}, {ColumnEncoding::Raw, 24u}}) {
      EXPECT_TRUE(ops.count(op)) << "no column of encoding " << static_cast<int>(op.first) << " width " << op.second;
    }
  }
  std::mt19937_64 rng(7);
  const std::uint64_t extremes[] = {0, 1, ~std::uint64_t{0}, std::uint64_t{1} << 63, (std::uint64_t{1} << 63) - 1,
                                    (std::uint64_t{1} << 56) - 1, std::uint64_t{1} << 56, (std::uint64_t{1} << 62) + 5};
  BatchEncoder enc(layout);
  std::vector<Rec> recs;
  std::string previous_tail[3];
  std::uint64_t t = 1'000'000;
  for (int i = 0; i < 3000; ++i) {
    const std::uint32_t kind = i < 100 || rng() % 3 != 0 ? 1 : 2;
    std::string p(144, '\0');
    for (char& c : p) c = static_cast<char>(rng() % 4 == 0 ? 0 : rng());
    std::memcpy(p.data(), &kind, 4);
    for (const std::uint32_t at : {24u, 32u}) {
      const std::uint64_t v = rng() % 2 ? extremes[rng() % std::size(extremes)] : rng();
      std::memcpy(p.data() + at, &v, 8);
    }
    t += rng() % 1000;
    if (rng() % 2) std::memcpy(p.data() + 32, &t, 8);  // the ts field as `record` writes it
    // A tail of 0-600 bytes keeping a prefix of any length of the group's previous one (none for kind 1's
    // first 100 records).
    std::string tail;
    if (i >= 100) {
      std::string& prev = previous_tail[kind];
      const std::size_t size = rng() % 8 == 0 ? 0 : rng() % 8 == 0 ? 256 + rng() % 345 : rng() % 80;
      tail = prev.substr(0, std::min<std::size_t>(size, rng() % (prev.size() + 1)));
      while (tail.size() < size) tail.push_back(static_cast<char>(rng()));
      prev = tail;
    }
    recs.push_back(Rec{t, static_cast<std::uint32_t>(rng() % 4), p + tail});
  }
  const std::string message = encode(enc, recs);
  EXPECT_EQ(columnar_records(message), recs.size());
  expect_round_trip(message, recs);
  // The encoder's buffers are reused: the same records again give the same bytes.
  EXPECT_EQ(encode(enc, recs), message);
  expect_same_bytes_read_in_blocks(layout, recs, message);
}

// Long tails that differ only in their last bytes cost a few bytes each in the batch, but the tail table keeps
// each whole: the estimate counts them whole, so a batch closed on it also bounds the encoder's memory.
TEST(ColumnarBatch, TheEstimateCountsTheTailBytesTheTableKeeps) {
  BatchEncoder enc(layout_of({small_schema()}));
  std::vector<Rec> recs;
  for (std::uint32_t i = 0; i < 200; ++i) {
    std::string tail(4096, 'x');
    std::memcpy(tail.data() + 4092, &i, 4);
    recs.push_back(Rec{1000 + i, 0, small(i, "abcd", tail)});
  }
  for (const Rec& r : recs) enc.add_record(r.time_ns, r.cpu, bytes_of(r.payload));
  EXPECT_GE(enc.encoded_size_estimate(), 200u * 4096);
  std::string message;
  enc.finish(7, message);
  EXPECT_LT(message.size(), 20000u);  // what is written: the first tail, then a few bytes per record
  enc.reset();
  expect_round_trip(message, recs);
}

TEST(ColumnarBatch, RecordsThePlanCannotRebuildGoRawInRecordOrder) {
  // And a char array with bytes after its NUL is rebuilt with them (the string table keeps them).
  BatchEncoder enc(layout_of({small_schema()}));
  std::string unknown_kind = small(1, "abcd", "");
  unknown_kind[0] = 9;
  const std::vector<Rec> recs = {
      {10, 0, small(100, std::string("ab\0\0", 4), "")},
      {11, 1, small(100, std::string("a\0z\0", 4), "")},  // a byte after the NUL: interned with it
      {12, 0, std::string("\x05\0\0\0\x01", 5)},          // shorter than the fixed part: raw
      {13, 0, "", true},
      {14, 1, unknown_kind},                              // no plan: raw
      {15, 0, small(7, "abcd", "tail")},                  // no NUL at all: the whole array is the string
      {16, 0, ""},                                        // empty payload
  };
  const std::string message = encode(enc, recs);
  v1::Batch b;
  ASSERT_TRUE(b.ParseFromString(message));
  EXPECT_EQ(std::vector<std::uint32_t>(b.record_groups().begin(), b.record_groups().end()),
            (std::vector<std::uint32_t>{1, 1, 0, 0, 1, 0}));
  expect_round_trip(message, recs);
}

TEST(ColumnarBatch, WithoutPlansTheBatchIsVersionOne) {
  BatchEncoder v2(layout_of({}));
  BatchEncoder v1;
  const std::vector<Rec> recs = {{10, 0, small(1, "abcd", "")}, {12, 1, "xyz"}};
  const std::string a = encode(v2, recs);
  EXPECT_EQ(a, encode(v1, recs));
  expect_round_trip(a, recs);
}

// Random values for a schema's fields, a kind tag, and a tail that shares a prefix with the previous one.
class PayloadMaker {
 public:
  explicit PayloadMaker(std::uint32_t seed) : rng_(seed) {}
  std::string make(const v1::EventSchema& s, bool garbage_allowed) {
    std::string p(s.fixed_size(), '\0');
    for (const auto& f : s.fields()) {
      if (f.variable() || f.offset() + f.size() > s.fixed_size()) continue;
      char* at = p.data() + f.offset();
      if (f.type() == v1::Field::STRING) {
        const std::size_t len = pick(f.size() + 1);
        for (std::size_t i = 0; i < len; ++i) at[i] = static_cast<char>('a' + pick(3));
        if (garbage_allowed && len + 1 < f.size() && pick(10) == 0) at[len + 1] = 'G';
      } else if (f.type() == v1::Field::SIGNED || f.type() == v1::Field::UNSIGNED) {
        std::uint64_t v = pick(4) == 0 ? rng_() : pick(300) - (pick(2) == 0 ? 150 : 0);
        std::memcpy(at, &v, std::min<std::size_t>(8, f.size()));
      } else {
        for (std::size_t i = 0; i < f.size(); ++i) at[i] = static_cast<char>(pick(2) == 0 ? 0 : rng_());
      }
    }
    // Gaps get a stray byte now and then: raw columns keep them.
    if (!p.empty() && pick(8) == 0) p[pick(p.size())] = static_cast<char>(rng_());
    const std::uint32_t kind = s.kind();
    if (kind != 0 && p.size() >= 4) std::memcpy(p.data(), &kind, 4);
    std::string tail = previous_tail_.substr(0, pick(previous_tail_.size() + 1));
    const std::size_t more = pick(40);
    for (std::size_t i = 0; i < more; ++i) tail.push_back(static_cast<char>(pick(3) == 0 ? 0 : '/' + pick(60)));
    previous_tail_ = tail;
    return p + tail;
  }
  std::size_t pick(std::size_t n) { return n == 0 ? 0 : static_cast<std::size_t>(rng_() % n); }
  std::mt19937_64& rng() { return rng_; }

 private:
  std::mt19937_64 rng_;
  std::string previous_tail_;
};

TEST(ColumnarBatch, EveryBuiltInProbeRoundTripsByteForByte) {
  std::vector<v1::EventSchema> schemas;
  for (const char* name : {"exec", "openat", "sched_switch", "loadgen", "exit", "fork", "tcp"}) {
    auto s = builtin_probe_schema(name);
    ASSERT_TRUE(s) << s.error().message();
    schemas.push_back(*s);
  }
  // As `record` plans them: every built-in probe stamps `ts`, and record times come from it.
  const auto layout = layout_of(schemas, "ts");
  BatchEncoder enc(layout);
  PayloadMaker maker(1);
  for (int batch = 0; batch < 3; ++batch) {  // the encoder's buffers and tables are reused across batches
    std::vector<Rec> recs;
    std::uint64_t t = 1'000'000 + batch;
    for (int i = 0; i < 2000; ++i) {
      const auto& s = schemas[maker.pick(schemas.size())];
      t += maker.pick(5000);
      if (maker.pick(50) == 0) recs.push_back(Rec{t, static_cast<std::uint32_t>(maker.pick(4)), "", true});
      std::string p = maker.make(s, true);
      p.resize((p.size() + 4 + 7) / 8 * 8 - 4, '\0');  // the kernel's padding
      const std::uint64_t time = t - maker.pick(3000);
      if (maker.pick(4) != 0) set_u64_field(s, "ts", time, p);  // else random bytes in ts
      recs.push_back(Rec{time, static_cast<std::uint32_t>(maker.pick(4)), std::move(p)});
    }
    const std::string message = encode(enc, recs);
    EXPECT_GT(columnar_records(message), 1500u);
    expect_round_trip(message, recs);
    expect_same_bytes_read_in_blocks(layout, recs, message);
  }
}

// Random layouts: integers of every size (3, 5, 7 too), nested (dotted) names, unions, char arrays with
// bytes after the NUL, byte arrays, gaps, variable tails, several kinds and an untagged one.
v1::EventSchema random_schema(PayloadMaker& m, std::uint32_t kind) {
  v1::EventSchema s;
  s.set_kind(kind);
  s.set_name("k" + std::to_string(kind));
  std::uint32_t at = 0;
  if (kind != 0) {
    *s.add_fields() = schema_field("kind", v1::Field::UNSIGNED, 0, 4);
    at = 4;
  }
  const std::size_t n = m.pick(8);
  for (std::size_t i = 0; i < n; ++i) {
    at += static_cast<std::uint32_t>(m.pick(3) == 0 ? m.pick(5) : 0);
    const auto type = static_cast<v1::Field::Type>(1 + m.pick(4));
    const std::uint32_t size = type == v1::Field::STRING ? 1 + static_cast<std::uint32_t>(m.pick(20))
                               : type == v1::Field::BYTES ? 1 + static_cast<std::uint32_t>(m.pick(10))
                                                          : 1 + static_cast<std::uint32_t>(m.pick(8));
    const std::string name = (m.pick(2) == 0 ? "outer.inner" + std::to_string(i) : "f" + std::to_string(i)) +
                             (m.pick(4) == 0 ? "_pid" : "");
    *s.add_fields() = schema_field(name, type, at, size);
    if (m.pick(6) == 0 && size > 1) *s.add_fields() = schema_field(name + "_part", v1::Field::UNSIGNED, at, size / 2);  // a union
    at += size;
  }
  at += static_cast<std::uint32_t>(m.pick(6));
  s.set_fixed_size(std::max<std::uint32_t>(at, kind != 0 ? 4 : 1));
  if (m.pick(2) == 0) {
    v1::Field tail = schema_field("tail", v1::Field::STRING, s.fixed_size(), 64);
    tail.set_variable(true);
    *s.add_fields() = tail;
  }
  return s;
}

TEST(ColumnarBatch, RandomLayoutsRoundTripByteForByte) {
  for (std::uint32_t seed = 1; seed <= 60; ++seed) {
    PayloadMaker m(seed);
    std::vector<v1::EventSchema> schemas;
    const bool untagged = seed % 5 == 0;
    if (untagged) {
      schemas.push_back(random_schema(m, 0));
    } else {
      for (std::uint32_t k = 1; k <= 1 + m.pick(4); ++k) schemas.push_back(random_schema(m, k * (seed % 3 == 0 ? 1000 : 1)));
    }
    // Some seeds name a time field: the random layouts' 8-byte integers named f<i> take turns.
    const std::string time_field = seed % 4 == 1 ? "f" + std::to_string(seed % 3) : "";
    const auto layout = layout_of(schemas, time_field);
    BatchEncoder enc(layout);
    std::vector<Rec> recs;
    std::uint64_t t = seed * 1'000'000'000ull;
    for (int i = 0; i < 300; ++i) {
      t += m.pick(100);
      const std::size_t r = m.pick(20);
      if (r == 0) {
        recs.push_back(Rec{t, 1, "", true});
      } else if (r == 1) {
        std::string junk(m.pick(40), '\0');
        for (char& c : junk) c = static_cast<char>(m.rng()());
        recs.push_back(Rec{t, 2, junk});
      } else {
        std::string p = m.make(schemas[m.pick(schemas.size())], true);
        if (m.pick(15) == 0 && !p.empty()) p.resize(m.pick(p.size()));  // cut short
        recs.push_back(Rec{t, static_cast<std::uint32_t>(m.pick(3)), std::move(p)});
      }
    }
    SCOPED_TRACE("seed " + std::to_string(seed));
    const std::string message = encode(enc, recs);
    EXPECT_GT(columnar_records(message), 0u);
    expect_round_trip(message, recs);
    expect_same_bytes_read_in_blocks(layout, recs, message);
  }
}

// A ring reader's encoder (blocks, views kept until the pass ends) against one reading record by record, on
// the same records: three groups (columns and a tail, fixed only, a tiny fixed part and a tail), groups
// whose first 0, 1, 63, 64, 65 or 130 records have no tail, runs of equal tails across blocks, lost notices,
// passes ending at random (the "ring" scribbled over after each), six batches per encoder (reset() reuses
// them). Same bytes for every batch; after every flush the same estimate, and between flushes never more
// than a block's worth below it.
TEST(ColumnarBatch, BlocksGiveTheBytesAndEstimateOfOneAtATimeAcrossPassesAndBatches) {
  v1::EventSchema a;  // columns and a tail
  a.set_kind(1);
  a.set_name("a");
  a.set_fixed_size(48);
  *a.add_fields() = schema_field("kind", v1::Field::UNSIGNED, 0, 4);
  *a.add_fields() = schema_field("pid", v1::Field::UNSIGNED, 4, 4);
  *a.add_fields() = schema_field("ts", v1::Field::UNSIGNED, 8, 8);
  *a.add_fields() = schema_field("seq", v1::Field::UNSIGNED, 16, 8);
  *a.add_fields() = schema_field("comm", v1::Field::STRING, 24, 16);
  *a.add_fields() = schema_field("x", v1::Field::SIGNED, 40, 2);
  *a.add_fields() = schema_field("path", v1::Field::STRING, 48, 256, "", true);
  v1::EventSchema b;  // fixed only
  b.set_kind(2);
  b.set_name("b");
  b.set_fixed_size(24);
  *b.add_fields() = schema_field("kind", v1::Field::UNSIGNED, 0, 4);
  *b.add_fields() = schema_field("v", v1::Field::SIGNED, 8, 8);
  *b.add_fields() = schema_field("name", v1::Field::STRING, 16, 7);
  v1::EventSchema c;  // a tiny fixed part and a tail
  c.set_kind(3);
  c.set_name("c");
  c.set_fixed_size(8);
  *c.add_fields() = schema_field("kind", v1::Field::UNSIGNED, 0, 4);
  *c.add_fields() = schema_field("data", v1::Field::STRING, 8, 64, "", true);
  const auto layout = layout_of({a, b, c}, "ts");
  const std::uint32_t fixed_size[] = {0, 48, 24, 8};
  const std::uint32_t untailed_choices[] = {0, 1, 63, 64, 65, 130};
  const char* comms[] = {"bash", "sshd", "kworker/u4:2", "perfstream-long-name"};
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    BatchEncoder one(layout);
    BatchEncoder blocks(layout, PayloadViews::KeptUntilFlush);
    std::string previous_tail[4];
    std::uint64_t t = 1000;
    for (int batch = 0; batch < 6; ++batch) {
      std::uint32_t untailed[4];
      for (std::uint32_t& u : untailed) u = untailed_choices[rng() % 6];
      std::deque<std::string> ring;  // the records of the current pass
      const int n = static_cast<int>(rng() % 500);
      std::uint32_t kind = 1;
      for (int i = 0; i < n; ++i) {
        if (rng() % 8 == 0) kind = 1 + static_cast<std::uint32_t>(rng() % 3);
        std::string p(fixed_size[kind], '\0');
        for (char& ch : p) ch = static_cast<char>(rng() % 3 == 0 ? rng() : 0);
        std::memcpy(p.data(), &kind, 4);
        t += rng() % 50;
        if (kind == 1) {
          const std::uint64_t ts = rng() % 4 != 0 ? t - rng() % 100 : rng();
          std::memcpy(p.data() + 8, &ts, 8);
          const char* comm = comms[rng() % 4];
          std::memset(p.data() + 24, 0, 16);
          std::memcpy(p.data() + 24, comm, std::min<std::size_t>(16, std::strlen(comm)));
        }
        std::string tail;
        if (kind != 2 && untailed[kind] > 0) {
          --untailed[kind];
        } else if (kind != 2) {
          const auto how = rng() % 6;
          if (how <= 2) {
            tail = previous_tail[kind];  // the same again: runs
          } else if (how == 4 || how == 5) {
            const std::size_t size = rng() % 4 == 0 ? 1 + rng() % 7 : rng() % 120;
            tail = previous_tail[kind].substr(0, std::min<std::size_t>(size, rng() % (previous_tail[kind].size() + 1)));
            while (tail.size() < size) tail.push_back(static_cast<char>('a' + rng() % 3));
          }  // else empty
          previous_tail[kind] = tail;
        }
        const std::uint32_t cpu = static_cast<std::uint32_t>(rng() % 4);
        if (rng() % 50 == 0) {
          one.add_lost(cpu, 3, t);
          blocks.add_lost(cpu, 3, t);
        }
        ring.push_back(p + tail);
        one.add_record(t, cpu, bytes_of(ring.back()));
        blocks.add_record(t, cpu, bytes_of(ring.back()));
        if (rng() % 97 == 0) {  // the pass ends
          blocks.flush_views();
          ASSERT_EQ(blocks.encoded_size_estimate(), one.encoded_size_estimate()) << "batch " << batch << " record " << i;
          for (std::string& r : ring) std::fill(r.begin(), r.end(), '\xa5');
          ring.clear();
        } else {
          // Unread records' columns are guessed from the group's last block: at most a block of records, of
          // three groups, can take more than guessed.
          EXPECT_GE(blocks.encoded_size_estimate() + 64 * 3 * 200, one.encoded_size_estimate());
        }
      }
      std::string by_one, by_blocks;
      one.finish(5, by_one);
      blocks.finish(5, by_blocks);
      ASSERT_EQ(by_blocks, by_one) << "batch " << batch;
      EXPECT_EQ(columnar_records(by_one), static_cast<std::size_t>(n));
      one.reset();
      blocks.reset();
    }
  }
}

// --- a corrupt batch gives a clear error ------------------------------------------------------------------

std::string two_record_batch() {
  BatchEncoder enc(layout_of({small_schema()}));
  return encode(enc, {{1000, 0, small(100, std::string("ab\0\0", 4), "xy")}, {1005, 0, small(101, "abcd", "xz")}});
}

std::string decode_error(const std::string& message) {
  recording::DecodedBatch d;
  std::string copy = message;  // decode() takes it
  const Status st = d.decode(copy, 1 << 20);
  EXPECT_FALSE(st);
  EXPECT_EQ(d.size(), 0u);
  auto view = BatchView::parse(message);
  EXPECT_FALSE(view);
  return st ? std::string() : st.error().message();
}

TEST(ColumnarBatch, AColumnShortOfValuesIsNamed) {
  v1::Batch b;
  ASSERT_TRUE(b.ParseFromString(two_record_batch()));
  b.mutable_groups(0)->mutable_columns(1)->mutable_values()->pop_back();  // pid: 200, then nothing
  EXPECT_EQ(decode_error(b.SerializeAsString()),
            "batch 7: group 0 (kind 5) column at offset 4 has 1 values for 2 records");
}

TEST(ColumnarBatch, CorruptGroupsAreRefusedWithTheReason) {
  v1::Batch good;
  ASSERT_TRUE(good.ParseFromString(two_record_batch()));
  auto with = [&](auto change) {
    v1::Batch b = good;
    change(b);
    return decode_error(b.SerializeAsString());
  };
  EXPECT_EQ(with([](v1::Batch& b) { b.set_record_groups(1, 2); }),
            "batch 7: a record is in group 2 but the batch has 1 groups");
  EXPECT_EQ(with([](v1::Batch& b) { b.add_record_groups(1); }), "batch 7: record_groups has 3 values for 2 records");
  EXPECT_EQ(with([](v1::Batch& b) { b.mutable_groups(0)->set_record_count(3); }),
            "batch 7: group 0 (kind 5) has record_count 3 but 2 records are in it");
  EXPECT_EQ(with([](v1::Batch& b) { b.mutable_groups(0)->mutable_columns(2)->set_values(std::string("\x00\x05", 2)); }),
            "batch 7: group 0 (kind 5) column at offset 8: string index 5 but 2 strings");
  EXPECT_EQ(with([](v1::Batch& b) { b.mutable_groups(0)->mutable_columns(1)->set_offset(5); }),
            "batch 7: group 0 (kind 5) column at offset 5: the previous column ends at 4");
  EXPECT_EQ(with([](v1::Batch& b) { b.mutable_groups(0)->mutable_columns(1)->set_width(9); }),
            "batch 7: group 0 (kind 5) column at offset 4: an integer column of width 9 (at most 8)");
  EXPECT_EQ(with([](v1::Batch& b) { b.mutable_groups(0)->mutable_tail()->set_values(std::string("\x00\x06", 2)); }),
            "batch 7: group 0 (kind 5) tail: record 1 shares 3 bytes with the previous tail of 2 bytes, its own "
            "being 2");
  EXPECT_EQ(with([](v1::Batch& b) { b.mutable_groups(0)->mutable_tail()->set_values(std::string("\x00\x03", 2)); }),
            "batch 7: group 0 (kind 5) tail: record 1 repeats tail 1 but only 1 came before it");
  EXPECT_EQ(with([](v1::Batch& b) {
              b.mutable_groups(0)->mutable_tail()->set_values(std::string("\x00\x01", 2));
              b.set_sizes(1, 15);
              b.mutable_groups(0)->mutable_tail()->set_suffixes("xy");
            }),
            "batch 7: group 0 (kind 5) tail: record 1 repeats tail 0 of 2 bytes, its own being 3");
  EXPECT_EQ(with([](v1::Batch& b) { b.mutable_groups(0)->mutable_tail()->mutable_suffixes()->push_back('!'); }),
            "batch 7: group 0 (kind 5) tail: 1 suffix bytes belong to no record");
  EXPECT_EQ(with([](v1::Batch& b) { b.set_sizes(0, 11); }),
            "batch 7: group 0 (kind 5): record 0 has 11 bytes, fewer than the group's fixed 12");
  EXPECT_EQ(with([](v1::Batch& b) { b.clear_record_groups(); }), "batch 7: column groups but no record_groups");
}

TEST(ColumnarBatch, RebuiltPayloadsOverTheLimitAreRefusedBeforeAllocating) {
  v1::Batch b;
  ASSERT_TRUE(b.ParseFromString(two_record_batch()));
  b.set_sizes(0, 4'000'000'000u);
  std::string message = b.SerializeAsString();
  recording::DecodedBatch d;
  const Status st = d.decode(message, 1 << 20, 1 << 20);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(),
            "batch 7: its records' payloads add up to 4000000014 bytes, over the reader's limit of 1048576");
}

// --- Time deltas as byte planes (format version 3) ------------------------------------------------------

std::string planes_of(const std::vector<std::uint64_t>& zigzags) {
  TimeDeltaPlanesWriter w;
  w.reserve(zigzags.size());
  for (std::uint64_t z : zigzags) w.add_unchecked(z);
  std::string out;
  w.append_planes(out);
  EXPECT_EQ(out.size(), w.encoded_size());
  return out;
}

TEST(TimeDeltaPlanes, AreTheFewestBytesThatHoldEveryDeltaPlaneAfterPlane) {
  EXPECT_EQ(hex(planes_of({0, 0x1234, 0x56})), "00 34 56 00 12 00 ");
  EXPECT_EQ(hex(planes_of({0, 0, 0})), "00 00 00 ");  // one byte a record even when all are 0
  EXPECT_EQ(hex(planes_of({0xff, 1})), "ff 01 ");
  EXPECT_EQ(hex(planes_of({0x100})), "00 01 ");
  EXPECT_EQ(planes_of({~std::uint64_t{0}, 0}), std::string("\xff\x00", 2) + std::string("\xff\x00", 2) +
                                                    std::string("\xff\x00", 2) + std::string("\xff\x00", 2) +
                                                    std::string("\xff\x00", 2) + std::string("\xff\x00", 2) +
                                                    std::string("\xff\x00", 2) + std::string("\xff\x00", 2));
  EXPECT_EQ(planes_of({}), "");
}

// Times that need every width from 1 to 8 bytes, backwards (two CPUs interleaved) and across 2^64.
TEST(TimeDeltaPlanes, EveryWidthRoundTripsWithNegativeAndWrappingDeltas) {
  BatchEncoder enc(layout_of({small_schema()}));
  for (int width = 1; width <= 8; ++width) {
    SCOPED_TRACE("width " + std::to_string(width));
    // The largest zigzag is 2 * step - 1 (the step back), which takes `width` bytes.
    const std::uint64_t step = width == 8 ? std::uint64_t{1} << 62 : (std::uint64_t{1} << (8 * width - 2)) + 3;
    const std::uint64_t start = ~std::uint64_t{0} - 5;  // the second record's time wraps past 2^64
    std::vector<Rec> recs;
    std::uint64_t t = start;
    for (std::uint32_t i = 0; i < 6; ++i) {
      recs.push_back({t, i % 2, small(100 + i, "abcd", "")});
      t = i % 2 == 0 ? t + step : t - step + 1;
    }
    const std::string message = encode(enc, recs);
    v1::Batch b;
    ASSERT_TRUE(b.ParseFromString(message));
    EXPECT_EQ(b.time_deltas_size(), 0);
    EXPECT_EQ(b.time_delta_planes().size(), recs.size() * static_cast<std::size_t>(width));
    expect_round_trip(message, recs);
  }
}

// A reused encoder starts each batch at one byte a record, and its estimate counts the planes it will write.
TEST(TimeDeltaPlanes, EachBatchOfAReusedEncoderHasItsOwnWidthAndItsEstimateCountsIt) {
  BatchEncoder enc(layout_of({small_schema()}));
  for (const std::uint64_t step : {std::uint64_t{1} << 40, std::uint64_t{1}, std::uint64_t{300}, std::uint64_t{1}}) {
    SCOPED_TRACE("step " + std::to_string(step));
    std::vector<Rec> recs;
    for (std::uint32_t i = 0; i < 200; ++i) recs.push_back({5000 + i * step, i % 2, small(i, "abcd", "x")});
    for (const Rec& r : recs) enc.add_record(r.time_ns, r.cpu, bytes_of(r.payload));
    const std::size_t estimate = enc.encoded_size_estimate();
    std::string message;
    enc.finish(7, message);
    enc.reset();
    const std::size_t width = step == 1 ? 1 : step == 300 ? 2 : 6;  // zigzag 2, 600 and 2^41
    v1::Batch b;
    ASSERT_TRUE(b.ParseFromString(message));
    EXPECT_EQ(b.time_delta_planes().size(), recs.size() * width);
    // The estimate is the message give or take its field headers: the planes (200 to 1200 bytes) are in it.
    EXPECT_NEAR(static_cast<double>(estimate), static_cast<double>(message.size()), 48.0);
    expect_round_trip(message, recs);
  }
}

// A batch of lost notices alone has no time column at all, planes or varints.
TEST(TimeDeltaPlanes, ABatchOfLostNoticesAloneHasNoPlanes) {
  BatchEncoder enc(layout_of({small_schema()}));
  const std::vector<Rec> recs = {{1000, 1, "", true}, {2000, 0, "", true}};
  const std::string message = encode(enc, recs);
  v1::Batch b;
  ASSERT_TRUE(b.ParseFromString(message));
  EXPECT_EQ(b.record_count(), 0u);
  EXPECT_TRUE(b.time_delta_planes().empty());
  EXPECT_EQ(b.time_deltas_size(), 0);
  EXPECT_EQ(b.lost_size(), 2);
  expect_round_trip(message, recs);
}

TEST(TimeDeltaPlanes, BadPlanesAreRefusedWithTheReason) {
  v1::Batch good;
  ASSERT_TRUE(good.ParseFromString(two_record_batch()));
  ASSERT_EQ(good.time_delta_planes(), std::string("\x00\x0a", 2));
  auto with = [&](auto change) {
    v1::Batch b = good;
    change(b);
    const std::string message = b.SerializeAsString();
    const std::string error = decode_error(message);
    auto view = BatchView::parse(message);
    EXPECT_EQ(view ? std::string() : view.error().message(), error) << "BatchView says otherwise";
    return error;
  };
  EXPECT_EQ(with([](v1::Batch& b) {
              b.add_time_deltas(0);
              b.add_time_deltas(5);
            }),
            "batch 7: time_deltas and time_delta_planes are both set");
  EXPECT_EQ(with([](v1::Batch& b) { b.mutable_time_delta_planes()->push_back('\0'); }),
            "batch 7: time_delta_planes has 3 bytes for 2 records (1 to 8 bytes a record)");
  EXPECT_EQ(with([](v1::Batch& b) { b.set_time_delta_planes(std::string(18, '\0')); }),
            "batch 7: time_delta_planes has 18 bytes for 2 records (1 to 8 bytes a record)");
  EXPECT_EQ(with([](v1::Batch& b) { b.set_record_count(0); }),
            "batch 7: time_delta_planes has 2 bytes for 0 records (1 to 8 bytes a record)");
  EXPECT_EQ(with([](v1::Batch& b) { b.set_record_count(3); }),
            "batch 7: time_delta_planes has 2 bytes for 3 records (1 to 8 bytes a record)");
  // Without planes or varints, the time column is simply short.
  EXPECT_EQ(with([](v1::Batch& b) { b.clear_time_delta_planes(); }),
            "batch 7: record_count 2 but columns of 0 times, 2 CPUs and 2 sizes");
}

TEST(ColumnarLayout, PlansFieldsGapsAndUnionsIntoTilingColumns) {
  v1::EventSchema s = small_schema();
  s.set_fixed_size(20);
  *s.add_fields() = schema_field("ts", v1::Field::UNSIGNED, 14, 4);
  *s.add_fields() = schema_field("ts_low", v1::Field::UNSIGNED, 14, 2);  // inside ts: left to it
  const ColumnPlan plan = ColumnarLayout::plan_for_schema(s);
  std::string got;
  for (const auto& c : plan.columns) {
    got += std::to_string(c.offset) + "+" + std::to_string(c.width) + ":" + std::to_string(static_cast<int>(c.encoding)) + " ";
  }
  EXPECT_EQ(got, "0+4:1 4+4:2 8+4:3 12+2:0 14+4:1 18+2:0 ");
}

TEST(ColumnarLayout, PlansTheRecordTimeFieldAsTimeOffsetWhenItIsEightBytes) {
  v1::EventSchema s = small_schema();
  s.set_fixed_size(28);
  *s.add_fields() = schema_field("ts", v1::Field::UNSIGNED, 12, 8);
  *s.add_fields() = schema_field("other", v1::Field::UNSIGNED, 20, 8);
  auto encodings = [](const ColumnPlan& plan) {
    std::string got;
    for (const auto& c : plan.columns) got += std::to_string(static_cast<int>(c.encoding));
    return got;
  };
  EXPECT_EQ(encodings(ColumnarLayout::plan_for_schema(s, "ts")), "12352");
  EXPECT_EQ(encodings(ColumnarLayout::plan_for_schema(s)), "12322");
  EXPECT_EQ(encodings(ColumnarLayout::plan_for_schema(s, "pid")), "12322");  // 4 bytes: not a time
  v1::TraceHeader h;
  *h.add_events() = s;
  h.set_record_time_field("ts");
  h.set_record_time(v1::RECORD_TIME_PERF_SAMPLE);  // the kernel's times: ts is not the records' time
  EXPECT_EQ(encodings(ColumnarLayout::for_header(h).plans()[0]), "12322");
  h.set_record_time(v1::RECORD_TIME_EVENT_FIELD);
  EXPECT_EQ(encodings(ColumnarLayout::for_header(h).plans()[0]), "12352");
}

}  // namespace
}  // namespace perfstream
