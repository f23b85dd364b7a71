// FrameBudget: the memory a sink may hold for frames in flight, across all its connections (--max-memory).
//
// Contract: a connection takes bytes from the budget before it reads a frame and gives them back when the
// frame is handled or the connection goes. take_or_wait either takes the bytes at once or, when
// they would pass the limit, keeps the wake-up it was given and returns false: the connection then stops
// reading its socket, so the peer's TCP window fills and the peer blocks (back-pressure, as Kafka's
// queued.max.request.bytes does), instead of the sink allocating. Every give_back runs the wake-ups kept
// until then, once each, outside the mutex; a woken connection asks again (and may wait again). Taking and
// keeping the wake-up happen under one lock, so a give_back between the two cannot be missed.
//
// The budget must hold the largest frame's share (SinkServer makes it at least twice max_frame), or that
// frame would wait for ever.
//
// Threads: every call may come from any thread. A wake-up must not block (the sink's posts to a strand).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

namespace perfstream {

class FrameBudget {
 public:
  struct Stats {
    std::size_t limit = 0;
    std::size_t held = 0;     // taken and not given back (past limit only by hellos: take_anyway)
    std::size_t peak = 0;     // the most ever held at once
    std::uint64_t waits = 0;  // how often a connection had to wait
  };

  explicit FrameBudget(std::size_t limit) : limit_(limit) {}
  ~FrameBudget();
  FrameBudget(const FrameBudget&) = delete;
  FrameBudget& operator=(const FrameBudget&) = delete;

  // Takes `bytes` and returns true, or keeps `wake` for the next give_back and returns false.
  bool take_or_wait(std::size_t bytes, std::function<void()> wake);
  // Gives back `bytes` and runs the wake-ups kept so far; wake = false only for a connection destroyed
  // with the server (nothing is left to wake).
  void give_back(std::size_t bytes, bool wake = true);
  // Takes `bytes` even past the limit: for a hello, bounded per connection (kMaxHelloPayload), which a
  // spent budget must not keep from being read, or no collector could say hello while peers stall.
  void take_anyway(std::size_t bytes);
  Stats stats() const;
  // Destroys the wake-ups kept, without running them (the owner is shutting down).
  void cancel_waiting();

 private:
  const std::size_t limit_;
  mutable std::mutex mutex_;  // guards the fields below
  std::size_t held_ = 0;
  std::size_t peak_ = 0;
  std::uint64_t waits_ = 0;
  std::vector<std::function<void()>> waiting_;
};

// The default --max-memory: an eighth of physical memory, at most 1 GiB (at least 64 MiB).
std::size_t default_frame_memory_budget();

}  // namespace perfstream
