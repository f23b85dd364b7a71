// TimeOrderedReader: the records and lost notices of a recording in global time order, across CPUs, reader
// threads and pieces, in bounded memory, on top of RecordingReader.
//
// Order: by time; at equal times a lost notice before a record, and otherwise the order they were read in
// (file order). This is the order of a stable sort of the whole recording, which is what `dump` printed
// when it read recordings whole.
//
// How it stays bounded: entries wait in one queue per CPU (a CPU's records come nearly in order, so a queue
// takes them at its back) and leave through a merge over the queues' heads. An entry may leave once no
// earlier one can still come:
//   - below the watermark of the latest batch read (Batch.watermark_ns: the writer promises that every
//     record below it has been written);
//   - when the look-ahead window is full (window_bytes of batches held): the earliest entries leave until a
//     batch can be freed. This is how recordings written without watermarks are read; with watermarks it
//     only happens when a writer broke its promise.
//   - at the end of the recording, everything.
// An entry that comes in earlier than one already handed out is still handed out (nothing is dropped), out
// of order, and counted in late(): the caller reports it (with watermarks: a record the writer's margin did
// not cover; without: a recording that needs a larger window).
//
// Filters applied before an entry is queued: CPUs, and a time range [since, until). Once the watermark
// passes `until`, nothing more is read.
//
// Lifetime: an Entry's payload and batch stay valid until the next call to next().
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "collector/recording/recording_reader.hpp"

namespace perfstream::recording {

struct MergeOptions {
  std::size_t window_bytes = 32u << 20;  // batches held (decompressed messages and their columns)
  std::optional<std::vector<std::uint32_t>> cpus;  // only these CPUs
  std::optional<std::uint64_t> since_ns;  // only entries at or after
  std::optional<std::uint64_t> until_ns;  // only entries before
  std::function<void()> before_read;      // called before each batch is read (which may wait for input)
};

class TimeOrderedReader {
 public:
  struct Entry {
    bool is_lost = false;
    std::uint64_t time_ns = 0;          // a lost notice's sort time
    std::uint32_t cpu = 0;
    const DecodedBatch* batch = nullptr;
    std::uint32_t piece = 0;            // index into the reader's pieces()
    std::uint32_t index = 0;            // the record's index in its batch, or the notice's in batch->lost
    std::span<const char> payload() const { return batch->payload(index); }
    const LostEntry& lost() const { return batch->lost[index]; }
  };

  TimeOrderedReader(RecordingReader& reader, const MergeOptions& options);
  ~TimeOrderedReader();

  // The next entry in time order; false at the end.
  bool next(Entry& out);

  std::uint64_t late() const { return late_; }
  bool window_was_full() const { return window_full_; }
  // The most the reader held at once (batches' memory), for tests and benchmarks.
  std::size_t peak_held_bytes() const { return peak_held_; }

 private:
  struct Item {
    std::uint64_t time;
    std::uint64_t order;  // (kind, arrival): lost notices before records at one time, then read order
    std::uint32_t slot;   // into slots_, offset by first_slot_
    std::uint32_t index;
    bool is_lost() const { return (order >> 63) == 0; }
    bool before(const Item& o) const { return time != o.time ? time < o.time : order < o.order; }
  };
  struct Slot {
    std::unique_ptr<ReadBatch> batch;
    std::size_t pending = 0;
    std::size_t bytes = 0;
  };
  bool read_batch();               // false at the end of the recording
  void queue(const Item& item, std::uint32_t cpu);
  // The heap order on queue heads: std::*_heap keep the greatest first, so "less" means "comes later".
  auto heads_order() const {
    return [this](std::uint32_t a, std::uint32_t b) { return queues_[b].front().before(queues_[a].front()); };
  }
  const Item* earliest() const;
  Item take_earliest(std::uint32_t& cpu);
  void release_slot(std::uint32_t slot);
  bool wanted_cpu(std::uint32_t cpu) const;
  bool wanted_time(std::uint64_t t) const;

  RecordingReader& reader_;
  MergeOptions options_;
  std::vector<bool> cpu_wanted_;  // from options_.cpus, by CPU number
  std::vector<std::deque<Item>> queues_;  // by dense CPU index
  std::vector<std::uint32_t> queue_cpu_;  // dense index -> CPU
  std::unordered_map<std::uint32_t, std::uint32_t> dense_;
  std::vector<std::uint32_t> heap_;       // dense indices of non-empty queues, a min-heap on their heads
  std::deque<Slot> slots_;
  std::uint64_t first_slot_ = 0;
  std::uint64_t next_slot_ = 0;
  std::vector<std::unique_ptr<ReadBatch>> spare_;
  std::size_t held_ = 0, peak_held_ = 0;
  std::uint64_t watermark_ = 0;
  std::uint64_t arrival_ = 0;
  bool at_end_ = false;
  bool window_full_ = false;
  std::optional<Item> last_out_;
  std::uint64_t late_ = 0;
  std::optional<std::uint32_t> handed_slot_;  // the slot of the entry handed out last: released on next()
};

}  // namespace perfstream::recording
