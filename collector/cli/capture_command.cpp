// perfstream record and perfstream stream: capture BPF output into batches, and write them to a trace file
// (record) or send them to a sink (stream). Both share one capture loop: flags, signals, duration, the
// command to run, the status line and the summary; only the output differs (CaptureOutput).
#include <linux/capability.h>
#include <pthread.h>
#include <signal.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <random>
#include <sstream>

#include "collector/cli/commands.hpp"
#include "collector/cli/kafka_flags.hpp"
#include "collector/cli/options.hpp"
#include "collector/cli/record_setup.hpp"
#include "collector/cli/render.hpp"
#include "collector/format/batching_consumer.hpp"
#include "collector/format/trace_writer.hpp"
#include "collector/kafka/kafka_publisher.hpp"
#include "collector/read/capture_session.hpp"
#include "collector/transport/stream_client.hpp"
#include "collector/util/log.hpp"
#include "collector/util/privileges.hpp"

namespace perfstream::cli {
namespace {

namespace asio = boost::asio;

std::string format_rate(double v) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(v >= 100 ? 0 : 1);
  if (v >= 1e6) out << v / 1e6 << " M";
  else if (v >= 1e3) out << v / 1e3 << " k";
  else out << v << " ";
  return out.str();
}

std::string format_mb(std::uint64_t bytes) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(bytes >= 100 * 1000 * 1000 ? 0 : 2) << bytes / 1e6 << " MB";
  return out.str();
}

const char* signal_name(int signo) { return signo == SIGINT ? "SIGINT" : signo == SIGTERM ? "SIGTERM" : "a signal"; }

// SIGINT and SIGTERM for one capture. They are blocked from the first line of record and stream, before any
// thread exists, so every thread inherits the block: one that comes while the probes load, the rings are
// mapped or the output opens stays pending instead of killing the process with its default action (a file
// without a trailer, a half-made spool). The capture looks for it between its startup steps, lets it
// through to its asio::signal_set only while it runs, and blocks it again for the drain, where a second one
// is looked for by polling. They stay blocked to the end: a signal after the stop has nothing left to
// stop, and must not kill the process between its summary and its exit status.
class StopSignals {
 public:
  StopSignals() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, &previous_);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // Takes a pending SIGINT or SIGTERM and returns its number; 0 when none is pending. Blocked only.
  int take_pending() {
    const timespec now{};
    const int signo = sigtimedwait(&set_, nullptr, &now);
    return signo > 0 ? signo : 0;
  }
  // On this thread only: the threads started meanwhile keep them blocked and never see them.
  void unblock() { pthread_sigmask(SIG_UNBLOCK, &set_, nullptr); }
  void block() { pthread_sigmask(SIG_BLOCK, &set_, nullptr); }
  // The mask the process started with, for the command we run.
  const sigset_t& original_mask() const { return previous_; }

 private:
  sigset_t set_;
  sigset_t previous_;
};

// A child command held at the starting line: forked before any thread exists, it execs when released.
class Workload {
 public:
  // `stdout_to_stderr`: the trace goes to our standard output (record -o -), so the command's output must
  // not go into it.
  static Result<Workload> fork_stopped(const std::vector<std::string>& command, const sigset_t& child_mask,
                                       bool stdout_to_stderr) {
    int go[2];
    if (pipe2(go, O_CLOEXEC) != 0) return Error::from_errno("starting the command: pipe", errno);
    const pid_t pid = fork();
    if (pid < 0) return Error::from_errno("starting the command: fork", errno);
    if (pid == 0) {
      sigprocmask(SIG_SETMASK, &child_mask, nullptr);  // Ctrl-C reaches the command as it would without us
      close(go[1]);
      char byte = 0;
      if (read(go[0], &byte, 1) != 1) _exit(127);  // the recorder gave up before starting us
      if (stdout_to_stderr && dup2(STDERR_FILENO, STDOUT_FILENO) < 0) _exit(127);
      std::vector<char*> argv;
      for (const auto& a : command) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execvp(argv[0], argv.data());
      std::fprintf(stderr, "perfstream: cannot run '%s': %s\n", argv[0], std::strerror(errno));
      _exit(127);
    }
    close(go[0]);
    return Workload(pid, go[1]);
  }
  Workload(Workload&& other) noexcept : pid_(std::exchange(other.pid_, -1)), go_fd_(std::exchange(other.go_fd_, -1)) {}
  ~Workload() {
    if (go_fd_ >= 0) close(go_fd_);  // never released: the child exits without running the command
  }
  pid_t pid() const { return pid_; }
  void release() {
    if (go_fd_ < 0) return;
    char byte = 1;
    (void)!write(go_fd_, &byte, 1);
    close(go_fd_);
    go_fd_ = -1;
  }

 private:
  Workload(pid_t pid, int go_fd) : pid_(pid), go_fd_(go_fd) {}
  pid_t pid_;
  int go_fd_;
};

// Where a capture's batches go.
class CaptureOutput {
 public:
  virtual ~CaptureOutput() = default;
  virtual BatchSink& sink() = 0;
  virtual std::string destination() const = 0;         // "into FILE", "to tcp://..."
  virtual std::string status() const = 0;              // the output's part of the status line
  // A refused batch stops a recording to a file (the disk is full); a stream counts it and goes on.
  virtual bool stop_when_a_batch_is_refused() const = 0;
  // Privileges (see drop_after_setup). Before the drop: hand what the output created to the user perfstream
  // becomes. After it: fail now if the files made later could not be created. start(): background work.
  virtual Status give_to(uid_t uid, gid_t gid) = 0;
  virtual Status check_after_drop(const std::string& who) const = 0;
  virtual void start() {}
  // On the status tick: an error stops the capture (a trace file deleted under us).
  virtual Status check() { return {}; }
  // `give_up` is polled while finish waits on something that may take long (a sink's acknowledgements);
  // true means stop waiting (a second Ctrl-C).
  virtual Status finish(const v1::TraceTrailer& trailer, const std::function<bool()>& give_up) = 0;
  // What a signal during the drain does, for the user.
  virtual std::string on_signal_while_stopping() const = 0;
  virtual std::string summary(const PipelineCounters& pipeline) const = 0;
};

// Whether `who` (now us) can create files in `dir`, where `what` goes.
Status check_can_create_in(const std::string& dir, const std::string& what, const std::string& who) {
  if (access(dir.c_str(), W_OK | X_OK) == 0) return {};
  return Error::from_errno("running as " + who + ", perfstream cannot create " + what + " in " + dir, errno,
                           "make the directory writable for that user, or choose another");
}

using OutputFactory = std::function<Result<std::unique_ptr<CaptureOutput>>(const v1::TraceHeader&, Log& log)>;

class FileOutput : public CaptureOutput {
 public:
  FileOutput(std::unique_ptr<TraceFileWriter> writer, std::string path, bool rotates)
      : writer_(std::move(writer)), path_(std::move(path)), rotates_(rotates) {}
  BatchSink& sink() override { return *writer_; }
  std::string destination() const override { return "into " + path_; }
  std::string status() const override { return "written " + format_mb(writer_->bytes_written()); }
  bool stop_when_a_batch_is_refused() const override { return true; }
  Status check() override { return writer_->check(); }
  // The drain is bounded (the programs are detached first), so it is never cut short: the file ends with
  // every record and its trailer.
  Status finish(const v1::TraceTrailer& trailer, const std::function<bool()>&) override {
    return writer_->close(trailer);
  }
  std::string on_signal_while_stopping() const override {
    return "the drain goes on, so that " + path_ +
           " ends complete (kill -9 stops at once; the file then ends at its last complete batch)";
  }
  std::string summary(const PipelineCounters& pipeline) const override {
    return "wrote " + std::to_string(pipeline.records.load()) + " records in " +
           std::to_string(writer_->batches_written()) + " batches (" + format_mb(writer_->bytes_written()) + ") to " +
           path_ + (writer_->pieces() > 1 ? " (+" + std::to_string(writer_->pieces() - 1) + " more files)" : "");
  }
  Status give_to(uid_t uid, gid_t gid) override { return writer_->give_to(uid, gid); }
  Status check_after_drop(const std::string& who) const override {
    if (!rotates_) return {};
    const std::string dir = std::filesystem::path(path_).parent_path().string();
    return check_can_create_in(dir.empty() ? "." : dir, "the rotated pieces " + path_ + ".1, ...", who);
  }

 private:
  std::unique_ptr<TraceFileWriter> writer_;
  std::string path_;
  bool rotates_;
};

class StreamOutput : public CaptureOutput {
 public:
  StreamOutput(std::unique_ptr<StreamClient> client, std::string to, std::string spool_dir,
               std::chrono::milliseconds drain_timeout, Log* log)
      : client_(std::move(client)),
        to_(std::move(to)),
        spool_dir_(std::move(spool_dir)),
        drain_timeout_(drain_timeout),
        log_(log) {}
  BatchSink& sink() override { return *client_; }
  std::string destination() const override { return "to " + to_; }
  std::string status() const override {
    const auto s = client_->status();
    return std::string(s.connected ? "connected" : "DISCONNECTED") + " | backlog " + std::to_string(s.pending_batches) +
           " batches (" + format_mb(s.pending_bytes) + ")";
  }
  bool stop_when_a_batch_is_refused() const override { return false; }
  Status finish(const v1::TraceTrailer& trailer, const std::function<bool()>& give_up) override {
    if (const auto s = client_->status(); !s.connected && s.pending_batches > 0 && log_) {
      log_->line("waiting up to " + std::to_string(drain_timeout_.count()) + " ms for the sink at " + to_ +
                 " to acknowledge " + std::to_string(s.pending_batches) +
                 " batches (Ctrl-C again to stop waiting: they stay in " + spool_dir_ + ")");
    }
    bool gave_up = false;
    auto done = client_->finish(trailer, drain_timeout_, [&] { return gave_up = give_up(); });
    if (done && *done) return {};
    const auto s = client_->status();
    const std::string left = std::to_string(s.pending_batches) + " batches (" + format_mb(s.pending_bytes) +
                             ") it has not acknowledged stay in the spool directory " + spool_dir_;
    if (!done) {
      return Error("the stream to " + to_ + " did not finish: " + done.error().message() + "; " + left,
                   done.error().errnum());
    }
    return Error((gave_up ? "stopped waiting for the sink at " + to_ + ": "
                          : "the sink at " + to_ + " did not acknowledge within " +
                                std::to_string(drain_timeout_.count()) + " ms: ") +
                 left);
  }
  std::string on_signal_while_stopping() const override {
    return "not waiting for the sink's acknowledgements any longer";
  }
  std::string summary(const PipelineCounters&) const override {
    const auto s = client_->status();
    return "sent to " + to_ + ": acknowledged through batch " + std::to_string(s.acked_through) + ", " +
           std::to_string(s.connects) + " connection" + (s.connects == 1 ? "" : "s") + ", " +
           std::to_string(s.refused_batches) + " batches refused by a full spool";
  }
  Status give_to(uid_t uid, gid_t gid) override { return client_->give_spool_to(uid, gid); }
  Status check_after_drop(const std::string& who) const override {
    return check_can_create_in(spool_dir_, "spool segments", who);
  }
  void start() override { client_->start(); }

 private:
  std::unique_ptr<StreamClient> client_;
  std::string to_;
  std::string spool_dir_;
  std::chrono::milliseconds drain_timeout_;
  Log* log_;  // null under -q
};

class KafkaOutput : public CaptureOutput {
 public:
  KafkaOutput(std::unique_ptr<KafkaPublisher> publisher, std::string to, std::string spool_dir,
              std::chrono::milliseconds drain_timeout, Log* log)
      : publisher_(std::move(publisher)),
        to_(std::move(to)),
        spool_dir_(std::move(spool_dir)),
        drain_timeout_(drain_timeout),
        log_(log) {}
  void start() override {
    if (auto st = publisher_->start(); !st) start_error_ = st.error().message();
  }
  Status give_to(uid_t uid, gid_t gid) override { return publisher_->give_spool_to(uid, gid); }
  Status check_after_drop(const std::string& who) const override {
    return check_can_create_in(spool_dir_, "spool segments", who);
  }
  BatchSink& sink() override { return *publisher_; }
  std::string destination() const override { return "to " + to_; }
  std::string status() const override {
    const auto s = publisher_->status();
    return std::string(s.connected ? "kafka up" : "KAFKA DOWN") + " | backlog " + std::to_string(s.pending_batches) +
           " batches (" + format_mb(s.pending_bytes) + ")";
  }
  bool stop_when_a_batch_is_refused() const override { return false; }
  // The brokers refuse our batches for good (too large, not authorised), or the client would not start.
  Status check() override {
    const std::string why = start_error_.empty() ? publisher_->status().error : start_error_;
    return why.empty() ? Status{} : Status(Error(why));
  }
  Status finish(const v1::TraceTrailer& trailer, const std::function<bool()>& give_up) override {
    if (!start_error_.empty()) return Error(start_error_);
    if (const auto s = publisher_->status(); !s.connected && s.pending_batches > 0 && log_) {
      log_->line("waiting up to " + std::to_string(drain_timeout_.count()) + " ms for Kafka at " + to_ +
                 " to take " + std::to_string(s.pending_batches) +
                 " batches (Ctrl-C again to stop waiting: they stay in " + spool_dir_ + ")");
    }
    bool gave_up = false;
    if (!publisher_->finish(trailer, drain_timeout_, [&] { return gave_up = give_up(); })) {
      const auto s = publisher_->status();
      if (!s.error.empty()) return Error(s.error);
      return Error((gave_up ? "stopped waiting for Kafka at " + to_ + ": "
                            : "Kafka at " + to_ + " did not take everything within " +
                                  std::to_string(drain_timeout_.count()) + " ms: ") +
                   std::to_string(s.pending_batches) + " batches (" + format_mb(s.pending_bytes) +
                   ") not delivered stay in the spool directory " + spool_dir_);
    }
    return {};
  }
  std::string on_signal_while_stopping() const override { return "not waiting for Kafka's delivery reports any longer"; }
  std::string summary(const PipelineCounters&) const override {
    const auto s = publisher_->status();
    return "published to " + to_ + ": delivered through batch " + std::to_string(s.acked_through) + ", " +
           std::to_string(s.failed) + " deliveries failed and retried, " + std::to_string(s.refused_batches) +
           " batches refused by a full spool";
  }

 private:
  std::unique_ptr<KafkaPublisher> publisher_;
  std::string to_;
  std::string spool_dir_;
  std::chrono::milliseconds drain_timeout_;
  Log* log_;  // null under -q
  std::string start_error_;
};

void add_batch_flags(ArgParser& parser) {
  parser.option("duration", 'd', "TIME", "stop after this long (10s, 500ms, 2m)")
      .option("compression-level", 'z', "N", "zstd level for batches, 1 (fast) to 19 (small); default 1")
      .option("batch-bytes", 0, "SIZE", "close a batch at this many encoded bytes (default 1M)")
      .option("batch-records", 0, "N", "close a batch at this many records (default 65536)")
      .option("batch-age", 0, "TIME", "close a batch when its first record is this old (default 1s)")
      .flag("follow", 0, "with -- COMMAND: record only the command and its descendants")
      .flag("quiet", 'q', "no status line, no summary")
      .flag("help", 'h', "show this help");
}

// --user, resolved before anything is set up; exit status 2 for a bad one or when we cannot switch users.
std::optional<int> user_from(const ArgParser& parser, const std::string& me, std::optional<RunAsUser>& user,
                             std::ostream& err) {
  auto v = parser.value("user");
  if (!v) return std::nullopt;
  auto u = resolve_user(*v);
  Status st = u ? can_switch_users() : Status(u.error());
  if (!st) {
    err << me << (u ? "--user " + *v + ": " : "") << st.error().message() << "\n";
    return 2;
  }
  user = std::move(*u);
  return std::nullopt;
}

// Once setup is done, what the rest of a capture needs: a CPU that comes back online gets a new CPU-wide perf
// event (CAP_PERFMON), a ring mapped even when the setup's rings used up the locked-memory limits
// (CAP_IPC_LOCK), and a slot in the perf event array (CAP_BPF: before Linux 6.5 bpf() refuses every command
// without it when unprivileged BPF is disabled, and slots are also cleared at stop). Detaching needs
// nothing, and the output is an open file or a directory we can write to. Without hotplug: nothing.
// Must run before any thread starts (privileges.hpp); the command after -- was forked before and keeps
// the credentials perfstream was started with.
Result<DropOutcome> drop_after_setup(const std::optional<RunAsUser>& user, bool hotplug, CaptureOutput& output) {
  DropPlan plan;
  plan.user = user;
  plan.keep = hotplug ? cap_bit(CAP_BPF) | cap_bit(CAP_PERFMON) | cap_bit(CAP_IPC_LOCK) : 0;
  if (user) {
    if (auto st = output.give_to(user->uid, user->gid); !st) {
      return st.error().with_context("handing the output to " + user->name);
    }
  }
  auto dropped = drop_privileges(plan);
  if (!dropped) return dropped.error();
  if (auto st = output.check_after_drop(dropped->who); !st) return st.error();
  return dropped;
}

}  // namespace

namespace {

int run_capture(const std::string& command, const ArgParser& parser, const OutputFactory& make_output,
                StopSignals& signals, std::ostream& err) {
  const std::string me = "perfstream " + command + ": ";
  // A signal before the output exists: nothing to keep, so nothing more is done. The exit status is the
  // shell's for a process killed by that signal, as if it had come before main().
  auto interrupted_while = [&](const std::string& phase) -> std::optional<int> {
    const int signo = signals.take_pending();
    if (signo == 0) return std::nullopt;
    err << me << "interrupted by " << signal_name(signo) << " while " << phase << "; nothing was "
        << (command == "record" ? "recorded" : "sent") << "\n";
    return 128 + signo;
  };
  if (!parser.positionals().empty()) {
    err << me << "unexpected argument '" << parser.positionals().front() << "' (a command to run goes after --)\n";
    return 2;
  }
  auto capture = capture_options_from(parser, command);
  if (!capture) {
    err << capture.error().message() << "\n";
    return 2;
  }
  BatchLimits limits;
  int level = 1;
  std::uint64_t duration_ms = 0;
  {
    Status st;
    auto number = [&](const char* flag, auto apply, auto parse) {
      if (!st) return;
      if (auto v = parser.value(flag)) {
        auto r = parse(flag, *v);
        if (!r) st = r.error();
        else apply(*r);
      }
    };
    number("duration", [&](std::uint64_t v) { duration_ms = v; }, parse_duration_ms);
    number("batch-bytes", [&](std::uint64_t v) { limits.max_bytes = v; }, parse_bytes);
    number("batch-records", [&](std::uint64_t v) { limits.max_records = static_cast<std::uint32_t>(v); }, parse_count);
    number("batch-age", [&](std::uint64_t v) { limits.max_age = std::chrono::milliseconds(v); }, parse_duration_ms);
    if (auto v = parser.value("compression-level")) {
      try {
        level = std::stoi(*v);
      } catch (const std::exception&) {
        st = Error("--compression-level '" + *v + "': not a number");
      }
    }
    if (st && (limits.max_bytes == 0 || limits.max_bytes > (32u << 20))) {
      st = Error("--batch-bytes: must be between 1 and 32M");
    }
    if (st && limits.max_records == 0) st = Error("--batch-records: must be at least 1");
    if (!st) {
      err << me << st.error().message() << "\n";
      return 2;
    }
  }
  if (auto probe_check = ZstdCompressor::create(level); !probe_check) {
    err << me << "--compression-level: " << probe_check.error().message() << "\n";
    return 2;
  }
  if (auto status = interrupted_while("starting")) return *status;

  std::optional<RunAsUser> user;
  if (auto exit_status = user_from(parser, me, user, err)) return *exit_status;

  // The command, if any, is forked first, before any thread exists, and released once the rings are up.
  std::optional<Workload> workload;
  if (!parser.rest().empty()) {
    auto w = Workload::fork_stopped(parser.rest(), signals.original_mask(), parser.value("output") == "-");
    if (!w) {
      err << me << w.error().message() << "\n";
      return 1;
    }
    workload.emplace(std::move(*w));
  }

  if (parser.has("follow")) {
    if (!workload) {
      err << me << "--follow needs a command to follow (perfstream " << command << " --follow ... -- CMD)\n";
      return 2;
    }
    capture->follow_tgid = static_cast<std::uint32_t>(workload->pid());
  }
  // From here on, other threads (readers, the stream's sender) may write to `err` too: everything goes
  // through the log, one whole line at a time. Declared before everything it is handed to.
  Log log(err, me);
  capture->readers.log = &log;
  auto session = CaptureSession::open(*capture);
  if (!session) {
    log.line(session.error().message());
    return 1;
  }
  CaptureSession& s = **session;
  // Loading, verifying, opening the events and mapping the rings all happen in open(): bounded, and better
  // finished than cut (a signal cannot interrupt a program half loaded). The session's destructor detaches.
  if (auto status = interrupted_while("loading the probes")) return *status;
  // From here on a signal stops the capture the normal way: the output is made, so it ends complete.

  v1::TraceHeader header = make_trace_header(s, parser.rest());
  auto made = make_output(header, log);
  if (!made) {
    log.line(made.error().message());
    return 1;
  }
  CaptureOutput& output = **made;
  auto dropped = drop_after_setup(user, capture->readers.hotplug_interval.count() > 0, output);
  if (!dropped) {
    log.line(dropped.error().message());
    return 1;
  }
  output.start();
  BatchSink& file = output.sink();
  PipelineCounters pipeline;
  // Readers decode and encode; one worker thread compresses and writes (see BatchWorker for why).
  BatchWorker worker(std::move(*ZstdCompressor::create(level)), file, pipeline);
  const clockid_t clock = static_cast<clockid_t>(s.array().clockid());
  auto started = s.start([&](unsigned) -> std::unique_ptr<RecordConsumer> {
    return std::make_unique<BatchingConsumer>(limits, worker, clock);
  });
  if (!started) {
    log.line(started.error().message());
    return 1;
  }
  const bool quiet = parser.has("quiet");
  if (!quiet) {
    log.line("recording " + join(s.probe_names(), ", ") + " on CPUs " +
             s.array().candidates().intersect(*CpuSet::online()).to_string() + " " + output.destination() + " (" +
             s.array().geometry().describe(s.array().candidates().size()) + ")");
    log.line(dropped->describe());
  }

  asio::io_context io;
  asio::signal_set stop_signals(io, SIGINT, SIGTERM);
  asio::signal_set child_signals(io, SIGCHLD);
  asio::steady_timer duration_timer(io);
  asio::steady_timer status_timer(io);
  const bool status_line = !quiet && isatty(STDERR_FILENO);
  const auto start_time = std::chrono::steady_clock::now();
  std::string stop_reason = "stopped";
  int exit_status = 0;
  int child_status = -1;

  // A handler already queued when stop_all cancels its timer still runs with success: each checks `stopping`.
  bool stopping = false;
  auto stop_all = [&](const std::string& why) {
    if (stopping) return;
    stopping = true;
    stop_reason = why;
    stop_signals.cancel();  // later signals wait in asio's queue (see the drain below)
    child_signals.cancel();
    duration_timer.cancel();
    status_timer.cancel();
  };
  stop_signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (!ec) stop_all(signo == SIGINT ? "interrupted" : "terminated");
  });
  std::function<void()> wait_child = [&] {
    child_signals.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec || stopping || !workload) return;
      int status = 0;
      if (waitpid(workload->pid(), &status, WNOHANG) == workload->pid()) {
        child_status = status;
        stop_all("the command exited");
        return;
      }
      wait_child();
    });
  };
  if (workload) wait_child();
  if (duration_ms > 0) {
    duration_timer.expires_after(std::chrono::milliseconds(duration_ms));
    duration_timer.async_wait([&](const boost::system::error_code& ec) {
      if (!ec) stop_all("duration reached");
    });
  }
  std::uint64_t last_samples = 0;
  auto last_tick = start_time;
  std::function<void()> tick = [&] {
    status_timer.expires_after(std::chrono::seconds(1));
    status_timer.async_wait([&](const boost::system::error_code& ec) {
      if (ec || stopping) return;
      if (output.stop_when_a_batch_is_refused() && (pipeline.dropped_batches.load() > 0 || !output.check())) {
        exit_status = 1;
        stop_all("the trace file cannot be written");
        return;
      }
      if (!output.stop_when_a_batch_is_refused()) {
        if (Status st = output.check(); !st) {
          exit_status = 1;
          stop_all("stopped: " + st.error().message());
          return;
        }
      }
      if (status_line) {
        (void)s.read_output_failures();  // best effort here; stop() reads them for good and reports an error
        const auto total = s.stats().total();
        const auto now = std::chrono::steady_clock::now();
        const double secs = std::chrono::duration<double>(now - last_tick).count();
        const double rate = secs > 0 ? (total.samples - last_samples) / secs : 0;
        last_samples = total.samples;
        last_tick = now;
        const std::uint64_t in = pipeline.encoded_bytes.load();
        const std::uint64_t compressed = pipeline.compressed_bytes.load();
        std::ostringstream line;
        line << "\r\033[K" << format_rate(rate) << "events/s | lost "
             << total.lost + total.unwritable + pipeline.dropped_records.load()
             << " | in " << format_mb(in) << " | " << output.status() << " | ratio " << std::fixed
             << std::setprecision(1) << (compressed > 0 ? static_cast<double>(in) / compressed : 0.0) << "x";
        log.raw(line.str());
      }
      log.flush();  // suppression summaries whose interval has ended
      tick();
    });
  };
  tick();
  if (workload) workload->release();
  signals.unblock();  // a signal that came during startup is handled now
  io.run();
  signals.block();
  if (status_line) log.raw("\r\033[K");

  // Stop: programs detached, rings drained to the end, last batches flushed, trailer written.
  // A command still running keeps running, as with perf record.
  // A signal while stopping (a second Ctrl-C) does not cut the drain short: the rings are finite once the
  // programs are detached, and a cut would leave a file without its last batches and trailer. A stream
  // stops waiting for the sink's acknowledgements (the output decides: on_signal_while_stopping).
  int late_signal = 0;
  stop_signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (!ec) late_signal = signo;
  });
  auto signalled_while_stopping = [&]() -> bool {
    if (late_signal != 0) return true;
    io.restart();
    io.poll();  // one that reached asio after stop_all and before the block
    if (late_signal == 0) late_signal = signals.take_pending();
    if (late_signal != 0) {
      log.line(std::string(signal_name(late_signal)) + " while stopping: " + output.on_signal_while_stopping());
    }
    return late_signal != 0;
  };
  s.stop();
  signalled_while_stopping();
  worker.finish();
  signalled_while_stopping();
  const std::optional<Error> worker_error = worker.first_error();
  std::string sink_error = worker_error ? worker_error->message() : std::string();
  v1::TraceTrailer trailer = make_trace_trailer(s);
  if (auto st = output.finish(trailer, signalled_while_stopping); !st && sink_error.empty()) {
    sink_error = st.error().message();
  }
  signalled_while_stopping();
  stop_signals.cancel();
  if (!output.stop_when_a_batch_is_refused() && pipeline.dropped_batches.load() > 0) {
    log.line(std::to_string(pipeline.dropped_batches.load()) + " batches (" +
             std::to_string(pipeline.dropped_records.load()) +
             " records) were dropped because the spool was full; the sink was told in-band");
    sink_error.clear();
  }


  const auto total = s.stats().total();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();
  if (!sink_error.empty()) {
    log.line(sink_error);
    exit_status = 1;
  }
  if (!s.output_failures_error().empty()) {
    log.line("could not read the probes' failed-write counters: " + s.output_failures_error());
  }
  if (!quiet || exit_status != 0) {
    const std::uint64_t in = pipeline.encoded_bytes.load();
    const std::uint64_t written = pipeline.compressed_bytes.load();
    std::ostringstream summary;
    summary << stop_reason << " after " << std::fixed << std::setprecision(1) << elapsed
            << " s: " << total.samples << " records (" << format_mb(total.sample_bytes) << ") from "
            << s.array().candidates().size() << " CPUs, lost " << total.lost + total.unwritable << " in the kernel and "
            << pipeline.dropped_records.load() << " in perfstream"
            << (total.unwritable > 0 ? " (" + std::to_string(total.unwritable) +
                                           " of the kernel's were never written: see below)"
                                     : std::string())
            << "; " << output.summary(pipeline) << "; batches compressed "
            << std::setprecision(1) << (written > 0 ? static_cast<double>(in) / written : 0.0) << "x";
    log.line(summary.str());
    for (unsigned cpu = 0; cpu < s.stats().slots(); ++cpu) {
      const auto c = s.stats().snapshot(cpu);
      const std::string name = "CPU " + std::to_string(cpu);
      if (c.lost > 0) {
        log.line(name + " lost " + std::to_string(c.lost) + " samples: its ring filled up (at most " +
                 std::to_string(c.fill_high_water) + " of " + std::to_string(s.array().geometry().data_bytes) +
                 " bytes pending); a bigger ring (-m) or a smaller wakeup size helps");
      }
      if (c.unwritable > 0) {
        log.line(name + ": " + std::to_string(c.unwritable) + " records could not be written by the BPF programs (" +
                 render::unwritable_reason(c.unwritable_errno) + ")");
      }
      if (c.corrupt > 0) log.line(name + " had " + std::to_string(c.corrupt) + " corrupt ring headers");
    }
    if (child_status >= 0 && WIFEXITED(child_status) && WEXITSTATUS(child_status) != 0) {
      log.line("the command exited with status " + std::to_string(WEXITSTATUS(child_status)));
    } else if (child_status >= 0 && WIFSIGNALED(child_status)) {
      log.line("the command was killed by signal " + std::to_string(WTERMSIG(child_status)));
    }
  }
  return exit_status;
}

}  // namespace

int run_record(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  StopSignals signals;  // first: see StopSignals
  ArgParser parser("record", "perfstream record [--probe NAME]... [flags] [-- COMMAND ARGS...]");
  add_capture_flags(parser);
  parser.option("output", 'o', "FILE", "trace file to write (default perfstream.data); - for standard output")
      .option("rotate-size", 0, "SIZE", "start a new file (FILE.1, FILE.2, ...) when this one would pass SIZE")
      .option("rotate-time", 0, "TIME", "start a new file after this long");
  add_batch_flags(parser);
  if (auto exit_status = parser.parse_or_exit(args, out, err)) return *exit_status;
  TraceWriterOptions writer_options;
  writer_options.path = parser.value("output").value_or("perfstream.data");
  const bool to_stdout = writer_options.path == "-";
  if (to_stdout && (parser.value("rotate-size") || parser.value("rotate-time"))) {
    err << "perfstream record: -o -: standard output cannot be rotated (--rotate-size, --rotate-time)\n";
    return 2;
  }
  if (to_stdout && ::isatty(STDOUT_FILENO)) {
    err << "perfstream record: -o -: standard output is a terminal; pipe it into a reader "
           "(perfstream record -o - ... | perfstream dump -) or redirect it to a file\n";
    return 2;
  }
  if (auto v = parser.value("rotate-size")) {
    auto bytes = parse_bytes("rotate-size", *v);
    if (!bytes) {
      err << "perfstream record: " << bytes.error().message() << "\n";
      return 2;
    }
    writer_options.rotate_bytes = *bytes;
  }
  if (auto v = parser.value("rotate-time")) {
    auto ms = parse_duration_ms("rotate-time", *v);
    if (!ms || *ms < 1000) {
      err << "perfstream record: " << (ms ? std::string("--rotate-time: at least 1s") : ms.error().message()) << "\n";
      return 2;
    }
    writer_options.rotate_time = std::chrono::seconds(*ms / 1000);
  }
  return run_capture(
      "record", parser,
      [&](const v1::TraceHeader& header, Log&) -> Result<std::unique_ptr<CaptureOutput>> {
        auto writer = TraceFileWriter::create(writer_options, header);
        if (!writer) return writer.error();
        const bool rotates = writer_options.rotate_bytes != 0 || writer_options.rotate_time.count() != 0;
        return std::unique_ptr<CaptureOutput>(new FileOutput(std::move(*writer), writer_options.path, rotates));
      },
      signals, err);
}

int run_stream(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  StopSignals signals;  // first: see StopSignals
  ArgParser parser("stream",
                   "perfstream stream --to tcp://HOST:PORT|unix:/PATH|kafka://BROKERS/TOPIC [--probe NAME]... [flags] "
                   "[-- CMD...]");
  add_capture_flags(parser);
  parser.option("to", 0, "ENDPOINT", "the sink: tcp://HOST:PORT, unix:/PATH, or kafka://BROKER[,BROKER...]/TOPIC")
      .option("spool", 0, "DIR", "where batches wait for the sink's acknowledgement (default ./perfstream.spool)")
      .option("spool-size", 0, "SIZE", "most bytes the spool holds; beyond, batches are dropped and counted (default 1G)")
      .option("drain-timeout", 0, "TIME", "at the end, how long to wait for the sink to acknowledge (default 30s)")
      .option("tls-cert", 0, "FILE", "our client certificate (PEM), for mutual TLS")
      .option("tls-key", 0, "FILE", "its private key (PEM)")
      .option("tls-ca", 0, "FILE", "the CA that signed the sink's certificate (PEM)");
  add_kafka_flags(parser);
  add_batch_flags(parser);
  if (auto exit_status = parser.parse_or_exit(args, out, err)) return *exit_status;
  StreamClientOptions options;
  auto fail = [&](const std::string& why) {
    err << "perfstream stream: " << why << "\n";
    return 2;
  };
  if (!parser.value("to")) return fail("where to? --to tcp://HOST:PORT, unix:/PATH or kafka://BROKERS/TOPIC");
  const bool to_kafka = KafkaAddress::is_kafka(*parser.value("to"));
  KafkaPublisherOptions kafka;
  if (to_kafka) {
    auto address = KafkaAddress::parse(*parser.value("to"));
    if (!address) return fail(address.error().message());
    kafka.address = *address;
    auto properties = kafka_properties_from(parser);
    if (!properties) return fail(properties.error().message());
    kafka.properties = *properties;
    if (parser.value("tls-cert") || parser.value("tls-key") || parser.value("tls-ca")) {
      return fail("--tls-* are for a perfstream sink; for Kafka use -X security.protocol=SSL -X ssl.ca.location=... "
                  "(see README: Kafka)");
    }
  } else {
    if (!parser.values("kafka-property").empty() || parser.value("kafka-config")) {
      return fail("-X and --kafka-config are for --to kafka://...");
    }
    auto endpoint = Endpoint::parse(*parser.value("to"));
    if (!endpoint) return fail(endpoint.error().message());
    options.endpoint = *endpoint;
  }
  options.spool_dir = parser.value("spool").value_or("perfstream.spool");
  if (auto v = parser.value("spool-size")) {
    auto bytes = parse_bytes("spool-size", *v);
    if (!bytes) return fail(bytes.error().message());
    options.spool_bytes = *bytes;
  }
  kafka.spool_dir = options.spool_dir;
  kafka.spool_bytes = options.spool_bytes;
  std::chrono::milliseconds drain_timeout{30000};
  if (auto v = parser.value("drain-timeout")) {
    auto ms = parse_duration_ms("drain-timeout", *v);
    if (!ms) return fail(ms.error().message());
    drain_timeout = std::chrono::milliseconds(*ms);
  }
  options.tls.cert_file = parser.value("tls-cert").value_or("");
  options.tls.key_file = parser.value("tls-key").value_or("");
  options.tls.ca_file = parser.value("tls-ca").value_or("");
  const bool quiet = parser.has("quiet");
  return run_capture(
      "stream", parser,
      [&](const v1::TraceHeader& header, Log& log) -> Result<std::unique_ptr<CaptureOutput>> {
        options.log = quiet ? nullptr : &log;  // -q: no connection events
        const std::string id = header.host() + "-" + header.recording_id();
        if (to_kafka) {
          kafka.log = options.log;
          auto publisher = KafkaPublisher::create(kafka, header, id);
          if (!publisher) return publisher.error();
          return std::unique_ptr<CaptureOutput>(
              new KafkaOutput(std::move(*publisher), kafka.address.to_string(), options.spool_dir, drain_timeout,
                              options.log));
        }
        auto client = StreamClient::create(options, header, id);
        if (!client) return client.error();
        return std::unique_ptr<CaptureOutput>(new StreamOutput(std::move(*client), options.endpoint.to_string(),
                                                               options.spool_dir, drain_timeout, options.log));
      },
      signals, err);
}

}  // namespace perfstream::cli

