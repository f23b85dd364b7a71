#include "collector/util/log.hpp"

#include <algorithm>
#include <cstdio>
#include <utility>

namespace perfstream {
namespace {

// "10 s", "2.5 s", "300 ms".
std::string describe(std::chrono::milliseconds d) {
  if (d.count() < 1000) return std::to_string(d.count()) + " ms";
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + " s";
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f s", static_cast<double>(d.count()) / 1000.0);
  return text;
}

}  // namespace

Log::Log(std::ostream& out, std::string prefix) : Log(out, std::move(prefix), Options{}) {}

Log::Log(std::ostream& out, std::string prefix, Options options)
    : out_(&out), prefix_(std::move(prefix)), options_(std::move(options)) {}

Log::Log(Writer writer) : Log(std::move(writer), Options{}) {}

Log::Log(Writer writer, Options options) : writer_(std::move(writer)), options_(std::move(options)) {}

Log::~Log() {
  std::lock_guard<std::mutex> lock(mutex_);
  write_summaries(now(), true);
}

void Log::line(const std::string& text) {
  std::lock_guard<std::mutex> lock(mutex_);
  write_summaries(now(), false);
  write_line(text);
}

void Log::limited(const std::string& key, const std::string& text) {
  std::lock_guard<std::mutex> lock(mutex_);
  const Clock::time_point at = now();
  write_summaries(at, false);  // ends this key's window too, when it is over
  if (auto it = windows_.find(key); it != windows_.end()) {
    ++it->second.suppressed;
    it->second.last = text;
    return;
  }
  windows_.emplace(key, Window{at, 0, {}});
  write_line(text);
}

void Log::raw(const std::string& text) {
  std::lock_guard<std::mutex> lock(mutex_);
  write_summaries(now(), false);
  if (out_ != nullptr) {
    out_->write(text.data(), static_cast<std::streamsize>(text.size()));
    out_->flush();
  } else if (writer_) {
    writer_(text);
  }
}

void Log::flush() {
  std::lock_guard<std::mutex> lock(mutex_);
  write_summaries(now(), false);
}

void Log::write_line(const std::string& text) {
  if (out_ != nullptr) {
    // Built first and written at once: one write per line, whatever the stream's buffering.
    const std::string whole = prefix_ + text + "\n";
    out_->write(whole.data(), static_cast<std::streamsize>(whole.size()));
    out_->flush();
  } else if (writer_) {
    writer_(text);
  }
}

void Log::write_summaries(Clock::time_point at, bool all) {
  for (auto it = windows_.begin(); it != windows_.end();) {
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(at - it->second.start);
    if (!all && elapsed < options_.interval) {
      ++it;
      continue;
    }
    if (it->second.suppressed > 0) {
      write_line(it->second.last + " (" + std::to_string(it->second.suppressed) +
                 " more like this suppressed in the last " + describe(std::min(elapsed, options_.interval)) + ")");
    }
    it = windows_.erase(it);
  }
}

}  // namespace perfstream
