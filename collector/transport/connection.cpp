#include "collector/transport/connection.hpp"

namespace perfstream {

Result<std::shared_ptr<asio::ssl::context>> make_tls_context(const TlsOptions& options, bool server) {
  if (options.ca_file.empty()) return Error("TLS needs --tls-ca: the CA that signs the peer's certificate");
  if (server && (options.cert_file.empty() || options.key_file.empty())) {
    return Error("a TLS sink needs --tls-cert and --tls-key");
  }
  if (options.cert_file.empty() != options.key_file.empty()) return Error("--tls-cert and --tls-key go together");
  auto ctx = std::make_shared<asio::ssl::context>(server ? asio::ssl::context::tls_server
                                                         : asio::ssl::context::tls_client);
  boost::system::error_code ec;
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1,
                   ec);
  auto load = [&](const std::string& what, const std::string& file, auto&& fn) -> Status {
    fn(ec);
    if (ec) return Error("TLS: loading " + what + " from " + file + ": " + ec.message());
    return {};
  };
  if (!options.cert_file.empty()) {
    if (auto st = load("the certificate", options.cert_file,
                       [&](auto& e) { ctx->use_certificate_chain_file(options.cert_file, e); });
        !st)
      return st.error();
    if (auto st = load("the private key", options.key_file,
                       [&](auto& e) { ctx->use_private_key_file(options.key_file, asio::ssl::context::pem, e); });
        !st)
      return st.error();
  }
  if (auto st = load("the CA", options.ca_file, [&](auto& e) { ctx->load_verify_file(options.ca_file, e); }); !st) {
    return st.error();
  }
  ctx->set_verify_mode(server ? asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert
                              : asio::ssl::verify_peer,
                       ec);
  if (ec) return Error("TLS: setting the verify mode: " + ec.message());
  return ctx;
}

}  // namespace perfstream
