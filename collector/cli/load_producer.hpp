// LoadProducer: the load every drain benchmark runs, identical for perfstream and the libbpf baselines:
// a child process with one thread pinned to each chosen CPU, each calling getppid() in a loop until it is
// stopped. One process, so that loadgen's single-process filter takes them all. The loadgen BPF
// program (bpf/loadgen.bpf.c), configured with the child's pid, emits one record per call. The child is a
// separate process so that the collector's CPU time (getrusage of its own process) excludes the producer.
// Header-only, depends on nothing of perfstream, so the baselines (bench/libbpf_baseline.cpp) can use it too.
// It lives in cli/, beside `perfstream bench`, because no layer of collector/ may include bench/.
#pragma once

#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <thread>
#include <vector>

namespace perfstream::bench {

class LoadProducer {
 public:
  // Forks the child, pinned to `cpu`, blocked until start(). Returns false (and no child) on failure.
  bool spawn(int cpu) { return spawn(std::vector<int>{cpu}); }

  // Forks the child with one producing thread per CPU of `cpus`, blocked until start().
  bool spawn(const std::vector<int>& cpus) {
    if (cpus.empty()) return false;
    int go[2];
    if (pipe(go) != 0) return false;
    pid_ = fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      close(go[1]);
      char byte;
      if (read(go[0], &byte, 1) != 1) _exit(0);
      // Threads made with raw clone would be leaner, but std::thread after fork in a fresh child is safe:
      // the child is single-threaded until here.
      for (std::size_t i = 1; i < cpus.size(); ++i) {
        std::thread([cpu = cpus[i]] { produce_on(cpu); }).detach();
      }
      produce_on(cpus[0]);
    }
    close(go[0]);
    go_fd_ = go[1];
    return true;
  }
  pid_t pid() const { return pid_; }
  void start() {
    char byte = 1;
    if (go_fd_ >= 0 && write(go_fd_, &byte, 1) == 1) started_ns_ = now_ns();
  }
  // Stops the child; returns how long it ran (ns).
  std::uint64_t stop() {
    if (pid_ <= 0) return 0;
    kill(pid_, SIGKILL);
    const std::uint64_t ran = started_ns_ ? now_ns() - started_ns_ : 0;
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    if (go_fd_ >= 0) close(go_fd_);
    go_fd_ = -1;
    return ran;
  }
  ~LoadProducer() { stop(); }

  [[noreturn]] static void produce_on(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0) _exit(2);
    for (;;) syscall(SYS_getppid);
  }

  static std::uint64_t now_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
  }
  // User + system CPU time of this process so far (ns).
  static std::uint64_t process_cpu_ns() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    auto ns = [](const timeval& tv) {
      return static_cast<std::uint64_t>(tv.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(tv.tv_usec) * 1000ull;
    };
    return ns(ru.ru_utime) + ns(ru.ru_stime);
  }

 private:
  pid_t pid_ = -1;
  int go_fd_ = -1;
  std::uint64_t started_ns_ = 0;
};

}  // namespace perfstream::bench
