// BpfProbe: one loaded and attached BPF object that writes into a perf event array: one of perfstream's
// built-in probes (embedded in the binary from its bpftool skeleton) or any .bpf.o file.
//
// Loading. The object is opened, its output map is found (the map named by the caller, else the one perf
// event array or BPF ring buffer it has), and, when the caller passes a shared map fd, that map (a perf
// event array) is replaced by the shared one before load (bpf_map__reuse_fd), so that several probes write
// into one set of per-CPU rings. The filters of ProbeOptions are set (.rodata before load, the tgid/tid maps
// after it), see there, then the user's --set globals (BpfGlobals). A load
// failure carries the verifier's log. Every program is then attached. A built-in probe's tp/ program whose
// tracepoint this kernel does not have (sys_enter_open on arm64) is left out, not an error.
//
// Ownership: the probe owns the bpf_object and its links; destroying the probe detaches and unloads.
// tp/ programs need tracefs; ensure_tracefs() mounts it when it is missing and we may.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "collector/kernel/bpf_globals.hpp"
#include "collector/util/result.hpp"

struct bpf_object;
struct bpf_link;

namespace perfstream {

struct BuiltinProbeInfo {
  const char* name;
  const char* description;
  std::uint32_t event_kind;  // the ps_event_kind its records carry
  // Records only what a driver asks of it through its maps (perfstream bench; tests): not a probe to offer
  // to record and stream, where alone it records nothing.
  bool driven_by_bench = false;
};

// perfstream's built-in probes, in a stable order.
const std::vector<BuiltinProbeInfo>& builtin_probes();

// The object of a built-in probe as embedded in the binary (its skeleton's ELF bytes, valid for the life
// of the process); empty for a name that is no built-in probe. decode/payload_schema reads its record
// layout from the BTF in it (builtin_probe_schema).
std::span<const char> builtin_probe_object(const std::string& name);

// Which tasks a probe records, filtered in BPF (bpf/common.bpf.h). A task is recorded when it passes every
// filter that is set:
//   - filter_tgids / filter_tids (-p, -t): its tgid is one of filter_tgids or its tid one of filter_tids
//     (either list may be empty; when both are, this filter is off). At most 1024 of each. filter_tgid is
//     one more tgid for the list (the single -p of before).
//   - filter_uid (-u): its real uid is this one.
//   - filter_comm (--comm): its comm (the kernel's 15-character task name) is exactly this.
//   - followed_map_fd (--follow): its tgid is in that ps_followed map.
// ignore_tgid is never recorded. Events about two tasks test either: sched_switch records a switch when
// prev or next passes; fork tests the parent; exec tests the caller at its enter and, for a successful
// exec, also the new program (so --comm ls sees the exec that becomes ls). tcp tests the process that
// connects or closes; an accepted connection (no process known) is recorded only when no task filter
// (tgids, tids, comm, follow) is set, and its uid is the socket's owner.
// A built-in probe applies every filter. An object loaded from a file that lacks the .rodata variables or
// maps a filter needs is refused with an error naming the filter (it would record everything silently),
// except filter_tgid alone, which sets an old-style `filter_tgid` variable when that is all it has.
struct ProbeOptions {
  std::string map_name;                     // the output map; empty: the only one of either kind in the object
  int shared_map_fd = -1;                   // when >= 0, used in place of the object's perf event array
  std::uint32_t ringbuf_bytes = 0;          // a ring buffer output: its size (2^n pages); 0: the object's
  std::optional<std::uint32_t> filter_tgid; // one tgid, added to filter_tgids
  std::vector<std::uint32_t> filter_tgids;  // -p: only these processes
  std::vector<std::uint32_t> filter_tids;   // -t: only these threads
  std::optional<std::uint32_t> filter_uid;  // -u: only tasks of this real uid
  std::optional<std::string> filter_comm;   // --comm: only tasks of this comm (at most 15 bytes)
  std::optional<std::uint32_t> ignore_tgid; // sets .rodata ignore_tgid (a process never traced), when present
  int followed_map_fd = -1;                 // when >= 0: --follow, with this ps_followed map shared
  // --set: globals written before load, after the filters above (so an explicit setting wins); see
  // kernel/bpf_globals.hpp for the values they take. An unknown name or a bad value fails the load.
  std::vector<GlobalSetting> global_settings;
  bool attach = true;
};

// One CPU's failed outputs, as a built-in probe counts them itself (bpf/common.bpf.h: ps_output_failures).
struct OutputFailures {
  std::uint64_t ring_full = 0;    // -ENOSPC: also reported by the kernel as lost
  std::uint64_t unwritable = 0;   // any other error: counted nowhere else
  std::uint32_t last_errno = 0;   // of the latest `unwritable` one
  std::uint64_t state_full = 0;   // syscalls not recorded: their enter found the per-thread map full
};

class BpfProbe {
 public:
  static Result<std::unique_ptr<BpfProbe>> load_builtin(const std::string& name, const ProbeOptions& options);
  static Result<std::unique_ptr<BpfProbe>> load_file(const std::string& path, const ProbeOptions& options);
  // The --follow tracker (bpf/follow.bpf.c), loaded and not attached; its ps_followed map is the one every
  // probe then shares (ProbeOptions::followed_map_fd).
  static Result<std::unique_ptr<BpfProbe>> load_follow_tracker();
  ~BpfProbe();
  BpfProbe(const BpfProbe&) = delete;
  BpfProbe& operator=(const BpfProbe&) = delete;

  // Attaches every program (after load with attach = false). Idempotent.
  Status attach();
  // Detaches every program (no new records); the maps stay, so the rings can still be drained.
  void detach();

  const std::string& name() const { return name_; }
  bpf_object* object() const { return object_; }
  // The perf event array this probe writes to (the shared one when given).
  int events_map_fd() const;
  const std::string& events_map_name() const { return events_map_name_; }
  // True when the output map is a BPF_MAP_TYPE_RINGBUF (kernel/bpf_ringbuf.hpp), not a perf event array.
  bool events_map_is_ringbuf() const { return events_map_is_ringbuf_; }
  // Any map of the object by name.
  Result<int> map_fd(const std::string& map_name) const;
  // The object's ps_output_failures counters, indexed by CPU (every possible CPU); empty when the object
  // has no such map (a --object that does not count its failures). Cumulative since load.
  Result<std::vector<OutputFailures>> output_failures() const;

 private:
  BpfProbe() = default;
  static Result<std::unique_ptr<BpfProbe>> load(std::unique_ptr<BpfProbe> probe, const ProbeOptions& options);

  std::string name_;
  bpf_object* object_ = nullptr;
  std::string events_map_name_;
  bool events_map_is_ringbuf_ = false;
  std::vector<bpf_link*> links_;
  std::string log_;  // the kernel's verifier log, filled on failure
};

// Mounts tracefs at /sys/kernel/tracing when no tracefs is reachable there or under debugfs.
Status ensure_tracefs();

}  // namespace perfstream
