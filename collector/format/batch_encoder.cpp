#include "collector/format/batch_encoder.hpp"

#include "collector/format/protobuf_wire.hpp"

namespace perfstream {

// Field numbers of perfstream.v1.Batch and LostNotice.
namespace {
constexpr std::uint32_t kBatchSequence = 1, kBatchFirstTime = 2, kBatchRecordCount = 3, kBatchTimeDeltas = 4,
                        kBatchCpus = 5, kBatchSizes = 6, kBatchPayloads = 7, kBatchLost = 8, kBatchWatermark = 9,
                        kBatchRecordGroups = 10, kBatchGroups = 11, kBatchTimeDeltaPlanes = 12;
constexpr std::uint32_t kLostCpu = 1, kLostCount = 2, kLostTime = 3, kLostBefore = 4, kLostSource = 5;
}  // namespace

BatchEncoder::BatchEncoder(std::shared_ptr<const ColumnarLayout> layout, PayloadViews views) {
  if (layout && !layout->empty()) columnar_ = std::make_unique<ColumnarEncoder>(std::move(layout), views);
}

void BatchEncoder::make_room() {
  for (ByteBuffer* column : {&cpus_, &sizes_, &record_groups_}) column->reserve(kRoomRecords * kMaxVarintBytes);
  if (columnar_) {
    time_planes_.reserve(kRoomRecords);
  } else {
    time_deltas_.reserve(kRoomRecords * kMaxVarintBytes);
  }
  room_ = kRoomRecords;
}

void BatchEncoder::add_lost(std::uint32_t cpu, std::uint64_t count, std::uint64_t time_ns, std::uint32_t source) {
  if (time_ns != 0) note_time(time_ns);
  std::string notice;
  wire::put_uint_field(notice, kLostCpu, cpu);
  wire::put_uint_field(notice, kLostCount, count);
  wire::put_uint_field(notice, kLostTime, time_ns);
  wire::put_uint_field(notice, kLostBefore, records_);
  wire::put_uint_field(notice, kLostSource, source);
  wire::put_tag(lost_, kBatchLost, wire::kLengthDelimited);
  wire::put_varint(lost_, notice.size());
  lost_ += notice;
  ++lost_notices_;
}

void BatchEncoder::finish(std::uint64_t sequence, std::string& out) {
  out.clear();
  out.reserve(encoded_size_estimate());
  wire::put_uint_field(out, kBatchSequence, sequence);
  append_body(out);
}

void BatchEncoder::finish_unstamped(std::string& out) {
  out.clear();
  out.reserve(encoded_size_estimate());
  append_body(out);
}

void BatchEncoder::append_body(std::string& out) {
  wire::put_uint_field(out, kBatchFirstTime, first_time_);
  wire::put_uint_field(out, kBatchRecordCount, records_);
  if (time_planes_.count() != 0) {
    wire::put_tag(out, kBatchTimeDeltaPlanes, wire::kLengthDelimited);
    wire::put_varint(out, time_planes_.encoded_size());
    time_planes_.append_planes(out);
  }
  wire::put_bytes_field(out, kBatchTimeDeltas, time_deltas_.view());
  wire::put_bytes_field(out, kBatchCpus, cpus_.view());
  wire::put_bytes_field(out, kBatchSizes, sizes_.view());
  wire::put_bytes_field(out, kBatchPayloads, payloads_.view());
  out += lost_;
  if (columnar_) {
    wire::put_bytes_field(out, kBatchRecordGroups, record_groups_.view());
    columnar_->append_groups(out, kBatchGroups);
  }
}

void BatchEncoder::reset() {
  time_deltas_.clear();
  time_planes_.clear();
  cpus_.clear();
  sizes_.clear();
  payloads_.clear();
  record_groups_.clear();
  if (columnar_) columnar_->reset();
  lost_.clear();
  first_time_ = last_time_ = min_time_ = max_time_ = 0;
  timed_ = false;
  records_ = lost_notices_ = 0;
}

void append_batch_stamp(std::string& encoded, std::uint64_t sequence, std::uint64_t watermark_ns) {
  wire::put_uint_field(encoded, kBatchSequence, sequence);
  wire::put_uint_field(encoded, kBatchWatermark, watermark_ns);
}

}  // namespace perfstream
