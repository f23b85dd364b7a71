// perfstream record and perfstream stream: capture BPF output into batches, and write them to a trace file
// (record) or send them to a sink (stream). Both share one capture loop: flags, signals, duration, the
// command to run, the status line and the summary; only the output differs (CaptureOutput).
#include <linux/capability.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
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
#include "collector/format/trace_file_claim.hpp"
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

// The file `name` names, found as execvp(3) finds it: a name with a slash as it is, else the first
// executable regular file of that name along $PATH (or the default path when unset). An error with ENOENT
// when there is none (a shell says "command not found" and exits 127), EACCES when there is one that cannot
// be executed (126). Checked before anything is set up, so that a command that cannot start leaves no output.
Result<std::string> find_command(const std::string& name) {
  auto runnable = [](const std::string& path) -> int {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return errno;
    if (S_ISDIR(st.st_mode)) return EACCES;
    return ::access(path.c_str(), X_OK) == 0 ? 0 : errno;
  };
  if (name.empty()) return Error("cannot run '': command not found", ENOENT);
  if (name.find('/') != std::string::npos) {
    const int err = runnable(name);
    if (err == 0) return name;
    return Error::from_errno("cannot run '" + name + "'", err);
  }
  const char* env = std::getenv("PATH");
  const std::string path = env != nullptr ? env : "/usr/local/bin:/bin:/usr/bin";
  int found_err = ENOENT;
  std::size_t begin = 0;
  while (begin <= path.size()) {
    std::size_t end = path.find(':', begin);
    if (end == std::string::npos) end = path.size();
    const std::string dir = end == begin ? "." : path.substr(begin, end - begin);
    const std::string candidate = dir + "/" + name;
    const int err = runnable(candidate);
    if (err == 0) return candidate;
    if (err == EACCES) found_err = EACCES;
    begin = end + 1;
  }
  if (found_err == EACCES) return Error::from_errno("cannot run '" + name + "'", EACCES);
  return Error("cannot run '" + name + "': command not found", ENOENT);
}

// A child command held at the starting line: forked before any thread exists, it execs when released.
class Workload {
 public:
  // `stdout_to_stderr`: the trace goes to our standard output (record -o -), so the command's output must
  // not go into it.
  // `file`: the command's executable, as find_command found it.
  static Result<Workload> fork_stopped(const std::string& file, const std::vector<std::string>& command,
                                       const sigset_t& child_mask, bool stdout_to_stderr) {
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
      execv(file.c_str(), argv.data());
      const int err = errno;
      std::fprintf(stderr, "perfstream: cannot run '%s': %s\n", argv[0], std::strerror(err));
      _exit(err == ENOENT ? 127 : 126);
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

// Where a capture's batches go: a trace file (FileOutput) or a spooled sender, a sink or Kafka (SenderOutput).
// What never changes over a capture is plain data (Traits); what does is asked of the output: its data path
// (sink, start, check, finish), handing its files to another user, and its words for the status and summary.
class CaptureOutput {
 public:
  struct Traits {
    std::string destination;  // "into FILE", "to tcp://...", for the first line
    // Exit policy: a refused batch stops a recording to a file (the disk is full); a stream counts it and
    // goes on (the sink is told in-band).
    bool stop_when_a_batch_is_refused = false;
    std::string on_signal_while_stopping;  // what a signal during the drain does, for the user
    // Where the output creates files after the privileges are dropped ("" when it creates none), and what.
    std::string creates_files_in;
    std::string creates_what;
  };
  explicit CaptureOutput(Traits traits) : traits_(std::move(traits)) {}
  virtual ~CaptureOutput() = default;
  CaptureOutput(const CaptureOutput&) = delete;
  CaptureOutput& operator=(const CaptureOutput&) = delete;
  const Traits& traits() const { return traits_; }

  // The data path. start(): background work, after the privileges are dropped. check(), on each status
  // tick: an error stops the capture (a trace file deleted under us, a topic that refuses us). finish():
  // `give_up` is polled while it waits on something that may take long (a sink's acknowledgements); true
  // means stop waiting (a second Ctrl-C).
  virtual BatchSink& sink() = 0;
  virtual Status start() = 0;
  virtual Status check() = 0;
  virtual Status finish(const v1::TraceTrailer& trailer, const std::function<bool()>& give_up) = 0;
  // Before the privileges are dropped: hand what the output created to the user perfstream becomes.
  virtual Status give_to(uid_t uid, gid_t gid) = 0;
  // Words: the output's part of the status line, and of the summary.
  virtual std::string status() const = 0;
  virtual std::string summary(const PipelineCounters& pipeline) const = 0;

  // After the privileges are dropped: fail now if the files the output makes later could not be created.
  Status check_after_drop(const std::string& who) const {
    if (traits_.creates_files_in.empty() || access(traits_.creates_files_in.c_str(), W_OK | X_OK) == 0) return {};
    return Error::from_errno("running as " + who + ", perfstream cannot create " + traits_.creates_what + " in " +
                                 traits_.creates_files_in,
                             errno, "make the directory writable for that user, or choose another");
  }

 private:
  Traits traits_;
};

using OutputFactory = std::function<Result<std::unique_ptr<CaptureOutput>>(const v1::TraceHeader&, Log& log)>;

class FileOutput : public CaptureOutput {
 public:
  // `claim` is null for standard output.
  FileOutput(std::optional<TraceFileClaim> claim, std::unique_ptr<TraceFileWriter> writer, const std::string& path,
             bool rotates)
      : CaptureOutput(traits_for(path, rotates)), claim_(std::move(claim)), writer_(std::move(writer)), path_(path) {}
  BatchSink& sink() override { return *writer_; }
  Status start() override { return {}; }
  Status check() override { return writer_->check(); }
  // The drain is bounded (the programs are detached first), so it is never cut short: the file ends with
  // every record and its trailer.
  Status finish(const v1::TraceTrailer& trailer, const std::function<bool()>&) override {
    return writer_->close(trailer);
  }
  Status give_to(uid_t uid, gid_t gid) override { return writer_->give_to(uid, gid); }
  std::string status() const override { return "written " + format_mb(writer_->bytes_written()); }
  std::string summary(const PipelineCounters& pipeline) const override {
    return "wrote " + std::to_string(pipeline.records.load()) + " records in " +
           std::to_string(writer_->batches_written()) + " batches (" + format_mb(writer_->bytes_written()) + ") to " +
           path_ + (writer_->pieces() > 1 ? " (+" + std::to_string(writer_->pieces() - 1) + " more files)" : "");
  }

 private:
  static Traits traits_for(const std::string& path, bool rotates) {
    Traits t;
    t.destination = "into " + path;
    t.stop_when_a_batch_is_refused = true;
    t.on_signal_while_stopping = "the drain goes on, so that " + path +
                                 " ends complete (kill -9 stops at once; the file then ends at its last complete batch)";
    if (rotates) {
      const std::string dir = std::filesystem::path(path).parent_path().string();
      t.creates_files_in = dir.empty() ? "." : dir;
      t.creates_what = "the rotated pieces " + path + ".1, ...";
    }
    return t;
  }

  std::optional<TraceFileClaim> claim_;  // the lock on the path: released after the writer has closed
  std::unique_ptr<TraceFileWriter> writer_;
  std::string path_;
};

// A stream to a perfstream sink or to Kafka: one SpooledSender, told apart only by the words below.
class SenderOutput : public CaptureOutput {
 public:
  struct Words {
    std::string far_end;     // "the sink at tcp://...", "Kafka at kafka://..."
    std::string sent_to;     // "sent to tcp://...", "published to kafka://..."
    std::string up, down;    // the link, on the status line
    std::string take, taken; // what the far end does with batches: "acknowledge(d)", "take(n)"
    std::string reports;     // what finish() waits for: "the sink's acknowledgements", ...
    std::string refuser = "far end";  // who gives a refusal's reason on the status line: "sink"
  };
  SenderOutput(std::unique_ptr<SpooledSender> sender, Words words, const std::string& to, std::string spool_dir,
               std::chrono::milliseconds drain_timeout, Log* log)
      : CaptureOutput(traits_for(to, spool_dir, words)),
        sender_(std::move(sender)),
        words_(std::move(words)),
        spool_dir_(std::move(spool_dir)),
        drain_timeout_(drain_timeout),
        log_(log) {}
  BatchSink& sink() override { return *sender_; }
  Status start() override { return sender_->start(); }
  // The far end refuses our batches for good (too large, not authorised), or the client would not start.
  Status check() override {
    const std::string why = sender_->sender_status().error;
    return why.empty() ? Status{} : Status(Error(why));
  }
  Status finish(const v1::TraceTrailer& trailer, const std::function<bool()>& give_up) override;
  Status give_to(uid_t uid, gid_t gid) override { return sender_->give_spool_to(uid, gid); }
  std::string status() const override {
    const auto s = sender_->sender_status();
    // The far end's own reason, while it refuses our batches: "DISCONNECTED (sink: cannot store ...)".
    const std::string why = s.far_end_refuses.empty() ? "" : " (" + words_.refuser + ": " + s.far_end_refuses + ")";
    return (s.connected ? words_.up : words_.down) + why + " | backlog " + std::to_string(s.pending_batches) +
           " batches (" + format_mb(s.pending_bytes) + ")";
  }
  std::string summary(const PipelineCounters&) const override {
    return words_.sent_to + ": " + sender_->describe_progress() + ", " +
           std::to_string(sender_->sender_status().refused_batches) + " batches refused by a full spool";
  }

 private:
  static Traits traits_for(const std::string& to, const std::string& spool_dir, const Words& words) {
    Traits t;
    t.destination = "to " + to;
    t.on_signal_while_stopping = "not waiting for " + words.reports + " any longer";
    t.creates_files_in = spool_dir;
    t.creates_what = "spool segments";
    return t;
  }

  std::unique_ptr<SpooledSender> sender_;
  Words words_;
  std::string spool_dir_;
  std::chrono::milliseconds drain_timeout_;
  Log* log_;  // null under -q
};

Status SenderOutput::finish(const v1::TraceTrailer& trailer, const std::function<bool()>& give_up) {
  if (const auto s = sender_->sender_status(); !s.connected && s.pending_batches > 0 && log_) {
    log_->line("waiting up to " + std::to_string(drain_timeout_.count()) + " ms for " + words_.far_end + " to " +
               words_.take + " " + std::to_string(s.pending_batches) +
               " batches (Ctrl-C again to stop waiting: they stay in " + spool_dir_ + ")");
  }
  bool gave_up = false;
  auto done = sender_->finish(trailer, drain_timeout_, [&] { return gave_up = give_up(); });
  if (done && *done) return {};
  const auto s = sender_->sender_status();
  const std::string refuses = s.far_end_refuses.empty() ? "" : " (it refuses them: " + s.far_end_refuses + ")";
  const std::string left = std::to_string(s.pending_batches) + " batches (" + format_mb(s.pending_bytes) +
                           ") it has not " + words_.taken + refuses + " stay in the spool directory " + spool_dir_;
  if (!done) {
    return Error("the stream " + traits().destination + " did not finish: " + done.error().message() + "; " + left,
                 done.error().errnum());
  }
  return Error((gave_up ? "stopped waiting for " + words_.far_end + ": "
                        : words_.far_end + " did not " + words_.take + " within " +
                              std::to_string(drain_timeout_.count()) + " ms: ") +
               left);
}

void add_batch_flags(ArgParser& parser) {
  parser.option("duration", 'd', "TIME", "stop after this long (10s, 500ms, 2m)")
      .option("compression-level", 'z', "N", "zstd level for batches, 1 (fast) to 19 (small); default 1")
      .option("batch-bytes", 0, "SIZE", "close a batch at this many encoded bytes (default 1M)")
      .option("batch-records", 0, "N", "close a batch at this many records (default 65536)")
      .option("batch-age", 0, "TIME", "close a batch when its first record is this old (default 1s)")
      .flag("all-cpus", 'a', "with -- COMMAND: record every process (system-wide), not only the command")
      .flag("follow", 0, "with -- COMMAND: only the command and its descendants (the default; for older scripts)")
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

// One run of record or stream, in named steps:
//   settle()     the flags into Settings; bad usage is exit status 2, before anything is set up;
//   set_up()     the command (forked, held), the probes and rings, the output, the privileges dropped;
//   start()      the output's background work, the batch worker, the reader threads;
//   run()        until a signal, the duration, the command's exit or an output that fails (status ticks);
//   drain()      programs detached, rings drained, batches written, the output finished with the trailer;
//   summarise()  the summary and the exit status.
// A signal before the output exists ends the run at once (nothing to keep); after, it stops it the normal
// way, so that the output ends complete.
class CaptureRun {
 public:
  CaptureRun(std::string command, const ArgParser& parser, OutputFactory make_output, StopSignals& signals,
             std::ostream& err)
      : command_(std::move(command)),
        me_("perfstream " + command_ + ": "),
        parser_(parser),
        make_output_(std::move(make_output)),
        signals_(signals),
        err_(err),
        log_(err, me_) {}

  int run() {
    if (auto exit_status = settle()) return *exit_status;
    if (auto exit_status = set_up()) return *exit_status;
    if (auto exit_status = start()) return *exit_status;
    wait_for_stop();
    drain();
    summarise();
    return exit_status();
  }

 private:
  struct Settings {
    CaptureOptions capture;
    BatchLimits limits;
    int compression_level = 1;
    std::uint64_t duration_ms = 0;
    bool quiet = false;
    bool system_wide = true;  // false: only the command after -- and its descendants
    std::optional<RunAsUser> user;
  };
  // What run() and drain() need of asio: made once the capture starts, destroyed before anything its
  // handlers refer to.
  struct Loop {
    asio::io_context io;
    asio::signal_set stop_signals{io, SIGINT, SIGTERM};
    asio::signal_set child_signals{io, SIGCHLD};
    asio::steady_timer duration_timer{io};
    asio::steady_timer status_timer{io};
  };

  std::optional<int> settle();
  std::optional<int> settle_batching();
  std::optional<int> set_up();
  std::optional<int> start();
  void wait_for_stop();
  void drain();
  void summarise();
  int exit_status() const;

  std::optional<int> interrupted_while(const std::string& phase);
  void stop_all(const std::string& why);
  void wait_for_child();
  void tick();
  std::string status_line();
  bool signalled_while_stopping();
  void report_per_cpu();
  void report_child();

  // Members, in the order they own each other: each outlives everything declared after it that refers to
  // it. The log first: the readers and the output write through it from their threads. The output next:
  // the worker writes into its sink and counts in `pipeline_`. The session last: its consumers submit to
  // the worker, so it is destroyed (probes detached, readers joined) before the worker and the output.
  const std::string command_;
  const std::string me_;
  const ArgParser& parser_;
  const OutputFactory make_output_;
  StopSignals& signals_;
  std::ostream& err_;
  Settings settings_;
  Log log_;
  std::optional<Workload> workload_;  // forked before any thread exists, released once the rings are up
  std::unique_ptr<CaptureOutput> output_;
  std::optional<DropOutcome> dropped_;
  PipelineCounters pipeline_;
  std::unique_ptr<BatchWorker> worker_;
  std::shared_ptr<const ColumnarLayout> layout_;  // the column plans of the header's schemas, for every reader
  std::unique_ptr<CaptureSession> session_;
  std::unique_ptr<Loop> loop_;

  // The run's state, set by the loop's handlers.
  std::chrono::steady_clock::time_point start_time_;
  bool stopping_ = false;  // a handler already queued when stop_all cancels its timer still runs: it checks
  std::string stop_reason_ = "stopped";
  int failure_status_ = 0;
  int child_status_ = -1;
  int late_signal_ = 0;
  std::uint64_t last_samples_ = 0;
  std::chrono::steady_clock::time_point last_tick_;
  std::string sink_error_;
};

// A signal before the output exists: nothing to keep, so nothing more is done. The exit status is the
// shell's for a process killed by that signal, as if it had come before main().
std::optional<int> CaptureRun::interrupted_while(const std::string& phase) {
  const int signo = signals_.take_pending();
  if (signo == 0) return std::nullopt;
  err_ << me_ << "interrupted by " << signal_name(signo) << " while " << phase << "; nothing was "
       << (command_ == "record" ? "recorded" : "sent") << "\n";
  return 128 + signo;
}

std::optional<int> CaptureRun::settle() {
  if (!parser_.positionals().empty()) {
    err_ << me_ << "unexpected argument '" << parser_.positionals().front() << "' (a command to run goes after --)\n";
    return 2;
  }
  auto capture = capture_options_from(parser_, command_);
  if (!capture) {
    err_ << capture.error().message() << "\n";
    return 2;
  }
  settings_.capture = std::move(*capture);
  settings_.quiet = parser_.has("quiet");
  if (auto exit_status = settle_batching()) return *exit_status;
  if (auto status = interrupted_while("starting")) return *status;
  if (auto exit_status = user_from(parser_, me_, settings_.user, err_)) return *exit_status;
  if (parser_.has("follow") && parser_.rest().empty()) {
    err_ << me_ << "--follow needs a command to follow (perfstream " << command_ << " --follow ... -- CMD)\n";
    return 2;
  }
  if (parser_.has("follow") && parser_.has("all-cpus")) {
    err_ << me_ << "--follow and -a contradict each other: with -- CMD, the command is followed unless -a is given\n";
    return 2;
  }
  // As perf record: with a command, only the command and its descendants, unless -a (system-wide).
  settings_.system_wide = parser_.rest().empty() || parser_.has("all-cpus");
  return std::nullopt;
}

// --duration, the batch limits and the compression level.
std::optional<int> CaptureRun::settle_batching() {
  Status st;
  auto number = [&](const char* flag, auto apply, auto parse) {
    if (!st) return;
    if (auto v = parser_.value(flag)) {
      auto r = parse(flag, *v);
      if (!r) st = r.error();
      else apply(*r);
    }
  };
  BatchLimits& limits = settings_.limits;
  number("duration", [&](std::uint64_t v) { settings_.duration_ms = v; }, parse_duration_ms);
  if (st && parser_.value("duration") && settings_.duration_ms == 0) {
    st = Error("--duration " + *parser_.value("duration") +
               ": give a positive time (without --duration the capture runs until Ctrl-C or the command exits)");
  }
  number("batch-bytes", [&](std::uint64_t v) { limits.max_bytes = v; }, parse_bytes);
  number("batch-records", [&](std::uint64_t v) { limits.max_records = static_cast<std::uint32_t>(v); }, parse_count);
  number("batch-age", [&](std::uint64_t v) { limits.max_age = std::chrono::milliseconds(v); }, parse_duration_ms);
  if (auto v = parser_.value("compression-level"); v && st) {
    try {
      settings_.compression_level = std::stoi(*v);
    } catch (const std::exception&) {
      st = Error("--compression-level '" + *v + "': not a number");
    }
  }
  if (st && (limits.max_bytes == 0 || limits.max_bytes > (32u << 20))) st = Error("--batch-bytes: must be between 1 and 32M");
  if (st && limits.max_records == 0) st = Error("--batch-records: must be at least 1");
  if (!st) {
    err_ << me_ << st.error().message() << "\n";
    return 2;
  }
  if (auto level_check = ZstdCompressor::create(settings_.compression_level); !level_check) {
    err_ << me_ << "--compression-level: " << level_check.error().message() << "\n";
    return 2;
  }
  return std::nullopt;
}

std::optional<int> CaptureRun::set_up() {
  // The command, if any, is forked first, before any thread exists, and released once the rings are up.
  if (!parser_.rest().empty()) {
    // A command that cannot start is the shell's error, with the shell's exit status, and nothing is made.
    auto file = find_command(parser_.rest().front());
    if (!file) {
      err_ << me_ << file.error().message() << "\n";
      return file.error().errnum() == ENOENT ? 127 : 126;
    }
    auto w = Workload::fork_stopped(*file, parser_.rest(), signals_.original_mask(), parser_.value("output") == "-");
    if (!w) {
      err_ << me_ << w.error().message() << "\n";
      return 1;
    }
    workload_.emplace(std::move(*w));
    if (!settings_.system_wide) settings_.capture.follow_tgid = static_cast<std::uint32_t>(workload_->pid());
  }
  settings_.capture.readers.log = &log_;
  // Loading, verifying, opening the events and mapping the rings all happen in open(): bounded, and better
  // finished than cut (a signal cannot interrupt a program half loaded). The session's destructor detaches.
  auto session = CaptureSession::open(settings_.capture);
  if (!session) {
    log_.line(session.error().message());
    return 1;
  }
  session_ = std::move(*session);
  if (auto status = interrupted_while("loading the probes")) return *status;
  // From here on a signal stops the capture the normal way: the output is made, so it ends complete.
  const v1::TraceHeader header = make_trace_header(*session_, parser_.rest());
  layout_ = std::make_shared<const ColumnarLayout>(ColumnarLayout::for_header(header));
  auto made = make_output_(header, log_);
  if (!made) {
    log_.line(made.error().message());
    return 1;
  }
  output_ = std::move(*made);
  auto dropped = drop_after_setup(settings_.user, settings_.capture.readers.hotplug_interval.count() > 0, *output_);
  if (!dropped) {
    log_.line(dropped.error().message());
    return 1;
  }
  dropped_ = std::move(*dropped);
  return std::nullopt;
}

std::optional<int> CaptureRun::start() {
  if (auto st = output_->start(); !st) {
    // Kept by the output too: its first status check stops the capture and says why, the same way as an
    // error that comes later. Nothing to clean up differently, so the run goes on to that check.
    log_.line(st.error().message());
  }
  // Readers decode and encode; one worker thread compresses and writes (see BatchWorker for why).
  auto compressor = ZstdCompressor::create(settings_.compression_level);
  if (!compressor) {
    log_.line("--compression-level: " + compressor.error().message());
    return 1;
  }
  worker_ = std::make_unique<BatchWorker>(std::move(*compressor), output_->sink(), pipeline_);
  const clockid_t clock = static_cast<clockid_t>(session_->clockid());
  auto started = session_->start([this, clock](unsigned) -> std::unique_ptr<RecordConsumer> {
    return std::make_unique<BatchingConsumer>(settings_.limits, *worker_, clock, layout_);
  });
  if (!started) {
    log_.line(started.error().message());
    return 1;
  }
  if (!settings_.quiet && session_->ringbuf() != nullptr) {
    log_.line("recording " + join(session_->probe_names(), ", ") + " from its ring buffer '" +
              session_->output_map_name() + "' (" + std::to_string(session_->ringbuf()->data_size() / 1024) +
              " KiB, shared by every CPU; record times " +
              (session_->time_field().empty() ? std::string("are when they were drained")
                                              : "from field '" + session_->time_field() + "'") +
              ") " + output_->traits().destination);
    log_.line("the kernel counts no lost records for a ring buffer: a record that did not fit failed in the BPF "
              "program, which alone can count it");
  } else if (!settings_.quiet) {
    const CpuSet& candidates = session_->array().candidates();
    auto online = CpuSet::online();
    log_.line("recording " + join(session_->probe_names(), ", ") + " on CPUs " +
              (online ? candidates.intersect(*online) : candidates).to_string() + " " +
              output_->traits().destination + " (" + session_->array().geometry().describe(candidates.size()) + ")");
    log_.line(dropped_->describe());
    for (const auto& info : builtin_probes()) {
      if (!info.driven_by_bench || !session_->has_probe(info.name)) continue;
      log_.line(std::string("probe ") + info.name + " records only what a driver asks of it through its maps (" +
                "perfstream bench does); alone it records nothing");
    }
  }
  return std::nullopt;
}

void CaptureRun::stop_all(const std::string& why) {
  if (stopping_) return;
  stopping_ = true;
  stop_reason_ = why;
  loop_->stop_signals.cancel();  // later signals wait in asio's queue (see drain)
  loop_->child_signals.cancel();
  loop_->duration_timer.cancel();
  loop_->status_timer.cancel();
}

void CaptureRun::wait_for_child() {
  loop_->child_signals.async_wait([this](const boost::system::error_code& ec, int) {
    if (ec || stopping_ || !workload_) return;
    int status = 0;
    if (waitpid(workload_->pid(), &status, WNOHANG) == workload_->pid()) {
      child_status_ = status;
      stop_all("the command exited");
      return;
    }
    wait_for_child();
  });
}

// Once a second: stop when the output fails; otherwise the status line (on a terminal) and the log's
// suppression summaries whose interval has ended.
void CaptureRun::tick() {
  loop_->status_timer.expires_after(std::chrono::seconds(1));
  loop_->status_timer.async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopping_) return;
    const bool stop_on_refusal = output_->traits().stop_when_a_batch_is_refused;
    if (stop_on_refusal && (pipeline_.dropped_batches.load() > 0 || !output_->check())) {
      failure_status_ = 1;
      stop_all("the trace file cannot be written");
      return;
    }
    if (!stop_on_refusal) {
      if (Status st = output_->check(); !st) {
        failure_status_ = 1;
        stop_all("stopped: " + st.error().message());
        return;
      }
    }
    if (!settings_.quiet && isatty(STDERR_FILENO)) log_.raw(status_line());
    log_.flush();
    tick();
  });
}

std::string CaptureRun::status_line() {
  (void)session_->read_output_failures();  // best effort here; stop() reads them for good and reports an error
  const auto total = session_->stats().total();
  const auto now = std::chrono::steady_clock::now();
  const double secs = std::chrono::duration<double>(now - last_tick_).count();
  const double rate = secs > 0 ? (total.samples - last_samples_) / secs : 0;
  last_samples_ = total.samples;
  last_tick_ = now;
  const std::uint64_t in = pipeline_.encoded_bytes.load();
  const std::uint64_t compressed = pipeline_.compressed_bytes.load();
  std::ostringstream line;
  line << "\r\033[K" << format_rate(rate) << "events/s | lost ";
  if (BpfRingbuf* ring = session_->ringbuf()) {
    // The kernel counts nothing lost for a ring buffer: its fill high-water is what there is to show.
    line << pipeline_.dropped_records.load() << " in perfstream, kernel: not counted | ring fill max "
         << total.fill_high_water * 100 / std::max<std::uint64_t>(ring->data_size(), 1) << "%";
  } else {
    line << total.lost + total.unwritable + total.untracked + pipeline_.dropped_records.load();
  }
  line << " | in " << format_mb(in) << " | "
       << output_->status() << " | ratio " << std::fixed << std::setprecision(1)
       << (compressed > 0 ? static_cast<double>(in) / compressed : 0.0) << "x";
  return line.str();
}

void CaptureRun::wait_for_stop() {
  loop_ = std::make_unique<Loop>();
  start_time_ = last_tick_ = std::chrono::steady_clock::now();
  loop_->stop_signals.async_wait([this](const boost::system::error_code& ec, int signo) {
    if (!ec) stop_all(signo == SIGINT ? "interrupted" : "terminated");
  });
  if (workload_) wait_for_child();
  if (settings_.duration_ms > 0) {
    loop_->duration_timer.expires_after(std::chrono::milliseconds(settings_.duration_ms));
    loop_->duration_timer.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) stop_all("duration reached");
    });
  }
  tick();
  if (workload_) workload_->release();
  signals_.unblock();  // a signal that came during startup is handled now
  loop_->io.run();
  signals_.block();
  if (!settings_.quiet && isatty(STDERR_FILENO)) log_.raw("\r\033[K");
}

// A signal while stopping (a second Ctrl-C) does not cut the drain short: the rings are finite once the
// programs are detached, and a cut would leave a file without its last batches and trailer. A stream
// stops waiting for the sink's acknowledgements (the output says what it does: on_signal_while_stopping).
bool CaptureRun::signalled_while_stopping() {
  if (late_signal_ != 0) return true;
  loop_->io.restart();
  loop_->io.poll();  // one that reached asio after stop_all and before the block
  if (late_signal_ == 0) late_signal_ = signals_.take_pending();
  if (late_signal_ != 0) {
    log_.line(std::string(signal_name(late_signal_)) + " while stopping: " + output_->traits().on_signal_while_stopping);
  }
  return late_signal_ != 0;
}

// Programs detached, rings drained to the end, last batches flushed, trailer written. A command still
// running keeps running, as with perf record.
void CaptureRun::drain() {
  loop_->stop_signals.async_wait([this](const boost::system::error_code& ec, int signo) {
    if (!ec) late_signal_ = signo;
  });
  session_->stop();
  signalled_while_stopping();
  worker_->finish();
  signalled_while_stopping();
  if (const std::optional<Error> worker_error = worker_->first_error()) sink_error_ = worker_error->message();
  const v1::TraceTrailer trailer = make_trace_trailer(*session_);
  if (auto st = output_->finish(trailer, [this] { return signalled_while_stopping(); }); !st && sink_error_.empty()) {
    sink_error_ = st.error().message();
  }
  signalled_while_stopping();
  loop_->stop_signals.cancel();
  if (!output_->traits().stop_when_a_batch_is_refused && pipeline_.dropped_batches.load() > 0) {
    log_.line(std::to_string(pipeline_.dropped_batches.load()) + " batches (" +
              std::to_string(pipeline_.dropped_records.load()) +
              " records) were dropped because the spool was full; the sink was told in-band");
    sink_error_.clear();
  }
}

void CaptureRun::summarise() {
  CaptureSession& s = *session_;
  const auto total = s.stats().total();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time_).count();
  if (!sink_error_.empty()) {
    log_.line(sink_error_);
    failure_status_ = 1;
  }
  if (!s.output_failures_error().empty()) {
    log_.line("could not read the probes' failed-write counters: " + s.output_failures_error());
  }
  if (settings_.quiet && failure_status_ == 0) return;
  const std::uint64_t in = pipeline_.encoded_bytes.load();
  const std::uint64_t written = pipeline_.compressed_bytes.load();
  std::ostringstream summary;
  if (BpfRingbuf* ring = s.ringbuf()) {
    summary << stop_reason_ << " after " << std::fixed << std::setprecision(1) << elapsed << " s: " << total.samples
            << " records (" << format_mb(total.sample_bytes) << ") from ring buffer '" << s.output_map_name()
            << "', fill high-water " << total.fill_high_water << " of " << ring->data_size()
            << " bytes, lost in the kernel: not counted for a ring buffer (a record that did not fit failed in "
               "the BPF program), "
            << pipeline_.dropped_records.load() << " lost in perfstream; " << output_->summary(pipeline_)
            << "; batches compressed " << std::setprecision(1)
            << (written > 0 ? static_cast<double>(in) / written : 0.0) << "x";
    log_.line(summary.str());
    if (total.discarded > 0) {
      log_.line("ring buffer '" + s.output_map_name() + "': " + std::to_string(total.discarded) +
                " records discarded by the BPF program (skipped)");
    }
    if (total.corrupt > 0) {
      log_.line("ring buffer '" + s.output_map_name() + "' had " + std::to_string(total.corrupt) +
                " corrupt record headers");
    }
    report_child();
    return;
  }
  summary << stop_reason_ << " after " << std::fixed << std::setprecision(1) << elapsed << " s: " << total.samples
          << " records (" << format_mb(total.sample_bytes) << ") from " << s.array().candidates().size()
          << " CPUs, lost " << total.lost + total.unwritable + total.untracked << " in the kernel and "
          << pipeline_.dropped_records.load() << " in perfstream"
          << (total.unwritable > 0
                  ? " (" + std::to_string(total.unwritable) + " of the kernel's were never written: see below)"
                  : std::string())
          << (total.untracked > 0
                  ? " (" + std::to_string(total.untracked) + " syscalls were not tracked: see below)"
                  : std::string())
          << "; " << output_->summary(pipeline_) << "; batches compressed " << std::setprecision(1)
          << (written > 0 ? static_cast<double>(in) / written : 0.0) << "x";
  log_.line(summary.str());
  report_per_cpu();
  report_child();
}

// As perf record's: the command's when it exited during the capture (128+N when signal N killed it), unless
// the capture itself failed; ours otherwise (a command still running when the capture stops keeps running).
int CaptureRun::exit_status() const {
  if (failure_status_ != 0 || child_status_ < 0) return failure_status_;
  if (WIFEXITED(child_status_)) return WEXITSTATUS(child_status_);
  if (WIFSIGNALED(child_status_)) return 128 + WTERMSIG(child_status_);
  return failure_status_;
}

void CaptureRun::report_per_cpu() {
  CaptureSession& s = *session_;
  for (unsigned cpu = 0; cpu < s.stats().slots(); ++cpu) {
    const auto c = s.stats().snapshot(cpu);
    const std::string name = "CPU " + std::to_string(cpu);
    if (c.lost > 0) {
      log_.line(name + " lost " + std::to_string(c.lost) + " samples: its ring filled up (at most " +
                std::to_string(c.fill_high_water) + " of " + std::to_string(s.array().geometry().data_bytes) +
                " bytes pending); a bigger ring (-m) or a smaller wakeup size helps");
    }
    if (c.unwritable > 0) {
      log_.line(name + ": " + std::to_string(c.unwritable) + " records could not be written by the BPF programs (" +
                render::unwritable_reason(c.unwritable_errno) + ")");
    }
    if (c.untracked > 0) {
      log_.line(name + ": " + std::to_string(c.untracked) +
                " syscalls were not recorded: the probes' map of syscalls in progress (one per thread) was full");
    }
    if (c.corrupt > 0) log_.line(name + " had " + std::to_string(c.corrupt) + " corrupt ring headers");
  }
}

void CaptureRun::report_child() {
  if (child_status_ >= 0 && WIFEXITED(child_status_) && WEXITSTATUS(child_status_) != 0) {
    log_.line("the command exited with status " + std::to_string(WEXITSTATUS(child_status_)));
  } else if (child_status_ >= 0 && WIFSIGNALED(child_status_)) {
    log_.line("the command was killed by signal " + std::to_string(WTERMSIG(child_status_)));
  }
}

int run_capture(const std::string& command, const ArgParser& parser, const OutputFactory& make_output,
                StopSignals& signals, std::ostream& err) {
  return CaptureRun(command, parser, make_output, signals, err).run();
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
      [&](const v1::TraceHeader& header, Log& log) -> Result<std::unique_ptr<CaptureOutput>> {
        // Another recorder on the same file is refused; a recording already there is kept as FILE.old.
        std::optional<TraceFileClaim> claim;
        if (!to_stdout) {
          auto claimed = TraceFileClaim::claim(writer_options.path);
          if (!claimed) return claimed.error();
          if (!claimed->kept_as().empty() && !parser.has("quiet")) {
            log.line("the earlier recording in " + writer_options.path + " is kept as " + claimed->kept_as());
          }
          claim = std::move(*claimed);
        }
        auto writer = TraceFileWriter::create(writer_options, header);
        if (!writer) return writer.error();
        const bool rotates = writer_options.rotate_bytes != 0 || writer_options.rotate_time.count() != 0;
        return std::unique_ptr<CaptureOutput>(
            new FileOutput(std::move(claim), std::move(*writer), writer_options.path, rotates));
      },
      signals, err);
}

namespace {

// Where `stream` sends: a perfstream sink (client) or Kafka (kafka), settled from the flags.
struct StreamSettings {
  bool to_kafka = false;
  StreamClientOptions client;
  KafkaPublisherOptions kafka;
  std::chrono::milliseconds drain_timeout{30000};

  static Result<StreamSettings> from(const ArgParser& parser);
  // The output, once the header is known; `log` is null under -q (no connection events).
  Result<std::unique_ptr<CaptureOutput>> make_output(const v1::TraceHeader& header, Log* log);
};

Result<StreamSettings> StreamSettings::from(const ArgParser& parser) {
  StreamSettings st;
  if (!parser.value("to")) return Error("where to? --to tcp://HOST:PORT, unix:/PATH or kafka://BROKERS/TOPIC");
  st.to_kafka = KafkaAddress::is_kafka(*parser.value("to"));
  if (st.to_kafka) {
    auto address = KafkaAddress::parse(*parser.value("to"));
    if (!address) return address.error();
    st.kafka.address = *address;
    auto properties = kafka_properties_from(parser);
    if (!properties) return properties.error();
    st.kafka.properties = *properties;
    if (parser.value("tls-cert") || parser.value("tls-key") || parser.value("tls-ca")) {
      return Error("--tls-* are for a perfstream sink; for Kafka use -X security.protocol=SSL -X ssl.ca.location=... "
                   "(see README: Kafka)");
    }
  } else {
    if (!parser.values("kafka-property").empty() || parser.value("kafka-config")) {
      return Error("-X and --kafka-config are for --to kafka://...");
    }
    auto endpoint = Endpoint::parse(*parser.value("to"));
    if (!endpoint) return endpoint.error();
    st.client.endpoint = *endpoint;
  }
  st.client.spool_dir = parser.value("spool").value_or("perfstream.spool");
  if (auto v = parser.value("spool-size")) {
    auto bytes = parse_bytes("spool-size", *v);
    if (!bytes) return bytes.error();
    st.client.spool_bytes = *bytes;
  }
  st.kafka.spool_dir = st.client.spool_dir;
  st.kafka.spool_bytes = st.client.spool_bytes;
  if (auto v = parser.value("drain-timeout")) {
    auto ms = parse_duration_ms("drain-timeout", *v);
    if (!ms) return ms.error();
    st.drain_timeout = std::chrono::milliseconds(*ms);
  }
  st.client.tls.cert_file = parser.value("tls-cert").value_or("");
  st.client.tls.key_file = parser.value("tls-key").value_or("");
  st.client.tls.ca_file = parser.value("tls-ca").value_or("");
  return st;
}

Result<std::unique_ptr<CaptureOutput>> StreamSettings::make_output(const v1::TraceHeader& header, Log* log) {
  const std::string id = header.host() + "-" + header.recording_id();
  const std::string& spool_dir = client.spool_dir;
  if (to_kafka) {
    kafka.log = log;
    auto publisher = KafkaPublisher::create(kafka, header, id);
    if (!publisher) return publisher.error();
    const std::string to = kafka.address.to_string();
    SenderOutput::Words words{"Kafka at " + to, "published to " + to, "kafka up", "KAFKA DOWN", "take", "taken",
                              "Kafka's delivery reports"};
    return std::unique_ptr<CaptureOutput>(
        new SenderOutput(std::move(*publisher), std::move(words), to, spool_dir, drain_timeout, log));
  }
  client.log = log;
  auto sender = StreamClient::create(client, header, id);
  if (!sender) return sender.error();
  const std::string to = client.endpoint.to_string();
  SenderOutput::Words words{"the sink at " + to, "sent to " + to, "connected", "DISCONNECTED", "acknowledge",
                            "acknowledged", "the sink's acknowledgements", "sink"};
  return std::unique_ptr<CaptureOutput>(
      new SenderOutput(std::move(*sender), std::move(words), to, spool_dir, drain_timeout, log));
}

}  // namespace

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
  auto settings = StreamSettings::from(parser);
  if (!settings) {
    err << "perfstream stream: " << settings.error().message() << "\n";
    return 2;
  }
  const bool quiet = parser.has("quiet");
  return run_capture(
      "stream", parser,
      [&](const v1::TraceHeader& header, Log& log) { return settings->make_output(header, quiet ? nullptr : &log); },
      signals, err);
}

}  // namespace perfstream::cli

