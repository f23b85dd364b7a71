// PerfEventArray: the user-space half of a BPF_MAP_TYPE_PERF_EVENT_ARRAY. For each chosen CPU it opens one
// PERF_TYPE_SOFTWARE / PERF_COUNT_SW_BPF_OUTPUT event bound to that CPU, mmaps its ring, and stores the
// event's fd in the map at key = CPU, which is where bpf_perf_event_output(..., BPF_F_CURRENT_CPU, ...)
// writes. The event recipe (sample_type, clock, watermark wakeups) is fixed here, in one place.
//
// What a sample carries. Every field the kernel adds is paid for by the producer, on every record, in the
// BPF program's context (docs/BENCHMARKS.md, "What each sample field costs"), so the events ask only for
// what the reader cannot know otherwise: PERF_SAMPLE_RAW always; PERF_SAMPLE_TIME unless the records carry
// their own time (EventArrayOptions::sample_time false: a timestamp field BPF fills with bpf_ktime_get_ns,
// read by the drain, read/ring_drain.hpp); never PERF_SAMPLE_CPU: a record is on the ring of the CPU that
// wrote it (BPF_F_CURRENT_CPU), and the reader of a ring knows its CPU. sample_id_all stays set: a
// PERF_RECORD_LOST then carries the time of the loss when the samples carry TIME, and nothing otherwise
// (the drain times such a notice when it reads it).
//
// Ownership. The array keeps its own dup of the map fd: closing the last fd of a perf event array makes the
// kernel drop every event stored in it, so the map must outlive the rings' use. Each open ring is returned as
// a CpuRing, owned by whoever drains it (a reader). Teardown order: stop draining, clear_slot(cpu), destroy
// the CpuRing (unmap, close), destroy the array, then the BPF object.
//
// CPUs. The candidates are the chosen CPUs (default: every possible CPU). Of those, the online ones get a
// ring at creation; the offline ones are listed in offline_at_start() and get a ring when they come online
// (open_ring, called by the hotplug logic). A candidate at or past the map's max_entries is refused with an
// error that names the limit.
//
// Threads: open_ring and clear_slot may be called from any thread; they touch only the kernel.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "collector/kernel/cpu_set.hpp"
#include "collector/kernel/perf_ring.hpp"
#include "collector/util/mapped_region.hpp"
#include "collector/util/result.hpp"
#include "collector/util/unique_fd.hpp"

namespace perfstream {

// How big each CPU's ring is. Data areas are 2^n pages; the real size is reported by RingGeometry.
struct RingSize {
  enum class Unit { Default, PagesPerCpu, BytesPerCpu, TotalBytes };
  Unit unit = Unit::Default;
  std::uint64_t value = 0;

  // "64" (pages), "256K", "4M" (bytes per CPU), "total:64M" (a budget shared by all CPUs).
  static Result<RingSize> parse(const std::string& text);
};

struct RingGeometry {
  std::size_t page_size = 0;
  std::size_t data_pages = 0;    // a power of two
  std::size_t data_bytes = 0;    // data_pages * page_size
  std::size_t wakeup_bytes = 0;  // the watermark: the reader is woken when this many bytes are pending
  // "64 pages (256 KiB) + 1 metadata page per CPU, wakeup at 64 KiB; 2 CPUs: 520 KiB mapped"
  std::string describe(std::size_t cpus) const;
};

// Rounds a request to 1 + 2^n pages: sizes per CPU round up to the next power of two, a total budget rounds
// down so that it is never exceeded (and fails if one page per CPU does not fit). wakeup_bytes 0 means a
// quarter of the data area; larger than the data area is an error.
Result<RingGeometry> plan_ring_geometry(const RingSize& size, std::uint64_t wakeup_bytes, std::size_t cpus,
                                        std::size_t page_size);

// One CPU's event and ring.
struct CpuRing {
  unsigned cpu = 0;
  UniqueFd event_fd;
  MappedRegion mapping;
  PerfRing ring;
};

struct EventArrayOptions {
  RingSize size;
  std::uint64_t wakeup_bytes = 0;      // 0: a quarter of the ring
  std::optional<CpuSet> cpus;          // default: every possible CPU
  int clockid = 1;                     // CLOCK_MONOTONIC: comparable to clock_gettime and bpf_ktime_get_ns
  bool sample_time = true;             // PERF_SAMPLE_TIME; false when every record carries its own time
  bool sample_cpu = false;             // PERF_SAMPLE_CPU: never needed (the ring's CPU); bench measures its cost
  std::string sysfs_cpu_dir = CpuSet::kSysfsCpuDir;
};

// Whether the kernel still has `event_fd`'s event on its CPU. A CPU event is taken off its CPU when the
// CPU goes offline and is never put back, even when the CPU returns; its enabled time then stands still.
// Reads the event's times twice (each read makes the CPU update them) and compares. Errors name the CPU.
Result<bool> event_is_live(int event_fd, unsigned cpu);

class PerfEventArray {
 public:
  // `map_fd` is borrowed (the array dups it); `map_name` is only for messages.
  static Result<std::unique_ptr<PerfEventArray>> create(int map_fd, const std::string& map_name,
                                                        const EventArrayOptions& options);
  ~PerfEventArray();
  PerfEventArray(const PerfEventArray&) = delete;
  PerfEventArray& operator=(const PerfEventArray&) = delete;

  // Rings opened at creation for the candidate CPUs that were online; the caller takes ownership.
  std::vector<std::unique_ptr<CpuRing>> take_initial_rings() { return std::move(initial_rings_); }

  // Opens the event and ring for `cpu` and stores it in the map slot.
  Result<std::unique_ptr<CpuRing>> open_ring(unsigned cpu);
  // Removes `cpu`'s entry from the map, so BPF output on that CPU fails with -ENOENT instead of filling a
  // ring nobody reads. Errors other than "no such entry" are returned.
  Status clear_slot(unsigned cpu);

  const CpuSet& candidates() const { return candidates_; }
  const CpuSet& offline_at_start() const { return offline_at_start_; }
  const RingGeometry& geometry() const { return geometry_; }
  // PERF_SAMPLE_RAW, with PERF_SAMPLE_TIME and PERF_SAMPLE_CPU as EventArrayOptions asks (by default TIME).
  std::uint64_t sample_type() const { return sample_type_; }
  bool sample_id_all() const { return true; }
  int clockid() const { return clockid_; }
  int map_fd() const { return map_fd_.get(); }
  std::uint32_t max_entries() const { return max_entries_; }
  const std::string& map_name() const { return map_name_; }
  // Where the online and possible CPU lists were read (EventArrayOptions::sysfs_cpu_dir); hotplug reads it too.
  const std::string& sysfs_cpu_dir() const { return sysfs_cpu_dir_; }

 private:
  PerfEventArray() = default;

  UniqueFd map_fd_;
  std::string map_name_;
  std::string sysfs_cpu_dir_;
  std::uint32_t max_entries_ = 0;
  CpuSet candidates_;
  CpuSet offline_at_start_;
  RingGeometry geometry_;
  int clockid_ = 1;
  std::uint64_t sample_type_ = 0;
  std::vector<std::unique_ptr<CpuRing>> initial_rings_;
};

}  // namespace perfstream
