#include "collector/transport/endpoint.hpp"

#include <charconv>

namespace perfstream {

Result<Endpoint> Endpoint::parse(const std::string& text) {
  Endpoint e;
  auto bad = [&](const std::string& why) {
    return Error("endpoint '" + text + "': " + why + " (use tcp://HOST:PORT or unix:/PATH)");
  };
  if (text.rfind("unix:", 0) == 0) {
    e.kind = Kind::Unix;
    e.path = text.substr(5);
    if (e.path.rfind("//", 0) == 0) e.path = e.path.substr(2);
    if (e.path.empty()) return bad("no socket path");
    // sockaddr_un holds 108 bytes with the NUL; Asio throws on a longer path, on whichever thread connects.
    if (e.path.size() > 107) return bad("the socket path is longer than 107 bytes");
    return e;
  }
  if (text.rfind("tcp://", 0) != 0) return bad("unknown scheme");
  std::string rest = text.substr(6);
  std::size_t colon;
  if (!rest.empty() && rest[0] == '[') {
    const std::size_t close = rest.find(']');
    if (close == std::string::npos) return bad("unclosed [ in an IPv6 address");
    e.host = rest.substr(1, close - 1);
    colon = close + 1;
    if (colon >= rest.size() || rest[colon] != ':') return bad("no port");
  } else {
    colon = rest.rfind(':');
    if (colon == std::string::npos) return bad("no port");
    e.host = rest.substr(0, colon);
    // Else "tcp://fe80::1" would quietly be host "fe80:", port 1.
    if (e.host.find(':') != std::string::npos) return bad("an IPv6 address goes in brackets: tcp://[ADDR]:PORT");
  }
  if (e.host.empty()) return bad("no host");
  const std::string port = rest.substr(colon + 1);
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || ptr != port.data() + port.size() || port.empty() || value > 65535) {
    return bad("port '" + port + "' is not a number from 0 to 65535");
  }
  e.port = static_cast<std::uint16_t>(value);
  return e;
}

std::string Endpoint::to_string() const {
  // parse() drops a leading "//" (unix:///run/x); a path that itself starts with "//" keeps it only behind one.
  if (kind == Kind::Unix) return (path.rfind("//", 0) == 0 ? "unix://" : "unix:") + path;
  const bool v6 = host.find(':') != std::string::npos;
  return "tcp://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

bool Endpoint::is_loopback() const {
  if (kind == Kind::Unix) return true;
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

}  // namespace perfstream
