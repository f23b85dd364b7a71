// PerfRing: the reader's side of one perf_event mmap ring, and the only code that touches its head and tail.
//
// Layout. The mapping is one metadata page (struct perf_event_mmap_page) followed by a data area of 2^n
// pages at meta->data_offset, meta->data_size bytes long. The kernel writes records at data_head and never
// past data_tail + data_size; the reader consumes from data_tail. Both counters only grow; a position p is
// at byte p & (data_size - 1) of the data area.
//
// Ordering contract (the same as the kernel's tools/include/linux/ring_buffer.h):
//   - the kernel writes a record's bytes, then stores data_head with release semantics;
//     we load data_head with acquire semantics, so every byte below it is visible to us;
//   - we read records, then store data_tail with release semantics; the kernel loads data_tail before it
//     overwrites space, so nothing we are still reading is overwritten.
//
// Reading is done in passes. A Pass loads data_head once when it begins and hands out records up to that
// head only, so a producer faster than the reader never keeps a pass from ending. Each record is a view
// into the mmapped pages (no copy), except a record whose body runs past the end of the data area: that one
// is assembled in the ring's scratch buffer (a header never straddles the end, because every record size and
// data_size are multiples of 8). A pass crosses the end at most once, so every view it handed out stays
// valid until the pass commits, which moves data_tail to the end of the last record handed out. Commit
// happens in Pass::commit() or the destructor; the kernel may overwrite the views afterwards.
//
// Corruption. A header whose size is 0, not a multiple of 8, or larger than the bytes between it and head,
// or a tail that is misaligned or further than data_size behind head, cannot be stepped over safely. The pass
// then skips everything up to head (the one resynchronisation point the kernel guarantees), reports what it
// skipped in corruption(), and ends. The caller counts it; nothing hangs or reads out of bounds.
//
// Threads: one thread at a time may run a pass on a ring. PerfRing does not own the mapping.
#pragma once

#include <linux/perf_event.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>

#include "collector/util/result.hpp"

struct perf_event_mmap_page;

namespace perfstream {

// One record of the ring: its whole bytes, header included.
struct RecordView {
  std::span<const std::byte> bytes;
  std::uint64_t position = 0;  // ring position of the header (data_tail coordinates)
  bool wrapped = false;        // true when assembled in the scratch buffer
};

// What a pass skipped when it met a header it could not trust.
struct RingCorruption {
  std::uint64_t position = 0;       // ring position of the bad header
  std::uint32_t header_size = 0;    // the size field it claimed (0 when the header itself was not readable)
  std::uint64_t bytes_skipped = 0;  // bytes dropped to resynchronise at head
  const char* reason = "";          // static string
};

class PerfRing {
 public:
  // Wraps the mapping at `base`, `mapped_size` bytes (metadata page + data area). The data area geometry
  // is read from the metadata page; it must be a power of two that lies inside the mapping.
  static Result<PerfRing> over(void* base, std::size_t mapped_size);

  PerfRing(PerfRing&&) noexcept = default;
  PerfRing& operator=(PerfRing&&) noexcept = default;

  std::size_t data_size() const { return data_size_; }

  // Bytes written by the kernel and not yet consumed (head - tail), read without ending anyone's pass.
  std::uint64_t pending_bytes() const;

  class Pass {
   public:
    Pass(Pass&&) = delete;
    Pass& operator=(Pass&&) = delete;
    ~Pass() { commit(); }

    // The next record below the head this pass loaded, or nullopt at the end of the pass (or after a
    // corruption, see corruption()). The view is valid until commit().
    std::optional<RecordView> next();

    // Publishes data_tail = end of the last record handed out. Idempotent; later next() calls go on from
    // there and a later commit publishes again.
    void commit();

    std::uint64_t head() const { return head_; }
    std::uint64_t start() const { return start_; }
    // Bytes between tail and head when the pass began: the ring's fill level at that moment.
    std::uint64_t fill_at_start() const { return head_ - start_; }
    const std::optional<RingCorruption>& corruption() const { return corruption_; }

   private:
    friend class PerfRing;
    explicit Pass(PerfRing& ring);
    void resynchronise(std::uint64_t at, std::uint32_t header_size, const char* reason);
    // The record of `size` bytes at `offset` that runs past the data area's end, copied whole into the
    // ring's scratch buffer.
    std::span<const std::byte> unwrap(std::size_t offset, std::uint32_t size);
    // How far ahead of the record being read next() asks the ring's bytes into the cache.
    static constexpr std::uint64_t kPrefetchAhead = 1024;

    PerfRing& ring_;
    std::uint64_t head_ = 0;
    std::uint64_t start_ = 0;
    std::uint64_t position_ = 0;
    std::uint64_t prefetched_ = 0;  // ring bytes below this have been asked into the cache
    std::uint64_t committed_ = 0;
    std::optional<RingCorruption> corruption_;
  };

  // Starts a pass: loads data_head once (acquire).
  Pass begin_pass() { return Pass(*this); }

  // The largest record a perf ring can hold: the header's size field is 16 bits.
  static constexpr std::size_t kMaxRecordSize = 0xffff;

 private:
  PerfRing(perf_event_mmap_page* meta, std::byte* data, std::size_t data_size);

  perf_event_mmap_page* meta_ = nullptr;
  std::byte* data_ = nullptr;
  std::size_t data_size_ = 0;
  std::unique_ptr<std::byte[]> scratch_;  // kMaxRecordSize bytes, for the one record per pass that wraps
};

// Inline: drain_ring calls it for every record.
inline std::optional<RecordView> PerfRing::Pass::next() {
  if (position_ == head_) return std::nullopt;
  const std::uint64_t available = head_ - position_;
  if (available < sizeof(perf_event_header)) {
    resynchronise(position_, 0, "fewer bytes than a record header before data_head");
    return std::nullopt;
  }
  const std::size_t mask = ring_.data_size_ - 1;
  const std::size_t offset = position_ & mask;
  // The records a few hundred bytes on are asked into the cache now, so that their loads, a few records
  // later, find them there: the producer wrote them from another CPU (or long ago), and a hardware
  // prefetcher stops at each page's end. Never past data_head: those bytes are not written yet.
  const std::uint64_t ahead = std::min(head_, position_ + kPrefetchAhead);
  for (; prefetched_ < ahead; prefetched_ += 64) __builtin_prefetch(ring_.data_ + (prefetched_ & mask));
  // An 8-aligned header never straddles the end of a data area whose size is a multiple of 8.
  perf_event_header header;
  std::memcpy(&header, ring_.data_ + offset, sizeof(header));
  const std::uint32_t size = header.size;
  const char* bad = nullptr;
  if (size < sizeof(perf_event_header)) {
    bad = "record size smaller than its header";
  } else if (size % 8 != 0) {
    bad = "record size not a multiple of 8";
  } else if (size > available) {
    bad = "record runs past data_head";
  }
  if (bad != nullptr) {
    resynchronise(position_, size, bad);
    return std::nullopt;
  }

  RecordView view;
  view.position = position_;
  if (offset + size <= ring_.data_size_) {
    view.bytes = std::span<const std::byte>(ring_.data_ + offset, size);
  } else {
    view.bytes = unwrap(offset, size);
    view.wrapped = true;
  }
  position_ += size;
  return view;
}

}  // namespace perfstream
