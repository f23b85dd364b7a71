// RemoteLoadgen: the loadgen probe loaded by another process (a perfstream under test), driven from the
// test: its maps are found through the fds that process holds, so the test can switch the probe on for
// itself, trigger it on a chosen CPU, and read the BPF-side counters (emitted, failed) to check a capture
// against the truth. Test-only.
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

extern "C" {
#include "events.h"
}

namespace perfstream::testing {

// An fd for the map called `name` among those process `pid` holds (its /proc/PID/fdinfo names their ids);
// -1 when there is none.
inline int map_of_process(pid_t pid, const std::string& name) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fdinfo", ec)) {
    std::ifstream in(e.path());
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("map_id:", 0) != 0) continue;
      const int fd = bpf_map_get_fd_by_id(static_cast<__u32>(std::stoul(line.substr(7))));
      if (fd < 0) continue;
      bpf_map_info info{};
      __u32 len = sizeof(info);
      if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && name == info.name) return fd;
      ::close(fd);
    }
  }
  return -1;
}

// loadgen inside another process (perfstream): its maps, found through the fds that process holds.
class RemoteLoadgen {
 public:
  explicit RemoteLoadgen(pid_t pid)
      : config_fd_(map_of_process(pid, "loadgen_config")), stats_fd_(map_of_process(pid, "loadgen_stats")) {}
  ~RemoteLoadgen() {
    if (config_fd_ >= 0) close(config_fd_);
    if (stats_fd_ >= 0) close(stats_fd_);
  }
  bool found() const { return config_fd_ >= 0 && stats_fd_ >= 0; }
  // One 64-byte record per getppid() of this (the test) process; size 0 turns it off.
  void configure(std::uint32_t size) {
    ps_loadgen_config cfg{};
    cfg.tgid = size == 0 ? 0 : static_cast<__u32>(getpid());
    cfg.syscall_nr = SYS_getppid;
    cfg.record_size = size;
    cfg.records_per_call = 1;
    __u32 key = 0;
    ASSERT_EQ(bpf_map_update_elem(config_fd_, &key, &cfg, BPF_ANY), 0) << std::strerror(errno);
  }
  bool trigger_on_cpu(unsigned cpu, int calls) {
    bool pinned = false;
    std::thread producer([&] {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(cpu, &set);
      if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0 || sched_getcpu() != static_cast<int>(cpu)) {
        return;
      }
      pinned = true;
      for (int i = 0; i < calls; ++i) syscall(SYS_getppid);
    });
    producer.join();
    return pinned;
  }
  ps_loadgen_stats counts(unsigned cpu) const {
    std::vector<ps_loadgen_stats> values(static_cast<std::size_t>(std::max(libbpf_num_possible_cpus(), 1)));
    __u32 key = 0;
    if (bpf_map_lookup_elem(stats_fd_, &key, values.data()) != 0 || cpu >= values.size()) return {};
    return values[cpu];
  }

 private:
  int config_fd_ = -1;
  int stats_fd_ = -1;
};

}  // namespace perfstream::testing
