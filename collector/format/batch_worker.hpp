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
// Sequence numbers and watermarks are stamped here, when a batch is written, so that both follow the order
// in which batches reach the sink:
//   - sequence: 0, 1, 2, ... in write order (loss-only and watermark-only batches included);
//   - watermark (Batch.watermark_ns): each producer (a reader thread's batcher) tells the worker, with every
//     submit and with advance(), a time below which it will submit nothing more (a submit publishes its
//     value only once its batch is in the queue). A batch takes the least of
//     those values over all producers, as they stood when it was submitted: everything below it was
//     submitted earlier, and the queue is first in, first out. A producer that has not reported yet holds
//     the watermark at 0; a retired one no longer holds it back. Stamped watermarks never go down.
//   - a producer whose watermark lags the latest record submitted by more than `max_watermark_lag` (a quiet
//     reader thread whose open batch waits for its age while a busy one submits batch after batch) is asked
//     to close its open batch early (flush_requested()): what readers must hold to merge the recording in
//     time order stays about max_watermark_lag of records, not a whole batch age of the busiest CPU's.
//   - when nothing has been submitted for `idle_interval`, records at or above the last written watermark
//     have been written, and the producers' watermark has moved past the latest of them, the worker writes
//     an empty batch that carries the new watermark, so that a live reader can show those records without
//     waiting for the next batch (one such batch per quiet spell).
//
// Threads: add_producer(), submit(), advance() and retire() from any thread (a producer's own calls from
// one thread); finish() once, from the controlling thread, after the readers have stopped.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "collector/format/batch_sink.hpp"
#include "collector/format/zstd_codec.hpp"
#include "collector/util/result.hpp"

namespace perfstream {

struct BatchWorkerOptions {
  std::size_t max_queued = 4;
  std::chrono::milliseconds idle_interval{100};  // see "when nothing has been submitted" above
  std::chrono::milliseconds max_watermark_lag{200};  // see "a producer whose watermark lags" above
};

class BatchWorker {
 public:
  using Producer = std::size_t;

  BatchWorker(ZstdCompressor compressor, BatchSink& sink, PipelineCounters& counters,
              const BatchWorkerOptions& options = {});
  ~BatchWorker();
  BatchWorker(const BatchWorker&) = delete;
  BatchWorker& operator=(const BatchWorker&) = delete;

  // A new producer; its watermark is 0 until it reports one.
  Producer add_producer();
  // Queues `batch` (its `compressed` and `sequence` fields are ignored) with its protobuf bytes in `encoded`
  // (as BatchEncoder::finish_unstamped writes them); `encoded` is swapped with a spare buffer, so the
  // caller's encoder reuses memory instead of allocating. `watermark`: the producer will submit nothing
  // below this time from now on.
  void submit(Producer producer, const EncodedBatch& batch, std::string& encoded, std::uint64_t watermark);
  // The producer will submit nothing below `watermark` from now on. Lock-free.
  void advance(Producer producer, std::uint64_t watermark);
  // The producer submits nothing more.
  void retire(Producer producer);
  // True once after other producers submitted records more than max_watermark_lag past this producer's
  // watermark: it should close its open batch now. Lock-free.
  bool flush_requested(Producer producer);
  // Returns once every batch submitted before the call has been written (or refused). For tests and for
  // callers that need the sink's answer before going on.
  void wait_idle();
  // Writes everything queued, then stops the thread. Idempotent.
  void finish();
  // The first error the sink (or the compressor) returned, if any.
  std::optional<Error> first_error() const;

 private:
  struct Job {
    EncodedBatch batch;
    std::string encoded;
    std::uint64_t watermark = 0;
  };
  void run();
  void deliver(Job& job);
  bool write(Job& job);  // stamps, compresses, writes; false when refused
  void report_drops();
  std::uint64_t least_watermark() const;  // mutex held
  std::optional<Job> idle_watermark_job();  // mutex held

  ZstdCompressor compressor_;
  BatchSink& sink_;
  PipelineCounters& counters_;
  BatchWorkerOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  std::condition_variable idle_;
  std::deque<Job> queue_;
  std::vector<std::string> spare_;
  // One slot per producer; slots never move (advance() writes them without the mutex).
  std::vector<std::unique_ptr<std::atomic<std::uint64_t>>> producers_;
  std::vector<std::unique_ptr<std::atomic<bool>>> flush_requests_;  // one per producer, likewise
  std::uint64_t stamped_watermark_ = 0;  // the highest watermark queued so far
  std::uint64_t submitted_max_time_ = 0; // the latest record time submitted so far
  bool finishing_ = false;
  bool delivering_ = false;
  std::optional<Error> first_error_;
  // Worker thread only:
  std::uint64_t next_sequence_ = 0;
  std::uint64_t written_watermark_ = 0;  // the watermark of the last batch written
  std::uint64_t written_max_time_ = 0;   // the latest record time written so far
  bool written_any_time_ = false;
  std::uint64_t dropped_to_report_ = 0;
  std::thread thread_;
};

}  // namespace perfstream
