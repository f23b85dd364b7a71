// DecodedBatch: one perfstream.v1.Batch (proto/perfstream.proto) decoded straight from its wire bytes into
// flat columns, for readers that go through millions of records: no protobuf objects, one allocation per
// column, payloads left in the message bytes the batch owns (version 1), or rebuilt from the batch's column
// groups into a buffer the batch owns (version 2, format/columnar_payloads.hpp), so that payload(i) is the
// same for both.
//
// Contract, as for any reader of the format (docs/FORMAT.md):
//   - record i has time first_time_ns + time_deltas[0] + ... + time_deltas[i] (or the deltas of
//     time_delta_planes, format/time_delta_planes.hpp, when the batch has them and no time_deltas), CPU
//     cpus[i], and the next sizes[i] bytes of `payloads`; the columns must have record_count entries each
//     and the sizes must add up to the payload bytes exactly;
//   - a lost notice's `before` is at most record_count; its time, when 0, is taken from the record it
//     precedes (or the batch's last record, or first_time_ns when the batch has none): sort_time_ns;
//   - fields may come in any order and scalars repeated (the last one counts, as protobuf parsers do); unknown
//     fields are skipped; repeated numbers are read packed or not.
// Limits: a batch declaring (or holding) more than max_records records is refused with a message that names
// the limit, before anything of that size is allocated; a version 2 batch whose payloads add up to more than
// max_payload_bytes is refused before they are rebuilt.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "collector/util/result.hpp"

namespace perfstream::recording {

struct LostEntry {
  std::uint32_t cpu = 0;
  std::uint64_t count = 0;
  std::uint64_t time_ns = 0;       // as recorded; 0 when the notice carried none
  std::uint32_t before = 0;        // index of the record it precedes
  bool from_collector = false;     // source COLLECTOR (perfstream dropped them); else KERNEL
  std::uint64_t sort_time_ns = 0;  // time_ns, or the time of the record it precedes (see above)
};

class DecodedBatch {
 public:
  std::uint64_t sequence = 0;
  std::uint64_t first_time_ns = 0;
  std::uint64_t watermark_ns = 0;
  std::vector<std::uint64_t> times;
  std::vector<std::uint32_t> cpus;
  std::vector<std::uint32_t> offsets;  // of each payload in payloads()
  std::vector<std::uint32_t> sizes;
  std::vector<LostEntry> lost;

  std::size_t size() const { return times.size(); }
  std::span<const char> payload(std::size_t i) const { return std::span<const char>(base() + offsets[i], sizes[i]); }
  std::span<const char> payloads() const { return std::span<const char>(base(), payloads_size_); }
  // True when the batch stored (some of) its payloads in column groups (format version 2).
  bool columnar() const { return columnar_; }
  // The decompressed message (protobuf bytes) the batch was decoded from.
  std::size_t message_bytes() const { return message_.size(); }
  // What this batch holds in memory, about.
  std::size_t memory_bytes() const {
    return message_.capacity() + rebuilt_.capacity() + times.capacity() * 8 + (cpus.capacity() + offsets.capacity() + sizes.capacity()) * 4 +
           lost.capacity() * sizeof(LostEntry);
  }

  // Decodes `message`, which the batch takes by swapping: `message` is left holding the batch's previous
  // buffer, for the caller to fill again (a reader of millions of batches allocates none in steady state).
  // On failure the batch is left empty and the error says why: "batch 9: record sizes run past the payload
  // bytes".
  Status decode(std::string& message, std::uint32_t max_records, std::size_t max_payload_bytes = kMaxPayloadBytes);
  // The reader's default limit on a version 2 batch's rebuilt payloads (a writer closes batches at 32 MiB of
  // encoded bytes; rebuilt payloads are a few times that at most).
  static constexpr std::size_t kMaxPayloadBytes = std::size_t{256} << 20;

 private:
  bool read_fields(std::uint32_t max_records, std::uint64_t& record_count, bool& over);
  Status resolve_columns(std::size_t record_count, std::size_t max_payload_bytes);
  const char* base() const { return columnar_ ? rebuilt_.data() : message_.data() + payloads_at_; }

  std::string message_;
  std::size_t payloads_at_ = 0;
  std::size_t payloads_size_ = 0;
  // Version 2: which group each record is in, the groups, and the payloads rebuilt from them.
  bool columnar_ = false;
  std::vector<std::uint32_t> record_groups_;
  std::vector<std::span<const char>> group_bytes_;
  std::span<const unsigned char> time_planes_;  // version 3: in message_
  std::string rebuilt_;
};

}  // namespace perfstream::recording
