// perfstream sink: receive streams from many collectors and write each to its own trace file.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include "collector/cli/commands.hpp"
#include "collector/cli/kafka_flags.hpp"
#include "collector/cli/options.hpp"
#include "collector/kafka/kafka_sink.hpp"
#include "collector/transport/sink_server.hpp"
#include "collector/util/log.hpp"
#include "collector/util/open_file_limit.hpp"
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

// How `sink` was asked to run: its flags, checked. Plain data; the command adds its log.
struct SinkSettings {
  SinkOptions options;                    // options.store.log: set by SinkCommand, which owns the log
  std::optional<KafkaSinkOptions> kafka;  // --from kafka://: consume instead of listening
  std::uint64_t status_ms = 10000;        // 0: no status lines
  std::optional<RunAsUser> user;          // --user: who the sink becomes once set up
  bool max_open_files_given = false;      // else derived from the open-file limit at setup
  bool idle_file_timeout_given = false;   // else 1 minute (0 given: never)
  bool quiet = false;                     // -q
};

ArgParser sink_flags() {
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
      .option("max-memory", 0, "SIZE",
              "compressed frames in flight, all collectors together; past it the sink stops reading "
              "(default 1/8 of RAM, at most 1G; at least twice --max-frame)")
      .option("max-connections", 0, "N", "connections open at once; more are closed at once (default 1024)")
      .option("max-connections-per-peer", 0, "N", "connections open at once from one address (default 64)")
      .option("max-open-files", 0, "N",
              "recording files open at once; at the cap the one idle longest is closed (reopened when its "
              "collector is back); default: the open-file limit less --max-connections and 64")
      .option("idle-file-timeout", 0, "TIME", "close a recording's file this long without a connection (default 1m)")
      .option("max-collectors-per-peer", 0, "N",
              "distinct collector ids with unfinished recordings from one address; new ones past it are "
              "refused (default 256)")
      .option("expire", 0, "TIME",
              "finish a recording whose collector has been gone this long, with a trailer that says so "
              "(default: never)")
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
  return parser;
}

// A SIZE or TIME flag: parsed by `parse` and handed to `apply` when given.
template <typename Apply>
Status apply_flag(const ArgParser& parser, const char* name,
                  Result<std::uint64_t> (*parse)(const std::string&, const std::string&), Apply apply) {
  if (auto text = parser.value(name)) {
    auto value = parse(name, *text);
    if (!value) return value.error();
    apply(*value);
  }
  return {};
}

// The sizes and times of the flags, in the order they are checked (the first bad one is the message).
Status read_limits(const ArgParser& parser, SinkSettings& s) {
  SinkOptions& o = s.options;
  Status st = apply_flag(parser, "rotate-size", parse_bytes, [&](std::uint64_t b) { o.store.rotate_bytes = b; });
  if (st) st = apply_flag(parser, "max-frame", parse_bytes, [&](std::uint64_t b) { o.max_frame = static_cast<std::uint32_t>(std::min<std::uint64_t>(b, 64u << 20)); });
  if (st) st = apply_flag(parser, "max-batch", parse_bytes, [&](std::uint64_t b) { o.max_batch = b; });
  if (st) st = apply_flag(parser, "max-memory", parse_bytes, [&](std::uint64_t b) { o.max_memory = b; });
  if (st) st = apply_flag(parser, "rotate-time", parse_duration_ms, [&](std::uint64_t ms) { o.store.rotate_time = std::chrono::seconds(ms / 1000); });
  if (st) st = apply_flag(parser, "idle-timeout", parse_duration_ms, [&](std::uint64_t ms) { o.idle_timeout = std::chrono::milliseconds(ms); });
  if (st) st = apply_flag(parser, "status-interval", parse_duration_ms, [&](std::uint64_t ms) { s.status_ms = ms; });
  if (st) st = apply_flag(parser, "idle-file-timeout", parse_duration_ms, [&](std::uint64_t ms) { o.store.files.idle_close = std::chrono::milliseconds(ms); });
  if (st) st = apply_flag(parser, "expire", parse_duration_ms, [&](std::uint64_t ms) { o.store.files.expire = std::chrono::milliseconds(ms); });
  return st;
}

// --user: resolved now, so that a bad name is a usage error before anything is created.
Result<std::optional<RunAsUser>> user_from(const ArgParser& parser) {
  auto spec = parser.value("user");
  if (!spec) return std::optional<RunAsUser>();
  auto user = resolve_user(*spec);
  if (!user) return user.error();
  if (auto st = can_switch_users(); !st) {
    return Error("--user " + *spec + ": " + st.error().message() + "; the sink needs no privilege: start it as that user");
  }
  return std::optional<RunAsUser>(std::move(*user));
}

// --from kafka://... with its group and properties; the store and batch limit are the listening sink's.
Result<KafkaSinkOptions> kafka_settings_from(const ArgParser& parser, const std::string& from, const SinkOptions& options) {
  KafkaSinkOptions kafka;
  auto address = KafkaAddress::parse(from);
  if (!address) return address.error();
  kafka.address = *address;
  auto group = parser.value("group");
  if (!group) return Error("--from needs --group NAME: the consumer group whose offsets say what is stored");
  kafka.group = *group;
  auto properties = kafka_properties_from(parser);
  if (!properties) return properties.error();
  kafka.properties = *properties;
  if (options.tls.enabled() || !options.tls.cert_file.empty() || !options.tls.ca_file.empty()) {
    return Error("--tls-* are for --listen; for Kafka use -X security.protocol=SSL -X ssl.ca.location=... (README: Kafka)");
  }
  kafka.store = options.store;
  // The file limits follow the connections of --listen; a Kafka sink keeps each recording's file open.
  kafka.store.files = {};
  kafka.max_batch = options.max_batch;
  return kafka;
}

// The flags, checked in the order the messages have always come in; an error is a usage error (exit 2).
Result<SinkSettings> sink_settings_from(const ArgParser& parser) {
  SinkSettings s;
  for (const auto& text : parser.values("listen")) {
    auto ep = Endpoint::parse(text);
    if (!ep) return ep.error();
    s.options.listen.push_back(*ep);
  }
  const auto from = parser.value("from");
  if (from && !s.options.listen.empty()) return Error("--listen or --from, not both (run two sinks)");
  if (!from && s.options.listen.empty()) {
    return Error("where to listen? --listen tcp://127.0.0.1:PORT or unix:/PATH (or --from kafka://BROKERS/TOPIC)");
  }
  if (!from && (parser.value("group") || !parser.values("kafka-property").empty() || parser.value("kafka-config"))) {
    return Error("--group, -X and --kafka-config go with --from kafka://...");
  }
  auto dir = parser.value("dir");
  if (!dir) return Error("where to write? -d DIR");
  s.options.store.dir = *dir;
  if (auto st = read_limits(parser, s); !st) return st.error();
  for (auto [flag, limit] : {std::pair{"max-connections", &s.options.max_connections},
                             std::pair{"max-connections-per-peer", &s.options.max_connections_per_peer},
                             std::pair{"max-open-files", &s.options.store.files.max_open},
                             std::pair{"max-collectors-per-peer", &s.options.max_collectors_per_peer}}) {
    if (auto v = parser.value(flag)) {
      auto n = parse_count(flag, *v);
      if (!n) return n.error();
      if (*n == 0) return Error(std::string("--") + flag + ": at least 1");
      *limit = static_cast<std::size_t>(*n);
    }
  }
  if (auto v = parser.value("threads")) {
    auto n = parse_count("threads", *v);
    if (!n || *n == 0 || *n > 64) return Error("--threads: between 1 and 64");
    s.options.threads = static_cast<unsigned>(*n);
  }
  s.max_open_files_given = parser.value("max-open-files").has_value();
  s.idle_file_timeout_given = parser.value("idle-file-timeout").has_value();
  s.options.allow_remote = parser.has("allow-remote");
  s.options.tls.cert_file = parser.value("tls-cert").value_or("");
  s.options.tls.key_file = parser.value("tls-key").value_or("");
  s.options.tls.ca_file = parser.value("tls-ca").value_or("");
  s.quiet = parser.has("quiet");
  auto user = user_from(parser);
  if (!user) return user.error();
  s.user = std::move(*user);
  if (from) {
    auto kafka = kafka_settings_from(parser, *from, s.options);
    if (!kafka) return kafka.error();
    s.kafka = std::move(*kafka);
  }
  return s;
}

// One run of `sink`: collectors' streams (or a Kafka topic) into DIR, until SIGINT or SIGTERM.
//
// Steps, called in this order by run_sink: setup() makes DIR and the server (or the Kafka consumer) and
// drops privileges, all before any thread starts; start() starts the server's threads (or the consumer's);
// run() waits on this thread for a signal, logging a status line every status_ms, and returns at a signal
// or when the consumer stops on its own (an error); drain() stops the server, or stops and joins the
// consumer; summarise() logs each collector's summary and gives the exit status.
class SinkCommand {
 public:
  SinkCommand(SinkSettings settings, std::ostream& err);
  ~SinkCommand();
  SinkCommand(const SinkCommand&) = delete;
  SinkCommand& operator=(const SinkCommand&) = delete;

  Status setup();
  void start();
  void run();
  void drain();
  int summarise();

 private:
  void write_log_line(const std::string& line);
  Status setup_listener();
  Status setup_consumer();
  Result<DropOutcome> drop_privileges_for(const std::string& dir);
  void wait_for_signal();
  void arm_status_timer();
  void log_listener_status();
  void log_consumer_status();

  // Declared in the order they own each other, so destruction (the reverse) is right by construction: the
  // log outlives the server and the consumer that log through it; the consumer's thread, which uses the
  // consumer and posts to io_, is joined before either goes.
  const SinkSettings settings_;
  std::ostream& err_;
  Log log_;                               // one for the sink's threads; with -q only disconnects and refusals
  bool dir_existed_ = false;              // DIR was there before setup(): not the sink's to give to --user
  std::unique_ptr<SinkServer> server_;    // --listen
  std::unique_ptr<KafkaSink> consumer_;   // --from kafka://
  asio::io_context io_;                   // this thread's: the signals and the status timer
  asio::signal_set signals_{io_};         // SIGINT and SIGTERM, from start() on
  asio::steady_timer status_timer_{io_};
  // A status tick already queued when its timer is cancelled still runs with success: it checks `stopping_`
  // so that it does not arm the timer again and keep io_.run() from returning.
  bool stopping_ = false;
  // Per collector (Kafka: per group). A collector's counters include what a resumed recording held already:
  // its first tick gives 0/s.
  std::map<std::string, StoreRate> rates_;
  Status consumer_outcome_;               // written by consumer_thread_, read after the join
  std::thread consumer_thread_;           // runs consumer_->run(); joined by drain() or the destructor
};

SinkCommand::SinkCommand(SinkSettings settings, std::ostream& err)
    : settings_(std::move(settings)), err_(err), log_([this](const std::string& line) { write_log_line(line); }) {}

SinkCommand::~SinkCommand() {
  if (consumer_thread_.joinable()) drain();  // an early return: the thread must not outlive the consumer
}

void SinkCommand::write_log_line(const std::string& line) {
  if (settings_.quiet && line.find("disconnected") == std::string::npos && line.find("refused") == std::string::npos) {
    return;
  }
  err_ << "perfstream sink: " << line << "\n" << std::flush;
}

Status SinkCommand::setup() {
  std::error_code exists_ec;
  dir_existed_ = std::filesystem::exists(settings_.options.store.dir, exists_ec);
  return settings_.kafka ? setup_consumer() : setup_listener();
}

Status SinkCommand::setup_listener() {
  SinkOptions options = settings_.options;
  options.store.log = &log_;
  // Sockets and recording files are both descriptors: take all the kernel allows this process, then
  // keep the recordings' files within what the connections leave.
  std::uint64_t nofile = 1024;
  if (auto limit = raise_open_file_limit()) {
    log_.line(limit->describe());
    nofile = limit->soft;
  } else {
    log_.line(limit.error().message() + "; going on with the limit as it is");
    rlimit now{};
    if (::getrlimit(RLIMIT_NOFILE, &now) == 0) nofile = now.rlim_cur;
  }
  auto& max_open = options.store.files.max_open;
  const std::size_t fits = SinkServer::default_max_open_files(nofile, options.max_connections);
  if (!settings_.max_open_files_given) {
    max_open = fits;
  } else if (max_open > fits) {
    log_.line("--max-open-files " + std::to_string(max_open) + " with --max-connections " +
              std::to_string(options.max_connections) + " may pass the open-file limit " + std::to_string(nofile) +
              " (at most " + std::to_string(fits) + " fit)");
  }
  if (options.store.files.idle_close.count() == 0 && !settings_.idle_file_timeout_given) {
    options.store.files.idle_close = std::chrono::minutes(1);
  }
  const auto idle = options.store.files.idle_close.count();
  log_.line("recording files: at most " + std::to_string(max_open) + " open, " +
            (idle ? "closed after " + std::to_string(idle) + " ms without a connection"
                  : "closed without a connection only for room") +
            (options.store.files.expire.count() ? ", recordings expire after " +
                                                      std::to_string(options.store.files.expire.count()) +
                                                      " ms without one"
                                                : ""));
  auto server = SinkServer::create(options);
  if (!server) return server.error();
  server_ = std::move(*server);
  auto dropped = drop_privileges_for(options.store.dir);
  if (!dropped) return dropped.error();
  for (const auto& ep : server_->bound()) {
    log_.line("listening on " + ep.to_string() + ", writing into " + options.store.dir);
  }
  log_.line(dropped->describe());
  return {};
}

// The Kafka client starts threads: it is created once the privileges are gone.
Status SinkCommand::setup_consumer() {
  KafkaSinkOptions options = *settings_.kafka;
  options.store.log = &log_;
  std::error_code dir_ec;
  std::filesystem::create_directories(options.store.dir, dir_ec);
  if (dir_ec) return Error("creating " + options.store.dir + ": " + dir_ec.message());
  auto dropped = drop_privileges_for(options.store.dir);
  if (!dropped) return dropped.error();
  log_.line(dropped->describe());
  auto consumer = KafkaSink::create(options);
  if (!consumer) return consumer.error();
  consumer_ = std::move(*consumer);
  return {};
}

// Nothing privileged is left to do once the sink listens (and has read its TLS files) and DIR exists:
// DIR, if the sink created it, goes to USER; then every capability goes. Before any thread starts.
Result<DropOutcome> SinkCommand::drop_privileges_for(const std::string& dir) {
  const auto& user = settings_.user;
  if (user && !dir_existed_) {
    const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    const bool given = dir_fd >= 0 && ::fchown(dir_fd, user->uid, user->gid) == 0;
    const int chown_errno = errno;
    if (dir_fd >= 0) ::close(dir_fd);
    if (!given) return Error::from_errno("handing " + dir + " to " + user->name, chown_errno);
  }
  DropPlan plan;
  plan.user = user;
  auto dropped = drop_privileges(plan);
  if (dropped && access(dir.c_str(), W_OK | X_OK) != 0) {
    return Error::from_errno("running as " + dropped->who + ", the sink cannot create files in " + dir, errno,
                             "make the directory writable for that user, or choose another");
  }
  return dropped;
}

void SinkCommand::start() {
  signals_.add(SIGINT);
  signals_.add(SIGTERM);
  if (server_) {
    server_->start();
    return;
  }
  consumer_thread_ = std::thread([this] {
    consumer_outcome_ = consumer_->run();
    asio::post(io_, [this] {  // the consumer stopped on its own (an error): so does the sink
      stopping_ = true;
      signals_.cancel();
      status_timer_.cancel();
    });
  });
  // The consumer's counters start at 0 when it is created: the first tick measures from here.
  rates_[settings_.kafka->group].since_last(0, 0, std::chrono::steady_clock::now());
}

void SinkCommand::run() {
  wait_for_signal();
  arm_status_timer();
  io_.run();
}

void SinkCommand::wait_for_signal() {
  signals_.async_wait([this](const boost::system::error_code& ec, int) {
    if (ec) return;
    stopping_ = true;
    if (consumer_) consumer_->stop();
    status_timer_.cancel();
  });
}

void SinkCommand::arm_status_timer() {
  if (settings_.status_ms == 0) return;
  status_timer_.expires_after(std::chrono::milliseconds(settings_.status_ms));
  status_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopping_) return;
    log_.flush();  // the summaries of rate-limited lines (refused connections) whose interval has ended
    if (server_) {
      log_listener_status();
    } else {
      log_consumer_status();
    }
    arm_status_timer();
  });
}

void SinkCommand::log_listener_status() {
  const auto now = std::chrono::steady_clock::now();
  const auto files = server_->files();
  if (files.closed_idle + files.closed_for_room + files.refused_full + server_->collectors_over_limit() > 0) {
    log_.line("recording files: " + std::to_string(files.open) + " open of " + std::to_string(files.limit) + " (" +
              std::to_string(files.idle) + " idle); closed " + std::to_string(files.closed_idle) + " idle and " +
              std::to_string(files.closed_for_room) + " for room, reopened " + std::to_string(files.reopened) +
              "; refused " + std::to_string(files.refused_full) + " collectors at the cap and " +
              std::to_string(server_->collectors_over_limit()) + " past --max-collectors-per-peer");
  }
  for (const auto& c : server_->summaries()) {
    if (!c.connected && c.finished) continue;
    const std::string rate = rates_[c.id].since_last(c.records, c.compressed_bytes, now);
    log_.line("collector " + c.id + (c.connected ? "" : " (disconnected)") + ": " + rate + ", " +
              std::to_string(c.batches) + " batches, " + std::to_string(c.records) + " records, lost " +
              std::to_string(c.lost_kernel) + " in its kernel + " + std::to_string(c.lost_collector) +
              " in its spool, " + std::to_string(c.duplicates) + " duplicates dropped");
  }
}

void SinkCommand::log_consumer_status() {
  const std::string& group = settings_.kafka->group;
  const auto st = consumer_->stats();
  log_.line("group " + group + ": " +
            rates_[group].since_last(st.records, st.compressed_bytes, std::chrono::steady_clock::now()) + ", " +
            std::to_string(st.partitions) + " partitions, " + std::to_string(st.batches) + " batches stored, " +
            std::to_string(st.duplicates) + " duplicates dropped, " + std::to_string(st.rejected) +
            " bad messages skipped, " + std::to_string(st.commits) + " commits");
}

void SinkCommand::drain() {
  if (server_) server_->stop();
  if (consumer_thread_.joinable()) {
    consumer_->stop();
    consumer_thread_.join();
  }
}

int SinkCommand::summarise() {
  std::vector<RecordingSummary> summaries;
  if (server_) {
    for (const auto& c : server_->summaries()) summaries.push_back(c);
  } else {
    summaries = consumer_->summaries();
  }
  for (const auto& c : summaries) log_.line("collector " + c.id + ": " + c.describe());
  if (!consumer_outcome_) {
    err_ << "perfstream sink: " << consumer_outcome_.error().message() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

int run_sink(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  ArgParser parser = sink_flags();
  if (auto exit_status = parser.parse_or_exit(args, out, err)) return *exit_status;
  auto settings = sink_settings_from(parser);
  if (!settings) {
    err << "perfstream sink: " << settings.error().message() << "\n";
    return 2;
  }
  SinkCommand sink(std::move(*settings), err);
  if (auto st = sink.setup(); !st) {
    err << "perfstream sink: " << st.error().message() << "\n";
    return 1;
  }
  sink.start();
  sink.run();
  sink.drain();
  return sink.summarise();
}

}  // namespace perfstream::cli
