#include "collector/util/open_file_limit.hpp"

#include <sys/resource.h>

#include <cerrno>
#include <fstream>

namespace perfstream {

std::string OpenFileLimit::describe() const {
  if (soft_before == soft) {
    return "open files: soft limit " + std::to_string(soft) + (soft == hard ? " (the hard limit)" : "") +
           ", hard limit " + std::to_string(hard);
  }
  return "open files: soft limit " + std::to_string(soft_before) + " raised to " + std::to_string(soft) +
         (soft == hard ? " (the hard limit)" : " (fs.nr_open; the hard limit is unlimited)");
}

Result<OpenFileLimit> raise_open_file_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return Error::from_errno("reading RLIMIT_NOFILE", errno);
  OpenFileLimit out;
  out.soft_before = out.soft = limit.rlim_cur;
  out.hard = limit.rlim_max;
  if (limit.rlim_cur == limit.rlim_max) return out;
  rlimit raised = limit;
  raised.rlim_cur = limit.rlim_max;
  if (limit.rlim_max == RLIM_INFINITY) {
    // No soft limit may pass the kernel's fs.nr_open, whatever the hard limit says.
    std::ifstream nr_open("/proc/sys/fs/nr_open");
    std::uint64_t most = 0;
    if (nr_open >> most && most > limit.rlim_cur) raised.rlim_cur = most;
    else return out;
  }
  if (::setrlimit(RLIMIT_NOFILE, &raised) != 0) {
    return Error::from_errno("raising RLIMIT_NOFILE from " + std::to_string(limit.rlim_cur) + " to " +
                                 std::to_string(limit.rlim_max),
                             errno);
  }
  out.soft = raised.rlim_cur;
  return out;
}

}  // namespace perfstream
