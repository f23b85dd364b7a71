// The read side: a sched_switch recording of two reader threads' batches, with watermarks, written through
// the trace writer once, then read back by each layer of the reader library and by the commands.
//
//   BM_Read_DecodeBatch    one 1 MiB batch message into columns (DecodedBatch): records/s
//   BM_Read_FileOrder      RecordingReader: frames, zstd, columns, checks, in file order: records/s
//   BM_Read_TimeOrder      TimeOrderedReader on top: the merge across CPUs: records/s
//   BM_Read_Stats          `perfstream stats` to a null stream: records/s
//   BM_Read_DumpText       `perfstream dump` to a null stream, every field decoded and printed: records/s
//   BM_Read_DumpJson       `perfstream dump --json`: records/s
// The recording is made in a temp dir at the first use (kRecordingRecords records); rates are per record.
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <ostream>
#include <sstream>
#include <streambuf>
#include <string>
#include <vector>

#include <linux/types.h>

#include "bpf/events.h"
#include "collector/cli/commands.hpp"
#include "collector/decode/payload_schema.hpp"
#include "collector/format/batch_encoder.hpp"
#include "collector/format/trace_writer.hpp"
#include "collector/format/zstd_codec.hpp"
#include "collector/recording/recording_reader.hpp"
#include "collector/recording/time_ordered_reader.hpp"
#include "testing/temp_dir.hpp"

namespace perfstream::bench {
namespace {

constexpr std::size_t kRecordingRecords = 1'000'000;
constexpr std::size_t kBatchRecords = 15'000;  // about 1 MiB of encoded sched_switch records

ps_sched_switch_event event_for(std::size_t i) {
  ps_sched_switch_event e{};
  e.kind = PS_EVENT_SCHED_SWITCH;
  e.prev_pid = static_cast<std::int32_t>(1000 + i % 37);
  e.next_pid = static_cast<std::int32_t>(1000 + (i + 1) % 37);
  e.prev_prio = e.next_prio = 120;
  e.prev_state = static_cast<std::int64_t>(i % 3 == 0);
  std::snprintf(e.prev_comm, sizeof(e.prev_comm), "worker-%zu", i % 37);
  std::snprintf(e.next_comm, sizeof(e.next_comm), "worker-%zu", (i + 1) % 37);
  return e;
}

// Two reader threads, CPUs 0 and 1 each: their batches alternate, times interleave, watermarks as the
// worker stamps them (the earlier of the two threads' latest batch ends).
struct Recording {
  perfstream::testing::TempDir dir;
  std::string path = dir.file("sched.data");
  std::string first_batch_message;

  Recording() {
    v1::TraceHeader h;
    h.set_format_version(1);
    h.set_recording_id("bench");
    h.set_batch_watermarks(true);
    auto schema = builtin_probe_schema("sched_switch");
    if (schema) {
      schema->set_kind(PS_EVENT_SCHED_SWITCH);
      schema->set_name("sched_switch");
      *h.add_events() = *schema;
    }
    TraceWriterOptions o;
    o.path = path;
    auto writer = TraceFileWriter::create(o, h);
    auto compressor = ZstdCompressor::create(1);
    if (!writer || !compressor) throw std::runtime_error("cannot write the benchmark recording");
    std::uint64_t sequence = 0;
    std::uint64_t ends[2] = {0, 0};
    for (std::size_t start = 0; start < kRecordingRecords; start += kBatchRecords) {
      const unsigned cpu = static_cast<unsigned>((start / kBatchRecords) % 2);
      BatchEncoder enc;
      std::uint64_t t = 0;
      for (std::size_t i = start; i < std::min(start + kBatchRecords, kRecordingRecords); ++i) {
        t = 1'000'000'000ull + (i / 2) * 5000 + cpu;  // the two threads' batches cover the same span
        const ps_sched_switch_event e = event_for(i);
        enc.add_record(t, cpu, std::as_bytes(std::span(&e, 1)));
      }
      ends[cpu] = t;
      std::string message;
      enc.finish_unstamped(message);
      append_batch_stamp(message, sequence, std::min(ends[0], ends[1]));
      if (sequence == 0) first_batch_message = message;
      EncodedBatch b;
      b.sequence = sequence++;
      b.records = enc.record_count();
      if (!compressor->compress(message, b.compressed) || !(*writer)->write_batch(b)) {
        throw std::runtime_error("cannot write the benchmark recording");
      }
    }
    if (!(*writer)->close(v1::TraceTrailer())) throw std::runtime_error("cannot close the benchmark recording");
  }
};

const Recording& recording() {
  static const Recording r;
  return r;
}

class NullBuffer : public std::streambuf {
 protected:
  std::streamsize xsputn(const char*, std::streamsize n) override { return n; }
  int overflow(int c) override { return c; }
};

void per_record(benchmark::State& state, std::uint64_t records) {
  state.SetItemsProcessed(static_cast<std::int64_t>(records));
  state.counters["ns_per_record"] = benchmark::Counter(
      static_cast<double>(records), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_Read_DecodeBatch(benchmark::State& state) {
  const std::string& message = recording().first_batch_message;
  recording::DecodedBatch batch;
  std::uint64_t records = 0;
  std::string buffer;
  for (auto _ : state) {
    state.PauseTiming();
    buffer = message;  // decode takes the bytes (by swapping)
    state.ResumeTiming();
    if (!batch.decode(buffer, 1u << 20)) state.SkipWithError("decode failed");
    records += batch.size();
    benchmark::DoNotOptimize(batch.times.data());
  }
  per_record(state, records);
}
BENCHMARK(BM_Read_DecodeBatch);

// The benchmark recording opened anew for one iteration; nullptr (and the benchmark skipped) on failure.
std::unique_ptr<recording::RecordingReader> open_recording(benchmark::State& state) {
  auto reader = recording::RecordingReader::open({recording().path}, recording::RecordingOptions{});
  if (!reader) {
    state.SkipWithError(reader.error().message().c_str());
    return nullptr;
  }
  return std::move(*reader);
}

void BM_Read_FileOrder(benchmark::State& state) {
  std::uint64_t records = 0;
  for (auto _ : state) {
    auto reader = open_recording(state);
    if (!reader) break;
    recording::ReadBatch rb;
    while (reader->next(rb)) records += rb.batch.size();
  }
  per_record(state, records);
}
BENCHMARK(BM_Read_FileOrder)->Unit(benchmark::kMillisecond);

void BM_Read_TimeOrder(benchmark::State& state) {
  std::uint64_t records = 0;
  for (auto _ : state) {
    auto reader = open_recording(state);
    if (!reader) break;
    recording::TimeOrderedReader timeline(*reader, recording::MergeOptions{});
    recording::TimeOrderedReader::Entry e;
    while (timeline.next(e)) ++records;
    if (timeline.late() != 0) state.SkipWithError("records out of order");
  }
  per_record(state, records);
}
BENCHMARK(BM_Read_TimeOrder)->Unit(benchmark::kMillisecond);

void run_command(benchmark::State& state, int (*command)(const std::vector<std::string>&, std::ostream&, std::ostream&),
                 std::vector<std::string> args) {
  NullBuffer null;
  std::ostream out(&null);
  std::ostringstream err;
  args.push_back(recording().path);
  std::uint64_t records = 0;
  for (auto _ : state) {
    if (command(args, out, err) != 0) {
      state.SkipWithError(err.str().c_str());
      break;
    }
    records += kRecordingRecords;
  }
  per_record(state, records);
}

void BM_Read_Stats(benchmark::State& state) { run_command(state, &cli::run_stats, {}); }
BENCHMARK(BM_Read_Stats)->Unit(benchmark::kMillisecond);

void BM_Read_DumpText(benchmark::State& state) { run_command(state, &cli::run_dump, {}); }
BENCHMARK(BM_Read_DumpText)->Unit(benchmark::kMillisecond);

void BM_Read_DumpJson(benchmark::State& state) { run_command(state, &cli::run_dump, {"--json"}); }
BENCHMARK(BM_Read_DumpJson)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace perfstream::bench
