#include "collector/kernel/bpf_ringbuf.hpp"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

namespace perfstream {
namespace {

bool is_power_of_two(std::uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

std::uint64_t load_acquire(const std::uint64_t* p) {
  return std::atomic_ref<std::uint64_t>(*const_cast<std::uint64_t*>(p)).load(std::memory_order_acquire);
}

std::uint32_t load_len_acquire(const std::byte* header) {
  // The kernel clears BUSY with a release xchg on this u32 once the payload is written.
  auto* len = reinterpret_cast<std::uint32_t*>(const_cast<std::byte*>(header));
  return std::atomic_ref<std::uint32_t>(*len).load(std::memory_order_acquire);
}

std::uint64_t record_span(std::uint32_t len) {
  const std::uint64_t bytes = (len & ~(BpfRingbuf::kBusyBit | BpfRingbuf::kDiscardBit)) + BpfRingbuf::kHeaderSize;
  return (bytes + 7) & ~std::uint64_t{7};
}

}  // namespace

Result<BpfRingbuf> BpfRingbuf::open(int map_fd, const std::string& map_name) {
  const std::string what = "ring buffer map '" + map_name + "'";
  bpf_map_info info{};
  __u32 info_len = sizeof(info);
  if (bpf_obj_get_info_by_fd(map_fd, &info, &info_len) != 0) {
    return Error::from_errno(what + ": reading its map info", errno);
  }
  if (info.type != BPF_MAP_TYPE_RINGBUF) {
    return Error(what + ": map type " + std::to_string(info.type) + " is not BPF_MAP_TYPE_RINGBUF");
  }
  const long page = ::sysconf(_SC_PAGESIZE);
  const std::size_t page_size = page > 0 ? static_cast<std::size_t>(page) : 4096;
  const std::size_t data_size = info.max_entries;
  if (!is_power_of_two(data_size) || data_size % page_size != 0) {
    return Error(what + ": max_entries " + std::to_string(data_size) +
                 " is not a power-of-two multiple of the page size");
  }
  void* consumer = ::mmap(nullptr, page_size, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0);
  if (consumer == MAP_FAILED) return Error::from_errno(what + ": mmap of its consumer page", errno);
  MappedRegion consumer_page(consumer, page_size);
  // The producer page and the data area, which the kernel maps twice in a row (hence 2 * data_size).
  const std::size_t producer_size = page_size + 2 * data_size;
  void* producer = ::mmap(nullptr, producer_size, PROT_READ, MAP_SHARED, map_fd, static_cast<off_t>(page_size));
  if (producer == MAP_FAILED) {
    return Error::from_errno(what + ": mmap of its producer page and " + std::to_string(data_size) + "-byte data area",
                             errno, "raise RLIMIT_MEMLOCK or the map's max_entries is too large");
  }
  MappedRegion producer_pages(producer, producer_size);
  BpfRingbuf ring(static_cast<std::uint64_t*>(consumer), static_cast<const std::uint64_t*>(producer),
                  static_cast<const std::byte*>(producer) + page_size, data_size);
  ring.consumer_page_ = std::move(consumer_page);
  ring.producer_pages_ = std::move(producer_pages);
  return ring;
}

Result<BpfRingbuf> BpfRingbuf::over(std::uint64_t* consumer_pos, const std::uint64_t* producer_pos,
                                    const std::byte* data, std::size_t data_size) {
  if (consumer_pos == nullptr || producer_pos == nullptr || data == nullptr || !is_power_of_two(data_size) ||
      data_size < 8) {
    return Error("ring buffer: data area of " + std::to_string(data_size) + " bytes is not a power of two");
  }
  return BpfRingbuf(consumer_pos, producer_pos, data, data_size);
}

std::uint64_t BpfRingbuf::pending_bytes() const {
  // Only we write consumer_pos: a relaxed read of our own value would do, acquire costs nothing more here.
  return load_acquire(producer_pos_) - load_acquire(consumer_pos_);
}

BpfRingbuf::Pass::Pass(BpfRingbuf& ring) : ring_(ring) {
  start_ = std::atomic_ref<std::uint64_t>(*ring.consumer_pos_).load(std::memory_order_relaxed);
  head_ = load_acquire(ring.producer_pos_);
  position_ = start_;
  committed_ = start_;
  fill_at_start_ = head_ - start_;
  if (start_ % 8 != 0) {
    resynchronise(start_, 0, "consumer_pos is not 8-byte aligned");
  } else if (head_ - start_ > ring.data_size_) {
    resynchronise(start_, 0, "producer_pos is more than the data size ahead of consumer_pos");
  }
}

void BpfRingbuf::Pass::resynchronise(std::uint64_t at, std::uint32_t header_len, const char* reason) {
  corruption_ = RingCorruption{at, header_len, head_ - at, reason};
  position_ = head_;
}

std::optional<RingbufRecord> BpfRingbuf::Pass::next() {
  while (position_ != head_ && !busy_) {
    const std::uint64_t available = head_ - position_;
    if (available < kHeaderSize) {
      resynchronise(position_, 0, "fewer bytes than a record header before producer_pos");
      return std::nullopt;
    }
    // The data area is mapped twice: header and payload are contiguous from here, whatever the offset.
    const std::byte* header = ring_.data_ + (position_ & (ring_.data_size_ - 1));
    const std::uint32_t len = load_len_acquire(header);
    if (len & kBusyBit) {
      busy_ = true;
      return std::nullopt;
    }
    const std::uint64_t span = record_span(len);
    if (span > available) {
      resynchronise(position_, len, "record runs past producer_pos");
      return std::nullopt;
    }
    const std::uint64_t at = position_;
    position_ += span;
    if (len & kDiscardBit) {
      ++discarded_;
      continue;
    }
    return RingbufRecord{std::span<const std::byte>(header + kHeaderSize, len), at};
  }
  return std::nullopt;
}

bool BpfRingbuf::Pass::extend() {
  if (busy_ || corruption_ || position_ != head_ || committed_ != start_) return false;
  const std::uint64_t head = load_acquire(ring_.producer_pos_);
  if (head == head_) return false;
  head_ = head;
  // consumer_pos has not moved since the pass began, so the kernel cannot have reserved more than a ring's
  // worth past it: anything else is a corrupt producer page.
  if (head_ - start_ > ring_.data_size_) {
    resynchronise(position_, 0, "producer_pos is more than the data size ahead of consumer_pos");
  }
  return true;
}

void BpfRingbuf::Pass::commit() {
  if (position_ != committed_) {
    std::atomic_ref<std::uint64_t>(*ring_.consumer_pos_).store(position_, std::memory_order_release);
    committed_ = position_;
  }
}

}  // namespace perfstream
