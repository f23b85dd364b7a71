#include "collector/transport/open_file_limiter.hpp"

#include <cassert>

namespace perfstream {

void OpenFileLimiter::make_idle(File& file, const std::string& id, Clock::time_point now) {
  // Idle times only grow along the list: a file made idle now goes last.
  file.idle = idle_.insert(idle_.end(), Idle{id, now});
}

void OpenFileLimiter::opened(const std::string& id, unsigned connections, Clock::time_point now) {
  auto [it, inserted] = files_.try_emplace(id);
  assert(inserted && "opened twice");
  if (!inserted) return;
  it->second.connections = connections;
  if (connections == 0) make_idle(it->second, id, now);
}

void OpenFileLimiter::closed(const std::string& id) {
  auto it = files_.find(id);
  if (it == files_.end()) return;
  if (it->second.connections == 0) idle_.erase(it->second.idle);
  files_.erase(it);
}

void OpenFileLimiter::attach(const std::string& id) {
  auto it = files_.find(id);
  assert(it != files_.end() && "a connection to a closed file");
  if (it == files_.end()) return;
  if (it->second.connections++ == 0) idle_.erase(it->second.idle);
}

void OpenFileLimiter::detach(const std::string& id, Clock::time_point now) {
  auto it = files_.find(id);
  if (it == files_.end() || it->second.connections == 0) return;
  if (--it->second.connections == 0) make_idle(it->second, id, now);
}

std::optional<std::string> OpenFileLimiter::victim() const {
  if (idle_.empty()) return std::nullopt;
  return idle_.front().id;
}

std::vector<std::string> OpenFileLimiter::idle_before(Clock::time_point cutoff) const {
  std::vector<std::string> out;
  for (const auto& idle : idle_) {
    if (idle.since > cutoff) break;
    out.push_back(idle.id);
  }
  return out;
}

}  // namespace perfstream
