// RecordConsumer: where drained records go. The trace file writer, the stream client and the benchmarks'
// counters all implement it.
//
// Threads: a ReaderPool gives each reader thread its own consumer (see ConsumerFactory), so one consumer
// is only ever called from one thread, for the CPUs that thread owns; it needs no locking of its own.
// Validity: SampleView::raw points into the ring (or its scratch buffer) and stays valid until
// on_pass_end(cpu) returns; the ring's tail moves after that. A consumer that keeps bytes longer copies them.
#pragma once

#include <functional>
#include <memory>

#include "collector/decode/record_decoder.hpp"
#include "collector/kernel/perf_ring.hpp"

namespace perfstream {

class RecordConsumer {
 public:
  virtual ~RecordConsumer() = default;

  // One sample from `cpu`'s ring.
  virtual void on_sample(unsigned cpu, const SampleView& sample) = 0;
  // Samples of `cpu`'s ring that came one after the other, in ring order, with no other call between them:
  // the same as on_sample for each in turn, which is what this default does. drain_ring hands samples over
  // this way, a block at a time, so that a consumer that overrides it takes a block in one loop (its state in
  // registers, no call per record). The views live as on_sample's do.
  virtual void on_samples(unsigned cpu, std::span<const SampleView> samples) {
    for (const SampleView& sample : samples) on_sample(cpu, sample);
  }
  // The kernel dropped lost.lost (> 0) samples on `cpu` because its ring was full; reported in ring order,
  // before the sample that followed the loss. Notices with a count of 0 are never passed on.
  virtual void on_lost(unsigned cpu, const LostView& lost) = 0;
  // A pass over `cpu`'s ring is about to load the ring's head: every record committed before this call is
  // handed out before the matching on_pass_end.
  virtual void on_pass_begin(unsigned cpu) { (void)cpu; }
  // The pass over `cpu`'s ring is over: every view handed out since the previous on_pass_end is about to
  // become invalid.
  virtual void on_pass_end(unsigned cpu) { (void)cpu; }
  // Bytes of `cpu`'s ring were skipped to recover from a corrupt header.
  virtual void on_corruption(unsigned cpu, const RingCorruption& corruption) {
    (void)cpu;
    (void)corruption;
  }
  // `cpu` got a ring (at start, or when it came online).
  virtual void on_ring_opened(unsigned cpu) { (void)cpu; }
  // `cpu`'s ring was drained one last time and closed (the CPU went offline, or the pool stopped).
  virtual void on_ring_closed(unsigned cpu) { (void)cpu; }
  // The reader's flush timer fired and every ring of the reader was drained: a chance to close aged work.
  virtual void on_tick() {}
  // The pool is stopping and every ring of this reader has been drained and closed: flush everything.
  virtual void on_stop() {}
};

// Makes the consumer of reader thread `reader_index`.
using ConsumerFactory = std::function<std::unique_ptr<RecordConsumer>(unsigned reader_index)>;

}  // namespace perfstream
