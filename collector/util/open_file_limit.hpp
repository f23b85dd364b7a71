// raise_open_file_limit: a server's RLIMIT_NOFILE soft limit raised to its hard limit, as daemons that hold
// many sockets and files do at start (the soft limit is often 1024 while the hard one is far higher).
//
// Contract: changes only this process's soft limit (inherited by children started later), never the hard
// limit, so it needs no privilege. Reports what the limits were and what the soft limit is now; on
// failure the soft limit is unchanged and the error says why.
#pragma once

#include <cstdint>
#include <string>

#include "collector/util/result.hpp"

namespace perfstream {

struct OpenFileLimit {
  std::uint64_t soft_before = 0;
  std::uint64_t soft = 0;  // now
  std::uint64_t hard = 0;

  // "open files: soft limit 1024 raised to 524288 (the hard limit)".
  std::string describe() const;
};

Result<OpenFileLimit> raise_open_file_limit();

}  // namespace perfstream
