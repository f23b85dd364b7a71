#include "collector/util/privileges.hpp"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <fstream>

namespace perfstream {
namespace {

constexpr const char* kCapNames[] = {
    "CHOWN",          "DAC_OVERRIDE",  "DAC_READ_SEARCH", "FOWNER",       "FSETID",
    "KILL",           "SETGID",        "SETUID",          "SETPCAP",      "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN",     "NET_RAW",      "IPC_LOCK",
    "IPC_OWNER",      "SYS_MODULE",    "SYS_RAWIO",       "SYS_CHROOT",   "SYS_PTRACE",
    "SYS_PACCT",      "SYS_ADMIN",     "SYS_BOOT",        "SYS_NICE",     "SYS_RESOURCE",
    "SYS_TIME",       "SYS_TTY_CONFIG", "MKNOD",          "LEASE",        "AUDIT_WRITE",
    "AUDIT_CONTROL",  "SETFCAP",       "MAC_OVERRIDE",    "MAC_ADMIN",    "SYSLOG",
    "WAKE_ALARM",     "BLOCK_SUSPEND", "AUDIT_READ",      "PERFMON",      "BPF",
    "CHECKPOINT_RESTORE",
};
constexpr int kKnownCaps = sizeof(kCapNames) / sizeof(kCapNames[0]);

std::string cap_name(int cap) {
  return cap < kKnownCaps ? std::string("CAP_") + kCapNames[cap] : "capability " + std::to_string(cap);
}

// The highest capability this kernel knows.
int last_cap() {
  std::ifstream in("/proc/sys/kernel/cap_last_cap");
  int last = 0;
  return in >> last && last > 0 && last < 64 ? last : kKnownCaps - 1;
}

int thread_count() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::atoi(line.c_str() + 8);
  }
  return -1;
}

bool parse_id(const std::string& text, std::uint32_t* out) {
  if (text.empty()) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size() && *out != static_cast<std::uint32_t>(-1);
}

Error drop_error(const std::string& step, int err) { return Error::from_errno("dropping privileges: " + step, err); }

}  // namespace

std::string describe_caps(CapMask caps) {
  std::string out;
  for (int cap = 0; cap < 64; ++cap) {
    if (caps & cap_bit(cap)) out += (out.empty() ? "" : ",") + cap_name(cap);
  }
  return out.empty() ? "no capabilities" : out;
}

Result<RunAsUser> resolve_user(const std::string& spec) {
  const std::string what = "--user '" + spec + "'";
  const auto colon = spec.find(':');
  const std::string user = spec.substr(0, colon);
  const std::string group_part = colon == std::string::npos ? "" : spec.substr(colon + 1);
  if (user.empty() || (colon != std::string::npos && group_part.empty())) {
    return Error(what + ": give USER or USER:GROUP, each a name or a number");
  }
  RunAsUser out;
  std::uint32_t id = 0;
  const passwd* pw = parse_id(user, &id) ? getpwuid(id) : getpwnam(user.c_str());
  if (pw == nullptr && !parse_id(user, &id)) return Error(what + ": no such user '" + user + "'");
  out.uid = pw != nullptr ? pw->pw_uid : id;
  const std::string user_name = pw != nullptr ? pw->pw_name : std::to_string(out.uid);
  const std::string login = pw != nullptr ? pw->pw_name : "";
  std::string group_name;
  if (!group_part.empty()) {
    const group* gr = parse_id(group_part, &id) ? getgrgid(id) : getgrnam(group_part.c_str());
    if (gr == nullptr && !parse_id(group_part, &id)) return Error(what + ": no such group '" + group_part + "'");
    out.gid = gr != nullptr ? gr->gr_gid : id;
    group_name = gr != nullptr ? gr->gr_name : std::to_string(out.gid);
  } else if (pw != nullptr) {
    out.gid = pw->pw_gid;
    const group* gr = getgrgid(out.gid);
    group_name = gr != nullptr ? gr->gr_name : std::to_string(out.gid);
  } else {
    return Error(what + ": uid " + user + " has no entry in the user database; give its group too (--user " + user +
                 ":GID)");
  }
  if (!login.empty()) {
    int n = 64;
    std::vector<gid_t> groups(n);
    if (getgrouplist(login.c_str(), out.gid, groups.data(), &n) < 0) {
      groups.resize(n);
      if (getgrouplist(login.c_str(), out.gid, groups.data(), &n) < 0) n = 0;
    }
    groups.resize(n);
    out.groups = std::move(groups);
  }
  out.name = user_name + ":" + group_name + " (" + std::to_string(out.uid) + ":" + std::to_string(out.gid) + ")";
  return out;
}

Result<CapSets> current_caps() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, data) != 0) return Error::from_errno("reading capabilities (capget)", errno);
  auto mask = [&](__u32 __user_cap_data_struct::*field) {
    return static_cast<CapMask>(data[0].*field) | static_cast<CapMask>(data[1].*field) << 32;
  };
  return CapSets{mask(&__user_cap_data_struct::effective), mask(&__user_cap_data_struct::permitted),
                 mask(&__user_cap_data_struct::inheritable)};
}

Status can_switch_users() {
  auto caps = current_caps();
  if (!caps) return caps.error();
  const CapMask needed = cap_bit(CAP_SETUID) | cap_bit(CAP_SETGID);
  if ((caps->effective & needed) == needed) return {};
  return Error("switching users needs root (CAP_SETUID and CAP_SETGID), and this process runs as uid " +
               std::to_string(geteuid()) + " without them");
}

std::string DropOutcome::describe() const {
  return "running as " + who + " with " + describe_caps(kept) + (kept ? " (every other capability dropped" : " (all dropped") +
         (bounding_dropped ? ", from the bounding set too" : "; the bounding set stays: no CAP_SETPCAP to drop it") +
         "; no_new_privs)";
}

Result<DropOutcome> drop_privileges(const DropPlan& plan) {
  if (const int threads = thread_count(); threads < 0) {
    return Error("dropping privileges: cannot count this process's threads in /proc/self/status");
  } else if (threads != 1) {
    return Error("dropping privileges: the process has " + std::to_string(threads) +
                 " threads, and capabilities belong to each thread: this must run before any other starts");
  }
  auto before = current_caps();
  if (!before) return before.error();
  DropOutcome out;
  out.kept = plan.keep & before->permitted;
  if (plan.user) {
    out.who = plan.user->name;
  } else {
    const passwd* pw = getpwuid(geteuid());
    out.who = pw != nullptr ? pw->pw_name : "uid " + std::to_string(geteuid());
  }

  // The bounding set first, while CAP_SETPCAP is still effective (changing uid empties the effective set).
  const int last = last_cap();
  out.bounding_dropped = (before->effective & cap_bit(CAP_SETPCAP)) != 0;
  for (int cap = 0; out.bounding_dropped && cap <= last; ++cap) {
    if ((out.kept & cap_bit(cap)) || prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      return drop_error("removing " + cap_name(cap) + " from the bounding set (PR_CAPBSET_DROP)", errno);
    }
  }
  if (plan.user) {
    const RunAsUser& u = *plan.user;
    // Without keepcaps, leaving uid 0 empties the permitted set too.
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return drop_error("PR_SET_KEEPCAPS", errno);
    if (setgroups(u.groups.size(), u.groups.data()) != 0) return drop_error("setgroups", errno);
    if (setresgid(u.gid, u.gid, u.gid) != 0) return drop_error("setresgid(" + std::to_string(u.gid) + ")", errno);
    if (setresuid(u.uid, u.uid, u.uid) != 0) return drop_error("setresuid(" + std::to_string(u.uid) + ")", errno);
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) return drop_error("clearing PR_SET_KEEPCAPS", errno);
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  for (int i = 0; i < 2; ++i) {
    data[i].effective = data[i].permitted = static_cast<__u32>(out.kept >> (32 * i));
    data[i].inheritable = 0;
  }
  if (syscall(SYS_capset, &header, data) != 0) return drop_error("capset", errno);
  // EINVAL: a kernel before 4.3 has no ambient set.
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return drop_error("clearing the ambient set (PR_CAP_AMBIENT_CLEAR_ALL)", errno);
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return drop_error("PR_SET_NO_NEW_PRIVS", errno);

  // Read it all back.
  auto after = current_caps();
  if (!after) return after.error();
  if (after->effective != out.kept || after->permitted != out.kept || after->inheritable != 0) {
    return Error("dropping privileges: asked for " + describe_caps(out.kept) + ", the kernel left effective " +
                 describe_caps(after->effective) + ", permitted " + describe_caps(after->permitted));
  }
  for (int cap = 0; out.bounding_dropped && cap <= last; ++cap) {
    if (!(out.kept & cap_bit(cap)) && prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 0) {
      return Error("dropping privileges: " + cap_name(cap) + " is still in the bounding set");
    }
  }
  if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) return Error("dropping privileges: no_new_privs did not stick");
  if (plan.user) {
    uid_t r = 0, e = 0, s = 0;
    gid_t rg = 0, eg = 0, sg = 0;
    getresuid(&r, &e, &s);
    getresgid(&rg, &eg, &sg);
    const RunAsUser& u = *plan.user;
    if (r != u.uid || e != u.uid || s != u.uid || rg != u.gid || eg != u.gid || sg != u.gid) {
      return Error("dropping privileges: still uid " + std::to_string(e) + ", gid " + std::to_string(eg));
    }
    if (u.uid != 0 && setuid(0) == 0) return Error("dropping privileges: uid 0 could be taken back");
  }
  return out;
}

}  // namespace perfstream
