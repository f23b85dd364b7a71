// Connection: one byte stream to a peer, whichever kind it is: TCP, a unix socket, or TLS over TCP. The
// stream client and the sink server are written once against it.
//
// TLS: make_tls_context builds an OpenSSL context through Boost.Asio. A server context requires and
// verifies a client certificate signed by the given CA (mutual TLS); a client context verifies the server's
// certificate against the CA and the host name (or IP address) it connects to, and presents its own.
//
// Threads: like an Asio socket, one operation of each direction at a time, from the executor's thread.
#pragma once

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <memory>
#include <string>
#include <variant>

#include "collector/util/result.hpp"

namespace perfstream {

namespace asio = boost::asio;

struct TlsOptions {
  std::string cert_file;  // our certificate (chain), PEM
  std::string key_file;   // its private key, PEM
  std::string ca_file;    // the CA that signs the peer's certificate, PEM
  bool enabled() const { return !cert_file.empty() || !key_file.empty() || !ca_file.empty(); }
};

Result<std::shared_ptr<asio::ssl::context>> make_tls_context(const TlsOptions& options, bool server);

class Connection {
 public:
  using Tcp = asio::ip::tcp::socket;
  using Unix = asio::local::stream_protocol::socket;
  using Tls = asio::ssl::stream<asio::ip::tcp::socket>;

  explicit Connection(Tcp socket, std::string peer) : stream_(std::move(socket)), peer_(std::move(peer)) {}
  explicit Connection(Unix socket, std::string peer) : stream_(std::move(socket)), peer_(std::move(peer)) {}
  explicit Connection(std::unique_ptr<Tls> tls, std::string peer) : stream_(std::move(tls)), peer_(std::move(peer)) {}

  const std::string& peer() const { return peer_; }
  bool is_tls() const { return std::holds_alternative<std::unique_ptr<Tls>>(stream_); }
  Tls* tls() { return is_tls() ? std::get<std::unique_ptr<Tls>>(stream_).get() : nullptr; }

  template <typename Buffers, typename Handler>
  void async_write(const Buffers& buffers, Handler&& handler) {
    std::visit([&](auto& s) { asio::async_write(deref(s), buffers, std::forward<Handler>(handler)); }, stream_);
  }
  template <typename Buffers, typename Handler>
  void async_read(const Buffers& buffers, Handler&& handler) {
    std::visit([&](auto& s) { asio::async_read(deref(s), buffers, std::forward<Handler>(handler)); }, stream_);
  }
  // Reads what has arrived, at least one byte and at most the buffers' size.
  template <typename Buffers, typename Handler>
  void async_read_some(const Buffers& buffers, Handler&& handler) {
    std::visit([&](auto& s) { deref(s).async_read_some(buffers, std::forward<Handler>(handler)); }, stream_);
  }
  // Closes the underlying socket (no TLS close_notify: peers must not rely on it). Pending operations end
  // with operation_aborted.
  void close() {
    boost::system::error_code ignored;
    std::visit([&](auto& s) { lowest(s).close(ignored); }, stream_);
  }

 private:
  static Tcp& deref(Tcp& s) { return s; }
  static Unix& deref(Unix& s) { return s; }
  static Tls& deref(std::unique_ptr<Tls>& s) { return *s; }
  static Tcp& lowest(Tcp& s) { return s; }
  static Unix& lowest(Unix& s) { return s; }
  static Tcp& lowest(std::unique_ptr<Tls>& s) { return s->next_layer(); }

  std::variant<Tcp, Unix, std::unique_ptr<Tls>> stream_;
  std::string peer_;
};

}  // namespace perfstream
