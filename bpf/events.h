/* The records perfstream's built-in BPF programs write into the perf event array, shared by the BPF side
 * (kernel C) and the collector (C++). Contract:
 *  - every struct starts with `__u32 kind`, so one ring can carry several probes' records;
 *  - fields are fixed-width with explicit padding, so both compilers lay them out identically (the C++ side
 *    pins every size and offset with static_assert);
 *  - variable-length records end in a byte array and the BPF program emits only the bytes it filled: the
 *    header up to the array plus the array's used length, which the record also carries in a `*_len` field.
 *    The kernel pads each sample to 8 bytes; that padding is never data: readers use the length fields.
 * No includes: the includer provides __u8/__u32/__u64 (linux/types.h or vmlinux_min.h).
 */
#ifndef PERFSTREAM_BPF_EVENTS_H
#define PERFSTREAM_BPF_EVENTS_H

#define PS_COMM_LEN 16
#define PS_PATH_MAX 4096        /* bytes of a path kept, NUL included */
#define PS_LOADGEN_MAX 16384    /* largest record loadgen emits, header included */

enum ps_event_kind {
	PS_EVENT_EXEC = 1,
	PS_EVENT_OPENAT = 2,
	PS_EVENT_SCHED_SWITCH = 3,
	PS_EVENT_LOADGEN = 4,
};

/* tp_btf/sched_process_exec: a successful execve. */
struct ps_exec_event {
	__u32 kind;             /* PS_EVENT_EXEC */
	__u32 pid;              /* tgid of the new image */
	__u32 ppid;             /* tgid of the real parent */
	__u32 uid;
	char comm[PS_COMM_LEN]; /* comm after exec (basename of the file) */
	__u32 filename_len;     /* bytes used in filename, NUL included; 0 if it could not be read */
	__u32 reserved;
	char filename[PS_PATH_MAX];
};
#define PS_EXEC_HEADER_SIZE 40

/* tp/syscalls/sys_enter_openat: an openat(2) call, as asked (before the kernel resolves it). */
struct ps_openat_event {
	__u32 kind;             /* PS_EVENT_OPENAT */
	__u32 pid;              /* tgid */
	__u32 tid;
	__s32 dfd;
	__s32 flags;
	__u32 mode;
	char comm[PS_COMM_LEN];
	__u32 path_len;         /* bytes used in path, NUL included; 0 if the user pointer could not be read */
	__u32 reserved;
	char path[PS_PATH_MAX];
};
#define PS_OPENAT_HEADER_SIZE 48

/* tp_btf/sched_switch: the fields of the sched:sched_switch tracepoint. Fixed size. */
struct ps_sched_switch_event {
	__u32 kind;             /* PS_EVENT_SCHED_SWITCH */
	__s32 prev_pid;
	__s32 prev_prio;
	__s32 next_pid;
	__s32 next_prio;
	__u32 reserved;
	__s64 prev_state;       /* as the tracepoint reports it: a TASK_REPORT bit, or TASK_REPORT_MAX if preempted */
	char prev_comm[PS_COMM_LEN];
	char next_comm[PS_COMM_LEN];
};

/* raw_tp/sys_enter, filtered to one syscall made by one process: a producer for benchmarks and loss tests.
 * `seq` counts emit attempts per CPU (from 0), so a reader can tell exactly which records are missing. */
struct ps_loadgen_event {
	__u32 kind;             /* PS_EVENT_LOADGEN */
	__u32 payload_len;      /* bytes of payload emitted after this header */
	__u64 seq;              /* per-CPU sequence number of this emit attempt */
	__u32 cpu;
	__u32 pid;
	__u8 payload[PS_LOADGEN_MAX - 24];
};
#define PS_LOADGEN_HEADER_SIZE 24

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
};

#endif
