// --set, --event-type and --btf end to end, on a tool shaped like libbpf-tools' older opensnoop
// (bpf/test_opensnoop.bpf.c): the real binary, the real kernel. Its globals filter what is recorded; its
// record struct is not in the object's BTF, so --btf takes it from the header's BTF (test_opensnoop_btf.c).
// Needs root (it loads BPF); skips only when the kernel refuses BPF.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "testing/kernel_fixture.hpp"
#include "testing/subprocess.hpp"

namespace perfstream::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

const std::string kObject = std::string(PERFSTREAM_BPF_GEN_DIR) + "/test_opensnoop.bpf.o";
const std::string kHeaderBtf = std::string(PERFSTREAM_BPF_GEN_DIR) + "/test_opensnoop_btf.o";

std::vector<std::string> record_lines(const std::string& dump) {
  std::vector<std::string> out;
  std::stringstream ss(dump);
  std::string line;
  while (std::getline(ss, line)) {
    if (line.find("\"event\":") != std::string::npos) out.push_back(line);
  }
  return out;
}

// A process that waits until told, then becomes `uid` and opens `paths` (each once), then exits.
class Opener {
 public:
  Opener(uid_t uid, std::vector<std::string> paths) {
    if (pipe2(go_, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      char c = 0;
      if (read(go_[0], &c, 1) != 1) _exit(2);
      if (setuid(uid) != 0) _exit(3);
      for (const auto& p : paths) {
        const int fd = openat(AT_FDCWD, p.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd >= 0) close(fd);
      }
      _exit(0);
    }
    close(go_[0]);
  }
  ~Opener() {
    if (pid_ > 0 && !done_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(go_[1]);
  }
  pid_t pid() const { return pid_; }
  int go_and_wait() {
    int status = -1;
    if (write(go_[1], "g", 1) != 1) return -1;
    waitpid(pid_, &status, 0);
    done_ = true;
    return status;
  }

 private:
  int go_[2] = {-1, -1};
  pid_t pid_ = -1;
  bool done_ = false;
};

class ObjectGlobalsEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("perfstream-globals-" + std::to_string(getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // Starts `perfstream record --object test_opensnoop.bpf.o ARGS -o FILE` and waits until it records; nullptr
  // when it did not start: refused_ says why when the kernel refuses BPF (the test skips), else a failure is
  // added.
  std::unique_ptr<Background> start_recording(const fs::path& trace, const std::vector<std::string>& args) {
    std::vector<std::string> argv = {perfstream_binary(), "record", "--object", kObject, "-o", trace.string(), "--quiet"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto recorder = std::make_unique<Background>(argv);
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (fs::exists(trace) && fs::file_size(trace) > 16) return recorder;
      if (recorder->exited()) break;
      std::this_thread::sleep_for(20ms);
    }
    RunResult r = recorder->stop(SIGINT);
    if (r.err.find("refused") != std::string::npos) refused_ = r.err;
    else ADD_FAILURE() << "the recorder did not start: " << r.err;
    return nullptr;
  }
  std::vector<std::string> dumped_records(const fs::path& trace) {
    RunResult dump = run({perfstream_binary(), "dump", "--json", trace.string()});
    EXPECT_EQ(dump.exit_status, 0) << dump.err;
    return record_lines(dump.out);
  }
  fs::path dir_;
  std::string refused_;
};

#define START_OR_SKIP(recorder)                       \
  if ((recorder) == nullptr) {                        \
    if (!refused_.empty()) GTEST_SKIP() << refused_;  \
    return;                                           \
  }

std::string own_comm() {
  std::ifstream in("/proc/self/comm");
  std::string comm;
  std::getline(in, comm);
  return comm;
}

TEST_F(ObjectGlobalsEndToEnd, SetFilterRecordsExactlyThatProcessWithNamedFieldsFromTheHeaderBtf) {
  const fs::path trace = dir_ / "pid.data";
  auto recorder = start_recording(trace, {"--set", "targ_tgid=" + std::to_string(getpid()), "--set",
                                          "targ_uid=0xffffffff", "--set", "tag=e2e", "--event-type", "event", "--btf",
                                          kHeaderBtf});
  START_OR_SKIP(recorder);
  std::vector<std::string> paths;
  for (int i = 0; i < 5; ++i) {
    paths.push_back((dir_ / ("missing-" + std::to_string(i))).string());
    EXPECT_LT(openat(AT_FDCWD, paths.back().c_str(), O_RDONLY | O_CLOEXEC), 0);
  }
  RunResult rec = recorder->stop(SIGINT);
  ASSERT_EQ(rec.exit_status, 0) << rec.err;
  const auto records = dumped_records(trace);
  // Only this process's five calls: the recorder's own opens and everyone else's are filtered in BPF.
  ASSERT_EQ(records.size(), 5u) << ::testing::PrintToString(records);
  for (std::size_t i = 0; i < records.size(); ++i) {
    const std::string expected = "\"pid\":" + std::to_string(getpid()) +
                                 ",\"uid\":0,\"ret\":-2,\"flags\":524288,\"outcome\":\"SNOOP_FAILED\",\"args[0]\":-100,"
                                 "\"args[1]\":524288,\"args[2]\":0,\"comm\":\"" + own_comm() +
                                 "\",\"tag\":\"e2e\",\"fname.len\":" + std::to_string(paths[i].size() + 1) +
                                 ",\"fname.pathes\":\"" + paths[i] + "\"}}";
    EXPECT_NE(records[i].find(expected), std::string::npos) << records[i] << "\nexpected: " << expected;
    EXPECT_NE(records[i].find("\"event\":\"" + kObject + "\""), std::string::npos) << records[i];
  }
  // Flattened names and enum names work in dump's filters as any field's do.
  RunResult filtered = run({perfstream_binary(), "dump", "--json", "--filter", "fname.pathes~missing-3", "--filter",
                            "outcome=SNOOP_FAILED", "--filter", "args[0]=-100", trace.string()});
  ASSERT_EQ(filtered.exit_status, 0) << filtered.err;
  const auto one = record_lines(filtered.out);
  ASSERT_EQ(one.size(), 1u) << filtered.out;
  EXPECT_EQ(one[0], records[3]);
}

TEST_F(ObjectGlobalsEndToEnd, TargUidDefaultRecordsOnlyRootUntilSetToInvalidUid) {
  const std::vector<std::string> paths = {(dir_ / "u-a").string(), (dir_ / "u-b").string(), (dir_ / "u-c").string()};
  {
    // As the tool's loader does not run, targ_uid keeps its 0: only root's calls pass, and nobody's are seen.
    Opener opener(65534, paths);
    ASSERT_GT(opener.pid(), 0);
    const fs::path trace = dir_ / "default.data";
    auto recorder = start_recording(trace, {"--set", "targ_tgid=" + std::to_string(opener.pid())});
    START_OR_SKIP(recorder);
    ASSERT_EQ(opener.go_and_wait(), 0);
    RunResult rec = recorder->stop(SIGINT);
    ASSERT_EQ(rec.exit_status, 0) << rec.err;
    EXPECT_EQ(dumped_records(trace).size(), 0u);
  }
  {
    // What the loader writes by default (INVALID_UID): every uid's calls, so the three of uid 65534.
    Opener opener(65534, paths);
    ASSERT_GT(opener.pid(), 0);
    const fs::path trace = dir_ / "any-uid.data";
    auto recorder = start_recording(trace, {"--set", "targ_tgid=" + std::to_string(opener.pid()), "--set",
                                            "targ_uid=-1", "--event-type", "event", "--btf", kHeaderBtf});
    START_OR_SKIP(recorder);
    ASSERT_EQ(opener.go_and_wait(), 0);
    RunResult rec = recorder->stop(SIGINT);
    ASSERT_EQ(rec.exit_status, 0) << rec.err;
    const auto records = dumped_records(trace);
    ASSERT_EQ(records.size(), 3u) << ::testing::PrintToString(records);
    for (std::size_t i = 0; i < records.size(); ++i) {
      EXPECT_NE(records[i].find("\"pid\":" + std::to_string(opener.pid()) + ",\"uid\":65534,\"ret\":-2,"),
                std::string::npos)
          << records[i];
      EXPECT_NE(records[i].find("\"fname.pathes\":\"" + paths[i] + "\""), std::string::npos) << records[i];
    }
  }
}

TEST_F(ObjectGlobalsEndToEnd, BadSettingsAreRefusedSayingWhy) {
  struct Case {
    std::vector<std::string> args;
    int exit_status;
    std::string message;
  };
  const Case cases[] = {
      {{"--set", "targ_pdi=1"}, 1,
       kObject + ": --set targ_pdi=1: no global named 'targ_pdi'; its globals: targ_pid, targ_tgid, targ_uid, "
                 "targ_failed, targ_outcome, tag, opens_recorded, test_s8, test_u16, test_s64, test_u64"},
      {{"--set", "targ_pid=4294967296"}, 1,
       kObject + ": --set targ_pid=4294967296: 4294967296 is out of range: targ_pid is pid_t (signed 32-bit "
                 "integer: -2147483648 to 2147483647)"},
      {{"--set", "targ_outcome=SNOOP_MAYBE"}, 1,
       "'SNOOP_MAYBE' is no enumerator of enum snoop_outcome (SNOOP_ANY, SNOOP_OPENED, SNOOP_FAILED)"},
      {{"--set", "tag=too-long"}, 1, "\"too-long\" is 8 bytes; tag is char[8], at most 7 bytes and the NUL"},
      {{"--set", "targ_pid"}, 2, "--set 'targ_pid': give NAME=VALUE"},
      {{"--event-type", "event"}, 1, "has no struct event in its BTF"},
      {{"--btf", kHeaderBtf}, 2, "--btf " + kHeaderBtf + " needs --event-type STRUCT"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> argv = {perfstream_binary(), "record", "--object", kObject, "-o",
                                     (dir_ / "x.data").string(), "--quiet", "--duration", "1s"};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    RunResult r = run(argv);
    if (r.err.find("refused to load") != std::string::npos) GTEST_SKIP() << r.err;
    EXPECT_EQ(r.exit_status, c.exit_status) << c.args[0] << " " << c.args[1] << ": " << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err << "\nexpected: " << c.message;
  }
  RunResult builtin = run({perfstream_binary(), "record", "--probe", "openat", "--set", "x=1"});
  EXPECT_EQ(builtin.exit_status, 2);
  EXPECT_NE(builtin.err.find("--set needs --object FILE"), std::string::npos) << builtin.err;
}

}  // namespace
}  // namespace perfstream::testing
