#include "testing/kernel_fixture.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

extern "C" {
#include <linux/types.h>
#include "events.h"
}

namespace perfstream::testing {

bool kernel_refuses_bpf(const Error& error) {
  const int e = error.errnum();
  return e == EPERM || e == EACCES || e == ENOSYS || e == EOPNOTSUPP;
}

std::unique_ptr<BpfProbe> load_probe(const std::string& name, const ProbeOptions& options, std::string* skip_reason) {
  auto probe = BpfProbe::load_builtin(name, options);
  if (probe) return std::move(*probe);
  if (kernel_refuses_bpf(probe.error())) {
    *skip_reason = "the kernel refuses BPF here: " + probe.error().message();
  } else {
    ADD_FAILURE() << probe.error().message();
  }
  return nullptr;
}

void RecordStore::add(CollectedRecord record) {
  std::lock_guard<std::mutex> lock(mutex_);
  records_.push_back(std::move(record));
}

std::vector<CollectedRecord> RecordStore::records() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return records_;
}

std::size_t RecordStore::samples() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::size_t n = 0;
  for (const auto& r : records_) n += r.is_lost ? 0 : 1;
  return n;
}

std::uint64_t RecordStore::lost() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::uint64_t n = 0;
  for (const auto& r : records_) n += r.is_lost ? r.lost : 0;
  return n;
}

std::size_t RecordStore::zero_lost_notices() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::size_t n = 0;
  for (const auto& r : records_) n += (r.is_lost && r.lost == 0) ? 1 : 0;
  return n;
}

void RecordStore::note_closed(unsigned cpu) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++closed_[cpu];
}

std::size_t RecordStore::ring_closed_count(unsigned cpu) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = closed_.find(cpu);
  return it == closed_.end() ? 0 : it->second;
}

void StoreConsumer::on_sample(unsigned cpu, const SampleView& sample) {
  CollectedRecord r;
  r.ring_cpu = cpu;
  r.time = sample.time;
  r.cpu = sample.cpu;
  r.raw.assign(sample.raw.begin(), sample.raw.end());
  store_.add(std::move(r));
}

void StoreConsumer::on_lost(unsigned cpu, const LostView& lost) {
  CollectedRecord r;
  r.is_lost = true;
  r.ring_cpu = cpu;
  r.time = lost.time;
  r.cpu = lost.cpu;
  r.lost = lost.lost;
  store_.add(std::move(r));
}

std::unique_ptr<Collector> Collector::create(const BpfProbe& probe, EventArrayOptions array_options,
                                             ReaderOptions reader_options) {
  auto c = std::make_unique<Collector>();
  auto array = PerfEventArray::create(probe.events_map_fd(), probe.events_map_name(), array_options);
  if (!array) {
    ADD_FAILURE() << array.error().message();
    return nullptr;
  }
  c->array = std::move(*array);
  auto possible = CpuSet::possible();
  c->stats = std::make_unique<RingStats>(possible ? possible->max() + 1 : 1);
  Collector* raw = c.get();
  reader_options.log = &raw->logger;
  auto pool = ReaderPool::create(
      *c->array, reader_options, [raw](unsigned) { return std::make_unique<StoreConsumer>(raw->store); }, *c->stats);
  if (!pool) {
    ADD_FAILURE() << pool.error().message();
    return nullptr;
  }
  c->pool = std::move(*pool);
  return c;
}

std::vector<std::string> Collector::log_lines() {
  std::lock_guard<std::mutex> lock(log_mutex);
  return log;
}

Loadgen::Loadgen(const BpfProbe& probe) {
  auto config = probe.map_fd("loadgen_config");
  auto stats = probe.map_fd("loadgen_stats");
  if (config) config_fd_ = *config;
  if (stats) stats_fd_ = *stats;
}

void Loadgen::configure(std::uint32_t record_size, std::uint32_t per_call) {
  ps_loadgen_config cfg{};
  cfg.tgid = static_cast<__u32>(getpid());
  cfg.syscall_nr = SYS_getppid;
  cfg.record_size = record_size;
  cfg.records_per_call = per_call;
  __u32 key = 0;
  ASSERT_EQ(bpf_map_update_elem(config_fd_, &key, &cfg, BPF_ANY), 0) << std::strerror(errno);
}

void Loadgen::disable() {
  ps_loadgen_config cfg{};
  __u32 key = 0;
  bpf_map_update_elem(config_fd_, &key, &cfg, BPF_ANY);
}

bool Loadgen::trigger_on_cpu(unsigned cpu, std::uint64_t calls) {
  bool pinned = false;
  std::thread producer([&] {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0) return;
    if (sched_getcpu() != static_cast<int>(cpu)) return;
    pinned = true;
    for (std::uint64_t i = 0; i < calls; ++i) syscall(SYS_getppid);
  });
  producer.join();
  return pinned;
}

Loadgen::Counts Loadgen::counts(unsigned cpu) const {
  const int ncpus = libbpf_num_possible_cpus();
  std::vector<ps_loadgen_stats> values(ncpus > 0 ? ncpus : 1);
  __u32 key = 0;
  Counts c;
  if (bpf_map_lookup_elem(stats_fd_, &key, values.data()) != 0 || cpu >= values.size()) {
    ADD_FAILURE() << "reading loadgen_stats: " << std::strerror(errno);
    return c;
  }
  c.emitted = values[cpu].emitted;
  c.failed = values[cpu].failed;
  c.failed_nospace = values[cpu].failed_nospace;
  return c;
}

bool parse_loadgen(const std::vector<std::byte>& raw, LoadgenSample* out) {
  if (raw.size() < PS_LOADGEN_HEADER_SIZE) return false;
  ps_loadgen_event e;
  std::memcpy(&e, raw.data(), PS_LOADGEN_HEADER_SIZE);
  if (e.kind != PS_EVENT_LOADGEN) return false;
  out->kind = e.kind;
  out->size = e.payload_len + PS_LOADGEN_HEADER_SIZE;
  out->seq = e.seq;
  out->cpu = e.cpu;
  out->pid = e.pid;
  out->ts = e.ts;
  return true;
}

LoadgenTally tally_loadgen(const std::vector<CollectedRecord>& records, unsigned ring_cpu) {
  LoadgenTally t;
  bool any = false;
  std::uint64_t last = 0;
  for (const auto& r : records) {
    if (r.ring_cpu != ring_cpu) continue;
    if (r.is_lost) {
      t.lost += r.lost;
      continue;
    }
    LoadgenSample s;
    if (!parse_loadgen(r.raw, &s)) continue;
    ++t.delivered;
    if (any) t.gaps += s.seq - last - 1;
    last = s.seq;
    any = true;
  }
  return t;
}

std::string set_cpu_online(unsigned cpu, bool online) {
  const std::string path = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/online";
  std::ofstream out(path);
  if (!out) return "cannot open " + path + ": " + std::strerror(errno);
  out << (online ? "1" : "0") << std::flush;
  if (!out) return "writing " + path + ": " + std::strerror(errno);
  return "";
}

namespace {

std::map<std::uint32_t, std::string> loaded_bpf_programs(std::uint32_t above) {
  std::map<std::uint32_t, std::string> out;
  __u32 id = above;
  while (bpf_prog_get_next_id(id, &id) == 0) {
    const int fd = bpf_prog_get_fd_by_id(id);
    if (fd < 0) continue;  // freed meanwhile
    bpf_prog_info info{};
    __u32 len = sizeof(info);
    out[id] = bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.name : "?";
    close(fd);
  }
  return out;
}

// Program ids named in /proc/*/fdinfo: program fds and link fds both show "prog_id:".
std::set<std::uint32_t> bpf_programs_held_by_processes() {
  std::set<std::uint32_t> held;
  std::error_code ec;
  for (const auto& proc : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string pid = proc.path().filename().string();
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::error_code ec2;
    for (const auto& fd : std::filesystem::directory_iterator(proc.path() / "fdinfo", ec2)) {
      std::ifstream in(fd.path());
      std::string line;
      while (std::getline(in, line)) {
        if (line.rfind("prog_id:", 0) == 0) held.insert(static_cast<std::uint32_t>(std::stoul(line.substr(8))));
      }
    }
  }
  return held;
}

}  // namespace

std::uint32_t newest_bpf_program_id() {
  std::uint32_t newest = 0;
  __u32 id = 0;
  while (bpf_prog_get_next_id(id, &id) == 0) newest = id;
  return newest;
}

std::vector<std::string> bpf_programs_left_behind(std::uint32_t newest_before, std::chrono::milliseconds settle) {
  const auto deadline = std::chrono::steady_clock::now() + settle;
  for (;;) {
    auto loaded = loaded_bpf_programs(newest_before);
    if (!loaded.empty()) {
      for (std::uint32_t id : bpf_programs_held_by_processes()) loaded.erase(id);
    }
    if (loaded.empty() || std::chrono::steady_clock::now() >= deadline) {
      std::vector<std::string> out;
      for (const auto& [id, name] : loaded) out.push_back(std::to_string(id) + " " + name);
      return out;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace perfstream::testing
