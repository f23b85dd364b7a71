// RingbufReader: drains one BPF ring buffer (BpfRingbuf) from an epoll-driven Boost.Asio reader thread, the
// counterpart of ReaderPool for a BPF_MAP_TYPE_RINGBUF. Its records reach a RecordConsumer made by the same
// ConsumerFactory (reader index 0), so they go through the same batches, files, streams and Kafka.
//
// Waking. The map fd itself is pollable: the kernel makes it readable when a record is submitted while the
// consumer had caught up with the producer (libbpf's default, adaptive wakeups). The reader keeps a
// posix::stream_descriptor on its own dup of the map fd and waits for readability. Asio's epoll reactor is
// edge-triggered and the kernel does not wake a consumer that is behind, so a wakeup is answered with passes
// until one finds nothing new: up to 16 in the handler, then the rest posted (other handlers, the timer among
// them, run in between). A pass that stops at a busy record without progress is not repeated at once; the
// flush timer (flush_interval) drains the ring anyway, so records are delivered with bounded latency
// whatever the wakeups do.
//
// Threads. start() runs one thread with its own io_context; from then on the ring, the descriptor, the timer
// and the consumer are touched only on that thread. flush() and stop() post work there and wait for it (so
// they must not be called from the consumer). Before start() and after stop(), the calling thread stands in.
// Counters go through the CpuCounters given (atomics).
//
// stop(): cancels the wait and the timer, drains twice (the second pass picks up what was submitted while the
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
  // options.flush_interval and options.log are used; threads, hotplug and pins do not apply to one ring.
  static Result<std::unique_ptr<RingbufReader>> create(BpfRingbuf& ring, int map_fd, std::string map_name,
                                                       RingbufTiming timing, const ReaderOptions& options,
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
