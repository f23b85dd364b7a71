// perfstream_make_recording: writes a synthetic sched_switch recording of exactly N records through the
// recorder's own write path (BatchingConsumer -> BatchWorker -> TraceFileWriter), for benchmarks and for
// tests of the reader's time-order merge. No kernel, no root; the same arguments give the same records.
//
// What it simulates: K CPUs, each producing sched_switch-like records (the 64-byte ps_sched_switch_event
// plus the 4 bytes of padding the kernel adds with TIME|CPU|RAW, as a real recording holds them) at times
// that strictly increase per CPU; R reader threads, each owning the CPUs cpu % R == r as ReaderPool deals
// them, and each with its own BatchingConsumer. Trace time is cut into passes (--pass, 10 ms): in each pass
// every reader drains its CPUs one after the other, in CPU order, ending each with on_pass_end. One thread
// runs all readers in turn, so the interleaving of their batches in the file is deterministic; batches
// close on size (--batch-records, --batch-bytes), never on age, since the simulated clock is not the real
// one. The stress options bend this:
//   --stall-reader I --stall S   reader I drains each pass S seconds of trace time after the others, so its
//                                batches reach the file that late (its rings are assumed to hold it all);
//   --late-cpu C --late S        CPU C records nothing for the first S seconds (it comes online then);
//   --ties                       every CPU uses the same time grid, so records of different CPUs share
//                                exact times (and no jitter within a CPU);
//   --lost-every M               a kernel lost notice before every M-th record of each CPU.
// Each CPU's share of N is fixed up front (a late CPU gets fewer), so the file holds exactly N records.
//
// Output: the trace file(s) (rotation with --rotate-size), and one summary line on stderr.
#include <linux/perf_event.h>
#include <linux/types.h>  // events.h includes nothing: the includer provides __u32 and friends

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "collector/cli/options.hpp"
#include "collector/format/batch_worker.hpp"
#include "collector/format/batching_consumer.hpp"
#include "collector/format/trace_writer.hpp"
#include "collector/format/zstd_codec.hpp"
#include "bpf/events.h"
#include "perfstream.pb.h"
#include "testing/builtin_schemas.hpp"

namespace perfstream {
namespace {

constexpr std::uint64_t kStartNs = 1'000'000'000'000ull;  // an arbitrary CLOCK_MONOTONIC start: 1000 s
constexpr std::size_t kRawBytes = sizeof(ps_sched_switch_event) + 4;  // the kernel pads RAW to 8 with TIME|CPU

struct Options {
  std::string output;
  std::uint64_t records = 0;
  unsigned cpus = 2;
  unsigned readers = 1;
  std::uint64_t rate = 200'000;  // records per second of trace time, over all CPUs
  std::uint64_t pass_ns = 10'000'000;
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

// One CPU's record stream: slot s of this CPU is at kStartNs + s * interval (+ jitter), from first_slot for
// `quota` slots.
class CpuStream {
 public:
  CpuStream(unsigned cpu, const Options& o, std::uint64_t interval, std::uint64_t first_slot, std::uint64_t quota)
      : cpu_(cpu), options_(o), interval_(interval), slot_(first_slot), end_slot_(first_slot + quota),
        current_(0) {
    std::memset(raw_, 0, sizeof(raw_));
  }

  bool done() const { return slot_ == end_slot_; }
  std::uint64_t emitted() const { return emitted_; }
  std::uint64_t lost() const { return lost_; }
  std::uint64_t last_time() const { return last_time_; }

  // Hands `consumer` every record (and lost notice) before `until`, then ends the pass.
  void drain_until(std::uint64_t until, RecordConsumer& consumer) {
    while (!done()) {
      const std::uint64_t t = time_of(slot_);
      if (t >= until) break;
      if (options_.lost_every != 0 && (emitted_ + 1) % options_.lost_every == 0) {
        LostView lost;
        lost.lost = 1 + mix(options_.seed ^ (cpu_ * 7919 + slot_)) % 64;
        lost.time = t;
        lost.cpu = cpu_;
        lost.has_sample_id = true;
        lost_ += lost.lost;
        consumer.on_lost(cpu_, lost);
      }
      SampleView s;
      s.time = t;
      s.cpu = cpu_;
      s.raw = fill_payload();
      consumer.on_sample(cpu_, s);
      last_time_ = t;
      ++emitted_;
      ++slot_;
    }
    consumer.on_pass_end(cpu_);
  }

 private:
  std::uint64_t time_of(std::uint64_t slot) const {
    std::uint64_t t = kStartNs + slot * interval_;
    // Jitter below half an interval keeps a CPU's times strictly increasing and makes CPUs differ.
    if (!options_.ties && interval_ >= 2) t += mix(options_.seed ^ (std::uint64_t{cpu_} << 40) ^ slot) % (interval_ / 2);
    return t;
  }

  std::span<const std::byte> fill_payload() {
    const std::uint64_t h = mix(options_.seed ^ (std::uint64_t{cpu_} << 40) ^ slot_ ^ 0x5eed);
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
    std::memcpy(raw_, &e, sizeof(e));
    current_ = next;
    return std::span<const std::byte>(raw_, kRawBytes);
  }

  unsigned cpu_;
  const Options& options_;
  std::uint64_t interval_;
  std::uint64_t slot_;
  std::uint64_t end_slot_;
  unsigned current_;
  std::uint64_t emitted_ = 0;
  std::uint64_t lost_ = 0;
  std::uint64_t last_time_ = 0;
  std::byte raw_[kRawBytes];
};

v1::TraceHeader make_header(const Options& o, const std::vector<std::string>& argv) {
  v1::TraceHeader h;
  h.set_format_version(1);
  h.set_perfstream_version(PERFSTREAM_VERSION);
  h.set_host("synthetic");
  h.set_kernel_release("synthetic");
  h.set_possible_cpus(o.cpus);
  const std::string all = o.cpus == 1 ? "0" : "0-" + std::to_string(o.cpus - 1);
  h.set_online_cpus(all);
  h.set_recorded_cpus(all);
  h.set_clock(v1::MONOTONIC);
  h.set_start_time_ns(kStartNs);
  h.set_start_realtime_ns(1'700'000'000'000'000'000ull);
  h.set_sample_type(PERF_SAMPLE_TIME | PERF_SAMPLE_CPU | PERF_SAMPLE_RAW);
  h.add_probes("sched_switch");
  *h.add_events() = testing::builtin_schema("sched_switch", PS_EVENT_SCHED_SWITCH);
  h.mutable_ring()->set_data_pages(128);
  h.mutable_ring()->set_page_size(4096);
  h.mutable_ring()->set_wakeup_bytes(128 * 1024);
  for (const auto& a : argv) h.add_command(a);
  // Deterministic, and different for different arguments: the same command makes the same file.
  std::uint64_t id = o.seed;
  for (const auto& a : argv) {
    for (char ch : a) id = mix(id ^ static_cast<unsigned char>(ch));
  }
  h.set_recording_id("synthetic-" + std::to_string(id));
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
    {"rate", 0, "N", "records per second of trace time, all CPUs together (default 200000)"},
    {"pass", 0, "TIME", "trace time one reader pass drains (default 10ms)"},
    {"stall-reader", 0, "I", "this reader's batches come late ..."},
    {"stall", 0, "TIME", "... by this much trace time"},
    {"late-cpu", 0, "C", "this CPU comes online late ..."},
    {"late", 0, "TIME", "... after this much trace time"},
    {"ties", 0, nullptr, "every CPU on the same time grid: equal times across CPUs"},
    {"lost-every", 0, "M", "a kernel lost notice before every M-th record of each CPU"},
    {"batch-records", 0, "N", "a batch closes at N records (default 65536)"},
    {"batch-bytes", 0, "SIZE", "or at SIZE encoded bytes (default 1M)"},
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
  auto seconds = [&](const char* name, std::uint64_t& into_ns) -> Status {
    if (auto v = p.value(name)) {
      auto ms = parse_duration_ms(name, *v);
      if (!ms) return ms.error();
      into_ns = *ms * 1'000'000ull;
    }
    return {};
  };
  std::uint64_t cpus = o.cpus, readers = o.readers, batch_records = o.limits.max_records;
  std::uint64_t batch_bytes = o.limits.max_bytes, level = o.zstd_level, stall_reader = 0, late_cpu = 0;
  for (Status st : {count("records", o.records), count("cpus", cpus), count("readers", readers), count("rate", o.rate),
                    seconds("pass", o.pass_ns), count("stall-reader", stall_reader), seconds("stall", o.stall_ns),
                    count("late-cpu", late_cpu), seconds("late", o.late_ns), count("lost-every", o.lost_every),
                    count("batch-records", batch_records), count("seed", o.seed), count("compression-level", level)}) {
    if (!st) return st.error();
  }
  if (auto v = p.value("batch-bytes")) {
    auto b = parse_bytes("batch-bytes", *v);
    if (!b) return b.error();
    batch_bytes = *b;
  }
  if (auto v = p.value("rotate-size")) {
    auto b = parse_bytes("rotate-size", *v);
    if (!b) return b.error();
    o.rotate_bytes = *b;
  }
  o.output = p.value("output").value_or("");
  if (o.output.empty()) return Error("-o FILE is required");
  if (o.records == 0) return Error("--records N is required (N > 0)");
  if (cpus == 0 || cpus > 1024) return Error("--cpus: between 1 and 1024");
  if (readers == 0 || readers > cpus) return Error("--readers: between 1 and --cpus");
  if (o.rate == 0 || o.pass_ns == 0) return Error("--rate and --pass must be above 0");
  if (batch_records == 0 || batch_records > 0xffffffffu || batch_bytes == 0) return Error("batch limits must be above 0");
  if (level > 19) return Error("-z: 1 to 19");
  o.cpus = static_cast<unsigned>(cpus);
  o.readers = static_cast<unsigned>(readers);
  o.limits.max_records = static_cast<std::uint32_t>(batch_records);
  o.limits.max_bytes = batch_bytes;
  o.limits.max_age = std::chrono::hours(24 * 365);  // only size closes a batch: the clock here is simulated
  o.zstd_level = static_cast<int>(level);
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
  // Every CPU records on a grid of `interval`; a late CPU starts `late_slots` into it. Shares of N: equal
  // slots for every CPU's online time, the remainder to the lowest CPUs.
  const std::uint64_t interval = std::max<std::uint64_t>(1, 1'000'000'000ull * o.cpus / o.rate);
  std::vector<std::uint64_t> first_slot(o.cpus, 0);
  if (o.late_cpu) first_slot[*o.late_cpu] = o.late_ns / interval;
  std::uint64_t slots_sum = o.records;
  for (auto s : first_slot) slots_sum += s;
  std::uint64_t end_slot = slots_sum / o.cpus, extra = slots_sum % o.cpus;
  std::vector<CpuStream> streams;
  streams.reserve(o.cpus);
  for (unsigned c = 0; c < o.cpus; ++c) {
    const std::uint64_t end = end_slot + (c < extra ? 1 : 0);
    const std::uint64_t first = std::min(first_slot[c], end);  // a CPU late past the end records nothing
    streams.emplace_back(c, o, interval, first, end - first);
  }

  auto compressor = ZstdCompressor::create(o.zstd_level);
  if (!compressor) {
    std::cerr << "perfstream_make_recording: " << compressor.error().message() << "\n";
    return 1;
  }
  TraceWriterOptions writer_options;
  writer_options.path = o.output;
  writer_options.rotate_bytes = o.rotate_bytes;
  auto writer = TraceFileWriter::create(writer_options, make_header(o, argv));
  if (!writer) {
    std::cerr << "perfstream_make_recording: " << writer.error().message() << "\n";
    return 1;
  }
  PipelineCounters counters;
  BatchWorker worker(std::move(*compressor), **writer, counters);
  std::vector<std::unique_ptr<BatchingConsumer>> consumers;
  for (unsigned r = 0; r < o.readers; ++r) consumers.push_back(std::make_unique<BatchingConsumer>(o.limits, worker, counters));

  // Pass p covers trace time [kStartNs + p * pass, + pass). A stalled reader drains pass p - lag when the
  // others drain pass p, and catches up after them at the end.
  const std::uint64_t lag = o.stall_reader ? (o.stall_ns + o.pass_ns - 1) / o.pass_ns : 0;
  auto all_done = [&] {
    for (const auto& s : streams) {
      if (!s.done()) return false;
    }
    return true;
  };
  for (std::uint64_t pass = 0; !all_done(); ++pass) {
    for (unsigned r = 0; r < o.readers; ++r) {
      const std::uint64_t behind = o.stall_reader == r ? lag : 0;
      if (pass < behind) continue;
      const std::uint64_t until = kStartNs + (pass - behind + 1) * o.pass_ns;
      for (unsigned c = r; c < o.cpus; c += o.readers) streams[c].drain_until(until, *consumers[r]);
    }
  }
  for (auto& c : consumers) c->on_stop();
  worker.finish();

  v1::TraceTrailer trailer;
  std::uint64_t end_time = kStartNs, lost = 0;
  for (unsigned c = 0; c < o.cpus; ++c) {
    auto* t = trailer.add_cpus();
    t->set_cpu(c);
    t->set_samples(streams[c].emitted());
    t->set_sample_bytes(streams[c].emitted() * kRawBytes);
    t->set_lost(streams[c].lost());
    t->set_ring_size(128 * 4096);
    end_time = std::max(end_time, streams[c].last_time() + 1);
    lost += streams[c].lost();
  }
  trailer.set_end_time_ns(end_time);
  Status closed = (*writer)->close(trailer);
  std::string error = worker.first_error();
  if (error.empty() && !closed) error = closed.error().message();
  if (!error.empty()) {
    std::cerr << "perfstream_make_recording: " << error << "\n";
    return 1;
  }
  if (!o.quiet) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::cerr << "perfstream_make_recording: " << counters.records.load() << " records, " << lost << " lost in "
              << counters.batches.load() << " batches, " << (*writer)->bytes_written() << " bytes in "
              << (*writer)->pieces() << " file(s), " << (end_time - kStartNs) / 1e9 << " s of trace time, written in "
              << seconds << " s\n";
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
