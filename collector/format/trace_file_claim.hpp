// TraceFileClaim: a recorder's hold on the path it writes, so that two recorders never write one file and a
// recording already there is kept rather than truncated (as perf record keeps perf.data.old).
//
// claim(PATH) opens PATH (creating it empty when missing, never through a symlink) and takes an exclusive
// flock on it without waiting. When another process holds that lock, the claim fails and names it (its pid
// and command line, from /proc/locks). Otherwise, when PATH holds data, PATH and its rotated pieces
// (PATH.1, PATH.2, ...) are renamed to PATH.old, PATH.old.1, ... (an earlier PATH.old and its pieces are
// replaced), and a new, empty PATH is claimed the same way. After locking, the claim checks that the file
// it locked is still the one PATH names (another recorder may have renamed it meanwhile) and starts over
// when not.
//
// A path that is no regular file (/dev/null, a FIFO) is claimed as it is: no lock, nothing kept.
// The lock lasts as long as the claim: keep it until the writer has closed the file. It is advisory: it
// stops other perfstream recorders and flock(1)-aware tools, not a shell's `>`.
#pragma once

#include <string>

#include "collector/util/result.hpp"
#include "collector/util/unique_fd.hpp"

namespace perfstream {

class TraceFileClaim {
 public:
  static Result<TraceFileClaim> claim(const std::string& path);

  const std::string& path() const { return path_; }
  // PATH.old when an earlier recording was moved there; empty when PATH held nothing.
  const std::string& kept_as() const { return kept_as_; }

 private:
  TraceFileClaim(std::string path, UniqueFd fd, std::string kept_as)
      : path_(std::move(path)), fd_(std::move(fd)), kept_as_(std::move(kept_as)) {}

  std::string path_;
  UniqueFd fd_;  // holds the lock
  std::string kept_as_;
};

// Who holds a lock on the file open at `fd`, as "pid 1234 (perfstream record -o x.data ...)"; empty when
// /proc/locks does not say.
std::string describe_lock_holder(int fd);

}  // namespace perfstream
