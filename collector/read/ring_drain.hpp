// drain_ring: one pass over one ring: decode each record, count it, hand it to the consumer, then move the
// tail. Free of threads and Asio, so the same code runs under the readers, the benchmarks and the tests.
// Samples reach the consumer in blocks of up to 32 (RecordConsumer::on_samples), in ring order: a block is
// handed over before a lost notice, a corruption report and the pass's end.
//
// What a sample lacks, the drain fills in, so consumers always see a record's CPU and time:
//   - cpu: without PERF_SAMPLE_CPU (the perf events perfstream opens never ask for it), the ring's CPU. A
//     BPF program writes with BPF_F_CURRENT_CPU into the ring of the CPU it runs on, so that is the CPU the
//     kernel would have written; a ring reopened after hotplug is drained under its own CPU again. A
//     PERF_RECORD_LOST gets the ring's CPU the same way (its sample_id trailer has no CPU then).
//   - time: without PERF_SAMPLE_TIME, the u64 the BPF program wrote into the payload (SampleTiming: the
//     offset of the event's timestamp field, by the record's leading `kind` when the recording has several
//     event types). A record too short to hold it, or of a kind with no field, is timed when the drain
//     reads it (SampleTiming::clock), as is every PERF_RECORD_LOST (its trailer has no time then either).
#pragma once

#include <time.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "collector/decode/record_decoder.hpp"
#include "collector/kernel/perf_ring.hpp"
#include "collector/read/record_consumer.hpp"
#include "collector/read/ring_stats.hpp"

namespace perfstream {

struct DrainResult {
  std::uint64_t records = 0;  // records of any type consumed
  std::uint64_t bytes = 0;    // ring bytes consumed
  bool corrupt = false;       // the pass resynchronised
};

// Where a record's time is when the samples carry no PERF_SAMPLE_TIME. The timestamp must be on `clock`,
// the recording's clock (CaptureSession checks it: bpf_ktime_get_ns is CLOCK_MONOTONIC).
struct SampleTiming {
  struct Field {
    std::uint32_t kind = 0;    // the payload's leading u32 `kind` this field is for
    std::uint32_t offset = 0;  // byte offset of the u64 time in the payload
  };
  // One field: every record's time is at fields[0].offset, whatever its kind (one event type, or all at the
  // same place). Several: chosen by the record's `kind`. None: records are timed at the drain.
  std::vector<Field> fields;
  clockid_t clock = CLOCK_MONOTONIC;  // of the drain time (lost notices, records without the field)
};

// The time the BPF program wrote into `raw` where `timing` says, into `time`; false when the record has none
// there (no field for its kind, or too short to hold it). Shared with drain_ringbuf; inline, as the drains
// call it for every record.
inline bool payload_time(const SampleTiming& timing, std::span<const std::byte> raw, std::uint64_t& time) {
  std::uint32_t offset = 0;
  if (timing.fields.size() == 1) {
    offset = timing.fields.front().offset;
  } else {
    std::uint32_t kind = 0;
    if (raw.size() < sizeof(kind)) return false;
    std::memcpy(&kind, raw.data(), sizeof(kind));
    const SampleTiming::Field* found = nullptr;
    for (const auto& field : timing.fields) {
      if (field.kind == kind) found = &field;
    }
    if (found == nullptr) return false;
    offset = found->offset;
  }
  if (raw.size() < sizeof(time) || offset > raw.size() - sizeof(time)) return false;
  std::memcpy(&time, raw.data() + offset, sizeof(time));
  return true;
}

// Reads up to the head loaded at the start of the pass, then commits the tail. `timing` is used only when
// the decoder's sample_type lacks PERF_SAMPLE_TIME.
DrainResult drain_ring(PerfRing& ring, unsigned cpu, const RecordDecoder& decoder, RecordConsumer& consumer,
                       CpuCounters& counters, const SampleTiming& timing = {});

}  // namespace perfstream
