#include "collector/decode/record_decoder.hpp"

#include <linux/perf_event.h>

#include <cstdio>
#include <cstring>
#include <iterator>
#include <string>

namespace perfstream {
namespace {

constexpr std::uint64_t kSupportedSampleType = PERF_SAMPLE_IDENTIFIER | PERF_SAMPLE_IP | PERF_SAMPLE_TID |
                                               PERF_SAMPLE_TIME | PERF_SAMPLE_ADDR | PERF_SAMPLE_ID |
                                               PERF_SAMPLE_STREAM_ID | PERF_SAMPLE_CPU | PERF_SAMPLE_PERIOD |
                                               PERF_SAMPLE_RAW;

// The PERF_SAMPLE_* names by bit number (enum perf_event_sample_format), to say which fields are refused.
constexpr const char* kSampleTypeBitNames[] = {
    "IP", "TID", "TIME", "ADDR", "READ", "CALLCHAIN", "ID", "CPU", "PERIOD", "STREAM_ID", "RAW", "BRANCH_STACK",
    "REGS_USER", "STACK_USER", "WEIGHT", "DATA_SRC", "IDENTIFIER", "TRANSACTION", "REGS_INTR", "PHYS_ADDR", "AUX",
    "CGROUP", "DATA_PAGE_SIZE", "CODE_PAGE_SIZE", "WEIGHT_STRUCT"};
static_assert(PERF_SAMPLE_CALLCHAIN == 1u << 5 && PERF_SAMPLE_IDENTIFIER == 1u << 16 &&
              PERF_SAMPLE_WEIGHT_STRUCT == 1u << (std::size(kSampleTypeBitNames) - 1));

// Reads fixed-size fields from a record, refusing to go past its end.
class FieldReader {
 public:
  explicit FieldReader(std::span<const std::byte> bytes) : bytes_(bytes) {}

  template <typename T>
  bool read(T& out) {
    if (bytes_.size() - offset_ < sizeof(T)) return false;
    std::memcpy(&out, bytes_.data() + offset_, sizeof(T));
    offset_ += sizeof(T);
    return true;
  }
  bool skip(std::size_t n) {
    if (bytes_.size() - offset_ < n) return false;
    offset_ += n;
    return true;
  }
  std::span<const std::byte> take(std::size_t n) {
    auto out = bytes_.subspan(offset_, n);
    offset_ += n;
    return out;
  }
  std::size_t remaining() const { return bytes_.size() - offset_; }

 private:
  std::span<const std::byte> bytes_;
  std::size_t offset_ = 0;
};

// Makes `out` a Malformed record and nothing else (every other field back to its default).
void malformed(DecodedRecord& out, std::uint32_t type, const char* why) {
  out = DecodedRecord{};
  out.kind = RecordKind::Malformed;
  out.type = type;
  out.malformed = why;
}

}  // namespace

Result<RecordDecoder> RecordDecoder::create(std::uint64_t sample_type, bool sample_id_all) {
  if (const std::uint64_t unsupported = sample_type & ~kSupportedSampleType; unsupported != 0) {
    std::string names;
    for (unsigned bit = 0; bit < 64; ++bit) {
      if ((unsupported & (std::uint64_t{1} << bit)) == 0) continue;
      if (!names.empty()) names += ", ";
      names += bit < std::size(kSampleTypeBitNames) ? std::string(kSampleTypeBitNames[bit])
                                                    : "bit " + std::to_string(bit);
    }
    return Error("record decoder: sample_type 0x" + [&] {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%llx", static_cast<unsigned long long>(sample_type));
      return std::string(buf);
    }() + " has fields perfstream does not decode: " + names +
                 " (only IDENTIFIER, IP, TID, TIME, ADDR, ID, STREAM_ID, CPU, PERIOD, RAW)");
  }
  return RecordDecoder(sample_type, sample_id_all);
}

RecordDecoder::RecordDecoder(std::uint64_t sample_type, bool sample_id_all)
    : sample_type_(sample_type), sample_id_all_(sample_id_all), sample_id_size_(0) {
  // The order of a sample's fields (enum perf_event_sample_format); decode_slow reads them the same way.
  std::uint16_t offset = sizeof(perf_event_header);
  auto field = [&](std::uint64_t bit, std::uint16_t* at) {
    if ((sample_type_ & bit) == 0) return;
    if (at != nullptr) *at = offset;
    offset += 8;
  };
  field(PERF_SAMPLE_IDENTIFIER, &layout_.id);
  field(PERF_SAMPLE_IP, nullptr);
  field(PERF_SAMPLE_TID, &layout_.tid);
  field(PERF_SAMPLE_TIME, &layout_.time);
  field(PERF_SAMPLE_ADDR, nullptr);
  field(PERF_SAMPLE_ID, &layout_.id);  // after IDENTIFIER: the same id, and decode_slow keeps this one
  field(PERF_SAMPLE_STREAM_ID, nullptr);
  field(PERF_SAMPLE_CPU, &layout_.cpu);
  field(PERF_SAMPLE_PERIOD, nullptr);
  if (sample_type_ & PERF_SAMPLE_RAW) {
    layout_.raw = offset;
    offset += 4;
  }
  layout_.min_size = offset;
  if (sample_id_all_) {
    for (std::uint64_t bit : {PERF_SAMPLE_TID, PERF_SAMPLE_TIME, PERF_SAMPLE_ID, PERF_SAMPLE_STREAM_ID,
                              PERF_SAMPLE_CPU, PERF_SAMPLE_IDENTIFIER}) {
      if (sample_type_ & bit) sample_id_size_ += 8;
    }
  }
}

bool RecordDecoder::read_sample_id(std::span<const std::byte> trailer, LostView& lost) const {
  // struct sample_id { {pid, tid} if TID; time if TIME; id if ID; stream_id if STREAM_ID;
  //                    {cpu, res} if CPU; id if IDENTIFIER }
  FieldReader r(trailer);
  std::uint32_t u32 = 0;
  std::uint64_t u64 = 0;
  if ((sample_type_ & PERF_SAMPLE_TID) && !r.skip(8)) return false;
  if ((sample_type_ & PERF_SAMPLE_TIME) && !r.read(lost.time)) return false;
  if ((sample_type_ & PERF_SAMPLE_ID) && !r.read(u64)) return false;
  if ((sample_type_ & PERF_SAMPLE_STREAM_ID) && !r.read(u64)) return false;
  if (sample_type_ & PERF_SAMPLE_CPU) {
    if (!r.read(lost.cpu) || !r.read(u32)) return false;
  }
  lost.has_sample_id = true;
  return true;
}

void RecordDecoder::decode_slow(std::span<const std::byte> record, DecodedRecord& out) const {
  perf_event_header header;
  if (record.size() < sizeof(header)) return malformed(out, 0, "record shorter than its header");
  std::memcpy(&header, record.data(), sizeof(header));
  if (header.size != record.size()) {
    return malformed(out, header.type, "header size differs from the record's length");
  }
  FieldReader r(record.subspan(sizeof(header)));

  out.type = header.type;
  switch (header.type) {
    case PERF_RECORD_SAMPLE: {
      out.kind = RecordKind::Sample;
      SampleView& s = out.sample;
      std::uint64_t skip = 0;
      std::uint32_t reserved = 0;
      bool ok = true;
      if (sample_type_ & PERF_SAMPLE_IDENTIFIER) ok = ok && r.read(s.id);
      if (sample_type_ & PERF_SAMPLE_IP) ok = ok && r.read(skip);
      if (sample_type_ & PERF_SAMPLE_TID) ok = ok && r.read(s.pid) && r.read(s.tid);
      if (sample_type_ & PERF_SAMPLE_TIME) ok = ok && r.read(s.time);
      if (sample_type_ & PERF_SAMPLE_ADDR) ok = ok && r.read(skip);
      if (sample_type_ & PERF_SAMPLE_ID) ok = ok && r.read(s.id);
      if (sample_type_ & PERF_SAMPLE_STREAM_ID) ok = ok && r.read(skip);
      if (sample_type_ & PERF_SAMPLE_CPU) ok = ok && r.read(s.cpu) && r.read(reserved);
      if (sample_type_ & PERF_SAMPLE_PERIOD) ok = ok && r.read(skip);
      if (!ok) return malformed(out, header.type, "sample shorter than its sample_type fields");
      if (sample_type_ & PERF_SAMPLE_RAW) {
        std::uint32_t raw_size = 0;
        if (!r.read(raw_size)) return malformed(out, header.type, "sample ends before its raw size");
        if (raw_size > r.remaining()) return malformed(out, header.type, "raw size runs past the end of the sample");
        s.raw = r.take(raw_size);
      }
      return;
    }
    case PERF_RECORD_LOST: {
      out.kind = RecordKind::Lost;
      if (!r.read(out.lost.id) || !r.read(out.lost.lost)) return malformed(out, header.type, "lost record too short");
      if (sample_id_all_ && r.remaining() >= sample_id_size_) read_sample_id(r.take(sample_id_size_), out.lost);
      return;
    }
    case PERF_RECORD_LOST_SAMPLES: {
      out.kind = RecordKind::LostSamples;
      if (!r.read(out.lost.lost)) return malformed(out, header.type, "lost-samples record too short");
      if (sample_id_all_ && r.remaining() >= sample_id_size_) read_sample_id(r.take(sample_id_size_), out.lost);
      return;
    }
    default:
      out.kind = RecordKind::Other;
      return;
  }
}

}  // namespace perfstream
