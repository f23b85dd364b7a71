// Batch encoding, zstd, and the two together: what a record costs between the decoder and the sink.
//
// Records come from bench_records.hpp: `openat` (ps_openat_event + paths with shared prefixes, ~100 bytes)
// or `loadgen64` (64-byte ps_loadgen_event, mostly zeros, as the load generator emits them), two CPUs,
// times advancing by small deltas. Batches close where BatchingConsumer closes them by default (1 MiB
// encoded), so a batch is ~10,000 openat or ~15,000 loadgen records.
//
//   BM_Batch_Encode              BatchEncoder::add_record for a whole batch, then finish(): ns per record and
//                                encoded bytes per record; format 1 (payloads whole) or 2 (column groups),
//                                payloads read a block at a time as BatchingConsumer has them read
//                                (PayloadViews::KeptUntilFlush: the corpus outlives the batch).
//   BM_Zstd_Compress             ZstdCompressor::compress of one encoded batch at a level: compressed bytes
//                                per record and the compression ratio. Levels 1 (perfstream's default), 3, 6
//                                and 19, and the fast negative levels -1 and -5 for comparison.
//   BM_Pipeline_EncodeCompress   BatchingConsumer::on_sample for every record (encode, close, compress, hand
//                                the frame to a sink that keeps nothing): ns per record from decoder to sink.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <map>
#include <string>

#include "bench/bench_records.hpp"
#include "collector/format/batch_encoder.hpp"
#include "collector/format/batch_sink.hpp"
#include "collector/format/batching_consumer.hpp"
#include "collector/format/zstd_codec.hpp"

namespace perfstream::bench {
namespace {

// Corpora are built once per process and shared by every benchmark.
const Corpus& corpus(CorpusKind kind) {
  static std::map<CorpusKind, Corpus> cache;
  auto it = cache.find(kind);
  if (it == cache.end()) it = cache.emplace(kind, make_corpus(kind, kCorpusRecords)).first;
  return it->second;
}

CorpusKind corpus_arg(const benchmark::State& state, int index) {
  return state.range(index) == 0 ? CorpusKind::Openat : CorpusKind::Loadgen64;
}

void per_record_counters(benchmark::State& state, std::uint64_t records) {
  state.SetItemsProcessed(static_cast<std::int64_t>(records));
  state.counters["time_per_record"] = benchmark::Counter(
      static_cast<double>(records), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

double per(std::uint64_t total, std::uint64_t records) {
  return records == 0 ? 0.0 : static_cast<double>(total) / static_cast<double>(records);
}

// Takes every batch and keeps nothing, so the pipeline is measured up to the sink's door.
class NullSink final : public BatchSink {
 public:
  Status write_batch(const EncodedBatch& batch) override {
    benchmark::DoNotOptimize(batch.compressed.data());
    ++batches;
    return {};
  }
  std::uint64_t batches = 0;
};

void BM_Batch_Encode(benchmark::State& state) {
  const CorpusKind kind = corpus_arg(state, 0);
  const Corpus& records_in = corpus(kind);
  state.SetLabel(corpus_name(kind));
  const BatchLimits limits;
  BatchEncoder encoder(corpus_layout(state.range(1)), PayloadViews::KeptUntilFlush);
  std::string encoded;
  std::size_t next = 0;
  std::uint64_t records = 0, encoded_bytes = 0, payload_bytes = 0, batches = 0;
  for (auto _ : state) {
    // One batch, closed where BatchingConsumer would close it (on the exact size: pending records read first).
    for (;;) {
      const SampleView& s = records_in.samples[next];
      encoder.add_record(s.time, s.cpu, s.raw);
      payload_bytes += s.raw.size();
      if (++next == records_in.size()) next = 0;
      if (encoder.record_count() >= limits.max_records) break;
      if (encoder.encoded_size_estimate() >= limits.max_bytes) {
        encoder.flush_views();
        if (encoder.encoded_size_estimate() >= limits.max_bytes) break;
      }
    }
    encoder.finish(batches, encoded);
    benchmark::DoNotOptimize(encoded.data());
    benchmark::ClobberMemory();
    records += encoder.record_count();
    encoded_bytes += encoded.size();
    ++batches;
    encoder.reset();
  }
  per_record_counters(state, records);
  state.SetBytesProcessed(static_cast<std::int64_t>(payload_bytes));
  state.counters["encoded_bytes_per_record"] = per(encoded_bytes, records);
  state.counters["payload_bytes_per_record"] = per(payload_bytes, records);
  state.counters["records_per_batch"] = per(records, batches);
}

void BM_Zstd_Compress(benchmark::State& state) {
  const int level = static_cast<int>(state.range(0));
  const CorpusKind kind = corpus_arg(state, 1);
  state.SetLabel(corpus_name(kind));
  const EncodedCorpusBatch batch = encode_full_batch(corpus(kind));
  auto compressor = ZstdCompressor::create(level);
  if (!compressor) {
    state.SkipWithError(compressor.error().message().c_str());
    return;
  }
  std::string compressed;
  for (auto _ : state) {
    if (auto st = compressor->compress(batch.encoded, compressed); !st) {
      state.SkipWithError(st.error().message().c_str());
      break;
    }
    benchmark::DoNotOptimize(compressed.data());
    benchmark::ClobberMemory();
  }
  const auto iterations = static_cast<std::uint64_t>(state.iterations());
  per_record_counters(state, iterations * batch.records);
  state.SetBytesProcessed(static_cast<std::int64_t>(iterations * batch.encoded.size()));
  state.counters["compressed_bytes_per_record"] = per(compressed.size(), batch.records);
  state.counters["encoded_bytes_per_record"] = per(batch.encoded.size(), batch.records);
  state.counters["ratio"] = compressed.empty() ? 0.0 : per(batch.encoded.size(), compressed.size());
}

void BM_Pipeline_EncodeCompress(benchmark::State& state) {
  const int level = static_cast<int>(state.range(0));
  const CorpusKind kind = corpus_arg(state, 1);
  const Corpus& records_in = corpus(kind);
  state.SetLabel(corpus_name(kind));
  auto compressor = ZstdCompressor::create(level);
  if (!compressor) {
    state.SkipWithError(compressor.error().message().c_str());
    return;
  }
  NullSink sink;
  PipelineCounters counters;
  // The worker compresses on a thread of its own, as in `record`; one batch in its queue at a time, so the
  // loop runs at the pace of the slower of encoding and compressing (real time, both threads' work).
  BatchWorker worker(std::move(*compressor), sink, counters, BatchWorkerOptions{1});
  BatchingConsumer consumer(BatchLimits{}, worker, CLOCK_MONOTONIC, corpus_layout(state.range(2)));
  // Records are handed over in passes of this many, each ended by on_pass_end as drain_ring does (a quarter
  // of a 1 MiB ring of ~100-byte records).
  constexpr std::size_t kPassRecords = 2048;
  std::size_t next = 0;
  std::uint64_t records = 0, payload_bytes = 0;
  for (auto _ : state) {
    for (std::size_t i = 0; i < kPassRecords; ++i) {
      const SampleView& s = records_in.samples[next];
      consumer.on_sample(s.cpu, s);
      payload_bytes += s.raw.size();
      if (++next == records_in.size()) next = 0;
    }
    consumer.on_pass_end(0);
    records += kPassRecords;
  }
  worker.wait_idle();
  if (auto error = worker.first_error()) state.SkipWithError(error->message().c_str());
  // Rates and sizes count only closed batches; the open one at the end is left out of the sizes.
  per_record_counters(state, records);
  state.SetBytesProcessed(static_cast<std::int64_t>(payload_bytes));
  const std::uint64_t closed = counters.records.load();
  state.counters["compressed_bytes_per_record"] = per(counters.compressed_bytes.load(), closed);
  state.counters["encoded_bytes_per_record"] = per(counters.encoded_bytes.load(), closed);
  state.counters["batches"] = static_cast<double>(sink.batches);
}

// format 1: every payload whole; format 2: payloads in column groups (the corpora's probes' plans).
BENCHMARK(BM_Batch_Encode)->ArgNames({"corpus", "format"})->ArgsProduct({{0, 1}, {1, 2}});
BENCHMARK(BM_Zstd_Compress)->ArgNames({"level", "corpus"})->ArgsProduct({{-5, -1, 1, 3, 6, 19}, {0, 1}});
BENCHMARK(BM_Pipeline_EncodeCompress)->UseRealTime()->ArgNames({"level", "corpus", "format"})->ArgsProduct({{1, 3}, {0, 1}, {1, 2}});

}  // namespace
}  // namespace perfstream::bench
