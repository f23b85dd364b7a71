// Endpoint: where a stream goes or a sink listens: tcp://HOST:PORT (IPv4, [IPv6] or a name) or unix:/PATH.
#pragma once

#include <cstdint>
#include <string>

#include "collector/util/result.hpp"

namespace perfstream {

struct Endpoint {
  enum class Kind { Tcp, Unix };
  Kind kind = Kind::Tcp;
  std::string host;   // Tcp, without brackets
  std::uint16_t port = 0;
  std::string path;   // Unix

  static Result<Endpoint> parse(const std::string& text);
  std::string to_string() const;
  // True for 127.0.0.0/8, ::1, localhost, and unix sockets.
  bool is_loopback() const;
};

}  // namespace perfstream
