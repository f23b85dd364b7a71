// StreamClient against sinks that do not answer: a connect whose SYNs are dropped (a listener with a full
// accept queue, as a blackholed host), a peer that accepts and never welcomes. Each attempt must fail after
// the handshake timeout and be retried, the client must be destroyable at once (a stream's Ctrl-C), and
// finish() must stop waiting when asked to. And faults of the collector's own: a spool that cannot be read
// back, a trailer that cannot be compressed, which finish() must report as what they are, not as a slow
// sink.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <vector>

#include "collector/transport/sink_server.hpp"
#include "collector/transport/stream_client.hpp"
#include "testing/synthetic_stream.hpp"
#include "testing/temp_dir.hpp"

namespace perfstream {
namespace {

using namespace std::chrono_literals;
using testing::TempDir;

// A loopback listener that never accepts. With `drop_syns`, its accept queue is filled first, so the kernel
// drops every further SYN and a connect hangs as it does to a host that does not answer.
class DeafListener {
 public:
  explicit DeafListener(bool drop_syns) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(fd_, drop_syns ? 0 : 16) != 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error("cannot listen on loopback");
    }
    port_ = ntohs(addr.sin_port);
    for (int i = 0; drop_syns && i < 3; ++i) {
      const int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      (void)::connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
      fillers_.push_back(c);
    }
  }
  ~DeafListener() {
    for (int c : fillers_) ::close(c);
    ::close(fd_);
  }
  Endpoint endpoint() const { return *Endpoint::parse("tcp://127.0.0.1:" + std::to_string(port_)); }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::vector<int> fillers_;
};

StreamClientOptions deaf_options(const DeafListener& listener, const TempDir& dir, testing::LogLines& log) {
  StreamClientOptions o = testing::fast_client_options(listener.endpoint(), dir.file("spool"));
  o.handshake_timeout = 300ms;
  o.log = log.sink();
  return o;
}

TEST(StreamClient, AConnectNobodyAnswersTimesOutIsRetriedAndDoesNotHoldTheDestructor) {
  TempDir dir;
  DeafListener listener(true);
  testing::LogLines log;
  auto client = testing::make_client(deaf_options(listener, dir, log), "deaf");
  ASSERT_TRUE(client->start());
  ASSERT_TRUE(testing::wait_until([&] { return log.count("no connection within 300 ms") >= 2; }, 10s))
      << "timed out and retried, again and again";
  EXPECT_FALSE(client->status().connected);
  const auto start = std::chrono::steady_clock::now();
  client.reset();  // with a connect in flight
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
}

TEST(StreamClient, APeerThatNeverWelcomesTimesOutAndIsRetried) {
  TempDir dir;
  DeafListener listener(false);
  testing::LogLines log;
  auto client = testing::make_client(deaf_options(listener, dir, log), "unwelcome");
  ASSERT_TRUE(client->start());
  ASSERT_TRUE(testing::wait_until([&] { return log.count("no welcome from the sink within 300 ms") >= 2; }, 10s));
  const auto start = std::chrono::steady_clock::now();
  client.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
}

TEST(StreamClient, FinishStopsWaitingWhenTheCallerGivesUp) {
  TempDir dir;
  DeafListener listener(true);
  testing::LogLines log;
  auto client = testing::make_client(deaf_options(listener, dir, log), "impatient");
  ASSERT_TRUE(client->start());
  testing::SyntheticSource source(1, 10);
  ASSERT_TRUE(client->write_batch(source.batch(0)));
  int polls = 0;
  const auto start = std::chrono::steady_clock::now();
  auto done = client->finish(v1::TraceTrailer(), 30s, [&] { return ++polls == 3; });
  ASSERT_TRUE(done) << done.error().message();
  EXPECT_FALSE(*done);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s) << "not the 30 s timeout";
  EXPECT_EQ(polls, 3);
  EXPECT_EQ(client->status().pending_batches, 1u) << "it stays in the spool";
}

TEST(StreamClient, FinishReportsATrailerThatCannotBeCompressedNotATimeout) {
  TempDir dir;
  DeafListener listener(true);
  testing::LogLines log;
  StreamClientOptions options = deaf_options(listener, dir, log);
  options.trailer_compression_level = 1000;  // zstd refuses it: the compressor fails
  auto client = testing::make_client(options, "uncompressed");
  ASSERT_TRUE(client->start());
  const auto start = std::chrono::steady_clock::now();
  auto done = client->finish(v1::TraceTrailer(), 30s);
  ASSERT_FALSE(done) << "an error, not a timeout";
  EXPECT_EQ(done.error().message().rfind("compressing the trailer: zstd level 1000 is out of range", 0), 0u)
      << done.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s) << "at once: there is nothing to wait for";
}

TEST(StreamClient, FinishReportsABatchTheSpoolCannotReadBackWithItsErrnoNotATimeout) {
  TempDir dir;
  testing::LogLines sink_log, log;
  SinkOptions sink_options;
  sink_options.listen = {*Endpoint::parse("unix:" + dir.file("sink.sock"))};
  sink_options.store.dir = dir.file("sink");
  sink_options.store.log = sink_log.sink();
  auto sink = SinkServer::create(sink_options);
  ASSERT_TRUE(sink) << sink.error().message();
  (*sink)->start();
  StreamClientOptions options = testing::fast_client_options(sink_options.listen[0], dir.file("spool"));
  options.log = log.sink();
  auto client = testing::make_client(options, "unreadable");
  ASSERT_TRUE(client->start());
  ASSERT_TRUE(testing::wait_until([&] { return client->status().connected; }, 10s)) << log.text();
  testing::make_unreadable(dir.file("spool") + "/segment-0.psf");
  testing::SyntheticSource source(1, 10);
  ASSERT_TRUE(client->write_batch(source.batch(0))) << "appending still works";
  auto done = client->finish(v1::TraceTrailer(), 1s);
  ASSERT_FALSE(done) << "an error, not a timeout";
  EXPECT_EQ(done.error().errnum(), EBADF);
  EXPECT_EQ(done.error().message(), "reading batch 0 back from spool segment " + dir.file("spool") +
                                        "/segment-0.psf: Bad file descriptor");
  EXPECT_TRUE(client->status().connected) << "the sink was not at fault";
  EXPECT_EQ(client->status().pending_batches, 1u);
  EXPECT_EQ(log.count("reading batch 0 back from spool segment"), 1u)
      << "tried again every 20 ms for a second, logged once (the rest counted)\n" << log.text();
}

}  // namespace
}  // namespace perfstream
