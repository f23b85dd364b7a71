// What record, stream and sink keep after setup, read from /proc/PID/status while the real binary captures
// the real loadgen probe; and that the capture still holds every record, rotates, and follows a CPU that
// comes back online. Needs root; skips only when the kernel refuses BPF.
//
// Each capture runs a command that is released only once setup is done and privileges are dropped (see
// run_capture); the command writes its own status and then waits on a fifo, so the test knows when to look
// and decides when the capture ends.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "testing/kernel_fixture.hpp"
#include "testing/remote_loadgen.hpp"
#include "testing/ports.hpp"
#include "testing/subprocess.hpp"

extern "C" {
#include <linux/types.h>
#include "events.h"
}

namespace perfstream::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// CAP_IPC_LOCK (14), CAP_PERFMON (38), CAP_BPF (39): what a capture keeps for CPU hotplug.
constexpr const char* kHotplugCaps = "000000c000004000";
constexpr const char* kNoCaps = "0000000000000000";
constexpr const char* kNobodyIds = "65534\t65534\t65534\t65534";

std::map<std::string, std::string> read_status(const std::string& path) {
  std::map<std::string, std::string> fields;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    fields[line.substr(0, colon)] = line.substr(line.find_first_not_of(" \t", colon + 1) == std::string::npos
                                                    ? line.size()
                                                    : line.find_first_not_of(" \t", colon + 1));
  }
  return fields;
}

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds limit = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return condition();
}

std::uint64_t json_number(const std::string& json, const std::string& pattern) {
  std::smatch m;
  if (!std::regex_search(json, m, std::regex(pattern + "([0-9]+)"))) {
    ADD_FAILURE() << pattern << " not in " << json;
    return ~0ull;
  }
  return std::stoull(m[1].str());
}

class Privileges : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("perfstream-priv-" + std::to_string(getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
    ASSERT_EQ(mkfifo(go_fifo().c_str(), 0600), 0) << std::strerror(errno);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string go_fifo() const { return (dir_ / "go").string(); }
  std::string command_status() const { return (dir_ / "command-status").string(); }

  // Starts perfstream `args` with the gated command. Returns null after GTEST_SKIP or a failure.
  std::unique_ptr<Background> start(std::vector<std::string> args) {
    args.insert(args.end(), {"--", "/bin/sh", "-c",
                             "cat /proc/self/status > " + command_status() + " && cat " + go_fifo() + " >/dev/null"});
    auto capture = std::make_unique<Background>(args);
    wait_until([&] { return (fs::exists(command_status()) && fs::file_size(command_status()) > 0) || capture->exited(); });
    if (fs::exists(command_status()) && fs::file_size(command_status()) > 0) return capture;
    RunResult r = capture->exited() ? capture->wait() : capture->stop(SIGKILL);
    if (r.err.find("refused") != std::string::npos) {
      [&] { GTEST_SKIP() << "the kernel refuses BPF here: " << r.err; }();
      return nullptr;
    }
    ADD_FAILURE() << "the capture did not start: exit " << r.exit_status << ": " << r.err;
    return nullptr;
  }

  // Lets the command exit, so the capture stops by itself, and waits for it.
  RunResult finish(Background& capture) {
    int fd = -1;
    wait_until([&] { return (fd = open(go_fifo().c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC)) >= 0; }, 10s);
    if (fd >= 0) close(fd);
    return capture.wait();
  }

  // The capability sets, ids and no_new_privs of a running perfstream.
  void expect_dropped(pid_t pid, const std::string& ids, const std::string& caps) {
    auto status = read_status("/proc/" + std::to_string(pid) + "/status");
    EXPECT_EQ(status["Uid"], ids);
    EXPECT_EQ(status["Gid"], ids);
    EXPECT_EQ(status["CapEff"], caps);
    EXPECT_EQ(status["CapPrm"], caps);
    EXPECT_EQ(status["CapBnd"], caps);
    EXPECT_EQ(status["CapInh"], kNoCaps);
    EXPECT_EQ(status["CapAmb"], kNoCaps);
    EXPECT_EQ(status["NoNewPrivs"], "1");
    EXPECT_GT(std::stoi(status["Threads"]), 1) << "read while the readers run";
  }

  // `calls` records from CPU `cpu` through perfstream's loadgen; the emitted count, every emit successful.
  std::uint64_t produce(pid_t pid, unsigned cpu, int calls) {
    RemoteLoadgen loadgen(pid);
    EXPECT_TRUE(loadgen.found()) << "perfstream's loadgen maps";
    if (!loadgen.found()) return 0;
    loadgen.configure(64);
    EXPECT_TRUE(loadgen.trigger_on_cpu(cpu, calls));
    loadgen.configure(0);
    const auto counts = loadgen.counts(cpu);
    EXPECT_EQ(counts.failed, 0u);
    return counts.emitted;
  }

  fs::path dir_;
};

TEST_F(Privileges, RecordAsNobodyKeepsOnlyWhatHotplugNeedsAndRecordsEveryRecord) {
  const fs::path trace = dir_ / "loadgen.data";
  auto capture = start({perfstream_binary(), "record", "--probe", "loadgen", "--user", "nobody", "-o", trace.string()});
  if (!capture) return;
  expect_dropped(capture->pid(), kNobodyIds, kHotplugCaps);
  // The command was forked before setup: it keeps what perfstream was started with.
  auto command = read_status(command_status());
  auto self = read_status("/proc/self/status");
  EXPECT_EQ(command["Uid"], "0\t0\t0\t0");
  EXPECT_EQ(command["CapEff"], self["CapEff"]);
  EXPECT_EQ(command["CapBnd"], self["CapBnd"]);
  EXPECT_EQ(command["NoNewPrivs"], "0");

  EXPECT_EQ(produce(capture->pid(), 0, 2000), 2000u);
  RunResult rec = finish(*capture);
  ASSERT_EQ(rec.exit_status, 0) << rec.err;
  EXPECT_NE(rec.err.find("running as nobody:nogroup (65534:65534) with CAP_IPC_LOCK,CAP_PERFMON,CAP_BPF (every "
                         "other capability dropped, from the bounding set too; no_new_privs)"),
            std::string::npos)
      << rec.err;
  struct stat st {};
  ASSERT_EQ(stat(trace.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 65534u) << "the trace file is handed to the user";
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  RunResult stats = run({perfstream_binary(), "stats", "--json", trace.string()});
  ASSERT_EQ(stats.exit_status, 0) << stats.err;
  EXPECT_EQ(json_number(stats.out, "\"totals\":\\{\"records\":"), 2000u);
  EXPECT_EQ(json_number(stats.out, "\"lost_kernel\":"), 0u);
}

TEST_F(Privileges, RotationAfterTheDropCreatesThePiecesAsTheUser) {
  const fs::path out = dir_ / "out";
  fs::create_directories(out);
  ASSERT_EQ(chown(out.c_str(), 65534, 65534), 0);
  const fs::path trace = out / "rotated.data";
  auto capture = start({perfstream_binary(), "record", "--probe", "loadgen", "--user", "65534", "-o", trace.string(),
                        "--rotate-size", "1K", "--batch-records", "200", "--quiet"});
  if (!capture) return;
  EXPECT_EQ(produce(capture->pid(), 0, 2000), 2000u);
  RunResult rec = finish(*capture);
  ASSERT_EQ(rec.exit_status, 0) << rec.err;
  std::vector<std::string> argv = {perfstream_binary(), "stats", "--json", trace.string()};
  for (int piece = 1; fs::exists(trace.string() + "." + std::to_string(piece)); ++piece) {
    const std::string path = trace.string() + "." + std::to_string(piece);
    argv.push_back(path);
    struct stat st {};
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 65534u) << path;
    EXPECT_EQ(st.st_mode & 0777, 0640u) << path;
  }
  EXPECT_GE(argv.size(), 4u + 2) << "2000 records in batches of 200, at most a few per 1K piece";
  RunResult stats = run(argv);
  ASSERT_EQ(stats.exit_status, 0) << stats.err;
  EXPECT_EQ(json_number(stats.out, "\"totals\":\\{\"records\":"), 2000u);
}

TEST_F(Privileges, RotationIntoADirectoryTheUserCannotWriteFailsAtStart) {
  const fs::path trace = dir_ / "rotated.data";  // dir_ is root's, 0711
  RunResult rec = run({perfstream_binary(), "record", "--probe", "loadgen", "--user", "nobody", "-o", trace.string(),
                       "--rotate-size", "1M", "--", "/bin/true"});
  if (rec.err.find("refused") != std::string::npos) GTEST_SKIP() << rec.err;
  EXPECT_EQ(rec.exit_status, 1);
  EXPECT_NE(rec.err.find("running as nobody:nogroup (65534:65534), perfstream cannot create the rotated pieces " +
                         trace.string() + ".1, ... in " + dir_.string() + ": Permission denied"),
            std::string::npos)
      << rec.err;
}

TEST_F(Privileges, RootWithoutUserKeepsItsIdsButOnlyWhatHotplugNeeds) {
  auto capture = start({perfstream_binary(), "record", "--probe", "loadgen", "-o", (dir_ / "root.data").string()});
  if (!capture) return;
  expect_dropped(capture->pid(), "0\t0\t0\t0", kHotplugCaps);
  RunResult rec = finish(*capture);
  ASSERT_EQ(rec.exit_status, 0) << rec.err;
  EXPECT_NE(rec.err.find("running as root with CAP_IPC_LOCK,CAP_PERFMON,CAP_BPF"), std::string::npos) << rec.err;
}

TEST_F(Privileges, ACpuBackOnlineAfterTheDropGetsANewRing) {
  auto online = CpuSet::online();
  if (!online || online->size() < 2) GTEST_SKIP() << "needs two online CPUs";
  const unsigned cpu = online->max();
  if (access(("/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/online").c_str(), W_OK) != 0) {
    GTEST_SKIP() << "CPU " << cpu << " cannot be taken offline here";
  }
  const fs::path trace = dir_ / "hotplug.data";
  auto capture = start({perfstream_binary(), "record", "--probe", "loadgen", "--user", "nobody", "-o", trace.string()});
  if (!capture) return;
  RemoteLoadgen loadgen(capture->pid());
  ASSERT_TRUE(loadgen.found());
  loadgen.configure(64);
  ASSERT_TRUE(loadgen.trigger_on_cpu(cpu, 300));
  struct OnlineAgain {
    unsigned cpu;
    ~OnlineAgain() { set_cpu_online(cpu, true); }
  } restore{cpu};
  ASSERT_EQ(set_cpu_online(cpu, false), "");
  std::this_thread::sleep_for(400ms);  // the hotplug check (every 250 ms) drains and closes the old ring
  ASSERT_EQ(set_cpu_online(cpu, true), "");
  // Emits fail until the new event is in the map slot: a record that arrives means it is.
  EXPECT_TRUE(wait_until([&] { return loadgen.trigger_on_cpu(cpu, 1) && loadgen.counts(cpu).emitted > 300; }, 10s));
  ASSERT_TRUE(loadgen.trigger_on_cpu(cpu, 300));
  loadgen.configure(0);
  const std::uint64_t emitted = loadgen.counts(cpu).emitted;
  EXPECT_GE(emitted, 601u);
  RunResult rec = finish(*capture);
  ASSERT_EQ(rec.exit_status, 0) << rec.err;
  EXPECT_NE(rec.err.find("CPU " + std::to_string(cpu) + " is online: ring opened"), std::string::npos) << rec.err;
  EXPECT_EQ(rec.err.find("not permitted"), std::string::npos) << rec.err;
  RunResult stats = run({perfstream_binary(), "stats", "--json", trace.string()});
  ASSERT_EQ(stats.exit_status, 0) << stats.err;
  EXPECT_EQ(json_number(stats.out, "\\{\"cpu\":" + std::to_string(cpu) + ",\"records\":"), emitted);
  EXPECT_EQ(json_number(stats.out, "\"lost_kernel\":"), 0u);
}

TEST_F(Privileges, SinkAsNobodyReceivesAStreamFromACollectorWithNoCapabilityLeft) {
  const fs::path sink_dir = dir_ / "sink";
  fs::create_directories(sink_dir);
  ASSERT_EQ(chown(sink_dir.c_str(), 65534, 65534), 0);
  const std::string to = "tcp://127.0.0.1:" + std::to_string(free_tcp_port());
  Background sink({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", perfstream_binary(), "sink",
                   "--listen", to, "-d", sink_dir.string(), "--status-interval", "0"});
  // Its serving threads start after the drop.
  ASSERT_TRUE(wait_until([&] {
    const std::string threads = read_status("/proc/" + std::to_string(sink.pid()) + "/status")["Threads"];
    return sink.exited() || (!threads.empty() && std::stoi(threads) > 1);
  })) << "the sink did not start";
  ASSERT_FALSE(sink.exited()) << sink.wait().err;
  auto sink_status = read_status("/proc/" + std::to_string(sink.pid()) + "/status");
  EXPECT_EQ(sink_status["Uid"], kNobodyIds);
  EXPECT_EQ(sink_status["CapEff"], kNoCaps);
  EXPECT_EQ(sink_status["NoNewPrivs"], "1");

  const fs::path spool = dir_ / "spool";  // made by stream, then handed to nobody
  auto capture = start({perfstream_binary(), "stream", "--to", to, "--probe", "loadgen", "--user", "nobody",
                        "--no-hotplug", "--spool", spool.string()});
  if (!capture) return;
  expect_dropped(capture->pid(), kNobodyIds, kNoCaps);
  struct stat st {};
  ASSERT_EQ(stat(spool.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 65534u);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(produce(capture->pid(), 0, 2000), 2000u);
  RunResult streamed = finish(*capture);
  ASSERT_EQ(streamed.exit_status, 0) << streamed.err;
  EXPECT_NE(streamed.err.find("running as nobody:nogroup (65534:65534) with no capabilities"), std::string::npos)
      << streamed.err;
  RunResult sunk = sink.stop(SIGINT);
  EXPECT_EQ(sunk.exit_status, 0) << sunk.err;
  EXPECT_NE(sunk.err.find("running as nobody with no capabilities"), std::string::npos) << sunk.err;
  std::vector<std::string> argv = {perfstream_binary(), "stats", "--json"};
  for (const auto& e : fs::directory_iterator(sink_dir)) {
    if (e.path().extension() == ".data") argv.push_back(e.path().string());
  }
  ASSERT_EQ(argv.size(), 4u) << "one trace file for the one collector";
  RunResult stats = run(argv);
  ASSERT_EQ(stats.exit_status, 0) << stats.err;
  EXPECT_EQ(json_number(stats.out, "\"totals\":\\{\"records\":"), 2000u);
}

TEST_F(Privileges, ABadUserIsAUsageErrorBeforeAnythingIsLoaded) {
  RunResult unknown = run({perfstream_binary(), "record", "--probe", "loadgen", "--user", "no-such-user-here"});
  EXPECT_EQ(unknown.exit_status, 2);
  EXPECT_EQ(unknown.err, "perfstream record: --user 'no-such-user-here': no such user 'no-such-user-here'\n");
  RunResult group = run({perfstream_binary(), "stream", "--to", "tcp://127.0.0.1:1", "--probe", "loadgen", "--user",
                         "nobody:no-such-group-here"});
  EXPECT_EQ(group.exit_status, 2);
  EXPECT_NE(group.err.find("no such group 'no-such-group-here'"), std::string::npos) << group.err;
  RunResult not_root = run({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", perfstream_binary(),
                            "record", "--probe", "loadgen", "--user", "nobody"});
  EXPECT_EQ(not_root.exit_status, 2);
  EXPECT_NE(not_root.err.find("--user nobody: switching users needs root (CAP_SETUID and CAP_SETGID)"),
            std::string::npos)
      << not_root.err;
  RunResult sink = run({perfstream_binary(), "sink", "--listen", "tcp://127.0.0.1:1", "-d", dir_.string(), "--user",
                        "no-such-user-here"});
  EXPECT_EQ(sink.exit_status, 2);
  EXPECT_NE(sink.err.find("no such user"), std::string::npos) << sink.err;
}

}  // namespace
}  // namespace perfstream::testing
