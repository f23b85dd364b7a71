// Where compressed batches go: the trace file writer, a loopback socket, and the whole collector path from
// ring to file.
//
//   BM_FileWriter_WriteBatch   TraceFileWriter::write_batch of one compressed batch (zstd 1) per iteration,
//                              into a file under $TMPDIR (or /tmp): MB/s of frames, ns per record.
//   BM_Socket_Loopback         the same batches as length-prefixed frames over a TCP loopback connection, a
//                              reader thread (on another CPU when there is one) draining them.
//   BM_Sink_StoreBatch         a sink's work per received batch (socket or Kafka): zstd decompression with the
//                              size limit, BatchView::parse, and RecordingStore's dedupe-and-write: MB/s of
//                              compressed batches taken in (docs/SCALE.md sizes sink machines with it).
//   BM_Pipeline_DrainToFile    the collector's whole path for two CPUs' rings: drain_ring (pass + decode) ->
//                              BatchingConsumer (encode, zstd) -> TraceFileWriter: ns per record, the number
//                              the "< 100 ns per record" target is about. At zstd level 1 (the
//                              default) and -1 (zstd's fastest family, for comparison).
//
// Writes go to the page cache; the disk's own bandwidth is not measured. So that dirty pages never pile up
// to the kernel's writeback thresholds mid-measurement, the file is started over (with timing paused) every
// kRecycleBytes.
#include <benchmark/benchmark.h>
#include <linux/perf_event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_records.hpp"
#include "collector/format/batching_consumer.hpp"
#include "collector/format/frame.hpp"
#include "collector/format/trace_writer.hpp"
#include "collector/format/trace_reader.hpp"
#include "collector/format/zstd_codec.hpp"
#include "collector/read/ring_drain.hpp"
#include "collector/read/ring_stats.hpp"
#include "collector/transport/recording_store.hpp"
#include "collector/util/unique_fd.hpp"
#include "testing/temp_dir.hpp"

namespace perfstream::bench {
namespace {

constexpr std::uint64_t kRecycleBytes = 128ull << 20;
constexpr std::uint64_t kSampleType = PERF_SAMPLE_TIME | PERF_SAMPLE_CPU | PERF_SAMPLE_RAW;

CorpusKind corpus_arg(const benchmark::State& state, int index) {
  return state.range(index) == 0 ? CorpusKind::Openat : CorpusKind::Loadgen64;
}

// One full batch of the corpus, compressed at zstd 1 as BatchingConsumer would hand it to a sink.
Result<EncodedBatch> compressed_batch(CorpusKind kind) {
  const Corpus c = make_corpus(kind, kCorpusRecords);
  const EncodedCorpusBatch encoded = encode_full_batch(c);
  auto compressor = ZstdCompressor::create(1);
  if (!compressor) return compressor.error();
  EncodedBatch batch;
  batch.records = encoded.records;
  batch.encoded_bytes = encoded.encoded.size();
  batch.first_time_ns = c.samples.front().time;
  if (auto st = compressor->compress(encoded.encoded, batch.compressed); !st) return st.error();
  return batch;
}

v1::TraceHeader bench_header() {
  v1::TraceHeader header;
  header.set_format_version(kFormatVersion);
  header.set_perfstream_version(PERFSTREAM_VERSION);
  header.set_host("bench");
  header.set_possible_cpus(2);
  header.set_online_cpus("0-1");
  header.set_recorded_cpus("0-1");
  header.set_clock(v1::MONOTONIC);
  header.set_sample_type(kSampleType);
  header.add_probes("synthetic");
  return header;
}

// A BatchSink writing a trace file in a temporary directory, which can start the file over.
class TempTraceFile final : public BatchSink {
 public:
  static Result<std::unique_ptr<TempTraceFile>> create() {
    std::unique_ptr<TempTraceFile> file(new TempTraceFile());
    if (auto st = file->open(); !st) return st.error();
    return file;
  }

  Status write_batch(const EncodedBatch& batch) override { return writer_->write_batch(batch); }

  // True when the file has grown past kRecycleBytes; then recycle() (with timing paused).
  bool full() const { return writer_->bytes_written() >= kRecycleBytes; }
  Status recycle() {
    written_before_ += writer_->bytes_written();
    writer_.reset();  // writes the trailer and fsyncs: the dirty pages are gone before timing resumes
    ::unlink(path_.c_str());
    return open();
  }
  std::uint64_t bytes_written() const { return written_before_ + writer_->bytes_written(); }

 private:
  TempTraceFile() : path_(dir_.file("bench.data")) {}
  Status open() {
    TraceWriterOptions options;
    options.path = path_;
    auto writer = TraceFileWriter::create(options, bench_header());
    if (!writer) return writer.error();
    writer_ = std::move(*writer);
    return {};
  }

  testing::TempDir dir_;
  std::string path_;
  std::unique_ptr<TraceFileWriter> writer_;
  std::uint64_t written_before_ = 0;
};

void per_record_counters(benchmark::State& state, std::uint64_t records) {
  state.SetItemsProcessed(static_cast<std::int64_t>(records));
  state.counters["time_per_record"] = benchmark::Counter(
      static_cast<double>(records), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_FileWriter_WriteBatch(benchmark::State& state) {
  const CorpusKind kind = corpus_arg(state, 0);
  auto batch = compressed_batch(kind);
  auto file = TempTraceFile::create();
  if (!batch || !file) {
    state.SkipWithError(!batch ? batch.error().message().c_str() : file.error().message().c_str());
    return;
  }
  const std::uint64_t frame_bytes = kFrameHeaderSize + batch->compressed.size();
  std::uint64_t written = 0;
  for (auto _ : state) {
    if (auto st = (*file)->write_batch(*batch); !st) {
      state.SkipWithError(st.error().message().c_str());
      break;
    }
    written += frame_bytes;
    if ((*file)->full()) {
      state.PauseTiming();
      auto st = (*file)->recycle();
      state.ResumeTiming();
      if (!st) {
        state.SkipWithError(st.error().message().c_str());
        break;
      }
    }
  }
  state.SetLabel(corpus_name(kind));
  state.SetBytesProcessed(static_cast<std::int64_t>(written));
  per_record_counters(state, static_cast<std::uint64_t>(state.iterations()) * batch->records);
  state.counters["frame_bytes"] = static_cast<double>(frame_bytes);
  state.counters["records_per_batch"] = batch->records;
}

// --- a sink taking batches in ------------------------------------------------------------------------

void BM_Sink_StoreBatch(benchmark::State& state) {
  const CorpusKind kind = corpus_arg(state, 0);
  auto batch = compressed_batch(kind);
  auto decompressor = ZstdDecompressor::create();
  if (!batch || !decompressor) {
    state.SkipWithError(!batch ? batch.error().message().c_str() : decompressor.error().message().c_str());
    return;
  }
  // Each iteration stores the same bytes under the next sequence number, as a stream of batches would be.
  auto message = std::string();
  if (auto st = decompressor->decompress(batch->compressed, 64u << 20, message); !st) {
    state.SkipWithError(st.error().message().c_str());
    return;
  }
  v1::Batch proto;
  proto.ParseFromString(message);
  std::string compressed = batch->compressed;
  std::unique_ptr<testing::TempDir> dir;
  std::unique_ptr<RecordingStore> store;
  std::shared_ptr<Recording> recording;
  auto open = [&]() -> Status {
    recording.reset();
    store.reset();
    dir = std::make_unique<testing::TempDir>();
    RecordingStoreOptions options;
    options.dir = dir->path();
    auto s = RecordingStore::open(options);
    if (!s) return s.error();
    store = std::move(*s);
    auto r = store->recording("bench-collector", bench_header());
    if (!r) return r.error();
    recording = *r;
    return {};
  };
  if (auto st = open(); !st) {
    state.SkipWithError(st.error().message().c_str());
    return;
  }
  std::uint64_t sequence = 0, taken = 0, since_recycle = 0;
  for (auto _ : state) {
    if (auto st = decompressor->decompress(compressed, 64u << 20, message); !st) {
      state.SkipWithError(st.error().message().c_str());
      break;
    }
    auto view = BatchView::parse(message);
    if (!view) {
      state.SkipWithError(view.error().message().c_str());
      break;
    }
    proto.set_sequence(sequence++);  // the parsed view's own message is not renumbered: only the store's index is
    auto stored = recording->store(compressed, proto);
    if (!stored || *stored != Recording::Stored::New) {
      state.SkipWithError("the store refused a new sequence");
      break;
    }
    benchmark::DoNotOptimize(view->size());
    taken += compressed.size();
    since_recycle += compressed.size();
    if (since_recycle >= kRecycleBytes) {
      state.PauseTiming();
      since_recycle = 0;
      auto st = open();
      sequence = 0;
      state.ResumeTiming();
      if (!st) {
        state.SkipWithError(st.error().message().c_str());
        break;
      }
    }
  }
  state.SetLabel(corpus_name(kind));
  state.SetBytesProcessed(static_cast<std::int64_t>(taken));
  per_record_counters(state, static_cast<std::uint64_t>(state.iterations()) * batch->records);
  state.counters["compressed_bytes"] = static_cast<double>(compressed.size());
}

// --- the socket path ---------------------------------------------------------------------------------
//
// perfstream's stream transport does not exist yet. This is its baseline: the batch frame of frame.hpp (a
// 16-byte header carrying the length, then the zstd frame) written with one writev per batch to a TCP
// loopback connection, and a reader thread that reads each header, checks it and reads the payload. No
// acknowledgements, no TLS, no spooling: the transport can only add to this.

int read_exact(int fd, char* data, std::size_t size) {
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::recv(fd, data + done, size - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (n == 0) return done == 0 ? 0 : -1;  // clean EOF only between frames
    done += static_cast<std::size_t>(n);
  }
  return 1;
}

bool write_all(int fd, iovec* iov, int count) {
  while (count > 0) {
    ssize_t n = ::writev(fd, iov, count);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    while (count > 0 && static_cast<std::size_t>(n) >= iov->iov_len) {
      n -= static_cast<ssize_t>(iov->iov_len);
      ++iov;
      --count;
    }
    if (count > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + n;
      iov->iov_len -= static_cast<std::size_t>(n);
    }
  }
  return true;
}

// A connected TCP pair over 127.0.0.1.
Result<std::pair<UniqueFd, UniqueFd>> loopback_pair() {
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listener) return Error::from_errno("socket", errno);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(listener.get(), 1) != 0 ||
      ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return Error::from_errno("listening on loopback", errno);
  }
  UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!client || ::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Error::from_errno("connecting over loopback", errno);
  }
  UniqueFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!server) return Error::from_errno("accepting over loopback", errno);
  const int one = 1;
  ::setsockopt(client.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return std::pair<UniqueFd, UniqueFd>{std::move(client), std::move(server)};
}

// Moves the calling thread to an online CPU outside `avoid`, if there is one; returns it, or -1.
int move_to_other_cpu(const cpu_set_t& avoid) {
  const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  for (int cpu = 0; cpu < cpus && cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &avoid)) continue;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (::sched_setaffinity(0, sizeof(set), &set) == 0) return cpu;
  }
  return -1;
}

struct ReaderResult {
  std::uint64_t frames = 0;
  std::uint64_t bytes = 0;
  std::string error;
};

void BM_Socket_Loopback(benchmark::State& state) {
  const CorpusKind kind = corpus_arg(state, 0);
  auto batch = compressed_batch(kind);
  auto pair = loopback_pair();
  if (!batch || !pair) {
    state.SkipWithError(!batch ? batch.error().message().c_str() : pair.error().message().c_str());
    return;
  }
  auto& [client, server] = *pair;
  cpu_set_t benchmark_cpus;
  CPU_ZERO(&benchmark_cpus);
  ::sched_getaffinity(0, sizeof(benchmark_cpus), &benchmark_cpus);

  ReaderResult reader_result;
  int reader_cpu = -1;
  std::thread reader([&, fd = server.get()] {
    reader_cpu = move_to_other_cpu(benchmark_cpus);
    std::string header(kFrameHeaderSize, '\0');
    std::string payload;
    for (;;) {
      const int got = read_exact(fd, header.data(), header.size());
      if (got == 0) return;  // the sender shut down between frames
      std::string why;
      std::optional<FrameHeader> frame = got < 0 ? std::nullopt : parse_frame_header(header, &why);
      if (!frame) {
        reader_result.error = got < 0 ? "reader: connection broke mid-frame" : "reader: " + why;
        return;
      }
      payload.resize(frame->payload_length);
      if (read_exact(fd, payload.data(), payload.size()) != 1) {
        reader_result.error = "reader: connection broke mid-frame";
        return;
      }
      ++reader_result.frames;
      reader_result.bytes += header.size() + payload.size();
    }
  });

  std::string frame_header;
  append_frame_header(frame_header, FrameHeader{FrameType::Batch, kEncodingZstd,
                                                static_cast<std::uint32_t>(batch->compressed.size())});
  const std::uint64_t frame_bytes = frame_header.size() + batch->compressed.size();
  std::uint64_t sent = 0;
  for (auto _ : state) {
    iovec iov[2] = {{frame_header.data(), frame_header.size()}, {batch->compressed.data(), batch->compressed.size()}};
    if (!write_all(client.get(), iov, 2)) {
      state.SkipWithError("writing to the loopback socket failed");
      break;
    }
    sent += frame_bytes;
  }
  // The socket buffer may still hold the last few frames (a few MB at most against the whole run); the
  // reader has to see all of them before the run counts.
  ::shutdown(client.get(), SHUT_WR);
  reader.join();
  if (!state.error_occurred() && !reader_result.error.empty()) state.SkipWithError(reader_result.error.c_str());
  if (!state.error_occurred() && reader_result.bytes != sent) {
    state.SkipWithError("the reader received a different number of bytes than were sent");
  }
  state.SetLabel(std::string(corpus_name(kind)) +
                 (reader_cpu >= 0 ? ", reader on CPU " + std::to_string(reader_cpu) : ", reader shares the CPU"));
  state.SetBytesProcessed(static_cast<std::int64_t>(sent));
  per_record_counters(state, static_cast<std::uint64_t>(state.iterations()) * batch->records);
  state.counters["frame_bytes"] = static_cast<double>(frame_bytes);
}

// --- the whole path -----------------------------------------------------------------------------------

// Two CPUs' 4 MiB rings, each full of that CPU's records of the corpus, as one reader thread would drain
// them: CPU 0's ring, then CPU 1's, into one BatchingConsumer (zstd at `level`) writing a trace file.
void BM_Pipeline_DrainToFile(benchmark::State& state) {
  const int level = static_cast<int>(state.range(0));
  const CorpusKind kind = corpus_arg(state, 1);
  const Corpus all = make_corpus(kind, kCorpusRecords);
  std::vector<std::unique_ptr<FullRing>> rings;
  for (std::uint32_t cpu = 0; cpu < 2; ++cpu) {
    std::vector<std::size_t> mine;
    for (std::size_t i = 0; i < all.size(); ++i) {
      if (all.samples[i].cpu == cpu) mine.push_back(i);
    }
    rings.push_back(std::make_unique<FullRing>(
        std::size_t{4} << 20, 0, [&](std::size_t i) -> const Bytes& { return all.emitted[mine[i % mine.size()]]; },
        [&](std::size_t i) {
          return std::pair<std::uint64_t, std::uint32_t>{all.samples[mine[i % mine.size()]].time, cpu};
        }));
  }
  auto decoder = RecordDecoder::create(kSampleType, true);
  auto compressor = ZstdCompressor::create(level);
  auto file = TempTraceFile::create();
  if (!decoder || !compressor || !file) {
    state.SkipWithError(!decoder      ? decoder.error().message().c_str()
                        : !compressor ? compressor.error().message().c_str()
                                      : file.error().message().c_str());
    return;
  }
  PipelineCounters counters;
  RingStats stats(2);
  // As in `record`: the reader encodes, a worker thread compresses and writes (real time counts both).
  BatchWorker worker(std::move(*compressor), **file, counters, BatchWorkerOptions{1});
  BatchingConsumer consumer(BatchLimits{}, worker, CLOCK_MONOTONIC, corpus_layout(state.range(2)));
  std::uint64_t records = 0, ring_bytes = 0;
  for (auto _ : state) {
    for (unsigned cpu = 0; cpu < 2; ++cpu) {
      rings[cpu]->rewind();
      const DrainResult result = drain_ring(rings[cpu]->ring(), cpu, *decoder, consumer, stats.cpu(cpu));
      records += result.records;
      ring_bytes += result.bytes;
    }
    if ((*file)->full()) {
      state.PauseTiming();
      auto st = (*file)->recycle();
      state.ResumeTiming();
      if (!st) {
        state.SkipWithError(st.error().message().c_str());
        break;
      }
    }
  }
  worker.wait_idle();
  if (auto error = worker.first_error(); !state.error_occurred() && error) state.SkipWithError(error->message().c_str());
  state.SetLabel(corpus_name(kind));
  state.SetBytesProcessed(static_cast<std::int64_t>(ring_bytes));
  per_record_counters(state, records);
  const std::uint64_t closed = counters.records.load();
  state.counters["compressed_bytes_per_record"] =
      closed == 0 ? 0.0 : static_cast<double>(counters.compressed_bytes.load()) / static_cast<double>(closed);
  state.counters["ring_bytes_per_record"] =
      records == 0 ? 0.0 : static_cast<double>(ring_bytes) / static_cast<double>(records);
}

BENCHMARK(BM_FileWriter_WriteBatch)->ArgName("corpus")->Arg(0)->Arg(1)->UseRealTime();
BENCHMARK(BM_Sink_StoreBatch)->ArgName("corpus")->Arg(0)->Arg(1)->UseRealTime();
BENCHMARK(BM_Socket_Loopback)->ArgName("corpus")->Arg(0)->Arg(1)->UseRealTime();
// format 1: payloads whole; format 2: in column groups, as `record` writes them.
BENCHMARK(BM_Pipeline_DrainToFile)->UseRealTime()->ArgNames({"level", "corpus", "format"})->ArgsProduct({{1, -1}, {0, 1}, {1, 2}});

}  // namespace
}  // namespace perfstream::bench
