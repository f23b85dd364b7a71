/* The few kernel types perfstream's BPF programs read, declared with preserve_access_index so that every
 * field access is a CO-RE relocation: libbpf rewrites the offsets against the running kernel's BTF at load
 * time, so these declarations need only the fields used, in any order. This keeps the build independent of
 * the build host's kernel (no generated vmlinux.h, nothing read from /sys at build time). */
#ifndef PERFSTREAM_VMLINUX_MIN_H
#define PERFSTREAM_VMLINUX_MIN_H

#include <linux/types.h>

typedef __u32 u32;
typedef __s32 pid_t;
typedef _Bool bool;

typedef struct { __u32 val; } kuid_t;

struct cred {
	kuid_t uid;
} __attribute__((preserve_access_index));

typedef struct { int counter; } atomic_t;

struct signal_struct {
	atomic_t live;          /* threads not yet exited */
} __attribute__((preserve_access_index));

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
} __attribute__((preserve_access_index));

struct task_struct {
	pid_t pid;
	pid_t tgid;
	int prio;
	char comm[16];
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	const struct cred *cred;
	struct signal_struct *signal;
	struct mm_struct *mm;
	unsigned int __state;
	long exit_state;
	int exit_code;
	__u64 start_time;       /* CLOCK_MONOTONIC ns, as bpf_ktime_get_ns */
} __attribute__((preserve_access_index));

struct sock {
	kuid_t sk_uid;
} __attribute__((preserve_access_index));

struct tcp_sock {
	__u64 bytes_received;
	__u64 bytes_acked;
} __attribute__((preserve_access_index));

struct linux_binprm {
	const char *filename;
} __attribute__((preserve_access_index));

/* The record of the syscalls:sys_enter_* tracepoints (see .../events/syscalls/sys_enter_openat/format). */
struct ps_syscall_enter_ctx {
	__u64 common;           /* common_type, flags, preempt_count, pid */
	__s32 syscall_nr;
	__u32 pad;
	__u64 args[6];
};

/* The record of the syscalls:sys_exit_* tracepoints. */
struct ps_syscall_exit_ctx {
	__u64 common;
	__s32 syscall_nr;
	__u32 pad;
	__s64 ret;
};

/* The record of sock:inet_sock_set_state (see .../events/sock/inet_sock_set_state/format). */
struct ps_inet_sock_set_state_ctx {
	__u64 common;
	const void *skaddr;
	int oldstate;
	int newstate;
	__u16 sport;            /* host order */
	__u16 dport;
	__u16 family;
	__u16 protocol;
	__u8 saddr[4];
	__u8 daddr[4];
	__u8 saddr_v6[16];
	__u8 daddr_v6[16];
};

#endif
