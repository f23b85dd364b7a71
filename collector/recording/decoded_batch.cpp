#include "collector/recording/decoded_batch.hpp"

#include <limits>

#include "collector/format/columnar_payloads.hpp"
#include "collector/format/protobuf_wire.hpp"
#include "collector/format/time_delta_planes.hpp"

namespace perfstream::recording {
namespace {

// Field numbers of perfstream.v1.Batch and LostNotice.
constexpr std::uint32_t kSequence = 1, kFirstTime = 2, kRecordCount = 3, kTimeDeltas = 4, kCpus = 5, kSizes = 6,
                        kPayloads = 7, kLost = 8, kWatermark = 9, kRecordGroups = 10, kGroups = 11,
                        kTimeDeltaPlanes = 12;
constexpr std::uint32_t kLostCpu = 1, kLostCount = 2, kLostTime = 3, kLostBefore = 4, kLostSource = 5;

using Wire = wire::Reader;
using wire::unzigzag;

// A u32 column's value (sizes, record_groups); anything larger reads as the largest, which no check passes.
std::uint32_t clamp_u32(std::uint64_t v) {
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(v, std::numeric_limits<std::uint32_t>::max()));
}

// Appends the numbers of a repeated field, packed (wire type 2) or one (wire type 0); false past `limit`.
template <typename T, typename Convert>
bool read_numbers(Wire& w, std::uint32_t wire_type, std::vector<T>& out, std::size_t limit, Convert convert) {
  if (wire_type == 0) {
    if (out.size() >= limit) return false;
    out.push_back(convert(w.varint()));
    return true;
  }
  if (wire_type != 2) {
    w.bad = true;
    return true;
  }
  Wire packed = w.sub();
  while (!packed.done()) {
    if (out.size() >= limit) return false;
    out.push_back(convert(packed.varint()));
  }
  if (packed.bad) w.bad = true;
  return true;
}

// One LostNotice message; a bad varint marks `n` bad.
LostEntry read_lost_notice(Wire& n) {
  LostEntry e;
  while (!n.done()) {
    const std::uint64_t t = n.varint();
    const auto f = static_cast<std::uint32_t>(t >> 3);
    if ((t & 7) != 0) {
      n.skip(static_cast<std::uint32_t>(t & 7));
      continue;
    }
    const std::uint64_t v = n.varint();
    if (f == kLostCpu) e.cpu = static_cast<std::uint32_t>(v);
    else if (f == kLostCount) e.count = v;
    else if (f == kLostTime) e.time_ns = v;
    else if (f == kLostBefore) e.before = static_cast<std::uint32_t>(std::min<std::uint64_t>(v, UINT32_MAX));
    else if (f == kLostSource) e.from_collector = v == 1;
  }
  return e;
}

}  // namespace

Status DecodedBatch::decode(std::string& message, std::uint32_t max_records, std::size_t max_payload_bytes) {
  message_.swap(message);
  times.clear();
  cpus.clear();
  offsets.clear();
  sizes.clear();
  lost.clear();
  record_groups_.clear();
  group_bytes_.clear();
  columnar_ = false;
  sequence = first_time_ns = watermark_ns = 0;
  payloads_at_ = payloads_size_ = 0;
  time_planes_ = {};
  std::uint64_t record_count = 0;
  bool over = false;
  const bool valid = read_fields(max_records, record_count, over);
  Status st = over ? Error("batch " + std::to_string(sequence) + ": holds more than " + std::to_string(max_records) +
                           " records, the reader's limit per batch (--max-batch-records)")
              : !valid ? Error("batch: not a valid Batch message")
                       : resolve_columns(static_cast<std::size_t>(record_count), max_payload_bytes);
  if (!st) {
    times.clear();
    cpus.clear();
    offsets.clear();
    sizes.clear();
    lost.clear();
    columnar_ = false;
    payloads_size_ = 0;
  }
  return st;
}

// The wire loop: every known field into its column (times as the zigzag deltas they are sent as), unknown
// ones skipped. Stops early, setting `over`, once a column would pass max_records. False on a bad message.
bool DecodedBatch::read_fields(std::uint32_t max_records, std::uint64_t& record_count, bool& over) {
  const auto* begin = reinterpret_cast<const unsigned char*>(message_.data());
  Wire w{begin, begin + message_.size()};
  const std::size_t limit = std::size_t{max_records} + 1;  // one past: "more than the limit" is known
  while (!w.done() && !over) {
    const std::uint64_t tag = w.varint();
    const auto field = static_cast<std::uint32_t>(tag >> 3);
    const auto type = static_cast<std::uint32_t>(tag & 7);
    if (w.bad || field == 0) return false;  // field number 0 is invalid in protobuf
    switch (field) {
      case kSequence: if (type == 0) { sequence = w.varint(); continue; } break;
      case kFirstTime: if (type == 0) { first_time_ns = w.varint(); continue; } break;
      case kRecordCount:
        if (type == 0) {
          record_count = w.varint();
          over = record_count > max_records;
          continue;
        }
        break;
      case kWatermark: if (type == 0) { watermark_ns = w.varint(); continue; } break;
      case kTimeDeltas:
        over = !read_numbers(w, type, times, limit, [](std::uint64_t v) { return static_cast<std::uint64_t>(unzigzag(v)); });
        continue;
      case kCpus:
        over = !read_numbers(w, type, cpus, limit, [](std::uint64_t v) { return static_cast<std::uint32_t>(v); });
        continue;
      case kSizes:
        over = !read_numbers(w, type, sizes, limit, clamp_u32);
        continue;
      case kPayloads:
        if (type == 2) {
          Wire bytes = w.sub();
          payloads_at_ = static_cast<std::size_t>(bytes.p - begin);
          payloads_size_ = static_cast<std::size_t>(bytes.end - bytes.p);
          continue;
        }
        break;
      case kTimeDeltaPlanes:
        if (type == 2) {
          Wire bytes = w.sub();
          time_planes_ = {bytes.p, static_cast<std::size_t>(bytes.end - bytes.p)};
          continue;
        }
        break;
      case kRecordGroups:
        over = !read_numbers(w, type, record_groups_, limit, clamp_u32);
        continue;
      case kGroups:
        if (type == 2) {
          Wire g = w.sub();
          group_bytes_.emplace_back(reinterpret_cast<const char*>(g.p), static_cast<std::size_t>(g.end - g.p));
          continue;
        }
        break;
      case kLost:
        if (type == 2) {
          Wire n = w.sub();
          lost.push_back(read_lost_notice(n));
          if (n.bad) w.bad = true;
          over = lost.size() > limit - 1;
          continue;
        }
        break;
      default:
        break;
    }
    w.skip(type);  // an unknown field, or a known one of an unexpected wire type
  }
  return !w.bad;
}

// Checks the columns against each other and turns them into what readers use: absolute times, payload
// offsets, and each lost notice's place in time.
Status DecodedBatch::resolve_columns(std::size_t n, std::size_t max_payload_bytes) {
  const std::string name = "batch " + std::to_string(sequence);
  std::vector<std::uint64_t>& deltas = times;  // resolved in place
  if (!time_planes_.empty()) {
    if (auto st = read_time_delta_planes(name, time_planes_, n, deltas.size(), deltas); !st) return st;
  }
  if (deltas.size() != n || cpus.size() != n || sizes.size() != n) {
    return Error(name + ": record_count " + std::to_string(n) + " but columns of " + std::to_string(deltas.size()) +
                 " times, " + std::to_string(cpus.size()) + " CPUs and " + std::to_string(sizes.size()) + " sizes");
  }
  std::uint64_t time = first_time_ns;
  for (std::size_t i = 0; i < n; ++i) times[i] = time += deltas[i];
  if (!record_groups_.empty() || !group_bytes_.empty()) {
    std::vector<GroupView> groups(group_bytes_.size());
    for (std::size_t g = 0; g < groups.size(); ++g) {
      if (!parse_group_view(group_bytes_[g], groups[g])) {
        return Error(name + ": group " + std::to_string(g) + " is not a valid ColumnGroup message");
      }
    }
    const auto* raw = message_.data() + payloads_at_;
    if (auto st = rebuild_payloads(name, sizes, times, record_groups_, std::span<const char>(raw, payloads_size_), groups,
                                   max_payload_bytes, rebuilt_);
        !st) {
      return st;
    }
    columnar_ = true;
    payloads_size_ = rebuilt_.size();
  }
  offsets.resize(n);
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < n; ++i) {
    offsets[i] = static_cast<std::uint32_t>(offset);
    offset += sizes[i];
    if (offset > payloads_size_) return Error(name + ": record sizes run past the payload bytes");
  }
  if (offset != payloads_size_) {
    return Error(name + ": " + std::to_string(payloads_size_ - offset) + " payload bytes belong to no record");
  }
  for (auto& l : lost) {
    if (l.before > n) return Error(name + ": a lost notice points past the last record");
    l.sort_time_ns = l.time_ns;
    if (l.sort_time_ns == 0) {
      if (l.before < n) l.sort_time_ns = times[l.before];
      else if (n > 0) l.sort_time_ns = times[n - 1];
      else l.sort_time_ns = first_time_ns;
    }
  }
  return {};
}

}  // namespace perfstream::recording
