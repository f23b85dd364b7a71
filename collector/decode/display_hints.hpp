// Display hints: how a record field's value is shown to a person. A schema field carries a hint name
// (v1::Field.hint, from a BTF decl tag on the struct member, PS_HINT in bpf/events.h) and sometimes
// parameters naming sibling fields (v1::Field.hint_args, e.g. the port shown after an address).
// docs/FORMAT.md ("Display hints") is the contract: every hint, its input, and its text; this file is one
// implementation of it, and the functions here are pure (no locale, no host tables), so another reader
// following FORMAT.md prints the same.
//
// Each renderer takes a value whatever it is: bits no table names are shown in hex, numbers no table names
// as the number, so a wrong or future value never disappears or fails.
//
// Old recordings carry no hints. builtin_hint() is the table of the hints perfstream's own record structs
// have had, by struct and field name, for `dump --guess-hints` (docs/FORMAT.md says why it is not the default).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "perfstream.pb.h"

namespace perfstream::hints {

enum class Hint : std::uint8_t {
  None,           // no hint
  Unknown,        // a hint this reader does not know: shown as if none
  Hidden,         // kind, padding, lengths: left out unless raw fields are asked for
  OpenFlags,      // open(2) flags: O_RDONLY|O_CLOEXEC
  Mode,           // file mode: octal with a leading 0 (0644)
  DirFd,          // a directory fd: AT_FDCWD for -100, else the number
  Errno,          // a result: -errno as its name (ENOENT), anything else the number
  TaskState,      // sched_switch prev_state as the tracepoint reports it: R S D T t X Z P I, R+ when preempted
  Signal,         // a signal number: SIGKILL
  WaitStatus,     // a wait(2) status: the exit code, or the signal that ended the process (SIGSEGV+core)
  Ip,             // an IPv4 or IPv6 address, with its port when hint_args names one: 10.0.0.1:443, [::1]:443
  TcpState,       // a TCP state: ESTABLISHED, SYN_SENT, ...
  AddressFamily,  // AF_INET, AF_INET6, ...
  Bytes,          // a byte count: 512B, 1.5KiB, 3.2MiB in text
  DurationNs,     // nanoseconds: 1.500000000s in text
  Hex,            // an integer in hex: 0x1f
  Argv,           // NUL-separated strings: ["echo","a b"] in text, an array of strings in JSON
  PathArgv,       // a path, then argv, NUL-separated: the field is the path, and `args` follows with argv
  Enum,           // a C enum: the enumerator's name (v1::Field.enumerators) for a value one has
};

// The hint a schema names; "" is None, a name this reader does not know is Unknown.
Hint parse_hint(std::string_view name);

// Whether the hint applies to an integer field (the rest apply to byte or string arrays, Ip to both).
bool hint_wants_integer(Hint hint);

// Interprets the low `size` bytes of `raw` as two's complement.
std::int64_t sign_extend(std::uint64_t raw, std::uint32_t size);

// O_ACCMODE's value by name, then every other known flag, in bit order, joined by |; unknown bits as one
// hex number at the end: O_WRONLY|O_CREAT|O_TRUNC, O_RDONLY|0x40000000. Values are the asm-generic ones
// (x86-64 and most architectures; arm64 and a few others number O_DIRECTORY, O_NOFOLLOW, O_DIRECT and
// O_LARGEFILE differently, which a recording does not say).
void append_open_flags(std::string& out, std::uint32_t flags);
// Octal, with a leading 0 unless the value is 0: 0644, 0100755, 0.
void append_mode(std::string& out, std::uint64_t mode);
// The Linux errno name of a positive number (ENOENT for 2), nullptr when the table has none.
const char* errno_name(std::int64_t number);
// Letters for a prev_state value: see TaskState above and docs/FORMAT.md.
void append_task_state(std::string& out, std::int64_t state);
// SIGKILL; 32 to 64 as SIGRTMIN and SIGRTMIN+N (the kernel's numbering, as strace prints); false (nothing
// appended) for 0, negatives and numbers past 64.
bool append_signal(std::string& out, std::int64_t signal);
// A wait status that records a signal: SIGKILL, SIGSEGV+core; false (nothing appended) for a normal exit,
// whose code is exit_code_of(status).
bool append_wait_signal(std::string& out, std::uint64_t status);
inline std::uint64_t exit_code_of(std::uint64_t status) { return (status >> 8) & 0xff; }
const char* tcp_state_name(std::int64_t state);
const char* address_family_name(std::int64_t family);
// 4 bytes: IPv4; 16 bytes: IPv6 (RFC 5952, as inet_ntop writes it); with a port, 10.0.0.1:443 or [::1]:443.
// false (nothing appended) for any other length.
bool append_ip(std::string& out, std::string_view address, std::optional<std::uint64_t> port);
// The bytes of a 4-byte integer field as they were in memory (network order for an address).
std::string int_bytes(std::uint64_t raw, std::uint32_t size);
// Below 1024: 512B; then one decimal in binary units: 1.5KiB, 3.0MiB, up to EiB.
void append_bytes(std::string& out, std::uint64_t bytes);
// Seconds with nine decimals and "s": 1.500000000s, -0.000000100s.
void append_duration(std::string& out, std::int64_t ns);
// The strings of a NUL-separated list; a last NUL ends the list, it does not start an empty string.
void split_argv(std::string_view bytes, std::vector<std::string_view>& words);

// The hint perfstream's built-in struct `type_name` has on `field` (with its args, if any), for recordings
// made before schemas carried hints; nullptr when the table has none.
struct BuiltinHint {
  std::string_view type_name;
  std::string_view field;
  std::string_view hint;
  std::string_view port = {};    // hint_args["port"], if any
  std::string_view family = {};  // hint_args["family"], if any
};
const BuiltinHint* builtin_hint(std::string_view type_name, std::string_view field);
// Gives every field of `schema` without a hint the table's hint for it, when the field's type fits. Returns
// how many fields got one.
int add_builtin_hints(v1::EventSchema& schema);

}  // namespace perfstream::hints
