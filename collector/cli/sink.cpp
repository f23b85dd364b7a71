// perfstream sink: receive streams from many collectors and write each to its own trace file.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>

#include "collector/cli/commands.hpp"
#include "collector/cli/options.hpp"
#include "collector/transport/sink_server.hpp"
#include "collector/util/privileges.hpp"

namespace perfstream::cli {

int run_sink(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  ArgParser parser("sink", "perfstream sink --listen tcp://127.0.0.1:PORT|unix:/PATH -d DIR [flags]");
  parser.option("listen", 'l', "ENDPOINT", "where to accept collectors; repeat for several (loopback unless --allow-remote)")
      .option("dir", 'd', "DIR", "where each collector's trace file goes")
      .option("rotate-size", 0, "SIZE", "start a new file per collector when one would pass SIZE")
      .option("rotate-time", 0, "TIME", "start a new file per collector after this long")
      .option("max-frame", 0, "SIZE", "largest compressed batch accepted (default 16M)")
      .option("max-batch", 0, "SIZE", "largest decompressed batch accepted (default 64M)")
      .option("idle-timeout", 0, "TIME", "disconnect a collector silent this long (default 2m)")
      .option("threads", 0, "N", "serving threads (default 2)")
      .option("status-interval", 0, "TIME", "print each collector's progress this often (default 10s; 0: never)")
      .option("tls-cert", 0, "FILE", "the sink's certificate (PEM); with --tls-key and --tls-ca: mutual TLS")
      .option("tls-key", 0, "FILE", "its private key (PEM)")
      .option("tls-ca", 0, "FILE", "the CA whose client certificates are accepted (PEM)")
      .option("user", 0, "USER[:GROUP]", "once listening, run as USER (name or number)")
      .flag("allow-remote", 0, "accept collectors on non-loopback addresses")
      .flag("quiet", 'q', "print only errors")
      .flag("help", 'h', "show this help")
      .notes("privileges: the sink needs none. Once it listens (and has read its TLS files), it drops every\n"
             "capability (effective, permitted, bounding) and sets no_new_privs; with --user it also becomes\n"
             "USER, who must be able to create files in DIR (a DIR the sink creates is given to USER).\n");
  if (auto exit_status = parser.parse_or_exit(args, out, err)) return *exit_status;
  auto fail = [&](const std::string& why) {
    err << "perfstream sink: " << why << "\n";
    return 2;
  };
  SinkOptions options;
  for (const auto& text : parser.values("listen")) {
    auto ep = Endpoint::parse(text);
    if (!ep) return fail(ep.error().message());
    options.listen.push_back(*ep);
  }
  if (options.listen.empty()) return fail("where to listen? --listen tcp://127.0.0.1:PORT or unix:/PATH");
  if (!parser.value("dir")) return fail("where to write? -d DIR");
  options.dir = *parser.value("dir");
  auto bytes_flag = [&](const char* name, auto apply) -> bool {
    if (auto v = parser.value(name)) {
      auto b = parse_bytes(name, *v);
      if (!b) {
        fail(b.error().message());
        return false;
      }
      apply(*b);
    }
    return true;
  };
  auto time_flag = [&](const char* name, auto apply) -> bool {
    if (auto v = parser.value(name)) {
      auto ms = parse_duration_ms(name, *v);
      if (!ms) {
        fail(ms.error().message());
        return false;
      }
      apply(*ms);
    }
    return true;
  };
  std::uint64_t status_ms = 10000;
  if (!bytes_flag("rotate-size", [&](std::uint64_t b) { options.rotate_bytes = b; }) ||
      !bytes_flag("max-frame", [&](std::uint64_t b) { options.max_frame = static_cast<std::uint32_t>(std::min<std::uint64_t>(b, 64u << 20)); }) ||
      !bytes_flag("max-batch", [&](std::uint64_t b) { options.max_batch = b; }) ||
      !time_flag("rotate-time", [&](std::uint64_t ms) { options.rotate_time = std::chrono::seconds(ms / 1000); }) ||
      !time_flag("idle-timeout", [&](std::uint64_t ms) { options.idle_timeout = std::chrono::milliseconds(ms); }) ||
      !time_flag("status-interval", [&](std::uint64_t ms) { status_ms = ms; })) {
    return 2;
  }
  if (auto v = parser.value("threads")) {
    auto n = parse_count("threads", *v);
    if (!n || *n == 0 || *n > 64) return fail("--threads: between 1 and 64");
    options.threads = static_cast<unsigned>(*n);
  }
  options.allow_remote = parser.has("allow-remote");
  options.tls.cert_file = parser.value("tls-cert").value_or("");
  options.tls.key_file = parser.value("tls-key").value_or("");
  options.tls.ca_file = parser.value("tls-ca").value_or("");
  const bool quiet = parser.has("quiet");
  std::mutex log_mutex;
  options.log = [&](const std::string& line) {
    if (quiet && line.find("disconnected") == std::string::npos && line.find("refused") == std::string::npos) return;
    std::lock_guard<std::mutex> lock(log_mutex);
    err << "perfstream sink: " << line << "\n" << std::flush;
  };

  std::optional<RunAsUser> user;
  if (auto v = parser.value("user")) {
    auto u = resolve_user(*v);
    if (!u) return fail(u.error().message());
    if (auto st = can_switch_users(); !st) {
      return fail("--user " + *v + ": " + st.error().message() + "; the sink needs no privilege: start it as that user");
    }
    user = std::move(*u);
  }
  std::error_code exists_ec;
  const bool dir_existed = std::filesystem::exists(options.dir, exists_ec);

  auto server = SinkServer::create(options);
  if (!server) {
    err << "perfstream sink: " << server.error().message() << "\n";
    return 1;
  }
  // Listening, TLS files read: nothing privileged is left to do (threads start below, after the drop).
  if (user && !dir_existed) {
    const int dir_fd = ::open(options.dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    const bool given = dir_fd >= 0 && ::fchown(dir_fd, user->uid, user->gid) == 0;
    const int chown_errno = errno;
    if (dir_fd >= 0) ::close(dir_fd);
    if (!given) {
      err << "perfstream sink: " << Error::from_errno("handing " + options.dir + " to " + user->name, chown_errno).message()
          << "\n";
      return 1;
    }
  }
  DropPlan plan;
  plan.user = user;
  auto dropped = drop_privileges(plan);
  if (dropped && access(options.dir.c_str(), W_OK | X_OK) != 0) {
    dropped = Error::from_errno("running as " + dropped->who + ", the sink cannot create files in " + options.dir, errno,
                                "make the directory writable for that user, or choose another");
  }
  if (!dropped) {
    err << "perfstream sink: " << dropped.error().message() << "\n";
    return 1;
  }
  for (const auto& ep : (*server)->bound()) options.log("listening on " + ep.to_string() + ", writing into " + options.dir);
  options.log(dropped->describe());
  (*server)->start();

  asio::io_context io;
  asio::signal_set signals(io, SIGINT, SIGTERM);
  asio::steady_timer status(io);
  bool stopping = false;
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (ec) return;
    stopping = true;
    status.cancel();
  });
  std::map<std::string, std::pair<std::uint64_t, std::chrono::steady_clock::time_point>> previous;
  std::function<void()> tick = [&] {
    if (status_ms == 0) return;
    status.expires_after(std::chrono::milliseconds(status_ms));
    status.async_wait([&](const boost::system::error_code& ec) {
      if (ec || stopping) return;
      const auto now = std::chrono::steady_clock::now();
      for (const auto& c : (*server)->summaries()) {
        if (!c.connected && c.finished) continue;
        auto& [last_records, last_time] = previous[c.id];
        const double secs = last_time.time_since_epoch().count() == 0
                                ? 0
                                : std::chrono::duration<double>(now - last_time).count();
        const double rate = secs > 0 ? (c.records - last_records) / secs : 0;
        last_records = c.records;
        last_time = now;
        char rate_text[32];
        std::snprintf(rate_text, sizeof(rate_text), "%.0f", rate);
        options.log("collector " + c.id + (c.connected ? "" : " (disconnected)") + ": " + rate_text +
                    " records/s, " + std::to_string(c.batches) +
                    " batches, " + std::to_string(c.records) + " records, lost " + std::to_string(c.lost_kernel) +
                    " in its kernel + " + std::to_string(c.lost_collector) + " in its spool, " +
                    std::to_string(c.duplicates) + " duplicates dropped");
      }
      tick();
    });
  };
  tick();
  io.run();
  (*server)->stop();
  for (const auto& c : (*server)->summaries()) {
    options.log("collector " + c.id + ": " + std::to_string(c.batches) + " batches, " + std::to_string(c.records) +
                " records in " + c.file + (c.finished ? "" : " (not finished: no trailer yet)") + ", lost " +
                std::to_string(c.lost_kernel) + " + " + std::to_string(c.lost_collector));
  }
  return 0;
}

}  // namespace perfstream::cli
