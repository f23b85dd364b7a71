// Endpoint parsing (tcp v4, [v6], names, unix sockets, and errors that name the text) and the collector's
// on-disk Spool: order, resend after rewind, acknowledgement by sequence, segment files deleted once fully
// acknowledged, the max_bytes bound (refused and counted), and many segments. Real files, no kernel.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "collector/format/batch_encoder.hpp"
#include "collector/format/trace_reader.hpp"
#include "collector/format/zstd_codec.hpp"
#include "collector/transport/endpoint.hpp"
#include "collector/transport/spool.hpp"
#include "testing/temp_dir.hpp"

namespace perfstream {
namespace {

using testing::TempDir;
namespace fs = std::filesystem;

// --- Endpoint ---------------------------------------------------------------------------------------------

Endpoint parse_ok(const std::string& text) {
  auto e = Endpoint::parse(text);
  if (!e) ADD_FAILURE() << text << ": " << e.error().message();
  return e ? *e : Endpoint{};
}

// The error for `text`, which must fail; it must quote the text and say what the forms are.
std::string parse_error(const std::string& text) {
  auto e = Endpoint::parse(text);
  if (e) {
    ADD_FAILURE() << "'" << text << "' parsed as " << e->to_string();
    return "";
  }
  const std::string m = e.error().message();
  EXPECT_NE(m.find("'" + text + "'"), std::string::npos) << m;
  EXPECT_NE(m.find("tcp://HOST:PORT or unix:/PATH"), std::string::npos) << m;
  return m;
}

// Found by fuzz_cli_parsers: "unix:////s" is the path "//s", which printed as "unix://s" (the path "s").
TEST(Endpoint, UnixPathStartingWithTwoSlashesPrintsBackToItself) {
  auto e = Endpoint::parse("unix:////s");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->path, "//s");
  auto again = Endpoint::parse(e->to_string());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->path, "//s");
}

TEST(Endpoint, ParsesTcpWithAnIpv4Address) {
  const Endpoint e = parse_ok("tcp://127.0.0.1:7420");
  EXPECT_EQ(e.kind, Endpoint::Kind::Tcp);
  EXPECT_EQ(e.host, "127.0.0.1");
  EXPECT_EQ(e.port, 7420);
  EXPECT_EQ(e.to_string(), "tcp://127.0.0.1:7420");
  EXPECT_TRUE(e.is_loopback());
  EXPECT_FALSE(parse_ok("tcp://10.1.2.3:1").is_loopback());
  EXPECT_TRUE(parse_ok("tcp://127.9.9.9:1").is_loopback());
}

TEST(Endpoint, ParsesTcpWithABracketedIpv6Address) {
  const Endpoint e = parse_ok("tcp://[::1]:7420");
  EXPECT_EQ(e.kind, Endpoint::Kind::Tcp);
  EXPECT_EQ(e.host, "::1");
  EXPECT_EQ(e.port, 7420);
  EXPECT_EQ(e.to_string(), "tcp://[::1]:7420");
  EXPECT_TRUE(e.is_loopback());
  const Endpoint remote = parse_ok("tcp://[fe80::1:2]:65535");
  EXPECT_EQ(remote.host, "fe80::1:2");
  EXPECT_EQ(remote.port, 65535);
  EXPECT_FALSE(remote.is_loopback());
  EXPECT_EQ(parse_ok(remote.to_string()).host, remote.host) << "to_string round-trips";
}

TEST(Endpoint, ParsesTcpWithAHostName) {
  const Endpoint e = parse_ok("tcp://sink.example.com:443");
  EXPECT_EQ(e.host, "sink.example.com");
  EXPECT_EQ(e.port, 443);
  EXPECT_FALSE(e.is_loopback());
  EXPECT_TRUE(parse_ok("tcp://localhost:9").is_loopback());
  EXPECT_EQ(parse_ok("tcp://localhost:0").port, 0) << "port 0: the sink lets the kernel choose";
}

TEST(Endpoint, ParsesUnixSocketPaths) {
  const Endpoint e = parse_ok("unix:/run/perfstream/sink.sock");
  EXPECT_EQ(e.kind, Endpoint::Kind::Unix);
  EXPECT_EQ(e.path, "/run/perfstream/sink.sock");
  EXPECT_EQ(e.to_string(), "unix:/run/perfstream/sink.sock");
  EXPECT_TRUE(e.is_loopback());
  EXPECT_EQ(parse_ok("unix:///tmp/s.sock").path, "/tmp/s.sock");
  EXPECT_EQ(parse_ok("unix:relative.sock").path, "relative.sock");
}

TEST(Endpoint, ErrorsNameTheTextAndTheCause) {
  EXPECT_NE(parse_error("").find("unknown scheme"), std::string::npos);
  EXPECT_NE(parse_error("http://127.0.0.1:80").find("unknown scheme"), std::string::npos);
  EXPECT_NE(parse_error("127.0.0.1:80").find("unknown scheme"), std::string::npos);
  EXPECT_NE(parse_error("tcp://127.0.0.1").find("no port"), std::string::npos);
  EXPECT_NE(parse_error("tcp://:80").find("no host"), std::string::npos);
  EXPECT_NE(parse_error("tcp://h:").find("port ''"), std::string::npos);
  EXPECT_NE(parse_error("tcp://h:65536").find("port '65536'"), std::string::npos);
  EXPECT_NE(parse_error("tcp://h:12ab").find("port '12ab'"), std::string::npos);
  EXPECT_NE(parse_error("tcp://h:-1").find("port '-1'"), std::string::npos);
  EXPECT_NE(parse_error("tcp://[::1:80").find("unclosed ["), std::string::npos);
  EXPECT_NE(parse_error("tcp://[::1]").find("no port"), std::string::npos);
  EXPECT_NE(parse_error("tcp://[::1]80").find("no port"), std::string::npos);
  EXPECT_NE(parse_error("tcp://[]:80").find("no host"), std::string::npos);
  EXPECT_NE(parse_error("unix:").find("no socket path"), std::string::npos);
  EXPECT_NE(parse_error("unix://").find("no socket path"), std::string::npos);
}

TEST(Endpoint, AnIpv6AddressWithoutBracketsIsRefused) {
  // Otherwise "tcp://fe80::1" would be host "fe80:" and port 1.
  EXPECT_NE(parse_error("tcp://fe80::1").find("brackets"), std::string::npos);
  EXPECT_NE(parse_error("tcp://::1:80").find("brackets"), std::string::npos);
}

TEST(Endpoint, AUnixPathTooLongForASocketIsRefused) {
  // sun_path holds 107 bytes and a NUL; Asio would throw on a longer one, from the sender's thread.
  const std::string ok = "/" + std::string(106, 'p');
  EXPECT_EQ(parse_ok("unix:" + ok).path, ok);
  EXPECT_NE(parse_error("unix:/" + std::string(107, 'p')).find("longer than"), std::string::npos);
}

// --- Spool ------------------------------------------------------------------------------------------------

std::string blob(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng());
  return out;
}

std::unique_ptr<Spool> make_spool(const std::string& dir, std::uint64_t max_bytes, std::uint64_t segment_bytes = 16u << 20) {
  auto s = Spool::create(dir, max_bytes, segment_bytes);
  if (!s) throw std::runtime_error(s.error().message());
  return std::move(*s);
}

// Spool::next_unsent on a spool whose files are sound: true when it gave a batch; a read error fails the test.
bool next_batch(Spool& spool, std::uint64_t* sequence, std::string* bytes) {
  auto got = spool.next_unsent(sequence, bytes);
  if (!got) ADD_FAILURE() << got.error().message();
  return got && *got;
}

std::size_t files_in(const std::string& dir) {
  std::size_t n = 0;
  for (const auto& entry : fs::directory_iterator(dir)) n += entry.is_regular_file();
  return n;
}

std::uint64_t bytes_in(const std::string& dir) {
  std::uint64_t n = 0;
  for (const auto& entry : fs::directory_iterator(dir)) n += entry.is_regular_file() ? entry.file_size() : 0;
  return n;
}

TEST(Spool, SendsBatchesInOrderWithTheirBytes) {
  TempDir dir;
  auto spool = make_spool(dir.file("spool"), 1 << 20);
  std::atomic<int> notified{0};
  spool->set_notify([&] { ++notified; });
  for (std::uint64_t s = 0; s < 10; ++s) ASSERT_TRUE(spool->append(s, blob(100 + s, static_cast<std::uint32_t>(s))));
  EXPECT_EQ(notified.load(), 10);
  EXPECT_EQ(spool->pending_batches(), 10u);
  EXPECT_EQ(spool->pending_bytes(), 10 * 16 + 1000 + 45u) << "frame header + payload each";
  EXPECT_EQ(spool->inflight_batches(), 0u);
  std::uint64_t seq = 99;
  std::string bytes;
  for (std::uint64_t s = 0; s < 10; ++s) {
    ASSERT_TRUE(next_batch(*spool, &seq, &bytes));
    EXPECT_EQ(seq, s);
    EXPECT_EQ(bytes, blob(100 + s, static_cast<std::uint32_t>(s)));
  }
  EXPECT_FALSE(next_batch(*spool, &seq, &bytes));
  EXPECT_EQ(spool->inflight_batches(), 10u);
  EXPECT_EQ(spool->pending_batches(), 10u) << "sent is not acknowledged";
}

TEST(Spool, RewindResendsEverythingNotAcknowledged) {
  TempDir dir;
  auto spool = make_spool(dir.file("spool"), 1 << 20);
  for (std::uint64_t s = 0; s < 8; ++s) ASSERT_TRUE(spool->append(s, "batch-" + std::to_string(s)));
  std::uint64_t seq = 0;
  std::string bytes;
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(next_batch(*spool, &seq, &bytes));
  spool->acknowledge(3);  // 0, 1, 2 stored at the sink
  EXPECT_EQ(spool->pending_batches(), 5u);
  EXPECT_EQ(spool->inflight_batches(), 3u);
  spool->rewind();  // a new connection
  EXPECT_EQ(spool->inflight_batches(), 0u);
  std::vector<std::uint64_t> resent;
  while (next_batch(*spool, &seq, &bytes)) {
    EXPECT_EQ(bytes, "batch-" + std::to_string(seq));
    resent.push_back(seq);
  }
  EXPECT_EQ(resent, (std::vector<std::uint64_t>{3, 4, 5, 6, 7}));
}

TEST(Spool, AcknowledgesBySequenceNotByPosition) {
  TempDir dir;
  auto spool = make_spool(dir.file("spool"), 1 << 20);
  // Reader threads append in whatever order their batches close.
  for (std::uint64_t s : {5u, 3u, 4u, 0u, 7u, 1u}) ASSERT_TRUE(spool->append(s, "b" + std::to_string(s)));
  spool->acknowledge(4);
  std::uint64_t seq = 0;
  std::string bytes;
  std::vector<std::uint64_t> left;
  while (next_batch(*spool, &seq, &bytes)) left.push_back(seq);
  EXPECT_EQ(left, (std::vector<std::uint64_t>{5, 4, 7}));
  spool->acknowledge(2);  // an older ack changes nothing
  EXPECT_EQ(spool->pending_batches(), 3u);
  EXPECT_EQ(spool->pending_bytes(), 3 * (16u + 2u));
}

TEST(Spool, DeletesASegmentOnceEveryBatchInItIsAcknowledged) {
  TempDir dir;
  const std::string sdir = dir.file("spool");
  auto spool = make_spool(sdir, 64 << 20, 64 << 10);  // 64 KiB segments (the smallest)
  const std::size_t size = 10000;                      // 6 frames per segment
  for (std::uint64_t s = 0; s < 40; ++s) ASSERT_TRUE(spool->append(s, blob(size, static_cast<std::uint32_t>(s))));
  EXPECT_EQ(files_in(sdir), 7u);
  spool->acknowledge(12);  // exactly the first two segments
  EXPECT_EQ(files_in(sdir), 5u);
  spool->acknowledge(13);  // one batch of the third: it stays
  EXPECT_EQ(files_in(sdir), 5u);
  spool->acknowledge(36);
  EXPECT_EQ(files_in(sdir), 1u) << "only the current segment is left";
  // The rest is still readable, from the right places.
  std::uint64_t seq = 0;
  std::string bytes;
  for (std::uint64_t s = 36; s < 40; ++s) {
    ASSERT_TRUE(next_batch(*spool, &seq, &bytes));
    EXPECT_EQ(seq, s);
    EXPECT_EQ(bytes, blob(size, static_cast<std::uint32_t>(s)));
  }
  spool->acknowledge(40);
  EXPECT_EQ(spool->pending_batches(), 0u);
  EXPECT_EQ(spool->pending_bytes(), 0u);
  EXPECT_EQ(bytes_in(sdir), 0u) << "an emptied current segment starts over";
}

TEST(Spool, RefusesPastMaxBytesAndCountsEveryRefusal) {
  TempDir dir;
  const std::size_t size = 1000;
  const std::uint64_t frame = 16 + size;
  auto spool = make_spool(dir.file("spool"), 10 * frame);
  for (std::uint64_t s = 0; s < 10; ++s) ASSERT_TRUE(spool->append(s, blob(size, 1)));
  EXPECT_EQ(spool->pending_bytes(), 10 * frame);
  for (std::uint64_t s = 10; s < 13; ++s) {
    Status st = spool->append(s, blob(size, 1));
    ASSERT_FALSE(st);
    EXPECT_NE(st.error().message().find("full"), std::string::npos) << st.error().message();
    EXPECT_NE(st.error().message().find(dir.file("spool")), std::string::npos) << st.error().message();
  }
  EXPECT_EQ(spool->refused_batches(), 3u);
  EXPECT_EQ(spool->pending_batches(), 10u) << "a refused batch is not stored";
  EXPECT_FALSE(spool->append(13, "")) << "not even a frame header fits";
  EXPECT_EQ(spool->refused_batches(), 4u);
  spool->acknowledge(3);
  EXPECT_TRUE(spool->append(14, blob(size, 2))) << "acknowledged bytes make room again";
  EXPECT_EQ(spool->refused_batches(), 4u);
}

TEST(Spool, SurvivesManySegmentsWithInterleavedAcknowledgements) {
  TempDir dir;
  const std::string sdir = dir.file("spool");
  auto spool = make_spool(sdir, 4 << 20, 64 << 10);
  std::mt19937 rng(7);
  std::uint64_t next_append = 0, next_send = 0;
  std::size_t max_files = 0;
  std::uint64_t seq = 0;
  std::string bytes;
  while (next_append < 3000) {
    const int burst = static_cast<int>(rng() % 20);
    for (int i = 0; i < burst && next_append < 3000; ++i, ++next_append) {
      ASSERT_TRUE(spool->append(next_append, blob(500 + next_append % 3000, static_cast<std::uint32_t>(next_append))));
    }
    while (spool->inflight_batches() < 32 && next_batch(*spool, &seq, &bytes)) {
      ASSERT_EQ(seq, next_send);
      ASSERT_EQ(bytes, blob(500 + seq % 3000, static_cast<std::uint32_t>(seq)));
      ++next_send;
    }
    spool->acknowledge(next_send > 10 ? next_send - 10 : 0);  // the sink lags a little
    max_files = std::max(max_files, files_in(sdir));
  }
  while (next_batch(*spool, &seq, &bytes)) ASSERT_EQ(seq, next_send++);
  EXPECT_EQ(next_send, 3000u);
  EXPECT_GT(max_files, 1u) << "the test did cross segments";
  EXPECT_LE(max_files, 4u) << "acknowledged segments are deleted as it goes";
  spool->acknowledge(3000);
  EXPECT_EQ(spool->pending_batches(), 0u);
  EXPECT_EQ(files_in(sdir), 1u);
  EXPECT_EQ(bytes_in(sdir), 0u);
  EXPECT_EQ(spool->refused_batches(), 0u);
}

TEST(Spool, ABatchThatCannotBeReadBackIsAnErrorWithItsErrnoNotAnEmptySpool) {
  TempDir dir;
  const std::string sdir = dir.file("spool");
  auto spool = make_spool(sdir, 1 << 20);
  ASSERT_TRUE(spool->append(0, "batch-0"));
  ASSERT_TRUE(spool->append(1, "batch-1"));
  testing::make_unreadable(sdir + "/segment-0.psf");
  std::uint64_t seq = 99;
  std::string bytes;
  auto got = spool->next_unsent(&seq, &bytes);
  ASSERT_FALSE(got) << "two batches are waiting: the spool is not empty";
  EXPECT_EQ(got.error().errnum(), EBADF);
  EXPECT_EQ(got.error().message(),
            "reading batch 0 back from spool segment " + sdir + "/segment-0.psf: Bad file descriptor");
  EXPECT_EQ(spool->inflight_batches(), 0u) << "it stays unsent, to be tried again";
  EXPECT_EQ(spool->pending_batches(), 2u);
}

TEST(Spool, KeepsUnacknowledgedBatchesOnDiskWhenDestroyed) {
  // finish() timing out says the unacknowledged batches stay in the spool directory: they must.
  TempDir dir;
  const std::string sdir = dir.file("spool");
  {
    auto spool = make_spool(sdir, 64 << 20, 64 << 10);
    for (std::uint64_t s = 0; s < 20; ++s) ASSERT_TRUE(spool->append(s, blob(10000, 3)));
    spool->acknowledge(15);
  }
  EXPECT_GE(bytes_in(sdir), 5 * (16 + 10000u));
  {
    TempDir dir2;
    const std::string sdir2 = dir2.file("spool");
    {
      auto spool = make_spool(sdir2, 64 << 20, 64 << 10);
      for (std::uint64_t s = 0; s < 20; ++s) ASSERT_TRUE(spool->append(s, blob(10000, 3)));
      spool->acknowledge(20);
    }
    EXPECT_EQ(files_in(sdir2), 0u) << "nothing left to send: nothing left behind";
  }
}

// A compressed, empty Batch of `sequence`: what a reader of the spool's segments decodes.
std::string empty_batch(std::uint64_t sequence) {
  std::string message, compressed;
  BatchEncoder().finish(sequence, message);
  auto compressor = ZstdCompressor::create(1);
  if (!compressor || !compressor->compress(message, compressed)) throw std::runtime_error("zstd");
  return compressed;
}

std::vector<std::string> files_starting(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().rfind(prefix, 0) == 0) out.push_back(e.path().string());
  }
  return out;
}

TEST(Spool, AnEarlierRunsUndeliveredSegmentsAreKeptAsTraceFilesNeitherDeletedNorResent) {
  // A stream that stops with batches unacknowledged says they stay in the spool; a new stream on the same
  // directory (another recording) must neither delete them nor send them as its own.
  TempDir dir;
  const std::string sdir = dir.file("spool");
  v1::TraceHeader earlier;
  earlier.set_host("earlier-run");
  {
    auto spool = Spool::create(sdir, 64 << 20, 64 << 10, Spool::preamble_for(earlier));
    ASSERT_TRUE(spool) << spool.error().message();
    EXPECT_EQ((*spool)->earlier_run_notice(), "");
    for (std::uint64_t s = 0; s < 5; ++s) ASSERT_TRUE((*spool)->append(s, empty_batch(s)));
    (*spool)->acknowledge(2);  // 2, 3 and 4 are not acknowledged: the segment stays
  }
  const std::string left = testing::read_file(sdir + "/segment-0.psf");
  ASSERT_GT(left.size(), Spool::preamble_for(earlier).size());

  v1::TraceHeader current;
  current.set_host("this-run");
  auto spool = Spool::create(sdir, 64 << 20, 64 << 10, Spool::preamble_for(current));
  ASSERT_TRUE(spool) << spool.error().message();
  EXPECT_EQ((*spool)->earlier_run_files(), 1u);
  EXPECT_EQ((*spool)->pending_batches(), 0u) << "not sent under this run's recording";
  const auto kept = files_starting(sdir, "undelivered-");
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(testing::read_file(kept[0]), left) << "kept byte for byte";
  const std::string notice = (*spool)->earlier_run_notice();
  EXPECT_NE(notice.find(kept[0]), std::string::npos) << notice;
  EXPECT_NE(notice.find("1 segment (" + std::to_string(left.size()) + " bytes)"), std::string::npos) << notice;
  EXPECT_EQ(fs::file_size(sdir + "/segment-0.psf"), Spool::preamble_for(current).size())
      << "this run's first segment: its own preamble, nothing else";

  // The kept segment is a trace file of the earlier recording: its header, every batch it held (those the
  // sink acknowledged too: the segment had them), no trailer.
  auto reader = TraceFileReader::open(kept[0]);
  ASSERT_TRUE(reader) << reader.error().message();
  EXPECT_EQ((*reader)->header().host(), "earlier-run");
  std::vector<std::uint64_t> sequences;
  for (ReadOutcome r = (*reader)->next(); r.status == ReadStatus::Frame; r = (*reader)->next()) {
    ASSERT_EQ(r.type, FrameType::Batch);
    auto batch = BatchView::parse(r.message);
    ASSERT_TRUE(batch) << batch.error().message();
    sequences.push_back(batch->batch().sequence());
  }
  EXPECT_EQ(sequences, (std::vector<std::uint64_t>{0, 1, 2, 3, 4}));

  // This run delivers everything: it leaves nothing behind, and the kept file stays until someone moves it.
  ASSERT_TRUE((*spool)->append(0, empty_batch(0)));
  (*spool)->acknowledge(1);
  spool->reset();
  EXPECT_EQ(files_starting(sdir, "segment-").size(), 0u);
  auto third = Spool::create(sdir, 64 << 20, 64 << 10, Spool::preamble_for(current));
  ASSERT_TRUE(third);
  EXPECT_EQ((*third)->earlier_run_files(), 0u);
  EXPECT_EQ(files_starting(sdir, "undelivered-").size(), 1u);
}

TEST(Spool, CreateFailsNamingTheDirectory) {
  auto s = Spool::create("/proc/self/no-such/spool", 1 << 20);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("/proc/self/no-such/spool"), std::string::npos) << s.error().message();
}

TEST(Spool, ItsDirectoryIsPrivateAndNeverReachedThroughASymlink) {
  TempDir dir;
  { auto spool = make_spool(dir.file("spool"), 1 << 20); }
  EXPECT_EQ(fs::status(dir.file("spool")).permissions(), fs::perms::owner_all) << "made 0700";
  fs::create_directory_symlink(dir.file("spool"), dir.file("link"));
  auto linked = Spool::create(dir.file("link"), 1 << 20);
  ASSERT_FALSE(linked);
  EXPECT_NE(linked.error().message().find("a symlink is not followed"), std::string::npos) << linked.error().message();
}

TEST(Spool, AFilePlantedUnderASegmentNameIsNeverWrittenThrough) {
  TempDir dir;
  fs::create_directory(dir.file("spool"));
  testing::write_file(dir.file("target"), "not yours");
  fs::create_symlink(dir.file("target"), dir.file("spool/segment-0.psf"));
  auto spool = make_spool(dir.file("spool"), 1 << 20);
  ASSERT_TRUE(spool->append(0, "batch"));
  EXPECT_EQ(testing::read_file(dir.file("target")), "not yours");
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(dir.file("spool/segment-0.psf"))));
  EXPECT_EQ(fs::status(dir.file("spool/segment-0.psf")).permissions(), fs::perms::owner_read | fs::perms::owner_write);
}

}  // namespace
}  // namespace perfstream
