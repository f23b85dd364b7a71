// RecordDecoder: turns one perf ring record (header included) into a typed view, without copying.
//
// PERF_RECORD_SAMPLE is laid out by the event's sample_type. The fields before PERF_SAMPLE_RAW that a
// BPF-output event can carry are supported (IDENTIFIER, IP, TID, TIME, ADDR, ID, STREAM_ID, CPU, PERIOD);
// READ, CALLCHAIN and the fields after RAW are refused when the decoder is created, because they are never
// set on the events perfstream opens and their layout depends on further attributes.
// The raw area is `u32 size; u8 data[size]` and the kernel pads it so the record stays 8-byte aligned:
// SampleView::raw therefore has up to 7 bytes of padding after the payload the BPF program wrote. The
// kernel skips the padding without writing it (__output_skip): it holds whatever the ring held there before,
// zeros only until the ring first wraps.
// Payload formats carry their own length when they need an exact one.
//
// PERF_RECORD_LOST is `u64 id; u64 lost;` and PERF_RECORD_LOST_SAMPLES is `u64 lost;`, both followed by the
// sample_id trailer when sample_id_all is set; that trailer gives the CPU and time of the notice.
// Any other type is reported as RecordKind::Other with its type, to be counted and skipped.
// A record whose fields run past its own size is RecordKind::Malformed, with a reason.
//
// Views point into the record's bytes and share their validity (see PerfRing::Pass).
#pragma once

#include <linux/perf_event.h>

#include <cstdint>
#include <cstring>
#include <span>

#include "collector/util/result.hpp"

namespace perfstream {

struct SampleView {
  std::uint64_t time = 0;      // PERF_SAMPLE_TIME, else 0
  std::uint32_t cpu = 0;       // PERF_SAMPLE_CPU, else 0
  std::uint32_t pid = 0;       // PERF_SAMPLE_TID, else 0
  std::uint32_t tid = 0;
  std::uint64_t id = 0;        // PERF_SAMPLE_ID or IDENTIFIER, else 0
  std::span<const std::byte> raw;  // PERF_SAMPLE_RAW bytes, kernel padding included
};

struct LostView {
  std::uint64_t id = 0;        // event id (PERF_RECORD_LOST only)
  std::uint64_t lost = 0;      // samples the kernel dropped since the previous notice
  std::uint64_t time = 0;      // from the sample_id trailer, 0 without one
  std::uint32_t cpu = 0;
  bool has_sample_id = false;
};

enum class RecordKind { Sample, Lost, LostSamples, Other, Malformed };

struct DecodedRecord {
  RecordKind kind = RecordKind::Other;
  std::uint32_t type = 0;      // perf_event_header::type
  SampleView sample;           // kind == Sample
  LostView lost;               // kind == Lost or LostSamples
  const char* malformed = "";  // kind == Malformed: why (a static string)
};

class RecordDecoder {
 public:
  // sample_type and sample_id_all as given to perf_event_open.
  static Result<RecordDecoder> create(std::uint64_t sample_type, bool sample_id_all);

  // Inline: a sample (the common case) is read here at offsets computed once and returned as one value,
  // which the caller builds in place without a call, a copy or a memset; every other record, and any
  // sample whose sizes do not add up, goes to decode_slow, which classifies it field by field. The two give
  // the same result for any sample (docs/BENCHMARKS.md, "Where the drain's time went").
  DecodedRecord decode(std::span<const std::byte> record) const {
    SampleView s;
    if (decode_sample(record, s)) {
      return DecodedRecord{.kind = RecordKind::Sample, .type = PERF_RECORD_SAMPLE, .sample = s, .lost = {}, .malformed = ""};
    }
    DecodedRecord out;
    decode_slow(record, out);
    return out;
  }
  // decode()'s fast path alone, written field by field into `out` (every field): true for a sample read
  // there; false, `out` then unspecified, for any record decode() hands to decode_slow. A drain writes
  // straight into its block of samples this way: a SampleView built apart and copied in would be loaded
  // back in 16-byte pieces over the narrower stores just made, which store-to-load forwarding cannot serve
  // (the drain's worst stall in the kernel bench's profile).
  bool decode_sample(std::span<const std::byte> record, SampleView& out) const {
    if (record.size() < layout_.min_size) return false;
    const std::byte* p = record.data();
    perf_event_header header;
    std::memcpy(&header, p, sizeof(header));
    std::uint32_t raw_size = 0;
    if (layout_.raw != 0) std::memcpy(&raw_size, p + layout_.raw, sizeof(raw_size));
    if (header.type != PERF_RECORD_SAMPLE || header.size != record.size() ||
        raw_size > record.size() - layout_.min_size) {
      return false;
    }
    out = SampleView{};
    if (layout_.raw != 0) out.raw = record.subspan(layout_.min_size, raw_size);
    if (layout_.id != 0) std::memcpy(&out.id, p + layout_.id, sizeof(out.id));
    if (layout_.tid != 0) {
      std::memcpy(&out.pid, p + layout_.tid, sizeof(out.pid));
      std::memcpy(&out.tid, p + layout_.tid + 4, sizeof(out.tid));
    }
    if (layout_.time != 0) std::memcpy(&out.time, p + layout_.time, sizeof(out.time));
    if (layout_.cpu != 0) std::memcpy(&out.cpu, p + layout_.cpu, sizeof(out.cpu));
    return true;
  }

  // Any record, field by field, into a default-constructed `out`: what decode() does with a record
  // decode_sample does not read (a caller that tried decode_sample first calls this, not decode()).
  void decode_slow(std::span<const std::byte> record, DecodedRecord& out) const;

  std::uint64_t sample_type() const { return sample_type_; }

 private:
  RecordDecoder(std::uint64_t sample_type, bool sample_id_all);
  bool read_sample_id(std::span<const std::byte> trailer, LostView& lost) const;

  // Where a sample's fields lie for sample_type_: byte offsets from the record's start, 0 (the header's
  // place) when sample_type_ lacks the field; raw is the raw area's u32 size. min_size is the size below
  // which a sample cannot hold them all, and where the raw bytes start when there are any.
  struct SampleLayout {
    std::uint16_t id = 0, tid = 0, time = 0, cpu = 0, raw = 0;
    std::uint16_t min_size = sizeof(perf_event_header);
  };

  std::uint64_t sample_type_;
  bool sample_id_all_;
  std::size_t sample_id_size_;  // bytes of the sample_id trailer
  SampleLayout layout_;
};

}  // namespace perfstream
