// perfstream sink: receive streams from many collectors and write each to its own trace file.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <thread>

#include "collector/cli/commands.hpp"
#include "collector/cli/kafka_flags.hpp"
#include "collector/cli/options.hpp"
#include "collector/kafka/kafka_sink.hpp"
#include "collector/transport/sink_server.hpp"
#include "collector/util/log.hpp"
#include "collector/util/privileges.hpp"

namespace perfstream::cli {

namespace {

// The rate at which a sink stores, for its status lines: records and stored (compressed) bytes per second
// since the previous tick, from counters that only grow. Without a previous tick, both rates are 0.
class StoreRate {
 public:
  // "1200 records/s, 1.3 MB/s" (decimal megabytes, as `stats` gives them) since the last call; `now` becomes
  // the start of the next interval.
  std::string since_last(std::uint64_t records, std::uint64_t compressed_bytes,
                         std::chrono::steady_clock::time_point now) {
    const double secs = started_ ? std::chrono::duration<double>(now - last_time_).count() : 0;
    const double records_per_s = secs > 0 ? static_cast<double>(records - last_records_) / secs : 0;
    const double bytes_per_s = secs > 0 ? static_cast<double>(compressed_bytes - last_bytes_) / secs : 0;
    started_ = true;
    last_records_ = records;
    last_bytes_ = compressed_bytes;
    last_time_ = now;
    char text[64];
    std::snprintf(text, sizeof(text), "%.0f records/s, %.1f MB/s", records_per_s, bytes_per_s / 1e6);
    return text;
  }

 private:
  bool started_ = false;
  std::uint64_t last_records_ = 0, last_bytes_ = 0;
  std::chrono::steady_clock::time_point last_time_;
};

// `sink --from kafka://...`: the consumer runs on its own thread; this one waits for a signal and prints
// the status every status_ms.
int run_kafka_sink(const KafkaSinkOptions& options, std::uint64_t status_ms, std::ostream& err) {
  auto sink = KafkaSink::create(options);
  if (!sink) {
    err << "perfstream sink: " << sink.error().message() << "\n";
    return 1;
  }
  KafkaSink& consumer = **sink;
  Status outcome;
  asio::io_context io;
  asio::signal_set signals(io, SIGINT, SIGTERM);
  asio::steady_timer status(io);
  // A status tick already queued when its timer is cancelled still runs with success: it checks `stopping`
  // so that it does not arm the timer again and keep io.run() from returning.
  bool stopping = false;
  std::thread worker([&] {
    outcome = consumer.run();
    asio::post(io, [&] {  // the consumer stopped on its own (an error): so does the sink
      stopping = true;
      signals.cancel();
      status.cancel();
    });
  });
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (ec) return;
    stopping = true;
    consumer.stop();
    status.cancel();
  });
  // The consumer's counters start at 0 when it is created: the first tick measures from here.
  StoreRate rate;
  rate.since_last(0, 0, std::chrono::steady_clock::now());
  std::function<void()> tick = [&] {
    if (status_ms == 0) return;
    status.expires_after(std::chrono::milliseconds(status_ms));
    status.async_wait([&](const boost::system::error_code& ec) {
      if (ec || stopping) return;
      const auto st = consumer.stats();
      options.store.log->line("group " + options.group + ": " +
                        rate.since_last(st.records, st.compressed_bytes, std::chrono::steady_clock::now()) + ", " +
                        std::to_string(st.partitions) + " partitions, " + std::to_string(st.batches) +
                        " batches stored, " + std::to_string(st.duplicates) + " duplicates dropped, " +
                        std::to_string(st.rejected) + " bad messages skipped, " + std::to_string(st.commits) +
                        " commits");
      tick();
    });
  };
  tick();
  io.run();
  consumer.stop();
  worker.join();
  for (const auto& c : consumer.summaries()) {
    options.store.log->line("collector " + c.id + ": " + c.describe());
  }
  if (!outcome) {
    err << "perfstream sink: " << outcome.error().message() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

int run_sink(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  ArgParser parser("sink",
                   "perfstream sink --listen tcp://127.0.0.1:PORT|unix:/PATH -d DIR [flags]\n"
                   "       perfstream sink --from kafka://BROKER[,BROKER...]/TOPIC --group NAME -d DIR [flags]");
  parser.option("listen", 'l', "ENDPOINT", "where to accept collectors; repeat for several (loopback unless --allow-remote)")
      .option("from", 0, "KAFKA", "consume kafka://BROKER[,BROKER...]/TOPIC instead of listening")
      .option("group", 0, "NAME", "with --from: the consumer group this sink joins (its members share the partitions)")
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
             "USER, who must be able to create files in DIR (a DIR the sink creates is given to USER).\n"
             "With --from kafka://, the same happens before the Kafka client starts.\n");
  add_kafka_flags(parser);
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
  const bool from_kafka = parser.value("from").has_value();
  if (from_kafka && !options.listen.empty()) return fail("--listen or --from, not both (run two sinks)");
  if (!from_kafka && options.listen.empty()) {
    return fail("where to listen? --listen tcp://127.0.0.1:PORT or unix:/PATH (or --from kafka://BROKERS/TOPIC)");
  }
  if (!from_kafka && (parser.value("group") || !parser.values("kafka-property").empty() || parser.value("kafka-config"))) {
    return fail("--group, -X and --kafka-config go with --from kafka://...");
  }
  if (!parser.value("dir")) return fail("where to write? -d DIR");
  options.store.dir = *parser.value("dir");
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
  if (!bytes_flag("rotate-size", [&](std::uint64_t b) { options.store.rotate_bytes = b; }) ||
      !bytes_flag("max-frame", [&](std::uint64_t b) { options.max_frame = static_cast<std::uint32_t>(std::min<std::uint64_t>(b, 64u << 20)); }) ||
      !bytes_flag("max-batch", [&](std::uint64_t b) { options.max_batch = b; }) ||
      !time_flag("rotate-time", [&](std::uint64_t ms) { options.store.rotate_time = std::chrono::seconds(ms / 1000); }) ||
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
  // One log for the sink's threads; with -q, only the peers it disconnects or refuses.
  Log log([&](const std::string& line) {
    if (quiet && line.find("disconnected") == std::string::npos && line.find("refused") == std::string::npos) return;
    err << "perfstream sink: " << line << "\n" << std::flush;
  });
  options.store.log = &log;

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
  const bool dir_existed = std::filesystem::exists(options.store.dir, exists_ec);

  // Nothing privileged is left to do once the sink listens (and has read its TLS files) and DIR exists:
  // DIR, if the sink created it, goes to USER; then every capability goes. Before any thread starts.
  auto drop = [&]() -> Result<DropOutcome> {
    if (user && !dir_existed) {
      const int dir_fd = ::open(options.store.dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      const bool given = dir_fd >= 0 && ::fchown(dir_fd, user->uid, user->gid) == 0;
      const int chown_errno = errno;
      if (dir_fd >= 0) ::close(dir_fd);
      if (!given) return Error::from_errno("handing " + options.store.dir + " to " + user->name, chown_errno);
    }
    DropPlan plan;
    plan.user = user;
    auto dropped = drop_privileges(plan);
    if (dropped && access(options.store.dir.c_str(), W_OK | X_OK) != 0) {
      return Error::from_errno("running as " + dropped->who + ", the sink cannot create files in " + options.store.dir,
                               errno, "make the directory writable for that user, or choose another");
    }
    return dropped;
  };

  if (from_kafka) {
    KafkaSinkOptions kafka;
    auto address = KafkaAddress::parse(*parser.value("from"));
    if (!address) return fail(address.error().message());
    kafka.address = *address;
    if (!parser.value("group")) return fail("--from needs --group NAME: the consumer group whose offsets say what is stored");
    kafka.group = *parser.value("group");
    auto properties = kafka_properties_from(parser);
    if (!properties) return fail(properties.error().message());
    kafka.properties = *properties;
    if (options.tls.enabled() || !options.tls.cert_file.empty() || !options.tls.ca_file.empty()) {
      return fail("--tls-* are for --listen; for Kafka use -X security.protocol=SSL -X ssl.ca.location=... (README: Kafka)");
    }
    kafka.store = options.store;
    kafka.max_batch = options.max_batch;
    std::error_code dir_ec;
    std::filesystem::create_directories(options.store.dir, dir_ec);
    if (dir_ec) {
      err << "perfstream sink: creating " << options.store.dir << ": " << dir_ec.message() << "\n";
      return 1;
    }
    auto dropped = drop();
    if (!dropped) {
      err << "perfstream sink: " << dropped.error().message() << "\n";
      return 1;
    }
    options.store.log->line(dropped->describe());
    return run_kafka_sink(kafka, status_ms, err);
  }

  auto server = SinkServer::create(options);
  if (!server) {
    err << "perfstream sink: " << server.error().message() << "\n";
    return 1;
  }
  auto dropped = drop();
  if (!dropped) {
    err << "perfstream sink: " << dropped.error().message() << "\n";
    return 1;
  }
  for (const auto& ep : (*server)->bound()) {
    options.store.log->line("listening on " + ep.to_string() + ", writing into " + options.store.dir);
  }
  options.store.log->line(dropped->describe());
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
  // A collector's counters include what a resumed recording held already: its first tick gives 0/s.
  std::map<std::string, StoreRate> rates;
  std::function<void()> tick = [&] {
    if (status_ms == 0) return;
    status.expires_after(std::chrono::milliseconds(status_ms));
    status.async_wait([&](const boost::system::error_code& ec) {
      if (ec || stopping) return;
      const auto now = std::chrono::steady_clock::now();
      for (const auto& c : (*server)->summaries()) {
        if (!c.connected && c.finished) continue;
        const std::string rate = rates[c.id].since_last(c.records, c.compressed_bytes, now);
        options.store.log->line("collector " + c.id + (c.connected ? "" : " (disconnected)") + ": " + rate + ", " +
                          std::to_string(c.batches) + " batches, " + std::to_string(c.records) + " records, lost " +
                          std::to_string(c.lost_kernel) + " in its kernel + " + std::to_string(c.lost_collector) +
                          " in its spool, " + std::to_string(c.duplicates) + " duplicates dropped");
      }
      tick();
    });
  };
  tick();
  io.run();
  (*server)->stop();
  for (const auto& c : (*server)->summaries()) {
    options.store.log->line("collector " + c.id + ": " + c.describe());
  }
  return 0;
}

}  // namespace perfstream::cli
