// The reader library on synthetic recordings written through the real trace writer: time order against a
// whole-recording stable sort (reader threads that stall, CPUs that come late, clock ties, recordings with
// and without watermarks), bounded memory, batch sequence and trailer checks, batch bombs, pipes, FIFOs,
// directories, resync after an over-long frame, and following a file that grows and rotates.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "collector/format/batch_encoder.hpp"
#include "collector/format/frame.hpp"
#include "collector/format/protobuf_wire.hpp"
#include "collector/format/trace_writer.hpp"
#include "collector/format/zstd_codec.hpp"
#include "collector/recording/recording_reader.hpp"
#include "collector/recording/time_ordered_reader.hpp"
#include "testing/temp_dir.hpp"

namespace perfstream::recording {
namespace {

using perfstream::testing::TempDir;

struct Rec {
  std::uint64_t time;
  std::uint32_t cpu;
  std::string payload;
  bool lost = false;
  std::uint64_t count = 0;
};

// A batch as a writer thread would hand it over: records (and losses) and the watermark it carries.
struct SynthBatch {
  std::vector<Rec> items;
  std::uint64_t watermark = 0;
  std::uint64_t sequence = 0;
};

v1::TraceHeader header(const std::string& id, bool watermarks) {
  v1::TraceHeader h;
  h.set_format_version(1);
  h.set_recording_id(id);
  h.set_batch_watermarks(watermarks);
  return h;
}

EncodedBatch encode(const SynthBatch& b) {
  BatchEncoder enc;
  for (const auto& r : b.items) {
    if (r.lost) {
      enc.add_lost(r.cpu, r.count, r.time, 0);
    } else {
      enc.add_record(r.time, r.cpu, std::as_bytes(std::span(r.payload.data(), r.payload.size())));
    }
  }
  std::string message;
  enc.finish_unstamped(message);
  append_batch_stamp(message, b.sequence, b.watermark);
  EncodedBatch out;
  out.sequence = b.sequence;
  out.records = enc.record_count();
  auto c = ZstdCompressor::create(1);
  EXPECT_TRUE(c->compress(message, out.compressed));
  return out;
}

void write(const std::string& path, const std::vector<SynthBatch>& batches, bool watermarks,
           std::optional<v1::TraceTrailer> trailer = v1::TraceTrailer(), std::uint64_t rotate_bytes = 0,
           const std::string& id = "rec") {
  TraceWriterOptions o;
  o.path = path;
  o.rotate_bytes = rotate_bytes;
  auto w = TraceFileWriter::create(o, header(id, watermarks));
  ASSERT_TRUE(w) << w.error().message();
  for (const auto& b : batches) ASSERT_TRUE((*w)->write_batch(encode(b)));
  if (trailer) {
    ASSERT_TRUE((*w)->close(*trailer));
  } else {
    (*w)->abandon();
  }
}

// What a whole-recording stable sort gives: by time, losses first at a time, then file order.
std::vector<std::tuple<std::uint64_t, bool, std::uint32_t, std::string>> sorted_reference(
    const std::vector<SynthBatch>& batches) {
  struct E {
    std::uint64_t time;
    int kind;
    std::size_t order;
    std::uint32_t cpu;
    std::string text;
  };
  std::vector<E> all;
  for (const auto& b : batches) {
    for (const auto& r : b.items) {
      all.push_back(E{r.time, r.lost ? 0 : 1, all.size(), r.cpu, r.lost ? std::to_string(r.count) : r.payload});
    }
  }
  std::stable_sort(all.begin(), all.end(), [](const E& a, const E& b) {
    if (a.time != b.time) return a.time < b.time;
    if (a.kind != b.kind) return a.kind < b.kind;
    return a.order < b.order;
  });
  std::vector<std::tuple<std::uint64_t, bool, std::uint32_t, std::string>> out;
  for (const auto& e : all) out.emplace_back(e.time, e.kind == 0, e.cpu, e.text);
  return out;
}

std::vector<std::tuple<std::uint64_t, bool, std::uint32_t, std::string>> merged(RecordingReader& reader,
                                                                                   const MergeOptions& options,
                                                                                   TimeOrderedReader** keep = nullptr) {
  static std::unique_ptr<TimeOrderedReader> kept;
  kept = std::make_unique<TimeOrderedReader>(reader, options);
  if (keep != nullptr) *keep = kept.get();
  std::vector<std::tuple<std::uint64_t, bool, std::uint32_t, std::string>> out;
  TimeOrderedReader::Entry e;
  while (kept->next(e)) {
    if (e.is_lost) {
      out.emplace_back(e.time_ns, true, e.cpu, std::to_string(e.lost().count));
    } else {
      out.emplace_back(e.time_ns, false, e.cpu, std::string(e.payload().data(), e.payload().size()));
    }
  }
  return out;
}

std::unique_ptr<RecordingReader> open(const std::vector<std::string>& inputs, RecordingOptions options = {}) {
  auto r = RecordingReader::open(inputs, options);
  EXPECT_TRUE(r) << r.error().message();
  return r ? std::move(*r) : nullptr;
}

// A collector with `readers` reader threads, each owning CPUs cpu % readers, draining `per_pass` records of
// each CPU a pass, batches closing every `batch_passes` passes; times advance per CPU, with ties across
// CPUs. Options stress the merge: reader 1 stalls (its batches reach the file `stall` passes late), a CPU
// that comes online at pass `late_cpu_pass`. Watermarks as the real writer computes them: the least, over
// readers, of what each has submitted (all its records below its latest pass's start).
std::vector<SynthBatch> collector_run(std::mt19937_64& rng, int passes, unsigned readers, unsigned cpus,
                                      int stall = 0, int late_cpu_pass = 0, bool watermarks = true) {
  struct Pending {
    int due;  // the pass at which the batch reaches the writer
    unsigned reader;
    SynthBatch batch;
    std::uint64_t promise;  // the reader's watermark when it submitted
  };
  std::vector<Pending> pending;
  std::vector<SynthBatch> open(readers);
  std::vector<std::uint64_t> promise(readers, 0);
  std::vector<std::uint64_t> last_time(cpus, 0);
  std::vector<SynthBatch> file;
  std::uint64_t sequence = 0, id = 0;
  const int batch_passes = 3;
  for (int pass = 0; pass < passes; ++pass) {
    const std::uint64_t pass_start = 1'000'000 + static_cast<std::uint64_t>(pass) * 1000;
    for (unsigned r = 0; r < readers; ++r) {
      for (unsigned cpu = r; cpu < cpus; cpu += readers) {
        if (late_cpu_pass > 0 && cpu == cpus - 1 && pass < late_cpu_pass) continue;
        const int n = static_cast<int>(rng() % 6);
        for (int i = 0; i < n; ++i) {
          // Records of this pass lie between the CPU's last one and the pass start; ties across CPUs.
          std::uint64_t t = std::max(last_time[cpu], pass_start - 1000) + (rng() % 3 == 0 ? 0 : rng() % 200);
          t = std::min(t, pass_start - 1);
          last_time[cpu] = t;
          if (rng() % 50 == 0) {
            open[r].items.push_back(Rec{t, cpu, "", true, 1 + rng() % 9});
          }
          open[r].items.push_back(Rec{t, cpu, "r" + std::to_string(id++) + "@" + std::to_string(cpu)});
        }
      }
      if (pass % batch_passes == batch_passes - 1 || pass == passes - 1) {
        const std::uint64_t promised = pass_start;  // every record of this reader below it is in the batch
        const int delay = (r == 1 && stall > 0) ? stall : 0;
        pending.push_back(Pending{pass + delay, r, std::move(open[r]), promised});
        open[r] = SynthBatch{};
      }
    }
    // Batches due reach the writer in submission order; the writer stamps the least promise.
    std::stable_sort(pending.begin(), pending.end(), [](const Pending& a, const Pending& b) { return a.due < b.due; });
    while (!pending.empty() && pending.front().due <= pass) {
      Pending p = std::move(pending.front());
      pending.erase(pending.begin());
      promise[p.reader] = std::max(promise[p.reader], p.promise);
      std::uint64_t least = UINT64_MAX;
      for (unsigned r = 0; r < readers; ++r) {
        // A reader with a batch still in flight promised only what it had submitted.
        least = std::min(least, promise[r]);
      }
      p.batch.watermark = watermarks ? least : 0;
      p.batch.sequence = sequence++;
      file.push_back(std::move(p.batch));
    }
  }
  for (auto& p : pending) {
    p.batch.sequence = sequence++;
    file.push_back(std::move(p.batch));
  }
  return file;
}

TEST(TimeOrderedReader, GivesTheOrderOfAWholeRecordingSortAcrossReadersStallsLateCpusAndTies) {
  TempDir dir;
  for (int seed = 1; seed <= 12; ++seed) {
    std::mt19937_64 rng(seed);
    const bool watermarks = seed % 3 != 0;
    const auto batches = collector_run(rng, 400, 1 + seed % 3, 2 + seed % 5, seed % 2 == 0 ? 7 : 0,
                                       seed % 4 == 1 ? 150 : 0, watermarks);
    const std::string path = dir.file("s" + std::to_string(seed) + ".data");
    write(path, batches, watermarks);
    auto reader = open({path});
    ASSERT_TRUE(reader);
    TimeOrderedReader* merge = nullptr;
    const auto got = merged(*reader, MergeOptions{}, &merge);
    EXPECT_EQ(got, sorted_reference(batches)) << "seed " << seed;
    EXPECT_EQ(merge->late(), 0u) << "seed " << seed;
    EXPECT_TRUE(reader->problems().empty()) << reader->problems().front();
  }
}

// With watermarks the reader holds only what lies above the latest one: memory stays flat however long the
// recording; without, the window bounds it, and a recording that needs more than the window is reported.
TEST(TimeOrderedReader, HoldsAboutABatchPerReaderWithWatermarksAndTheWindowWithout) {
  TempDir dir;
  std::mt19937_64 rng(7);
  std::size_t peak[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    const auto batches = collector_run(rng, i == 0 ? 3000 : 6000, 2, 4, 0, 0, true);
    const std::string path = dir.file("long" + std::to_string(i) + ".data");
    write(path, batches, true);
    auto reader = open({path});
    TimeOrderedReader* merge = nullptr;
    const auto got = merged(*reader, MergeOptions{}, &merge);
    EXPECT_EQ(got.size(), sorted_reference(batches).size());
    EXPECT_EQ(merge->late(), 0u);
    EXPECT_FALSE(merge->window_was_full());
    peak[i] = merge->peak_held_bytes();
  }
  EXPECT_LT(peak[1], peak[0] * 3 / 2) << "twice the records, about the same memory: " << peak[0] << " " << peak[1];

  // No watermarks, a reader stalled by more than the window holds: the late records are counted.
  const auto batches = collector_run(rng, 2000, 2, 4, 400, 0, false);
  const std::string path = dir.file("stalled.data");
  write(path, batches, false);
  auto reader = open({path});
  MergeOptions small;
  small.window_bytes = 16 << 10;
  TimeOrderedReader* merge = nullptr;
  const auto got = merged(*reader, small, &merge);
  EXPECT_EQ(got.size(), sorted_reference(batches).size()) << "nothing dropped";
  EXPECT_TRUE(merge->window_was_full());
  EXPECT_GT(merge->late(), 0u);
  EXPECT_LT(merge->peak_held_bytes(), std::size_t{64} << 10);
}

TEST(TimeOrderedReader, FiltersCpusAndATimeRange) {
  TempDir dir;
  std::mt19937_64 rng(3);
  const auto batches = collector_run(rng, 300, 2, 4);
  const std::string path = dir.file("f.data");
  write(path, batches, true);
  auto reader = open({path});
  MergeOptions o;
  o.cpus = std::vector<std::uint32_t>{1, 3};
  o.since_ns = 1'050'000;
  o.until_ns = 1'150'000;
  auto expected = sorted_reference(batches);
  std::erase_if(expected, [](const auto& e) {
    const auto [t, lost, cpu, text] = e;
    return (cpu != 1 && cpu != 3) || t < 1'050'000 || t >= 1'150'000;
  });
  ASSERT_FALSE(expected.empty());
  EXPECT_EQ(merged(*reader, o), expected);
}

v1::TraceTrailer trailer_for(const std::vector<SynthBatch>& batches) {
  v1::TraceTrailer t;
  std::map<std::uint32_t, std::pair<std::uint64_t, std::uint64_t>> per_cpu;
  for (const auto& b : batches) {
    for (const auto& r : b.items) (r.lost ? per_cpu[r.cpu].second : per_cpu[r.cpu].first) += r.lost ? r.count : 1;
  }
  for (const auto& [cpu, c] : per_cpu) {
    auto* x = t.add_cpus();
    x->set_cpu(cpu);
    x->set_samples(c.first);
    x->set_lost(c.second);
  }
  return t;
}

std::vector<SynthBatch> simple_batches(int n) {
  std::vector<SynthBatch> out;
  for (int i = 0; i < n; ++i) {
    SynthBatch b;
    b.sequence = static_cast<std::uint64_t>(i);
    b.items.push_back(Rec{1000u + static_cast<std::uint64_t>(i), static_cast<std::uint32_t>(i % 2), "p" + std::to_string(i)});
    out.push_back(b);
  }
  return out;
}

std::vector<std::string> problems_of(const std::string& path) {
  auto reader = open({path});
  ReadBatch rb;
  while (reader->next(rb)) {
  }
  return reader->problems();
}

TEST(RecordingReader, ReportsMissingDuplicatedAndReorderedBatchesAndTotalsThatDisagree) {
  TempDir dir;
  auto batches = simple_batches(10);
  const auto trailer = trailer_for(batches);
  {
    const std::string path = dir.file("whole.data");
    write(path, batches, false, trailer);
    EXPECT_TRUE(problems_of(path).empty());
    auto reader = open({path});
    ReadBatch rb;
    while (reader->next(rb)) {
    }
    EXPECT_TRUE(reader->ended_cleanly());
  }
  {
    auto gaps = batches;
    gaps.erase(gaps.begin() + 6, gaps.begin() + 8);  // 6 and 7
    gaps.erase(gaps.begin() + 2);                     // 2
    const std::string path = dir.file("gaps.data");
    write(path, gaps, false, trailer);
    const auto p = problems_of(path);
    ASSERT_GE(p.size(), 2u);
    EXPECT_EQ(p[0], "batch 2 is missing (1 batch)");
    EXPECT_EQ(p[1], "batches 6-7 are missing (2 batches)");
    // And the totals: CPU 0 had batches 2 and 6, CPU 1 batch 7.
    EXPECT_NE(std::find(p.begin(), p.end(), "CPU 0: the trailer counts 5 samples, the recording holds 3 records"), p.end());
    EXPECT_NE(std::find(p.begin(), p.end(), "CPU 1: the trailer counts 5 samples, the recording holds 4 records"), p.end());
  }
  {
    auto dup = batches;
    dup.insert(dup.begin() + 5, batches[3]);
    const std::string path = dir.file("dup.data");
    write(path, dup, false, trailer);
    auto reader = open({path});
    ReadBatch rb;
    std::size_t records = 0;
    while (reader->next(rb)) records += rb.batch.size();
    EXPECT_EQ(records, 10u) << "the copy is skipped";
    ASSERT_FALSE(reader->problems().empty());
    EXPECT_NE(reader->problems()[0].find("batch 3 appears again"), std::string::npos) << reader->problems()[0];
    EXPECT_FALSE(reader->ended_cleanly());
  }
  {
    auto swapped = batches;
    std::swap(swapped[4], swapped[5]);
    const std::string path = dir.file("swapped.data");
    write(path, swapped, false, trailer);
    const auto p = problems_of(path);
    ASSERT_EQ(p.size(), 1u);
    EXPECT_NE(p[0].find("batch 4 comes after batch 5"), std::string::npos) << p[0];
  }
  {
    auto wrong = trailer;
    wrong.mutable_cpus(1)->set_lost(3);
    const std::string path = dir.file("lost.data");
    write(path, batches, false, wrong);
    const auto p = problems_of(path);
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(p[0], "CPU 1: the trailer counts 3 samples lost in the kernel, the recording's notices 0");
  }
}

TEST(RecordingReader, FindsRotatedPiecesAndRefusesAPieceOfAnotherRecording) {
  TempDir dir;
  const auto batches = simple_batches(30);
  const std::string path = dir.file("rot.data");
  write(path, batches, false, trailer_for(batches), 300);
  ASSERT_TRUE(std::filesystem::exists(path + ".2"));
  std::vector<std::string> notes;
  RecordingOptions o;
  o.note = [&](const std::string& n) { notes.push_back(n); };
  {
    auto reader = open({path}, o);
    ReadBatch rb;
    std::size_t records = 0;
    while (reader->next(rb)) records += rb.batch.size();
    EXPECT_EQ(records, 30u);
    EXPECT_TRUE(reader->ended_cleanly()) << (reader->problems().empty() ? "" : reader->problems()[0]);
    EXPECT_GE(notes.size(), 2u);
    EXPECT_EQ(notes[0], "reading on in " + path + ".1 (piece 1)");
  }
  // Piece 1 replaced by a piece 1 of another recording.
  const std::string other = dir.file("other.data");
  write(other, batches, false, trailer_for(batches), 300, "another");
  std::filesystem::copy_file(other + ".1", path + ".1", std::filesystem::copy_options::overwrite_existing);
  auto reader = open({path});
  ReadBatch rb;
  while (reader->next(rb)) {
  }
  ASSERT_FALSE(reader->problems().empty());
  EXPECT_EQ(reader->problems()[0], path + ".1 is piece 1 of recording 'another', not piece 1 of 'rec': not read");
  EXPECT_FALSE(reader->ended_cleanly());
}

// A crafted batch that declares millions of four-byte records is refused before anything of that size is
// allocated, and the message names the limit.
TEST(RecordingReader, RefusesABatchBombAndNamesTheLimit) {
  TempDir dir;
  const std::string path = dir.file("bomb.data");
  TraceWriterOptions o;
  o.path = path;
  auto w = TraceFileWriter::create(o, header("bomb", false));
  ASSERT_TRUE(w);
  std::string message;
  wire::put_uint_field(message, 3, 4u << 20);
  std::string deltas(4u << 20, '\0'), cpus(4u << 20, '\0'), sizes(4u << 20, '\x04');
  wire::put_bytes_field(message, 4, deltas);
  wire::put_bytes_field(message, 5, cpus);
  wire::put_bytes_field(message, 6, sizes);
  wire::put_bytes_field(message, 7, std::string(16u << 20, 'x'));
  EncodedBatch b;
  ASSERT_TRUE(ZstdCompressor::create(3)->compress(message, b.compressed));
  EXPECT_LT(b.compressed.size(), 64u << 10);
  ASSERT_TRUE((*w)->write_batch(b));
  ASSERT_TRUE((*w)->close(v1::TraceTrailer()));
  auto reader = open({path});
  ReadBatch rb;
  EXPECT_FALSE(reader->next(rb));
  ASSERT_EQ(reader->damage().size(), 1u);
  EXPECT_NE(reader->damage()[0].message.find("holds more than 1048576 records, the reader's limit per batch "
                                             "(--max-batch-records)"),
            std::string::npos)
      << reader->damage()[0].message;

  RecordingOptions tight;
  tight.limits.max_batch_bytes = 1 << 20;
  auto small = open({path}, tight);
  EXPECT_FALSE(small->next(rb));
  ASSERT_EQ(small->damage().size(), 1u);
  EXPECT_NE(small->damage()[0].message.find("over the reader's limit of 1048576 bytes per message (--max-batch-bytes)"),
            std::string::npos)
      << small->damage()[0].message;
}

TEST(RecordingReader, ReadsAPipeAndAFifoAndNamesWhatIsNotATrace) {
  TempDir dir;
  const auto batches = simple_batches(20);
  const std::string path = dir.file("t.data");
  write(path, batches, false, trailer_for(batches));
  const std::string bytes = perfstream::testing::read_file(path);

  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::thread writer([&] {
    // In small pieces, as a live recorder writes.
    for (std::size_t at = 0; at < bytes.size(); at += 97) {
      const std::size_t n = std::min<std::size_t>(97, bytes.size() - at);
      EXPECT_EQ(::write(fds[1], bytes.data() + at, n), static_cast<ssize_t>(n));
    }
    ::close(fds[1]);
  });
  auto piped = TraceFileReader::open_fd(UniqueFd(fds[0]), "standard input");
  ASSERT_TRUE(piped) << piped.error().message();
  std::size_t frames = 0;
  while ((*piped)->next().status == ReadStatus::Frame) ++frames;
  writer.join();
  EXPECT_EQ(frames, 21u);  // 20 batches and the trailer

  const std::string fifo = dir.file("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::thread fifo_writer([&] {
    const int fd = ::open(fifo.c_str(), O_WRONLY);
    EXPECT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    ::close(fd);
  });
  auto reader = open({fifo});
  ReadBatch rb;
  std::size_t records = 0;
  while (reader->next(rb)) records += rb.batch.size();
  fifo_writer.join();
  EXPECT_EQ(records, 20u);
  EXPECT_TRUE(reader->ended_cleanly());

  auto d = RecordingReader::open({dir.path()}, RecordingOptions{});
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().message(), dir.path() + " is a directory, not a trace file (a sink's directory holds one "
                                              "NAME.data per collector: name one of them)");
  int empty[2];
  ASSERT_EQ(::pipe(empty), 0);
  ::close(empty[1]);
  auto e = TraceFileReader::open_fd(UniqueFd(empty[0]), "standard input");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().message(), "standard input: the pipe ended before anything was written to it: no trace");
}

// A frame header whose length runs past the end of the file, with good frames after it: corrupt, and
// --skip-corrupt reads on after it instead of stopping there.
TEST(RecordingReader, SkipCorruptResynchronisesAfterAFrameThatRunsPastTheEnd) {
  TempDir dir;
  const auto batches = simple_batches(5);
  const std::string path = dir.file("t.data");
  write(path, batches, false, trailer_for(batches));
  std::string bytes = perfstream::testing::read_file(path);
  // The second batch frame: find the frames by walking the headers.
  std::vector<std::size_t> at;
  for (std::size_t off = kFileHeaderSize; off + kFrameHeaderSize <= bytes.size();) {
    at.push_back(off);
    std::uint32_t len = 0;
    std::memcpy(&len, bytes.data() + off + 8, 4);
    off += kFrameHeaderSize + len;
  }
  ASSERT_EQ(at.size(), 7u);  // header, 5 batches, trailer
  std::string fake;
  append_frame_header(fake, FrameHeader{FrameType::Batch, kEncodingZstd, 60u << 20});
  bytes.replace(at[2], kFrameHeaderSize, fake);  // batch 1's header now declares 60 MiB
  perfstream::testing::write_file(path, bytes);

  RecordingOptions skip;
  skip.skip_corrupt = true;
  auto reader = open({path}, skip);
  ReadBatch rb;
  std::vector<std::uint64_t> seqs;
  while (reader->next(rb)) seqs.push_back(rb.batch.sequence);
  EXPECT_EQ(seqs, (std::vector<std::uint64_t>{0, 2, 3, 4}));
  ASSERT_EQ(reader->damage().size(), 1u);
  EXPECT_FALSE(reader->damage()[0].truncated);
  EXPECT_EQ(reader->damage()[0].resumed_at, std::optional<std::uint64_t>(at[3]));
  EXPECT_NE(reader->damage()[0].message.find("past the end of the file"), std::string::npos);

  auto stops = open({path});
  seqs.clear();
  while (stops->next(rb)) seqs.push_back(rb.batch.sequence);
  EXPECT_EQ(seqs, (std::vector<std::uint64_t>{0}));
  ASSERT_EQ(stops->damage().size(), 1u);
  EXPECT_FALSE(stops->damage()[0].truncated) << "a valid frame follows: corrupt, not cut";
}

// Following a recording while it is written, rotation included: every record once, and the end at the
// final trailer.
TEST(RecordingReader, FollowsAGrowingRecordingAcrossRotationUntilItsTrailer) {
  TempDir dir;
  const auto batches = simple_batches(60);
  const std::string path = dir.file("live.data");
  std::atomic<bool> started{false};
  std::thread writer([&] {
    TraceWriterOptions o;
    o.path = path;
    o.rotate_bytes = 700;
    auto w = TraceFileWriter::create(o, header("live", true));
    ASSERT_TRUE(w);
    started = true;
    for (const auto& b : batches) {
      ASSERT_TRUE((*w)->write_batch(encode(b)));
      std::this_thread::sleep_for(std::chrono::milliseconds(3));
    }
    ASSERT_TRUE((*w)->close(trailer_for(batches)));
  });
  while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  RecordingOptions o;
  o.follow = true;
  auto reader = open({path}, o);
  ASSERT_TRUE(reader);
  ReadBatch rb;
  std::vector<std::string> payloads;
  while (reader->next(rb)) {
    for (std::size_t i = 0; i < rb.batch.size(); ++i) payloads.emplace_back(rb.batch.payload(i).data(), rb.batch.payload(i).size());
  }
  writer.join();
  ASSERT_EQ(payloads.size(), 60u);
  for (int i = 0; i < 60; ++i) EXPECT_EQ(payloads[i], "p" + std::to_string(i));
  EXPECT_GE(reader->pieces().size(), 3u);
  EXPECT_TRUE(reader->ended_cleanly()) << (reader->problems().empty() ? "" : reader->problems()[0]);
}

}  // namespace
}  // namespace perfstream::recording
