// Helpers for tests that load perfstream's BPF programs into the running kernel and drain real rings.
//
// They run as root in CI and must run there. A test may skip only when the kernel refuses BPF itself
// (no permission, no BPF syscall), and then the skip message says why; any other failure fails the test.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "collector/kernel/bpf_probe.hpp"
#include "collector/kernel/perf_event_array.hpp"
#include "collector/read/reader_pool.hpp"
#include "collector/read/record_consumer.hpp"
#include "collector/read/ring_stats.hpp"
#include "collector/util/log.hpp"

namespace perfstream::testing {

// True when `error` means the kernel refuses BPF for this process (as opposed to a bug of ours).
bool kernel_refuses_bpf(const Error& error);

// Loads a built-in probe; on a refusal by the kernel, *skip_reason says why (the caller GTEST_SKIPs).
std::unique_ptr<BpfProbe> load_probe(const std::string& name, const ProbeOptions& options, std::string* skip_reason);

// One sample or loss notice, copied out of the ring.
struct CollectedRecord {
  bool is_lost = false;
  unsigned ring_cpu = 0;        // whose ring it came from
  std::uint64_t time = 0;
  std::uint32_t cpu = 0;        // from the record (PERF_SAMPLE_CPU, the sample_id) or, lacking one, the ring
  std::uint64_t lost = 0;
  std::vector<std::byte> raw;   // samples: payload bytes, kernel padding included
};

// Thread-safe store shared by every reader's consumer.
class RecordStore {
 public:
  void add(CollectedRecord record);
  std::vector<CollectedRecord> records() const;
  std::size_t samples() const;
  std::uint64_t lost() const;
  std::size_t zero_lost_notices() const;
  std::size_t ring_closed_count(unsigned cpu) const;
  void note_closed(unsigned cpu);

 private:
  mutable std::mutex mutex_;
  std::vector<CollectedRecord> records_;
  std::map<unsigned, std::size_t> closed_;
};

class StoreConsumer : public RecordConsumer {
 public:
  explicit StoreConsumer(RecordStore& store) : store_(store) {}
  void on_sample(unsigned cpu, const SampleView& sample) override;
  void on_lost(unsigned cpu, const LostView& lost) override;
  void on_ring_closed(unsigned cpu) override { store_.note_closed(cpu); }

 private:
  RecordStore& store_;
};

// A perf event array with its reader pool, built on a loaded probe's map.
struct Collector {
  // Declared before the pool, so destroyed after it: a pool destroyed without stop() still drains and closes
  // its rings into the store and logs on the way out.
  RecordStore store;
  std::vector<std::string> log;
  std::mutex log_mutex;
  Log logger{[this](const std::string& line) {  // the pool's log: into `log`
    std::lock_guard<std::mutex> lock(log_mutex);
    log.push_back(line);
  }};
  std::unique_ptr<PerfEventArray> array;
  std::unique_ptr<RingStats> stats;
  std::unique_ptr<ReaderPool> pool;

  // Fails the current test (ADD_FAILURE) and returns null on error.
  static std::unique_ptr<Collector> create(const BpfProbe& probe, EventArrayOptions array_options,
                                           ReaderOptions reader_options = {});
  std::vector<std::string> log_lines();
};

// loadgen's control: configure, trigger from a thread pinned to a CPU, read the BPF-side counters.
class Loadgen {
 public:
  explicit Loadgen(const BpfProbe& probe);
  // Records of `record_size` bytes, `per_call` per getppid() call of this process.
  void configure(std::uint32_t record_size, std::uint32_t per_call = 1);
  void disable();
  // Makes `calls` getppid() syscalls from a thread pinned to `cpu`; false if it could not pin.
  bool trigger_on_cpu(unsigned cpu, std::uint64_t calls);
  struct Counts {
    std::uint64_t emitted = 0, failed = 0, failed_nospace = 0;
  };
  Counts counts(unsigned cpu) const;

 private:
  int config_fd_ = -1;
  int stats_fd_ = -1;
};

// The payload of a loadgen sample, parsed.
struct LoadgenSample {
  std::uint32_t kind = 0, size = 0, cpu = 0, pid = 0;
  std::uint64_t seq = 0;
  std::uint64_t ts = 0;  // bpf_ktime_get_ns() just before the output call
};
bool parse_loadgen(const std::vector<std::byte>& raw, LoadgenSample* out);

// What one CPU's ring delivered of loadgen's records: samples, the loss the kernel reported, and the emit
// attempts missing between consecutive delivered sequence numbers.
struct LoadgenTally {
  std::uint64_t delivered = 0, lost = 0, gaps = 0;
};
LoadgenTally tally_loadgen(const std::vector<CollectedRecord>& records, unsigned ring_cpu);

// Writes "0" or "1" to /sys/devices/system/cpu/cpuN/online; returns an error message or "".
std::string set_cpu_online(unsigned cpu, bool online);

// The largest id of a BPF program loaded now (0 for none): programs loaded later have larger ids.
std::uint32_t newest_bpf_program_id();
// Programs loaded after `newest_before` that are still loaded though no live process holds them (by a
// program or link fd): what an exited process left attached. Waits up to `settle` for the kernel to free
// the programs of processes that just exited. Programs of other live processes (other tests) do not count.
// Returns "id name" for each.
std::vector<std::string> bpf_programs_left_behind(std::uint32_t newest_before, std::chrono::milliseconds settle);

}  // namespace perfstream::testing
