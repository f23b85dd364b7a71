// drain_ringbuf: one pass over a BPF ring buffer, the counterpart of drain_ring for perf rings: each record
// becomes a SampleView for the consumer, the counters are updated once, then consumer_pos moves. Free of
// threads and Asio.
//
// What a ring buffer record does not carry, and what the SampleView says instead:
//   - time: the u64 the program wrote where the SampleTiming says (payload_time, as for perf rings: a
//     timestamp field the event declares, taken with bpf_ktime_get_ns: CLOCK_MONOTONIC), or, for a record
//     without one, SampleTiming::clock read when the pass began or last took in new records (the time the
//     record was drained, later than its event);
//   - cpu: kRingbufCpu. One ring buffer is shared by every CPU; the CPU that drained it is not the one that
//     wrote the record, so no real CPU number is given;
//   - pid, tid, id: 0.
// The consumer sees the ring as `cpu` kRingbufCpu in on_pass_begin/on_pass_end, and views are valid until
// on_pass_end returns, as for perf rings.
#pragma once

#include <time.h>

#include <cstdint>

#include "collector/kernel/bpf_ringbuf.hpp"
#include "collector/read/record_consumer.hpp"
#include "collector/read/ring_drain.hpp"
#include "collector/read/ring_stats.hpp"

namespace perfstream {

// The CPU number of every record from a BPF ring buffer, and of its counters in a trailer: "unknown, a ring
// buffer shared by all CPUs" (docs/FORMAT.md).
constexpr std::uint32_t kRingbufCpu = 0xffffffff;

// Reads up to the producer position loaded at the start of the pass (or a busy record), then, while it has
// read less than a quarter of the ring, on to whatever was produced meanwhile (BpfRingbuf::Pass::extend, as
// libbpf's ring_buffer re-reads producer_pos until nothing is new), then commits.
// DrainResult::bytes counts discarded records too, so bytes > 0 means the pass consumed something.
DrainResult drain_ringbuf(BpfRingbuf& ring, const SampleTiming& timing, RecordConsumer& consumer,
                          CpuCounters& counters);

}  // namespace perfstream
