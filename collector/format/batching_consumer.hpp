// BatchingConsumer: a RecordConsumer that packs a reader thread's records into batches and hands each to a
// BatchWorker, which compresses and writes it. One per reader thread; each is one producer of the worker.
//
// A batch closes when it reaches max_bytes (encoded) or max_records, when its oldest record is max_age
// old (checked on every pass and on the reader's timer tick), and at stop. Payloads are read once, into
// the batch's columns (or its payload column), before the pass ends (views die with the pass): the encoder
// reads them in blocks (PayloadViews::KeptUntilFlush), and on_pass_end flushes it first.
//
// Watermark: the consumer tells the worker how far its records are complete, so that readers can merge
// batches into time order in bounded memory (see BatchWorker and Batch.watermark_ns). For each ring it
// keeps the recording clock read just before its latest pass began, less kWatermarkMargin: every record
// committed to that ring before that moment has been drained. The margin covers records whose time was
// taken but that were not yet committed when the pass read the ring's head (a BPF program between its
// timestamp and its output, an interrupt, a vCPU preempted by its hypervisor). This holds whichever time a
// record carries: the kernel's PERF_SAMPLE_TIME is taken in bpf_perf_event_output before the record is
// reserved and committed; a built-in probe's own `ts` (read/ring_drain.hpp, SampleTiming) is taken by
// ps_output_stamped right before that call, so it is earlier by the call's entry only, nanoseconds against
// the margin's 100 ms (an --object program that stamps its field earlier is covered as long as it outputs
// within the margin). The consumer's watermark
// is the least of its rings' values and of the times in its open batch; a ring that has not been drained
// yet holds it where it was. A record that still comes in below a watermark already given is late: the
// readers count and report it, nothing is lost.
#pragma once

#include <time.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "collector/format/batch_encoder.hpp"
#include "collector/format/batch_sink.hpp"
#include "collector/format/batch_worker.hpp"
#include "collector/read/record_consumer.hpp"

namespace perfstream {

struct BatchLimits {
  std::size_t max_bytes = 1 << 20;
  std::uint32_t max_records = 65536;
  std::chrono::milliseconds max_age{1000};
};

// How far behind the start of a ring's latest pass the watermark stays (see above). 50 ms was passed by a
// record now and then on a loaded 2-core VM; 100 ms costs a live reader 100 ms and holds 100 ms of records
// in a reader's memory (14 MB at 2 M records/s).
constexpr std::uint64_t kWatermarkMarginNs = 100'000'000;

class BatchingConsumer : public RecordConsumer {
 public:
  // `clock`: the clock of the records' times (the perf events' clockid). `layout`: the recording's column
  // plans (format version 3, ColumnarLayout::from_schemas of the header's events); null: version 1 batches.
  BatchingConsumer(const BatchLimits& limits, BatchWorker& worker, clockid_t clock = CLOCK_MONOTONIC,
                   std::shared_ptr<const ColumnarLayout> layout = nullptr);
  ~BatchingConsumer() override;

  void on_sample(unsigned cpu, const SampleView& sample) override;
  void on_samples(unsigned cpu, std::span<const SampleView> samples) override;
  void on_lost(unsigned cpu, const LostView& lost) override;
  void on_pass_begin(unsigned cpu) override;
  void on_pass_end(unsigned cpu) override;
  void on_ring_opened(unsigned cpu) override;
  void on_ring_closed(unsigned cpu) override;
  void on_tick() override;
  void on_stop() override;

 private:
  struct RingMark {
    std::uint64_t complete_below = 0;  // every record of the ring below this time has been drained
    std::uint64_t pass_began = 0;      // the clock when the current pass began, 0 outside a pass
  };
  void take(const SampleView& sample);  // on_sample's work, inlined into on_samples' loop
  void close_batch();
  void close_if_aged();
  RingMark& ring(unsigned cpu);
  std::uint64_t watermark() const;  // with the open batch

  BatchLimits limits_;
  BatchWorker& worker_;
  BatchWorker::Producer producer_;
  clockid_t clock_;
  BatchEncoder encoder_;
  std::chrono::steady_clock::time_point opened_;
  std::map<unsigned, RingMark> rings_;
  std::uint64_t given_ = 0;  // the highest watermark given to the worker
  std::uint64_t last_tick_ = 0;  // the clock at the latest on_tick
  std::uint64_t lost_in_batch_ = 0;
  // How much the open batch's estimate may still grow before it can reach max_bytes: records whose
  // BatchEncoder::most_bytes_added fit below it are added without looking at the estimate.
  std::size_t unchecked_bytes_ = 0;
  std::string encoded_;
  EncodedBatch batch_;
  bool stopped_ = false;
};

}  // namespace perfstream
