#include "collector/decode/display_hints.hpp"

#include <arpa/inet.h>

#include <array>
#include <charconv>
#include <cstring>

#include "collector/util/text.hpp"

namespace perfstream::hints {
namespace {

struct Named {
  std::string_view name;
  Hint hint;
};

constexpr std::array<Named, 18> kHints{{
    {"hidden", Hint::Hidden},
    {"open_flags", Hint::OpenFlags},
    {"mode", Hint::Mode},
    {"dirfd", Hint::DirFd},
    {"errno", Hint::Errno},
    {"task_state", Hint::TaskState},
    {"signal", Hint::Signal},
    {"wait_status", Hint::WaitStatus},
    {"ip", Hint::Ip},
    {"tcp_state", Hint::TcpState},
    {"address_family", Hint::AddressFamily},
    {"bytes", Hint::Bytes},
    {"duration_ns", Hint::DurationNs},
    {"hex", Hint::Hex},
    {"enum", Hint::Enum},
    {"argv", Hint::Argv},
    {"path_argv", Hint::PathArgv},
    {"", Hint::None},
}};


void append_hex(std::string& out, std::uint64_t v) {
  out += "0x";
  append_number(out, v, 16);
}

// The asm-generic values (include/uapi/asm-generic/fcntl.h). A name with two bits (O_SYNC, O_TMPFILE)
// comes before its parts, so that both set print as the one name.
struct Flag {
  std::uint32_t mask;
  const char* name;
};
constexpr Flag kOpenFlags[] = {
    {00000100, "O_CREAT"},     {00000200, "O_EXCL"},      {00000400, "O_NOCTTY"},    {00001000, "O_TRUNC"},
    {00002000, "O_APPEND"},    {00004000, "O_NONBLOCK"},  {04010000, "O_SYNC"},      {00010000, "O_DSYNC"},
    {00020000, "FASYNC"},      {00040000, "O_DIRECT"},    {00100000, "O_LARGEFILE"}, {020200000, "O_TMPFILE"},
    {00200000, "O_DIRECTORY"}, {00400000, "O_NOFOLLOW"},  {01000000, "O_NOATIME"},   {02000000, "O_CLOEXEC"},
    {04000000, "__O_SYNC"},    {010000000, "O_PATH"},     {020000000, "__O_TMPFILE"},
};

// include/uapi/asm-generic/errno-base.h and errno.h (x86-64, arm64 and most others), by number.
constexpr const char* kErrnoNames[] = {
    nullptr, "EPERM", "ENOENT", "ESRCH", "EINTR", "EIO", "ENXIO", "E2BIG", "ENOEXEC", "EBADF", "ECHILD",
    "EAGAIN", "ENOMEM", "EACCES", "EFAULT", "ENOTBLK", "EBUSY", "EEXIST", "EXDEV", "ENODEV", "ENOTDIR", "EISDIR",
    "EINVAL", "ENFILE", "EMFILE", "ENOTTY", "ETXTBSY", "EFBIG", "ENOSPC", "ESPIPE", "EROFS", "EMLINK", "EPIPE",
    "EDOM", "ERANGE", "EDEADLK", "ENAMETOOLONG", "ENOLCK", "ENOSYS", "ENOTEMPTY", "ELOOP", nullptr, "ENOMSG",
    "EIDRM", "ECHRNG", "EL2NSYNC", "EL3HLT", "EL3RST", "ELNRNG", "EUNATCH", "ENOCSI", "EL2HLT", "EBADE", "EBADR",
    "EXFULL", "ENOANO", "EBADRQC", "EBADSLT", nullptr, "EBFONT", "ENOSTR", "ENODATA", "ETIME", "ENOSR", "ENONET",
    "ENOPKG", "EREMOTE", "ENOLINK", "EADV", "ESRMNT", "ECOMM", "EPROTO", "EMULTIHOP", "EDOTDOT", "EBADMSG",
    "EOVERFLOW", "ENOTUNIQ", "EBADFD", "EREMCHG", "ELIBACC", "ELIBBAD", "ELIBSCN", "ELIBMAX", "ELIBEXEC",
    "EILSEQ", "ERESTART", "ESTRPIPE", "EUSERS", "ENOTSOCK", "EDESTADDRREQ", "EMSGSIZE", "EPROTOTYPE",
    "ENOPROTOOPT", "EPROTONOSUPPORT", "ESOCKTNOSUPPORT", "EOPNOTSUPP", "EPFNOSUPPORT", "EAFNOSUPPORT",
    "EADDRINUSE", "EADDRNOTAVAIL", "ENETDOWN", "ENETUNREACH", "ENETRESET", "ECONNABORTED", "ECONNRESET",
    "ENOBUFS", "EISCONN", "ENOTCONN", "ESHUTDOWN", "ETOOMANYREFS", "ETIMEDOUT", "ECONNREFUSED", "EHOSTDOWN",
    "EHOSTUNREACH", "EALREADY", "EINPROGRESS", "ESTALE", "EUCLEAN", "ENOTNAM", "ENAVAIL", "EISNAM", "EREMOTEIO",
    "EDQUOT", "ENOMEDIUM", "EMEDIUMTYPE", "ECANCELED", "ENOKEY", "EKEYEXPIRED", "EKEYREVOKED", "EKEYREJECTED",
    "EOWNERDEAD", "ENOTRECOVERABLE", "ERFKILL", "EHWPOISON",};
// The kernel's own codes (include/linux/errno.h): they reach user space only by mistake, but a probe at a
// kernel function may see them.
constexpr const char* kKernelErrnoNames[] = {
    "ERESTARTSYS", "ERESTARTNOINTR", "ERESTARTNOHAND", "ENOIOCTLCMD", "ERESTART_RESTARTBLOCK", "EPROBE_DEFER",
    "EOPENSTALE",  "ENOPARAM",       nullptr,          "EBADHANDLE",  "ENOTSYNC",              "EBADCOOKIE",
    "ENOTSUPP",    "ETOOSMALL",      "ESERVERFAULT",   "EBADTYPE",    "EJUKEBOX",              "EIOCBQUEUED",
    "ERECALLCONFLICT",
};
constexpr std::int64_t kKernelErrnoFirst = 512;

// x86-64 and arm64 signal numbers (include/uapi/asm-generic/signal.h).
constexpr const char* kSignalNames[] = {
    nullptr,   "SIGHUP",  "SIGINT",    "SIGQUIT", "SIGILL",    "SIGTRAP", "SIGABRT", "SIGBUS",   "SIGFPE",
    "SIGKILL", "SIGUSR1", "SIGSEGV",   "SIGUSR2", "SIGPIPE",   "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD",
    "SIGCONT", "SIGSTOP", "SIGTSTP",   "SIGTTIN", "SIGTTOU",   "SIGURG",  "SIGXCPU", "SIGXFSZ",  "SIGVTALRM",
    "SIGPROF", "SIGWINCH", "SIGIO",    "SIGPWR",  "SIGSYS",
};

// include/net/tcp_states.h, from 1.
constexpr const char* kTcpStates[] = {
    nullptr,      "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",    "TIME_WAIT",
    "CLOSE",      "CLOSE_WAIT",  "LAST_ACK", "LISTEN",   "CLOSING",   "NEW_SYN_RECV", "BOUND_INACTIVE",
};

template <std::size_t N>
const char* lookup(const char* const (&table)[N], std::int64_t i) {
  return i >= 0 && static_cast<std::uint64_t>(i) < N ? table[i] : nullptr;
}

}  // namespace

Hint parse_hint(std::string_view name) {
  for (const auto& h : kHints) {
    if (h.name == name) return h.hint;
  }
  return Hint::Unknown;
}

bool hint_wants_integer(Hint hint) {
  switch (hint) {
    case Hint::OpenFlags:
    case Hint::Mode:
    case Hint::DirFd:
    case Hint::Errno:
    case Hint::TaskState:
    case Hint::Signal:
    case Hint::WaitStatus:
    case Hint::TcpState:
    case Hint::AddressFamily:
    case Hint::Bytes:
    case Hint::DurationNs:
    case Hint::Hex:
    case Hint::Enum:
      return true;
    default:
      return false;
  }
}

std::int64_t sign_extend(std::uint64_t raw, std::uint32_t size) {
  if (size == 0 || size >= 8) return static_cast<std::int64_t>(raw);
  const unsigned bits = size * 8;
  raw &= (std::uint64_t{1} << bits) - 1;
  if ((raw >> (bits - 1)) & 1) raw |= ~std::uint64_t{0} << bits;
  return static_cast<std::int64_t>(raw);
}

void append_open_flags(std::string& out, std::uint32_t flags) {
  static constexpr const char* kAccess[] = {"O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE"};
  out += kAccess[flags & 3];
  std::uint32_t rest = flags & ~std::uint32_t{3};
  for (const Flag& f : kOpenFlags) {
    if ((rest & f.mask) == f.mask) {
      out += '|';
      out += f.name;
      rest &= ~f.mask;
    }
  }
  if (rest != 0) {
    out += '|';
    append_hex(out, rest);
  }
}

void append_mode(std::string& out, std::uint64_t mode) {
  out += '0';
  if (mode != 0) append_number(out, mode, 8);
}

const char* errno_name(std::int64_t number) {
  if (const char* name = lookup(kErrnoNames, number)) return name;
  if (number < kKernelErrnoFirst) return nullptr;  // and no subtraction that could overflow
  return lookup(kKernelErrnoNames, number - kKernelErrnoFirst);
}

void append_task_state(std::string& out, std::int64_t state) {
  // The tracepoint's own format: __print_flags(prev_state & (TASK_REPORT_MAX - 1), "|", S D T t X Z P I)
  // or "R" when no bit is set, then "+" when TASK_REPORT_MAX (0x100, preempted) is set.
  static constexpr char kLetters[] = "SDTtXZPI";
  const std::uint64_t v = static_cast<std::uint64_t>(state);
  const std::uint64_t report = v & 0xff, unknown = v & ~std::uint64_t{0x1ff};
  const std::size_t start = out.size();
  for (int bit = 0; bit < 8; ++bit) {
    if (report & (1u << bit)) {
      if (out.size() != start) out += '|';
      out += kLetters[bit];
    }
  }
  if (unknown != 0) {
    if (out.size() != start) out += '|';
    append_hex(out, unknown);
  }
  if (out.size() == start) out += 'R';
  if (v & 0x100) out += '+';
}

bool append_signal(std::string& out, std::int64_t signal) {
  if (const char* name = lookup(kSignalNames, signal)) {
    out += name;
    return true;
  }
  if (signal < 32 || signal > 64) return false;
  out += "SIGRTMIN";
  if (signal > 32) {
    out += '+';
    append_number(out, static_cast<std::uint64_t>(signal - 32));
  }
  return true;
}

bool append_wait_signal(std::string& out, std::uint64_t status) {
  const std::uint64_t signal = status & 0x7f;
  if (signal == 0 || signal == 0x7f) return false;  // exited; 0x7f is a stopped child, not an end
  if (!append_signal(out, static_cast<std::int64_t>(signal))) return false;
  if (status & 0x80) out += "+core";
  return true;
}

const char* tcp_state_name(std::int64_t state) { return lookup(kTcpStates, state); }

const char* address_family_name(std::int64_t family) {
  switch (family) {
    case 0: return "AF_UNSPEC";
    case 1: return "AF_UNIX";
    case 2: return "AF_INET";
    case 10: return "AF_INET6";
    case 16: return "AF_NETLINK";
    case 17: return "AF_PACKET";
    case 40: return "AF_VSOCK";
    default: return nullptr;
  }
}

bool append_ip(std::string& out, std::string_view address, std::optional<std::uint64_t> port) {
  char text[INET6_ADDRSTRLEN];
  const bool v6 = address.size() == 16;
  if (address.size() != 4 && !v6) return false;
  if (inet_ntop(v6 ? AF_INET6 : AF_INET, address.data(), text, sizeof(text)) == nullptr) return false;
  if (port && v6) out += '[';
  out += text;
  if (port) {
    out += v6 ? "]:" : ":";
    append_number(out, *port);
  }
  return true;
}

std::string int_bytes(std::uint64_t raw, std::uint32_t size) {
  std::string bytes(size > 8 ? 8 : size, '\0');
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>((raw >> (8 * i)) & 0xff);
  return bytes;
}

void append_bytes(std::string& out, std::uint64_t bytes) {
  if (bytes < 1024) {
    append_number(out, bytes);
    out += 'B';
    return;
  }
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int unit = 0;
  // Tenths of the unit, rounded half up, in integers: no floating point, the same on every reader.
  std::uint64_t scale = 1024;
  while (unit < 5 && bytes / scale >= 1024) {
    scale *= 1024;
    ++unit;
  }
  const std::uint64_t whole = bytes / scale;
  std::uint64_t tenths = ((bytes % scale) * 10 + scale / 2) / scale;
  std::uint64_t w = whole;
  if (tenths == 10) {
    ++w;
    tenths = 0;
  }
  append_number(out, w);
  out += '.';
  append_number(out, tenths);
  out += kUnits[unit];
}

void append_duration(std::string& out, std::int64_t ns) {
  std::uint64_t v = static_cast<std::uint64_t>(ns);
  if (ns < 0) {
    out += '-';
    v = 0 - v;
  }
  append_seconds(out, v);
  out += 's';
}

void split_argv(std::string_view bytes, std::vector<std::string_view>& words) {
  words.clear();
  while (!bytes.empty()) {
    const std::size_t nul = bytes.find('\0');
    if (nul == std::string_view::npos) {
      words.push_back(bytes);
      break;
    }
    words.push_back(bytes.substr(0, nul));
    bytes.remove_prefix(nul + 1);
  }
}

namespace {

// The hints of the built-in record structs, for recordings made before hints were in schemas (every field
// an old recording of these structs can have). tests/decode/display_hints_test.cpp checks that each entry
// agrees with the struct's PS_HINT in bpf/events.h.
constexpr BuiltinHint kBuiltinHints[] = {
    {"ps_exec_event", "kind", "hidden"},
    {"ps_exec_event", "ret", "errno"},
    {"ps_exec_event", "filename_err", "errno"},
    {"ps_exec_event", "args_err", "errno"},
    {"ps_exec_event", "filename_len", "hidden"},
    {"ps_exec_event", "reserved", "hidden"},
    {"ps_exec_event", "filename", "path_argv"},  // before argv was kept it held the path alone: no args
    {"ps_openat_event", "kind", "hidden"},
    {"ps_openat_event", "dfd", "dirfd"},
    {"ps_openat_event", "flags", "open_flags"},
    {"ps_openat_event", "mode", "mode"},
    {"ps_openat_event", "ret", "errno"},
    {"ps_openat_event", "path_err", "errno"},
    {"ps_openat_event", "resolve", "hex"},
    {"ps_openat_event", "path_len", "hidden"},
    {"ps_openat_event", "reserved", "hidden"},
    {"ps_sched_switch_event", "kind", "hidden"},
    {"ps_sched_switch_event", "reserved", "hidden"},
    {"ps_sched_switch_event", "prev_state", "task_state"},
    {"ps_loadgen_event", "kind", "hidden"},
    {"ps_loadgen_event", "payload_len", "hidden"},
    {"ps_exit_event", "kind", "hidden"},
    {"ps_exit_event", "exit_code", "wait_status"},
    {"ps_exit_event", "signal", "signal"},
    {"ps_exit_event", "lifetime_ns", "duration_ns"},
    {"ps_fork_event", "kind", "hidden"},
    {"ps_tcp_event", "kind", "hidden"},
    {"ps_tcp_event", "family", "address_family"},
    {"ps_tcp_event", "oldstate", "tcp_state"},
    {"ps_tcp_event", "newstate", "tcp_state"},
    {"ps_tcp_event", "saddr", "ip", "sport", "family"},
    {"ps_tcp_event", "daddr", "ip", "dport", "family"},
    {"ps_tcp_event", "bytes_sent", "bytes"},
    {"ps_tcp_event", "bytes_received", "bytes"},
    {"ps_tcp_event", "duration_ns", "duration_ns"},
};

}  // namespace

const BuiltinHint* builtin_hint(std::string_view type_name, std::string_view field) {
  for (const auto& h : kBuiltinHints) {
    if (h.type_name == type_name && h.field == field) return &h;
  }
  return nullptr;
}

int add_builtin_hints(v1::EventSchema& schema) {
  int added = 0;
  for (auto& f : *schema.mutable_fields()) {
    if (!f.hint().empty()) continue;
    const BuiltinHint* h = builtin_hint(schema.type_name(), f.name());
    if (h == nullptr) continue;
    const bool integer = f.type() == v1::Field::SIGNED || f.type() == v1::Field::UNSIGNED;
    if (hint_wants_integer(parse_hint(h->hint)) && !integer) continue;
    f.set_hint(std::string(h->hint));
    if (!h->port.empty()) (*f.mutable_hint_args())["port"] = std::string(h->port);
    if (!h->family.empty()) (*f.mutable_hint_args())["family"] = std::string(h->family);
    ++added;
  }
  return added;
}

}  // namespace perfstream::hints
