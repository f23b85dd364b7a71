// FakeKernelRing: a perf mmap ring laid out exactly as the kernel lays it out (one metadata page with
// data_head/data_tail/data_offset/data_size, then a power-of-two data area), written the way the kernel
// writes it: 8-byte aligned records at data_head, wrapping at the end of the data area, never overwriting
// what the reader has not released (the write fails instead, as perf_output_begin does). It also builds
// PERF_RECORD_SAMPLE (TIME | CPU | RAW) and PERF_RECORD_LOST records byte for byte like the kernel.
// Test-only.
#pragma once

#include <linux/perf_event.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

namespace perfstream::testing {

class FakeKernelRing {
 public:
  explicit FakeKernelRing(std::size_t data_size, std::size_t page_size = 4096)
      : page_size_(page_size), data_size_(data_size) {
    mapping_size_ = page_size + data_size;
    base_ = static_cast<std::byte*>(std::aligned_alloc(page_size, mapping_size_));
    std::memset(base_, 0, mapping_size_);
    meta()->data_offset = page_size;
    meta()->data_size = data_size;
  }
  ~FakeKernelRing() { std::free(base_); }
  FakeKernelRing(const FakeKernelRing&) = delete;
  FakeKernelRing& operator=(const FakeKernelRing&) = delete;

  void* base() { return base_; }
  std::size_t mapping_size() const { return mapping_size_; }
  perf_event_mmap_page* meta() { return reinterpret_cast<perf_event_mmap_page*>(base_); }
  std::byte* data() { return base_ + page_size_; }
  std::size_t data_size() const { return data_size_; }

  std::uint64_t head() { return __atomic_load_n(&meta()->data_head, __ATOMIC_ACQUIRE); }
  std::uint64_t tail() { return __atomic_load_n(&meta()->data_tail, __ATOMIC_ACQUIRE); }
  std::size_t free_space() { return data_size_ - (head() - tail()); }

  // Starts head and tail at `position` (to place the next record near the end of the data area).
  void set_position(std::uint64_t position) {
    meta()->data_head = position;
    meta()->data_tail = position;
  }

  // Writes raw bytes at head (wrapping) and publishes the new head. False when the ring has no room.
  bool write_record(std::span<const std::byte> record) {
    if (record.size() > free_space()) return false;
    std::uint64_t head = meta()->data_head;
    for (std::size_t i = 0; i < record.size(); ++i) data()[(head + i) & (data_size_ - 1)] = record[i];
    __atomic_store_n(&meta()->data_head, head + record.size(), __ATOMIC_RELEASE);
    return true;
  }

  // A sample as the kernel writes it for sample_type TIME | CPU | RAW: header, u64 time, u32 cpu, u32 res,
  // u32 raw size, raw bytes, zero padding so that raw size + 4 is a multiple of 8.
  static std::vector<std::byte> sample(std::uint64_t time, std::uint32_t cpu, std::span<const std::byte> payload) {
    const std::size_t raw_size = ((payload.size() + 4 + 7) & ~std::size_t{7}) - 4;
    const std::size_t size = sizeof(perf_event_header) + 8 + 8 + 4 + raw_size;
    std::vector<std::byte> out(size);
    perf_event_header header{PERF_RECORD_SAMPLE, 0, static_cast<std::uint16_t>(size)};
    std::byte* p = out.data();
    std::memcpy(p, &header, sizeof(header));
    p += sizeof(header);
    std::memcpy(p, &time, 8);
    p += 8;
    std::memcpy(p, &cpu, 4);
    p += 8;
    const std::uint32_t raw32 = static_cast<std::uint32_t>(raw_size);
    std::memcpy(p, &raw32, 4);
    p += 4;
    if (!payload.empty()) std::memcpy(p, payload.data(), payload.size());
    return out;
  }

  // PERF_RECORD_LOST with sample_id_all and sample_type TIME | CPU: header, u64 id, u64 lost, u64 time,
  // u32 cpu, u32 res.
  static std::vector<std::byte> lost(std::uint64_t id, std::uint64_t count, std::uint64_t time, std::uint32_t cpu) {
    const std::size_t size = sizeof(perf_event_header) + 8 + 8 + 8 + 8;
    std::vector<std::byte> out(size);
    perf_event_header header{PERF_RECORD_LOST, 0, static_cast<std::uint16_t>(size)};
    std::byte* p = out.data();
    std::memcpy(p, &header, sizeof(header));
    std::memcpy(p + 8, &id, 8);
    std::memcpy(p + 16, &count, 8);
    std::memcpy(p + 24, &time, 8);
    std::memcpy(p + 32, &cpu, 4);
    return out;
  }

  // A sample as the kernel writes it for sample_type RAW alone (perfstream's default): header, u32 raw size,
  // raw bytes, zero padding so that raw size + 4 is a multiple of 8.
  static std::vector<std::byte> raw_sample(std::span<const std::byte> payload) {
    const std::size_t raw_size = ((payload.size() + 4 + 7) & ~std::size_t{7}) - 4;
    std::vector<std::byte> out(sizeof(perf_event_header) + 4 + raw_size);
    perf_event_header header{PERF_RECORD_SAMPLE, 0, static_cast<std::uint16_t>(out.size())};
    std::memcpy(out.data(), &header, sizeof(header));
    const std::uint32_t raw32 = static_cast<std::uint32_t>(raw_size);
    std::memcpy(out.data() + sizeof(header), &raw32, 4);
    if (!payload.empty()) std::memcpy(out.data() + sizeof(header) + 4, payload.data(), payload.size());
    return out;
  }

  // PERF_RECORD_LOST with sample_id_all and a sample_type with none of the sample_id fields (RAW alone):
  // header, u64 id, u64 lost, and no trailer.
  static std::vector<std::byte> raw_lost(std::uint64_t id, std::uint64_t count) {
    std::vector<std::byte> out(sizeof(perf_event_header) + 16);
    perf_event_header header{PERF_RECORD_LOST, 0, static_cast<std::uint16_t>(out.size())};
    std::memcpy(out.data(), &header, sizeof(header));
    std::memcpy(out.data() + 8, &id, 8);
    std::memcpy(out.data() + 16, &count, 8);
    return out;
  }

  // A record of any type with `body` after the header (body size must keep the record 8-byte aligned).
  static std::vector<std::byte> other(std::uint32_t type, std::size_t body) {
    std::vector<std::byte> out(sizeof(perf_event_header) + body);
    perf_event_header header{type, 0, static_cast<std::uint16_t>(out.size())};
    std::memcpy(out.data(), &header, sizeof(header));
    return out;
  }

 private:
  std::size_t page_size_;
  std::size_t data_size_;
  std::size_t mapping_size_;
  std::byte* base_;
};

}  // namespace perfstream::testing
