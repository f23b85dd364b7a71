// drain_ring: one pass over one ring: decode each record, count it, hand it to the consumer, then move the
// tail. Free of threads and Asio, so the same code runs under the readers, the benchmarks and the tests.
#pragma once

#include <cstdint>

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

// Reads up to the head loaded at the start of the pass, then commits the tail.
DrainResult drain_ring(PerfRing& ring, unsigned cpu, const RecordDecoder& decoder, RecordConsumer& consumer,
                       CpuCounters& counters);

}  // namespace perfstream
