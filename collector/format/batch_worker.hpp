// BatchWorker: compresses encoded batches and hands them to the sink on a thread of its own, so that a
// reader thread only decodes and encodes, and goes back to its rings at once. Compressing a 1 MiB batch
// takes milliseconds; done on the reader thread, it let a 512 KiB ring overflow at a million records per
// second (perfstream bench --mode file lost 5-14%).
//
// The queue is bounded (max_queued batches): when compression or the sink falls behind, submit() blocks,
// the kernel rings absorb the burst, and what they cannot hold is counted as kernel loss. A batch the sink
// refuses is counted (dropped_batches/records) and reported in-band by a small loss-only batch (a COLLECTOR
// LostNotice) written before the next batch the sink takes, or at finish().
//
// Threads: submit() from any reader thread; finish() once, from the controlling thread, after the readers
// have stopped. Batches reach the sink in submission order.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "collector/format/batch_sink.hpp"
#include "collector/format/zstd_codec.hpp"

namespace perfstream {

class BatchWorker {
 public:
  BatchWorker(ZstdCompressor compressor, BatchSink& sink, PipelineCounters& counters, std::size_t max_queued = 4);
  ~BatchWorker();
  BatchWorker(const BatchWorker&) = delete;
  BatchWorker& operator=(const BatchWorker&) = delete;

  // Queues `batch` (its `compressed` field is ignored) with its protobuf bytes in `encoded`; `encoded` is
  // swapped with a spare buffer, so the caller's encoder reuses memory instead of allocating.
  void submit(const EncodedBatch& batch, std::string& encoded);
  // Writes everything queued, then stops the thread. Idempotent.
  void finish();
  // The first error the sink returned, if any.
  std::string first_error() const;

 private:
  struct Job {
    EncodedBatch batch;
    std::string encoded;
  };
  void run();
  void deliver(Job& job);
  void report_drops();

  ZstdCompressor compressor_;
  BatchSink& sink_;
  PipelineCounters& counters_;
  std::size_t max_queued_;
  mutable std::mutex mutex_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  std::deque<Job> queue_;
  std::vector<std::string> spare_;
  bool finishing_ = false;
  std::string first_error_;
  std::uint64_t dropped_to_report_ = 0;  // worker thread only
  std::thread thread_;
};

}  // namespace perfstream
