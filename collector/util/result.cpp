#include "collector/util/result.hpp"

#include <cstring>

namespace perfstream {

Error Error::from_errno(const std::string& what, int errnum, const std::string& hint) {
  std::string message = what + ": " + std::strerror(errnum);
  if (!hint.empty()) message += " (" + hint + ")";
  return Error(std::move(message), errnum);
}

}  // namespace perfstream
