// RawPeer: a blocking peer of the sink on a raw TCP socket, speaking (or not) the stream protocol byte by
// byte, for tests of hostile and misbehaving collectors.
#pragma once

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>

#include "collector/format/frame.hpp"

namespace perfstream::testing {

class RawPeer {
 public:
  // From `source` (host byte order; another 127.x.y.z address makes another peer address), or any.
  static RawPeer tcp(std::uint16_t port, std::uint32_t source = INADDR_ANY) {
    RawPeer p(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (source != INADDR_ANY) {
      sockaddr_in from{};
      from.sin_family = AF_INET;
      from.sin_addr.s_addr = htonl(source);
      if (::bind(p.fd_, reinterpret_cast<sockaddr*>(&from), sizeof(from)) != 0) {
        throw std::runtime_error(std::string("bind: ") + std::strerror(errno));
      }
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(p.fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
    }
    return p;
  }
  RawPeer(RawPeer&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  ~RawPeer() {
    if (fd_ >= 0) ::close(fd_);
  }

  // Sends what the socket takes now without blocking; the bytes sent, or -1 once the sink has closed the
  // connection.
  long send_now(const std::string& bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n <= 0) return -1;
      done += static_cast<std::size_t>(n);
    }
    return static_cast<long>(done);
  }

  // False once the sink has closed the connection (a reset or a broken pipe).
  bool send(const std::string& bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }

  // The next frame from the sink; nullopt on end of stream, an error or the timeout.
  std::optional<std::pair<FrameType, std::string>> read_frame(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string header(kFrameHeaderSize, '\0');
    if (!read_exact(header.data(), header.size(), deadline)) return std::nullopt;
    std::string why;
    auto h = parse_frame_header(std::span<const char>(header.data(), header.size()), &why, FrameContext::Stream);
    if (!h) throw std::runtime_error("the sink sent a bad frame: " + why);
    std::string payload(h->payload_length, '\0');
    if (!read_exact(payload.data(), payload.size(), deadline)) return std::nullopt;
    return std::make_pair(h->type, payload);
  }

  // True when the sink closes the connection (end of stream or a reset) within `timeout`, whatever it
  // sent before.
  bool closed_within(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[4096];
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return true;
    }
  }

 private:
  explicit RawPeer(int fd) : fd_(fd) {
    if (fd_ < 0) throw std::runtime_error("socket");
  }
  bool read_exact(char* out, std::size_t size, std::chrono::steady_clock::time_point deadline) {
    std::size_t done = 0;
    while (done < size) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      const ssize_t n = ::recv(fd_, out + done, size - done, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }
  int fd_ = -1;
};

}  // namespace perfstream::testing
