// RingStats: per-CPU counters of the drain, the numbers a status line, a summary or a benchmark reports.
//
// One CpuCounters per possible CPU, allocated up front so that a CPU coming online never reallocates.
// Each CPU's counters are written only by the reader thread that owns its ring at the time (relaxed
// atomics: a reader on another thread sees recent, not necessarily simultaneous, values). Counters are
// cumulative over the whole run, across a CPU's offline/online cycles.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace perfstream {

struct CpuCounters {
  std::atomic<std::uint64_t> samples{0};          // PERF_RECORD_SAMPLE records delivered to the consumer
  std::atomic<std::uint64_t> sample_bytes{0};     // their raw payload bytes (kernel padding included)
  std::atomic<std::uint64_t> ring_bytes{0};       // bytes consumed from the ring, headers included
  std::atomic<std::uint64_t> lost{0};             // samples the kernel reported lost (PERF_RECORD_LOST*)
  std::atomic<std::uint64_t> lost_notices{0};     // PERF_RECORD_LOST* records carrying a non-zero count
  std::atomic<std::uint64_t> corrupt{0};          // ring resynchronisations after a header we could not trust
  std::atomic<std::uint64_t> corrupt_bytes{0};    // bytes skipped by those
  std::atomic<std::uint64_t> malformed{0};        // records whose fields ran past their size (skipped)
  std::atomic<std::uint64_t> other_records{0};    // records of other types (counted, skipped)
  std::atomic<std::uint64_t> discarded{0};        // BPF ring buffer records the program discarded (skipped)
  std::atomic<std::uint64_t> wakeups{0};          // readiness notifications from the kernel (watermark reached)
  std::atomic<std::uint64_t> passes{0};           // drain passes
  std::atomic<std::uint64_t> fill_bytes{0};       // bytes pending at the start of the latest pass
  std::atomic<std::uint64_t> fill_high_water{0};  // the most bytes ever pending at the start of a pass
  std::atomic<std::uint64_t> ring_size{0};        // data area of the current ring, 0 while it has none
  // Set by the control thread (CaptureSession::read_output_failures), from the probes' own counters:
  std::atomic<std::uint64_t> unwritable{0};       // records the BPF programs could not write, ring not full
  std::atomic<std::uint32_t> unwritable_errno{0}; // the errno of the latest of those
  std::atomic<std::uint64_t> untracked{0};        // syscalls not recorded: the probes' per-thread map was full
  std::atomic<std::uint32_t> attached{0};         // 1 while the CPU has a ring
  std::atomic<std::uint32_t> attach_count{0};     // rings opened for this CPU (more than 1 after hotplug)
};

// A plain copy of one CPU's counters.
struct CpuSnapshot {
  unsigned cpu = 0;
  std::uint64_t samples = 0, sample_bytes = 0, ring_bytes = 0, lost = 0, lost_notices = 0, corrupt = 0,
                corrupt_bytes = 0, malformed = 0, other_records = 0, discarded = 0, wakeups = 0, passes = 0, fill_bytes = 0,
                fill_high_water = 0, ring_size = 0, unwritable = 0, untracked = 0;
  std::uint32_t unwritable_errno = 0;
  bool attached = false;
  std::uint32_t attach_count = 0;
};

class RingStats {
 public:
  explicit RingStats(unsigned cpu_slots) : cpus_(std::make_unique<CpuCounters[]>(cpu_slots)), slots_(cpu_slots) {}

  unsigned slots() const { return slots_; }
  CpuCounters& cpu(unsigned cpu) { return cpus_[cpu]; }
  const CpuCounters& cpu(unsigned cpu) const { return cpus_[cpu]; }

  CpuSnapshot snapshot(unsigned cpu) const;
  // Sums every CPU (cpu = slots(); fill_high_water is the largest of any CPU).
  CpuSnapshot total() const;

 private:
  std::unique_ptr<CpuCounters[]> cpus_;
  unsigned slots_;
};

}  // namespace perfstream
