// RingbufReader: drains one BPF ring buffer (BpfRingbuf) from an epoll-driven reader thread, the counterpart
// of ReaderPool for a BPF_MAP_TYPE_RINGBUF. Its records reach a RecordConsumer made by the same
// ConsumerFactory (reader index 0), so they go through the same batches, files, streams and Kafka.
//
// Waking. The map fd itself is pollable: the kernel makes it readable when a record is submitted while the
// consumer had caught up with the producer (libbpf's default, adaptive wakeups). The reader thread runs its
// own epoll loop, not an Asio io_context: the map fd (a dup of its own) registered level-triggered as libbpf
// does, an eventfd for flush() and stop(), and the next flush as epoll_wait's timeout. Asio 1.74's reactor
// re-arms an edge-triggered descriptor with epoll_ctl(EPOLL_CTL_MOD) on every async_wait: with a ring
// buffer's reader woken tens of thousands of times a second, that was one more system call per wakeup.
//
// Wakeups are batched. Every wakeup costs the producer (the traced process) an irq_work, a self-IPI: on a
// VM an exit to the hypervisor, a third of the bench producer's time at 30 k wakeups/s. A reader that
// drains at once catches up within a few records, sleeps, and is woken again by the next one. So a woken
// reader waits 100 us before it drains (not when an eighth of the ring is already pending): records gather
// and are read in fewer, longer passes, and reach the consumer up to ~0.15 ms later (timer slack included).
// A wakeup is answered with passes until one finds nothing new (up to 16, then the loop checks its clock and
// commands; level triggering brings it straight back while records are pending). A pass that stops at a
// busy record without progress is not repeated at once; the flush timer (flush_interval) drains the ring
// anyway, so records are delivered with bounded latency whatever the wakeups do. options.pin_cpus, when
// given, pins the thread to its first CPU.
//
// Threads. start() runs one thread; from then on the ring and the consumer are touched only on that thread.
// flush() and stop() ask it through the eventfd and wait for it (so they must not be called from the
// consumer). Before start() and after stop(), the calling thread stands in.
// Counters go through the CpuCounters given (atomics).
//
// stop(): ends the loop, drains twice (the second pass picks up what was submitted while the
// first ran), tells the consumer the ring closed and the reader stopped, and joins the thread. The caller
// detaches the BPF programs first, so nothing is written after the final pass. Idempotent; the destructor
// calls it. The BpfRingbuf and the counters must outlive the reader.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "collector/kernel/bpf_ringbuf.hpp"
#include "collector/read/reader_pool.hpp"
#include "collector/read/record_consumer.hpp"
#include "collector/read/ring_stats.hpp"
#include "collector/read/ringbuf_drain.hpp"
#include "collector/util/result.hpp"

namespace perfstream {

class RingbufReader {
 public:
  // `map_fd` is dup'd (the reader's descriptor owns the dup); `map_name` names the ring in log lines.
  // options.flush_interval, options.log and the first of options.pin_cpus are used; threads and hotplug do
  // not apply to one ring.
  static Result<std::unique_ptr<RingbufReader>> create(BpfRingbuf& ring, int map_fd, std::string map_name,
                                                       SampleTiming timing, const ReaderOptions& options,
                                                       const ConsumerFactory& make_consumer, CpuCounters& counters);
  ~RingbufReader();
  RingbufReader(const RingbufReader&) = delete;
  RingbufReader& operator=(const RingbufReader&) = delete;

  void start();
  // Drains the ring once and returns when the pass is done.
  void flush();
  void stop();
  RecordConsumer& consumer();

 private:
  struct Impl;
  explicit RingbufReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace perfstream
