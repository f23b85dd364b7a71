// ReaderPool: drains a PerfEventArray's rings from epoll-driven Boost.Asio reader threads, and follows CPU
// hotplug. HotplugTracker: the hotplug decisions, apart so that they can be tested on a fake sysfs.
//
// Reading. Each reader thread runs its own io_context and owns a subset of the CPUs' rings (dealt round-robin
// at start). For each ring it keeps a posix::stream_descriptor on the ring's event fd and waits for
// readability: the kernel signals it when wakeup_bytes are pending. Asio's epoll reactor is edge-triggered,
// so a wakeup is answered with a full pass (drain_ring reads to the head it loaded) before the wait is
// re-armed. A per-reader timer drains every ring each flush_interval, so records that stay below the wakeup
// size are delivered with bounded latency.
//
// CPU hotplug (hotplug_interval > 0). A HotplugTracker knows which candidate CPU has a ring and which reader
// owns it, and holds its own dup of each ring's event fd. On a timer it reads the online list from the array's
// sysfs CPU directory (EventArrayOptions::sysfs_cpu_dir) and:
//   - a CPU that went offline: its map slot is cleared (BPF output there stops), then its reader is asked to
//     drain the ring to the end and close it (a retire);
//   - a CPU that went offline and came back between two checks: the kernel took its old event off the CPU and
//     never puts it back (its enabled time stops, see event_is_live), so the check sees it stalled, retires it
//     the same way and opens a new one;
//   - a candidate CPU that came online: a new event, ring and map slot, handed to the reader that last owned
//     the CPU (its retire is queued there first, so the old ring is closed before the new one is opened),
//     else to the reader with the fewest CPUs.
// A ring whose event fd cannot be dup'd (EMFILE) could never be checked: the tracker clears its slot, has it
// drained once and closed, takes no ownership, and logs it; the next check opens the CPU again.
//
// Threads and locks. There is no mutex: each piece of state has one owner thread, and work moves between
// threads only through asio::post, a ring moving inside the handler, whole.
//   - The controlling thread (the caller of create) calls start, flush, stop, check_hotplug_now,
//     attached_cpus and consumer. All but consumer wait for reader threads: called from a reader thread (a
//     consumer) they would wait on themselves.
//   - Reader thread i owns reader i: its rings, their descriptors (which own the rings' event fds), its timers
//     and its consumer.
//   - The hotplug owner is reader 0's thread: it alone touches the HotplugTracker, from reader 0's hotplug
//     timer and from work the controlling thread posts there. It never touches a reader's rings; it queues an
//     adopt or retire to that reader. A reader never calls the tracker.
//   Before start() and after stop() no reader thread runs, and the controlling thread stands in for them.
//   Counters go through RingStats, whose fields are atomics.
//
// stop() drains: it first stops the tracker on its thread, so no check opens a ring or queues an adopt after
// that; then every ring gets final passes after its reader stops waiting, its slot is cleared and the ring
// closed. Callers should detach the BPF programs first (BpfProbe::detach) so nothing is written after the
// final pass. The consumers stay alive until the pool is destroyed.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "collector/decode/record_decoder.hpp"
#include "collector/kernel/cpu_set.hpp"
#include "collector/kernel/perf_event_array.hpp"
#include "collector/read/record_consumer.hpp"
#include "collector/read/ring_drain.hpp"
#include "collector/read/ring_stats.hpp"
#include "collector/util/log.hpp"
#include "collector/util/result.hpp"
#include "collector/util/unique_fd.hpp"

namespace perfstream {

struct ReaderOptions {
  unsigned threads = 1;
  std::chrono::milliseconds flush_interval{100};
  std::chrono::milliseconds hotplug_interval{250};  // 0: the set of CPUs is fixed at start
  std::vector<unsigned> pin_cpus;  // reader i runs on pin_cpus[i % size]; empty: wherever the scheduler likes
  // Notices for the user (CPUs offline or back, corruption), from reader threads; null: none. Not owned.
  Log* log = nullptr;
  // Where records' times are when the array's events lack PERF_SAMPLE_TIME (read/ring_drain.hpp).
  SampleTiming timing;
};

// The kernel calls the hotplug tracker makes, on its thread. ReaderPool's go to the PerfEventArray (and
// event_is_live); tests fake them.
class HotplugEvents {
 public:
  virtual ~HotplugEvents() = default;
  // PerfEventArray::open_ring: a new event and ring for `cpu`, stored in its map slot.
  virtual Result<std::unique_ptr<CpuRing>> open_ring(unsigned cpu) = 0;
  // PerfEventArray::clear_slot.
  virtual Status clear_slot(unsigned cpu) = 0;
  // A second fd on the ring's event, the tracker's own, for is_live.
  virtual Result<UniqueFd> dup_event(const CpuRing& ring) = 0;
  // event_is_live on that fd.
  virtual Result<bool> is_live(const UniqueFd& event, unsigned cpu) = 0;
};

// Where the hotplug tracker sends rings. Each call queues work for reader `reader` and returns at once; a
// reader runs its queue in order.
class HotplugReaders {
 public:
  virtual ~HotplugReaders() = default;
  // Watch and drain the ring from now on.
  virtual void queue_adopt(unsigned reader, std::unique_ptr<CpuRing> ring) = 0;
  // Drain `cpu`'s ring to the end and close it. Its slot is already cleared.
  virtual void queue_retire(unsigned reader, unsigned cpu) = 0;
  // Drain the ring once and close it without watching it. Its slot is already cleared.
  virtual void queue_close(unsigned reader, std::unique_ptr<CpuRing> ring) = 0;
};

// Which candidate CPU has a ring, which reader owns it, and what to do when the online CPUs change. Single
// threaded: every call on one thread (ReaderPool: reader 0's). Holds its own dup of each owned ring's event
// fd, so a check never reads an fd that another thread may have closed.
class HotplugTracker {
 public:
  struct Options {
    CpuSet candidates;                                 // CPUs that may get a ring
    std::string sysfs_cpu_dir = CpuSet::kSysfsCpuDir;  // where `online` is read
    unsigned readers = 1;
    bool follow = true;  // false (--no-hotplug): deals the initial rings, keeps no event fd, never checks
    std::function<void(const std::string&)> log;  // may be empty
  };

  // `events` and `readers` must outlive the tracker.
  HotplugTracker(Options options, HotplugEvents& events, HotplugReaders& readers);
  HotplugTracker(const HotplugTracker&) = delete;
  HotplugTracker& operator=(const HotplugTracker&) = delete;

  // Hands the rings opened at creation to the readers, round-robin.
  void deal_initial(std::vector<std::unique_ptr<CpuRing>> rings);
  // Reads the online CPUs once and retires and opens rings to match. Does nothing once stopped or when not
  // following hotplug.
  void check();
  // No check after this; forgets every CPU (closing its fds on their events). The readers close the rings.
  void stop();
  // CPUs that have a ring, or have one queued for adoption.
  CpuSet attached() const;

 private:
  struct Owned {
    unsigned reader = 0;
    UniqueFd event;  // the tracker's dup of the ring's event fd; empty when not following hotplug
  };

  void retire_gone(const CpuSet& online);
  std::string why_retire(unsigned cpu, const Owned& owned, const CpuSet& online);
  void open_arrived(const CpuSet& online);
  bool hand_over(std::unique_ptr<CpuRing> ring, unsigned reader);
  unsigned reader_for(unsigned cpu) const;
  void log_once(unsigned cpu, const std::string& message);
  void log(const std::string& message) const;

  Options options_;
  HotplugEvents& events_;
  HotplugReaders& readers_;
  std::map<unsigned, Owned> owned_;
  std::map<unsigned, unsigned> last_reader_;       // cpu -> the reader its latest ring went to
  std::map<unsigned, std::string> last_failure_;   // cpu -> the failure last logged, so it is logged once
  bool stopped_ = false;
};

class ReaderPool : private HotplugReaders {
 public:
  // The array must outlive the pool. stats must have a slot for every candidate CPU.
  static Result<std::unique_ptr<ReaderPool>> create(PerfEventArray& array, const ReaderOptions& options,
                                                    const ConsumerFactory& make_consumer, RingStats& stats);
  ~ReaderPool() override;
  ReaderPool(const ReaderPool&) = delete;
  ReaderPool& operator=(const ReaderPool&) = delete;

  // Starts the reader threads and returns once every ring the array opened at creation is armed.
  void start();
  // Drains every ring once and returns when all passes are done: everything written before the call is
  // with the consumers afterwards (if the rings could hold it).
  void flush();
  // Stops the hotplug checks, stops waiting, drains every ring to the end, closes the rings and joins the
  // threads. Idempotent.
  void stop();
  // Runs one hotplug check now (unless hotplug is off) and waits for the resulting ring changes.
  void check_hotplug_now();

  unsigned reader_count() const;
  RecordConsumer& consumer(unsigned reader_index);
  // CPUs that have a ring now (or have one queued for adoption).
  CpuSet attached_cpus() const;

 private:
  class Reader;
  ReaderPool(PerfEventArray& array, const ReaderOptions& options, RecordDecoder decoder, RingStats& stats);
  void log(const std::string& message) const;
  void run_on_all_and_wait(const std::function<void(Reader&)>& work);
  // Runs `work` on the hotplug owner's thread (reader 0's) and waits for it.
  void run_on_hotplug_owner_and_wait(const std::function<void()>& work) const;

  // HotplugReaders: posts to the reader's io_context.
  void queue_adopt(unsigned reader, std::unique_ptr<CpuRing> ring) override;
  void queue_retire(unsigned reader, unsigned cpu) override;
  void queue_close(unsigned reader, std::unique_ptr<CpuRing> ring) override;

  // Declared in the order they depend on each other: the tracker refers to events_ and, as HotplugReaders,
  // to readers_.
  PerfEventArray& array_;
  ReaderOptions options_;
  RecordDecoder decoder_;
  RingStats& stats_;
  std::vector<std::unique_ptr<Reader>> readers_;
  std::unique_ptr<HotplugEvents> events_;
  HotplugTracker hotplug_;  // the hotplug owner's (reader 0's thread), see the contract at the top
  bool started_ = false;    // controlling thread
  bool stopped_ = false;    // controlling thread
};

}  // namespace perfstream
