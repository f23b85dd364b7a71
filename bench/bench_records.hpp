// Synthetic records for the benchmarks: what perfstream's own BPF programs write, without a kernel.
//
// Two corpora, both as the reader sees them after decoding (SampleView: time, CPU, raw bytes with the
// kernel's zero padding to keep each sample 8-byte aligned):
//   - openat: struct ps_openat_event headers and paths with shared prefixes (the library, /proc, /etc and
//     source-tree paths a build opens), a few processes, two CPUs;
//   - loadgen: struct ps_loadgen_event of a fixed size (the "64-byte records"): header, a per-CPU
//     sequence number, zeroed payload, as bpf/loadgen.bpf.c emits them.
// Times advance by small deltas per CPU; the CPU changes in runs, the way one reader thread hands its
// consumer a pass over CPU 0's ring, then one over CPU 1's, so deltas jump back and forth between runs.
//
// Also: a FakeKernelRing filled with such records (the kernel's layout), and one full batch built the way
// BatchingConsumer builds it (closed at BatchLimits' default 1 MiB).
// Everything is deterministic (fixed seeds), so runs compare. Corpora are made larger than one batch
// (kCorpusRecords), so that no batch holds the same record twice and zstd finds only the repetition a real
// trace has.
#pragma once

#include <linux/perf_event.h>
#include <linux/types.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <random>
#include <stdexcept>
#include <span>
#include <string>
#include <vector>

#include "bpf/events.h"
#include "collector/decode/payload_schema.hpp"
#include "collector/decode/record_decoder.hpp"
#include "collector/format/batch_encoder.hpp"
#include "collector/format/batching_consumer.hpp"
#include "collector/format/columnar_payloads.hpp"
#include "collector/kernel/perf_ring.hpp"
#include "testing/fake_ring.hpp"

namespace perfstream::bench {

using Bytes = std::vector<std::byte>;

constexpr std::size_t kCorpusRecords = 32768;

enum class CorpusKind : int { Openat = 0, Loadgen64 = 1 };

inline const char* corpus_name(CorpusKind kind) { return kind == CorpusKind::Openat ? "openat" : "loadgen64"; }

// One corpus of samples. `emitted` holds what the BPF program passed to bpf_perf_event_output (what a fake
// ring pads and stores); `samples[i].raw` points into `arena`, where the raw areas as the decoder returns
// them lie back to back, as they do in a ring.
struct Corpus {
  std::vector<Bytes> emitted;
  Bytes arena;
  std::vector<SampleView> samples;
  std::uint64_t payload_bytes = 0;  // sum of padded sizes

  std::size_t size() const { return samples.size(); }
};

// The raw area the kernel stores for `emitted`: zero-padded so that 4 (the raw size field) + raw is 8-aligned.
inline Bytes kernel_padded(const Bytes& emitted) {
  Bytes out = emitted;
  out.resize(((emitted.size() + 4 + 7) & ~std::size_t{7}) - 4);
  return out;
}

namespace detail {

inline void finish_corpus(Corpus& c) {
  std::vector<std::size_t> offsets;
  for (const Bytes& e : c.emitted) {
    offsets.push_back(c.arena.size());
    const Bytes padded = kernel_padded(e);
    c.arena.insert(c.arena.end(), padded.begin(), padded.end());
  }
  offsets.push_back(c.arena.size());
  // samples[] already has times and CPUs; point raw at the arena, which no longer grows.
  for (std::size_t i = 0; i < c.samples.size(); ++i) {
    c.samples[i].raw = std::span<const std::byte>(c.arena).subspan(offsets[i], offsets[i + 1] - offsets[i]);
  }
  c.payload_bytes = c.arena.size();
}

// Per-CPU clocks advancing by small deltas, switching CPU every `run` records.
class Timeline {
 public:
  Timeline(std::uint32_t seed, std::uint32_t min_delta, std::uint32_t max_delta, std::size_t run)
      : rng_(seed), delta_(min_delta, max_delta), run_(run) {}

  std::pair<std::uint64_t, std::uint32_t> next() {
    if (in_run_ == run_) {
      in_run_ = 0;
      cpu_ ^= 1;
    }
    ++in_run_;
    clock_[cpu_] += delta_(rng_);
    return {clock_[cpu_], cpu_};
  }
  std::mt19937& rng() { return rng_; }

 private:
  std::mt19937 rng_;
  std::uniform_int_distribution<std::uint32_t> delta_;
  std::size_t run_;
  std::size_t in_run_ = 0;
  std::uint32_t cpu_ = 0;
  std::uint64_t clock_[2] = {1'000'000'000'000ull, 1'000'000'003'000ull};
};

}  // namespace detail

// openat(2) calls as bpf/openat.bpf.c records them: the 48-byte header, then the path with its NUL.
inline Corpus make_openat_corpus(std::size_t n, std::uint32_t seed = 1) {
  static const char* const kDirs[] = {
      "/usr/lib/x86_64-linux-gnu/", "/usr/include/c++/12/bits/", "/usr/include/x86_64-linux-gnu/bits/",
      "/proc/self/", "/etc/", "/home/build/src/perfstream/collector/format/",
      "/home/build/src/perfstream/collector/read/", "/sys/fs/cgroup/system.slice/", "/tmp/"};
  static const char* const kFiles[] = {"libc.so.6", "libstdc++.so.6", "stl_vector.h", "types.h", "status",
                                       "ld.so.cache", "batch_encoder.cpp", "ring_drain.hpp", "cpu.max",
                                       "ccA1b2C3.s", "locale.alias", "stat", "memory.current", "maps"};
  static const char* const kComms[] = {"make", "cc1plus", "bash", "systemd-journal", "ld"};
  struct Process {
    std::uint32_t pid;
    const char* comm;
  };
  const Process processes[] = {{4211, kComms[0]}, {4302, kComms[1]}, {4303, kComms[1]}, {977, kComms[3]},
                               {4400, kComms[2]}, {4412, kComms[4]}};

  Corpus c;
  detail::Timeline timeline(seed, 300, 6000, 192);
  std::uniform_int_distribution<std::size_t> pick_dir(0, std::size(kDirs) - 1);
  std::uniform_int_distribution<std::size_t> pick_file(0, std::size(kFiles) - 1);
  std::uniform_int_distribution<std::size_t> pick_proc(0, std::size(processes) - 1);
  std::uniform_int_distribution<int> pick_num(0, 99);
  for (std::size_t i = 0; i < n; ++i) {
    auto [time, cpu] = timeline.next();
    const Process& proc = processes[pick_proc(timeline.rng())];
    std::string path = std::string(kDirs[pick_dir(timeline.rng())]) + kFiles[pick_file(timeline.rng())];
    if (pick_num(timeline.rng()) < 20) path += "." + std::to_string(pick_num(timeline.rng()));

    ps_openat_event event{};
    event.kind = PS_EVENT_OPENAT;
    event.pid = proc.pid;
    event.tid = proc.pid + (pick_num(timeline.rng()) < 10 ? 1 : 0);
    event.dfd = -100;  // AT_FDCWD
    event.flags = 0x80000;  // O_RDONLY | O_CLOEXEC
    std::strncpy(event.comm, proc.comm, sizeof(event.comm) - 1);
    event.path_len = static_cast<__u32>(path.size() + 1);
    event.ts = time;  // ps_output_stamped: the record's time
    std::memcpy(event.path, path.c_str(), path.size() + 1);

    Bytes emitted(PS_OPENAT_HEADER_SIZE + event.path_len);
    std::memcpy(emitted.data(), &event, emitted.size());
    c.emitted.push_back(std::move(emitted));
    c.samples.push_back(SampleView{time, cpu, proc.pid, event.tid, 0, {}});
  }
  detail::finish_corpus(c);
  return c;
}

// bpf/loadgen.bpf.c records of `record_size` bytes (header included): a burst producer, so deltas are tiny.
inline Corpus make_loadgen_corpus(std::size_t n, std::size_t record_size = 64, std::uint32_t seed = 2) {
  Corpus c;
  detail::Timeline timeline(seed, 40, 120, 2048);
  std::uint64_t seq[2] = {0, 0};
  for (std::size_t i = 0; i < n; ++i) {
    auto [time, cpu] = timeline.next();
    Bytes emitted(record_size);
    ps_loadgen_event header{};
    header.kind = PS_EVENT_LOADGEN;
    header.payload_len = static_cast<__u32>(record_size - PS_LOADGEN_HEADER_SIZE);
    header.seq = seq[cpu]++;
    header.cpu = cpu;
    header.pid = 5120;
    header.ts = time;
    std::memcpy(emitted.data(), &header, PS_LOADGEN_HEADER_SIZE);
    c.emitted.push_back(std::move(emitted));
    c.samples.push_back(SampleView{time, cpu, 5120, 5120, 0, {}});
  }
  detail::finish_corpus(c);
  return c;
}

inline Corpus make_corpus(CorpusKind kind, std::size_t n) {
  return kind == CorpusKind::Openat ? make_openat_corpus(n) : make_loadgen_corpus(n);
}

// A fake kernel ring filled once with samples, as the kernel lays them out, and the PerfRing reading it.
// Samples are built from `emitted(i)` (the bytes the BPF program emitted) and `time_cpu(i)` (a pair of time
// and CPU), i = 0, 1, ..., from ring position `start` until the next one does not fit.
// Draining never changes the data area, so rewind() (data_tail back to `start`) makes the ring hold all its
// records again: a benchmark refills the ring with one store instead of rewriting it.
class FullRing {
 public:
  template <typename Emitted, typename TimeCpu>
  FullRing(std::size_t data_size, std::uint64_t start, Emitted emitted, TimeCpu time_cpu)
      : fake_(data_size), start_(start) {
    fake_.set_position(start);
    for (;; ++records_) {
      const auto [time, cpu] = time_cpu(records_);
      if (!fake_.write_record(testing::FakeKernelRing::sample(time, cpu, emitted(records_)))) break;
    }
    bytes_ = fake_.head() - start_;
    auto ring = PerfRing::over(fake_.base(), fake_.mapping_size());
    if (!ring) throw std::runtime_error(ring.error().message());
    ring_.emplace(std::move(ring).value());
  }

  void rewind() { __atomic_store_n(&fake_.meta()->data_tail, start_, __ATOMIC_RELEASE); }

  PerfRing& ring() { return *ring_; }
  std::size_t records() const { return records_; }
  std::uint64_t bytes() const { return bytes_; }

 private:
  testing::FakeKernelRing fake_;
  std::optional<PerfRing> ring_;
  std::uint64_t start_ = 0;
  std::size_t records_ = 0;
  std::uint64_t bytes_ = 0;
};

// One batch of `corpus` records (cycled), closed where BatchingConsumer closes it with `limits`: the encoded
// Batch message and its record count.
struct EncodedCorpusBatch {
  std::string encoded;
  std::uint32_t records = 0;
};

// The column plans `record` hands BatchingConsumer for the corpora's probes (openat, loadgen): format 2
// batches. Format 1: none, every payload whole (the batches of trace format version 1).
inline std::shared_ptr<const ColumnarLayout> corpus_layout(std::int64_t format) {
  if (format == 1) return nullptr;
  v1::TraceHeader h;
  for (const char* name : {"openat", "loadgen"}) {
    auto schema = builtin_probe_schema(name);
    if (!schema) throw std::runtime_error(schema.error().message());
    *h.add_events() = *schema;
  }
  // As `record` plans them: record times come from the probes' ts fields.
  return std::make_shared<const ColumnarLayout>(ColumnarLayout::from_schemas(h.events(), "ts"));
}

inline EncodedCorpusBatch encode_full_batch(const Corpus& corpus, const BatchLimits& limits = BatchLimits{},
                                            std::int64_t format = 1) {
  BatchEncoder encoder(corpus_layout(format));
  for (std::size_t i = 0;; ++i) {
    const SampleView& s = corpus.samples[i % corpus.size()];
    encoder.add_record(s.time, s.cpu, s.raw);
    if (encoder.record_count() >= limits.max_records || encoder.encoded_size_estimate() >= limits.max_bytes) break;
  }
  EncodedCorpusBatch out;
  out.records = encoder.record_count();
  encoder.finish(0, out.encoded);
  return out;
}

}  // namespace perfstream::bench
