// BatchEncoder: builds one perfstream.v1.Batch (see proto/perfstream.proto) in protobuf wire format,
// column by column, straight from sample views: times as deltas (sint64), CPUs, payload sizes, and the
// payload bytes concatenated. Columns compress far better than interleaved records: deltas and CPUs are
// small repeating numbers, and payloads of one type line up.
//
// Given a ColumnarLayout (format version 3, columnar_payloads.hpp), a payload its plans rebuild exactly is
// stored field by field in its kind's column group, and record_groups says which group each record is in;
// any other payload is stored whole in the payload column, as in version 1; and the time deltas are stored
// as byte planes (time_delta_planes.hpp) instead of varints. Without a layout (or with an empty one) the
// batch is a version 1 batch.
//
// One encoder per thread; reset() after finish() reuses its buffers, so steady-state encoding allocates
// nothing. Payload bytes are read out of the ring once, into their columns (or the payload column); finish()
// then assembles the message from the columns, which with a layout are a fraction of the payload bytes. A
// ring reader keeps its views until its pass ends, so it lets the encoder read them a block at a time
// (PayloadViews::KeptUntilFlush) and flushes at the pass's end.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "collector/format/columnar_payloads.hpp"
#include "collector/format/protobuf_wire.hpp"
#include "collector/format/time_delta_planes.hpp"

namespace perfstream {

class BatchEncoder {
 public:
  BatchEncoder() = default;
  // `views`: how long add_record's payload views stay valid (columnar_payloads.hpp); with KeptUntilFlush,
  // until flush_views() or finish().
  explicit BatchEncoder(std::shared_ptr<const ColumnarLayout> layout,
                        PayloadViews views = PayloadViews::ReadInAdd);

  void add_record(std::uint64_t time_ns, std::uint32_t cpu, std::span<const std::byte> payload);
  // Reads every payload view taken and not read yet (KeptUntilFlush): after it, they may go.
  void flush_views() {
    if (columnar_) columnar_->flush();
  }
  // A loss noticed before the next record added (source 0 = kernel, 1 = collector).
  void add_lost(std::uint32_t cpu, std::uint64_t count, std::uint64_t time_ns, std::uint32_t source = 0);

  std::uint32_t record_count() const { return records_; }
  std::uint32_t lost_count() const { return lost_notices_; }
  bool empty() const { return records_ == 0 && lost_notices_ == 0; }
  // Bytes the encoded batch will take, give or take a few header bytes.
  std::size_t encoded_size_estimate() const {
    return time_deltas_.size() + time_planes_.encoded_size() + cpus_.size() + sizes_.size() + payloads_.size() +
           lost_.size() + record_groups_.size() + (columnar_ ? columnar_->encoded_size_estimate() : 0) + 48;
  }
  // The most a record with a payload of this size adds to encoded_size_estimate(), its time planes' widening
  // aside (time_widening_bytes): a varint for its time, CPU, size, group and tail, and for each payload byte
  // at most ColumnarEncoder::kMostEstimateBytesPerPayloadByte (21; a raw payload's byte counts once). A
  // caller may add records whose bounds sum below max_bytes - estimate without looking at the estimate.
  static constexpr std::size_t most_bytes_added(std::size_t payload_size) {
    return ColumnarEncoder::kMostEstimateBytesPerPayloadByte * payload_size + 5 * kMaxVarintBytes;
  }
  // Bytes a record at time_ns would add to the records already in the batch, besides its own: with a layout,
  // a time delta wider than all before it widens every record's time planes (time_delta_planes.hpp).
  std::size_t time_widening_bytes(std::uint64_t time_ns) const {
    if (!columnar_ || records_ == 0) return 0;
    return time_planes_.widening_bytes(wire::zigzag(static_cast<std::int64_t>(time_ns - last_time_)));
  }
  std::uint64_t first_time() const { return first_time_; }
  // The earliest and latest time of the batch's records and timed lost notices (0 when there are none).
  bool timed() const { return timed_; }
  std::uint64_t min_time() const { return min_time_; }
  std::uint64_t max_time() const { return max_time_; }

  // Encodes the batch into `out` (replacing its contents) with the given sequence number.
  void finish(std::uint64_t sequence, std::string& out);
  // Encodes the batch without its sequence: BatchWorker stamps it (append_batch_stamp) when it writes the
  // batch, so that sequence numbers follow the order in which batches reach the sink.
  void finish_unstamped(std::string& out);
  void reset();

 private:
  void note_time(std::uint64_t time_ns);
  // Records the four per-record columns take with no capacity check: make_room() reserves, in each, the
  // most kRoomRecords records can add (a varint each), and add_record() counts room_ down.
  static constexpr std::uint32_t kRoomRecords = 64;
  void make_room();
  void append_body(std::string& out);

  ByteBuffer time_deltas_;            // version 1: zigzag varints
  TimeDeltaPlanesWriter time_planes_;  // with a layout (version 3): byte planes
  ByteBuffer cpus_;
  ByteBuffer sizes_;
  ByteBuffer payloads_;
  ByteBuffer record_groups_;  // with a layout only: 0 raw, g + 1 in group g
  std::unique_ptr<ColumnarEncoder> columnar_;  // null: version 1
  std::string lost_;  // encoded LostNotice sub-messages, each with its field tag
  std::uint64_t first_time_ = 0;
  std::uint64_t last_time_ = 0;
  std::uint64_t min_time_ = 0;
  std::uint64_t max_time_ = 0;
  bool timed_ = false;
  std::uint32_t records_ = 0;
  std::uint32_t lost_notices_ = 0;
  std::uint32_t room_ = 0;
};

// Inline: the collector's per-record path (BatchingConsumer::on_samples) runs it in its loop.
inline void BatchEncoder::add_record(std::uint64_t time_ns, std::uint32_t cpu, std::span<const std::byte> payload) {
  if (records_ == 0) {
    first_time_ = time_ns;
    last_time_ = time_ns;
  }
  note_time(time_ns);
  if (room_ == 0) make_room();
  --room_;
  const std::uint64_t delta = wire::zigzag(static_cast<std::int64_t>(time_ns - last_time_));
  if (columnar_) {
    time_planes_.add_unchecked(delta);
  } else {
    time_deltas_.set_end(put_varint_unchecked(time_deltas_.end(), delta));
  }
  last_time_ = time_ns;
  cpus_.set_end(put_varint_unchecked(cpus_.end(), cpu));
  sizes_.set_end(put_varint_unchecked(sizes_.end(), payload.size()));
  std::uint32_t group = 0;
  if (columnar_ && columnar_->add(payload, time_ns, group)) {
    record_groups_.set_end(put_varint_unchecked(record_groups_.end(), group + 1));
  } else {
    if (columnar_) record_groups_.set_end(put_varint_unchecked(record_groups_.end(), 0));
    payloads_.append(payload.data(), payload.size());
  }
  ++records_;
}

inline void BatchEncoder::note_time(std::uint64_t time_ns) {
  if (!timed_ || time_ns < min_time_) min_time_ = time_ns;
  if (!timed_ || time_ns > max_time_) max_time_ = time_ns;
  timed_ = true;
}

// Appends the sequence (Batch field 1) and watermark (field 9) to an encoded batch. A protobuf parser takes
// the last value of a scalar field, and finish_unstamped() writes neither, so the stamp is the batch's.
void append_batch_stamp(std::string& encoded, std::uint64_t sequence, std::uint64_t watermark_ns);

}  // namespace perfstream
