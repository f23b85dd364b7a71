#include "testing/subprocess.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

extern char** environ;

namespace perfstream::testing {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string temp_path(const char* tag) {
  std::string tmpl = std::string("/tmp/perfstream-test-") + tag + "-XXXXXX";
  int fd = mkstemp(tmpl.data());
  if (fd >= 0) close(fd);
  return tmpl;
}

pid_t spawn(const std::vector<std::string>& argv, const std::string& out, const std::string& err) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_TRUNC | O_CREAT, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_TRUNC | O_CREAT, 0644);
  // Default dispositions and no blocked signals, whatever the test runner was started with (a background
  // job of a non-interactive shell ignores SIGINT, and would pass that on): tests signal their children.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, stop;
  sigemptyset(&none);
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &stop);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ) != 0) pid = -1;
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

int wait_status(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

RunResult run(const std::vector<std::string>& argv) {
  Background b(argv);
  return b.wait();
}

Background::Background(const std::vector<std::string>& argv)
    : out_path_(temp_path("out")), err_path_(temp_path("err")) {
  pid_ = spawn(argv, out_path_, err_path_);
}

Background::~Background() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    wait_status(pid_);
  }
  unlink(out_path_.c_str());
  unlink(err_path_.c_str());
}

RunResult Background::stop(int signo) {
  if (pid_ > 0) kill(pid_, signo);
  return wait();
}

RunResult Background::wait() {
  RunResult r;
  if (pid_ <= 0) {
    r.err = "could not start the program";
    return r;
  }
  r.exit_status = wait_status(pid_);
  pid_ = -1;
  r.out = slurp(out_path_);
  r.err = slurp(err_path_);
  return r;
}

std::string Background::err_so_far() const { return slurp(err_path_); }

std::string Background::out_so_far() const { return slurp(out_path_); }

bool Background::exited() const {
  if (pid_ <= 0) return true;
  siginfo_t info{};
  return waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid_;
}

std::string perfstream_binary() {
  if (const char* env = std::getenv("PERFSTREAM_BINARY")) return env;
  return PERFSTREAM_BINARY_PATH;
}

}  // namespace perfstream::testing
