// The real `perfstream sink` under 2,000 distinct collector ids (issue 16, item 3): its open descriptors,
// counted in /proc/PID/fd, stay at --max-open-files plus its own few, from many peer addresses (the LRU
// closes idle files) and from one (--max-collectors-per-peer refuses new ids, one log line per interval);
// it raised its open-file soft limit to the hard limit and said so; and an honest collector streaming
// afterwards stores every batch exactly once. No BPF: the collectors are synthetic.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "collector/transport/stream_client.hpp"
#include "collector/transport/stream_protocol.hpp"
#include "testing/ports.hpp"
#include "testing/raw_peer.hpp"
#include "testing/subprocess.hpp"
#include "testing/synthetic_stream.hpp"
#include "testing/temp_dir.hpp"

namespace perfstream::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::size_t fds_of(pid_t pid) {
  std::size_t n = 0;
  std::error_code ec;
  for (fs::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", ec), end; !ec && it != end; it.increment(ec)) ++n;
  return n;
}

// The "Max open files" soft limit of `pid`, as /proc/PID/limits gives it.
std::string soft_nofile_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/limits");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Max open files", 0) == 0) {
      std::istringstream fields(line.substr(14));
      std::string soft;
      fields >> soft;
      return soft;
    }
  }
  return "?";
}

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// Says hello as collector `id` from `source` and returns the type of the sink's answer.
FrameType hello_from(std::uint16_t port, std::uint32_t source, const std::string& id) {
  v1::StreamHello hello;
  hello.set_protocol_version(kStreamProtocolVersion);
  hello.set_collector_id(id);
  *hello.mutable_header() = synthetic_header(id + "-recording");
  RawPeer p = RawPeer::tcp(port, source);
  if (!p.send(encode_control_frame(FrameType::Hello, hello))) throw std::runtime_error("hello of " + id);
  auto answer = p.read_frame();
  if (!answer) throw std::runtime_error("no answer to the hello of " + id);
  return answer->first;
}

TEST(SinkFilesEndToEnd, TwoThousandCollectorIdsKeepTheSinksDescriptorsAtTheCap) {
  TempDir dir;
  const std::uint16_t port = free_tcp_port();
  // The sink starts with a low soft limit (inherited), and must raise it to the hard limit itself.
  rlimit ours{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &ours), 0);
  rlimit low = ours;
  low.rlim_cur = std::min<rlim_t>(ours.rlim_max, 256);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  Background sink({perfstream_binary(), "sink", "--listen", "tcp://127.0.0.1:" + std::to_string(port), "-d",
                   dir.file("sink"), "--max-open-files", "50", "--max-collectors-per-peer", "8",
                   "--max-connections-per-peer", "1000",
                   "--status-interval", "0"});
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &ours), 0);
  ASSERT_TRUE(wait_until([&] { return accepts_connections(port) || sink.exited(); }, 10s));
  ASSERT_FALSE(sink.exited()) << sink.wait().err;
  const std::string hard = ours.rlim_max == RLIM_INFINITY ? "unlimited" : std::to_string(ours.rlim_max);
  if (ours.rlim_max != RLIM_INFINITY && ours.rlim_max > low.rlim_cur) {
    EXPECT_NE(sink.err_so_far().find("open files: soft limit " + std::to_string(low.rlim_cur) + " raised to " + hard +
                                     " (the hard limit)"),
              std::string::npos)
        << sink.err_so_far();
    EXPECT_EQ(soft_nofile_of(sink.pid()), hard);
  }
  EXPECT_NE(sink.err_so_far().find("recording files: at most 50 open"), std::string::npos) << sink.err_so_far();
  const std::size_t fds_at_start = fds_of(sink.pid());
  const auto started = std::chrono::steady_clock::now();

  // 2,000 ids from 250 addresses 127.1.x.y, 8 each: all welcomed; the files stay at 50.
  std::size_t fds_peak = 0;
  for (int i = 0; i < 2000; ++i) {
    const std::uint32_t address = 0x7f010000u + 1 + static_cast<std::uint32_t>(i / 8);
    ASSERT_EQ(hello_from(port, address, "fleet-" + std::to_string(i)), FrameType::Welcome) << i;
    if (i % 20 == 19) fds_peak = std::max(fds_peak, fds_of(sink.pid()));
  }
  // 2,000 ids from one address, 127.0.0.2: 8 welcomed, the rest refused.
  std::size_t welcomed = 0;
  for (int i = 0; i < 2000; ++i) {
    welcomed += hello_from(port, 0x7f000002, "one-" + std::to_string(i)) == FrameType::Welcome;
    if (i % 20 == 19) fds_peak = std::max(fds_peak, fds_of(sink.pid()));
  }
  EXPECT_EQ(welcomed, 8u);
  // Its own descriptors at start, at most 50 files, and the few connections it had not yet seen go.
  EXPECT_LE(fds_peak, fds_at_start + 50 + 16) << "at start: " << fds_at_start;
  EXPECT_TRUE(wait_until([&] { return fds_of(sink.pid()) <= fds_at_start + 50; }, 5s))
      << fds_of(sink.pid()) << " fds, " << fds_at_start << " at start";
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("[   INFO   ] 4,000 ids (2,000 from 250 addresses, 2,000 from one) in %.1f s: sink fds %zu at start, "
              "at most %zu\n",
              seconds, fds_at_start, fds_peak);

  // An honest collector (from 127.0.0.1) streams; every batch is stored exactly once.
  auto client = make_client(fast_client_options(*Endpoint::parse("tcp://127.0.0.1:" + std::to_string(port)),
                                                dir.file("spool")),
                            "honest");
  ASSERT_TRUE(client->start());
  SyntheticSource source(9, 24);
  for (std::uint64_t s = 0; s < 200; ++s) ASSERT_TRUE(client->write_batch(source.batch(s)));
  ASSERT_TRUE(finished_in_time(client->finish(v1::TraceTrailer(), 20s)));
  // The trailer is sent, not yet stored: the sink writes it when it reads it.
  EXPECT_TRUE(wait_until([&] { return read_recording(dir.file("sink/honest.data")).trailers.size() == 1; }, 10s));
  const RunResult r = sink.stop(SIGTERM);
  EXPECT_EQ(r.exit_status, 0) << r.err;
  const StoredRecording stored = read_recording(dir.file("sink/honest.data"));
  EXPECT_EQ(stored.trailers.size(), 1u);
  EXPECT_TRUE(holds_exactly_once(stored, source, 200));

  // The refusals: one line for the first, then at most one summary per 10 s.
  const std::size_t refusal_lines = count_of(r.err, "(--max-collectors-per-peer 8)");
  EXPECT_GE(refusal_lines, 1u);
  EXPECT_LE(refusal_lines, 2u + static_cast<std::size_t>(seconds / 10)) << r.err.substr(0, 4000);
}

}  // namespace
}  // namespace perfstream::testing
