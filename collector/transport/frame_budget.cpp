#include "collector/transport/frame_budget.hpp"

#include <unistd.h>

#include <algorithm>
#include <cassert>

namespace perfstream {

FrameBudget::~FrameBudget() { cancel_waiting(); }

void FrameBudget::cancel_waiting() {
  // The wake-ups may own the last references to connections, whose destructors give back: they are
  // destroyed outside the mutex.
  std::vector<std::function<void()>> waiting;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    waiting.swap(waiting_);
  }
  waiting.clear();
}

bool FrameBudget::take_or_wait(std::size_t bytes, std::function<void()> wake) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (bytes <= limit_ && held_ <= limit_ - bytes) {
    held_ += bytes;
    peak_ = std::max(peak_, held_);
    return true;
  }
  ++waits_;
  waiting_.push_back(std::move(wake));
  return false;
}

void FrameBudget::take_anyway(std::size_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  held_ += bytes;
  peak_ = std::max(peak_, held_);
}

void FrameBudget::give_back(std::size_t bytes, bool wake_waiting) {
  if (bytes == 0) return;
  std::vector<std::function<void()>> wake;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    assert(bytes <= held_);
    held_ -= std::min(bytes, held_);
    if (wake_waiting) wake.swap(waiting_);
  }
  for (auto& w : wake) w();
}

FrameBudget::Stats FrameBudget::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return Stats{limit_, held_, peak_, waits_};
}

std::size_t default_frame_memory_budget() {
  constexpr std::size_t kFloor = 64u << 20;
  constexpr std::size_t kCap = 1u << 30;
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return kFloor;
  const std::size_t ram = static_cast<std::size_t>(pages) * static_cast<std::size_t>(page_size);
  return std::clamp(ram / 8, kFloor, kCap);
}

}  // namespace perfstream
