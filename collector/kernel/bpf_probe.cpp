#include "collector/kernel/bpf_probe.hpp"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "events.h"
#include "exec.skel.h"
#include "follow.skel.h"
#include "loadgen.skel.h"
#include "openat.skel.h"
#include "sched_switch.skel.h"

namespace perfstream {
namespace {

constexpr std::size_t kVerifierLogSize = 4 << 20;

struct BuiltinProbeEntry {
  BuiltinProbeInfo info;
  const void* (*elf_bytes)(size_t*);
};

const std::vector<BuiltinProbeEntry>& builtin_entries() {
  static const std::vector<BuiltinProbeEntry> entries = {
      {{"exec", "every successful execve: pid, ppid, uid, comm, filename", 1}, exec_bpf__elf_bytes},
      {{"openat", "every openat(2) call: pid, tid, comm, dfd, flags, mode, path", 2}, openat_bpf__elf_bytes},
      {{"sched_switch", "every context switch: the fields of sched:sched_switch", 3}, sched_switch_bpf__elf_bytes},
      {{"loadgen", "a benchmark producer: records of a set size when a set process makes a set syscall", 4},
       loadgen_bpf__elf_bytes},
  };
  return entries;
}

bool is_dir(const char* path) {
  struct stat st {};
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

// Writes `value` over the .rodata variable `var`, if the object has one of that name and size.
bool set_rodata_u32(bpf_object* object, const char* var, std::uint32_t value) {
  btf* object_btf = bpf_object__btf(object);
  if (object_btf == nullptr) return false;
  bpf_map* map = nullptr;
  bpf_object__for_each_map(map, object) {
    const char* name = bpf_map__name(map);
    if (!bpf_map__is_internal(map) || std::strstr(name, ".rodata") == nullptr) continue;
    const std::int32_t sec_id = btf__find_by_name_kind(object_btf, ".rodata", BTF_KIND_DATASEC);
    if (sec_id < 0) return false;
    const btf_type* sec = btf__type_by_id(object_btf, sec_id);
    const btf_var_secinfo* vars = btf_var_secinfos(sec);
    for (unsigned i = 0; i < btf_vlen(sec); ++i) {
      const btf_type* var_type = btf__type_by_id(object_btf, vars[i].type);
      if (std::strcmp(btf__name_by_offset(object_btf, var_type->name_off), var) != 0) continue;
      if (vars[i].size != sizeof(value)) return false;
      size_t size = 0;
      const void* initial = bpf_map__initial_value(map, &size);
      if (initial == nullptr || vars[i].offset + sizeof(value) > size) return false;
      std::string data(static_cast<const char*>(initial), size);
      std::memcpy(data.data() + vars[i].offset, &value, sizeof(value));
      return bpf_map__set_initial_value(map, data.data(), data.size()) == 0;
    }
  }
  return false;
}

std::string log_tail(const std::string& log) {
  constexpr std::size_t kKeep = 4000;
  if (log.size() <= kKeep) return log;
  return "...\n" + log.substr(log.size() - kKeep);
}

}  // namespace

const std::vector<BuiltinProbeInfo>& builtin_probes() {
  static const std::vector<BuiltinProbeInfo> infos = [] {
    std::vector<BuiltinProbeInfo> out;
    for (const auto& e : builtin_entries()) out.push_back(e.info);
    return out;
  }();
  return infos;
}

std::span<const char> builtin_probe_object(const std::string& name) {
  for (const auto& entry : builtin_entries()) {
    if (name != entry.info.name) continue;
    size_t size = 0;
    const void* bytes = entry.elf_bytes(&size);
    return {static_cast<const char*>(bytes), size};
  }
  return {};
}

Status ensure_tracefs() {
  if (is_dir("/sys/kernel/tracing/events") || is_dir("/sys/kernel/debug/tracing/events")) return {};
  if (mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, nullptr) != 0) {
    return Error::from_errno("mounting tracefs at /sys/kernel/tracing (tp/ programs need it)", errno,
                             "run as root, or mount it: mount -t tracefs tracefs /sys/kernel/tracing");
  }
  return {};
}

Result<std::unique_ptr<BpfProbe>> BpfProbe::load_builtin(const std::string& name, const ProbeOptions& options) {
  for (const auto& entry : builtin_entries()) {
    if (name != entry.info.name) continue;
    std::unique_ptr<BpfProbe> probe(new BpfProbe());
    probe->name_ = name;
    probe->log_.assign(kVerifierLogSize, '\0');
    size_t size = 0;
    const void* bytes = entry.elf_bytes(&size);
    LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = entry.info.name, .kernel_log_buf = probe->log_.data(),
                .kernel_log_size = probe->log_.size(), .kernel_log_level = 0);
    probe->object_ = bpf_object__open_mem(bytes, size, &opts);
    if (probe->object_ == nullptr) {
      return Error::from_errno("opening built-in probe '" + name + "'", errno);
    }
    return load(std::move(probe), options);
  }
  std::string known;
  for (const auto& entry : builtin_entries()) known += (known.empty() ? "" : ", ") + std::string(entry.info.name);
  return Error("unknown probe '" + name + "' (built-in probes: " + known + "; or load a file with --object)");
}

Result<std::unique_ptr<BpfProbe>> BpfProbe::load_follow_tracker() {
  std::unique_ptr<BpfProbe> probe(new BpfProbe());
  probe->name_ = "follow";
  probe->log_.assign(kVerifierLogSize, '\0');
  size_t size = 0;
  const void* bytes = follow_bpf__elf_bytes(&size);
  LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = "follow", .kernel_log_buf = probe->log_.data(),
              .kernel_log_size = probe->log_.size(), .kernel_log_level = 0);
  probe->object_ = bpf_object__open_mem(bytes, size, &opts);
  if (probe->object_ == nullptr) return Error::from_errno("opening the --follow tracker", errno);
  ProbeOptions options;
  options.attach = false;
  return load(std::move(probe), options);
}

Result<std::unique_ptr<BpfProbe>> BpfProbe::load_file(const std::string& path, const ProbeOptions& options) {
  std::unique_ptr<BpfProbe> probe(new BpfProbe());
  probe->name_ = path;
  probe->log_.assign(kVerifierLogSize, '\0');
  LIBBPF_OPTS(bpf_object_open_opts, opts, .kernel_log_buf = probe->log_.data(), .kernel_log_size = probe->log_.size(),
              .kernel_log_level = 0);
  probe->object_ = bpf_object__open_file(path.c_str(), &opts);
  if (probe->object_ == nullptr) {
    return Error::from_errno("opening BPF object " + path, errno, "is it a BPF ELF object built with clang -target bpf?");
  }
  return load(std::move(probe), options);
}

Result<std::unique_ptr<BpfProbe>> BpfProbe::load(std::unique_ptr<BpfProbe> probe, const ProbeOptions& options) {
  const std::string what = "probe '" + probe->name_ + "'";
  bpf_map* events = nullptr;
  int perf_arrays = 0;
  bpf_map* map = nullptr;
  bpf_object__for_each_map(map, probe->object_) {
    if (!options.map_name.empty()) {
      if (options.map_name == bpf_map__name(map)) events = map;
    } else if (bpf_map__type(map) == BPF_MAP_TYPE_PERF_EVENT_ARRAY) {
      events = map;
      ++perf_arrays;
    }
  }
  if (events == nullptr) {
    return Error(what + ": " +
                 (options.map_name.empty() ? std::string("no BPF_MAP_TYPE_PERF_EVENT_ARRAY map")
                                           : "no map named '" + options.map_name + "'"));
  }
  if (options.map_name.empty() && perf_arrays > 1) {
    return Error(what + ": " + std::to_string(perf_arrays) + " perf event array maps; name one with --map");
  }
  if (bpf_map__type(events) != BPF_MAP_TYPE_PERF_EVENT_ARRAY) {
    return Error(what + ": map '" + options.map_name + "' is not a BPF_MAP_TYPE_PERF_EVENT_ARRAY");
  }
  probe->events_map_name_ = bpf_map__name(events);
  if (options.shared_map_fd >= 0) {
    if (int err = bpf_map__reuse_fd(events, options.shared_map_fd); err != 0) {
      return Error::from_errno(what + ": sharing the perf event array with map '" + probe->events_map_name_ + "'", -err);
    }
  }
  if (options.filter_tgid) set_rodata_u32(probe->object_, "filter_tgid", *options.filter_tgid);
  if (options.ignore_tgid) set_rodata_u32(probe->object_, "ignore_tgid", *options.ignore_tgid);
  if (options.followed_map_fd >= 0) {
    bpf_map* followed = bpf_object__find_map_by_name(probe->object_, "ps_followed");
    if (followed == nullptr || !set_rodata_u32(probe->object_, "follow_mode", 1)) {
      return Error(what + ": --follow needs the object to check ps_followed (built-in probes do)");
    }
    if (int err = bpf_map__reuse_fd(followed, options.followed_map_fd); err != 0) {
      return Error::from_errno(what + ": sharing the ps_followed map", -err);
    }
  }


  if (int err = bpf_object__load(probe->object_); err != 0) {
    std::string log(probe->log_.c_str());
    std::string hint = err == -EPERM || err == -EACCES
                           ? " (loading BPF needs root or CAP_BPF with CAP_PERFMON)"
                           : std::string();
    return Error(what + ": the kernel refused to load it: " + std::strerror(-err) + hint +
                     (log.empty() ? std::string() : "\nverifier log:\n" + log_tail(log)),
                 -err);
  }
  probe->log_.clear();
  probe->log_.shrink_to_fit();

  if (options.attach) {
    if (auto st = probe->attach(); !st) return st.error();
  }
  return probe;
}

Status BpfProbe::attach() {
  if (!links_.empty()) return {};
  const std::string what = "probe '" + name_ + "'";
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, object_) {
    const char* sec = bpf_program__section_name(prog);
    if (std::strncmp(sec, "tp/", 3) == 0 || std::strncmp(sec, "tracepoint/", 11) == 0) {
      if (auto st = ensure_tracefs(); !st) return st.error().with_context(what);
    }
    bpf_link* link = bpf_program__attach(prog);
    if (link == nullptr) {
      const int err = errno;
      detach();
      return Error::from_errno(what + ": attaching program '" + bpf_program__name(prog) + "' (" + sec + ")", err);
    }
    links_.push_back(link);
  }
  return {};
}

void BpfProbe::detach() {
  for (bpf_link* link : links_) bpf_link__destroy(link);
  links_.clear();
}

BpfProbe::~BpfProbe() {
  detach();
  if (object_ != nullptr) bpf_object__close(object_);
}

int BpfProbe::events_map_fd() const {
  return bpf_map__fd(bpf_object__find_map_by_name(object_, events_map_name_.c_str()));
}

Result<int> BpfProbe::map_fd(const std::string& map_name) const {
  bpf_map* map = bpf_object__find_map_by_name(object_, map_name.c_str());
  if (map == nullptr) return Error("probe '" + name_ + "' has no map named '" + map_name + "'");
  return bpf_map__fd(map);
}

Result<std::vector<OutputFailures>> BpfProbe::output_failures() const {
  std::vector<OutputFailures> out;
  bpf_map* map = bpf_object__find_map_by_name(object_, "ps_output_failures");
  if (map == nullptr) return out;
  if (bpf_map__type(map) != BPF_MAP_TYPE_PERCPU_ARRAY || bpf_map__value_size(map) != sizeof(ps_output_counts)) {
    return out;  // someone else's map of that name: not ours to read
  }
  const int ncpus = libbpf_num_possible_cpus();
  if (ncpus <= 0) return Error::from_errno("probe '" + name_ + "': counting the possible CPUs", -ncpus);
  // A per-CPU lookup fills one value per possible CPU, each rounded up to 8 bytes (ps_output_counts is).
  std::vector<ps_output_counts> values(static_cast<std::size_t>(ncpus));
  const __u32 key = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(map), &key, values.data()) != 0) {
    return Error::from_errno("probe '" + name_ + "': reading ps_output_failures", errno);
  }
  out.reserve(values.size());
  for (const auto& v : values) {
    out.push_back({v.ring_full, v.unwritable, static_cast<std::uint32_t>(v.last_errno)});
  }
  return out;
}

}  // namespace perfstream
