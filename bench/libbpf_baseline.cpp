// perfstream-libbpf-baseline: what a careful libbpf user gets, measured the way `perfstream bench` measures
// perfstream, so the two can be compared run for run. It uses only libbpf's public API (Debian 12: libbpf
// 1.1.2) and shares nothing with perfstream but the BPF producer (loadgen, or its ringbuf twin), the record
// layout (bpf/events.h) and the producer process (collector/cli/load_producer.hpp).
//
//   perfstream-libbpf-baseline --mode perfbuf-default|perfbuf-watermark|ringbuf --producer-cpu P
//       --consumer-cpu C --size BYTES --duration-ms D [--pages N] [--wakeup-bytes B]
//
// Modes:
//   perfbuf-default    perf_buffer__new: libbpf's own perf_event_attr (sample_type RAW, wakeup_events 1: the
//                      reader is woken for every record), sample and lost callbacks.
//   perfbuf-watermark  perf_buffer__new_raw with perfstream's wakeup policy: watermark 1, wakeup_watermark B
//                      (default a quarter of a CPU's ring), sample_type RAW; the raw event callback counts
//                      PERF_RECORD_SAMPLE and PERF_RECORD_LOST itself.
//   ringbuf            BPF_MAP_TYPE_RINGBUF (loadgen_ringbuf), one ring shared by every CPU, sized to the same
//                      total as the perf rings (N pages x online CPUs, rounded up to a power of two), with
//                      bpf_ringbuf_output's default adaptive wakeup; ring_buffer__new/__poll.
// Every mode drains from one thread pinned to C, polling with a 100 ms timeout, while the producer (a child
// pinned to P calling getppid in a loop) runs for D ms; then the producer is stopped and what is left in the
// rings is consumed. Output: one JSON line on stdout (fields below, at print_report). Errors: one line on
// stderr, exit 1.
//
// Counting. `delivered` counts samples that parse as loadgen records; their bytes are the record's own
// length (header + payload_len), never the kernel's padding. `emitted`/`failed` are the BPF program's own
// per-CPU counters, summed over CPUs: the truth every reader is checked against. `lost` is what the kernel
// told the reader (PERF_RECORD_LOST): it lags, since the kernel writes a loss record only once there is room
// again, so losses at the very end of a run may never be reported. A ringbuf reports no losses to its reader
// at all; for it `lost` is the producer's failure count.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "collector/cli/load_producer.hpp"

extern "C" {
#include <linux/types.h>

#include "events.h"
}
#include "loadgen.skel.h"
#include "loadgen_ringbuf.skel.h"

namespace perfstream::baseline {
namespace {

// Fatal errors: thrown anywhere, caught only in main, which prints the message and returns 1.
class Failure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string errno_text(int err) {
  std::string text = std::strerror(err);
  if (err == EPERM || err == EACCES) text += " (run as root, or with CAP_BPF and CAP_PERFMON)";
  return text;
}

enum class Mode { PerfbufDefault, PerfbufWatermark, Ringbuf };

const char* mode_name(Mode mode) {
  switch (mode) {
    case Mode::PerfbufDefault: return "perfbuf-default";
    case Mode::PerfbufWatermark: return "perfbuf-watermark";
    case Mode::Ringbuf: return "ringbuf";
  }
  return "?";
}

struct Options {
  Mode mode = Mode::PerfbufDefault;
  int producer_cpu = -1;
  int consumer_cpu = -1;
  std::uint32_t size = 0;
  std::uint64_t duration_ms = 0;
  std::size_t pages = 128;         // per CPU: 512 KiB with 4 KiB pages, perfstream's default
  std::uint64_t wakeup_bytes = 0;  // perfbuf-watermark only; 0: a quarter of a CPU's ring
};

constexpr const char* kUsage =
    "usage: perfstream-libbpf-baseline --mode perfbuf-default|perfbuf-watermark|ringbuf --producer-cpu P\n"
    "           --consumer-cpu C --size BYTES --duration-ms D [--pages N] [--wakeup-bytes B]\n";

std::uint64_t parse_number(std::string_view flag, const char* text) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long value = std::strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-') {
    throw Failure(std::string(flag) + " " + text + ": not a non-negative integer");
  }
  return value;
}

Options parse_options(int argc, char** argv) {
  Options o;
  bool have_mode = false, have_size = false, have_duration = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) throw Failure(std::string(flag) + " needs a value\n" + kUsage);
    const char* value = argv[++i];
    if (flag == "--mode") {
      const std::string_view v = value;
      if (v == "perfbuf-default") o.mode = Mode::PerfbufDefault;
      else if (v == "perfbuf-watermark") o.mode = Mode::PerfbufWatermark;
      else if (v == "ringbuf") o.mode = Mode::Ringbuf;
      else throw Failure(std::string("--mode ") + value + ": use perfbuf-default, perfbuf-watermark or ringbuf");
      have_mode = true;
    } else if (flag == "--producer-cpu") {
      o.producer_cpu = static_cast<int>(parse_number(flag, value));
    } else if (flag == "--consumer-cpu") {
      o.consumer_cpu = static_cast<int>(parse_number(flag, value));
    } else if (flag == "--size") {
      o.size = static_cast<std::uint32_t>(parse_number(flag, value));
      have_size = true;
    } else if (flag == "--duration-ms") {
      o.duration_ms = parse_number(flag, value);
      have_duration = true;
    } else if (flag == "--pages") {
      o.pages = parse_number(flag, value);
    } else if (flag == "--wakeup-bytes") {
      o.wakeup_bytes = parse_number(flag, value);
    } else {
      throw Failure("unknown option " + std::string(flag) + "\n" + kUsage);
    }
  }
  if (!have_mode || o.producer_cpu < 0 || o.consumer_cpu < 0 || !have_size || !have_duration) {
    throw Failure(std::string("--mode, --producer-cpu, --consumer-cpu, --size and --duration-ms are required\n") +
                  kUsage);
  }
  if (o.size < PS_LOADGEN_HEADER_SIZE || o.size > PS_LOADGEN_MAX) {
    throw Failure("--size " + std::to_string(o.size) + ": loadgen emits records of " +
                  std::to_string(PS_LOADGEN_HEADER_SIZE) + " to " + std::to_string(PS_LOADGEN_MAX) + " bytes");
  }
  if (o.duration_ms == 0) throw Failure("--duration-ms must be at least 1");
  if (o.pages == 0 || (o.pages & (o.pages - 1)) != 0) {
    throw Failure("--pages " + std::to_string(o.pages) + ": must be a power of two");
  }
  if (o.wakeup_bytes != 0 && o.mode != Mode::PerfbufWatermark) {
    throw Failure("--wakeup-bytes applies only to --mode perfbuf-watermark");
  }
  return o;
}

void pin_this_process(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0) {
    const int err = errno;
    throw Failure("pinning the collector to CPU " + std::to_string(cpu) + ": " + std::strerror(err));
  }
}

int libbpf_warnings_only(enum libbpf_print_level level, const char* format, va_list args) {
  if (level != LIBBPF_WARN) return 0;
  return std::vfprintf(stderr, format, args);
}

// What the reader saw. Written by the consumer thread while it runs, then by the final drain on the main
// thread after the join: never by two threads at once.
struct Tally {
  std::uint64_t delivered = 0;
  std::uint64_t delivered_bytes = 0;
  std::uint64_t lost = 0;
  std::uint64_t foreign = 0;  // samples that are not loadgen records (none are expected)
};

void count_sample(Tally& tally, const void* data, std::size_t size) {
  ps_loadgen_event header;
  if (size < PS_LOADGEN_HEADER_SIZE) {
    ++tally.foreign;
    return;
  }
  std::memcpy(&header, data, PS_LOADGEN_HEADER_SIZE);
  if (header.kind != PS_EVENT_LOADGEN || PS_LOADGEN_HEADER_SIZE + std::uint64_t{header.payload_len} > size) {
    ++tally.foreign;
    return;
  }
  ++tally.delivered;
  tally.delivered_bytes += PS_LOADGEN_HEADER_SIZE + header.payload_len;
}

// One way of draining: poll waits up to timeout_ms and processes what became ready (returns < 0 on error,
// > 0 if something was ready); consume drains everything, ready or not.
class Drain {
 public:
  virtual ~Drain() = default;
  virtual int poll(int timeout_ms) = 0;
  virtual int consume() = 0;
  virtual std::uint64_t ring_bytes() const = 0;
};

struct PerfBufferDeleter {
  void operator()(perf_buffer* pb) const { perf_buffer__free(pb); }
};
struct RingBufferDeleter {
  void operator()(ring_buffer* rb) const { ring_buffer__free(rb); }
};

std::size_t page_size() { return static_cast<std::size_t>(sysconf(_SC_PAGESIZE)); }

// perf_buffer__poll returns how many rings epoll reported ready, not how many records were read.
class PerfBufferDrain : public Drain {
 public:
  // libbpf's defaults: perf_buffer__new's own attr, which wakes the reader on every record.
  static std::unique_ptr<PerfBufferDrain> with_defaults(int map_fd, std::size_t pages, Tally& tally) {
    auto sample = [](void* ctx, int, void* data, __u32 size) { count_sample(*static_cast<Tally*>(ctx), data, size); };
    auto lost = [](void* ctx, int, __u64 count) { static_cast<Tally*>(ctx)->lost += count; };
    perf_buffer* pb = perf_buffer__new(map_fd, pages, sample, lost, &tally, nullptr);
    return adopt(pb, pages);
  }

  // perfstream's wakeup policy through libbpf's raw API: woken once wakeup_bytes are pending on a ring.
  static std::unique_ptr<PerfBufferDrain> with_watermark(int map_fd, std::size_t pages, std::uint64_t wakeup_bytes,
                                                         Tally& tally) {
    perf_event_attr attr{};
    attr.size = sizeof(attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_BPF_OUTPUT;
    attr.sample_period = 1;
    attr.sample_type = PERF_SAMPLE_RAW;
    attr.watermark = 1;
    attr.wakeup_watermark = static_cast<__u32>(wakeup_bytes);
    perf_buffer* pb = perf_buffer__new_raw(map_fd, pages, &attr, on_raw_event, &tally, nullptr);
    return adopt(pb, pages);
  }

  int poll(int timeout_ms) override { return perf_buffer__poll(pb_.get(), timeout_ms); }
  int consume() override { return perf_buffer__consume(pb_.get()); }
  std::uint64_t ring_bytes() const override {
    return std::uint64_t{pages_} * page_size() * perf_buffer__buffer_cnt(pb_.get());
  }

 private:
  PerfBufferDrain(perf_buffer* pb, std::size_t pages) : pb_(pb), pages_(pages) {}

  static std::unique_ptr<PerfBufferDrain> adopt(perf_buffer* pb, std::size_t pages) {
    if (pb == nullptr) {
      const int err = errno;
      throw Failure("opening the perf rings (" + std::to_string(pages) + " pages per CPU): " + errno_text(err));
    }
    return std::unique_ptr<PerfBufferDrain>(new PerfBufferDrain(pb, pages));
  }

  // Records as the kernel writes them with sample_type RAW and sample_id_all 0 (libbpf has already copied a
  // record that wraps the ring end into one piece).
  static bpf_perf_event_ret on_raw_event(void* ctx, int, perf_event_header* header) {
    Tally& tally = *static_cast<Tally*>(ctx);
    const auto* bytes = reinterpret_cast<const unsigned char*>(header);
    if (header->type == PERF_RECORD_SAMPLE) {
      // { header; u32 size; char data[size]; } where size includes the kernel's padding.
      __u32 size = 0;
      std::memcpy(&size, bytes + sizeof(*header), sizeof(size));
      count_sample(tally, bytes + sizeof(*header) + sizeof(size), size);
    } else if (header->type == PERF_RECORD_LOST) {
      // { header; u64 id; u64 lost; }
      __u64 lost = 0;
      std::memcpy(&lost, bytes + sizeof(*header) + sizeof(__u64), sizeof(lost));
      tally.lost += lost;
    }
    return LIBBPF_PERF_EVENT_CONT;
  }

  std::unique_ptr<perf_buffer, PerfBufferDeleter> pb_;
  std::size_t pages_;
};

// ring_buffer__poll returns how many records it consumed.
class RingBufferDrain : public Drain {
 public:
  static std::unique_ptr<RingBufferDrain> create(int map_fd, std::uint64_t bytes, Tally& tally) {
    auto sample = [](void* ctx, void* data, size_t size) {
      count_sample(*static_cast<Tally*>(ctx), data, size);
      return 0;
    };
    ring_buffer* rb = ring_buffer__new(map_fd, sample, &tally, nullptr);
    if (rb == nullptr) {
      const int err = errno;
      throw Failure("opening the BPF ring buffer: " + errno_text(err));
    }
    return std::unique_ptr<RingBufferDrain>(new RingBufferDrain(rb, bytes));
  }
  int poll(int timeout_ms) override { return ring_buffer__poll(rb_.get(), timeout_ms); }
  int consume() override { return ring_buffer__consume(rb_.get()); }
  std::uint64_t ring_bytes() const override { return bytes_; }

 private:
  RingBufferDrain(ring_buffer* rb, std::uint64_t bytes) : rb_(rb), bytes_(bytes) {}
  std::unique_ptr<ring_buffer, RingBufferDeleter> rb_;
  std::uint64_t bytes_;
};

// The loaded producer program: loadgen (perf event array) or loadgen_ringbuf, both used through the generic
// bpf_object API once opened, since they have the same maps and program. Teardown: the link (detach), then
// the skeleton (unload, close the maps); members are declared in reverse of that.
class Loadgen {
 public:
  static std::unique_ptr<Loadgen> load(Mode mode, std::uint64_t ringbuf_bytes) {
    auto lg = std::unique_ptr<Loadgen>(new Loadgen());
    const char* name = mode == Mode::Ringbuf ? "loadgen_ringbuf" : "loadgen";
    if (mode == Mode::Ringbuf) {
      lg->ringbuf_skel_.reset(loadgen_ringbuf_bpf__open());
      if (lg->ringbuf_skel_) lg->obj_ = lg->ringbuf_skel_->obj;
    } else {
      lg->perf_skel_.reset(loadgen_bpf__open());
      if (lg->perf_skel_) lg->obj_ = lg->perf_skel_->obj;
    }
    if (lg->obj_ == nullptr) {
      const int err = errno;
      throw Failure(std::string("opening the BPF object ") + name + ": " + std::strerror(err));
    }
    if (mode == Mode::Ringbuf) {
      const int err = bpf_map__set_max_entries(lg->ringbuf_skel_->maps.ringbuf, static_cast<__u32>(ringbuf_bytes));
      if (err != 0) {
        throw Failure("sizing the ring buffer to " + std::to_string(ringbuf_bytes) + " bytes: " + std::strerror(-err));
      }
    }
    if (const int err = bpf_object__load(lg->obj_); err != 0) {
      throw Failure(std::string("the kernel refused to load ") + name + ": " + errno_text(-err));
    }
    lg->name_ = name;
    return lg;
  }

  int map_fd(const char* map_name) const {
    const bpf_map* map = bpf_object__find_map_by_name(obj_, map_name);
    if (map == nullptr) throw Failure(std::string(name_) + " has no map named " + map_name);
    return bpf_map__fd(map);
  }

  void configure(const ps_loadgen_config& config) {
    const __u32 key = 0;
    if (bpf_map_update_elem(map_fd("loadgen_config"), &key, &config, BPF_ANY) != 0) {
      const int err = errno;
      throw Failure(std::string("writing ") + name_ + "'s loadgen_config: " + std::strerror(err));
    }
  }

  void attach() {
    bpf_program* prog = bpf_object__find_program_by_name(obj_, "ps_loadgen");
    if (prog == nullptr) throw Failure(std::string(name_) + " has no program ps_loadgen");
    bpf_link* link = bpf_program__attach(prog);
    if (link == nullptr) {
      const int err = errno;
      throw Failure(std::string("attaching ") + name_ + " to raw_tp/sys_enter: " + errno_text(err));
    }
    link_.reset(link);
  }

  // The producer's counters, summed over CPUs (the producer is pinned, so one CPU holds them all).
  ps_loadgen_stats stats() const {
    const int cpus = libbpf_num_possible_cpus();
    if (cpus <= 0) throw Failure("counting possible CPUs: " + std::string(std::strerror(-cpus)));
    // A per-CPU value is read as one value per possible CPU, each rounded up to 8 bytes (24 already is).
    static_assert(sizeof(ps_loadgen_stats) % 8 == 0);
    std::vector<ps_loadgen_stats> values(static_cast<std::size_t>(cpus));
    const __u32 key = 0;
    if (bpf_map_lookup_elem(map_fd("loadgen_stats"), &key, values.data()) != 0) {
      const int err = errno;
      throw Failure(std::string("reading ") + name_ + "'s loadgen_stats: " + std::strerror(err));
    }
    ps_loadgen_stats sum{};
    for (const auto& v : values) {
      sum.emitted += v.emitted;
      sum.failed += v.failed;
      sum.failed_nospace += v.failed_nospace;
    }
    return sum;
  }

 private:
  Loadgen() = default;
  struct LinkDeleter {
    void operator()(bpf_link* link) const { bpf_link__destroy(link); }
  };
  struct PerfSkelDeleter {
    void operator()(loadgen_bpf* skel) const { loadgen_bpf__destroy(skel); }
  };
  struct RingbufSkelDeleter {
    void operator()(loadgen_ringbuf_bpf* skel) const { loadgen_ringbuf_bpf__destroy(skel); }
  };

  std::unique_ptr<loadgen_bpf, PerfSkelDeleter> perf_skel_;
  std::unique_ptr<loadgen_ringbuf_bpf, RingbufSkelDeleter> ringbuf_skel_;
  bpf_object* obj_ = nullptr;  // owned by whichever skeleton is set
  const char* name_ = "loadgen";
  std::unique_ptr<bpf_link, LinkDeleter> link_;
};

std::uint64_t round_up_pow2(std::uint64_t v) {
  std::uint64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

struct Report {
  ps_loadgen_stats stats{};
  Tally tally;
  double duration_s = 0;
  double collector_cpu_s = 0;
  std::int64_t wakeups = -1;
  std::uint64_t ring_bytes = 0;
};

// One JSON line. wakeups is a proxy: the number of poll calls that returned > 0 (perf_buffer__poll: rings
// epoll reported ready; ring_buffer__poll: records consumed). The final drain is not counted. ring_bytes is
// the total data area of the rings (every CPU's perf ring, or the one ringbuf).
void print_report(const Options& o, const Report& r) {
  const std::uint64_t lost = o.mode == Mode::Ringbuf ? r.stats.failed : r.tally.lost;
  const double calls_per_s =
      r.duration_s > 0 ? static_cast<double>(r.stats.emitted + r.stats.failed) / r.duration_s : 0.0;
  std::printf(
      "{\"mode\":\"%s\",\"size\":%u,\"duration_s\":%.3f,\"emitted\":%llu,\"failed\":%llu,\"delivered\":%llu,"
      "\"delivered_bytes\":%llu,\"lost\":%llu,\"collector_cpu_s\":%.6f,\"wakeups\":%lld,"
      "\"producer_calls_per_s\":%.1f,\"ring_bytes\":%llu}\n",
      mode_name(o.mode), o.size, r.duration_s, static_cast<unsigned long long>(r.stats.emitted),
      static_cast<unsigned long long>(r.stats.failed), static_cast<unsigned long long>(r.tally.delivered),
      static_cast<unsigned long long>(r.tally.delivered_bytes), static_cast<unsigned long long>(lost),
      r.collector_cpu_s, static_cast<long long>(r.wakeups), calls_per_s,
      static_cast<unsigned long long>(r.ring_bytes));
  std::fflush(stdout);
}

Report run(const Options& o) {
  // The whole collector (main thread and consumer thread) runs on the consumer CPU; the producer child
  // pins itself to its own CPU.
  pin_this_process(o.consumer_cpu);

  // Forked first, before any BPF fd or ring mapping exists, so the child inherits none of them.
  bench::LoadProducer producer;
  if (!producer.spawn(o.producer_cpu)) {
    const int err = errno;
    throw Failure("starting the producer process: " + std::string(std::strerror(err)));
  }

  const std::size_t ring_bytes_per_cpu = o.pages * page_size();
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  const std::uint64_t ringbuf_bytes = round_up_pow2(ring_bytes_per_cpu * static_cast<std::uint64_t>(online > 0 ? online : 1));
  const std::uint64_t wakeup_bytes = o.wakeup_bytes != 0 ? o.wakeup_bytes : ring_bytes_per_cpu / 4;
  if (o.mode == Mode::PerfbufWatermark && wakeup_bytes > ring_bytes_per_cpu) {
    throw Failure("--wakeup-bytes " + std::to_string(wakeup_bytes) + " is larger than a CPU's ring of " +
                  std::to_string(ring_bytes_per_cpu) + " bytes");
  }

  auto loadgen = Loadgen::load(o.mode, ringbuf_bytes);
  Tally tally;
  std::unique_ptr<Drain> drain;
  switch (o.mode) {
    case Mode::PerfbufDefault:
      drain = PerfBufferDrain::with_defaults(loadgen->map_fd("events"), o.pages, tally);
      break;
    case Mode::PerfbufWatermark:
      drain = PerfBufferDrain::with_watermark(loadgen->map_fd("events"), o.pages, wakeup_bytes, tally);
      break;
    case Mode::Ringbuf:
      drain = RingBufferDrain::create(loadgen->map_fd("ringbuf"), ringbuf_bytes, tally);
      break;
  }

  ps_loadgen_config config{};
  config.tgid = static_cast<__u32>(producer.pid());
  config.syscall_nr = SYS_getppid;
  config.record_size = o.size;
  config.records_per_call = 1;
  loadgen->configure(config);
  loadgen->attach();

  std::atomic<bool> stop{false};
  std::atomic<int> poll_error{0};
  std::int64_t wakeups = 0;
  std::thread consumer([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      const int n = drain->poll(100);
      if (n > 0) {
        ++wakeups;
      } else if (n < 0 && n != -EINTR) {
        poll_error.store(-n);
        return;
      }
    }
  });

  const std::uint64_t cpu_start = bench::LoadProducer::process_cpu_ns();
  producer.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(o.duration_ms));
  const std::uint64_t ran_ns = producer.stop();  // the child is reaped: every BPF run has finished
  stop.store(true, std::memory_order_relaxed);
  consumer.join();
  if (const int err = poll_error.load(); err != 0) {
    throw Failure(std::string("polling the rings: ") + std::strerror(err));
  }
  // Whatever is still in the rings: with a watermark, the tail of the run never woke the reader.
  if (const int n = drain->consume(); n < 0) {
    throw Failure(std::string("draining the rings: ") + std::strerror(-n));
  }
  const std::uint64_t cpu_end = bench::LoadProducer::process_cpu_ns();

  Report r;
  r.stats = loadgen->stats();
  r.tally = tally;
  r.duration_s = static_cast<double>(ran_ns) / 1e9;
  r.collector_cpu_s = static_cast<double>(cpu_end - cpu_start) / 1e9;
  r.wakeups = wakeups;
  r.ring_bytes = drain->ring_bytes();
  if (tally.foreign != 0) {
    std::fprintf(stderr, "warning: %llu samples were not loadgen records\n",
                 static_cast<unsigned long long>(tally.foreign));
  }
  return r;
}

}  // namespace
}  // namespace perfstream::baseline

int main(int argc, char** argv) {
  using namespace perfstream::baseline;
  libbpf_set_print(libbpf_warnings_only);
  try {
    const Options options = parse_options(argc, argv);
    const Report report = run(options);
    print_report(options, report);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "perfstream-libbpf-baseline: %s\n", e.what());
    return 1;
  }
}
