// SinkAndStreamTest: what the end-to-end tests of `perfstream stream` into `perfstream sink` share.
//   - a scratch directory per test (`dir_`), named after the suite's prefix, the process and the test, and
//     removed at the end with everything in it;
//   - a free loopback port and its URL (`to_`);
//   - the real binary started as a sink storing under dir_/sink, and as a collector streaming the openat
//     probe of this test process to it, spooling under dir_/spool;
//   - files created under dir_/files for that probe to see;
//   - one place that tells a kernel refusing BPF (the only reason a test may skip) from a failure.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "testing/ports.hpp"
#include "testing/subprocess.hpp"
#include "testing/synthetic_stream.hpp"

namespace perfstream::testing {

class SinkAndStreamTest : public ::testing::Test {
 protected:
  // `prefix` names the scratch directories of the suite, e.g. "perfstream-stream-e2e".
  explicit SinkAndStreamTest(std::string prefix) : prefix_(std::move(prefix)) {}

  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           (prefix_ + "-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_ / "files");
    port_ = free_tcp_port();
    to_ = "tcp://127.0.0.1:" + std::to_string(port_);
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // The sink, once it accepts connections; nullptr (and a failure) when it exits instead.
  std::unique_ptr<Background> start_sink(const std::vector<std::string>& extra = {}) {
    using namespace std::chrono_literals;
    std::vector<std::string> argv = {perfstream_binary(), "sink", "--listen", to_, "-d", (dir_ / "sink").string(),
                                     "--status-interval", "0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto sink = std::make_unique<Background>(argv);
    const bool up = wait_until([&] { return accepts_connections(port_) || sink->exited(); }, 10s);
    if (!up || sink->exited()) {
      RunResult r = sink->wait();
      ADD_FAILURE() << "the sink did not start: exit " << r.exit_status << ": " << r.err;
      return nullptr;
    }
    return sink;
  }

  // A collector streaming this process's openats to the sink, in small, young batches so that tests see
  // them arrive quickly.
  std::unique_ptr<Background> start_stream() {
    return std::make_unique<Background>(std::vector<std::string>{
        perfstream_binary(), "stream", "--to", to_, "--probe", "openat", "-p", std::to_string(::getpid()), "--spool",
        (dir_ / "spool").string(), "--batch-age", "20ms", "--batch-records", "16"});
  }

  // For a stream that exited (or never got going) where a test waited for it: sets *skip when the kernel
  // refused BPF, else records a failure naming `what` ("did not connect") with the stream's stderr.
  static void explain_stream_exit(Background& stream, const std::string& what, std::string* skip) {
    RunResult r = stream.wait();
    if (r.err.find("refused") != std::string::npos || r.err.find("Operation not permitted") != std::string::npos) {
      *skip = "the kernel refuses BPF here: " + r.err;
    } else {
      ADD_FAILURE() << "the stream " << what << ": exit " << r.exit_status << ": " << r.err;
    }
  }

  // Creates files dir_/files/f-<i>zz... for i in [from, to) (names of varying length) and returns their
  // paths, which the openat probe then reports.
  std::set<std::string> open_files(int from, int to) {
    std::set<std::string> paths;
    for (int i = from; i < to; ++i) {
      const std::string path = (dir_ / "files" / ("f-" + std::to_string(i) + std::string(i % 17, 'z'))).string();
      int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
      EXPECT_GE(fd, 0) << path;
      if (fd >= 0) ::close(fd);
      paths.insert(path);
    }
    return paths;
  }

  std::filesystem::path dir_;
  std::uint16_t port_ = 0;
  std::string to_;

 private:
  std::string prefix_;
};

}  // namespace perfstream::testing
