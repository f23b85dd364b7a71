// perfstream_make_recording: writes a synthetic sched_switch recording of exactly N records through the
// recorder's own write path (BatchingConsumer -> BatchWorker -> TraceFileWriter), for benchmarks and for
// tests of the reader's time-order merge. No kernel, no root.
//
// What it simulates: K CPUs, each producing sched_switch-like records (the 64-byte ps_sched_switch_event
// plus the 4 bytes of padding the kernel adds with TIME|CPU|RAW, as a real recording holds them); R reader
// threads, reader r owning CPUs r, r+R, ... as ReaderPool deals them, each with its own BatchingConsumer
// driven only through the RecordConsumer interface, in the order ring_drain and ReaderPool call it. One
// thread plays every reader, in rounds: each reader begins a pass on each of its CPUs, then each CPU hands
// over the records it made since its previous pass, then the pass ends; every 100 ms each reader ticks.
//
// Times: BatchingConsumer derives the batches' watermarks from the clock it reads when a pass begins
// (CLOCK_MONOTONIC), so record times come from that clock too, or the watermarks would be wrong. A pass
// gives its records times spread over the stretch since the CPU's previous pass (with jitter; --ties: none,
// and the same times on every CPU), all before the clock read after the pass began, as in a real ring. So
// the records' rate is as fast as the generator runs (millions per second of trace time) unless --rate
// paces it, and --stall and --late are seconds of real time. The same arguments give the same records in
// the same per-CPU order; their times vary from run to run, and with them the batches that close on age
// and the watermark-only batches the worker writes when it is idle.
//
// Stress options:
//   --stall-reader I --stall S   once a quarter of the records are written, reader I makes no pass for S
//                                seconds; its CPUs go on making records, which reach the file after the
//                                other readers' batches of that time (and its watermark holds everyone's);
//   --late-cpu C --late S        CPU C comes online (gets its ring) S seconds after the start;
//   --ties                       equal times across CPUs;
//   --lost-every M               a kernel lost notice before every M-th record of each CPU.
// Each CPU makes N/K records (the remainder to the lowest CPUs), so the file holds exactly N.
//
// Output: the trace file(s) (rotation with --rotate-size), and one summary line on stderr.
#include <linux/perf_event.h>
#include <linux/types.h>  // events.h includes nothing: the includer provides __u32 and friends
#include <time.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "bpf/events.h"
#include "collector/cli/options.hpp"
#include "collector/format/batch_worker.hpp"
#include "collector/format/batching_consumer.hpp"
#include "collector/format/frame.hpp"
#include "collector/format/trace_writer.hpp"
#include "collector/format/zstd_codec.hpp"
#include "perfstream.pb.h"
#include "testing/builtin_schemas.hpp"

namespace perfstream {
namespace {

constexpr clockid_t kClock = CLOCK_MONOTONIC;  // the clock of the records, of the watermarks, of the header
constexpr std::size_t kRawBytes = sizeof(ps_sched_switch_event) + 4;  // the kernel pads RAW to 8 with TIME|CPU
constexpr std::chrono::milliseconds kTickInterval{100};               // record's default --flush-interval

std::uint64_t clock_ns() {
  timespec ts{};
  clock_gettime(kClock, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

struct Options {
  std::string output;
  std::uint64_t records = 0;
  unsigned cpus = 2;
  unsigned readers = 1;
  std::uint64_t rate = 0;  // records per second over all CPUs; 0: as fast as it goes
  std::uint64_t pass_records = 1024;
  std::optional<unsigned> stall_reader;
  std::uint64_t stall_ns = 0;
  std::optional<unsigned> late_cpu;
  std::uint64_t late_ns = 0;
  bool ties = false;
  std::uint64_t lost_every = 0;
  BatchLimits limits;
  int zstd_level = 1;
  std::uint64_t rotate_bytes = 0;
  std::uint64_t seed = 1;
  bool quiet = false;
};

std::uint64_t mix(std::uint64_t x) {  // splitmix64's finaliser: a cheap, good hash
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

struct Task {
  std::int32_t pid;
  std::int32_t prio;
  const char* comm;
};

// A few tasks switching on each CPU, as in a pipe ping-pong benchmark with some background: few distinct
// payloads, so the payload column compresses about as a real recording's does.
const Task kTasks[] = {
    {0, 120, "swapper/"},      {4211, 120, "sched-pipe"}, {4212, 120, "sched-pipe"}, {812, 120, "perfstream"},
    {57, 120, "kworker/u4:2"}, {1290, 120, "sshd"},       {15, 98, "migration/"},    {4213, 120, "bash"},
};
constexpr unsigned kTaskCount = sizeof(kTasks) / sizeof(kTasks[0]);

// One CPU: the records it has made and not yet handed to its reader (`pending`), and what it has handed.
class CpuStream {
 public:
  CpuStream(unsigned cpu, const Options& o, std::uint64_t quota) : cpu_(cpu), options_(o), quota_(quota) {}

  unsigned cpu() const { return cpu_; }
  bool online() const { return online_; }
  bool finished() const { return emitted_ == quota_; }
  std::uint64_t made() const { return emitted_ + pending_; }
  std::uint64_t pending() const { return pending_; }
  std::uint64_t emitted() const { return emitted_; }
  std::uint64_t lost() const { return lost_; }
  std::uint64_t drained_to() const { return drained_to_; }

  void go_online(std::uint64_t now) {
    online_ = true;
    drained_to_ = now;
  }
  // The CPU makes up to `n` more records (its ring holds them until its reader's next pass).
  void make(std::uint64_t n) { pending_ += std::min(n, quota_ - made()); }

  // The pass: hands `consumer` every pending record, with times in (drained_to, until], where `until` was
  // read after the pass began (so the consumer's claim, "every record before the pass began minus a
  // margin is drained", holds). The caller makes sure until - drained_to > pending.
  void drain(std::uint64_t until, RecordConsumer& consumer) {
    const std::uint64_t n = pending_;
    pass_raw_.assign(n, {});  // the pass's views stay valid until the next pass, as a ring's do
    const std::uint64_t step = n == 0 ? 0 : (until - drained_to_) / (n + 1);
    for (std::uint64_t j = 0; j < n; ++j) {
      std::uint64_t t = drained_to_ + (j + 1) * step;
      // Jitter below half a step keeps a CPU's times strictly increasing and below `until`.
      if (!options_.ties && step >= 2) t += mix(options_.seed ^ (std::uint64_t{cpu_} << 40) ^ emitted_) % (step / 2);
      if (options_.lost_every != 0 && (emitted_ + 1) % options_.lost_every == 0) {
        LostView lost;
        lost.lost = 1 + mix(options_.seed ^ (std::uint64_t{cpu_} << 40) ^ emitted_ ^ 0x1057) % 64;
        lost.time = t;
        lost.cpu = cpu_;
        lost.has_sample_id = true;
        lost_ += lost.lost;
        consumer.on_lost(cpu_, lost);
      }
      SampleView s;
      s.time = t;
      s.cpu = cpu_;
      s.raw = fill_payload(t, pass_raw_[j]);
      consumer.on_sample(cpu_, s);
      ++emitted_;
    }
    pending_ = 0;
    drained_to_ = until;
  }

 private:
  // A record of time t: its ts field holds t, as ps_output_stamped's does (the header says record times come
  // from it).
  std::span<const std::byte> fill_payload(std::uint64_t t, std::array<std::byte, kRawBytes>& raw) {
    const std::uint64_t h = mix(options_.seed ^ (std::uint64_t{cpu_} << 40) ^ emitted_ ^ 0x5eed);
    // Mostly the ping-pong (sched-pipe to its partner, or to and from the idle task), sometimes another
    // task; never to itself.
    unsigned next = current_ == 1 ? 2 : current_ == 2 ? (h & 1 ? 1 : 0) : 1;
    if ((h >> 4) % 8 == 0) next = (current_ + 1 + (h >> 8) % (kTaskCount - 1)) % kTaskCount;
    const Task& prev = kTasks[current_];
    const Task& to = kTasks[next];
    ps_sched_switch_event e{};
    e.kind = PS_EVENT_SCHED_SWITCH;
    e.prev_pid = prev.pid;
    e.prev_prio = prev.prio;
    e.next_pid = to.pid;
    e.next_prio = to.prio;
    e.prev_state = (h >> 12) % 16 == 0 ? 0x100 : (prev.pid == 0 ? 0 : 1);  // preempted, or sleeping
    std::strncpy(e.prev_comm, prev.comm, sizeof(e.prev_comm) - 1);
    std::strncpy(e.next_comm, to.comm, sizeof(e.next_comm) - 1);
    e.ts = t;
    std::memcpy(raw.data(), &e, sizeof(e));
    current_ = next;
    return raw;
  }

  unsigned cpu_;
  const Options& options_;
  std::uint64_t quota_;
  bool online_ = false;
  std::uint64_t drained_to_ = 0;
  std::uint64_t pending_ = 0;
  std::uint64_t emitted_ = 0;
  std::uint64_t lost_ = 0;
  unsigned current_ = 0;
  std::vector<std::array<std::byte, kRawBytes>> pass_raw_;  // the records of the latest pass
};

v1::TraceHeader make_header(const Options& o, const std::vector<std::string>& argv, std::uint64_t start_ns) {
  v1::TraceHeader h;
  h.set_format_version(kFormatVersion);  // as `record` writes: payloads in column groups
  h.set_perfstream_version(PERFSTREAM_VERSION);
  h.set_host("synthetic");
  h.set_kernel_release("synthetic");
  h.set_possible_cpus(o.cpus);
  const std::string all = o.cpus == 1 ? "0" : "0-" + std::to_string(o.cpus - 1);
  h.set_online_cpus(all);
  h.set_recorded_cpus(all);
  h.set_clock(static_cast<v1::Clock>(kClock + 1));
  h.set_start_time_ns(start_ns);
  timespec real{};
  clock_gettime(CLOCK_REALTIME, &real);
  h.set_start_realtime_ns(static_cast<std::uint64_t>(real.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(real.tv_nsec));
  h.set_sample_type(PERF_SAMPLE_RAW);  // as `record` asks for built-in probes: times come from their ts field
  h.set_record_time(v1::RECORD_TIME_EVENT_FIELD);
  h.set_record_time_field("ts");
  h.add_probes("sched_switch");
  *h.add_events() = testing::builtin_schema("sched_switch", PS_EVENT_SCHED_SWITCH);
  h.mutable_ring()->set_data_pages(128);
  h.mutable_ring()->set_page_size(4096);
  h.mutable_ring()->set_wakeup_bytes(128 * 1024);
  for (const auto& a : argv) h.add_command(a);
  h.set_recording_id("synthetic-" + std::to_string(mix(start_ns ^ o.seed)));
  h.set_batch_watermarks(true);
  return h;
}

struct FlagSpec {
  const char* name;
  char short_name;
  const char* value;  // nullptr: a flag without a value
  const char* help;
};

const FlagSpec kFlags[] = {
    {"output", 'o', "FILE", "the recording to write (required)"},
    {"records", 0, "N", "records in the recording, exactly (required)"},
    {"cpus", 0, "K", "CPUs (default 2)"},
    {"readers", 0, "R", "reader threads, reader r owning CPUs r, r+R, ... (default 1)"},
    {"rate", 0, "N", "at most N records per second, all CPUs together (default: as fast as it goes)"},
    {"pass-records", 0, "N", "records each CPU makes between two passes of its reader (default 1024)"},
    {"stall-reader", 0, "I", "after a quarter of the records, this reader makes no pass ..."},
    {"stall", 0, "TIME", "... for this long (500ms, 2s)"},
    {"late-cpu", 0, "C", "this CPU comes online late ..."},
    {"late", 0, "TIME", "... this long after the start"},
    {"ties", 0, nullptr, "equal times across CPUs (and no jitter)"},
    {"lost-every", 0, "M", "a kernel lost notice before every M-th record of each CPU"},
    {"batch-records", 0, "N", "a batch closes at N records (default 65536)"},
    {"batch-bytes", 0, "SIZE", "or at SIZE encoded bytes (default 1M)"},
    {"batch-age", 0, "TIME", "or when its first record is TIME old (default 1s)"},
    {"rotate-size", 0, "SIZE", "continue in FILE.1, FILE.2, ... past SIZE"},
    {"compression-level", 'z', "N", "zstd level (default 1)"},
    {"seed", 0, "N", "seed of the jitter and the payloads (default 1)"},
    {"quiet", 'q', nullptr, "no summary line"},
    {"help", 'h', nullptr, "this help"},
};

std::string usage() {
  std::string out = "usage: perfstream_make_recording -o FILE --records N [options]\n";
  for (const auto& f : kFlags) {
    std::string left = std::string("  ") + (f.short_name ? std::string("-") + f.short_name + ", " : "    ") + "--" + f.name;
    if (f.value != nullptr) left += std::string(" ") + f.value;
    out += left + std::string(left.size() < 30 ? 30 - left.size() : 1, ' ') + f.help + "\n";
  }
  return out;
}

// --name VALUE, --name=VALUE, -n VALUE; the last of a repeated flag counts.
class Args {
 public:
  static Result<Args> parse(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
      std::string arg = argv[i];
      std::optional<std::string> inline_value;
      const FlagSpec* spec = nullptr;
      if (arg.rfind("--", 0) == 0) {
        if (auto eq = arg.find('='); eq != std::string::npos) {
          inline_value = arg.substr(eq + 1);
          arg.resize(eq);
        }
        for (const auto& f : kFlags) {
          if (arg.substr(2) == f.name) spec = &f;
        }
      } else if (arg.size() == 2 && arg[0] == '-') {
        for (const auto& f : kFlags) {
          if (f.short_name != 0 && arg[1] == f.short_name) spec = &f;
        }
      }
      if (spec == nullptr) return Error("unknown argument '" + arg + "'");
      if (spec->value == nullptr) {
        if (inline_value) return Error("--" + std::string(spec->name) + " takes no value");
        a.given_[spec->name] = "";
      } else if (inline_value) {
        a.given_[spec->name] = *inline_value;
      } else if (i + 1 < argc) {
        a.given_[spec->name] = argv[++i];
      } else {
        return Error("--" + std::string(spec->name) + " needs a value (" + spec->value + ")");
      }
    }
    return a;
  }
  bool has(const std::string& name) const { return given_.count(name) != 0; }
  std::optional<std::string> value(const std::string& name) const {
    auto it = given_.find(name);
    if (it == given_.end()) return std::nullopt;
    return it->second;
  }

 private:
  std::map<std::string, std::string> given_;
};

Result<Options> parse_options(const Args& p) {
  Options o;
  auto count = [&](const char* name, std::uint64_t& into) -> Status {
    if (auto v = p.value(name)) {
      auto n = parse_count(name, *v);
      if (!n) return n.error();
      into = *n;
    }
    return {};
  };
  auto bytes = [&](const char* name, std::uint64_t& into) -> Status {
    if (auto v = p.value(name)) {
      auto n = parse_bytes(name, *v);
      if (!n) return n.error();
      into = *n;
    }
    return {};
  };
  auto millis = [&](const char* name, std::uint64_t& into_ms) -> Status {
    if (auto v = p.value(name)) {
      auto ms = parse_duration_ms(name, *v);
      if (!ms) return ms.error();
      into_ms = *ms;
    }
    return {};
  };
  std::uint64_t cpus = o.cpus, readers = o.readers, batch_records = o.limits.max_records;
  std::uint64_t batch_bytes = o.limits.max_bytes, batch_age_ms = static_cast<std::uint64_t>(o.limits.max_age.count());
  std::uint64_t level = o.zstd_level, stall_reader = 0, late_cpu = 0, stall_ms = 0, late_ms = 0;
  for (Status st : {count("records", o.records), count("cpus", cpus), count("readers", readers), count("rate", o.rate),
                    count("pass-records", o.pass_records), count("stall-reader", stall_reader), millis("stall", stall_ms),
                    count("late-cpu", late_cpu), millis("late", late_ms), count("lost-every", o.lost_every),
                    count("batch-records", batch_records), bytes("batch-bytes", batch_bytes),
                    millis("batch-age", batch_age_ms), bytes("rotate-size", o.rotate_bytes), count("seed", o.seed),
                    count("compression-level", level)}) {
    if (!st) return st.error();
  }
  o.output = p.value("output").value_or("");
  if (o.output.empty()) return Error("-o FILE is required");
  if (o.records == 0) return Error("--records N is required (N > 0)");
  if (cpus == 0 || cpus > 1024) return Error("--cpus: between 1 and 1024");
  if (readers == 0 || readers > cpus) return Error("--readers: between 1 and --cpus");
  if (o.pass_records == 0 || o.pass_records > 1'000'000) return Error("--pass-records: between 1 and 1000000");
  if (batch_records == 0 || batch_records > 0xffffffffu || batch_bytes == 0) return Error("batch limits must be above 0");
  if (level == 0 || level > 19) return Error("-z: 1 to 19");
  o.cpus = static_cast<unsigned>(cpus);
  o.readers = static_cast<unsigned>(readers);
  o.limits.max_records = static_cast<std::uint32_t>(batch_records);
  o.limits.max_bytes = batch_bytes;
  o.limits.max_age = std::chrono::milliseconds(batch_age_ms);
  o.zstd_level = static_cast<int>(level);
  o.stall_ns = stall_ms * 1'000'000ull;
  o.late_ns = late_ms * 1'000'000ull;
  if (p.has("stall-reader") != p.has("stall")) return Error("--stall-reader and --stall go together");
  if (p.has("stall-reader")) {
    if (stall_reader >= o.readers) return Error("--stall-reader: a reader from 0 to --readers - 1");
    o.stall_reader = static_cast<unsigned>(stall_reader);
  }
  if (p.has("late-cpu") != p.has("late")) return Error("--late-cpu and --late go together");
  if (p.has("late-cpu")) {
    if (late_cpu >= o.cpus) return Error("--late-cpu: a CPU from 0 to --cpus - 1");
    o.late_cpu = static_cast<unsigned>(late_cpu);
  }
  o.ties = p.has("ties");
  o.quiet = p.has("quiet");
  return o;
}

int run(const Options& o, const std::vector<std::string>& argv) {
  const auto started = std::chrono::steady_clock::now();
  const std::uint64_t start_ns = clock_ns();

  auto compressor = ZstdCompressor::create(o.zstd_level);
  if (!compressor) {
    std::cerr << "perfstream_make_recording: " << compressor.error().message() << "\n";
    return 1;
  }
  TraceWriterOptions writer_options;
  writer_options.path = o.output;
  writer_options.rotate_bytes = o.rotate_bytes;
  const v1::TraceHeader header = make_header(o, argv, start_ns);
  const auto layout = std::make_shared<const ColumnarLayout>(ColumnarLayout::for_header(header));
  auto writer = TraceFileWriter::create(writer_options, header);
  if (!writer) {
    std::cerr << "perfstream_make_recording: " << writer.error().message() << "\n";
    return 1;
  }
  PipelineCounters counters;
  BatchWorker worker(std::move(*compressor), **writer, counters);
  std::vector<std::unique_ptr<BatchingConsumer>> consumers;
  for (unsigned r = 0; r < o.readers; ++r) consumers.push_back(std::make_unique<BatchingConsumer>(o.limits, worker, kClock, layout));

  std::vector<CpuStream> cpus;
  cpus.reserve(o.cpus);
  for (unsigned c = 0; c < o.cpus; ++c) cpus.emplace_back(c, o, o.records / o.cpus + (c < o.records % o.cpus ? 1 : 0));
  auto owner = [&](const CpuStream& s) -> RecordConsumer& { return *consumers[s.cpu() % o.readers]; };
  for (auto& s : cpus) {
    if (o.late_cpu == s.cpu()) continue;
    s.go_online(start_ns);
    owner(s).on_ring_opened(s.cpu());
  }

  std::uint64_t stall_until = 0;  // clock_ns() while the stalled reader makes no pass; 0: not (yet) stalled
  bool stalled_once = false;
  auto last_tick = std::chrono::steady_clock::now();
  std::vector<CpuStream*> draining;
  for (;;) {
    std::uint64_t made = 0, emitted = 0;
    bool finished = true;
    for (const auto& s : cpus) {
      made += s.made();
      emitted += s.emitted();
      finished = finished && s.finished();
    }
    if (finished) break;
    if (o.rate != 0) {  // pace: `made` records may exist made/rate seconds after the start
      std::this_thread::sleep_until(started + std::chrono::nanoseconds(made * 1'000'000'000ull / o.rate));
    }
    const std::uint64_t now = clock_ns();
    if (o.stall_reader && !stalled_once && emitted >= o.records / 4) {
      stalled_once = true;
      stall_until = now + o.stall_ns;
    }
    const bool stalling = stall_until != 0 && now < stall_until;
    auto reader_runs = [&](unsigned reader) { return !(stalling && o.stall_reader == reader); };

    // The CPUs make records; the readers that run begin their passes, read the clock, hand the records
    // over with times before it, and end their passes.
    draining.clear();
    bool anything = false;
    for (auto& s : cpus) {
      if (!s.online() && o.late_cpu == s.cpu() && now >= start_ns + o.late_ns) {
        s.go_online(now);
        owner(s).on_ring_opened(s.cpu());
      }
      if (!s.online()) continue;
      const std::uint64_t before = s.made();
      s.make(o.pass_records);
      anything = anything || s.made() != before;
      if (reader_runs(s.cpu() % o.readers)) {
        owner(s).on_pass_begin(s.cpu());
        draining.push_back(&s);
        anything = anything || s.pending() != 0;
      }
    }
    std::uint64_t until = clock_ns();
    for (;;) {  // every pending record needs a distinct nanosecond in (drained_to, until]
      bool room = true;
      for (const CpuStream* s : draining) room = room && until - s->drained_to() > s->pending();
      if (room) break;
      until = clock_ns();
    }
    for (CpuStream* s : draining) {
      s->drain(until, owner(*s));
      owner(*s).on_pass_end(s->cpu());
    }
    if (std::chrono::steady_clock::now() - last_tick >= kTickInterval) {
      last_tick = std::chrono::steady_clock::now();
      for (unsigned r = 0; r < o.readers; ++r) {
        if (reader_runs(r)) consumers[r]->on_tick();
      }
    }
    if (!anything) std::this_thread::sleep_for(std::chrono::milliseconds(1));  // a stall or a late CPU to wait for
  }
  for (auto& s : cpus) {
    if (s.online()) owner(s).on_ring_closed(s.cpu());
  }
  for (auto& c : consumers) c->on_stop();
  worker.finish();

  v1::TraceTrailer trailer;
  const std::uint64_t end_ns = clock_ns();
  std::uint64_t lost = 0;
  for (const auto& s : cpus) {
    auto* t = trailer.add_cpus();
    t->set_cpu(s.cpu());
    t->set_samples(s.emitted());
    t->set_sample_bytes(s.emitted() * kRawBytes);
    t->set_lost(s.lost());
    t->set_ring_size(128 * 4096);
    lost += s.lost();
  }
  trailer.set_end_time_ns(end_ns);
  Status closed = (*writer)->close(trailer);
  std::string error;
  if (auto e = worker.first_error()) error = e->message();
  else if (!closed) error = closed.error().message();
  if (!error.empty()) {
    std::cerr << "perfstream_make_recording: " << error << "\n";
    return 1;
  }
  if (!o.quiet) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::cerr << "perfstream_make_recording: " << counters.records.load() << " records, " << lost << " lost, in "
              << counters.batches.load() << " batches, " << (*writer)->bytes_written() << " bytes in "
              << (*writer)->pieces() << " file(s), written in " << seconds << " s ("
              << counters.records.load() / seconds / 1e6 << " M records/s)\n";
  }
  return 0;
}

}  // namespace
}  // namespace perfstream

int main(int argc, char** argv) {
  auto args = perfstream::Args::parse(argc, argv);
  if (!args) {
    std::cerr << "perfstream_make_recording: " << args.error().message() << " (see --help)\n";
    return 2;
  }
  if (args->has("help")) {
    std::cout << perfstream::usage();
    return 0;
  }
  auto options = perfstream::parse_options(*args);
  if (!options) {
    std::cerr << "perfstream_make_recording: " << options.error().message() << "\n";
    return 2;
  }
  return perfstream::run(*options, std::vector<std::string>(argv, argv + argc));
}
