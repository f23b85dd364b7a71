#include "collector/format/trace_file_claim.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace perfstream {
namespace {

std::string command_line_of(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!raw.empty() && raw.back() == '\0') raw.pop_back();
  for (char& c : raw) {
    if (c == '\0') c = ' ';
  }
  return raw;
}

// Renames FROM and its pieces FROM.1, ... to TO, TO.1, ...; removes TO's pieces that FROM does not have.
Status keep_as(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return Error::from_errno("moving the earlier recording " + from + " to " + to, errno);
  }
  unsigned piece = 1;
  for (;; ++piece) {
    const std::string source = from + "." + std::to_string(piece);
    const std::string target = to + "." + std::to_string(piece);
    if (::rename(source.c_str(), target.c_str()) == 0) continue;
    if (errno != ENOENT) return Error::from_errno("moving " + source + " to " + target, errno);
    break;
  }
  // Pieces of an older PATH.old beyond the new one's: they would read as its continuation.
  for (;; ++piece) {
    const std::string stale = to + "." + std::to_string(piece);
    if (::unlink(stale.c_str()) != 0) break;
  }
  return {};
}

}  // namespace

std::string describe_lock_holder(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return "";
  char id[64];
  std::snprintf(id, sizeof(id), "%02x:%02x:%lu", major(st.st_dev), minor(st.st_dev),
                static_cast<unsigned long>(st.st_ino));
  std::ifstream locks("/proc/locks");
  std::string line;
  const long me = static_cast<long>(::getpid());
  while (std::getline(locks, line)) {
    // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; a waiter's line has "->" after the number.
    std::istringstream words(line);
    std::string number, kind, mode, access, device;
    long pid = 0;
    words >> number >> kind;
    if (kind == "->") words >> kind;
    words >> mode >> access >> pid >> device;
    if (kind != "FLOCK" || device != id || pid == me || pid <= 0) continue;
    const std::string cmdline = command_line_of(pid);
    return "pid " + std::to_string(pid) + (cmdline.empty() ? "" : " (" + cmdline + ")");
  }
  return "";
}

Result<TraceFileClaim> TraceFileClaim::claim(const std::string& path) {
  std::string kept_as;
  for (int attempt = 0; attempt < 8; ++attempt) {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640));
    if (!fd) return Error::from_errno("creating trace file " + path, errno);
    struct stat locked {}, named {};
    if (::fstat(fd.get(), &locked) != 0) return Error::from_errno("checking trace file " + path, errno);
    if (!S_ISREG(locked.st_mode)) return TraceFileClaim(path, UniqueFd(), "");  // /dev/null, a FIFO: nothing to keep
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      if (err != EWOULDBLOCK) return Error::from_errno("locking trace file " + path, err);
      const std::string holder = describe_lock_holder(fd.get());
      return Error(path + " is being written by another recorder" + (holder.empty() ? "" : ", " + holder) +
                   "; give another -o, or wait for it to finish");
    }
    if (::lstat(path.c_str(), &named) != 0 || named.st_ino != locked.st_ino || named.st_dev != locked.st_dev) {
      continue;  // renamed or replaced between our open and our lock: claim what the path names now
    }
    if (locked.st_size == 0) return TraceFileClaim(path, std::move(fd), kept_as);
    if (!kept_as.empty()) {
      return Error("trace file " + path + " filled up while perfstream was moving the earlier one to " + kept_as);
    }
    kept_as = path + ".old";
    if (auto st = keep_as(path, kept_as); !st) return st.error();
  }
  return Error("trace file " + path + " keeps being replaced by another process; give another -o");
}

}  // namespace perfstream
