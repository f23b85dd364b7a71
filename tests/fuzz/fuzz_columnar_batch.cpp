// Fuzzes the columnar batch decoders (format versions 2 and 3: columnar_payloads.hpp, time_delta_planes.hpp)
// on Batch messages with column groups and time delta planes, without the zstd frame around them, so that
// mutations land in the columns. Input: u8 mode | ...
//   mode bit 0 clear: the rest is a Batch message, decoded as it is;
//   mode bit 0 set:   u8 flips | records | flips x (u16 position, u8 xor): records are made from the input
//                     (a kind byte picks one of three schemas, then the payload bytes; with mode bit 2, an
//                     i64 and a shift give the time step to the record, of any width and sign, else 1 ns),
//                     encoded by BatchEncoder with their plans, then the message's bytes at `position` are
//                     XORed.
// Invariants: DecodedBatch and BatchView never crash; whatever both accept they read alike, times included;
// with no flip, both give back exactly the payloads and times that were encoded; an encoder reading the records a block at a time
// (PayloadViews::KeptUntilFlush, as a ring reader's does) writes the same bytes as one reading them one by one.
#include <string>
#include <vector>

#include "collector/format/batch_encoder.hpp"
#include "collector/format/trace_reader.hpp"
#include "collector/recording/decoded_batch.hpp"
#include "fuzz/fuzz_input.hpp"
#include "testing/schema_field.hpp"

using namespace perfstream;
using perfstream::fuzz::FuzzInput;

namespace {

using perfstream::testing::schema_field;

std::shared_ptr<const ColumnarLayout> layout() {
  v1::TraceHeader h;
  v1::EventSchema* a = h.add_events();
  a->set_kind(1);
  a->set_fixed_size(24);
  *a->add_fields() = schema_field("kind", v1::Field::UNSIGNED, 0, 4);
  *a->add_fields() = schema_field("pid", v1::Field::SIGNED, 4, 4);
  *a->add_fields() = schema_field("comm", v1::Field::STRING, 8, 8);
  *a->add_fields() = schema_field("ts", v1::Field::UNSIGNED, 16, 8);
  v1::EventSchema* b = h.add_events();
  b->set_kind(2);
  b->set_fixed_size(11);
  *b->add_fields() = schema_field("kind", v1::Field::UNSIGNED, 0, 4);
  *b->add_fields() = schema_field("x", v1::Field::SIGNED, 5, 3);
  *b->add_fields() = schema_field("path", v1::Field::STRING, 11, 64);
  // Kind 1's ts is planned as the record's time field (TIME_OFFSET).
  return std::make_shared<const ColumnarLayout>(ColumnarLayout::from_schemas(h.events(), "ts"));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::shared_ptr<const ColumnarLayout> plans = layout();
  FuzzInput in(data, size);
  const std::uint8_t mode = in.take<std::uint8_t>();
  std::string message;
  std::vector<std::string> payloads;
  std::vector<std::uint64_t> times;
  std::size_t flips = 0;
  if ((mode & 1) == 0) {
    const auto rest = in.rest();
    message.assign(reinterpret_cast<const char*>(rest.data()), rest.size());
  } else {
    flips = in.take<std::uint8_t>() % 4;
    const std::size_t records = in.take<std::uint8_t>() % 160;  // past a block of 64
    BatchEncoder enc(plans);
    BatchEncoder blocks(plans, PayloadViews::KeptUntilFlush);
    payloads.reserve(records);  // the views stay where they are until finish()
    std::uint64_t time = 1000;
    for (std::size_t i = 0; i < records && in.remaining() > 0; ++i) {
      if ((mode & 4) != 0) {
        const auto step = in.take<std::int64_t>();
        time += static_cast<std::uint64_t>(step >> (in.take<std::uint8_t>() % 64));
      } else {
        time += 1;
      }
      times.push_back(time);
      const std::uint8_t kind = in.take<std::uint8_t>() % 3;
      const auto bytes = in.take_bytes(in.take<std::uint8_t>() % 48);
      std::string p(reinterpret_cast<const char*>(bytes.data()), bytes.size());
      if (p.size() >= 4) {
        p[0] = static_cast<char>(kind);
        p[1] = p[2] = p[3] = 0;
      }
      payloads.push_back(std::move(p));
      const std::string& kept = payloads.back();
      const std::span<const std::byte> view(reinterpret_cast<const std::byte*>(kept.data()), kept.size());
      enc.add_record(time, static_cast<std::uint32_t>(i % 2), view);
      blocks.add_record(time, static_cast<std::uint32_t>(i % 2), view);
    }
    enc.finish(1, message);
    std::string by_blocks;
    blocks.finish(1, by_blocks);
    FUZZ_CHECK(by_blocks == message);
    for (std::size_t f = 0; f < flips && !message.empty(); ++f) {
      const auto at = in.take<std::uint16_t>() % message.size();
      message[at] = static_cast<char>(message[at] ^ in.take<std::uint8_t>());
    }
  }
  recording::DecodedBatch decoded;
  std::string copy = message;
  const Status st = decoded.decode(copy, 1u << 16, 1u << 24);
  auto view = BatchView::parse(message);
  if ((mode & 1) != 0 && flips == 0) {
    FUZZ_CHECK(st && view);
    FUZZ_CHECK(decoded.size() == payloads.size() && view->size() == payloads.size());
    for (std::size_t i = 0; i < payloads.size(); ++i) {
      FUZZ_CHECK(std::string(decoded.payload(i).data(), decoded.payload(i).size()) == payloads[i]);
      const auto r = view->record(i);
      FUZZ_CHECK(std::string(r.payload.data(), r.payload.size()) == payloads[i]);
      FUZZ_CHECK(decoded.times[i] == times[i] && r.time_ns == times[i]);
    }
  }
  if (st && view) {
    FUZZ_CHECK(decoded.size() == view->size());
    for (std::size_t i = 0; i < decoded.size(); ++i) {
      const auto r = view->record(i);
      FUZZ_CHECK(std::string(decoded.payload(i).data(), decoded.payload(i).size()) ==
                 std::string(r.payload.data(), r.payload.size()));
      FUZZ_CHECK(decoded.times[i] == r.time_ns && decoded.cpus[i] == r.cpu);
    }
  }
  return 0;
}
