// Log: where perfstream's notices for the user go (a CPU went offline, the sink is unreachable, a peer
// connected), from any thread.
//
// Ownership: one per command run, made by the command (record, stream, sink, bench) and handed down by
// reference, or as a non-owning pointer in an options struct, where null means "say nothing". Never a
// global. It must outlive everything it was handed to (declare it before them).
//
// Threads: every call may come from any thread. One mutex is held around each whole line (prefix, text,
// newline, flush), so the lines of reader threads, of a stream's sender and the status line never
// interleave. The writer runs with that mutex held: it must not call the log.
//
// Rate limit: limited(key, text) writes the first line of a key, then only counts that key's lines until
// `interval` has passed since. Once it has, the next call on the log (any key, any kind) or flush() writes
// one summary for the key: the last line it held back, followed by
// " (N more like this suppressed in the last 10 s)", N counting every line of the key not written. The
// destructor writes the summaries still pending. line() and raw() are never limited.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <ostream>
#include <string>

namespace perfstream {

class Log {
 public:
  using Clock = std::chrono::steady_clock;
  // Receives each line without its newline (and raw() text as it is), with the log's mutex held.
  using Writer = std::function<void(const std::string& text)>;

  struct Options {
    std::chrono::milliseconds interval{10000};  // of the rate limit
    std::function<Clock::time_point()> now;     // empty: Clock::now (a test gives a fake clock)
  };

  // Each line goes to `out` as prefix + text + "\n", then `out` is flushed.
  Log(std::ostream& out, std::string prefix);
  Log(std::ostream& out, std::string prefix, Options options);
  explicit Log(Writer writer);
  Log(Writer writer, Options options);
  ~Log();
  Log(const Log&) = delete;
  Log& operator=(const Log&) = delete;

  // One line, always written.
  void line(const std::string& text);
  // One line, rate-limited per key (see the top of this file).
  void limited(const std::string& key, const std::string& text);
  // `text` as it is, without prefix or newline: a status line that "\r" rewrites in place.
  void raw(const std::string& text);
  // Writes the summary of every key whose interval has ended. Cheap when there is none: commands call it
  // on their status tick, so that a summary does not wait for the next line.
  void flush();

 private:
  struct Window {
    Clock::time_point start;     // when the key's written line came
    std::uint64_t suppressed = 0;
    std::string last;            // the last line held back
  };
  void write_line(const std::string& text);                 // mutex held
  void write_summaries(Clock::time_point now, bool all);    // mutex held
  Clock::time_point now() const { return options_.now ? options_.now() : Clock::now(); }

  std::ostream* out_ = nullptr;  // or writer_
  std::string prefix_;
  Writer writer_;
  Options options_;

  std::mutex mutex_;  // guards windows_, and is held while a line is written
  std::map<std::string, Window> windows_;
};

}  // namespace perfstream
