// ReaderPool: drains a PerfEventArray's rings from epoll-driven Boost.Asio reader threads.
//
// Each reader thread runs its own io_context and owns a subset of the CPUs' rings (assigned round-robin,
// new CPUs to the reader with the fewest). For each ring it keeps a posix::stream_descriptor on a dup of
// the event fd and waits for readability: the kernel signals it when wakeup_bytes are pending. Asio's epoll
// reactor is edge-triggered, so a wakeup is answered with a full pass (drain_ring reads to the head it
// loaded) before the wait is re-armed. A per-reader timer drains every ring each flush_interval, so records
// that stay below the wakeup size are delivered with bounded latency.
//
// CPU hotplug (hotplug_interval > 0): reader 0 re-reads the online CPU list on a timer. A candidate CPU
// that went offline has its map slot cleared, then its ring drained to the end and closed by its reader.
// A candidate CPU that came online gets a new event, ring and map slot. A CPU that went offline and came
// back between two checks is caught too: its old event was taken off the CPU by the kernel and never comes
// back (its enabled time stops), so the check sees it stalled and replaces it the same way.
//
// stop() drains: every ring gets final passes after its reader stops waiting, then the slot is cleared and
// the ring closed. Callers should detach the BPF programs first (BpfProbe::detach) so nothing is written
// after the final pass. The consumers stay alive until the pool is destroyed.
//
// Threads: start/flush/stop/check_hotplug_now are for one controlling thread, never a reader thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "collector/decode/record_decoder.hpp"
#include "collector/kernel/cpu_set.hpp"
#include "collector/kernel/perf_event_array.hpp"
#include "collector/read/record_consumer.hpp"
#include "collector/read/ring_stats.hpp"
#include "collector/util/log.hpp"
#include "collector/util/result.hpp"

namespace perfstream {

struct ReaderOptions {
  unsigned threads = 1;
  std::chrono::milliseconds flush_interval{100};
  std::chrono::milliseconds hotplug_interval{250};  // 0: the set of CPUs is fixed at start
  std::vector<unsigned> pin_cpus;  // reader i runs on pin_cpus[i % size]; empty: wherever the scheduler likes
  // Notices for the user (CPUs offline or back, corruption), from reader threads; null: none. Not owned.
  Log* log = nullptr;
};

class ReaderPool {
 public:
  // The array must outlive the pool. stats must have a slot for every candidate CPU.
  static Result<std::unique_ptr<ReaderPool>> create(PerfEventArray& array, const ReaderOptions& options,
                                                    const ConsumerFactory& make_consumer, RingStats& stats);
  ~ReaderPool();
  ReaderPool(const ReaderPool&) = delete;
  ReaderPool& operator=(const ReaderPool&) = delete;

  // Starts the reader threads and returns once every ring the array opened at creation is armed.
  void start();
  // Drains every ring once and returns when all passes are done: everything written before the call is
  // with the consumers afterwards (if the rings could hold it).
  void flush();
  // Stops waiting, drains every ring to the end, closes the rings and joins the threads. Idempotent.
  void stop();
  // Runs one hotplug check now and waits for the resulting ring changes.
  void check_hotplug_now();

  unsigned reader_count() const;
  RecordConsumer& consumer(unsigned reader_index);
  // CPUs that have a ring now.
  CpuSet attached_cpus() const;

 private:
  class Reader;
  ReaderPool(PerfEventArray& array, const ReaderOptions& options, RecordDecoder decoder, RingStats& stats);
  void check_hotplug();  // on reader 0's thread
  void log(const std::string& message) const;
  void run_on_all_and_wait(const std::function<void(Reader&)>& work);

  PerfEventArray& array_;
  ReaderOptions options_;
  RecordDecoder decoder_;
  RingStats& stats_;
  std::vector<std::unique_ptr<Reader>> readers_;

  mutable std::mutex owners_mutex_;
  struct Owner {
    unsigned reader = 0;
    int event_fd = -1;  // borrowed from the reader's CpuRing; valid until a retire is posted for it
  };
  std::map<unsigned, Owner> owner_of_cpu_;  // guarded by owners_mutex_
  std::map<unsigned, std::string> open_failures_;  // cpu -> last error logged; reader 0 only
  bool started_ = false;
  bool stopped_ = false;
  std::atomic<bool> stopping_{false};  // read by the hotplug check on reader 0's thread
};

}  // namespace perfstream
