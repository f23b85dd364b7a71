#include "collector/kernel/perf_ring.hpp"

#include <linux/perf_event.h>

#include <atomic>
#include <algorithm>
#include <cstring>
#include <string>

namespace perfstream {
namespace {

std::uint64_t load_head(perf_event_mmap_page* meta) {
  return std::atomic_ref<__u64>(meta->data_head).load(std::memory_order_acquire);
}

std::uint64_t load_tail(perf_event_mmap_page* meta) {
  // Only the reader writes data_tail; relaxed is enough to read our own value back.
  return std::atomic_ref<__u64>(meta->data_tail).load(std::memory_order_relaxed);
}

void store_tail(perf_event_mmap_page* meta, std::uint64_t tail) {
  std::atomic_ref<__u64>(meta->data_tail).store(tail, std::memory_order_release);
}

bool is_power_of_two(std::uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace

Result<PerfRing> PerfRing::over(void* base, std::size_t mapped_size) {
  if (base == nullptr || mapped_size < sizeof(perf_event_mmap_page)) {
    return Error("perf ring: mapping of " + std::to_string(mapped_size) + " bytes is too small for its metadata page");
  }
  auto* meta = static_cast<perf_event_mmap_page*>(base);
  const std::uint64_t offset = meta->data_offset;
  const std::uint64_t size = meta->data_size;
  if (!is_power_of_two(size) || size % 8 != 0 || offset < sizeof(perf_event_mmap_page) ||
      offset > mapped_size || size > mapped_size - offset) {
    return Error("perf ring: metadata page gives data_offset " + std::to_string(offset) + " and data_size " +
                 std::to_string(size) + ", which do not describe a power-of-two area inside the " +
                 std::to_string(mapped_size) + "-byte mapping");
  }
  return PerfRing(meta, static_cast<std::byte*>(base) + offset, size);
}

PerfRing::PerfRing(perf_event_mmap_page* meta, std::byte* data, std::size_t data_size)
    : meta_(meta), data_(data), data_size_(data_size), scratch_(new std::byte[kMaxRecordSize]) {}

std::uint64_t PerfRing::pending_bytes() const { return load_head(meta_) - load_tail(meta_); }

PerfRing::Pass::Pass(PerfRing& ring) : ring_(ring) {
  head_ = load_head(ring.meta_);
  start_ = load_tail(ring.meta_);
  position_ = start_;
  prefetched_ = start_;
  committed_ = start_;
  if (start_ % 8 != 0) {
    resynchronise(start_, 0, "data_tail is not 8-byte aligned");
  } else if (head_ - start_ > ring.data_size_) {
    resynchronise(start_, 0, "data_head is more than the data size ahead of data_tail");
  }
}

void PerfRing::Pass::resynchronise(std::uint64_t at, std::uint32_t header_size, const char* reason) {
  corruption_ = RingCorruption{at, header_size, head_ - at, reason};
  position_ = head_;
}

std::span<const std::byte> PerfRing::Pass::unwrap(std::size_t offset, std::uint32_t size) {
  const std::size_t first = ring_.data_size_ - offset;
  std::memcpy(ring_.scratch_.get(), ring_.data_ + offset, first);
  std::memcpy(ring_.scratch_.get() + first, ring_.data_, size - first);
  return std::span<const std::byte>(ring_.scratch_.get(), size);
}

void PerfRing::Pass::commit() {
  if (position_ != committed_) {
    store_tail(ring_.meta_, position_);
    committed_ = position_;
  }
}

}  // namespace perfstream
