// Privileges: what record, stream and sink give up once their setup is done.
//
// drop_privileges() optionally switches to another user (supplementary groups, gid, uid, in that order),
// keeps exactly the capabilities asked for (where the process has them) in its effective and permitted
// sets, removes every other capability from the bounding set, empties the inheritable and ambient sets,
// sets no_new_privs, and then reads all of it back: if the kernel did not do what was asked, it fails. An
// error names the step and errno ("dropping privileges: setresuid(65534): Operation not permitted"); the
// caller must stop, never go on with more privilege than it reported.
//
// Threads: capabilities, the bounding set and no_new_privs belong to a thread, not a process; a thread
// started before the drop would keep everything. drop_privileges() refuses to run in a process with more
// than one thread. Threads created afterwards inherit the reduced sets.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "collector/util/result.hpp"

namespace perfstream {

// A set of capabilities: bit N is capability N of <linux/capability.h>, as in /proc/PID/status.
using CapMask = std::uint64_t;
constexpr CapMask cap_bit(int cap) { return CapMask{1} << cap; }
// "CAP_BPF,CAP_PERFMON" (in capability order), or "no capabilities".
std::string describe_caps(CapMask caps);

// The user of --user USER[:GROUP], each a name or a number.
struct RunAsUser {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary: the user's groups in the group database, or none
  std::string name;           // "nobody:nogroup (65534:65534)", for messages
};
// Errors are for the user ("--user 'x': no such user"). A uid without a passwd entry needs its group given.
Result<RunAsUser> resolve_user(const std::string& spec);

struct CapSets {
  CapMask effective = 0, permitted = 0, inheritable = 0;
};
// The calling thread's sets.
Result<CapSets> current_caps();
// Whether this process may switch users (CAP_SETUID and CAP_SETGID effective); the error says why not.
Status can_switch_users();

struct DropPlan {
  std::optional<RunAsUser> user;  // none: the uid and gids stay; only capabilities go
  CapMask keep = 0;               // kept where the process has them
};

struct DropOutcome {
  std::string who;                // "nobody:nogroup (65534:65534)", "root"
  CapMask kept = 0;               // effective = permitted
  bool bounding_dropped = false;  // false when the process had no CAP_SETPCAP (started with file capabilities)
  // "running as nobody:nogroup (65534:65534) with CAP_PERFMON,CAP_BPF (every other capability dropped,
  // from the bounding set too; no_new_privs)"
  std::string describe() const;
};
Result<DropOutcome> drop_privileges(const DropPlan& plan);

}  // namespace perfstream
