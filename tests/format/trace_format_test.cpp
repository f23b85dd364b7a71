// The trace format end to end: BatchEncoder's wire format against the generated parser, the zstd codec and
// its limits, the frame header, TraceFileWriter/TraceFileReader round trips (rotation included), damaged
// files (cut at every byte, corrupt frames, resync), write failures, and BatchingConsumer's loss accounting.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "collector/format/batch_encoder.hpp"
#include "collector/format/batching_consumer.hpp"
#include "collector/format/frame.hpp"
#include "collector/format/trace_reader.hpp"
#include "collector/format/trace_writer.hpp"
#include "collector/format/zstd_codec.hpp"
#include "perfstream.pb.h"
#include "testing/schema_field.hpp"
#include "testing/temp_dir.hpp"

namespace perfstream {
namespace {

using testing::TempDir;

std::span<const std::byte> bytes_of(const std::string& s) {
  return std::span<const std::byte>(reinterpret_cast<const std::byte*>(s.data()), s.size());
}

std::string random_bytes(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng());
  return out;
}

ZstdCompressor compressor(int level = 3) {
  auto c = ZstdCompressor::create(level);
  if (!c) throw std::runtime_error(c.error().message());
  return std::move(*c);
}

ZstdDecompressor decompressor() {
  auto d = ZstdDecompressor::create();
  if (!d) throw std::runtime_error(d.error().message());
  return std::move(*d);
}

v1::TraceHeader test_header(const std::string& recording_id = "rec-0001") {
  v1::TraceHeader h;
  h.set_format_version(1);
  h.set_perfstream_version("0.1.0");
  h.set_host("testhost");
  h.set_kernel_release("6.1.0-test");
  h.set_possible_cpus(4);
  h.set_online_cpus("0-3");
  h.set_recorded_cpus("0-3");
  h.set_clock(v1::MONOTONIC);
  h.set_start_time_ns(1000);
  h.add_probes("openat");
  h.set_recording_id(recording_id);
  return h;
}

struct Rec {
  std::uint64_t time_ns;
  std::uint32_t cpu;
  std::string payload;
  bool operator==(const Rec&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Rec& r) {
  return os << "{t=" << r.time_ns << " cpu=" << r.cpu << " " << r.payload.size() << " bytes}";
}

// Encodes and compresses one batch of `records`.
EncodedBatch encode_batch(const std::vector<Rec>& records, std::uint64_t sequence) {
  BatchEncoder enc;
  for (const auto& r : records) enc.add_record(r.time_ns, r.cpu, bytes_of(r.payload));
  EncodedBatch b;
  std::string message;
  enc.finish(sequence, message);
  b.sequence = sequence;
  b.records = enc.record_count();
  b.encoded_bytes = message.size();
  b.first_time_ns = enc.first_time();
  auto st = compressor().compress(message, b.compressed);
  if (!st) throw std::runtime_error(st.error().message());
  return b;
}

// `n` batches of `per_batch` records, payloads of `payload_size` bytes (random: incompressible).
std::vector<std::vector<Rec>> make_batches(std::size_t n, std::size_t per_batch, std::size_t payload_size) {
  std::vector<std::vector<Rec>> out(n);
  std::uint64_t t = 1'000'000;
  std::uint32_t seed = 1;
  for (auto& batch : out) {
    for (std::size_t i = 0; i < per_batch; ++i) {
      batch.push_back(Rec{t, static_cast<std::uint32_t>(i % 4), random_bytes(payload_size, seed++)});
      t += 1000;
    }
  }
  return out;
}

std::unique_ptr<TraceFileWriter> make_writer(const TraceWriterOptions& options, const v1::TraceHeader& header) {
  auto w = TraceFileWriter::create(options, header);
  if (!w) throw std::runtime_error(w.error().message());
  return std::move(*w);
}

void write_trace(const std::string& path, const std::vector<std::vector<Rec>>& batches, bool close = true) {
  TraceWriterOptions options;
  options.path = path;
  auto w = make_writer(options, test_header());
  for (std::size_t i = 0; i < batches.size(); ++i) {
    auto st = w->write_batch(encode_batch(batches[i], i));
    if (!st) throw std::runtime_error(st.error().message());
  }
  if (close) {
    auto st = w->close(v1::TraceTrailer());
    if (!st) throw std::runtime_error(st.error().message());
  }
}

std::unique_ptr<TraceFileReader> open_reader(const std::string& path) {
  auto r = TraceFileReader::open(path);
  if (!r) throw std::runtime_error(r.error().message());
  return std::move(*r);
}

struct ReadBack {
  std::vector<Rec> records;
  std::vector<std::uint64_t> sequences;
  std::vector<std::uint64_t> batch_offsets;
  std::optional<v1::TraceTrailer> trailer;
  ReadOutcome last;  // End, Truncated or Corrupt
};

// Reads frames until the reader stops (End, Truncated, Corrupt).
void read_on(TraceFileReader& reader, ReadBack& out) {
  for (;;) {
    ReadOutcome o = reader.next();
    if (o.status != ReadStatus::Frame) {
      out.last = o;
      return;
    }
    if (o.type == FrameType::Trailer) {
      v1::TraceTrailer t;
      ASSERT_TRUE(t.ParseFromString(o.message));
      out.trailer = t;
      continue;
    }
    ASSERT_EQ(o.type, FrameType::Batch);
    auto view = BatchView::parse(o.message);
    ASSERT_TRUE(view) << view.error().message();
    out.sequences.push_back(view->batch().sequence());
    out.batch_offsets.push_back(o.offset);
    for (std::size_t i = 0; i < view->size(); ++i) {
      const auto r = view->record(i);
      out.records.push_back(Rec{r.time_ns, r.cpu, std::string(r.payload.data(), r.payload.size())});
    }
  }
}

ReadBack read_all(TraceFileReader& reader) {
  ReadBack out;
  read_on(reader, out);
  return out;
}

std::vector<Rec> flatten(const std::vector<std::vector<Rec>>& batches) {
  std::vector<Rec> out;
  for (const auto& b : batches) out.insert(out.end(), b.begin(), b.end());
  return out;
}

struct FrameAt {
  std::uint64_t offset;
  std::uint64_t end;
  FrameType type;
};

// Every frame of an intact file, the header frame included.
std::vector<FrameAt> frames_of(const std::string& path) {
  auto reader = open_reader(path);
  std::vector<FrameAt> frames;
  const std::string bytes = testing::read_file(path);
  std::uint64_t at = kFileHeaderSize;
  while (at < bytes.size()) {
    std::string why;
    auto h = parse_frame_header(std::span<const char>(bytes.data() + at, kFrameHeaderSize), &why);
    if (!h) throw std::runtime_error("frames_of: " + why);
    const std::uint64_t end = at + kFrameHeaderSize + h->payload_length;
    frames.push_back(FrameAt{at, end, h->type});
    at = end;
  }
  return frames;
}

// --- BatchEncoder ----------------------------------------------------------------------------------------

TEST(BatchEncoder, GeneratedParserReadsTheColumnsByteExact) {
  const std::string p0("\x01\x00\xff\x80 binary\n", 11);
  const std::string p2 = random_bytes(300, 7);
  BatchEncoder enc;
  enc.add_lost(2, 17, 4000, 0);  // before the first record
  enc.add_record(5000, 0, bytes_of(p0));
  enc.add_record(4900, 3, bytes_of(""));  // earlier than the record before it; empty payload
  enc.add_lost(1, 5, 6000, 1);
  enc.add_record(1ull << 40, 65535, bytes_of(p2));
  enc.add_record(1ull << 40, 1, bytes_of(""));
  enc.add_lost(3, 1ull << 33, 0, 0);  // at the end
  EXPECT_EQ(enc.record_count(), 4u);
  EXPECT_EQ(enc.lost_count(), 3u);
  EXPECT_EQ(enc.first_time(), 5000u);
  std::string msg;
  enc.finish(42, msg);

  v1::Batch b;
  ASSERT_TRUE(b.ParseFromString(msg));
  EXPECT_EQ(b.sequence(), 42u);
  EXPECT_EQ(b.first_time_ns(), 5000u);
  EXPECT_EQ(b.record_count(), 4u);
  ASSERT_EQ(b.time_deltas_size(), 4);
  EXPECT_EQ(b.time_deltas(0), 0);
  EXPECT_EQ(b.time_deltas(1), -100);
  EXPECT_EQ(b.time_deltas(2), static_cast<std::int64_t>((1ull << 40) - 4900));
  EXPECT_EQ(b.time_deltas(3), 0);
  ASSERT_EQ(b.cpus_size(), 4);
  EXPECT_EQ(b.cpus(0), 0u);
  EXPECT_EQ(b.cpus(1), 3u);
  EXPECT_EQ(b.cpus(2), 65535u);
  EXPECT_EQ(b.cpus(3), 1u);
  ASSERT_EQ(b.sizes_size(), 4);
  EXPECT_EQ(b.sizes(0), 11u);
  EXPECT_EQ(b.sizes(1), 0u);
  EXPECT_EQ(b.sizes(2), 300u);
  EXPECT_EQ(b.sizes(3), 0u);
  EXPECT_EQ(b.payloads(), p0 + p2);
  ASSERT_EQ(b.lost_size(), 3);
  EXPECT_EQ(b.lost(0).cpu(), 2u);
  EXPECT_EQ(b.lost(0).count(), 17u);
  EXPECT_EQ(b.lost(0).time_ns(), 4000u);
  EXPECT_EQ(b.lost(0).before(), 0u);
  EXPECT_EQ(b.lost(0).source(), v1::LostNotice::KERNEL);
  EXPECT_EQ(b.lost(1).cpu(), 1u);
  EXPECT_EQ(b.lost(1).count(), 5u);
  EXPECT_EQ(b.lost(1).time_ns(), 6000u);
  EXPECT_EQ(b.lost(1).before(), 2u);
  EXPECT_EQ(b.lost(1).source(), v1::LostNotice::COLLECTOR);
  EXPECT_EQ(b.lost(2).cpu(), 3u);
  EXPECT_EQ(b.lost(2).count(), 1ull << 33);
  EXPECT_EQ(b.lost(2).time_ns(), 0u);
  EXPECT_EQ(b.lost(2).before(), 4u);

  auto view = BatchView::parse(msg);
  ASSERT_TRUE(view) << view.error().message();
  ASSERT_EQ(view->size(), 4u);
  EXPECT_EQ(view->record(0).time_ns, 5000u);
  EXPECT_EQ(view->record(1).time_ns, 4900u);
  EXPECT_EQ(view->record(2).time_ns, 1ull << 40);
  EXPECT_EQ(std::string(view->record(0).payload.data(), view->record(0).payload.size()), p0);
  EXPECT_TRUE(view->record(1).payload.empty());
  EXPECT_EQ(std::string(view->record(2).payload.data(), view->record(2).payload.size()), p2);
}

TEST(BatchEncoder, BatchOfOnlyEmptyPayloadsHasNoPayloadBytes) {
  BatchEncoder enc;
  enc.add_record(10, 1, bytes_of(""));
  enc.add_record(10, 2, bytes_of(""));
  std::string msg;
  enc.finish(0, msg);
  v1::Batch b;
  ASSERT_TRUE(b.ParseFromString(msg));
  EXPECT_EQ(b.record_count(), 2u);
  EXPECT_EQ(b.sequence(), 0u);
  EXPECT_TRUE(b.payloads().empty());
  ASSERT_EQ(b.sizes_size(), 2);
  EXPECT_EQ(b.sizes(0), 0u);
  EXPECT_EQ(b.sizes(1), 0u);
  auto view = BatchView::parse(msg);
  ASSERT_TRUE(view) << view.error().message();
  EXPECT_EQ(view->size(), 2u);
}

TEST(BatchEncoder, LostNoticesAloneMakeABatchWithoutRecords) {
  BatchEncoder enc;
  EXPECT_TRUE(enc.empty());
  enc.add_lost(0, 9, 123, 1);
  EXPECT_FALSE(enc.empty());
  std::string msg;
  enc.finish(3, msg);
  v1::Batch b;
  ASSERT_TRUE(b.ParseFromString(msg));
  EXPECT_EQ(b.record_count(), 0u);
  EXPECT_EQ(b.time_deltas_size(), 0);
  ASSERT_EQ(b.lost_size(), 1);
  EXPECT_EQ(b.lost(0).before(), 0u);
  EXPECT_EQ(b.lost(0).count(), 9u);
  EXPECT_TRUE(BatchView::parse(msg));
}

TEST(BatchEncoder, ResetStartsAFreshBatch) {
  BatchEncoder enc;
  enc.add_record(100, 1, bytes_of("abc"));
  enc.add_lost(1, 2, 3);
  std::string first;
  enc.finish(0, first);
  enc.reset();
  EXPECT_TRUE(enc.empty());
  enc.add_record(50, 2, bytes_of("xy"));
  std::string second;
  enc.finish(1, second);
  v1::Batch b;
  ASSERT_TRUE(b.ParseFromString(second));
  EXPECT_EQ(b.sequence(), 1u);
  EXPECT_EQ(b.first_time_ns(), 50u);
  EXPECT_EQ(b.record_count(), 1u);
  ASSERT_EQ(b.time_deltas_size(), 1);
  EXPECT_EQ(b.time_deltas(0), 0);
  EXPECT_EQ(b.payloads(), "xy");
  EXPECT_EQ(b.lost_size(), 0);
}

TEST(BatchView, RefusesColumnsOfDifferentLengths) {
  v1::Batch b;
  b.set_sequence(5);
  b.set_record_count(2);
  b.add_time_deltas(0);
  b.add_time_deltas(1);
  b.add_cpus(0);
  b.add_sizes(0);
  b.add_sizes(0);
  auto view = BatchView::parse(b.SerializeAsString());
  ASSERT_FALSE(view);
  EXPECT_EQ(view.error().message(), "batch 5: record_count 2 but columns of 2 times, 1 CPUs and 2 sizes");
}

TEST(BatchView, RefusesSizesRunningPastThePayloads) {
  v1::Batch b;
  b.set_sequence(6);
  b.set_record_count(1);
  b.add_time_deltas(0);
  b.add_cpus(0);
  b.add_sizes(10);
  b.set_payloads("short");
  auto view = BatchView::parse(b.SerializeAsString());
  ASSERT_FALSE(view);
  EXPECT_EQ(view.error().message(), "batch 6: record sizes run past the payload bytes");
}

TEST(BatchView, RefusesPayloadBytesOfNoRecord) {
  v1::Batch b;
  b.set_sequence(7);
  b.set_record_count(1);
  b.add_time_deltas(0);
  b.add_cpus(0);
  b.add_sizes(2);
  b.set_payloads("abcd");
  auto view = BatchView::parse(b.SerializeAsString());
  ASSERT_FALSE(view);
  EXPECT_EQ(view.error().message(), "batch 7: 2 payload bytes belong to no record");
}

TEST(BatchView, RefusesALostNoticePastTheLastRecord) {
  v1::Batch b;
  b.set_sequence(8);
  b.set_record_count(0);
  b.add_lost()->set_before(1);
  auto view = BatchView::parse(b.SerializeAsString());
  ASSERT_FALSE(view);
  EXPECT_EQ(view.error().message(), "batch 8: a lost notice points past the last record");
}

TEST(BatchView, RefusesBytesThatAreNotABatch) {
  auto view = BatchView::parse(std::string("\xff\xff\xff\xff\xff", 5));
  ASSERT_FALSE(view);
  EXPECT_EQ(view.error().message(), "batch: not a valid Batch message");
}

// --- zstd ------------------------------------------------------------------------------------------------

TEST(ZstdCodec, RoundTripsCompressibleAndIncompressibleData) {
  auto c = compressor();
  auto d = decompressor();
  for (const std::string& input : {std::string(100000, 'a'), random_bytes(70000, 3), std::string("x")}) {
    std::string frame, output;
    ASSERT_TRUE(c.compress(input, frame));
    auto st = d.decompress(frame, input.size(), output);
    ASSERT_TRUE(st) << st.error().message();
    EXPECT_EQ(output, input);
  }
}

TEST(ZstdCodec, RoundTripsEmptyInput) {
  auto c = compressor();
  auto d = decompressor();
  std::string frame, output = "stale";
  ASSERT_TRUE(c.compress(std::string(), frame));
  auto st = d.decompress(frame, 0, output);
  ASSERT_TRUE(st) << st.error().message();
  EXPECT_EQ(output, "");
}

TEST(ZstdCodec, ReusesOneContextAcrossFrames) {
  auto c = compressor(1);
  auto d = decompressor();
  for (int i = 0; i < 20; ++i) {
    const std::string input = random_bytes(1000, i) + std::string(static_cast<std::size_t>(i) * 100, 'z');
    std::string frame, output;
    ASSERT_TRUE(c.compress(input, frame));
    ASSERT_TRUE(d.decompress(frame, kMaxMessageSize, output));
    ASSERT_EQ(output, input);
  }
}

TEST(ZstdCodec, RefusesALevelOutOfRange) {
  auto c = ZstdCompressor::create(1000);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message().find("zstd level 1000 is out of range"), std::string::npos);
}

TEST(ZstdCodec, RefusesAFrameDeclaringMoreThanTheLimit) {
  // A zstd bomb: 100 MB of zeros compress to a few kilobytes.
  const std::string zeros(100u << 20, '\0');
  std::string frame;
  ASSERT_TRUE(compressor(1).compress(zeros, frame));
  ASSERT_LT(frame.size(), 64u * 1024);
  auto d = decompressor();
  std::string output;
  auto st = d.decompress(frame, 1u << 20, output);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "zstd frame: declares 104857600 decompressed bytes, over the limit of 1048576");
  EXPECT_LT(output.capacity(), 1u << 20);  // refused before allocating
}

TEST(ZstdCodec, RefusesAFrameWithoutContentSize) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ASSERT_NE(cctx, nullptr);
  ASSERT_FALSE(ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0)));
  const std::string input(5000, 'q');
  std::string frame(ZSTD_compressBound(input.size()), '\0');
  // Streaming without a pledged size: the frame cannot declare its content size.
  ZSTD_outBuffer out{frame.data(), frame.size(), 0};
  ZSTD_inBuffer in{input.data(), input.size(), 0};
  const size_t rc = ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_end);
  ZSTD_freeCCtx(cctx);
  ASSERT_EQ(rc, 0u);
  frame.resize(out.pos);
  ASSERT_EQ(ZSTD_getFrameContentSize(frame.data(), frame.size()), ZSTD_CONTENTSIZE_UNKNOWN);
  std::string output;
  auto st = decompressor().decompress(frame, kMaxMessageSize, output);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "zstd frame: it does not declare its decompressed size");
}

TEST(ZstdCodec, RefusesTrailingGarbage) {
  std::string frame, output;
  ASSERT_TRUE(compressor().compress(std::string("hello hello hello"), frame));
  frame += "xyz";
  auto st = decompressor().decompress(frame, 1000, output);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "zstd frame: 3 bytes follow the frame");
}

TEST(ZstdCodec, RefusesTwoConcatenatedFrames) {
  std::string a, b, output;
  ASSERT_TRUE(compressor().compress(std::string("first"), a));
  ASSERT_TRUE(compressor().compress(std::string("second"), b));
  auto st = decompressor().decompress(a + b, 1000, output);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "zstd frame: " + std::to_string(b.size()) + " bytes follow the frame");
}

TEST(ZstdCodec, FlippedContentByteFailsTheChecksum) {
  // Random bytes are stored raw: a flipped byte decodes to other content, which the checksum catches.
  const std::string input = random_bytes(4096, 11);
  std::string frame, output;
  ASSERT_TRUE(compressor().compress(input, frame));
  frame[frame.size() / 2] ^= 0x10;
  auto st = decompressor().decompress(frame, input.size(), output);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "zstd frame: Restored data doesn't match checksum");
}

TEST(ZstdCodec, FlippedChecksumByteFails) {
  std::string frame, output;
  ASSERT_TRUE(compressor().compress(std::string(1000, 'c') + "tail", frame));
  frame.back() ^= 0x01;
  auto st = decompressor().decompress(frame, 2000, output);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "zstd frame: Restored data doesn't match checksum");
}

TEST(ZstdCodec, RefusesBytesThatAreNotAFrame) {
  std::string output;
  auto st = decompressor().decompress(std::string("definitely not zstd"), 1000, output);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message().rfind("zstd frame: ", 0), 0u);
}

// --- Frame header ----------------------------------------------------------------------------------------

TEST(FrameHeader, FileHeaderIsMagicVersionAndFlags) {
  const std::string h = encode_file_header();
  ASSERT_EQ(h.size(), kFileHeaderSize);
  EXPECT_EQ(h, std::string("PERFSTRM\x03\x00\x00\x00\x00\x00\x00\x00", 16));
  std::string why;
  EXPECT_EQ(parse_file_header(h, &why), std::optional<std::uint32_t>(3));
  // Version 1 files (no column groups) and version 2 ones (time deltas as varints) are still read.
  EXPECT_EQ(parse_file_header(encode_file_header(1), &why), std::optional<std::uint32_t>(1));
  EXPECT_EQ(parse_file_header(encode_file_header(2), &why), std::optional<std::uint32_t>(2));
  EXPECT_EQ(encode_file_header(file_format_version(0)), encode_file_header(1));  // a header without a version
}

TEST(FrameHeader, FileHeaderRefusesOtherMagicVersionAndShortInput) {
  std::string why;
  EXPECT_FALSE(parse_file_header(std::string("PERFSTRM\x01\x00\x00", 11), &why));
  EXPECT_EQ(why, "not a perfstream trace (shorter than the 16-byte file header)");
  EXPECT_FALSE(parse_file_header(std::string("PERFSTRX\x01\x00\x00\x00\x00\x00\x00\x00", 16), &why));
  EXPECT_EQ(why, "not a perfstream trace (no PERFSTRM magic at the start)");
  EXPECT_FALSE(parse_file_header(std::string("PERFSTRM\x04\x00\x00\x00\x00\x00\x00\x00", 16), &why));
  EXPECT_EQ(why, "format version 4; this perfstream reads versions 1 to 3");
  EXPECT_FALSE(parse_file_header(std::string("PERFSTRM\x00\x00\x00\x00\x00\x00\x00\x00", 16), &why));
  EXPECT_EQ(why, "format version 0; this perfstream reads versions 1 to 3");
}

TEST(FrameHeader, EncodesAndParsesEveryField) {
  std::string h;
  append_frame_header(h, FrameHeader{FrameType::Trailer, kEncodingZstd, 0x01020304});
  ASSERT_EQ(h.size(), kFrameHeaderSize);
  EXPECT_EQ(h.substr(0, 12), std::string("PSFR\x03\x01\x00\x00\x04\x03\x02\x01", 12));
  std::string why;
  auto parsed = parse_frame_header(h, &why);
  ASSERT_TRUE(parsed) << why;
  EXPECT_EQ(parsed->type, FrameType::Trailer);
  EXPECT_EQ(parsed->encoding, kEncodingZstd);
  EXPECT_EQ(parsed->payload_length, 0x01020304u);
}

TEST(FrameHeader, AppendsAfterWhatIsAlreadyThere) {
  std::string h = "prefix";
  append_frame_header(h, FrameHeader{FrameType::Batch, kEncodingZstd, 7});
  ASSERT_EQ(h.size(), 6 + kFrameHeaderSize);
  std::string why;
  auto parsed = parse_frame_header(std::span<const char>(h.data() + 6, kFrameHeaderSize), &why);
  ASSERT_TRUE(parsed) << why;
  EXPECT_EQ(parsed->payload_length, 7u);
}

TEST(FrameHeader, AnyFlippedBitIsCaught) {
  std::string h;
  append_frame_header(h, FrameHeader{FrameType::Batch, kEncodingZstd, 4096});
  for (std::size_t i = 0; i < kFrameHeaderSize; ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string damaged = h;
      damaged[i] = static_cast<char>(damaged[i] ^ (1 << bit));
      std::string why;
      EXPECT_FALSE(parse_frame_header(damaged, &why)) << "byte " << i << " bit " << bit;
      EXPECT_EQ(why, i < 4 ? "no frame magic" : "frame header checksum mismatch") << "byte " << i;
    }
  }
}

TEST(FrameHeader, RefusesAShortHeader) {
  std::string h;
  append_frame_header(h, FrameHeader{FrameType::Batch, kEncodingZstd, 1});
  std::string why;
  EXPECT_FALSE(parse_frame_header(std::span<const char>(h.data(), 15), &why));
  EXPECT_EQ(why, "frame header cut short");
}

TEST(FrameHeader, RefusesAnUnknownType) {
  for (std::uint8_t type : {0, 4, 255}) {
    std::string h;
    append_frame_header(h, FrameHeader{static_cast<FrameType>(type), kEncodingZstd, 1});
    std::string why;
    EXPECT_FALSE(parse_frame_header(h, &why));
    EXPECT_EQ(why, "unknown frame type " + std::to_string(type));
  }
}

TEST(FrameHeader, RefusesAnUnknownEncoding) {
  std::string h;
  append_frame_header(h, FrameHeader{FrameType::Batch, 2, 1});
  std::string why;
  EXPECT_FALSE(parse_frame_header(h, &why));
  EXPECT_EQ(why, "frame type 2 with unknown encoding 2");
}

TEST(FrameHeader, RefusesALengthOverTheLimit) {
  std::string h;
  append_frame_header(h, FrameHeader{FrameType::Batch, kEncodingZstd, kMaxFramePayload + 1});
  std::string why;
  EXPECT_FALSE(parse_frame_header(h, &why));
  EXPECT_EQ(why, "frame length 67108865 over the limit of 67108864");

  std::string at_limit;
  append_frame_header(at_limit, FrameHeader{FrameType::Batch, kEncodingZstd, kMaxFramePayload});
  EXPECT_TRUE(parse_frame_header(at_limit, &why));
}

// --- Writer and reader -----------------------------------------------------------------------------------

TEST(TraceFile, RoundTripsBatchesByteExactAndInOrder) {
  TempDir dir;
  const std::string path = dir.file("t.data");
  const auto batches = make_batches(12, 37, 0);
  std::vector<std::vector<Rec>> varied = batches;
  // Payloads of every size from 0 up, compressible and not.
  std::uint32_t seed = 100;
  for (auto& b : varied) {
    for (std::size_t i = 0; i < b.size(); ++i) {
      b[i].payload = (i % 3 == 0) ? std::string(i, static_cast<char>('a' + i % 26)) : random_bytes(i * 7, seed++);
    }
  }
  write_trace(path, varied);
  auto reader = open_reader(path);
  EXPECT_EQ(reader->header().host(), "testhost");
  EXPECT_EQ(reader->header().recording_id(), "rec-0001");
  EXPECT_EQ(reader->header().piece(), 0u);
  EXPECT_EQ(reader->file_size(), std::filesystem::file_size(path));
  const ReadBack back = read_all(*reader);
  EXPECT_EQ(back.last.status, ReadStatus::End);
  EXPECT_EQ(back.records, flatten(varied));
  EXPECT_EQ(back.sequences, (std::vector<std::uint64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}));
  ASSERT_TRUE(back.trailer);
  EXPECT_EQ(back.trailer->batches(), 12u);
  EXPECT_EQ(back.trailer->records(), 12u * 37);
  EXPECT_FALSE(back.trailer->rotated());
  // End is sticky.
  EXPECT_EQ(reader->next().status, ReadStatus::End);
}

TEST(TraceFile, HeaderAndTrailerCarryEveryField) {
  TempDir dir;
  const std::string path = dir.file("t.data");
  v1::TraceHeader h = test_header("abc");
  v1::EventSchema* s = h.add_events();
  s->set_kind(2);
  s->set_name("openat");
  h.mutable_ring()->set_data_pages(64);
  h.add_command("ls");
  TraceWriterOptions options;
  options.path = path;
  auto w = make_writer(options, h);
  v1::TraceTrailer trailer;
  trailer.set_end_time_ns(99);
  v1::CpuTotals* c = trailer.add_cpus();
  c->set_cpu(3);
  c->set_fill_high_water(4096);
  ASSERT_TRUE(w->close(trailer));
  EXPECT_TRUE(w->close(trailer));  // idempotent

  auto reader = open_reader(path);
  EXPECT_EQ(reader->header().events(0).name(), "openat");
  EXPECT_EQ(reader->header().ring().data_pages(), 64u);
  EXPECT_EQ(reader->header().command(0), "ls");
  const ReadBack back = read_all(*reader);
  ASSERT_TRUE(back.trailer);
  EXPECT_EQ(back.trailer->end_time_ns(), 99u);
  EXPECT_EQ(back.trailer->batches(), 0u);
  ASSERT_EQ(back.trailer->cpus_size(), 1);
  EXPECT_EQ(back.trailer->cpus(0).fill_high_water(), 4096u);
}

TEST(TraceFile, WriterRefusesBatchesAfterClose) {
  TempDir dir;
  TraceWriterOptions options;
  options.path = dir.file("t.data");
  auto w = make_writer(options, test_header());
  ASSERT_TRUE(w->close(v1::TraceTrailer()));
  auto st = w->write_batch(encode_batch({Rec{1, 0, "x"}}, 0));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "trace file " + options.path + " is closed");
}

TEST(TraceFile, RotatesBySizeIntoNumberedPieces) {
  TempDir dir;
  const std::string path = dir.file("rot.data");
  // Incompressible 1000-byte payloads: each batch frame is a little over 1 KB; two fit in 2600 bytes.
  const auto batches = make_batches(7, 1, 1000);
  TraceWriterOptions options;
  options.path = path;
  options.rotate_bytes = 2600;
  auto w = make_writer(options, test_header("rotating"));
  for (std::size_t i = 0; i < batches.size(); ++i) ASSERT_TRUE(w->write_batch(encode_batch(batches[i], i)));
  EXPECT_EQ(w->pieces(), 4u);
  EXPECT_EQ(w->current_path(), path + ".3");
  EXPECT_EQ(w->batches_written(), 7u);
  ASSERT_TRUE(w->close(v1::TraceTrailer()));
  EXPECT_FALSE(std::filesystem::exists(path + ".4"));

  std::uint64_t total_bytes = 0;
  std::vector<Rec> all;
  std::vector<std::uint64_t> sequences;
  for (std::uint32_t piece = 0; piece < 4; ++piece) {
    const std::string p = piece == 0 ? path : path + "." + std::to_string(piece);
    SCOPED_TRACE(p);
    auto reader = open_reader(p);
    EXPECT_EQ(reader->header().piece(), piece);
    EXPECT_EQ(reader->header().recording_id(), "rotating");
    EXPECT_EQ(reader->header().host(), "testhost");
    const ReadBack back = read_all(*reader);
    EXPECT_EQ(back.last.status, ReadStatus::End);
    ASSERT_TRUE(back.trailer);
    EXPECT_EQ(back.trailer->rotated(), piece != 3);
    EXPECT_EQ(back.trailer->batches(), piece == 3 ? 1u : 2u);
    EXPECT_EQ(back.trailer->records(), back.records.size());
    all.insert(all.end(), back.records.begin(), back.records.end());
    sequences.insert(sequences.end(), back.sequences.begin(), back.sequences.end());
    total_bytes += std::filesystem::file_size(p);
  }
  EXPECT_EQ(all, flatten(batches));
  EXPECT_EQ(sequences, (std::vector<std::uint64_t>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(w->bytes_written(), total_bytes);
}

TEST(TraceFile, RotationNeverLeavesAPieceWithoutABatch) {
  TempDir dir;
  const std::string path = dir.file("big.data");
  TraceWriterOptions options;
  options.path = path;
  options.rotate_bytes = 100;  // smaller than one batch
  auto w = make_writer(options, test_header());
  const auto batches = make_batches(3, 1, 500);
  for (std::size_t i = 0; i < batches.size(); ++i) ASSERT_TRUE(w->write_batch(encode_batch(batches[i], i)));
  ASSERT_TRUE(w->close(v1::TraceTrailer()));
  EXPECT_EQ(w->pieces(), 3u);
  for (const std::string& p : {path, path + ".1", path + ".2"}) {
    auto reader = open_reader(p);
    EXPECT_EQ(read_all(*reader).sequences.size(), 1u) << p;
  }
}

TEST(TraceFile, ADeletedFileFailsTheNextBatchAndTheCloseNamingThePath) {
  TempDir dir;
  TraceWriterOptions options;
  options.path = dir.file("gone.data");
  auto w = make_writer(options, test_header());
  const auto batches = make_batches(3, 5, 20);
  ASSERT_TRUE(w->write_batch(encode_batch(batches[0], 0)));
  ASSERT_TRUE(w->write_batch(encode_batch(batches[1], 1)));
  ASSERT_TRUE(w->check());
  ASSERT_EQ(::unlink(options.path.c_str()), 0);
  auto st = w->write_batch(encode_batch(batches[2], 2));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "trace file " + options.path +
                                      " was deleted while being written: the 2 batches (10 records) it held are "
                                      "gone, and nothing more is written");
  EXPECT_EQ(st.error().errnum(), ENOENT);
  auto checked = w->check();
  ASSERT_FALSE(checked);
  EXPECT_EQ(checked.error().errnum(), ENOENT);
  auto closed = w->close(v1::TraceTrailer());
  ASSERT_FALSE(closed) << "close reports the failure too";
  EXPECT_EQ(closed.error().message(), st.error().message());
  EXPECT_EQ(closed.error().errnum(), ENOENT);
  EXPECT_FALSE(std::filesystem::exists(options.path)) << "nothing is recreated";
}

// A write that fails: every call after it gives the same error, errno and all (EFBIG here: the file size
// limit, set in a child so that the test process keeps its own).
TEST(TraceFile, AFailedWriteKeepsItsErrnoForEveryCallAfter) {
  TempDir dir;
  TraceWriterOptions options;
  options.path = dir.file("limited.data");
  const auto batches = make_batches(8, 1, 1000);  // incompressible: each frame a little over 1 KB
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);  // the write fails with EFBIG instead of the signal killing us
    const rlimit limit{4096, 4096};
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(10);
    auto w = TraceFileWriter::create(options, test_header());
    if (!w) ::_exit(11);
    Status first;
    for (std::size_t i = 0; i < batches.size() && first; ++i) first = (*w)->write_batch(encode_batch(batches[i], i));
    if (first || first.error().errnum() != EFBIG) ::_exit(12);
    const auto same = [&](const Status& st) {
      return !st && st.error().errnum() == EFBIG && st.error().message() == first.error().message();
    };
    if (!same((*w)->write_batch(encode_batch(batches[7], 7)))) ::_exit(13);
    if (!same((*w)->check())) ::_exit(14);
    if (!same((*w)->close(v1::TraceTrailer()))) ::_exit(15);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "12: the first failure is not EFBIG; 13, 14, 15: write_batch, check or close "
                                       "after it does not give the same error with its errno";
}

TEST(TraceFile, CheckNoticesAFileDeletedWithItsDirectory) {
  TempDir dir;
  const std::string sub = dir.file("out");
  std::filesystem::create_directory(sub);
  TraceWriterOptions options;
  options.path = sub + "/t.data";
  auto w = make_writer(options, test_header());
  ASSERT_TRUE(w->write_batch(encode_batch(make_batches(1, 3, 10)[0], 0)));
  std::filesystem::remove_all(sub);
  auto st = w->check();
  ASSERT_FALSE(st) << "no batch needed: an idle recording notices too";
  EXPECT_NE(st.error().message().find("trace file " + options.path + " was deleted while being written (its "
                                      "directory " + sub + " was removed): the 1 batches (3 records)"),
            std::string::npos)
      << st.error().message();
  EXPECT_FALSE(w->close(v1::TraceTrailer()));
}

TEST(TraceFile, RotationIntoAVanishedDirectoryFailsAndThePiecesBeforeStayComplete) {
  TempDir dir;
  const std::string sub = dir.file("out");
  std::filesystem::create_directory(sub);
  TraceWriterOptions options;
  options.path = sub + "/r.data";
  options.rotate_bytes = 2600;  // two 1000-byte incompressible batches per piece
  auto w = make_writer(options, test_header("moved"));
  const auto batches = make_batches(6, 1, 1000);
  for (std::size_t i = 0; i < 4; ++i) ASSERT_TRUE(w->write_batch(encode_batch(batches[i], i)));
  ASSERT_EQ(w->pieces(), 2u);
  // Renamed, not deleted: the open piece stays linked, so only the next piece's creation fails.
  const std::string moved = dir.file("moved");
  std::filesystem::rename(sub, moved);
  auto st = w->write_batch(encode_batch(batches[4], 4));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "creating trace file " + options.path +
                                      ".2: No such file or directory (its directory " + sub +
                                      " was removed or renamed)");
  EXPECT_EQ(st.error().errnum(), ENOENT);
  auto refused = w->write_batch(encode_batch(batches[5], 5));
  ASSERT_FALSE(refused) << "refused from then on";
  EXPECT_EQ(refused.error().message(), st.error().message());
  EXPECT_EQ(refused.error().errnum(), ENOENT) << "with the errno of the failure";
  auto closed = w->close(v1::TraceTrailer());
  ASSERT_FALSE(closed);
  EXPECT_EQ(closed.error().errnum(), ENOENT);
  EXPECT_EQ(w->batches_written(), 4u);
  for (std::uint32_t piece = 0; piece < 2; ++piece) {
    const std::string p = moved + "/r.data" + (piece == 0 ? "" : "." + std::to_string(piece));
    auto reader = open_reader(p);
    const ReadBack back = read_all(*reader);
    EXPECT_EQ(back.last.status, ReadStatus::End) << p;
    ASSERT_TRUE(back.trailer) << p;
    EXPECT_TRUE(back.trailer->rotated()) << p;
    EXPECT_EQ(back.sequences.size(), 2u) << p;
  }
}

TEST(TraceFile, CutInsideAFrameHeaderReadsEveryCompleteBatch) {
  TempDir dir;
  const std::string path = dir.file("t.data");
  const auto batches = make_batches(3, 5, 20);
  write_trace(path, batches);
  const auto frames = frames_of(path);
  ASSERT_EQ(frames.size(), 5u);  // header, 3 batches, trailer
  const std::uint64_t cut = frames[2].offset + 5;
  std::filesystem::resize_file(path, cut);

  auto reader = open_reader(path);
  const ReadBack back = read_all(*reader);
  EXPECT_EQ(back.records, flatten({batches[0]}));
  EXPECT_EQ(back.last.status, ReadStatus::Truncated);
  EXPECT_EQ(back.last.offset, frames[2].offset);
  EXPECT_EQ(back.last.message,
            "the file ends 5 bytes into a frame header at byte " + std::to_string(frames[2].offset));
  EXPECT_FALSE(back.trailer);
  EXPECT_EQ(reader->next().status, ReadStatus::End);
}

TEST(TraceFile, CutInsideAPayloadReadsEveryCompleteBatch) {
  TempDir dir;
  const std::string path = dir.file("t.data");
  const auto batches = make_batches(3, 5, 20);
  write_trace(path, batches);
  const auto frames = frames_of(path);
  const std::uint64_t cut = frames[3].offset + kFrameHeaderSize + 3;
  std::filesystem::resize_file(path, cut);

  auto reader = open_reader(path);
  const ReadBack back = read_all(*reader);
  EXPECT_EQ(back.records, flatten({batches[0], batches[1]}));
  EXPECT_EQ(back.last.status, ReadStatus::Truncated);
  EXPECT_EQ(back.last.offset, frames[3].offset);
  EXPECT_EQ(back.last.message, "the file is cut short: the frame at byte " + std::to_string(frames[3].offset) +
                                   " needs " + std::to_string(frames[3].end - frames[3].offset) + " bytes, " +
                                   std::to_string(kFrameHeaderSize + 3) + " are left");
}

TEST(TraceFile, CutRightAfterAFrameReadsEveryBatchAndEndsWithoutTrailer) {
  TempDir dir;
  const std::string path = dir.file("t.data");
  const auto batches = make_batches(3, 5, 20);
  write_trace(path, batches);
  const auto frames = frames_of(path);
  std::filesystem::resize_file(path, frames[3].end);  // the trailer is gone

  auto reader = open_reader(path);
  const ReadBack back = read_all(*reader);
  EXPECT_EQ(back.records, flatten(batches));
  EXPECT_EQ(back.last.status, ReadStatus::End);
  EXPECT_FALSE(back.trailer);
}

TEST(TraceFile, CutAtEveryByteKeepsEveryCompleteBatch) {
  TempDir dir;
  const std::string full_path = dir.file("full.data");
  const auto batches = make_batches(3, 2, 8);
  write_trace(full_path, batches);
  const std::string full = testing::read_file(full_path);
  const auto frames = frames_of(full_path);
  ASSERT_EQ(frames.size(), 5u);
  ASSERT_EQ(frames.back().end, full.size());
  const std::string path = dir.file("cut.data");
  for (std::size_t cut = 0; cut <= full.size(); ++cut) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    testing::write_file(path, full.substr(0, cut));
    auto reader = TraceFileReader::open(path);
    if (cut < kFileHeaderSize) {
      ASSERT_FALSE(reader);
      EXPECT_EQ(reader.error().message(), path + ": not a perfstream trace (shorter than the 16-byte file header)");
      continue;
    }
    if (cut < frames[0].end) {
      ASSERT_FALSE(reader);
      EXPECT_EQ(reader.error().message().rfind(path + ": the trace header (first frame, at byte 16) is ", 0), 0u)
          << reader.error().message();
      continue;
    }
    ASSERT_TRUE(reader) << reader.error().message();
    const ReadBack back = read_all(**reader);
    std::vector<std::vector<Rec>> complete;
    std::optional<std::uint64_t> cut_frame;
    for (std::size_t f = 1; f < frames.size(); ++f) {
      if (frames[f].end <= cut) {
        if (frames[f].type == FrameType::Batch) complete.push_back(batches[f - 1]);
      } else if (frames[f].offset < cut) {
        cut_frame = frames[f].offset;
      }
    }
    EXPECT_EQ(back.records, flatten(complete));
    EXPECT_EQ(back.trailer.has_value(), cut == full.size());
    if (cut_frame) {
      EXPECT_EQ(back.last.status, ReadStatus::Truncated);
      EXPECT_EQ(back.last.offset, *cut_frame);
    } else {
      EXPECT_EQ(back.last.status, ReadStatus::End);
    }
  }
}

TEST(TraceFile, FileOfOnlyTheFileHeaderHasNoTraceHeader) {
  TempDir dir;
  const std::string path = dir.file("t.data");
  testing::write_file(path, encode_file_header());
  auto reader = TraceFileReader::open(path);
  ASSERT_FALSE(reader);
  EXPECT_EQ(reader.error().message(), path + ": the trace header (first frame, at byte 16) is missing");
}

TEST(TraceFile, CorruptPayloadIsReportedAndResyncReadsOn) {
  TempDir dir;
  const std::string path = dir.file("t.data");
  const auto batches = make_batches(5, 4, 30);
  write_trace(path, batches);
  const auto frames = frames_of(path);
  ASSERT_EQ(frames.size(), 7u);
  std::string bytes = testing::read_file(path);
  bytes[frames[3].end - 1] ^= 0x01;  // the last byte of batch 2's zstd frame: its checksum
  testing::write_file(path, bytes);

  auto reader = open_reader(path);
  ReadBack back = read_all(*reader);
  EXPECT_EQ(back.records, flatten({batches[0], batches[1]}));
  EXPECT_EQ(back.last.status, ReadStatus::Corrupt);
  EXPECT_EQ(back.last.offset, frames[3].offset);
  EXPECT_EQ(back.last.message, "corrupt frame at byte " + std::to_string(frames[3].offset) +
                                   ": zstd frame: Restored data doesn't match checksum");
  // Stopped until told to resync.
  EXPECT_EQ(reader->next().status, ReadStatus::End);

  ASSERT_TRUE(reader->resync());
  EXPECT_EQ(reader->offset(), frames[4].offset);
  ReadBack rest = read_all(*reader);
  EXPECT_EQ(rest.records, flatten({batches[3], batches[4]}));
  EXPECT_EQ(rest.sequences, (std::vector<std::uint64_t>{3, 4}));
  EXPECT_TRUE(rest.trailer);
  EXPECT_EQ(rest.last.status, ReadStatus::End);
}

TEST(TraceFile, CorruptFrameHeaderIsReportedAndResyncReadsOn) {
  TempDir dir;
  const std::string path = dir.file("t.data");
  const auto batches = make_batches(4, 3, 30);
  write_trace(path, batches);
  const auto frames = frames_of(path);
  std::string bytes = testing::read_file(path);
  bytes[frames[2].offset + 9] ^= 0x40;  // batch 1's payload length
  testing::write_file(path, bytes);

  auto reader = open_reader(path);
  ReadBack back = read_all(*reader);
  EXPECT_EQ(back.records, flatten({batches[0]}));
  EXPECT_EQ(back.last.status, ReadStatus::Corrupt);
  EXPECT_EQ(back.last.offset, frames[2].offset);
  EXPECT_EQ(back.last.message,
            "corrupt frame at byte " + std::to_string(frames[2].offset) + ": frame header checksum mismatch");
  ASSERT_TRUE(reader->resync());
  ReadBack rest = read_all(*reader);
  EXPECT_EQ(rest.records, flatten({batches[2], batches[3]}));
  EXPECT_EQ(rest.last.status, ReadStatus::End);
}

TEST(TraceFile, ResyncWithNothingAfterTheDamageEnds) {
  TempDir dir;
  const std::string path = dir.file("t.data");
  const auto batches = make_batches(2, 3, 30);
  write_trace(path, batches);
  const auto frames = frames_of(path);
  std::string bytes = testing::read_file(path);
  bytes[frames.back().offset] = 'X';  // the trailer's magic
  testing::write_file(path, bytes);

  auto reader = open_reader(path);
  ReadBack back = read_all(*reader);
  EXPECT_EQ(back.records, flatten(batches));
  EXPECT_EQ(back.last.status, ReadStatus::Corrupt);
  EXPECT_EQ(back.last.offset, frames.back().offset);
  EXPECT_FALSE(reader->resync());
  EXPECT_EQ(reader->next().status, ReadStatus::End);
}

TEST(TraceFile, ResyncSkipsAFrameMagicWhoseHeaderDoesNotCheckOut) {
  TempDir dir;
  const std::string path = dir.file("t.data");
  // Batch 0 carries the frame magic in its (incompressible, so stored raw) payload: resync, scanning from
  // batch 0's damaged header, meets that magic first and must not stop at it.
  std::vector<std::vector<Rec>> batches = make_batches(3, 1, 0);
  batches[0][0].payload = random_bytes(50, 1) + "PSFR" + random_bytes(50, 2);
  write_trace(path, batches);
  const auto frames = frames_of(path);
  std::string bytes = testing::read_file(path);
  const std::size_t fake = bytes.find("PSFR", frames[1].offset + 4);
  ASSERT_LT(fake, frames[2].offset);  // the magic inside batch 0's frame
  bytes[frames[1].offset] = 'Q';      // batch 0's own magic
  testing::write_file(path, bytes);

  auto reader = open_reader(path);
  ReadBack back = read_all(*reader);
  EXPECT_EQ(back.last.status, ReadStatus::Corrupt);
  EXPECT_EQ(back.last.offset, frames[1].offset);
  ASSERT_TRUE(reader->resync());
  EXPECT_EQ(reader->offset(), frames[2].offset);
  ReadBack rest = read_all(*reader);
  EXPECT_EQ(rest.records, flatten({batches[1], batches[2]}));
}

TEST(TraceFile, OpenRefusesAFileThatIsNotATrace) {
  TempDir dir;
  const std::string path = dir.file("notes.txt");
  testing::write_file(path, "this is a text file, long enough to hold a header\n");
  auto reader = TraceFileReader::open(path);
  ASSERT_FALSE(reader);
  EXPECT_EQ(reader.error().message(), path + ": not a perfstream trace (no PERFSTRM magic at the start)");
}

TEST(TraceFile, OpenRefusesAnEmptyFile) {
  TempDir dir;
  const std::string path = dir.file("empty.data");
  testing::write_file(path, "");
  auto reader = TraceFileReader::open(path);
  ASSERT_FALSE(reader);
  EXPECT_EQ(reader.error().message(), path + ": not a perfstream trace (shorter than the 16-byte file header)");
}

TEST(TraceFile, OpenRefusesAMissingFile) {
  TempDir dir;
  const std::string path = dir.file("absent.data");
  auto reader = TraceFileReader::open(path);
  ASSERT_FALSE(reader);
  EXPECT_EQ(reader.error().message(), "opening trace file " + path + ": No such file or directory");
  EXPECT_EQ(reader.error().errnum(), ENOENT);
}

TEST(TraceFile, OpenRefusesANewerFormatVersion) {
  TempDir dir;
  const std::string path = dir.file("v4.data");
  testing::write_file(path, std::string("PERFSTRM\x04\x00\x00\x00\x00\x00\x00\x00", 16) + std::string(40, '\0'));
  auto reader = TraceFileReader::open(path);
  ASSERT_FALSE(reader);
  EXPECT_EQ(reader.error().message(), path + ": format version 4; this perfstream reads versions 1 to 3");
}

// The file's version is its TraceHeader's: a sink that stores a version 1 collector's stream writes a version
// 1 file, a version 2 one a version 2 file, and both read back.
TEST(TraceFile, TheFileHeaderCarriesTheTraceHeadersFormatVersion) {
  TempDir dir;
  for (std::uint32_t version : {0u, 1u, 2u}) {
    const std::string path = dir.file("v" + std::to_string(version) + ".data");
    TraceWriterOptions options;
    options.path = path;
    v1::TraceHeader h = test_header();
    h.set_format_version(version);
    auto w = TraceFileWriter::create(options, h);
    ASSERT_TRUE(w) << w.error().message();
    ASSERT_TRUE((*w)->close(v1::TraceTrailer()));
    EXPECT_EQ(testing::read_file(path).substr(8, 4), std::string(1, static_cast<char>(version == 0 ? 1 : version)) +
                                                         std::string(3, '\0'));
    auto reader = TraceFileReader::open(path);
    ASSERT_TRUE(reader) << reader.error().message();
    EXPECT_EQ((*reader)->header().format_version(), version);
  }
}

TEST(TraceFile, CreateOnAFullDeviceFailsNamingTheFileAndTheCause) {
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full in this environment";
  TraceWriterOptions options;
  options.path = "/dev/full";
  auto w = TraceFileWriter::create(options, test_header());
  ASSERT_FALSE(w);
  EXPECT_NE(w.error().message().find("/dev/full"), std::string::npos) << w.error().message();
  EXPECT_NE(w.error().message().find("No space left on device"), std::string::npos) << w.error().message();
  EXPECT_EQ(w.error().errnum(), ENOSPC);
}

TEST(TraceFile, CreateInAMissingDirectoryFailsNamingTheFile) {
  TempDir dir;
  TraceWriterOptions options;
  options.path = dir.file("no/such/dir/t.data");
  auto w = TraceFileWriter::create(options, test_header());
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().message(), "creating trace file " + options.path + ": No such file or directory");
}

// --- BatchingConsumer ------------------------------------------------------------------------------------

// A sink that keeps every batch it accepts (decoded) and refuses the calls it is told to.
class TestSink : public BatchSink {
 public:
  std::set<int> refuse;  // call numbers (from 0) to refuse
  int calls = 0;
  std::vector<v1::Batch> batches;
  std::vector<EncodedBatch> encoded;

  Status write_batch(const EncodedBatch& batch) override {
    const int call = calls++;
    if (refuse.count(call) != 0) return Error("spool full (test sink)");
    std::string message;
    if (auto st = decompressor_.decompress(batch.compressed, kMaxMessageSize, message); !st) return st;
    v1::Batch b;
    if (!b.ParseFromString(message)) return Error("test sink: not a batch");
    batches.push_back(b);
    encoded.push_back(batch);
    return {};
  }

 private:
  ZstdDecompressor decompressor_ = decompressor();
};

struct Samples {
  std::vector<std::string> payloads;
  std::vector<SampleView> views;
};

Samples make_samples(std::size_t n) {
  Samples s;
  s.payloads.reserve(n);
  for (std::size_t i = 0; i < n; ++i) s.payloads.push_back("payload-" + std::to_string(i));
  for (std::size_t i = 0; i < n; ++i) {
    SampleView v;
    v.time = 1000 + i * 10;
    v.cpu = static_cast<std::uint32_t>(i % 3);
    v.raw = bytes_of(s.payloads[i]);
    s.views.push_back(v);
  }
  return s;
}

// A consumer, its worker and the worker's sink, as a reader thread of `record` has them (with `layout`, its
// batches hold column groups).
struct Pipeline {
  explicit Pipeline(BatchSink& sink, BatchLimits limits = {}, std::shared_ptr<const ColumnarLayout> layout = nullptr)
      : worker(compressor(), sink, counters), consumer(limits, worker, CLOCK_MONOTONIC, std::move(layout)) {}
  PipelineCounters counters;
  BatchWorker worker;
  BatchingConsumer consumer;
};

std::uint64_t monotonic_now() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

TEST(BatchingConsumer, WritesEveryRecordThroughATraceFileInOrder) {
  TempDir dir;
  const std::string path = dir.file("t.data");
  TraceWriterOptions options;
  options.path = path;
  auto writer = make_writer(options, test_header());
  BatchLimits limits;
  limits.max_records = 10;
  const Samples samples = make_samples(95);
  PipelineCounters* counters = nullptr;
  {
    Pipeline p(*writer, limits);
    counters = &p.counters;
    for (const auto& v : samples.views) p.consumer.on_sample(v.cpu, v);
    p.consumer.on_pass_end(0);
    p.consumer.on_stop();
    p.worker.finish();
    EXPECT_FALSE(p.worker.first_error());
    EXPECT_EQ(counters->batches.load(), 10u);
    EXPECT_EQ(counters->records.load(), 95u);
    EXPECT_EQ(counters->dropped_batches.load(), 0u);
    EXPECT_GT(counters->compressed_bytes.load(), 0u);
  }
  ASSERT_TRUE(writer->close(v1::TraceTrailer()));

  auto reader = open_reader(path);
  const ReadBack back = read_all(*reader);
  std::vector<Rec> expected;
  for (std::size_t i = 0; i < samples.views.size(); ++i) {
    expected.push_back(Rec{samples.views[i].time, samples.views[i].cpu, samples.payloads[i]});
  }
  EXPECT_EQ(back.records, expected);
  EXPECT_EQ(back.sequences, (std::vector<std::uint64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  ASSERT_TRUE(back.trailer);
  EXPECT_EQ(back.trailer->records(), 95u);
}

// The column plans of a recording with one event type, of kind 3.
std::shared_ptr<const ColumnarLayout> kind3_layout(std::uint32_t fixed_size, std::initializer_list<v1::Field> fields) {
  v1::TraceHeader h;
  v1::EventSchema& schema = *h.add_events();
  schema.set_kind(3);
  schema.set_name("kind3");
  schema.set_fixed_size(fixed_size);
  for (const v1::Field& f : fields) *schema.add_fields() = f;
  return std::make_shared<const ColumnarLayout>(ColumnarLayout::from_schemas(h.events()));
}

// A reader's views live until its pass ends (RecordConsumer::on_pass_end), and the consumer's encoder reads
// column groups' payloads a block at a time: on_pass_end reads what is left, so bytes the ring reuses after
// the pass do not reach the batch.
TEST(BatchingConsumer, ReadsEveryViewOfAPassBeforeThePassEnds) {
  TestSink sink;
  Pipeline p(sink, BatchLimits{},
             kind3_layout(16, {testing::schema_field("kind", v1::Field::UNSIGNED, 0, 4),
                               testing::schema_field("seq", v1::Field::UNSIGNED, 8, 8),
                               testing::schema_field("name", v1::Field::STRING, 16, 32, "", true)}));
  BatchingConsumer& consumer = p.consumer;
  std::vector<std::string> expected;
  // Two passes of 100 and 30 records: a block of 64 is read during the pass, the other 36 and then 30 only
  // when the pass ends; the ring's bytes are scribbled over right after each pass.
  for (const int n : {100, 30}) {
    std::vector<std::string> ring;
    for (int i = 0; i < n; ++i) {
      std::string record(16, '\0');
      const std::uint32_t kind = 3;
      const std::uint64_t seq = expected.size();
      std::memcpy(record.data(), &kind, 4);
      std::memcpy(record.data() + 8, &seq, 8);
      record += "/tmp/file-" + std::to_string(seq % 7);
      ring.push_back(record);
      expected.push_back(record);
    }
    consumer.on_pass_begin(0);
    for (std::size_t i = 0; i < ring.size(); ++i) {
      SampleView v;
      v.time = 1000 + i;
      v.raw = bytes_of(ring[i]);
      consumer.on_sample(0, v);
    }
    consumer.on_pass_end(0);
    for (std::string& record : ring) std::fill(record.begin(), record.end(), '\xff');
  }
  consumer.on_stop();
  p.worker.finish();
  ASSERT_FALSE(p.worker.first_error());
  ASSERT_EQ(sink.batches.size(), 1u);
  ASSERT_EQ(sink.batches[0].groups_size(), 1);  // the records went into a column group
  auto view = BatchView::parse(sink.batches[0].SerializeAsString());
  ASSERT_TRUE(view) << view.error().message();
  ASSERT_EQ(view->size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto r = view->record(i);
    ASSERT_EQ(std::string(r.payload.data(), r.payload.size()), expected[i]) << "record " << i;
  }
}

// Records not read yet count their tails whole, but a tail seen before costs a byte or two: a batch must
// still close where one read record by record would, not when the guess reaches max_bytes.
TEST(BatchingConsumer, ClosesAColumnarBatchWhereReadingRecordByRecordWould) {
  const auto layout = kind3_layout(8, {testing::schema_field("kind", v1::Field::UNSIGNED, 0, 4),
                                       testing::schema_field("data", v1::Field::STRING, 8, 4096, "", true)});
  BatchLimits limits;
  limits.max_bytes = 64 << 10;
  // 1000-byte tails, five of them taking turns in runs of 50.
  std::vector<std::string> records;
  for (int i = 0; i < 6000; ++i) {
    std::string p(8, '\0');
    const std::uint32_t kind = 3;
    std::memcpy(p.data(), &kind, 4);
    records.push_back(p + std::string(1000, static_cast<char>('a' + (i / 50) % 5)));
  }
  // Where a batch read record by record closes.
  std::vector<std::uint64_t> expected;
  {
    BatchEncoder one(layout);
    for (std::size_t i = 0; i < records.size(); ++i) {
      one.add_record(1000 + i, 0, bytes_of(records[i]));
      if (one.encoded_size_estimate() >= limits.max_bytes) {
        expected.push_back(one.record_count());
        one.reset();
      }
    }
    if (one.record_count() != 0) expected.push_back(one.record_count());
  }
  ASSERT_GT(expected.size(), 1u);
  TestSink sink;
  Pipeline p(sink, limits, layout);
  BatchingConsumer& consumer = p.consumer;
  for (std::size_t i = 0; i < records.size(); i += 100) {  // passes of 100 records
    consumer.on_pass_begin(0);
    for (std::size_t k = i; k < std::min(records.size(), i + 100); ++k) {
      SampleView v;
      v.time = 1000 + k;
      v.raw = bytes_of(records[k]);
      consumer.on_sample(0, v);
    }
    consumer.on_pass_end(0);
  }
  consumer.on_stop();
  p.worker.finish();
  ASSERT_FALSE(p.worker.first_error());
  std::vector<std::uint64_t> got;
  for (const v1::Batch& b : sink.batches) got.push_back(b.record_count());
  EXPECT_EQ(got, expected);
}

// Hands `views` to the consumer as drain_ring would: in passes of `pass` records, each in blocks of `block`
// (on_samples), or one on_sample call a record when `block` is 0.
void take_in_passes(BatchingConsumer& consumer, const std::vector<SampleView>& views, std::size_t pass,
                    std::size_t block) {
  for (std::size_t i = 0; i < views.size(); i += pass) {
    const std::size_t end = std::min(views.size(), i + pass);
    consumer.on_pass_begin(0);
    for (std::size_t k = i; k < end; k += block == 0 ? 1 : block) {
      if (block == 0) {
        consumer.on_sample(0, views[k]);
      } else {
        consumer.on_samples(0, std::span<const SampleView>(views.data() + k, std::min(block, end - k)));
      }
    }
    consumer.on_pass_end(0);
  }
}

// Small records are added many at a time without a look at the estimate (BatchEncoder::most_bytes_added):
// the batches still close at the record where a batch read record by record reaches max_bytes.
TEST(BatchingConsumer, SmallRecordsAddedUncheckedStillCloseWhereReadingRecordByRecordWould) {
  const auto layout = kind3_layout(8, {testing::schema_field("kind", v1::Field::UNSIGNED, 0, 4),
                                       testing::schema_field("v", v1::Field::UNSIGNED, 4, 4),
                                       testing::schema_field("data", v1::Field::STRING, 8, 4096, "", true)});
  BatchLimits limits;
  limits.max_bytes = 16 << 10;
  std::vector<std::string> records;
  std::uint32_t x = 12345;
  for (int i = 0; i < 20000; ++i) {
    x = x * 1103515245 + 12345;
    std::string p(8, '\0');
    const std::uint32_t kind = 3, v = x >> 8;
    std::memcpy(p.data(), &kind, 4);
    std::memcpy(p.data() + 4, &v, 4);
    records.push_back(p + std::string((x >> 4) % 40, static_cast<char>('a' + (x >> 12) % 26)));
  }
  std::vector<std::uint64_t> expected;
  {
    BatchEncoder one(layout);
    for (std::size_t i = 0; i < records.size(); ++i) {
      one.add_record(1000 + 3 * i, 0, bytes_of(records[i]));
      if (one.encoded_size_estimate() >= limits.max_bytes) {
        expected.push_back(one.record_count());
        one.reset();
      }
    }
    if (one.record_count() != 0) expected.push_back(one.record_count());
  }
  ASSERT_GT(expected.size(), 5u);
  std::vector<SampleView> views;
  for (std::size_t k = 0; k < records.size(); ++k) {
    SampleView v;
    v.time = 1000 + 3 * k;
    v.raw = bytes_of(records[k]);
    views.push_back(v);
  }
  TestSink sink;
  Pipeline p(sink, limits, layout);
  take_in_passes(p.consumer, views, 1000, 32);
  p.consumer.on_stop();
  p.worker.finish();
  ASSERT_FALSE(p.worker.first_error());
  std::vector<std::uint64_t> got;
  for (const v1::Batch& b : sink.batches) got.push_back(b.record_count());
  EXPECT_EQ(got, expected);
}

// drain_ring hands samples over in blocks (on_samples): the batches are the same, byte for byte and closed
// at the same records, as when the same samples come one on_sample call at a time.
TEST(BatchingConsumer, SamplesTakenInBlocksMakeTheSameBatchesAsOneAtATime) {
  const auto layout = kind3_layout(8, {testing::schema_field("kind", v1::Field::UNSIGNED, 0, 4),
                                       testing::schema_field("data", v1::Field::STRING, 8, 4096, "", true)});
  BatchLimits limits;
  limits.max_bytes = 32 << 10;
  std::vector<std::string> records;
  std::vector<SampleView> views;
  for (int i = 0; i < 3000; ++i) {
    std::string p(8, '\0');
    const std::uint32_t kind = 3;
    std::memcpy(p.data(), &kind, 4);
    records.push_back(p + std::string(100 + i % 300, static_cast<char>('a' + (i / 7) % 11)));
  }
  std::uint64_t t = 1000;
  for (std::size_t i = 0; i < records.size(); ++i) {
    t += i % 500 == 499 ? std::uint64_t{1} << 40 : 3;  // now and then a wider time delta
    SampleView v;
    v.time = t;
    v.raw = bytes_of(records[i]);
    views.push_back(v);
  }
  auto batches = [&](bool blocks) {
    TestSink sink;
    Pipeline p(sink, limits, layout);
    take_in_passes(p.consumer, views, 100, blocks ? 32 : 0);
    p.consumer.on_stop();
    p.worker.finish();
    EXPECT_FALSE(p.worker.first_error());
    std::vector<std::string> out;
    for (v1::Batch b : sink.batches) {
      b.clear_watermark_ns();  // the clock's, at each pass
      out.push_back(b.SerializeAsString());
    }
    return out;
  };
  const auto one_at_a_time = batches(false);
  ASSERT_GT(one_at_a_time.size(), 3u);
  EXPECT_EQ(batches(true), one_at_a_time);
}

// A time delta wider than every one before widens each record's time planes (format version 3): the batch
// closes before that record when the widening would take it past the limit, not after, 7 bytes a record over.
TEST(BatchingConsumer, AWiderTimeDeltaClosesTheBatchBeforeItTakesThePlanesPastTheLimit) {
  const auto layout = kind3_layout(8, {testing::schema_field("kind", v1::Field::UNSIGNED, 0, 4),
                                       testing::schema_field("v", v1::Field::UNSIGNED, 4, 4)});
  BatchLimits limits;
  limits.max_bytes = 64 << 10;
  TestSink sink;
  Pipeline p(sink, limits, layout);
  std::vector<std::uint64_t> times;
  std::uint64_t t = 1000;
  for (std::uint32_t i = 0; i < 20000; ++i) {
    t += i == 7000 || i == 15000 ? std::uint64_t{1} << 60 : 1;  // 1-byte deltas, then two 8-byte ones
    times.push_back(t);
  }
  p.consumer.on_pass_begin(0);
  std::string payload(8, '\0');
  for (std::uint32_t i = 0; i < times.size(); ++i) {
    const std::uint32_t kind = 3, v = i % 100;
    std::memcpy(payload.data(), &kind, 4);
    std::memcpy(payload.data() + 4, &v, 4);
    SampleView view;
    view.time = times[i];
    view.raw = bytes_of(payload);
    p.consumer.on_sample(0, view);
  }
  p.consumer.on_pass_end(0);
  p.consumer.on_stop();
  p.worker.finish();
  ASSERT_FALSE(p.worker.first_error());
  ASSERT_GE(sink.batches.size(), 3u);
  std::size_t records = 0;
  for (const v1::Batch& b : sink.batches) {
    EXPECT_LE(b.ByteSizeLong(), limits.max_bytes + 64) << "batch " << b.sequence() << " of " << b.record_count();
    EXPECT_EQ(b.time_deltas_size(), 0);
    records += b.record_count();
  }
  EXPECT_EQ(records, times.size());
  // The first batch closed before the first wide delta (its records, 1 byte of time each, came nowhere near
  // the limit by themselves), and the wide record opened the next one.
  EXPECT_EQ(sink.batches[0].record_count(), 7000u);
  EXPECT_EQ(sink.batches[1].first_time_ns(), times[7000]);
}

TEST(BatchingConsumer, ClosesABatchAtMaxBytes) {
  TestSink sink;
  BatchLimits limits;
  limits.max_bytes = 200;
  const std::string big(150, 'b');
  Pipeline p(sink, limits);
  SampleView v;
  v.raw = bytes_of(big);
  for (int i = 0; i < 3; ++i) p.consumer.on_sample(0, v);
  p.worker.wait_idle();
  EXPECT_EQ(sink.batches.size(), 3u);  // each record alone passes the limit
}

TEST(BatchingConsumer, KernelLossGoesIntoTheBatchBeforeTheNextRecord) {
  TestSink sink;
  Pipeline p(sink);
  const Samples samples = make_samples(2);
  p.consumer.on_sample(0, samples.views[0]);
  LostView lost;
  lost.lost = 12;
  lost.time = 1005;
  lost.cpu = 2;
  lost.has_sample_id = true;
  p.consumer.on_lost(0, lost);
  LostView lost_without_id;
  lost_without_id.lost = 3;
  p.consumer.on_lost(1, lost_without_id);  // no sample_id: the ring's CPU
  p.consumer.on_sample(0, samples.views[1]);
  p.consumer.on_stop();
  p.worker.finish();
  ASSERT_EQ(sink.batches.size(), 1u);
  const v1::Batch& b = sink.batches[0];
  ASSERT_EQ(b.lost_size(), 2);
  EXPECT_EQ(b.lost(0).cpu(), 2u);
  EXPECT_EQ(b.lost(0).count(), 12u);
  EXPECT_EQ(b.lost(0).time_ns(), 1005u);
  EXPECT_EQ(b.lost(0).before(), 1u);
  EXPECT_EQ(b.lost(0).source(), v1::LostNotice::KERNEL);
  EXPECT_EQ(b.lost(1).cpu(), 1u);
  EXPECT_EQ(b.lost(1).count(), 3u);
  EXPECT_EQ(sink.encoded[0].lost, 15u);
  EXPECT_EQ(sink.encoded[0].lost_notices, 2u);
}

TEST(BatchingConsumer, ARefusedBatchIsCountedAndReportedBeforeTheNextBatch) {
  TestSink sink;
  sink.refuse = {1};  // the second batch
  BatchLimits limits;
  limits.max_records = 3;
  const Samples samples = make_samples(9);
  Pipeline p(sink, limits);
  for (const auto& v : samples.views) p.consumer.on_sample(v.cpu, v);
  p.consumer.on_stop();
  p.worker.finish();

  ASSERT_TRUE(p.worker.first_error());
  EXPECT_EQ(p.worker.first_error()->message(), "spool full (test sink)");
  EXPECT_EQ(p.counters.dropped_batches.load(), 1u);
  EXPECT_EQ(p.counters.dropped_records.load(), 3u);
  EXPECT_EQ(p.counters.records.load(), 6u);
  ASSERT_EQ(sink.batches.size(), 3u);
  EXPECT_EQ(sink.batches[0].sequence(), 0u);
  const v1::Batch& notice = sink.batches[1];
  EXPECT_EQ(notice.sequence(), 2u);  // sequence 1 was the refused batch
  EXPECT_EQ(notice.record_count(), 0u);
  ASSERT_EQ(notice.lost_size(), 1);
  EXPECT_EQ(notice.lost(0).source(), v1::LostNotice::COLLECTOR);
  EXPECT_EQ(notice.lost(0).count(), 3u);
  EXPECT_GT(notice.lost(0).time_ns(), 0u);
  EXPECT_EQ(sink.batches[2].sequence(), 3u);
  EXPECT_EQ(sink.batches[2].record_count(), 3u);
}

TEST(BatchingConsumer, StopWithNothingPendingWritesNoBatch) {
  TestSink sink;
  Pipeline p(sink);
  p.consumer.on_tick();
  p.consumer.on_stop();
  p.worker.finish();
  EXPECT_EQ(sink.calls, 0);
}

TEST(BatchingConsumer, AgedBatchClosesAtPassEnd) {
  TestSink sink;
  BatchLimits limits;
  limits.max_age = std::chrono::milliseconds(0);
  Pipeline p(sink, limits);
  const Samples samples = make_samples(1);
  p.consumer.on_sample(0, samples.views[0]);
  p.worker.wait_idle();
  EXPECT_EQ(sink.calls, 0);
  p.consumer.on_pass_end(0);
  p.worker.wait_idle();
  EXPECT_EQ(sink.calls, 1);
}

// Two reader threads' consumers on one worker: a batch's watermark is the least of what both promised when
// it was queued, it never goes down, and it stays at or below every record still to come from either.
TEST(BatchingConsumer, TheWatermarkIsTheLeastPromiseOfEveryReaderAndNeverGoesDown) {
  TestSink sink;
  PipelineCounters counters;
  BatchWorkerOptions worker_options;
  worker_options.idle_interval = std::chrono::hours(1);  // no watermark-only batches in this test
  BatchWorker worker(compressor(), sink, counters, worker_options);
  BatchLimits limits;
  limits.max_records = 1;  // every record is a batch
  BatchingConsumer a(limits, worker), b(limits, worker);
  a.on_ring_opened(0);
  b.on_ring_opened(1);
  std::string payload = "x";
  auto record = [&](BatchingConsumer& c, unsigned cpu, std::uint64_t time) {
    c.on_pass_begin(cpu);
    SampleView v;
    v.time = time;
    v.cpu = cpu;
    v.raw = bytes_of(payload);
    c.on_sample(cpu, v);
    c.on_pass_end(cpu);
  };
  const std::uint64_t t0 = monotonic_now();
  record(a, 0, t0);  // B has promised nothing: the watermark stays 0
  worker.wait_idle();
  ASSERT_EQ(sink.batches.size(), 1u);
  EXPECT_EQ(sink.batches[0].watermark_ns(), 0u);

  std::this_thread::sleep_for(std::chrono::milliseconds(kWatermarkMarginNs / 1000000 + 10));  // past the margin
  record(b, 1, monotonic_now());
  record(a, 0, monotonic_now());
  // A batch closed in the middle of a pass carries what the passes before it promised; the next one has
  // both readers' passes that began after t0 + 60 ms.
  record(b, 1, monotonic_now());
  worker.wait_idle();
  ASSERT_EQ(sink.batches.size(), 4u);
  const std::uint64_t w = sink.batches[3].watermark_ns();
  EXPECT_GT(w, t0 + 10'000'000 - 1);
  EXPECT_LT(w, monotonic_now() - kWatermarkMarginNs + 1);
  std::uint64_t previous = 0;
  for (std::size_t i = 0; i < sink.batches.size(); ++i) {
    EXPECT_EQ(sink.batches[i].sequence(), i);
    EXPECT_GE(sink.batches[i].watermark_ns(), previous);
    previous = sink.batches[i].watermark_ns();
  }
  a.on_stop();
  b.on_stop();
  worker.finish();
  for (const auto& batch : sink.batches) {
    for (std::size_t later = 0; later < sink.batches.size(); ++later) {
      if (sink.batches[later].sequence() <= batch.sequence()) continue;
      EXPECT_GE(sink.batches[later].first_time_ns(), batch.watermark_ns()) << "a record came in below a watermark";
    }
  }
}

// A quiet reader thread's open batch holds the watermark at its first record. When a busy one writes more
// than max_watermark_lag past it, the quiet one is asked to close its batch at its next pass, not after a
// whole batch age: a reader merging the recording would otherwise hold the busy CPU's records that long.
TEST(BatchingConsumer, AQuietReaderHoldingTheWatermarkBackIsAskedToCloseItsBatchEarly) {
  TestSink sink;
  PipelineCounters counters;
  BatchWorkerOptions worker_options;
  worker_options.idle_interval = std::chrono::hours(1);
  worker_options.max_watermark_lag = std::chrono::milliseconds(200);
  BatchWorker worker(compressor(), sink, counters, worker_options);
  BatchLimits busy_limits;
  busy_limits.max_records = 1;  // every record is a batch
  BatchLimits quiet_limits;
  quiet_limits.max_age = std::chrono::hours(1);  // only a request closes the quiet one's batch
  BatchingConsumer quiet(quiet_limits, worker), busy(busy_limits, worker);
  quiet.on_ring_opened(0);
  busy.on_ring_opened(1);
  std::string payload = "x";
  auto record = [&](BatchingConsumer& c, unsigned cpu, std::uint64_t time) {
    c.on_pass_begin(cpu);
    SampleView v;
    v.time = time;
    v.cpu = cpu;
    v.raw = bytes_of(payload);
    c.on_sample(cpu, v);
    c.on_pass_end(cpu);
  };
  // Records a second old, as if the readers had fallen behind: passes now promise up to now - margin.
  const std::uint64_t t0 = monotonic_now() - 1'000'000'000;
  record(quiet, 0, t0);  // stays in the quiet one's open batch
  record(busy, 1, t0 + 100'000'000);
  worker.wait_idle();
  EXPECT_FALSE(worker.flush_requested(0)) << "100 ms ahead is within the lag allowed";
  EXPECT_EQ(sink.batches.size(), 1u);
  record(busy, 1, t0 + 300'000'000);
  worker.wait_idle();
  ASSERT_EQ(sink.batches.size(), 2u);
  EXPECT_EQ(sink.batches[1].record_count(), 1u);
  quiet.on_tick();  // the quiet reader's next flush: it closes its batch, the request is taken
  worker.wait_idle();
  ASSERT_EQ(sink.batches.size(), 3u);
  EXPECT_EQ(sink.batches[2].time_deltas(0), static_cast<std::int64_t>(0)) << "the quiet one's record";
  EXPECT_EQ(sink.batches[2].first_time_ns(), t0);
  EXPECT_FALSE(worker.flush_requested(0)) << "asked once";
  EXPECT_FALSE(worker.flush_requested(1)) << "the busy one is never asked";
  quiet.on_stop();
  busy.on_stop();
  worker.finish();
}

// A record written above the watermark of its batch would wait in a live reader for the next batch; when
// none comes, the worker writes an empty batch that carries the watermark past it.
TEST(BatchingConsumer, AnIdleWorkerMovesTheWatermarkPastWhatItWrote) {
  TestSink sink;
  PipelineCounters counters;
  BatchWorkerOptions worker_options;
  worker_options.idle_interval = std::chrono::milliseconds(20);
  BatchWorker worker(compressor(), sink, counters, worker_options);
  BatchLimits limits;
  limits.max_records = 1;
  BatchingConsumer consumer(limits, worker);
  consumer.on_ring_opened(0);
  std::string payload = "exec";
  const std::uint64_t t = monotonic_now();
  consumer.on_pass_begin(0);
  SampleView v;
  v.time = t;
  v.raw = bytes_of(payload);
  consumer.on_sample(0, v);
  consumer.on_pass_end(0);
  worker.wait_idle();
  ASSERT_EQ(sink.batches.size(), 1u);
  EXPECT_LE(sink.batches[0].watermark_ns(), t);

  // The reader goes on draining an idle ring: its promises pass t.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    consumer.on_pass_begin(0);
    consumer.on_pass_end(0);
    if (counters.batches.load() >= 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  consumer.on_stop();
  worker.finish();
  ASSERT_EQ(sink.batches.size(), 2u) << "exactly one watermark-only batch";
  EXPECT_EQ(sink.batches[1].record_count(), 0u);
  EXPECT_EQ(sink.batches[1].sequence(), 1u);
  EXPECT_GT(sink.batches[1].watermark_ns(), t);
}

}  // namespace
}  // namespace perfstream

namespace perfstream {
namespace {

// A trace file is made 0640 and never through a symlink someone planted at its path.
TEST(TraceFile, RefusesToWriteThroughASymlinkAndIsNotWorldReadable) {
  testing::TempDir dir;
  const std::string target = dir.file("victim");
  { std::ofstream(target) << "precious"; }
  const std::string path = dir.file("planted.data");
  ASSERT_EQ(::symlink(target.c_str(), path.c_str()), 0);
  TraceWriterOptions options;
  options.path = path;
  auto writer = TraceFileWriter::create(options, v1::TraceHeader());
  ASSERT_FALSE(writer);
  EXPECT_NE(writer.error().message().find(path), std::string::npos) << writer.error().message();
  std::ifstream in(target);
  std::string content;
  std::getline(in, content);
  EXPECT_EQ(content, "precious");

  options.path = dir.file("real.data");
  auto ok = TraceFileWriter::create(options, v1::TraceHeader());
  ASSERT_TRUE(ok) << ok.error().message();
  const auto perms = std::filesystem::status(options.path).permissions();
  EXPECT_EQ(perms & std::filesystem::perms::others_all, std::filesystem::perms::none);
}

}  // namespace
}  // namespace perfstream
