/* The records perfstream's built-in BPF programs write into the perf event array, shared by the BPF side
 * (kernel C) and the collector (C++). Contract:
 *  - every struct starts with `__u32 kind`, so one ring can carry several probes' records;
 *  - fields are fixed-width with explicit padding, so both compilers lay them out identically (the C++ side
 *    pins every size and offset with static_assert);
 *  - variable-length records end in a byte array and the BPF program emits only the bytes it filled: the
 *    header up to the array plus the array's used length, which the record also carries in a `*_len` field.
 *    The kernel pads each sample to 8 bytes; that padding is never data: readers use the length fields.
 *  - every record has `__u64 ts`, set by ps_output_stamped (common.bpf.h) to bpf_ktime_get_ns()
 *    (CLOCK_MONOTONIC, the clock of the collector's perf events) as the last step before output, so the
 *    collector can open its perf events without PERF_SAMPLE_TIME and take each record's time from it. It is
 *    hidden from display: it is the record's time, shown as such. Where a struct had no room in its fixed
 *    header it was appended (fixed-size records) or put at the header's end (exec, openat, loadgen);
 *    readers find it, as every field, by the schema in the trace header;
 *  - a member may carry a display hint, PS_HINT(name), and the hint's parameters, PS_HINT_ARG(key, field):
 *    BTF decl tags ("perfstream:hint=open_flags", "perfstream:hint.port=dport") that the collector copies
 *    into the trace header's schema (Field.hint, Field.hint_args) so dump shows O_RDONLY|O_CLOEXEC, ENOENT,
 *    S, 10.0.0.1:443. The hints and what they mean are listed in docs/FORMAT.md ("Display hints"). Any BPF
 *    object's record struct may use them. Tags change no layout; outside BPF (the C++ side) they are empty.
 * No includes: the includer provides __u8/__u32/__u64 (linux/types.h or vmlinux_min.h).
 */
#ifndef PERFSTREAM_BPF_EVENTS_H
#define PERFSTREAM_BPF_EVENTS_H

/* btf_decl_tag needs clang 14; an older clang builds the same layout without hints. */
#if defined(__bpf__) && defined(__has_attribute)
#if __has_attribute(btf_decl_tag)
#define PS_HINT(name) __attribute__((btf_decl_tag("perfstream:hint=" #name)))
#define PS_HINT_ARG(key, field) __attribute__((btf_decl_tag("perfstream:hint." #key "=" #field)))
#endif
#endif
#ifndef PS_HINT
#define PS_HINT(name)
#define PS_HINT_ARG(key, field)
#endif

#define PS_COMM_LEN 16
#define PS_PATH_MAX 4096        /* bytes of a path kept, NUL included */
#define PS_ARGS_MAX 4096        /* bytes of an exec's argv kept, every NUL included */
#define PS_ARGC_MAX 64          /* argv strings kept of a failed exec (a successful one keeps PS_ARGS_MAX bytes) */
#define PS_LOADGEN_MAX 16384    /* largest record loadgen emits, header included */

/* Record kinds. Never renumbered: a trace file names its records by these. */
enum ps_event_kind {
	PS_EVENT_EXEC = 1,
	PS_EVENT_OPENAT = 2,
	PS_EVENT_SCHED_SWITCH = 3,
	PS_EVENT_LOADGEN = 4,
	PS_EVENT_EXIT = 5,
	PS_EVENT_FORK = 6,
	PS_EVENT_TCP = 7,
};

/* execve(2) and execveat(2), successful or not. A successful one is recorded at sched_process_exec (the new
 * image, as the kernel resolved it: filename from the kernel, argv from the new process's argument area,
 * which the kernel itself wrote); a failed one at sys_exit_execve/execveat, with the pointers kept from
 * sys_enter (per thread) and read then, when the kernel has faulted them in.
 *
 * `filename` holds NUL-terminated strings back to back: first the file name, then argv[0] .. argv[n-1]
 * (n = args_count). A reader that takes `filename` up to its first NUL sees the file name alone; its hint
 * path_argv tells dump to keep them all and show filename="/bin/echo" args=["echo","a b"].
 * filename_len counts every byte used, every NUL included. */
struct ps_exec_event {
	__u32 kind PS_HINT(hidden);             /* PS_EVENT_EXEC */
	__u32 pid;              /* tgid */
	__u32 tid;              /* the thread that called execve (after a successful exec, the process has only
	                           this one thread and its tid is pid) */
	__u32 ppid;             /* tgid of the real parent */
	__u32 uid;              /* real uid (after a successful exec: of the new credentials) */
	__s32 ret PS_HINT(errno);              /* 0: the new program runs; else -errno (-ENOENT, -EACCES, ...) */
	char comm[PS_COMM_LEN]; /* after a successful exec: the new comm; after a failed one: the caller's */
	__u32 args_count;       /* argv strings in `filename` after the file name */
	__u32 args_truncated;   /* 1: argv had more strings (PS_ARGC_MAX) or bytes (PS_ARGS_MAX) than were kept;
	                           the last string kept may be cut short (it still ends in a NUL) */
	__s32 filename_err PS_HINT(errno);     /* 0, or the -errno of reading the file name: it is then the empty string */
	__s32 args_err PS_HINT(errno);         /* 0, or the -errno of reading argv: the strings before the failure are kept */
	__u32 filename_len PS_HINT(hidden);     /* bytes used in filename (file name and argv), NUL included */
	__u32 reserved PS_HINT(hidden);
	__u64 ts PS_HINT(hidden);       /* bpf_ktime_get_ns() just before output (ps_output_stamped) */
	char filename[PS_PATH_MAX + PS_ARGS_MAX] PS_HINT(path_argv);
};
#define PS_EXEC_HEADER_SIZE 72

/* Which call a ps_openat_event records. */
enum ps_open_call {
	PS_OPEN_OPENAT = 0,
	PS_OPEN_OPEN = 1,       /* open(2): dfd is AT_FDCWD */
	PS_OPEN_OPENAT2 = 2,    /* openat2(2): flags, mode and resolve from its struct open_how */
};

/* openat(2), open(2) and openat2(2), one record per completed call. The arguments are kept at sys_enter
 * (per thread), the path is read at sys_exit, when the kernel has faulted its page in; a call whose enter
 * was not seen (the probe attached during it, or the per-thread map was full) is not recorded. */
struct ps_openat_event {
	__u32 kind PS_HINT(hidden);             /* PS_EVENT_OPENAT */
	__u32 pid;              /* tgid */
	__u32 tid;
	__s32 dfd PS_HINT(dirfd);
	__s32 flags PS_HINT(open_flags);
	__u32 mode PS_HINT(mode);
	char comm[PS_COMM_LEN];
	__s32 ret PS_HINT(errno);              /* the new fd, or -errno */
	__s32 path_err PS_HINT(errno);         /* 0, or the -errno of reading the path (path is then empty, path_len 0) */
	__u32 call;             /* enum ps_open_call */
	__u32 resolve PS_HINT(hex);          /* openat2's RESOLVE_* flags; 0 for the others */
	__u32 path_len PS_HINT(hidden);         /* bytes used in path, NUL included; 0 when path_err says why */
	__u32 reserved PS_HINT(hidden);
	__u64 ts PS_HINT(hidden);       /* bpf_ktime_get_ns() just before output (ps_output_stamped) */
	char path[PS_PATH_MAX];
};
#define PS_OPENAT_HEADER_SIZE 72

/* tp_btf/sched_process_exit: a thread exits; process_exit says whether it was the process's last. Fixed
 * size. The status is the kernel's exit_code: exit status (exit(3) or returning from main) or the signal
 * that killed it. */
struct ps_exit_event {
	__u32 kind PS_HINT(hidden);             /* PS_EVENT_EXIT */
	__u32 pid;              /* tgid */
	__u32 tid;
	__u32 ppid;             /* tgid of the real parent */
	__u32 exit_code PS_HINT(wait_status);        /* the kernel's raw code, as wait(2) reports it */
	__u32 exit_status;      /* (exit_code >> 8) & 0xff: the status passed to exit; 0 when killed */
	__u32 signal PS_HINT(signal);           /* exit_code & 0x7f: the signal that killed it, 0 when it exited */
	__u32 process_exit;     /* 1: the last thread of the process (the process exits); 0: one thread */
	char comm[PS_COMM_LEN];
	__u64 lifetime_ns PS_HINT(duration_ns);      /* since the thread started; for a process exit, since the process started */
	__u64 ts PS_HINT(hidden);       /* bpf_ktime_get_ns() just before output (ps_output_stamped) */
};

/* tp_btf/sched_process_fork: a new process or thread. Fixed size. A new thread has child_pid == parent_pid. */
struct ps_fork_event {
	__u32 kind PS_HINT(hidden);             /* PS_EVENT_FORK */
	__u32 parent_pid;       /* tgid of the forking process */
	__u32 parent_tid;       /* the thread that forked */
	__u32 child_pid;        /* tgid of the child: a new one, or parent_pid for a new thread */
	__u32 child_tid;
	__u32 uid;              /* real uid of the parent (and child) */
	char comm[PS_COMM_LEN]; /* the parent's, which the child inherits */
	__u64 ts PS_HINT(hidden);       /* bpf_ktime_get_ns() just before output (ps_output_stamped) */
};

/* What a ps_tcp_event records. */
enum ps_tcp_what {
	PS_TCP_CONNECT = 1,        /* SYN_SENT -> ESTABLISHED: a connect(2) succeeded */
	PS_TCP_ACCEPT = 2,         /* SYN_RECV -> ESTABLISHED: a connection came in on a listener */
	PS_TCP_CLOSE = 3,          /* an established connection ends (-> CLOSE), with its bytes and duration */
	PS_TCP_CONNECT_FAILED = 4, /* SYN_SENT -> CLOSE: refused, timed out, or reset before it was established */
};

/* tp/sock/inet_sock_set_state for TCP, one record per connect, accept and close (as tcplife sees them).
 * Fixed size. Addresses are in network order (IPv4: the first 4 bytes of saddr/daddr), ports in host
 * order; s = this socket's end, d = the peer. The process is the one that called connect(2), or for an
 * accepted connection the one that closed it (the kernel completes the handshake before accept(2), out of
 * any process): pid 0 when not known. */
struct ps_tcp_event {
	__u32 kind PS_HINT(hidden);             /* PS_EVENT_TCP */
	__u32 pid;              /* tgid; 0: not known */
	__u32 tid;
	__u32 uid;              /* the process's real uid, or the socket's owner (sk_uid) when pid is 0 */
	char comm[PS_COMM_LEN];
	__u32 what;             /* enum ps_tcp_what */
	__u32 family PS_HINT(address_family);           /* AF_INET (2) or AF_INET6 (10) */
	__u32 sport;
	__u32 dport;
	__s32 oldstate PS_HINT(tcp_state);         /* TCP_* states of the transition (1 ESTABLISHED, 2 SYN_SENT, 3 SYN_RECV, 7 CLOSE, ...) */
	__s32 newstate PS_HINT(tcp_state);
	__u8 saddr[16] PS_HINT(ip) PS_HINT_ARG(port, sport) PS_HINT_ARG(family, family);
	__u8 daddr[16] PS_HINT(ip) PS_HINT_ARG(port, dport) PS_HINT_ARG(family, family);
	__u64 bytes_sent PS_HINT(bytes);       /* PS_TCP_CLOSE: bytes the peer acknowledged (tcp_sock.bytes_acked); else 0 */
	__u64 bytes_received PS_HINT(bytes);   /* PS_TCP_CLOSE: tcp_sock.bytes_received; else 0. Both count sequence space, as
	                           tcplife shows them: a FIN is 1 byte, and so is the SYN of the side that connected */
	__u64 duration_ns PS_HINT(duration_ns);      /* PS_TCP_CLOSE: since connect or accept (0 if that was not seen); else 0 */
	__u64 ts PS_HINT(hidden);       /* bpf_ktime_get_ns() just before output (ps_output_stamped) */
};

/* Per-thread state of a syscall in flight, kept from sys_enter to sys_exit (openat, exec). */
struct ps_syscall_args {
	__u64 args[4];
	__u32 call;
	__u32 reserved;
};

/* tp_btf/sched_switch: the fields of the sched:sched_switch tracepoint. Fixed size. */
struct ps_sched_switch_event {
	__u32 kind PS_HINT(hidden);             /* PS_EVENT_SCHED_SWITCH */
	__s32 prev_pid;
	__s32 prev_prio;
	__s32 next_pid;
	__s32 next_prio;
	__u32 reserved PS_HINT(hidden);
	__s64 prev_state PS_HINT(task_state);       /* as the tracepoint reports it: a TASK_REPORT bit, or TASK_REPORT_MAX if preempted */
	char prev_comm[PS_COMM_LEN];
	char next_comm[PS_COMM_LEN];
	__u64 ts PS_HINT(hidden);       /* bpf_ktime_get_ns() just before output (ps_output_stamped) */
};

/* raw_tp/sys_enter, filtered to one syscall made by one process: a producer for benchmarks and loss tests.
 * `seq` counts emit attempts per CPU (from 0), so a reader can tell exactly which records are missing. */
struct ps_loadgen_event {
	__u32 kind PS_HINT(hidden);             /* PS_EVENT_LOADGEN */
	__u32 payload_len PS_HINT(hidden);      /* bytes of payload emitted after this header */
	__u64 seq;              /* per-CPU sequence number of this emit attempt */
	__u32 cpu;
	__u32 pid;
	__u64 ts PS_HINT(hidden);       /* bpf_ktime_get_ns() just before output (ps_output_stamped) */
	__u8 payload[PS_LOADGEN_MAX - 32];
};
#define PS_LOADGEN_HEADER_SIZE 32

/* loadgen's configuration, the single value of its `loadgen_config` array map. */
struct ps_loadgen_config {
	__u32 tgid;             /* only this process triggers; 0 disables the probe */
	__u32 syscall_nr;       /* only this syscall triggers */
	__u32 record_size;      /* bytes per record, PS_LOADGEN_HEADER_SIZE..PS_LOADGEN_MAX */
	__u32 records_per_call; /* records emitted per trigger, at least 1 */
};

/* loadgen's per-CPU counters, the single value of its `loadgen_stats` per-CPU array map. */
struct ps_loadgen_stats {
	__u64 emitted;          /* bpf_perf_event_output returned 0 */
	__u64 failed;           /* it returned an error (-ENOSPC when the ring was full, -ENOENT with no ring) */
	__u64 failed_nospace;   /* of `failed`, those with -ENOSPC: the ones the kernel reports as lost */
};

/* Every built-in probe's failed bpf_perf_event_output calls, per CPU: the single value of the
 * `ps_output_failures` per-CPU array map (common.bpf.h, ps_output). The collector reads it at stop. */
struct ps_output_counts {
	__u64 ring_full;        /* -ENOSPC: the kernel counts these too and reports them as PERF_RECORD_LOST */
	__u64 unwritable;       /* any other error (-ENOENT no event in the slot, -EOPNOTSUPP event not live on
	                           this CPU, e.g. offline or just back online): nobody else counts these */
	__s32 last_errno;       /* the positive errno of the latest `unwritable` failure; 0 if none */
	__u32 reserved;
	__u64 state_full;       /* a syscall's enter could not be kept (its per-thread map was full): that call
	                           is not recorded. Counted by openat and exec. */
};

#endif
