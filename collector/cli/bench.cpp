// perfstream bench: how fast the rings drain on this machine, in the real kernel, against libbpf.
//
// Each run drives the loadgen probe: a producer process pinned to a producer CPU calls getppid() in a loop,
// loadgen emits one record of the chosen size per call and counts per CPU what it emitted and what failed.
// The collector drains on the collector CPUs and does `count`, `encode`, `compress` or `file` (the whole
// record pipeline) with the records. The producer is a separate process, so the collector's CPU time is
// this process's getrusage. Before the runs of a size, the producer runs once with loadgen attached but no
// ring in the map: the rate of this kernel with nothing to deliver (the ceiling).
// --channel ringbuf has perfstream read loadgen's BPF ring buffer twin (loadgen_ringbuf) instead, sized as the
// baseline sizes its ring buffer, so that it compares with --compare ringbuf on the same load.
// --sample-fields runs perfstream once per set of sample fields the perf events ask the kernel for (raw,
// raw+cpu, raw+time, raw+time+cpu), so that what each field costs the producer is measured side by side:
// loadgen writes its own `ts` in every case, so raw alone is what `record` asks for by default.
// --compare runs bench/libbpf_baseline (libbpf's perf_buffer with its defaults and with a watermark, and
// the BPF ring buffer with libbpf's ring_buffer) on the same load, alternating with perfstream's runs.
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include <cerrno>
#include <cstring>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/syscall.h>

#include "collector/cli/load_producer.hpp"
#include "collector/cli/commands.hpp"
#include "collector/cli/options.hpp"
#include "collector/cli/record_setup.hpp"
#include "collector/cli/render.hpp"
#include "collector/format/batching_consumer.hpp"
#include "collector/format/trace_writer.hpp"
#include "collector/read/capture_session.hpp"
#include "collector/util/log.hpp"

extern "C" {
#include <linux/types.h>
#include "events.h"
}
#include "loadgen_ringbuf.skel.h"

namespace perfstream::cli {
namespace {

// How busy the machine was with work other than the bench's own during one run: CPU time the whole machine
// spent in user and system mode (/proc/stat) less the CPU time of this process and of its children reaped
// meanwhile (the producer, the libbpf baseline: getrusage). Interrupts are left out of both. A run during
// which other processes took more than a tenth of a CPU is flagged: its rates are not comparable.
struct MachineLoad {
  double wall_s = 0;
  double other_cpu_s = 0;
  double load_average = -1;  // one-minute load average at the run's start, -1 unknown

  double other_cpu_share() const { return wall_s > 0 ? other_cpu_s / wall_s : 0; }  // in CPUs
  bool busy() const { return other_cpu_share() > 0.10; }
};

// Measures MachineLoad between its construction and finish().
class MachineLoadProbe {
 public:
  MachineLoadProbe() : start_(now()), machine_busy_(machine_busy_s()), own_(own_cpu_s()) {
    if (std::FILE* f = std::fopen("/proc/loadavg", "r"); f != nullptr) {
      if (std::fscanf(f, "%lf", &load_average_) != 1) load_average_ = -1;
      std::fclose(f);
    }
  }
  MachineLoad finish() const {
    MachineLoad m;
    m.wall_s = std::chrono::duration<double>(now() - start_).count();
    m.other_cpu_s = std::max(0.0, (machine_busy_s() - machine_busy_) - (own_cpu_s() - own_));
    m.load_average = load_average_;
    return m;
  }

 private:
  static std::chrono::steady_clock::time_point now() { return std::chrono::steady_clock::now(); }
  // user + nice + system of every CPU, in seconds.
  static double machine_busy_s() {
    std::FILE* f = std::fopen("/proc/stat", "r");
    if (f == nullptr) return 0;
    unsigned long long user = 0, nice = 0, system = 0;
    const int n = std::fscanf(f, "cpu %llu %llu %llu", &user, &nice, &system);
    std::fclose(f);
    return n == 3 ? static_cast<double>(user + nice + system) / static_cast<double>(sysconf(_SC_CLK_TCK)) : 0;
  }
  static double own_cpu_s() {
    auto seconds = [](const rusage& u) {
      return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
    };
    rusage self{}, children{};
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &children);
    return seconds(self) + seconds(children);
  }

  std::chrono::steady_clock::time_point start_;
  double machine_busy_;
  double own_;
  double load_average_ = -1;
};

struct RunResult {
  std::string impl;          // perfstream-count, libbpf-default, ...
  std::uint32_t size = 0;
  double duration_s = 0;
  double ceiling_calls_per_s = 0;
  double producer_calls_per_s = 0;
  std::uint64_t emitted = 0, failed = 0, delivered = 0, delivered_bytes = 0, lost = 0;
  double collector_cpu_s = 0;
  std::int64_t wakeups = -1;
  MachineLoad machine;       // what else ran on the machine during the run
  std::string error;

  double delivered_per_s() const { return duration_s > 0 ? delivered / duration_s : 0; }
  double mb_per_s() const { return duration_s > 0 ? delivered_bytes / duration_s / 1e6 : 0; }
  double lost_pct() const {
    const double attempts = static_cast<double>(emitted + failed);
    return attempts > 0 ? 100.0 * (attempts - delivered) / attempts : 0;
  }
  double cpu_ns_per_record() const { return delivered > 0 ? collector_cpu_s * 1e9 / delivered : 0; }
};

class NullSink : public BatchSink {
 public:
  Status write_batch(const EncodedBatch&) override { return {}; }
};

// Encodes batches and throws them away: the cost of encoding without compression.
class EncodeOnlyConsumer : public RecordConsumer {
 public:
  void on_sample(unsigned, const SampleView& s) override {
    encoder_.add_record(s.time, s.cpu, s.raw);
    if (encoder_.record_count() >= 65536 || encoder_.encoded_size_estimate() >= (1u << 20)) flush();
  }
  void on_lost(unsigned cpu, const LostView& l) override { encoder_.add_lost(cpu, l.lost, l.time); }
  void on_stop() override { flush(); }

 private:
  void flush() {
    encoder_.finish(sequence_++, out_);
    encoder_.reset();
  }
  BatchEncoder encoder_;
  std::string out_;
  std::uint64_t sequence_ = 0;
};

class CountOnlyConsumer : public RecordConsumer {
 public:
  void on_sample(unsigned, const SampleView&) override {}
  void on_lost(unsigned, const LostView&) override {}
};

struct LoadgenCounts {
  std::uint64_t emitted = 0, failed = 0, failed_nospace = 0;
};

Status configure_loadgen(const BpfProbe& probe, std::uint32_t tgid, std::uint32_t size) {
  auto fd = probe.map_fd("loadgen_config");
  if (!fd) return fd.error();
  ps_loadgen_config cfg{};
  cfg.tgid = tgid;
  cfg.syscall_nr = SYS_getppid;
  cfg.record_size = size;
  cfg.records_per_call = 1;
  __u32 key = 0;
  if (bpf_map_update_elem(*fd, &key, &cfg, BPF_ANY) != 0) return Error::from_errno("configuring loadgen", errno);
  return {};
}

LoadgenCounts read_loadgen(const BpfProbe& probe) {
  LoadgenCounts total;
  auto fd = probe.map_fd("loadgen_stats");
  const int n = libbpf_num_possible_cpus();
  if (!fd || n <= 0) return total;
  std::vector<ps_loadgen_stats> values(n);
  __u32 key = 0;
  if (bpf_map_lookup_elem(*fd, &key, values.data()) != 0) return total;
  for (const auto& v : values) {
    total.emitted += v.emitted;
    total.failed += v.failed;
    total.failed_nospace += v.failed_nospace;
  }
  return total;
}

struct BenchConfig {
  std::vector<int> producer_cpus = {0};
  std::vector<unsigned> collector_cpus;
  std::uint64_t duration_ms = 2000;
  RingSize ring;
  std::uint64_t wakeup = 0;
  std::string mode = "count";
  bool ringbuf = false;             // --channel ringbuf: perfstream reads loadgen_ringbuf's ring buffer
  std::uint32_t ringbuf_bytes = 0;  // its size: the perf rings' total, rounded up to a power of two
  std::string output = "/tmp/perfstream-bench.data";
  int level = 1;
  std::string sample_fields;        // --sample-fields item of this run: raw[+time][+cpu]; "": record's default
};

// The run's name in the table: perfstream-MODE, perfstream-ringbuf-MODE, or with --sample-fields
// perfstream-MODE:FIELDS.
std::string perfstream_impl(const BenchConfig& cfg) {
  return (cfg.ringbuf ? "perfstream-ringbuf-" : "perfstream-") + cfg.mode +
         (cfg.sample_fields.empty() ? "" : ":" + cfg.sample_fields);
}

// --producer-cpus as a set, for the messages.
CpuSet producer_set(const BenchConfig& cfg) {
  return CpuSet(std::vector<unsigned>(cfg.producer_cpus.begin(), cfg.producer_cpus.end()));
}

// The producer's rate with loadgen attached and no ring in the map: every emit fails at once (-ENOENT).
Result<double> measure_ceiling(const BenchConfig& cfg, std::uint32_t size) {
  ProbeOptions po;
  auto probe = BpfProbe::load_builtin("loadgen", po);
  if (!probe) return probe.error();
  bench::LoadProducer producer;
  if (!producer.spawn(cfg.producer_cpus)) return Error("cannot start the producer");
  if (auto st = configure_loadgen(**probe, static_cast<std::uint32_t>(producer.pid()), size); !st) return st.error();
  producer.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(std::min<std::uint64_t>(cfg.duration_ms, 1000)));
  const std::uint64_t ran = producer.stop();
  const auto counts = read_loadgen(**probe);
  return ran > 0 ? (counts.emitted + counts.failed) / (ran / 1e9) : 0.0;
}

// loadgen_ringbuf's object, embedded in the binary, as a file for CaptureSession's --object path; removed with
// its private directory when done.
class EmbeddedObjectFile {
 public:
  static Result<EmbeddedObjectFile> create() {
    char dir[] = "/tmp/perfstream-bench-XXXXXX";
    if (mkdtemp(dir) == nullptr) return Error::from_errno("making a directory for loadgen_ringbuf.bpf.o", errno);
    EmbeddedObjectFile file;
    file.dir_ = dir;
    file.path_ = file.dir_ + "/loadgen_ringbuf.bpf.o";
    std::size_t size = 0;
    const void* bytes = loadgen_ringbuf_bpf__elf_bytes(&size);
    std::ofstream out(file.path_, std::ios::binary);
    out.write(static_cast<const char*>(bytes), static_cast<std::streamsize>(size));
    if (!out.flush()) return Error("writing " + file.path_);
    return file;
  }
  EmbeddedObjectFile() = default;
  EmbeddedObjectFile(EmbeddedObjectFile&& o) noexcept : dir_(std::move(o.dir_)), path_(std::move(o.path_)) {
    o.dir_.clear();
  }
  EmbeddedObjectFile& operator=(EmbeddedObjectFile&&) = delete;
  ~EmbeddedObjectFile() {
    if (dir_.empty()) return;
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string dir_, path_;
};

// One perfstream run of the bench: loadgen in a capture session whose readers do `cfg.mode` with what they
// drain, while the producer runs for the duration.
//
// Steps, in order: setup() opens the session and the output and spawns the producer (blocked); start()
// starts the batch worker and the readers; run() lets the producer go for the duration; drain() stops the
// session (its final drain is part of the collector's work) and the worker; summarise() fills the result.
class PerfstreamRun {
 public:
  PerfstreamRun(const BenchConfig& cfg, std::uint32_t size, Log& log) : cfg_(cfg), size_(size), log_(log) {}

  Status setup();
  Status start();
  void run();
  void drain();
  void summarise(RunResult& r);

 private:
  Status open_output();
  std::unique_ptr<RecordConsumer> make_consumer();

  const BenchConfig& cfg_;
  const std::uint32_t size_;
  // Declared in the order they own each other, so destruction (the reverse) is right by construction: the
  // worker writes to the sink and counts into pipeline_; the session's consumers submit to the worker, so
  // the session goes first (its stop() flushes them); the producer, a child process, is killed before all.
  Log& log_;                                 // the readers' notices, from their threads
  NullSink null_sink_;                       // where batches go in every mode but file
  std::unique_ptr<TraceFileWriter> writer_;  // --mode file
  PipelineCounters pipeline_;
  std::unique_ptr<BatchWorker> worker_;      // as in record: readers encode, one worker compresses and writes
  std::shared_ptr<const ColumnarLayout> layout_;  // as in record: columns planned from the header's schemas
  std::optional<EmbeddedObjectFile> ringbuf_object_;  // --channel ringbuf
  std::unique_ptr<CaptureSession> session_;
  bench::LoadProducer producer_;
  std::uint64_t cpu_before_ns_ = 0, cpu_after_ns_ = 0;  // this process's CPU time around the readers' work
  std::uint64_t ran_ns_ = 0;                            // how long the producer ran
};

Status PerfstreamRun::setup() {
  CaptureOptions capture;
  if (cfg_.ringbuf) {
    auto object = EmbeddedObjectFile::create();
    if (!object) return object.error();
    ringbuf_object_.emplace(std::move(*object));
    capture.object_path = ringbuf_object_->path();
    capture.map_name = "ringbuf";
    capture.ringbuf_bytes = cfg_.ringbuf_bytes;
  } else {
    capture.probes = {"loadgen"};
  }
  capture.array.size = cfg_.ring;
  capture.array.wakeup_bytes = cfg_.wakeup;
  if (!cfg_.sample_fields.empty()) {
    const bool time = cfg_.sample_fields.find("time") != std::string::npos;
    capture.sample_time = time ? SampleTimeSource::Kernel : SampleTimeSource::Event;
    capture.array.sample_cpu = cfg_.sample_fields.find("cpu") != std::string::npos;
  }
  // One ring buffer has one reader, pinned to the first collector CPU.
  capture.readers.threads =
      cfg_.ringbuf ? 1u : static_cast<unsigned>(std::max<std::size_t>(1, cfg_.collector_cpus.size()));
  capture.readers.pin_cpus = cfg_.collector_cpus;
  capture.readers.log = &log_;
  auto session = CaptureSession::open(capture);
  if (!session) return session.error();
  session_ = std::move(*session);
  if (auto st = open_output(); !st) return st;
  if (!producer_.spawn(cfg_.producer_cpus)) return Error("cannot start the producer");
  return configure_loadgen(*session_->probes().front(), static_cast<std::uint32_t>(producer_.pid()), size_);
}

Status PerfstreamRun::open_output() {
  if (cfg_.mode != "file") return {};
  TraceWriterOptions wo;
  wo.path = cfg_.output;
  // The header record writes (loadgen's schema, clock and start times, host, CPUs, ring): the file reads
  // back like a recording, with fields by name, not as "unknown" payloads.
  auto writer = TraceFileWriter::create(wo, make_trace_header(*session_, {}));
  if (!writer) return writer.error();
  writer_ = std::move(*writer);
  return {};
}

Status PerfstreamRun::start() {
  cpu_before_ns_ = bench::LoadProducer::process_cpu_ns();
  auto compressor = ZstdCompressor::create(cfg_.level);
  if (!compressor) return compressor.error();
  BatchSink& sink = writer_ ? static_cast<BatchSink&>(*writer_) : null_sink_;
  worker_ = std::make_unique<BatchWorker>(std::move(*compressor), sink, pipeline_);
  layout_ = std::make_shared<const ColumnarLayout>(ColumnarLayout::for_header(make_trace_header(*session_, {})));
  return session_->start([this](unsigned) { return make_consumer(); });
}

std::unique_ptr<RecordConsumer> PerfstreamRun::make_consumer() {
  if (cfg_.mode == "count") return std::make_unique<CountOnlyConsumer>();
  if (cfg_.mode == "encode") return std::make_unique<EncodeOnlyConsumer>();
  return std::make_unique<BatchingConsumer>(BatchLimits{}, *worker_, static_cast<clockid_t>(session_->clockid()),
                                            layout_);
}

void PerfstreamRun::run() {
  producer_.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(cfg_.duration_ms));
  ran_ns_ = producer_.stop();
}

void PerfstreamRun::drain() {
  session_->stop();  // the final drain is part of the collector's work
  worker_->finish();
  cpu_after_ns_ = bench::LoadProducer::process_cpu_ns();
  if (writer_) (void)writer_->close(make_trace_trailer(*session_));  // the collector's counters, as record's
}

void PerfstreamRun::summarise(RunResult& r) {
  const auto counts = read_loadgen(*session_->probes().front());
  const auto total = session_->stats().total();
  r.duration_s = ran_ns_ / 1e9;
  r.emitted = counts.emitted;
  r.failed = counts.failed;
  r.delivered = total.samples;
  r.delivered_bytes = total.sample_bytes;
  // A ring buffer's reader is told of no loss: as the baseline does, count the producer's failures then.
  r.lost = cfg_.ringbuf ? counts.failed_nospace : total.lost;
  r.collector_cpu_s = (cpu_after_ns_ - cpu_before_ns_) / 1e9;
  r.wakeups = static_cast<std::int64_t>(total.wakeups);
  r.producer_calls_per_s = r.duration_s > 0 ? (r.emitted + r.failed) / r.duration_s : 0;
}

RunResult run_perfstream(const BenchConfig& cfg, std::uint32_t size, double ceiling, Log& log) {
  RunResult r;
  r.impl = perfstream_impl(cfg);
  r.size = size;
  r.ceiling_calls_per_s = ceiling;
  const MachineLoadProbe machine;
  {
    PerfstreamRun run(cfg, size, log);
    Status st = run.setup();
    if (st) st = run.start();
    if (!st) {
      r.error = st.error().message();
      return r;
    }
    run.run();
    run.drain();
    run.summarise(r);
  }  // the producer reaped, so that its CPU time counts as the bench's own
  r.machine = machine.finish();
  return r;
}

// Pulls "key":number out of the baseline's one-line JSON.
double json_number(const std::string& line, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  const auto at = line.find(needle);
  if (at == std::string::npos) return 0;
  return std::strtod(line.c_str() + at + needle.size(), nullptr);
}

// The libbpf baseline program: --baseline as given, else the one next to this perfstream (installed side by
// side) or in the build tree's bench/ beside collector/. Checked before any run, so a missing one is an error
// at once, not after the first perfstream run.
Result<std::string> find_baseline(const std::string& given) {
  if (!given.empty()) {
    if (access(given.c_str(), X_OK) != 0) {
      return Error("--baseline " + given + ": " + std::strerror(errno) + " (expected the perfstream-libbpf-baseline program)");
    }
    return given;
  }
  char self[4096] = {};
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return Error("--compare: cannot tell where perfstream is (/proc/self/exe); give --baseline PATH");
  std::string dir(self, static_cast<std::size_t>(n));
  dir = dir.substr(0, dir.rfind('/'));
  const std::vector<std::string> candidates = {dir + "/perfstream-libbpf-baseline",
                                               dir + "/../bench/perfstream-libbpf-baseline"};
  for (const std::string& candidate : candidates) {
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return Error("--compare runs perfstream-libbpf-baseline, which is not next to perfstream (looked for " +
               candidates[0] + " and " + candidates[1] +
               "): build it (cmake --build build --target perfstream-libbpf-baseline) or give --baseline PATH");
}

RunResult run_baseline(const std::string& binary, const std::string& mode, const BenchConfig& cfg, std::uint32_t size,
                       double ceiling, std::uint64_t ring_pages) {
  RunResult r;
  r.impl = mode == "ringbuf" ? "libbpf-ringbuf" : "libbpf-" + mode.substr(std::string("perfbuf-").size());
  r.size = size;
  r.ceiling_calls_per_s = ceiling;
  std::ostringstream cmd;
  cmd << binary << " --mode " << mode << " --producer-cpu " << cfg.producer_cpus.front() << " --consumer-cpu "
      << (cfg.collector_cpus.empty() ? 0 : cfg.collector_cpus.front()) << " --size " << size << " --duration-ms "
      << cfg.duration_ms << " --pages " << ring_pages;
  if (cfg.wakeup) cmd << " --wakeup-bytes " << cfg.wakeup;
  cmd << " 2>&1";
  const MachineLoadProbe machine;
  FILE* pipe = popen(cmd.str().c_str(), "r");
  if (pipe == nullptr) {
    r.error = "cannot run " + binary;
    return r;
  }
  std::string output;
  char buf[4096];
  while (std::fgets(buf, sizeof(buf), pipe) != nullptr) output += buf;
  const int status = pclose(pipe);
  r.machine = machine.finish();
  std::string line;
  std::istringstream lines(output);
  std::string json;
  while (std::getline(lines, line)) {
    if (line.rfind("{", 0) == 0) json = line;
  }
  if (status != 0 || json.empty()) {
    r.error = binary + " failed: " + output;
    return r;
  }
  r.duration_s = json_number(json, "duration_s");
  r.emitted = static_cast<std::uint64_t>(json_number(json, "emitted"));
  r.failed = static_cast<std::uint64_t>(json_number(json, "failed"));
  r.delivered = static_cast<std::uint64_t>(json_number(json, "delivered"));
  r.delivered_bytes = static_cast<std::uint64_t>(json_number(json, "delivered_bytes"));
  r.lost = static_cast<std::uint64_t>(json_number(json, "lost"));
  r.collector_cpu_s = json_number(json, "collector_cpu_s");
  r.wakeups = static_cast<std::int64_t>(json_number(json, "wakeups"));
  r.producer_calls_per_s = json_number(json, "producer_calls_per_s");
  return r;
}

std::string fmt(double v, int precision = 1) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(precision) << v;
  return out.str();
}

std::string rate(double v) {
  if (v >= 1e6) return fmt(v / 1e6, 2) + " M";
  if (v >= 1e3) return fmt(v / 1e3, 1) + " k";
  return fmt(v, 0);
}

// Each run, in the order it ran. "unwritable" is what the BPF side could not write (loadgen's failed
// emits: a full ring, or none); "other CPU" is the share of a CPU other processes took during the run.
// Wide enough for perfstream-compress:raw+time+cpu.
constexpr int kImplWidth = 31;

void print_table(const std::vector<RunResult>& runs, std::ostream& out) {
  out << std::left << std::setw(kImplWidth) << "implementation" << std::right << std::setw(6) << "size" << std::setw(12)
      << "ceiling/s" << std::setw(12) << "producer/s" << std::setw(13) << "delivered/s" << std::setw(9) << "MB/s"
      << std::setw(11) << "lost" << std::setw(12) << "unwritable" << std::setw(8) << "lost%" << std::setw(11)
      << "CPU ns/rec" << std::setw(11) << "wakeups/s" << std::setw(11) << "other CPU" << "\n";
  for (const auto& r : runs) {
    if (!r.error.empty()) {
      out << std::left << std::setw(kImplWidth) << r.impl << std::right << std::setw(6) << r.size << "  error: " << r.error << "\n";
      continue;
    }
    out << std::left << std::setw(kImplWidth) << r.impl << std::right << std::setw(6) << r.size << std::setw(12)
        << rate(r.ceiling_calls_per_s) << std::setw(12) << rate(r.producer_calls_per_s) << std::setw(13)
        << rate(r.delivered_per_s()) << std::setw(9) << fmt(r.mb_per_s()) << std::setw(11) << r.lost << std::setw(12)
        << r.failed << std::setw(8) << fmt(r.lost_pct(), 2) << std::setw(11) << fmt(r.cpu_ns_per_record(), 0)
        << std::setw(11)
        << (r.wakeups >= 0 ? rate(r.duration_s > 0 ? r.wakeups / r.duration_s : 0) : std::string("-"))
        << std::setw(10) << fmt(100 * r.machine.other_cpu_share(), 0) << "%" << (r.machine.busy() ? " busy" : "")
        << "\n";
  }
}

// One implementation at one size over its --repeat runs: min, median and max of a figure.
struct Spread {
  double min = 0, median = 0, max = 0;
};

Spread spread_of(std::vector<double> values) {
  Spread s;
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  s.min = values.front();
  s.max = values.back();
  const std::size_t n = values.size();
  s.median = n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  return s;
}

// The runs of each implementation and size without an error, in the order the table lists them.
std::vector<std::pair<std::string, std::vector<const RunResult*>>> group_runs(const std::vector<RunResult>& runs) {
  std::vector<std::pair<std::string, std::vector<const RunResult*>>> groups;
  for (const auto& r : runs) {
    if (!r.error.empty()) continue;
    const std::string key = r.impl + " " + std::to_string(r.size);
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == key; });
    if (it == groups.end()) it = groups.insert(groups.end(), {key, {}});
    it->second.push_back(&r);
  }
  return groups;
}

template <typename Figure>
Spread spread(const std::vector<const RunResult*>& runs, Figure figure) {
  std::vector<double> values;
  for (const auto* r : runs) values.push_back(figure(*r));
  return spread_of(std::move(values));
}

// With --repeat: the spread of each implementation's runs at each size, so a difference can be told from
// the noise between runs.
void print_spread(const std::vector<RunResult>& runs, unsigned repeat, std::ostream& out) {
  if (repeat < 2) return;
  out << "\nspread over " << repeat << " runs (min / median / max):\n";
  out << std::left << std::setw(kImplWidth) << "implementation" << std::right << std::setw(6) << "size" << std::setw(30)
      << "delivered/s" << std::setw(20) << "CPU ns/rec" << std::setw(24) << "lost%" << "\n";
  for (const auto& [key, group] : group_runs(runs)) {
    const Spread d = spread(group, [](const RunResult& r) { return r.delivered_per_s(); });
    const Spread c = spread(group, [](const RunResult& r) { return r.cpu_ns_per_record(); });
    const Spread l = spread(group, [](const RunResult& r) { return r.lost_pct(); });
    out << std::left << std::setw(kImplWidth) << group.front()->impl << std::right << std::setw(6) << group.front()->size
        << std::setw(30) << (rate(d.min) + " / " + rate(d.median) + " / " + rate(d.max)) << std::setw(20)
        << (fmt(c.min, 0) + " / " + fmt(c.median, 0) + " / " + fmt(c.max, 0)) << std::setw(24)
        << (fmt(l.min, 2) + " / " + fmt(l.median, 2) + " / " + fmt(l.max, 2)) << "\n";
  }
}

// Ours over each other implementation at the same size, from the medians of their runs.
void print_ratios(const std::vector<RunResult>& runs, const std::string& ours, std::ostream& out) {
  const auto groups = group_runs(runs);
  std::map<std::uint32_t, const std::vector<const RunResult*>*> mine;
  for (const auto& [key, group] : groups) {
    if (group.front()->impl == ours) mine[group.front()->size] = &group;
  }
  bool header = false;
  for (const auto& entry : groups) {
    const std::vector<const RunResult*>& group = entry.second;  // a name a lambda may capture (not a binding)
    const RunResult& first = *group.front();
    if (first.impl == ours || mine.count(first.size) == 0) continue;
    const auto& m = *mine[first.size];
    auto median = [](const std::vector<const RunResult*>& g, auto figure) { return spread(g, figure).median; };
    auto delivered = [](const RunResult& r) { return r.delivered_per_s(); };
    auto producer = [](const RunResult& r) { return r.producer_calls_per_s; };
    auto cpu = [](const RunResult& r) { return r.cpu_ns_per_record(); };
    if (median(group, delivered) <= 0) continue;
    if (!header) {
      out << "\nratios (" << ours << " / other, same size, same invocation" << (m.size() > 1 ? ", medians" : "")
          << "):\n";
      header = true;
    }
    auto ratio = [&](auto figure) {
      const double theirs = median(group, figure);
      return fmt(theirs > 0 ? median(m, figure) / theirs : 0, 2);
    };
    out << "  " << std::left << std::setw(kImplWidth - 2) << first.impl << std::right << std::setw(6) << first.size
        << "  delivered x" << ratio(delivered) << "  producer x" << ratio(producer) << "  CPU per record x"
        << ratio(cpu) << "\n";
  }
}

// A warning under the table when other processes took CPU during some runs: those runs' rates are not
// comparable with the others'.
void print_busy_warning(const std::vector<RunResult>& runs, std::ostream& out) {
  std::size_t busy = 0, measured = 0;
  double worst = 0, load = -1;
  for (const auto& r : runs) {
    if (!r.error.empty()) continue;
    ++measured;
    load = std::max(load, r.machine.load_average);
    if (!r.machine.busy()) continue;
    ++busy;
    worst = std::max(worst, r.machine.other_cpu_share());
  }
  if (busy == 0) return;
  out << "\nwarning: the machine was busy during " << busy << " of " << measured
      << " runs (marked busy: other processes took up to " << fmt(100 * worst, 0) << "% of a CPU";
  if (load >= 0) out << "; load average up to " << fmt(load, 2) << " at a run's start";
  out << "): their figures are not comparable; run again on an idle machine\n";
}

void print_json(const std::vector<RunResult>& runs, const BenchConfig& cfg, std::ostream& out) {
  out << "{\"producer_cpus\":\"" << producer_set(cfg).to_string() << "\",\"duration_ms\":" << cfg.duration_ms << ",\"mode\":"
      << render::json_string(cfg.mode) << ",\"runs\":[";
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    out << (i ? "," : "") << "{\"implementation\":" << render::json_string(r.impl) << ",\"size\":" << r.size;
    if (!r.error.empty()) {
      out << ",\"error\":" << render::json_string(r.error) << "}";
      continue;
    }
    out << ",\"duration_s\":" << r.duration_s << ",\"ceiling_calls_per_s\":" << r.ceiling_calls_per_s
        << ",\"producer_calls_per_s\":" << r.producer_calls_per_s << ",\"emitted\":" << r.emitted
        << ",\"failed\":" << r.failed << ",\"delivered\":" << r.delivered << ",\"delivered_bytes\":" << r.delivered_bytes
        << ",\"delivered_per_s\":" << r.delivered_per_s() << ",\"lost\":" << r.lost << ",\"lost_pct\":" << r.lost_pct()
        << ",\"collector_cpu_s\":" << r.collector_cpu_s << ",\"cpu_ns_per_record\":" << r.cpu_ns_per_record()
        << ",\"unwritable\":" << r.failed << ",\"wakeups\":" << r.wakeups
        << ",\"other_cpu_share\":" << r.machine.other_cpu_share() << ",\"busy\":" << (r.machine.busy() ? "true" : "false")
        << ",\"load_average\":" << r.machine.load_average << "}";
  }
  out << "]}\n";
}

// Axis ticks at round values: a step of 1, 2, 2.5 or 5 times a power of ten, about `count` of them from 0
// to at least `max`. Returns the step; the axis ends at the first multiple of it at or above max.
double round_step(double max, int count) {
  if (max <= 0) return 1;
  const double rough = max / count;
  const double power = std::pow(10.0, std::floor(std::log10(rough)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    if (m * power >= rough) return m * power;
  }
  return 10 * power;
}

// Decimals that show every multiple of `step` exactly: a step of m x 10^e needs -e of them, one more for
// m = 2.5 (0.25, 0.5, 0.75).
int tick_decimals(double step) {
  const double e = std::floor(std::log10(step) + 1e-9);
  const double m = step / std::pow(10.0, e);
  return std::max(0, static_cast<int>(-e) + (std::abs(m - 2.5) < 1e-6 ? 1 : 0));
}

// A tick's label: rates with k and M, others plain; as many decimals as the step needs.
std::string tick_label(double v, double step, bool is_rate) {
  if (is_rate && v >= 1e6) return fmt(v / 1e6, tick_decimals(step / 1e6)) + " M";
  if (is_rate && v >= 1e3) return fmt(v / 1e3, tick_decimals(step / 1e3)) + " k";
  return fmt(v, tick_decimals(step));
}

// Three charts side by side against record size (log2 axis): delivered records/s, collector CPU ns per
// record and lost %. Each implementation is a line through the medians of its runs at each size, with every
// run a dot, so the spread of --repeat shows.
std::string svg_plot(const std::vector<RunResult>& runs) {
  std::map<std::string, std::vector<const RunResult*>> series;
  std::vector<std::uint32_t> sizes;
  for (const auto& r : runs) {
    if (!r.error.empty()) continue;
    series[r.impl].push_back(&r);
    sizes.push_back(r.size);
  }
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};
  const int W = 420, H = 320, L = 78, B = 40, T = 30, gap = 30;
  std::ostringstream svg;
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << 3 * W + 2 * gap << "' height='" << H + 60
      << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n";
  auto chart = [&](int x0, const std::string& title, const std::string& unit, bool is_rate, auto value) {
    double ymax = 0;
    for (const auto& [name, rs] : series)
      for (const auto* r : rs) ymax = std::max(ymax, value(*r));
    const double step = round_step(ymax > 0 ? ymax : 1, 4);
    const double top = std::max(step, std::ceil(ymax / step - 1e-9) * step);
    const double lo = std::log2(std::max<double>(1, sizes.empty() ? 1 : sizes.front()));
    const double hi = std::log2(std::max<double>(2, sizes.empty() ? 2 : sizes.back()));
    auto px = [&](double size) {
      return x0 + L + (hi > lo ? (std::log2(size) - lo) / (hi - lo) : 0.5) * (W - L - 20);
    };
    auto py = [&](double v) { return T + (H - T - B) * (1 - v / top); };
    svg << "<text x='" << x0 + W / 2 << "' y='18' text-anchor='middle' font-weight='bold'>" << title << "</text>\n";
    svg << "<line x1='" << x0 + L << "' y1='" << H - B << "' x2='" << x0 + W - 20 << "' y2='" << H - B
        << "' stroke='black'/><line x1='" << x0 + L << "' y1='" << T << "' x2='" << x0 + L << "' y2='" << H - B
        << "' stroke='black'/>\n";
    for (double v = 0; v <= top + step / 2; v += step) {
      svg << "<line x1='" << x0 + L - 4 << "' y1='" << py(v) << "' x2='" << x0 + W - 20 << "' y2='" << py(v)
          << "' stroke='#ddd'/><text x='" << x0 + L - 6 << "' y='" << py(v) + 4 << "' text-anchor='end'>"
          << tick_label(v, step, is_rate) << "</text>\n";
    }
    svg << "<text transform='translate(" << x0 + 14 << "," << (T + H - B) / 2 << ") rotate(-90)' text-anchor='middle'>"
        << unit << "</text>\n";
    for (auto s : sizes) {
      svg << "<text x='" << px(s) << "' y='" << H - B + 16 << "' text-anchor='middle'>" << s << "</text>\n";
    }
    svg << "<text x='" << x0 + L + (W - L - 20) / 2 << "' y='" << H - 5
        << "' text-anchor='middle'>record size (bytes, log scale)</text>\n";
    int c = 0;
    for (const auto& [name, rs] : series) {
      svg << "<polyline fill='none' stroke-width='2' stroke='" << colors[c % 6] << "' points='";
      for (auto size : sizes) {
        std::vector<const RunResult*> at;
        for (const auto* r : rs) {
          if (r->size == size) at.push_back(r);
        }
        if (!at.empty()) svg << px(size) << "," << py(spread(at, value).median) << " ";
      }
      svg << "'/>\n";
      for (const auto* r : rs) {
        svg << "<circle r='3' fill='" << colors[c % 6] << "' cx='" << px(r->size) << "' cy='" << py(value(*r)) << "'/>\n";
      }
      ++c;
    }
  };
  chart(0, "delivered", "records per second", true, [](const RunResult& r) { return r.delivered_per_s(); });
  chart(W + gap, "collector CPU per record", "ns of CPU per record", false,
        [](const RunResult& r) { return r.cpu_ns_per_record(); });
  chart(2 * (W + gap), "lost", "% of records attempted", false,
        [](const RunResult& r) { return r.lost_pct(); });
  int c = 0;
  for (const auto& [name, rs] : series) {
    svg << "<rect x='" << 20 + c * 190 << "' y='" << H + 28 << "' width='12' height='12' fill='" << colors[c % 6]
        << "'/><text x='" << 36 + c * 190 << "' y='" << H + 39 << "'>" << name << "</text>\n";
    ++c;
  }
  svg << "</svg>\n";
  return svg.str();
}

// How `bench` was asked to run: its flags, checked. Plain data.
struct BenchSettings {
  BenchConfig cfg;
  std::size_t online_cpus = 0;              // for the ring geometry and the table's heading
  std::vector<std::uint32_t> sizes = {64};
  std::vector<std::string> baselines;       // modes of the libbpf baseline, each run after perfstream's run
  unsigned repeat = 1;
  RingGeometry geometry;
  std::string baseline;                     // the libbpf baseline program
  bool json = false;
  std::optional<std::string> plot;          // --plot FILE.svg
  std::vector<std::string> sample_fields;   // --sample-fields: one perfstream run per item; empty: one run
};

ArgParser bench_flags() {
  ArgParser parser("bench", "perfstream bench [--sizes 16,64,256] [--mode count|encode|compress|file] [--compare libbpf,ringbuf] [flags]");
  parser.option("producer-cpus", 0, "LIST", "CPUs with a producer thread each (default 0); the libbpf baselines use the first")
      .option("collector-cpus", 0, "LIST", "CPUs for the reader threads, one thread each (default: the next CPU)")
      .option("sizes", 0, "LIST", "record sizes in bytes, comma-separated (default 64); 32 (loadgen's header) to 16384")
      .option("duration", 'd', "TIME", "length of each run (default 2s)")
      .option("pages", 'm', "SIZE", "ring per CPU, as for record (default as record's: 4M per CPU, at most 64M in all)")
      .option("wakeup", 0, "SIZE", "wakeup size, as for record (default a quarter ring)")
      .option("mode", 0, "MODE", "what the collector does: count, encode, compress (zstd, no I/O), file (default count)")
      .option("channel", 0, "KIND", "what perfstream reads: perf (per-CPU perf rings, default) or ringbuf (one BPF ring buffer, sized as --compare ringbuf's)")
      .option("output", 'o', "FILE", "the trace file of --mode file (default /tmp/perfstream-bench.data)")
      .option("compression-level", 'z', "N", "zstd level for compress and file (default 1)")
      .option("sample-fields", 0, "LIST", "run perfstream once per set of perf sample fields, to measure what each costs the producer: raw, raw+cpu, raw+time, raw+time+cpu, or all (default: record's, raw with loadgen's own ts)")
      .option("compare", 0, "LIST", "also run libbpf (perf_buffer: defaults and watermark) and/or ringbuf")
      .option("baseline", 0, "PATH", "the perfstream-libbpf-baseline program (default: found next to perfstream)")
      .option("repeat", 0, "N", "alternate every implementation N times per size, reporting each run (default 1)")
      .option("plot", 0, "FILE.svg", "draw delivered rate and CPU per record against record size")
      .flag("json", 0, "print one JSON document instead of the table")
      .flag("help", 'h', "show this help");
  return parser;
}

// --producer-cpus and --collector-cpus; the collector's default is the first online CPU with no producer.
Status cpus_from(const ArgParser& parser, const CpuSet& online, BenchConfig& cfg) {
  if (auto v = parser.value("producer-cpus")) {
    auto set = CpuSet::parse(*v);
    if (!set) return set.error();
    if (set->empty() || !set->minus(online).empty()) return Error("--producer-cpus: give online CPUs");
    cfg.producer_cpus.assign(set->cpus().begin(), set->cpus().end());
  }
  if (auto v = parser.value("collector-cpus")) {
    auto set = CpuSet::parse(*v);
    if (!set) return set.error();
    if (!set->minus(online).empty()) return Error("--collector-cpus: " + set->minus(online).to_string() + " not online");
    cfg.collector_cpus = set->cpus();
    return {};
  }
  const CpuSet producers = producer_set(cfg);
  for (unsigned c : online.cpus()) {
    if (!producers.contains(c)) {
      cfg.collector_cpus = {c};
      return {};
    }
  }
  cfg.collector_cpus = {static_cast<unsigned>(cfg.producer_cpus.front())};
  return {};
}

// The items of a comma-separated flag value, as std::getline splits it (a trailing comma adds none).
std::vector<std::string> comma_items(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream list(text);
  for (std::string item; std::getline(list, item, ',');) items.push_back(item);
  return items;
}

Result<std::vector<std::uint32_t>> sizes_from(const std::string& text) {
  std::vector<std::uint32_t> sizes;
  for (const std::string& item : comma_items(text)) {
    auto n = parse_bytes("sizes", item);
    if (!n || *n < PS_LOADGEN_HEADER_SIZE || *n > PS_LOADGEN_MAX) {
      return Error("--sizes: '" + item + "' is not a size from " + std::to_string(PS_LOADGEN_HEADER_SIZE) + " to " +
                   std::to_string(PS_LOADGEN_MAX));
    }
    sizes.push_back(static_cast<std::uint32_t>(*n));
  }
  return sizes;
}

// --duration, --pages, --wakeup, --mode, --output, --compression-level.
Status run_options_from(const ArgParser& parser, BenchConfig& cfg) {
  if (auto v = parser.value("duration")) {
    auto ms = parse_duration_ms("duration", *v);
    if (!ms || *ms < 100) return Error("--duration: at least 100ms");
    cfg.duration_ms = *ms;
  }
  if (auto v = parser.value("pages")) {
    auto ring = RingSize::parse(*v);
    if (!ring) return ring.error();
    cfg.ring = *ring;
  }
  if (auto v = parser.value("wakeup")) {
    auto b = parse_bytes("wakeup", *v);
    if (!b) return b.error();
    cfg.wakeup = *b;
  }
  cfg.mode = parser.value("mode").value_or("count");
  if (cfg.mode != "count" && cfg.mode != "encode" && cfg.mode != "compress" && cfg.mode != "file") {
    return Error("--mode: count, encode, compress or file");
  }
  const std::string channel = parser.value("channel").value_or("perf");
  if (channel != "perf" && channel != "ringbuf") return Error("--channel: perf or ringbuf, not '" + channel + "'");
  cfg.ringbuf = channel == "ringbuf";
  cfg.output = parser.value("output").value_or(cfg.output);
  if (auto v = parser.value("compression-level")) cfg.level = std::atoi(v->c_str());
  return {};
}

// --compare libbpf,ringbuf: the baseline program's modes.
Result<std::vector<std::string>> baselines_from(const std::string& text) {
  std::vector<std::string> baselines;
  for (const std::string& item : comma_items(text)) {
    if (item == "libbpf") {
      baselines.push_back("perfbuf-default");
      baselines.push_back("perfbuf-watermark");
    } else if (item == "ringbuf") {
      baselines.push_back("ringbuf");
    } else {
      return Error("--compare: libbpf and/or ringbuf, not '" + item + "'");
    }
  }
  return baselines;
}

// --sample-fields raw,raw+time: each item a set of sample fields, "all" for the four; the ratios compare
// every run with the first item's.
Result<std::vector<std::string>> sample_fields_from(const std::string& text) {
  static const std::vector<std::string> kAll = {"raw", "raw+cpu", "raw+time", "raw+time+cpu"};
  std::vector<std::string> out;
  for (const std::string& item : comma_items(text)) {
    if (item == "all") return kAll;
    if (std::find(kAll.begin(), kAll.end(), item) == kAll.end()) {
      return Error("--sample-fields: raw, raw+cpu, raw+time, raw+time+cpu or all, not '" + item + "'");
    }
    out.push_back(item);
  }
  return out;
}

// The flags, checked in the order the messages have always come in; an error is a usage error (exit 2).
Result<BenchSettings> bench_settings_from(const ArgParser& parser) {
  BenchSettings s;
  auto online = CpuSet::online();
  if (!online) return online.error();
  s.online_cpus = online->size();
  if (auto st = cpus_from(parser, *online, s.cfg); !st) return st.error();
  if (auto v = parser.value("sizes")) {
    auto sizes = sizes_from(*v);
    if (!sizes) return sizes.error();
    s.sizes = std::move(*sizes);
  }
  if (auto st = run_options_from(parser, s.cfg); !st) return st.error();
  if (auto v = parser.value("sample-fields")) {
    if (s.cfg.ringbuf) return Error("--sample-fields: perf rings only (a ring buffer record has no sample fields)");
    auto fields = sample_fields_from(*v);
    if (!fields) return fields.error();
    s.sample_fields = std::move(*fields);
  }
  if (auto v = parser.value("compare")) {
    auto baselines = baselines_from(*v);
    if (!baselines) return baselines.error();
    s.baselines = std::move(*baselines);
  }
  if (auto v = parser.value("repeat")) {
    auto n = parse_count("repeat", *v);
    if (!n || *n == 0 || *n > 100) return Error("--repeat: 1 to 100");
    s.repeat = static_cast<unsigned>(*n);
  }
  auto geometry = plan_ring_geometry(s.cfg.ring, s.cfg.wakeup, s.online_cpus, static_cast<std::size_t>(sysconf(_SC_PAGESIZE)));
  if (!geometry) return geometry.error();
  s.geometry = *geometry;
  // As bench/libbpf_baseline sizes its ring buffer: every CPU's perf ring in one, rounded up to 2^n bytes.
  std::uint64_t ring = static_cast<std::uint64_t>(geometry->data_bytes) * s.online_cpus;
  std::uint64_t pow2 = 1;
  while (pow2 < ring) pow2 <<= 1;
  s.cfg.ringbuf_bytes = static_cast<std::uint32_t>(pow2);
  if (!s.baselines.empty()) {
    auto baseline = find_baseline(parser.value("baseline").value_or(""));
    if (!baseline) return baseline.error();
    s.baseline = std::move(*baseline);
  }
  s.json = parser.has("json");
  s.plot = parser.value("plot");
  return s;
}

// One run of `bench`: for every size the ceiling, then perfstream and each baseline, `repeat` times.
//
// Steps, in order: run() measures (and, without --json, says each run's rate on stderr); summarise() prints
// the table and ratios, or the JSON document; plot() writes --plot; exit_status() is 1 when a run failed.
class BenchCommand {
 public:
  BenchCommand(BenchSettings settings, std::ostream& out, std::ostream& err)
      : settings_(std::move(settings)), out_(out), err_(err), log_(err, "perfstream bench: ") {}

  Status run();
  void summarise();
  Status plot() const;
  int exit_status() const;

 private:
  void add(RunResult r);

  // Declared in the order they own each other: the log outlives the runs whose readers log through it.
  const BenchSettings settings_;
  std::ostream& out_;
  std::ostream& err_;
  Log log_;  // the readers' notices, from their threads
  std::vector<RunResult> runs_;
};

Status BenchCommand::run() {
  const BenchConfig& cfg = settings_.cfg;
  for (std::uint32_t size : settings_.sizes) {
    auto ceiling = measure_ceiling(cfg, size);
    if (!ceiling) return ceiling.error();
    for (unsigned round = 0; round < settings_.repeat; ++round) {
      if (settings_.sample_fields.empty()) add(run_perfstream(cfg, size, *ceiling, log_));
      for (const auto& fields : settings_.sample_fields) {
        BenchConfig with = cfg;
        with.sample_fields = fields;
        add(run_perfstream(with, size, *ceiling, log_));
      }
      for (const auto& mode : settings_.baselines) {
        add(run_baseline(settings_.baseline, mode, cfg, size, *ceiling, settings_.geometry.data_pages));
      }
    }
  }
  return {};
}

void BenchCommand::add(RunResult r) {
  runs_.push_back(std::move(r));
  if (settings_.json) return;
  const RunResult& last = runs_.back();
  err_ << "perfstream bench: " << last.impl << " " << last.size << " B: " << rate(last.delivered_per_s())
       << " records/s" << (last.error.empty() ? "" : " (" + last.error + ")") << "\n";
}

void BenchCommand::summarise() {
  const BenchConfig& cfg = settings_.cfg;
  if (settings_.json) {
    print_json(runs_, cfg, out_);
    return;
  }
  out_ << "producer on CPU " << producer_set(cfg).to_string() << ", collector on CPU "
       << CpuSet(cfg.collector_cpus).to_string() << ", " << cfg.duration_ms << " ms per run, ring "
       << settings_.geometry.describe(settings_.online_cpus) << ", mode " << cfg.mode << "\n\n";
  print_table(runs_, out_);
  print_spread(runs_, settings_.repeat, out_);
  // With --sample-fields, every run against the first set's (raw: what record asks for).
  BenchConfig ours = cfg;
  if (!settings_.sample_fields.empty()) ours.sample_fields = settings_.sample_fields.front();
  print_ratios(runs_, perfstream_impl(ours), out_);
  print_busy_warning(runs_, out_);
}

Status BenchCommand::plot() const {
  if (!settings_.plot) return {};
  std::ofstream file(*settings_.plot);
  file << svg_plot(runs_);
  if (!file) return Error("cannot write " + *settings_.plot);
  return {};
}

int BenchCommand::exit_status() const {
  for (const auto& r : runs_) {
    if (!r.error.empty()) return 1;
  }
  return 0;
}

}  // namespace

int run_bench(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  ArgParser parser = bench_flags();
  if (auto exit_status = parser.parse_or_exit(args, out, err)) return *exit_status;
  auto settings = bench_settings_from(parser);
  if (!settings) {
    err << "perfstream bench: " << settings.error().message() << "\n";
    return 2;
  }
  BenchCommand bench(std::move(*settings), out, err);
  if (auto st = bench.run(); !st) {
    err << "perfstream bench: " << st.error().message() << "\n";
    return 1;
  }
  bench.summarise();
  if (auto st = bench.plot(); !st) {
    err << "perfstream bench: " << st.error().message() << "\n";
    return 1;
  }
  return bench.exit_status();
}

}  // namespace perfstream::cli
