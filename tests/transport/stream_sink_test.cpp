// StreamClient -> SinkServer over real sockets on loopback (TCP, unix sockets, mutual TLS) and real files,
// with synthetic collectors (no kernel): many collectors at once, exactly-once storage byte for byte, a sink
// killed and restarted mid-stream, hostile peers, a full spool, and client certificates.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "collector/format/batching_consumer.hpp"
#include "collector/format/trace_reader.hpp"
#include "collector/transport/sink_server.hpp"
#include "collector/transport/stream_client.hpp"
#include "collector/transport/stream_protocol.hpp"
#include "testing/raw_peer.hpp"
#include "testing/sink_peer.hpp"
#include "testing/synthetic_stream.hpp"
#include "testing/temp_dir.hpp"

namespace perfstream {
namespace {

using namespace std::chrono_literals;
using testing::LogLines;
using testing::RawPeer;
using testing::StoredRecording;
using testing::SyntheticSource;
using testing::TempDir;
using testing::wait_until;
using testing::start_sink;
using testing::summary_of;
namespace fs = std::filesystem;

// --- helpers ----------------------------------------------------------------------------------------------

Endpoint endpoint(const std::string& text) {
  auto e = Endpoint::parse(text);
  if (!e) throw std::runtime_error(e.error().message());
  return *e;
}

SinkOptions sink_options(const std::string& dir, std::vector<Endpoint> listen, LogLines& log) {
  SinkOptions o;
  o.listen = std::move(listen);
  o.store.dir = dir;
  o.store.log = log.sink();
  return o;
}

bool finished_at(const SinkServer& sink, const std::string& id) {
  auto s = summary_of(sink, id);
  return s && s->finished;
}

// Writes batches [from, to) of `source` into `client`, a little at a time, as reader threads would.
void feed(StreamClient& client, SyntheticSource& source, std::uint64_t from, std::uint64_t to,
          std::chrono::microseconds pause = 500us, std::uint64_t skip = UINT64_MAX) {
  for (std::uint64_t s = from; s < to; ++s) {
    if (s == skip) continue;
    Status st = client.write_batch(source.batch(s));
    EXPECT_TRUE(st) << "batch " << s << ": " << st.error().message();
    if (pause.count() > 0) std::this_thread::sleep_for(pause);
  }
}

v1::TraceTrailer trailer_of(std::uint64_t batches) {
  v1::TraceTrailer t;
  t.set_batches(batches);
  return t;
}

std::string compress_message(const google::protobuf::MessageLite& message) {
  auto c = ZstdCompressor::create(3);
  std::string out;
  if (!c || !c->compress(message.SerializeAsString(), out)) throw std::runtime_error("compressing");
  return out;
}

std::string compress_message_bytes(const std::string& message) {
  auto c = ZstdCompressor::create(3);
  std::string out;
  if (!c || !c->compress(message, out)) throw std::runtime_error("compressing");
  return out;
}

std::string batch_frame(const std::string& compressed) {
  return data_frame_header(FrameType::Batch, compressed.size()) + compressed;
}

std::string hello_frame(const std::string& id) {
  v1::StreamHello hello;
  hello.set_protocol_version(kStreamProtocolVersion);
  hello.set_collector_id(id);
  *hello.mutable_header() = testing::synthetic_header(id + "-recording");
  return encode_control_frame(FrameType::Hello, hello);
}

// A zstd frame of `size` zero bytes, compressed a megabyte at a time (so the test never holds `size`
// bytes), declaring its content size or not.
std::string zero_bomb(std::size_t size, bool declare_size) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 1);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, declare_size ? 1 : 0);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  if (declare_size) ZSTD_CCtx_setPledgedSrcSize(cctx, size);
  const std::string zeros(1 << 20, '\0');
  std::string out;
  std::string buffer(ZSTD_CStreamOutSize(), '\0');
  for (std::size_t fed = 0; fed < size;) {
    const std::size_t n = std::min(zeros.size(), size - fed);
    fed += n;
    ZSTD_inBuffer in{zeros.data(), n, 0};
    const ZSTD_EndDirective mode = fed == size ? ZSTD_e_end : ZSTD_e_continue;
    for (;;) {
      ZSTD_outBuffer o{buffer.data(), buffer.size(), 0};
      const size_t left = ZSTD_compressStream2(cctx, &o, &in, mode);
      if (ZSTD_isError(left)) throw std::runtime_error(ZSTD_getErrorName(left));
      out.append(buffer.data(), o.pos);
      if (mode == ZSTD_e_end ? left == 0 : in.pos == in.size) break;
    }
  }
  ZSTD_freeCCtx(cctx);
  return out;
}

// --- the sink alone ---------------------------------------------------------------------------------------

TEST(SinkServer, BindsOnlyLoopbackUnlessAllowed) {
  TempDir dir;
  LogLines log;
  auto refused = SinkServer::create(sink_options(dir.file("sink"), {endpoint("tcp://0.0.0.0:0")}, log));
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("not a loopback address"), std::string::npos) << refused.error().message();
  auto nothing = SinkServer::create(sink_options(dir.file("sink"), {}, log));
  ASSERT_FALSE(nothing);
  SinkOptions remote = sink_options(dir.file("sink"), {endpoint("tcp://0.0.0.0:0")}, log);
  remote.allow_remote = true;
  auto allowed = SinkServer::create(remote);
  ASSERT_TRUE(allowed) << allowed.error().message();
  EXPECT_NE((*allowed)->bound().front().port, 0) << "port 0 becomes the port the kernel chose";
}

TEST(SinkServer, StoresEachSequenceOnceAndAcknowledgesCumulatively) {
  TempDir dir;
  LogLines log;
  auto sink = start_sink(sink_options(dir.file("sink"), {endpoint("tcp://127.0.0.1:0")}, log));
  SyntheticSource source(4, 8);
  RawPeer peer = RawPeer::tcp(sink->bound()[0].port);
  ASSERT_TRUE(peer.send(hello_frame("raw")));
  auto welcome = peer.read_frame();
  ASSERT_TRUE(welcome);
  ASSERT_EQ(welcome->first, FrameType::Welcome);
  v1::StreamWelcome w;
  ASSERT_TRUE(w.ParseFromString(welcome->second));
  EXPECT_EQ(w.next_sequence(), 0u);
  // Out of order, and resent: every batch is acknowledged; `through` is the lowest sequence not stored.
  const std::vector<std::pair<std::uint64_t, std::uint64_t>> sends_and_through = {{1, 0}, {0, 2}, {1, 2}, {3, 2},
                                                                                  {2, 4}, {0, 4}, {3, 4}};
  for (auto [sequence, through] : sends_and_through) {
    ASSERT_TRUE(peer.send(batch_frame(source.batch(sequence).compressed)));
    auto ack = peer.read_frame();
    ASSERT_TRUE(ack) << "no ack for batch " << sequence;
    ASSERT_EQ(ack->first, FrameType::Ack);
    v1::StreamAck a;
    ASSERT_TRUE(a.ParseFromString(ack->second));
    EXPECT_EQ(a.through(), through) << "after batch " << sequence;
  }
  ASSERT_TRUE(peer.send(data_frame_header(FrameType::Trailer, compress_message(trailer_of(4)).size()) +
                        compress_message(trailer_of(4))));
  ASSERT_TRUE(wait_until([&] { return finished_at(*sink, "raw"); }, 5s)) << log.text();
  auto s = summary_of(*sink, "raw");
  EXPECT_EQ(s->batches, 4u);
  EXPECT_EQ(s->records, 32u);
  EXPECT_EQ(s->compressed_bytes, source.compressed_bytes(0, 4)) << "each batch counted once, as sent";
  EXPECT_EQ(s->duplicates, 3u);
  EXPECT_EQ(s->next_sequence, 4u);
  const StoredRecording stored = testing::read_recording(s->file);
  EXPECT_TRUE(testing::holds_exactly_once(stored, source, 4));
  EXPECT_EQ(stored.trailers.size(), 1u);
}

// A hello from collector `id` whose recording is of trace format `version`.
v1::StreamHello hello_of_format(const std::string& id, std::uint32_t version) {
  v1::StreamHello hello;
  hello.set_protocol_version(kStreamProtocolVersion);
  hello.set_collector_id(id);
  *hello.mutable_header() = testing::synthetic_header(id + "-recording");
  hello.mutable_header()->set_format_version(version);
  return hello;
}

// The sink stores a stream in the format version its collector wrote (the hello's TraceHeader): a version 1
// collector still gets version 1 files, a version 3 one gets its column groups and time planes stored as they
// came.
TEST(SinkServer, StoresAStreamInItsCollectorsFormatVersion) {
  for (std::uint32_t version : {1u, kFormatVersion}) {
    TempDir dir;
    LogLines log;
    auto sink = start_sink(sink_options(dir.file("sink"), {endpoint("tcp://127.0.0.1:0")}, log));
    RawPeer peer = RawPeer::tcp(sink->bound()[0].port);
    v1::StreamHello hello = hello_of_format("v" + std::to_string(version), version);
    v1::EventSchema* schema = hello.mutable_header()->add_events();
    schema->set_kind(1);
    schema->set_fixed_size(8);
    v1::Field* f = schema->add_fields();
    f->set_name("kind");
    f->set_type(v1::Field::UNSIGNED);
    f->set_size(4);
    ASSERT_TRUE(peer.send(encode_control_frame(FrameType::Hello, hello)));
    ASSERT_TRUE(peer.read_frame());
    BatchEncoder enc(version != 1 ? std::make_shared<const ColumnarLayout>(
                                        ColumnarLayout::from_schemas(hello.header().events()))
                                  : nullptr);
    const std::string payload("\x01\x00\x00\x00\x07\x00\x00\x00tail", 12);
    enc.add_record(5, 0, std::span<const std::byte>(reinterpret_cast<const std::byte*>(payload.data()), payload.size()));
    std::string message;
    enc.finish(0, message);
    ASSERT_TRUE(peer.send(batch_frame(compress_message_bytes(message))));
    ASSERT_TRUE(peer.read_frame());
    ASSERT_TRUE(peer.send(data_frame_header(FrameType::Trailer, compress_message(trailer_of(1)).size()) +
                          compress_message(trailer_of(1))));
    const std::string id = "v" + std::to_string(version);
    ASSERT_TRUE(wait_until([&] { return finished_at(*sink, id); }, 5s)) << log.text();
    const std::string file = summary_of(*sink, id)->file;
    std::ifstream in(file, std::ios::binary);
    char head[12] = {};
    in.read(head, sizeof(head));
    EXPECT_EQ(static_cast<std::uint32_t>(head[8]), version);
    auto reader = TraceFileReader::open(file);
    ASSERT_TRUE(reader) << reader.error().message();
    bool seen = false;
    for (ReadOutcome o = (*reader)->next(); o.status == ReadStatus::Frame; o = (*reader)->next()) {
      if (o.type != FrameType::Batch) continue;
      EXPECT_EQ(o.message, message) << "stored as it came";
      auto view = BatchView::parse(o.message);
      ASSERT_TRUE(view) << view.error().message();
      ASSERT_EQ(view->size(), 1u);
      EXPECT_EQ(std::string(view->record(0).payload.data(), view->record(0).payload.size()), payload);
      seen = true;
    }
    EXPECT_TRUE(seen);
  }
}

// A collector of a newer format is refused at its hello, in words, before it sends a batch the sink would
// misread.
TEST(SinkServer, RefusesAHelloOfAFormatVersionItDoesNotRead) {
  TempDir dir;
  LogLines log;
  auto sink = start_sink(sink_options(dir.file("sink"), {endpoint("tcp://127.0.0.1:0")}, log));
  RawPeer peer = RawPeer::tcp(sink->bound()[0].port);
  ASSERT_TRUE(peer.send(encode_control_frame(FrameType::Hello, hello_of_format("v4", kFormatVersion + 1))));
  auto frame = peer.read_frame();
  ASSERT_TRUE(frame);
  ASSERT_EQ(frame->first, FrameType::Refusal);
  v1::StreamRefusal refusal;
  ASSERT_TRUE(refusal.ParseFromString(frame->second));
  EXPECT_EQ(refusal.reason(), "trace format version 4; this sink reads versions 1 to 3");
  EXPECT_TRUE(wait_until([&] { return log.count("trace format version 4") == 1; }, 5s)) << log.text();
}

// --- 1. many collectors at once ---------------------------------------------------------------------------

TEST(StreamToSink, ThreeCollectorsAtOnceStoreEveryRecordOnceByteExact) {
  TempDir dir;
  LogLines log;
  const std::string sock = dir.file("sink.sock");
  auto sink = start_sink(sink_options(dir.file("sink"), {endpoint("tcp://127.0.0.1:0"), endpoint("unix:" + sock)}, log));
  ASSERT_EQ(sink->bound().size(), 2u);
  const Endpoint tcp = sink->bound()[0];
  ASSERT_NE(tcp.port, 0);

  constexpr std::uint64_t kBatches = 60;
  const std::vector<std::string> ids = {"alpha", "bravo", "charlie"};
  std::vector<std::unique_ptr<StreamClient>> clients;
  LogLines client_log;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    auto options = testing::fast_client_options(i == 2 ? sink->bound()[1] : tcp, dir.file("spool-" + ids[i]));
    options.log = client_log.sink(ids[i] + ": ");
    options.window = i == 1 ? 4 : 64;  // one with a small window: it waits on acks all the time
    clients.push_back(testing::make_client(options, ids[i], "host-" + ids[i]));
    ASSERT_TRUE(clients.back()->start());
  }
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    threads.emplace_back([&, i] {
      SyntheticSource source(static_cast<unsigned>(i), 40);
      feed(*clients[i], source, 0, kBatches, std::chrono::microseconds(200 * (i + 1)));
    });
  }
  for (auto& t : threads) t.join();
  for (auto& c : clients) EXPECT_TRUE(testing::finished_in_time(c->finish(trailer_of(kBatches), 10s))) << client_log.text();
  // The sink marks a recording finished, then logs it: wait for both, or the log check below races the sink.
  for (const auto& id : ids) {
    ASSERT_TRUE(wait_until([&] { return finished_at(*sink, id) && log.count("collector " + id + " finished: ") == 1; }, 5s))
        << log.text();
  }

  ASSERT_EQ(sink->summaries().size(), ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    SCOPED_TRACE(ids[i]);
    const auto s = *summary_of(*sink, ids[i]);
    EXPECT_EQ(s.host, "host-" + ids[i]);
    EXPECT_EQ(s.batches, kBatches);
    EXPECT_EQ(s.records, kBatches * 40);
    EXPECT_EQ(s.next_sequence, kBatches);
    EXPECT_EQ(s.duplicates, 0u);
    EXPECT_EQ(s.lost_kernel + s.lost_collector, 0u);
    EXPECT_EQ(s.file, dir.file("sink") + "/" + ids[i] + ".data");
    SyntheticSource source(static_cast<unsigned>(i), 40);
    const StoredRecording stored = testing::read_recording(s.file);
    EXPECT_TRUE(testing::holds_exactly_once(stored, source, kBatches));
    ASSERT_EQ(stored.headers.size(), 1u);
    EXPECT_EQ(stored.headers[0].recording_id(), ids[i] + "-recording");
    ASSERT_EQ(stored.trailers.size(), 1u);
    EXPECT_EQ(stored.trailers[0].batches(), kBatches);
    EXPECT_EQ(stored.trailers[0].records(), kBatches * 40);
    const auto status = clients[i]->status();
    EXPECT_EQ(status.acked_through, kBatches);
    EXPECT_EQ(status.pending_batches, 0u);
    EXPECT_EQ(status.refused_batches, 0u);
    EXPECT_EQ(status.connects, 1u);
    EXPECT_EQ(log.count("is collector " + ids[i] + " "), 1u) << log.text();
    EXPECT_EQ(log.count("collector " + ids[i] + " finished: 60 batches, 2400 records in " + s.file +
                        ", lost 0 in its kernel and 0 in its spool"),
              1u)
        << log.text();
  }
  clients.clear();
  EXPECT_TRUE(wait_until([&] { return log.count(": left") == 3; }, 5s)) << "each peer is seen leaving:\n" << log.text();
  EXPECT_EQ(log.count("disconnected"), 0u) << log.text();
}

// --- 2. the sink dies and comes back ----------------------------------------------------------------------

TEST(StreamToSink, SinkKilledAndRestartedMidStreamLosesNothingAndStoresNothingTwice) {
  TempDir dir;
  LogLines log;
  const std::string sink_dir = dir.file("sink");
  auto sink = start_sink(sink_options(sink_dir, {endpoint("tcp://127.0.0.1:0")}, log));
  const Endpoint bound = sink->bound()[0];
  const std::string id = "delta";
  const std::string file = sink_dir + "/" + id + ".data";
  LogLines client_log;
  auto options = testing::fast_client_options(bound, dir.file("spool"));
  options.log = client_log.sink();
  auto client = testing::make_client(options, id);
  ASSERT_TRUE(client->start());

  // Batch 20 comes late (a slow reader thread): until it does, the sink stores 21, 22, ... but can only
  // acknowledge through 20, so after the restart the collector resends batches the sink already has.
  constexpr std::uint64_t kBatches = 150;
  constexpr std::uint64_t kLate = 20;
  std::atomic<bool> feeding{true};
  std::thread feeder([&] {
    SyntheticSource source(7, 16);
    feed(*client, source, 0, kBatches, 2ms, kLate);
    feeding = false;
  });
  ASSERT_TRUE(wait_until([&] { auto s = summary_of(*sink, id); return s && s->batches >= 40; }, 10s)) << log.text();
  EXPECT_EQ(summary_of(*sink, id)->next_sequence, kLate);
  EXPECT_TRUE(feeding.load()) << "the sink must die mid-stream";
  sink.reset();  // abruptly, while the collector is sending

  // A sink that died inside a write leaves half a frame at the end of the file.
  const StoredRecording before = testing::read_recording(file);
  ASSERT_TRUE(before.damage.empty()) << before.damage.front();
  EXPECT_TRUE(before.trailers.empty()) << "the collector did not finish: the sink must not write a trailer";
  EXPECT_GE(before.batches.size(), 40u);
  {
    SyntheticSource source(7, 16);
    const std::string frame = batch_frame(source.batch(kLate).compressed);
    std::ofstream out(file, std::ios::binary | std::ios::app);
    out.write(frame.data(), static_cast<std::streamsize>(frame.size() / 2));
  }
  EXPECT_FALSE(testing::read_recording(file).damage.empty()) << "the file now ends in a partial frame";

  // The new sink listens on the same port; the collector finds it by retrying its endpoint.
  LogLines log2;
  SinkOptions again = sink_options(sink_dir, {bound}, log2);
  auto sink2 = start_sink(again);
  ASSERT_EQ(sink2->bound()[0].port, bound.port);
  {
    SyntheticSource source(7, 16);
    ASSERT_TRUE(client->write_batch(source.batch(kLate)));
  }
  feeder.join();
  ASSERT_TRUE(testing::finished_in_time(client->finish(trailer_of(kBatches), 10s))) << client_log.text() << log2.text();
  ASSERT_TRUE(wait_until([&] { return finished_at(*sink2, id); }, 5s)) << log2.text();

  const auto s = *summary_of(*sink2, id);
  EXPECT_EQ(s.batches, kBatches);
  EXPECT_EQ(s.records, kBatches * 16);
  {
    SyntheticSource source(7, 16);
    EXPECT_EQ(s.compressed_bytes, source.compressed_bytes(0, kBatches))
        << "what the first sink stored is counted from the file, without the half frame it left";
  }
  EXPECT_EQ(s.next_sequence, kBatches);
  EXPECT_GT(s.duplicates, 0u) << "batches stored before the restart were resent and dropped";
  EXPECT_EQ(log2.count("resuming " + file), 1u) << log2.text();
  EXPECT_GE(client->status().connects, 2u);
  SyntheticSource source(7, 16);
  const StoredRecording stored = testing::read_recording(file);
  EXPECT_EQ(stored.files.size(), 1u) << "one recording, one file";
  EXPECT_TRUE(testing::holds_exactly_once(stored, source, kBatches));
  ASSERT_EQ(stored.trailers.size(), 1u);
  EXPECT_EQ(stored.trailers[0].batches(), kBatches);
  EXPECT_EQ(stored.trailers[0].records(), kBatches * 16);
}

// --- 3. hostile peers -------------------------------------------------------------------------------------

TEST(StreamToSink, HostilePeersAreCutOffAndTheOthersAreServed) {
  TempDir dir;
  LogLines log;
  SinkOptions options = sink_options(dir.file("sink"), {endpoint("tcp://127.0.0.1:0")}, log);
  options.max_batch = 1 << 20;
  options.hello_timeout = 300ms;
  options.idle_timeout = 3s;
  auto sink = start_sink(options);
  const std::uint16_t port = sink->bound()[0].port;

  // A good collector streams all along.
  constexpr std::uint64_t kBatches = 200;
  auto client_options = testing::fast_client_options(sink->bound()[0], dir.file("spool"));
  auto good = testing::make_client(client_options, "good");
  ASSERT_TRUE(good->start());
  std::thread feeder([&] {
    SyntheticSource source(1, 24);
    feed(*good, source, 0, kBatches, 3ms);
  });

  std::mt19937 rng(42);
  std::string noise(64 << 10, '\0');
  for (auto& c : noise) c = static_cast<char>(rng());

  {
    SCOPED_TRACE("random bytes");
    RawPeer peer = RawPeer::tcp(port);
    peer.send(noise);  // may fail part way: the sink cuts it off after 16 bytes
    EXPECT_TRUE(peer.closed_within(3s));
  }
  {
    SCOPED_TRACE("a huge length");
    RawPeer peer = RawPeer::tcp(port);
    std::string header;
    append_frame_header(header, FrameHeader{FrameType::Hello, kEncodingNone, 1u << 30});
    ASSERT_TRUE(peer.send(header));
    EXPECT_TRUE(peer.closed_within(3s));
  }
  {
    SCOPED_TRACE("a zstd bomb");
    const std::string bomb = zero_bomb(200u << 20, true);
    EXPECT_LT(bomb.size(), 64u << 10);
    RawPeer peer = RawPeer::tcp(port);
    ASSERT_TRUE(peer.send(hello_frame("bomber")));
    auto welcome = peer.read_frame();
    ASSERT_TRUE(welcome);
    EXPECT_EQ(welcome->first, FrameType::Welcome);
    peer.send(batch_frame(bomb));
    EXPECT_TRUE(peer.closed_within(3s));
  }
  {
    SCOPED_TRACE("a zstd frame that does not say how big it is");
    RawPeer peer = RawPeer::tcp(port);
    ASSERT_TRUE(peer.send(hello_frame("bomber2")));
    ASSERT_TRUE(peer.read_frame());
    peer.send(batch_frame(zero_bomb(8u << 20, false)));
    EXPECT_TRUE(peer.closed_within(3s));
  }
  {
    SCOPED_TRACE("a batch before the hello");
    RawPeer peer = RawPeer::tcp(port);
    SyntheticSource source(9, 4);
    peer.send(batch_frame(source.batch(0).compressed));
    EXPECT_TRUE(peer.closed_within(3s));
  }
  {
    SCOPED_TRACE("a hello, then garbage");
    RawPeer peer = RawPeer::tcp(port);
    ASSERT_TRUE(peer.send(hello_frame("garbler")));
    ASSERT_TRUE(peer.read_frame());
    peer.send(noise.substr(0, 100));
    EXPECT_TRUE(peer.closed_within(3s));
  }
  {
    SCOPED_TRACE("half-open: connects and says nothing");
    RawPeer peer = RawPeer::tcp(port);
    const auto start = std::chrono::steady_clock::now();
    EXPECT_TRUE(peer.closed_within(3s));
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_GE(took, 250ms);
    EXPECT_LT(took, 2s);
  }

  feeder.join();
  ASSERT_TRUE(testing::finished_in_time(good->finish(trailer_of(kBatches), 10s)));
  ASSERT_TRUE(wait_until([&] { return finished_at(*sink, "good"); }, 5s)) << log.text();
  const auto s = *summary_of(*sink, "good");
  EXPECT_EQ(s.batches, kBatches);
  EXPECT_EQ(s.duplicates, 0u);
  EXPECT_EQ(good->status().connects, 1u) << "the good collector was never disturbed";
  SyntheticSource source(1, 24);
  EXPECT_TRUE(testing::holds_exactly_once(testing::read_recording(s.file), source, kBatches));
  EXPECT_EQ(summary_of(*sink, "bomber")->batches, 0u);

  // Each was cut off, and the log says why.
  const std::string text = log.text();
  for (const std::string why : {"bad frame at byte 0: no frame magic; disconnected",
                                "frame length 1073741824 over the limit of 16777216; disconnected",
                                "declares 209715200 decompressed bytes, over the limit of 1048576; disconnected",
                                "does not declare its decompressed size; disconnected",
                                "the first frame is not a hello; disconnected",
                                "(collector garbler): bad frame at byte",
                                "no hello within 300 ms; disconnected"}) {
    EXPECT_EQ(log.count(why), 1u) << why << "\n" << text;
  }
}

// --- 4. the spool fills up --------------------------------------------------------------------------------

struct Samples {
  std::vector<std::string> payloads;
  std::vector<SampleView> views;
};

Samples samples(std::size_t first, std::size_t n) {
  Samples s;
  std::mt19937 rng(static_cast<std::uint32_t>(first));
  for (std::size_t i = 0; i < n; ++i) {
    std::string p = "sample-" + std::to_string(first + i) + "|";
    while (p.size() < 200) p.push_back(static_cast<char>(rng()));  // incompressible: batches of known size
    s.payloads.push_back(std::move(p));
  }
  for (std::size_t i = 0; i < n; ++i) {
    SampleView v;
    v.time = 1000 + (first + i) * 10;
    v.cpu = static_cast<std::uint32_t>(i % 2);
    v.raw = std::span<const std::byte>(reinterpret_cast<const std::byte*>(s.payloads[i].data()), s.payloads[i].size());
    s.views.push_back(v);
  }
  return s;
}

void pass(BatchingConsumer& consumer, const Samples& s) {
  for (const auto& v : s.views) consumer.on_sample(v.cpu, v);
  consumer.on_pass_end(0);
}

TEST(StreamToSink, AFullSpoolRefusesCountsAndReportsTheLossAtBothEnds) {
  TempDir dir;
  const std::string sock = dir.file("sink.sock");
  LogLines client_log;
  auto options = testing::fast_client_options(endpoint("unix:" + sock), dir.file("spool"));
  options.spool_bytes = 5 * (20 * 210 + 200);  // about five batches of 20 samples
  options.log = client_log.sink();
  auto client = testing::make_client(options, "epsilon");
  ASSERT_TRUE(client->start());

  // No sink yet: the spool fills, then batches are refused, counted, and noted for the next batch.
  PipelineCounters counters;
  BatchLimits limits;
  limits.max_records = 20;
  BatchWorker worker(std::move(*ZstdCompressor::create(1)), *client, counters);
  auto consumer = std::make_unique<BatchingConsumer>(limits, worker);
  std::vector<std::string> fed;
  auto feed_samples = [&](std::size_t n) {
    Samples s = samples(fed.size(), n);
    fed.insert(fed.end(), s.payloads.begin(), s.payloads.end());
    pass(*consumer, s);
    worker.wait_idle();
  };
  feed_samples(200);
  const std::uint64_t dropped = counters.dropped_batches.load();
  const std::uint64_t dropped_records = counters.dropped_records.load();
  ASSERT_GT(dropped, 0u);
  ASSERT_GT(counters.batches.load(), 0u);
  // Ten batches of 20 records; the worker's loss-only batches are refused too while the spool is full.
  EXPECT_EQ(counters.records.load() + dropped_records, 200u);
  EXPECT_EQ(dropped_records % 20, 0u);
  EXPECT_EQ(client->status().refused_batches, dropped);
  EXPECT_FALSE(client->status().connected);
  ASSERT_TRUE(worker.first_error());
  EXPECT_NE(worker.first_error()->message().find("full"), std::string::npos) << worker.first_error()->message();
  EXPECT_TRUE(wait_until([&] { return client_log.count("retrying in") >= 2; }, 5s)) << "the client keeps trying";

  // The sink comes up: the spool drains, and the next batch tells of the loss.
  LogLines log;
  auto sink = start_sink(sink_options(dir.file("sink"), {endpoint("unix:" + sock)}, log));
  ASSERT_TRUE(wait_until([&] { return client->status().pending_batches == 0; }, 5s))
      << "pending " << client->status().pending_batches << "\n" << client_log.text() << log.text();
  feed_samples(20);
  EXPECT_EQ(counters.dropped_batches.load(), dropped) << "room again";
  ASSERT_TRUE(wait_until([&] { return client->status().pending_batches == 0; }, 5s));
  auto s = *summary_of(*sink, "epsilon");
  EXPECT_EQ(s.lost_collector, dropped_records);
  EXPECT_EQ(s.records, counters.records.load());

  // And the loss is still known after the sink restarts.
  sink.reset();
  LogLines log2;
  auto sink2 = start_sink(sink_options(dir.file("sink"), {endpoint("unix:" + sock)}, log2));
  feed_samples(20);
  consumer->on_stop();
  consumer.reset();
  worker.finish();
  ASSERT_TRUE(testing::finished_in_time(client->finish(trailer_of(0), 10s))) << client_log.text() << log2.text();
  ASSERT_TRUE(wait_until([&] { return finished_at(*sink2, "epsilon"); }, 5s)) << log2.text();
  s = *summary_of(*sink2, "epsilon");
  EXPECT_EQ(s.lost_collector, dropped_records) << "counted at the sink as at the source";
  EXPECT_EQ(s.lost_kernel, 0u);
  EXPECT_EQ(s.records, counters.records.load());
  EXPECT_EQ(client->status().refused_batches, dropped);

  // In the file: every record that was not dropped, once; the loss, in-band, from the collector.
  const StoredRecording stored = testing::read_recording(s.file);
  ASSERT_TRUE(stored.damage.empty()) << stored.damage.front();
  std::multiset<std::string> payloads;
  std::uint64_t collector_lost = 0;
  for (const auto& b : stored.batches) {
    auto view = BatchView::parse(b.message);
    ASSERT_TRUE(view);
    for (std::size_t i = 0; i < view->size(); ++i) {
      payloads.insert(std::string(view->record(i).payload.data(), view->record(i).payload.size()));
    }
    for (const auto& lost : view->batch().lost()) {
      EXPECT_EQ(lost.source(), v1::LostNotice::COLLECTOR);
      collector_lost += lost.count();
    }
  }
  EXPECT_EQ(collector_lost, dropped_records);
  EXPECT_EQ(payloads.size(), counters.records.load());
  EXPECT_EQ(std::set<std::string>(payloads.begin(), payloads.end()).size(), payloads.size()) << "no duplicates";
  EXPECT_EQ(payloads.size() + dropped_records, fed.size());
  for (const auto& p : payloads) EXPECT_NE(std::find(fed.begin(), fed.end(), p), fed.end());
}

// --- 5. mutual TLS ----------------------------------------------------------------------------------------

// A CA, a sink certificate for 127.0.0.1, a client certificate, and a client certificate from another CA,
// made with the openssl command line.
class Certificates {
 public:
  explicit Certificates(const std::string& dir) : dir_(dir) {
    write(dir_ + "/openssl.cnf",
          "[req]\ndistinguished_name = dn\n[dn]\n"
          "[ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n"
          "[server]\nbasicConstraints = CA:FALSE\nsubjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n"
          "[client]\nbasicConstraints = CA:FALSE\nextendedKeyUsage = clientAuth\n");
    make_ca("ca");
    make_ca("other-ca");
    make_cert("server", "ca", "server");
    make_cert("client", "ca", "client");
    make_cert("stranger", "other-ca", "client");
  }
  std::string pem(const std::string& name) const { return dir_ + "/" + name + ".pem"; }
  std::string key(const std::string& name) const { return dir_ + "/" + name + ".key"; }

 private:
  static void write(const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
  }
  void run(const std::string& command) {
    const std::string full = command + " >>" + dir_ + "/openssl.log 2>&1";
    if (std::system(full.c_str()) != 0) {
      throw std::runtime_error("failed: " + command + "\n" + testing::read_file(dir_ + "/openssl.log"));
    }
  }
  std::string new_key(const std::string& name) {
    return "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " + key(name) +
           " -config " + dir_ + "/openssl.cnf";
  }
  void make_ca(const std::string& name) {
    run(new_key(name) + " -x509 -days 2 -subj /CN=" + name + " -extensions ca -out " + pem(name));
  }
  void make_cert(const std::string& name, const std::string& ca, const std::string& extensions) {
    run(new_key(name) + " -subj /CN=" + name + " -out " + dir_ + "/" + name + ".csr");
    run("openssl x509 -req -in " + dir_ + "/" + name + ".csr -CA " + pem(ca) + " -CAkey " + key(ca) +
        " -set_serial " + std::to_string(++serial_) + " -days 2 -extfile " + dir_ + "/openssl.cnf -extensions " +
        extensions + " -out " + pem(name));
  }
  std::string dir_;
  int serial_ = 1;
};

TEST(StreamToSink, MutualTlsLetsInTheRightCertificateOnly) {
  TempDir dir;
  std::unique_ptr<Certificates> certs;
  try {
    certs = std::make_unique<Certificates>(dir.path());
  } catch (const std::exception& e) {
    FAIL() << "making certificates with the openssl command (scripts/install-deps.sh installs it): " << e.what();
  }
  LogLines log;
  SinkOptions options = sink_options(dir.file("sink"), {endpoint("tcp://127.0.0.1:0")}, log);
  options.tls = TlsOptions{certs->pem("server"), certs->key("server"), certs->pem("ca")};
  auto sink = start_sink(options);
  const Endpoint ep = sink->bound()[0];

  auto client_options = [&](const std::string& name, TlsOptions tls, LogLines& client_log) {
    auto o = testing::fast_client_options(ep, dir.file("spool-" + name));
    o.tls = std::move(tls);
    o.log = client_log.sink();
    return o;
  };
  LogLines good_log;
  constexpr std::uint64_t kBatches = 40;
  auto good = testing::make_client(
      client_options("good", TlsOptions{certs->pem("client"), certs->key("client"), certs->pem("ca")}, good_log),
      "trusted");
  ASSERT_TRUE(good->start());
  std::thread feeder([&] {
    SyntheticSource source(3, 20);
    feed(*good, source, 0, kBatches, 2ms);
  });

  // No client certificate; a certificate from a CA the sink does not trust; plain TCP to a TLS sink.
  LogLines anonymous_log, stranger_log;
  auto anonymous = testing::make_client(client_options("anonymous", TlsOptions{"", "", certs->pem("ca")}, anonymous_log),
                                        "anonymous");
  auto stranger = testing::make_client(
      client_options("stranger", TlsOptions{certs->pem("stranger"), certs->key("stranger"), certs->pem("ca")}, stranger_log),
      "stranger");
  ASSERT_TRUE(anonymous->start());
  ASSERT_TRUE(stranger->start());
  {
    RawPeer plain = RawPeer::tcp(ep.port);
    plain.send(hello_frame("plain"));
    EXPECT_TRUE(plain.closed_within(3s));
  }
  EXPECT_TRUE(wait_until([&] { return anonymous_log.count("retrying") >= 2 && stranger_log.count("retrying") >= 2; }, 5s))
      << anonymous_log.text() << stranger_log.text();

  feeder.join();
  ASSERT_TRUE(testing::finished_in_time(good->finish(trailer_of(kBatches), 10s))) << good_log.text() << log.text();
  ASSERT_TRUE(wait_until([&] { return finished_at(*sink, "trusted"); }, 5s)) << log.text();
  EXPECT_EQ(anonymous->status().connects, 0u);
  EXPECT_EQ(stranger->status().connects, 0u);
  anonymous.reset();
  stranger.reset();

  ASSERT_EQ(sink->summaries().size(), 1u) << "nothing is stored for a peer that did not authenticate";
  const auto s = *summary_of(*sink, "trusted");
  EXPECT_EQ(s.batches, kBatches);
  SyntheticSource source(3, 20);
  EXPECT_TRUE(testing::holds_exactly_once(testing::read_recording(s.file), source, kBatches));
  EXPECT_FALSE(fs::exists(dir.file("sink") + "/anonymous.data"));
  EXPECT_FALSE(fs::exists(dir.file("sink") + "/stranger.data"));
  EXPECT_FALSE(fs::exists(dir.file("sink") + "/plain.data"));
  const std::string text = log.text();
  EXPECT_GE(log.count("TLS handshake failed"), 3u) << text;
  EXPECT_GE(log.count("peer did not return a certificate"), 1u) << text;
  EXPECT_GE(log.count("certificate verify failed"), 1u) << text;
  EXPECT_EQ(good->status().connects, 1u);
  good.reset();
  EXPECT_TRUE(wait_until([&] { return log.count("(collector trusted): left") == 1; }, 5s))
      << "a collector that finished and closed its TLS connection is seen leaving, not failing:\n" << log.text();
}

}  // namespace
}  // namespace perfstream

namespace perfstream {
namespace {

using namespace std::chrono_literals;

// Ids that only differ in characters a file name cannot hold still get a file each.
TEST(StreamToSink, CollectorIdsThatLookAlikeAsFileNamesGetTheirOwnFiles) {
  testing::TempDir dir;
  testing::LogLines log;
  auto sink = start_sink(sink_options(dir.file("sink"), {endpoint("tcp://127.0.0.1:0")}, log));
  const std::vector<std::string> ids = {"a/b", "a_b"};
  std::vector<std::unique_ptr<StreamClient>> clients;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    auto options = testing::fast_client_options(sink->bound()[0], dir.file("spool-" + std::to_string(i)));
    clients.push_back(testing::make_client(options, ids[i], "host"));
    ASSERT_TRUE(clients.back()->start());
    testing::SyntheticSource source(static_cast<unsigned>(i), 10);
    feed(*clients.back(), source, 0, 5, 0us);
    EXPECT_TRUE(testing::finished_in_time(clients.back()->finish(trailer_of(5), 10s))) << log.text();
  }
  std::set<std::string> files;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    ASSERT_TRUE(testing::wait_until([&] { return finished_at(*sink, ids[i]); }, 5s)) << log.text();
    const auto s = *summary_of(*sink, ids[i]);
    files.insert(s.file);
    testing::SyntheticSource source(static_cast<unsigned>(i), 10);
    EXPECT_TRUE(testing::holds_exactly_once(testing::read_recording(s.file), source, 5));
  }
  EXPECT_EQ(files.size(), 2u);
  EXPECT_EQ(files.count(dir.file("sink") + "/a_b.data"), 1u);
}

}  // namespace
}  // namespace perfstream
