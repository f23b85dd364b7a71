// BpfRingbuf: the reader's side of one BPF_MAP_TYPE_RINGBUF, and the only code that touches its positions.
//
// Layout (kernel/bpf/ringbuf.c). The map fd mmaps as three parts: at offset 0 one page holding consumer_pos
// (the only page user space may write), at offset page_size one page holding producer_pos, then the data
// area of max_entries bytes (a power-of-two number of pages). The kernel maps the data pages twice in a row,
// so a record that runs past the end of the data area continues, readable, right after it: no record is ever
// copied or assembled. Positions only grow; position p is at byte p & (data_size - 1).
//
// Record layout: an 8-byte header { u32 len; u32 page_offset; } then len payload bytes, the whole rounded up
// to 8. The two top bits of len are flags: BPF_RINGBUF_BUSY_BIT (reserved, not yet submitted or discarded)
// and BPF_RINGBUF_DISCARD_BIT (the program discarded it: skipped here, and counted).
//
// Ordering contract (the same as libbpf's ring_buffer):
//   - bpf_ringbuf_reserve moves producer_pos (store release) past a record whose header has BUSY set; submit
//     and discard clear BUSY with a release store (xchg) once the payload is written;
//     we load producer_pos with acquire, then each header's len with acquire, so the payload of a record
//     whose BUSY bit is clear is visible to us;
//   - we read records, then store consumer_pos with release semantics; the kernel loads consumer_pos before
//     it reserves space, so nothing we are still reading is overwritten.
//
// Reading is done in passes, with PerfRing's contract: a Pass loads producer_pos when it begins and hands out
// records below it only; once those are read, extend() may load producer_pos again and go on, as libbpf's
// ring_buffer loops until it finds nothing new. A record still BUSY ends the pass there (records are consumed
// in order; the next pass starts at the busy one). Every view a pass hands out points into the mapping and
// stays valid until the pass commits consumer_pos (Pass::commit() or the destructor); then the kernel may
// reuse the space.
//
// Wakeups (kernel/bpf/ringbuf.c, bpf_ringbuf_commit): without BPF_RB_NO_WAKEUP/FORCE_WAKEUP, a submit or
// discard wakes the map's waiters only when consumer_pos equals the position of the record being committed,
// i.e. when the reader had caught up with it. consumer_pos is published once per pass, so records committed
// while a pass runs wake nobody; a reader that commits, finds producer_pos still equal to consumer_pos and
// only then sleeps is woken once for the next record, and each such wakeup also costs the producer an
// irq_work. Extending a pass instead of ending it keeps consumer_pos behind the producer and so saves the
// wakeups (and the per-pass work) a busy producer would otherwise cause.
//
// Corruption. A consumer position that is misaligned or more than data_size behind producer_pos, or a
// header whose length runs past producer_pos, cannot be stepped over safely: the pass skips to producer_pos,
// reports it in corruption() (PerfRing's RingCorruption), and ends.
//
// Lost records. The kernel counts none for a ring buffer: a reserve or output that does not fit fails in the
// BPF program (NULL, or -EAGAIN), which alone can count it. What the reader can see is the fill level at each
// pass (fill_at_start), whose maximum says how close the ring came to that.
//
// Threads: one thread at a time may run a pass. BpfRingbuf owns its mappings when made by open().
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "collector/kernel/perf_ring.hpp"
#include "collector/util/mapped_region.hpp"
#include "collector/util/result.hpp"

namespace perfstream {

// One record of a BPF ring buffer: its payload (exactly the length the program gave, no padding).
struct RingbufRecord {
  std::span<const std::byte> payload;
  std::uint64_t position = 0;  // ring position of its header
};

class BpfRingbuf {
 public:
  static constexpr std::uint32_t kBusyBit = 1u << 31;
  static constexpr std::uint32_t kDiscardBit = 1u << 30;
  static constexpr std::size_t kHeaderSize = 8;

  // Maps the ring buffer behind `map_fd` (not owned, not kept) as libbpf does: the consumer page read-write,
  // the producer page and twice the data area read-only. `map_name` only names it in errors.
  static Result<BpfRingbuf> open(int map_fd, const std::string& map_name);
  // A ring over memory laid out like the kernel's: `data` readable for 2 * data_size bytes with the second
  // half a copy of the first (tests). data_size must be a power of two, at least 8. Owns nothing.
  static Result<BpfRingbuf> over(std::uint64_t* consumer_pos, const std::uint64_t* producer_pos,
                                 const std::byte* data, std::size_t data_size);

  BpfRingbuf(BpfRingbuf&&) noexcept = default;
  BpfRingbuf& operator=(BpfRingbuf&&) noexcept = default;

  std::size_t data_size() const { return data_size_; }
  // Bytes reserved by producers and not yet consumed (producer - consumer), busy records included.
  std::uint64_t pending_bytes() const;

  class Pass {
   public:
    Pass(Pass&&) = delete;
    Pass& operator=(Pass&&) = delete;
    ~Pass() { commit(); }

    // The next submitted record below the producer position this pass loaded; nullopt at the end of the
    // pass, at a busy record (see busy()), or after a corruption. Discarded records are stepped over.
    // The view is valid until commit().
    std::optional<RingbufRecord> next();
    // Publishes consumer_pos = end of the last record stepped over. Idempotent.
    void commit();
    // After next() returned nullopt at the end of the records (not at a busy record or a corruption, and not
    // after commit()): loads producer_pos again (acquire); true when records were produced since, which
    // next() then hands out in this same pass, their views valid until commit() like the others.
    bool extend();

    // Bytes between consumer and producer when the pass began: the ring's fill level at that moment.
    std::uint64_t fill_at_start() const { return fill_at_start_; }
    // Bytes stepped over so far (records, discarded ones and a skipped corruption included, headers too).
    std::uint64_t consumed() const { return position_ - start_; }
    // Discarded records this pass stepped over.
    std::uint64_t discarded() const { return discarded_; }
    // True when the pass stopped at a record not yet submitted or discarded.
    bool busy() const { return busy_; }
    const std::optional<RingCorruption>& corruption() const { return corruption_; }

   private:
    friend class BpfRingbuf;
    explicit Pass(BpfRingbuf& ring);
    void resynchronise(std::uint64_t at, std::uint32_t header_len, const char* reason);

    BpfRingbuf& ring_;
    std::uint64_t head_ = 0;
    std::uint64_t start_ = 0;
    std::uint64_t position_ = 0;
    std::uint64_t committed_ = 0;
    std::uint64_t discarded_ = 0;
    std::uint64_t fill_at_start_ = 0;
    bool busy_ = false;
    std::optional<RingCorruption> corruption_;
  };

  // Starts a pass: loads producer_pos (acquire).
  Pass begin_pass() { return Pass(*this); }

 private:
  BpfRingbuf(std::uint64_t* consumer_pos, const std::uint64_t* producer_pos, const std::byte* data,
             std::size_t data_size)
      : consumer_pos_(consumer_pos), producer_pos_(producer_pos), data_(data), data_size_(data_size) {}

  MappedRegion consumer_page_;  // read-write
  MappedRegion producer_pages_; // read-only: producer page, then the data area twice
  std::uint64_t* consumer_pos_ = nullptr;
  const std::uint64_t* producer_pos_ = nullptr;
  const std::byte* data_ = nullptr;
  std::size_t data_size_ = 0;
};

}  // namespace perfstream
