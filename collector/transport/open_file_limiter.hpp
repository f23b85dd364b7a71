// OpenFileLimiter: which recordings of a sink hold an open file, which of those have a live connection,
// and which file to close so that one more can be opened without passing the cap (--max-open-files).
//
// Contract: pure bookkeeping, keyed by collector id; it never opens or closes a file itself. The owner
// (RecordingStore) tells it what it opened and closed, and when a recording gains or loses a connection;
// it answers which files to close. An open file is either in use (one or more live connections) or idle
// (none); idle files are kept in the order they became idle, so:
//   - victim() is the file idle for longest: the one to close when the cap is reached. A file in use is
//     never named: when every open file is in use there is no victim, and the owner refuses the newcomer;
//   - idle_before(t) are the files idle since t or before, longest first: those an idle timeout closes.
// A file opened without a connection (a trailer written by the sink itself) is idle from the start.
// With capacity 0 there is no cap (full() is never true), but idleness is still tracked.
//
// Threads: none of its own, and no lock: the owner calls it under its own mutex.
#pragma once

#include <chrono>
#include <cstddef>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace perfstream {

class OpenFileLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  explicit OpenFileLimiter(std::size_t capacity) : capacity_(capacity) {}

  // `id`'s file is now open, with `connections` live connections (0: idle since `now`). Not already open.
  void opened(const std::string& id, unsigned connections, Clock::time_point now);
  // `id`'s file is closed (or was never open: then nothing happens).
  void closed(const std::string& id);
  // A connection of `id` begins or ends; its file must be open. The last one to end makes it idle at `now`.
  void attach(const std::string& id);
  void detach(const std::string& id, Clock::time_point now);

  bool is_open(const std::string& id) const { return files_.count(id) != 0; }
  // Opening one more file would pass the cap.
  bool full() const { return capacity_ != 0 && files_.size() >= capacity_; }
  // The idle file to close to make room: idle for longest; nullopt when every open file is in use.
  std::optional<std::string> victim() const;
  // The files idle since `cutoff` or before, idle for longest first.
  std::vector<std::string> idle_before(Clock::time_point cutoff) const;

  std::size_t capacity() const { return capacity_; }
  std::size_t open_files() const { return files_.size(); }
  std::size_t idle_files() const { return idle_.size(); }

 private:
  struct Idle {
    std::string id;
    Clock::time_point since;
  };
  struct File {
    unsigned connections = 0;
    std::list<Idle>::iterator idle;  // valid while connections == 0
  };
  void make_idle(File& file, const std::string& id, Clock::time_point now);

  std::size_t capacity_;
  std::unordered_map<std::string, File> files_;
  std::list<Idle> idle_;  // became idle earliest first
};

}  // namespace perfstream
