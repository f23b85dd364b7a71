// The probes of issue 13 in the real kernel, with exact values: openat reads paths the caller never
// touched and records the result, exec records argv and failures, exit records status and signal, fork
// records parent and child, tcp records both ends of a loopback connection, and the BPF-side filters keep
// exactly the tasks asked for.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "testing/kernel_fixture.hpp"

extern "C" {
#include <linux/types.h>
#include "events.h"
}

extern char** environ;

namespace perfstream::testing {
namespace {

std::string c_string(const char* bytes, std::size_t max) { return std::string(bytes, strnlen(bytes, max)); }
pid_t gettid_() { return static_cast<pid_t>(syscall(SYS_gettid)); }

// The records of one kind, each copied into its struct (zero-filled past what the sample holds), with the
// sample's size.
template <typename T>
struct Parsed {
  T event;
  std::size_t size;
};
template <typename T>
std::vector<Parsed<T>> records_of(const Collector& collector, std::uint32_t kind) {
  std::vector<Parsed<T>> out;
  // In time order: the rings are drained CPU by CPU, so a process that execs on one CPU and again on
  // another has its records stored in drain order, not in the order they happened.
  std::vector<CollectedRecord> records = collector.store.records();
  std::stable_sort(records.begin(), records.end(), [](const auto& a, const auto& b) { return a.time < b.time; });
  for (const auto& r : records) {
    if (r.is_lost || r.raw.size() < 4) continue;
    std::uint32_t k = 0;
    std::memcpy(&k, r.raw.data(), 4);
    if (k != kind) continue;
    auto p = std::make_unique<Parsed<T>>();  // exec's struct is 8 KiB: not on the stack
    std::memset(&p->event, 0, sizeof(T));
    std::memcpy(&p->event, r.raw.data(), std::min(r.raw.size(), sizeof(T)));
    p->size = r.raw.size();
    out.push_back(*p);
  }
  return out;
}

// A probe loaded and drained in process; stop() detaches and drains everything written.
struct Traced {
  std::unique_ptr<BpfProbe> probe;
  std::unique_ptr<Collector> collector;
  std::string skip;

  explicit Traced(const std::string& name, const ProbeOptions& options = {}) {
    probe = load_probe(name, options, &skip);
    if (!probe) return;
    collector = Collector::create(*probe, EventArrayOptions{});
    if (collector) collector->pool->start();
  }
  bool ok() const { return probe && collector; }
  void stop() {
    probe->detach();
    collector->pool->stop();
    EXPECT_EQ(collector->store.lost(), 0u);
  }
};

#define START_OR_SKIP(t)               \
  do {                                 \
    if (!(t).probe) GTEST_SKIP() << (t).skip; \
    ASSERT_TRUE((t).ok());             \
  } while (0)

// Runs argv[0] (a path, not searched) with argv; returns the pid, after it has exited; *status its status.
pid_t spawn_and_wait(const std::vector<std::string>& args, int* status) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t child = 0;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  const int err = posix_spawn(&child, args[0].c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) {
    ADD_FAILURE() << "posix_spawn " << args[0] << ": " << std::strerror(err);
    return -1;
  }
  EXPECT_EQ(waitpid(child, status, 0), child);
  return child;
}

// The strings of an exec record after the file name: its argv.
std::vector<std::string> argv_of(const ps_exec_event& e) {
  std::vector<std::string> out;
  const std::size_t used = std::min<std::size_t>(e.filename_len, sizeof(e.filename));
  std::size_t i = strnlen(e.filename, used) + 1;  // past the file name
  while (i < used) {
    const std::size_t n = strnlen(e.filename + i, used - i);
    out.emplace_back(e.filename + i, n);
    i += n + 1;
  }
  return out;
}

class TempFiles {
 public:
  TempFiles() : dir_(std::filesystem::temp_directory_path() / ("perfstream-probes-" + std::to_string(getpid()))) {
    std::filesystem::create_directories(dir_);
  }
  ~TempFiles() { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

 private:
  std::filesystem::path dir_;
};

// ----------------------------------------------------------------------------------------------------------
// openat

// Each path is a string in a file-backed page this process maps fresh and never touches before openat
// reads it: at sys_enter the page is not mapped in, so reading it there finds nothing (the bug of issue 13,
// bcc #4292); at sys_exit the kernel has faulted it in. Every path must arrive, whole, every time.
TEST(OpenatProbe, RecordsEveryPathInAPageNotYetFaultedIn) {
  ProbeOptions options;
  options.filter_tgids = {static_cast<std::uint32_t>(getpid())};
  Traced t("openat", options);
  START_OR_SKIP(t);
  TempFiles files;
  constexpr int kOpens = 50;
  std::vector<std::pair<std::string, int>> expected;  // path, fd
  for (int i = 0; i < kOpens; ++i) {
    const std::string target = files.path("target-" + std::to_string(i) + std::string(i % 13, 'y'));
    { std::ofstream(target) << "x"; }
    const std::string holder = files.path("holder-" + std::to_string(i));
    {
      std::ofstream out(holder, std::ios::binary);
      out.write(target.c_str(), static_cast<std::streamsize>(target.size() + 1));
    }
    const int hfd = open(holder.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(hfd, 0);
    void* page = mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE, hfd, 0);
    ASSERT_NE(page, MAP_FAILED);
    unsigned char resident = 1;
    ASSERT_EQ(mincore(page, 4096, &resident), 0);
    // The raw syscall: nothing in libc reads the string before the kernel does.
    const int fd = static_cast<int>(syscall(SYS_openat, AT_FDCWD, page, O_RDONLY | O_CLOEXEC));
    ASSERT_GE(fd, 0) << std::strerror(errno);
    expected.emplace_back(target, fd);
    munmap(page, 4096);
    close(fd);
    close(hfd);
  }
  t.stop();

  std::map<std::string, ps_openat_event> by_path;
  std::size_t empty = 0;
  for (const auto& [e, size] : records_of<ps_openat_event>(*t.collector, PS_EVENT_OPENAT)) {
    EXPECT_EQ(e.pid, static_cast<__u32>(getpid()));
    if (e.path_len == 0) {
      ++empty;
      EXPECT_NE(e.path_err, 0) << "an empty path must say why";
      continue;
    }
    EXPECT_EQ(e.path_err, 0);
    EXPECT_EQ(e.path[e.path_len - 1], '\0');
    EXPECT_LT(size, PS_OPENAT_HEADER_SIZE + e.path_len + 8);
    by_path[std::string(e.path)] = e;
  }
  EXPECT_EQ(empty, 0u);
  for (const auto& [path, fd] : expected) {
    auto it = by_path.find(path);
    ASSERT_NE(it, by_path.end()) << "not recorded: " << path;
    EXPECT_EQ(it->second.ret, fd);
    EXPECT_EQ(it->second.call, static_cast<__u32>(PS_OPEN_OPENAT));
    EXPECT_EQ(it->second.dfd, AT_FDCWD);
    EXPECT_EQ(it->second.flags, O_RDONLY | O_CLOEXEC);
    EXPECT_EQ(it->second.tid, static_cast<__u32>(gettid_()));
  }
}

// `cat /nonexistent`: the record carries -ENOENT (a failure looks like one), and the path.
TEST(OpenatProbe, CatOfAMissingFileRecordsENOENT) {
  Traced t("openat");
  START_OR_SKIP(t);
  const std::string missing = "/nonexistent-perfstream-" + std::to_string(getpid());
  int status = 0;
  const pid_t cat = spawn_and_wait({"/bin/cat", missing}, &status);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  t.stop();
  int matches = 0;
  for (const auto& [e, size] : records_of<ps_openat_event>(*t.collector, PS_EVENT_OPENAT)) {
    if (e.path_len == 0 || std::string(e.path) != missing) continue;
    ++matches;
    EXPECT_EQ(e.pid, static_cast<__u32>(cat));
    EXPECT_EQ(e.ret, -ENOENT);
    EXPECT_EQ(e.path_err, 0);
    EXPECT_EQ(c_string(e.comm, sizeof(e.comm)), "cat");
  }
  EXPECT_EQ(matches, 1);
}

// open(2) where the architecture has it, and openat2(2) with its struct open_how read at exit.
TEST(OpenatProbe, RecordsOpenAndOpenat2WithTheirArguments) {
  ProbeOptions options;
  options.filter_tgids = {static_cast<std::uint32_t>(getpid())};
  Traced t("openat", options);
  START_OR_SKIP(t);
  TempFiles files;
  const std::string a = files.path("via-open2"), b = files.path("via-openat2");
#ifdef SYS_open
  const int fd1 = static_cast<int>(syscall(SYS_open, a.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0640));
  ASSERT_GE(fd1, 0);
  close(fd1);
#endif
  open_how how{};
  how.flags = O_CREAT | O_RDWR | O_CLOEXEC;
  how.mode = 0600;
  how.resolve = RESOLVE_NO_SYMLINKS;
  const int fd2 = static_cast<int>(syscall(SYS_openat2, AT_FDCWD, b.c_str(), &how, sizeof(how)));
  ASSERT_GE(fd2, 0) << std::strerror(errno);
  close(fd2);
  t.stop();
  int seen_open = 0, seen_openat2 = 0;
  for (const auto& [e, size] : records_of<ps_openat_event>(*t.collector, PS_EVENT_OPENAT)) {
    if (e.path_len == 0) continue;
    const std::string path(e.path);
    if (path == a) {
      ++seen_open;
      EXPECT_EQ(e.call, static_cast<__u32>(PS_OPEN_OPEN));
      EXPECT_EQ(e.dfd, AT_FDCWD);
      EXPECT_EQ(e.flags, O_CREAT | O_WRONLY | O_CLOEXEC);
      EXPECT_EQ(e.mode, 0640u);
      EXPECT_GE(e.ret, 0);
    } else if (path == b) {
      ++seen_openat2;
      EXPECT_EQ(e.call, static_cast<__u32>(PS_OPEN_OPENAT2));
      EXPECT_EQ(e.flags, O_CREAT | O_RDWR | O_CLOEXEC);
      EXPECT_EQ(e.mode, 0600u);
      EXPECT_EQ(e.resolve, static_cast<__u32>(RESOLVE_NO_SYMLINKS));
      EXPECT_EQ(e.ret, fd2);
    }
  }
#ifdef SYS_open
  EXPECT_EQ(seen_open, 1);
#endif
  EXPECT_EQ(seen_openat2, 1);
}

// ----------------------------------------------------------------------------------------------------------
// exec

std::vector<Parsed<ps_exec_event>> execs_of(const Traced& t, pid_t pid) {
  std::vector<Parsed<ps_exec_event>> out;
  for (const auto& p : records_of<ps_exec_event>(*t.collector, PS_EVENT_EXEC)) {
    if (p.event.pid == static_cast<__u32>(pid)) out.push_back(p);
  }
  return out;
}

TEST(ExecProbe, RecordsArgvExactly) {
  Traced t("exec");
  START_OR_SKIP(t);
  int status = 0;
  const pid_t sh = spawn_and_wait({"/bin/sh", "-c", "echo a b \"c d\""}, &status);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  // The same words given to /bin/echo itself: sh splits them, exec records what echo receives.
  const pid_t sh2 = spawn_and_wait({"/bin/sh", "-c", "exec /bin/echo a b \"c d\""}, &status);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  t.stop();

  auto first = execs_of(t, sh);
  ASSERT_EQ(first.size(), 1u);
  const ps_exec_event& e = first[0].event;
  EXPECT_EQ(e.ret, 0);
  EXPECT_EQ(e.tid, static_cast<__u32>(sh));
  EXPECT_EQ(e.ppid, static_cast<__u32>(getpid()));
  EXPECT_EQ(e.uid, getuid());
  EXPECT_EQ(c_string(e.comm, sizeof(e.comm)), "sh");
  EXPECT_EQ(std::string(e.filename), "/bin/sh");
  EXPECT_EQ(argv_of(e), (std::vector<std::string>{"/bin/sh", "-c", "echo a b \"c d\""}));
  EXPECT_EQ(e.args_count, 3u);
  EXPECT_EQ(e.args_truncated, 0u);
  EXPECT_EQ(e.filename_err, 0);
  EXPECT_EQ(e.args_err, 0);
  EXPECT_LT(first[0].size, PS_EXEC_HEADER_SIZE + e.filename_len + 8);

  auto second = execs_of(t, sh2);
  ASSERT_EQ(second.size(), 2u);  // sh, then echo in the same process
  const ps_exec_event& echo = second[1].event;
  EXPECT_EQ(echo.ret, 0);
  EXPECT_EQ(c_string(echo.comm, sizeof(echo.comm)), "echo");
  EXPECT_EQ(std::string(echo.filename), "/bin/echo");
  EXPECT_EQ(argv_of(echo), (std::vector<std::string>{"/bin/echo", "a", "b", "c d"}));
  EXPECT_EQ(echo.args_count, 4u);
  EXPECT_EQ(echo.ppid, static_cast<__u32>(getpid()));
}

TEST(ExecProbe, LongArgvIsCutAndSaysSo) {
  Traced t("exec");
  START_OR_SKIP(t);
  std::vector<std::string> args = {"/bin/true"};
  for (int i = 0; i < 100; ++i) args.push_back(std::string(100, static_cast<char>('a' + i % 26)));
  int status = 0;
  const pid_t child = spawn_and_wait(args, &status);
  t.stop();
  auto execs = execs_of(t, child);
  ASSERT_EQ(execs.size(), 1u);
  const ps_exec_event& e = execs[0].event;
  EXPECT_EQ(e.args_truncated, 1u);
  EXPECT_EQ(e.filename_len, sizeof("/bin/true") + PS_ARGS_MAX);
  const auto argv = argv_of(e);
  ASSERT_EQ(argv.size(), e.args_count);
  ASSERT_GE(argv.size(), 2u);
  EXPECT_EQ(argv[0], "/bin/true");
  for (std::size_t i = 1; i + 1 < argv.size(); ++i) EXPECT_EQ(argv[i], args[i]);
  EXPECT_EQ(args[argv.size() - 1].rfind(argv.back(), 0), 0u) << "the last string is a cut prefix";
}

TEST(ExecProbe, RecordsFailedExecsWithTheirErrno) {
  Traced t("exec");
  START_OR_SKIP(t);
  TempFiles files;
  const std::string missing = files.path("no-such-program");
  const std::string not_executable = files.path("not-executable");
  { std::ofstream(not_executable) << "#!/bin/sh\n"; }
  chmod(not_executable.c_str(), 0644);

  struct Case {
    std::string path;
    int err;
  };
  // argv in memory the caller has written (as a shell builds it). A failed exec's strings are read from the
  // caller's memory at sys_exit; for ENOENT and EACCES the kernel gave up before copying them, so a string
  // in a page nobody touched (a literal never used) cannot be read without faulting: it is then marked with
  // args_err (-EFAULT), the strings before it kept.
  std::string flag = "--flag", words = "x y";
  for (const Case& c : {Case{missing, ENOENT}, Case{not_executable, EACCES}}) {
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      char* argv[] = {const_cast<char*>(c.path.c_str()), flag.data(), words.data(), nullptr};
      execve(c.path.c_str(), argv, environ);
      _exit(errno == c.err ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "execve of " << c.path << " failed otherwise";
  }
  t.stop();

  int seen = 0;
  for (const auto& [e, size] : records_of<ps_exec_event>(*t.collector, PS_EVENT_EXEC)) {
    const std::string filename(e.filename);
    if (filename != missing && filename != not_executable) continue;
    ++seen;
    EXPECT_EQ(e.ret, filename == missing ? -ENOENT : -EACCES) << filename;
    EXPECT_EQ(e.ppid, static_cast<__u32>(getpid()));
    EXPECT_EQ(e.pid, e.tid);
    EXPECT_EQ(e.filename_err, 0);
    EXPECT_EQ(e.args_err, 0);
    EXPECT_EQ(argv_of(e), (std::vector<std::string>{filename, "--flag", "x y"}));
  }
  EXPECT_EQ(seen, 2);
}

// ----------------------------------------------------------------------------------------------------------
// exit and fork

TEST(ExitProbe, RecordsExitStatusSignalAndThreadExits) {
  ProbeOptions options;
  Traced t("exit", options);
  START_OR_SKIP(t);
  const pid_t exits3 = fork();
  ASSERT_GE(exits3, 0);
  if (exits3 == 0) _exit(3);
  const pid_t killed = fork();
  ASSERT_GE(killed, 0);
  if (killed == 0) {
    for (;;) pause();
  }
  int status = 0;
  ASSERT_EQ(waitpid(exits3, &status, 0), exits3);
  usleep(20000);
  const auto before_kill = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(killed, SIGKILL), 0);
  ASSERT_EQ(waitpid(killed, &status, 0), killed);
  ASSERT_TRUE(WIFSIGNALED(status));
  pid_t thread_tid = 0;
  std::thread([&] { thread_tid = gettid_(); }).join();
  (void)before_kill;
  t.stop();

  int seen3 = 0, seen9 = 0, seen_thread = 0;
  for (const auto& [e, size] : records_of<ps_exit_event>(*t.collector, PS_EVENT_EXIT)) {
    EXPECT_EQ(size, (sizeof(ps_exit_event) + 4 + 7) / 8 * 8 - 4);
    if (e.pid == static_cast<__u32>(exits3)) {
      ++seen3;
      EXPECT_EQ(e.tid, e.pid);
      EXPECT_EQ(e.ppid, static_cast<__u32>(getpid()));
      EXPECT_EQ(e.exit_status, 3u);
      EXPECT_EQ(e.signal, 0u);
      EXPECT_EQ(e.exit_code, 3u << 8);
      EXPECT_EQ(e.process_exit, 1u);
      EXPECT_GT(e.lifetime_ns, 0u);
      EXPECT_LT(e.lifetime_ns, 10'000'000'000ull);
    } else if (e.pid == static_cast<__u32>(killed)) {
      ++seen9;
      EXPECT_EQ(e.signal, 9u);
      EXPECT_EQ(e.exit_status, 0u);
      EXPECT_EQ(e.exit_code, 9u);
      EXPECT_EQ(e.process_exit, 1u);
      EXPECT_GE(e.lifetime_ns, 20'000'000u);  // it lived through the 20 ms sleep
    } else if (e.tid == static_cast<__u32>(thread_tid)) {
      ++seen_thread;
      EXPECT_EQ(e.pid, static_cast<__u32>(getpid()));
      EXPECT_EQ(e.process_exit, 0u);  // one thread; the process lives on
      EXPECT_EQ(e.signal, 0u);
    }
  }
  EXPECT_EQ(seen3, 1);
  EXPECT_EQ(seen9, 1);
  EXPECT_EQ(seen_thread, 1);
}

TEST(ForkProbe, RecordsParentAndChildOfProcessesAndThreads) {
  ProbeOptions options;
  options.filter_tgids = {static_cast<std::uint32_t>(getpid())};
  Traced t("fork", options);
  START_OR_SKIP(t);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  pid_t thread_tid = 0;
  std::thread([&] { thread_tid = gettid_(); }).join();
  t.stop();

  int seen_child = 0, seen_thread = 0;
  char comm[16] = {};
  prctl(PR_GET_NAME, comm);
  for (const auto& [e, size] : records_of<ps_fork_event>(*t.collector, PS_EVENT_FORK)) {
    EXPECT_EQ(e.parent_pid, static_cast<__u32>(getpid()));
    if (e.child_pid == static_cast<__u32>(child)) {
      ++seen_child;
      EXPECT_EQ(e.parent_tid, static_cast<__u32>(gettid_()));
      EXPECT_EQ(e.child_tid, static_cast<__u32>(child));
      EXPECT_EQ(e.uid, getuid());
      EXPECT_EQ(c_string(e.comm, sizeof(e.comm)), std::string(comm));
    } else if (e.child_tid == static_cast<__u32>(thread_tid)) {
      ++seen_thread;
      EXPECT_EQ(e.child_pid, static_cast<__u32>(getpid()));  // a thread: same process
    }
  }
  EXPECT_EQ(seen_child, 1);
  EXPECT_EQ(seen_thread, 1);
}

// ----------------------------------------------------------------------------------------------------------
// tcp

struct Endpoint {
  std::array<std::uint8_t, 16> addr{};
  std::uint16_t port = 0;
};

Endpoint endpoint_of(const sockaddr_storage& ss) {
  Endpoint e;
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    std::memcpy(e.addr.data(), &in->sin_addr, 4);
    e.port = ntohs(in->sin_port);
  } else {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    std::memcpy(e.addr.data(), &in6->sin6_addr, 16);
    e.port = ntohs(in6->sin6_port);
  }
  return e;
}

Endpoint local_of(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  return endpoint_of(ss);
}

void expect_ends(const ps_tcp_event& e, const Endpoint& s, const Endpoint& d, const char* what) {
  EXPECT_EQ(std::memcmp(e.saddr, s.addr.data(), 16), 0) << what;
  EXPECT_EQ(std::memcmp(e.daddr, d.addr.data(), 16), 0) << what;
  EXPECT_EQ(e.sport, s.port) << what;
  EXPECT_EQ(e.dport, d.port) << what;
}

// One connection over loopback: connect, accept, some bytes each way, the client closes first.
void tcp_roundtrip(int family) {
  Traced t("tcp");
  START_OR_SKIP(t);
  const int listener = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(*in);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    in6->sin6_family = AF_INET6;
    in6->sin6_addr = in6addr_loopback;
    len = sizeof(*in6);
  }
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&ss), len), 0) << std::strerror(errno);
  ASSERT_EQ(listen(listener, 4), 0);
  const Endpoint server = local_of(listener);
  if (family == AF_INET) reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(server.port);
  else reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(server.port);

  const int client = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(connect(client, reinterpret_cast<sockaddr*>(&ss), len), 0) << std::strerror(errno);
  const Endpoint client_end = local_of(client);
  const int accepted = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(accepted, 0);
  constexpr std::size_t kToServer = 1000, kToClient = 300;
  std::string buf(kToServer, 'q');
  ASSERT_EQ(write(client, buf.data(), kToServer), static_cast<ssize_t>(kToServer));
  ASSERT_EQ(recv(accepted, buf.data(), kToServer, MSG_WAITALL), static_cast<ssize_t>(kToServer));
  ASSERT_EQ(write(accepted, buf.data(), kToClient), static_cast<ssize_t>(kToClient));
  ASSERT_EQ(recv(client, buf.data(), kToClient, MSG_WAITALL), static_cast<ssize_t>(kToClient));
  close(client);
  char c;
  ASSERT_EQ(read(accepted, &c, 1), 0);  // the client's FIN
  close(accepted);
  close(listener);
  usleep(100000);  // the last ACKs
  t.stop();

  const __u32 me = static_cast<__u32>(getpid());
  int connects = 0, accepts = 0, client_closes = 0, server_closes = 0;
  for (const auto& [e, size] : records_of<ps_tcp_event>(*t.collector, PS_EVENT_TCP)) {
    if (e.family != static_cast<__u32>(family)) continue;
    const bool client_side = e.sport == client_end.port && e.dport == server.port;
    const bool server_side = e.sport == server.port && e.dport == client_end.port;
    if (!client_side && !server_side) continue;  // someone else's connection
    switch (e.what) {
      case PS_TCP_CONNECT:
        ++connects;
        EXPECT_TRUE(client_side);
        expect_ends(e, client_end, server, "connect");
        EXPECT_EQ(e.pid, me);
        EXPECT_EQ(e.tid, static_cast<__u32>(gettid_()));
        EXPECT_EQ(e.oldstate, 2);  // SYN_SENT
        EXPECT_EQ(e.newstate, 1);  // ESTABLISHED
        EXPECT_EQ(e.bytes_sent + e.bytes_received + e.duration_ns, 0u);
        break;
      case PS_TCP_ACCEPT:
        ++accepts;
        EXPECT_TRUE(server_side);
        expect_ends(e, server, client_end, "accept");
        EXPECT_EQ(e.pid, 0u);  // not known at the handshake
        EXPECT_EQ(e.uid, getuid());
        EXPECT_EQ(e.oldstate, 3);  // SYN_RECV
        EXPECT_EQ(e.newstate, 1);
        break;
      case PS_TCP_CLOSE:
        EXPECT_EQ(e.newstate, 7);  // CLOSE
        EXPECT_EQ(e.pid, me);      // the connecting process, or the one that closed the accepted socket
        EXPECT_GT(e.duration_ns, 0u);
        if (client_side) {
          ++client_closes;
          expect_ends(e, client_end, server, "client close");
          // The kernel counts sequence space: a FIN is one byte, and so is the SYN of the side that connects.
          EXPECT_EQ(e.bytes_received, kToClient + 1) << "data and the peer's FIN";
          EXPECT_EQ(e.bytes_sent, 1 + kToServer + 1) << "our SYN, data and FIN, acknowledged";
        } else {
          ++server_closes;
          expect_ends(e, server, client_end, "server close");
          EXPECT_EQ(e.bytes_received, kToServer + 1);
          EXPECT_EQ(e.bytes_sent, kToClient + 1);
        }
        break;
      default:
        ADD_FAILURE() << "unexpected tcp record what=" << e.what;
    }
  }
  EXPECT_EQ(connects, 1);
  EXPECT_EQ(accepts, 1);
  EXPECT_EQ(client_closes, 1);
  EXPECT_EQ(server_closes, 1);
}

TEST(TcpProbe, LoopbackConnectionV4RecordsConnectAcceptAndBothCloses) { tcp_roundtrip(AF_INET); }
TEST(TcpProbe, LoopbackConnectionV6RecordsConnectAcceptAndBothCloses) { tcp_roundtrip(AF_INET6); }

TEST(TcpProbe, RefusedConnectIsAFailedConnect) {
  Traced t("tcp");
  START_OR_SKIP(t);
  // A port nobody listens on: bind one, learn it, close it.
  const int probe_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(probe_fd, reinterpret_cast<sockaddr*>(&in), sizeof(in)), 0);
  const std::uint16_t port = local_of(probe_fd).port;
  close(probe_fd);
  in.sin_port = htons(port);
  const int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_NE(connect(client, reinterpret_cast<sockaddr*>(&in), sizeof(in)), 0);
  EXPECT_EQ(errno, ECONNREFUSED);
  close(client);
  t.stop();
  int failed = 0;
  for (const auto& [e, size] : records_of<ps_tcp_event>(*t.collector, PS_EVENT_TCP)) {
    if (e.dport != port) continue;
    EXPECT_EQ(e.what, static_cast<__u32>(PS_TCP_CONNECT_FAILED));
    EXPECT_EQ(e.pid, static_cast<__u32>(getpid()));
    EXPECT_EQ(e.oldstate, 2);
    EXPECT_EQ(e.newstate, 7);
    ++failed;
  }
  EXPECT_EQ(failed, 1);
}

// ----------------------------------------------------------------------------------------------------------
// filters

// A child that, once released, opens `path` (which need not exist) and exits; before that it runs `setup`.
template <typename Setup>
pid_t child_opening(const std::string& path, int release_fd, Setup setup) {
  const pid_t child = fork();
  if (child != 0) return child;
  setup();
  char c;
  if (read(release_fd, &c, 1) != 1) _exit(2);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) close(fd);
  _exit(0);
}

// Which of `paths` the openat probe recorded, under `options`, when each is opened by its own child
// (set up by its setup function) plus the test process itself opening every one.
struct FilterRun {
  std::vector<pid_t> children;
  std::map<std::string, std::set<__u32>> openers;  // path -> pids recorded opening it
};

TEST(ProbeFilters, TgidListUidAndCommKeepExactlyTheTasksAsked) {
  TempFiles files;
  int pipes[4][2];
  for (auto& p : pipes) ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  const std::string path = files.path("filtered");
  // Four children, created before the probes load: plain, plain, another uid, another comm.
  std::vector<pid_t> kids;
  kids.push_back(child_opening(path, pipes[0][0], [] {}));
  kids.push_back(child_opening(path, pipes[1][0], [] {}));
  kids.push_back(child_opening(path, pipes[2][0], [] {
    if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) _exit(3);
  }));
  kids.push_back(child_opening(path, pipes[3][0], [] { prctl(PR_SET_NAME, "ps-comm-filter"); }));
  for (pid_t k : kids) ASSERT_GT(k, 0);
  usleep(50000);  // the children have run their setup

  ProbeOptions by_tgids, by_uid, by_comm, by_tid;
  by_tgids.filter_tgids = {static_cast<std::uint32_t>(kids[0]), static_cast<std::uint32_t>(kids[2])};
  by_uid.filter_uid = 65534;
  by_comm.filter_comm = "ps-comm-filter";
  by_tid.filter_tids = {static_cast<std::uint32_t>(kids[1])};
  Traced t_tgids("openat", by_tgids), t_uid("openat", by_uid), t_comm("openat", by_comm),
      t_tid("openat", by_tid);
  START_OR_SKIP(t_tgids);
  ASSERT_TRUE(t_uid.ok() && t_comm.ok() && t_tid.ok());

  for (auto& p : pipes) ASSERT_EQ(write(p[1], "go", 1), 1);
  for (pid_t k : kids) {
    int status = 0;
    ASSERT_EQ(waitpid(k, &status, 0), k);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);  // the test process itself: in none of them
  if (fd >= 0) close(fd);
  for (Traced* t : {&t_tgids, &t_uid, &t_comm, &t_tid}) t->stop();
  for (auto& p : pipes) {
    close(p[0]);
    close(p[1]);
  }

  auto openers = [&](const Traced& t) {
    std::set<__u32> pids;
    for (const auto& [e, size] : records_of<ps_openat_event>(*t.collector, PS_EVENT_OPENAT)) {
      if (e.path_len > 0 && std::string(e.path) == path) {
        pids.insert(e.pid);
        EXPECT_EQ(e.ret, -ENOENT);
      }
    }
    return pids;
  };
  const auto u = [](pid_t p) { return static_cast<__u32>(p); };
  EXPECT_EQ(openers(t_tgids), (std::set<__u32>{u(kids[0]), u(kids[2])}));
  EXPECT_EQ(openers(t_uid), (std::set<__u32>{u(kids[2])}));
  EXPECT_EQ(openers(t_comm), (std::set<__u32>{u(kids[3])}));
  EXPECT_EQ(openers(t_tid), (std::set<__u32>{u(kids[1])}));
}

TEST(ProbeFilters, CommLongerThanTheKernelKeepsIsRefused) {
  ProbeOptions options;
  options.attach = false;
  options.filter_comm = "a-name-of-16-chr";
  auto probe = BpfProbe::load_builtin("openat", options);
  ASSERT_FALSE(probe);
  EXPECT_NE(probe.error().message().find("1 to 15 bytes"), std::string::npos) << probe.error().message();
}

}  // namespace
}  // namespace perfstream::testing
