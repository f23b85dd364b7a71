// Issue 16, item 5, in process over loopback: an earlier run's spool is delivered as the earlier recording
// (the spool adopted from its files, a segment cut short by a kill included), and a sink that scans one
// collector's large file on resume answers another collector's hello meanwhile.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "collector/format/trace_writer.hpp"
#include "collector/transport/sink_server.hpp"
#include "collector/transport/stream_client.hpp"
#include "testing/sink_peer.hpp"
#include "testing/synthetic_stream.hpp"
#include "testing/temp_dir.hpp"

namespace perfstream {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using testing::LogLines;
using testing::SyntheticSource;
using testing::TempDir;
using testing::wait_until;
using testing::summary_of;

std::unique_ptr<SinkServer> start_sink(const std::string& dir, Log* log, unsigned threads = 2) {
  SinkOptions options;
  options.listen = {*Endpoint::parse("tcp://127.0.0.1:0")};
  options.store.dir = dir;
  options.store.log = log;
  options.threads = threads;
  auto sink = SinkServer::create(options);
  if (!sink) throw std::runtime_error(sink.error().message());
  (*sink)->start();
  return std::move(*sink);
}

std::vector<std::string> files_starting(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().rfind(prefix, 0) == 0) out.push_back(e.path().string());
  }
  return out;
}

TEST(SpoolLeftovers, AKilledRunsSpoolIsSentAsItsOwnRecordingOnceAndThenDeleted) {
  TempDir dir;
  const std::string spool = dir.file("spool");
  constexpr std::uint64_t kBatches = 50;
  SyntheticSource source(7, 20);
  {
    // The first run: no sink ever answers, so every batch stays spooled when it goes (as after a kill).
    StreamClientOptions options = testing::fast_client_options(*Endpoint::parse("tcp://127.0.0.1:1"), spool);
    auto first = testing::make_client(options, "first");
    for (std::uint64_t s = 0; s < kBatches; ++s) ASSERT_TRUE(first->write_batch(source.batch(s)));
  }
  // The kill came while the last batch was being written: its frame is cut short.
  const auto segments = files_starting(spool, "segment-");
  ASSERT_EQ(segments.size(), 1u);
  fs::resize_file(segments[0], fs::file_size(segments[0]) - 10);

  LogLines sink_log, client_log;
  auto sink = start_sink(dir.file("sink"), sink_log.sink());
  const Endpoint at = sink->bound()[0];
  auto second = testing::make_client(testing::fast_client_options(at, spool), "second");
  ASSERT_TRUE(second->start());
  const std::string earlier_id = "synthetic-first-recording";  // host-recording_id of the first run's header
  ASSERT_TRUE(wait_until([&] { auto s = summary_of(*sink, earlier_id); return s && s->batches == kBatches - 1; }, 10s))
      << sink_log.text();
  ASSERT_TRUE(testing::finished_in_time(second->finish(v1::TraceTrailer(), 10s))) << sink_log.text();
  const auto earlier = summary_of(*sink, earlier_id);
  EXPECT_EQ(earlier->duplicates, 0u);
  EXPECT_FALSE(earlier->finished) << "no trailer: the earlier run's totals died with it";
  EXPECT_TRUE(testing::holds_exactly_once(testing::read_recording(earlier->file), source, kBatches - 1));
  EXPECT_EQ(testing::read_recording(earlier->file).batches.size(), kBatches - 1) << "and nothing else";
  EXPECT_TRUE(files_starting(spool, "undelivered-").empty()) << "delivered, so deleted";
  EXPECT_NE(second->describe_progress().find("the earlier run's recording " + earlier_id + ": acknowledged through batch " +
                                             std::to_string(kBatches - 1) + ", all delivered"),
            std::string::npos)
      << second->describe_progress();
}

TEST(SpoolLeftovers, BatchesTheSinkAlreadyHasAreDroppedThereAsDuplicates) {
  TempDir dir;
  const std::string spool = dir.file("spool");
  LogLines sink_log;
  auto sink = start_sink(dir.file("sink"), sink_log.sink());
  const Endpoint at = sink->bound()[0];
  constexpr std::uint64_t kBatches = 40;
  SyntheticSource source(8, 10);
  {
    // The first run delivers everything, but is gone before its segment is cut back (a kill between the
    // sink's store and its ack): simulated by copying the segment aside before the acknowledgements.
    auto first = testing::make_client(testing::fast_client_options(at, spool), "first");
    for (std::uint64_t s = 0; s < kBatches; ++s) ASSERT_TRUE(first->write_batch(source.batch(s)));
    fs::copy_file(files_starting(spool, "segment-")[0], dir.file("copy.psf"));
    ASSERT_TRUE(first->start());
    ASSERT_TRUE(wait_until([&] { return first->status().acked_through == kBatches; }, 10s));
  }
  for (const auto& f : files_starting(spool, "segment-")) fs::remove(f);
  fs::copy_file(dir.file("copy.psf"), spool + "/segment-0.psf");

  auto second = testing::make_client(testing::fast_client_options(at, spool), "second");
  ASSERT_TRUE(second->start());
  ASSERT_TRUE(testing::finished_in_time(second->finish(v1::TraceTrailer(), 10s))) << sink_log.text();
  const auto earlier = summary_of(*sink, "synthetic-first-recording");
  ASSERT_TRUE(earlier);
  EXPECT_EQ(earlier->batches, kBatches);
  EXPECT_TRUE(testing::holds_exactly_once(testing::read_recording(earlier->file), source, kBatches));
  EXPECT_TRUE(files_starting(spool, "undelivered-").empty());
}

// The scan of a large file (a sink restart) runs off the network threads: a new collector is welcomed
// while it runs, even with one network thread.
TEST(SinkResume, AnotherCollectorsHelloIsAnsweredWhileALargeResumeScanRuns) {
  TempDir dir;
  const std::string sink_dir = dir.file("sink");
  fs::create_directories(sink_dir);
  const std::string big_id = "big";
  constexpr std::uint64_t kBatches = 30000;
  {
    TraceWriterOptions wo;
    wo.path = sink_dir + "/" + file_safe_id(big_id) + ".data";
    auto writer = TraceFileWriter::create(wo, testing::synthetic_header(big_id + "-recording"));
    ASSERT_TRUE(writer);
    SyntheticSource source(9, 48);
    const EncodedBatch one = source.batch(0);
    for (std::uint64_t s = 0; s < kBatches; ++s) {
      EncodedBatch b = s == 0 ? one : source.batch(s);
      ASSERT_TRUE((*writer)->write_batch(b));
    }
    (*writer)->abandon();  // no trailer: the big collector resumes it
  }

  LogLines sink_log;
  auto sink = start_sink(sink_dir, sink_log.sink(), 1);
  const Endpoint at = sink->bound()[0];
  const auto t0 = std::chrono::steady_clock::now();
  auto big = testing::make_client(testing::fast_client_options(at, dir.file("spool-big")), big_id);
  ASSERT_TRUE(big->start());
  ASSERT_TRUE(wait_until([&] { return sink_log.count("peer 127.0.0.1:") > 0; }, 5s));
  std::this_thread::sleep_for(20ms);  // the big hello is in; its scan runs
  auto small = testing::make_client(testing::fast_client_options(at, dir.file("spool-small")), "small");
  ASSERT_TRUE(small->start());
  std::chrono::steady_clock::duration small_at{}, big_at{};
  ASSERT_TRUE(wait_until(
      [&] {
        const auto now = std::chrono::steady_clock::now() - t0;
        if (small_at.count() == 0 && small->status().connects > 0) small_at = now;
        if (big_at.count() == 0 && big->status().connects > 0) big_at = now;
        return small_at.count() > 0 && big_at.count() > 0;
      },
      30s))
      << sink_log.text();
  const auto ms = [](auto d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  std::printf("[   INFO   ] resume scan of %llu batches: the big collector welcomed at %lld ms, the small one at %lld ms\n",
              static_cast<unsigned long long>(kBatches), static_cast<long long>(ms(big_at)),
              static_cast<long long>(ms(small_at)));
  EXPECT_LT(small_at, big_at) << "the small collector did not wait for the big one's scan";
  EXPECT_EQ(summary_of(*sink, big_id)->batches, kBatches) << "the scan found every batch";
  EXPECT_EQ(big->status().acked_through, kBatches);
}

}  // namespace
}  // namespace perfstream
