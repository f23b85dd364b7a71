// SPDX-License-Identifier: GPL-2.0
/* For tests: a program in the shape of libbpf-tools' older opensnoop.bpf.c, which perfstream must record as
 * it is. Like it: `const volatile` filters its loader sets in .rodata before load (targ_pid, targ_tgid,
 * targ_uid, targ_failed; targ_uid 0 means "only root" unless the loader writes INVALID_UID), the record
 * `struct event` built on the stack only (so it is not in this object's BTF: test_opensnoop_btf.c carries
 * it), and output through a perf event array. Beyond it, for the --set tests: an enum filter
 * (targ_outcome), a string copied into every record (tag), a counter in .bss and integers of other sizes
 * in .data. */
#include "vmlinux_min.h"
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "test_opensnoop.h"

char LICENSE[] SEC("license") = "GPL";

enum { false = 0, true = 1 }; /* as vmlinux.h has them */

/* The tracepoint records of syscalls/sys_enter_* and sys_exit_*, as vmlinux.h declares them. */
struct snoop_sys_enter {
	__u64 common;
	long id;
	unsigned long args[6];
};
struct snoop_sys_exit {
	__u64 common;
	long id;
	long ret;
};

const volatile pid_t targ_pid = 0;
const volatile pid_t targ_tgid = 0;
const volatile __u32 targ_uid = 0;
const volatile bool targ_failed = false;
const volatile enum snoop_outcome targ_outcome = SNOOP_ANY;
const volatile char tag[SNOOP_TAG_LEN] = "snoop";

__u64 opens_recorded = 0;
__s8 test_s8 = -8;
__u16 test_u16 = 16;
__s64 test_s64 = -64;
__u64 test_u64 = 64;

struct args_t {
	const char *fname;
	__s64 args[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct args_t);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

static __always_inline bool trace_allowed(__u32 tgid, __u32 pid)
{
	if (targ_tgid && targ_tgid != tgid)
		return false;
	if (targ_pid && targ_pid != pid)
		return false;
	if (targ_uid != INVALID_UID && targ_uid != (__u32)bpf_get_current_uid_gid())
		return false;
	return true;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int tracepoint__syscalls__sys_enter_openat(struct snoop_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u32 pid = id;

	if (!trace_allowed(tgid, pid))
		return 0;
	struct args_t a = {};
	a.fname = (const char *)ctx->args[1];
	a.args[0] = (int)ctx->args[0];
	a.args[1] = (int)ctx->args[2];
	a.args[2] = (int)ctx->args[3];
	bpf_map_update_elem(&start, &pid, &a, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int tracepoint__syscalls__sys_exit_openat(struct snoop_sys_exit *ctx)
{
	struct event event = {};
	__u32 pid = bpf_get_current_pid_tgid();
	struct args_t *ap = bpf_map_lookup_elem(&start, &pid);
	long ret;
	long len;

	if (!ap)
		return 0;
	ret = ctx->ret;
	if (targ_failed && ret >= 0)
		goto cleanup;
	event.outcome = ret >= 0 ? SNOOP_OPENED : SNOOP_FAILED;
	if (targ_outcome != SNOOP_ANY && event.outcome != targ_outcome)
		goto cleanup;
	event.ts = bpf_ktime_get_ns();
	event.pid = bpf_get_current_pid_tgid() >> 32;
	event.uid = bpf_get_current_uid_gid();
	event.ret = ret;
	event.flags = ap->args[1];
	event.args[0] = ap->args[0];
	event.args[1] = ap->args[1];
	event.args[2] = ap->args[2];
	bpf_get_current_comm(&event.comm, sizeof(event.comm));
	/* Volatile reads, byte by byte: a memcpy from the non-volatile cast would be folded into the
	 * compile-time "snoop", and --set would not show. */
	for (int i = 0; i < SNOOP_TAG_LEN; i++)
		event.tag[i] = tag[i];
	len = bpf_probe_read_user_str(&event.fname.pathes, sizeof(event.fname.pathes), ap->fname);
	event.fname.len = len > 0 ? len : 0;
	if (bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &event, sizeof(event)) == 0)
		__sync_fetch_and_add(&opens_recorded, 1);
cleanup:
	bpf_map_delete_elem(&start, &pid);
	return 0;
}
