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

struct task_struct {
	pid_t pid;
	pid_t tgid;
	int prio;
	char comm[16];
	struct task_struct *real_parent;
	const struct cred *cred;
	unsigned int __state;
	long exit_state;
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

#endif
