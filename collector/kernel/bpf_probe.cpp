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
#include "exit.skel.h"
#include "follow.skel.h"
#include "fork.skel.h"
#include "loadgen.skel.h"
#include "openat.skel.h"
#include "sched_switch.skel.h"
#include "tcp.skel.h"

namespace perfstream {
namespace {

constexpr std::size_t kVerifierLogSize = 4 << 20;

struct BuiltinProbeEntry {
  BuiltinProbeInfo info;
  const void* (*elf_bytes)(size_t*);
};

const std::vector<BuiltinProbeEntry>& builtin_entries() {
  static const std::vector<BuiltinProbeEntry> entries = {
      {{"exec",
        "every execve(2)/execveat(2), failed ones too: pid, tid, ppid, uid, comm, ret (0 or -errno), "
        "filename followed by argv (NUL-separated; args_count, args_truncated past 64 strings or 4096 bytes), "
        "filename_err/args_err when unreadable",
        PS_EVENT_EXEC},
       exec_bpf__elf_bytes},
      {{"openat",
        "every openat(2), open(2) and openat2(2) call, at its return: pid, tid, comm, call, dfd, flags, mode, "
        "resolve, ret (fd or -errno), path (read at exit; path_err when unreadable)",
        PS_EVENT_OPENAT},
       openat_bpf__elf_bytes},
      {{"sched_switch", "every context switch: the fields of sched:sched_switch", 3}, sched_switch_bpf__elf_bytes},
      {{"loadgen", "a benchmark producer: records of a set size when a set process makes a set syscall", 4, true},
       loadgen_bpf__elf_bytes},
      {{"exit",
        "every thread exit: pid, tid, ppid, comm, exit_status or signal (exit_code raw), process_exit (1: the "
        "last thread, the process ends), lifetime_ns",
        PS_EVENT_EXIT},
       exit_bpf__elf_bytes},
      {{"fork", "every new process or thread: parent_pid, parent_tid, child_pid, child_tid, uid, comm",
        PS_EVENT_FORK},
       fork_bpf__elf_bytes},
      {{"tcp",
        "TCP connect, accept, close and failed connect (sock:inet_sock_set_state): what, pid, comm, family, "
        "saddr:sport, daddr:dport, old/new state; bytes sent/received and duration at close",
        PS_EVENT_TCP},
       tcp_bpf__elf_bytes},
  };
  return entries;
}

bool is_dir(const char* path) {
  struct stat st {};
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

// Writes `bytes` over the .rodata variable `var`, if the object has one of that name and size.
bool set_rodata(bpf_object* object, const char* var, const void* bytes, std::size_t length) {
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
      if (vars[i].size != length) return false;
      size_t size = 0;
      const void* initial = bpf_map__initial_value(map, &size);
      if (initial == nullptr || vars[i].offset + length > size) return false;
      std::string data(static_cast<const char*>(initial), size);
      std::memcpy(data.data() + vars[i].offset, bytes, length);
      return bpf_map__set_initial_value(map, data.data(), data.size()) == 0;
    }
  }
  return false;
}

bool set_rodata_u32(bpf_object* object, const char* var, std::uint32_t value) {
  return set_rodata(object, var, &value, sizeof(value));
}

// For a built-in probe: leaves out (autoload off) every tp/syscalls/ program whose tracepoint this kernel
// lacks, such as open(2)'s on arm64. Other programs are needed: attaching them reports what is wrong.
void skip_missing_syscall_tracepoints(bpf_object* object) {
  (void)ensure_tracefs();  // best effort: without it nothing is left out, and attach reports the cause
  const char* roots[] = {"/sys/kernel/tracing/events/", "/sys/kernel/debug/tracing/events/"};
  const char* root = nullptr;
  for (const char* r : roots) {
    if (is_dir((std::string(r) + "syscalls").c_str())) root = r;
    if (root != nullptr) break;
  }
  if (root == nullptr) return;  // no tracefs (ensure_tracefs could not mount it): attach will say
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, object) {
    const std::string sec = bpf_program__section_name(prog);
    const std::string prefix = "tp/syscalls/";
    if (sec.rfind(prefix, 0) != 0) continue;
    if (!is_dir((std::string(root) + "syscalls/" + sec.substr(prefix.size())).c_str())) {
      bpf_program__set_autoload(prog, false);
    }
  }
}

// Fills one of the filter maps (ps_filter_tgids, ps_filter_tids) after load.
Status fill_filter_map(bpf_object* object, const char* map_name, const std::vector<std::uint32_t>& ids,
                       const std::string& what) {
  bpf_map* map = bpf_object__find_map_by_name(object, map_name);
  if (map == nullptr) return Error(what + ": has no " + map_name + " map");
  if (ids.size() > bpf_map__max_entries(map)) {
    return Error(what + ": " + std::to_string(ids.size()) + " ids to filter on, at most " +
                 std::to_string(bpf_map__max_entries(map)));
  }
  const std::uint8_t one = 1;
  for (std::uint32_t id : ids) {
    if (bpf_map_update_elem(bpf_map__fd(map), &id, &one, BPF_ANY) != 0) {
      return Error::from_errno(what + ": filling " + std::string(map_name), errno);
    }
  }
  return {};
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
    skip_missing_syscall_tracepoints(probe->object_);
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

namespace {

// The output map the probe writes to, a perf event array or a BPF ring buffer: the one named, else the
// object's only map of either kind. With several and none named, the error lists them all.
Result<bpf_map*> find_events_map(bpf_object* object, const ProbeOptions& options, const std::string& what) {
  auto kind_of = [](bpf_map* m) -> const char* {
    switch (bpf_map__type(m)) {
      case BPF_MAP_TYPE_PERF_EVENT_ARRAY: return "perf event array";
      case BPF_MAP_TYPE_RINGBUF: return "ring buffer";
      default: return nullptr;
    }
  };
  std::vector<bpf_map*> outputs;
  bpf_map* named = nullptr;
  bpf_map* map = nullptr;
  bpf_object__for_each_map(map, object) {
    if (!options.map_name.empty() && options.map_name == bpf_map__name(map)) named = map;
    if (kind_of(map) != nullptr) outputs.push_back(map);
  }
  if (!options.map_name.empty()) {
    if (named == nullptr) return Error(what + ": no map named '" + options.map_name + "'");
    if (kind_of(named) == nullptr) {
      return Error(what + ": map '" + options.map_name +
                   "' is neither a BPF_MAP_TYPE_PERF_EVENT_ARRAY nor a BPF_MAP_TYPE_RINGBUF");
    }
    return named;
  }
  if (outputs.empty()) {
    return Error(what + ": no output map (neither a BPF_MAP_TYPE_PERF_EVENT_ARRAY nor a BPF_MAP_TYPE_RINGBUF)");
  }
  if (outputs.size() > 1) {
    std::string list;
    for (bpf_map* m : outputs) {
      list += (list.empty() ? "" : ", ") + std::string(kind_of(m)) + " '" + bpf_map__name(m) + "'";
    }
    return Error(what + ": " + std::to_string(outputs.size()) + " output maps (" + list + "); name one with --map");
  }
  return outputs.front();
}

// The ids that go into the filter maps once the object is loaded (the maps exist only then).
struct FilterMapContents {
  std::vector<std::uint32_t> tgids;  // empty: the tgid filter is off or set in .rodata
  std::vector<std::uint32_t> tids;
};

// Sets the filters' .rodata switches and values (before load), refusing an object that lacks what a
// filter needs rather than recording everything.
Result<FilterMapContents> set_filters(bpf_object* object, const ProbeOptions& options, const std::string& what) {
  FilterMapContents maps;
  std::vector<std::uint32_t> tgids = options.filter_tgids;
  if (options.filter_tgid) tgids.push_back(*options.filter_tgid);
  const bool has_filter_maps = bpf_object__find_map_by_name(object, "ps_filter_tgids") != nullptr &&
                               bpf_object__find_map_by_name(object, "ps_filter_tids") != nullptr;
  if (!tgids.empty()) {
    if (has_filter_maps && set_rodata_u32(object, "filter_tgids_on", 1)) {
      maps.tgids = tgids;
    } else if (tgids.size() != 1 || options.filter_tids.size() != 0 ||
               !set_rodata_u32(object, "filter_tgid", tgids.front())) {
      return Error(what + ": cannot filter by process (-p): no ps_filter_tgids map and filter_tgids_on");
    }
  }
  if (!options.filter_tids.empty()) {
    if (!has_filter_maps || !set_rodata_u32(object, "filter_tids_on", 1)) {
      return Error(what + ": cannot filter by thread (-t): no ps_filter_tids map and filter_tids_on");
    }
    maps.tids = options.filter_tids;
  }
  if (options.filter_uid) {
    if (!set_rodata_u32(object, "filter_uid_on", 1) || !set_rodata_u32(object, "filter_uid", *options.filter_uid)) {
      return Error(what + ": cannot filter by user (-u): no filter_uid_on and filter_uid");
    }
  }
  if (options.filter_comm) {
    char comm[16] = {};
    if (options.filter_comm->empty() || options.filter_comm->size() >= sizeof(comm)) {
      return Error(what + ": --comm '" + *options.filter_comm +
                   "': a task's comm is 1 to 15 bytes (the kernel cuts longer names to their first 15)");
    }
    std::memcpy(comm, options.filter_comm->data(), options.filter_comm->size());
    if (!set_rodata_u32(object, "filter_comm_on", 1) || !set_rodata(object, "filter_comm", comm, sizeof(comm))) {
      return Error(what + ": cannot filter by command name (--comm): no filter_comm_on and filter_comm");
    }
  }
  if (options.ignore_tgid) set_rodata_u32(object, "ignore_tgid", *options.ignore_tgid);
  if (options.followed_map_fd >= 0) {
    bpf_map* followed = bpf_object__find_map_by_name(object, "ps_followed");
    if (followed == nullptr || !set_rodata_u32(object, "follow_mode", 1)) {
      return Error(what + ": --follow needs the object to check ps_followed (built-in probes do)");
    }
    if (int err = bpf_map__reuse_fd(followed, options.followed_map_fd); err != 0) {
      return Error::from_errno(what + ": sharing the ps_followed map", -err);
    }
  }
  return maps;
}

}  // namespace

Result<std::unique_ptr<BpfProbe>> BpfProbe::load(std::unique_ptr<BpfProbe> probe, const ProbeOptions& options) {
  const std::string what = "probe '" + probe->name_ + "'";
  auto events = find_events_map(probe->object_, options, what);
  if (!events) return events.error();
  probe->events_map_name_ = bpf_map__name(*events);
  probe->events_map_is_ringbuf_ = bpf_map__type(*events) == BPF_MAP_TYPE_RINGBUF;
  if (options.shared_map_fd >= 0 && probe->events_map_is_ringbuf_) {
    return Error(what + ": its output map '" + probe->events_map_name_ + "' is a ring buffer, which cannot be shared");
  }
  if (probe->events_map_is_ringbuf_ && options.ringbuf_bytes != 0) {
    if (int err = bpf_map__set_max_entries(*events, options.ringbuf_bytes); err != 0) {
      return Error::from_errno(what + ": sizing ring buffer '" + probe->events_map_name_ + "' to " +
                                   std::to_string(options.ringbuf_bytes) + " bytes", -err);
    }
  }
  if (options.shared_map_fd >= 0) {
    if (int err = bpf_map__reuse_fd(*events, options.shared_map_fd); err != 0) {
      return Error::from_errno(what + ": sharing the perf event array with map '" + probe->events_map_name_ + "'", -err);
    }
  }
  auto filter_maps = set_filters(probe->object_, options, what);
  if (!filter_maps) return filter_maps.error();
  if (!options.global_settings.empty()) {
    auto globals = BpfGlobals::of(probe->object_, probe->name_);
    if (!globals) return globals.error();
    if (auto st = globals->set_all(options.global_settings); !st) return st.error();
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
  // Before attach: no record is written before the filter holds every id.
  if (!filter_maps->tgids.empty()) {
    if (auto st = fill_filter_map(probe->object_, "ps_filter_tgids", filter_maps->tgids, what); !st) return st.error();
  }
  if (!filter_maps->tids.empty()) {
    if (auto st = fill_filter_map(probe->object_, "ps_filter_tids", filter_maps->tids, what); !st) return st.error();
  }
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
    out.push_back({v.ring_full, v.unwritable, static_cast<std::uint32_t>(v.last_errno), v.state_full});
  }
  return out;
}

}  // namespace perfstream
