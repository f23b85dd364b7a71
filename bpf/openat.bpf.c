// SPDX-License-Identifier: GPL-2.0
/* openat: one record per completed openat(2), open(2) or openat2(2) call, with its result.
 *
 * The path is read at sys_exit, not at sys_enter: at entry the string may sit in a page the process has not
 * touched yet, which bpf_probe_read_user_str cannot fault in (it would read nothing, and the record would
 * look like an empty path); by the exit the kernel has copied the string itself (getname), so the page is
 * in. sys_enter keeps the arguments per thread (key pid_tgid) until then. A path that still cannot be read
 * is marked (path_err), never written as an empty string.
 *
 * A sys_exit without its enter (the probe attached during the call, or the map was full at the enter,
 * counted as state_full) writes nothing: its arguments are not known. */
#include "common.bpf.h"

PS_EVENT_LAYOUT(struct ps_openat_event);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64);     /* pid_tgid */
	__type(value, struct ps_syscall_args);
} openat_inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ps_openat_event);
} openat_scratch SEC(".maps");

/* openat2's struct open_how (include/uapi/linux/openat2.h). */
struct ps_open_how {
	__u64 flags;
	__u64 mode;
	__u64 resolve;
};

static __always_inline int ps_open_enter(__u32 call, __u64 dfd, __u64 path, __u64 flags, __u64 mode)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	if (ps_skip_current())
		return 0;
	struct ps_syscall_args a = {
		.args = {dfd, path, flags, mode},
		.call = call,
	};
	if (bpf_map_update_elem(&openat_inflight, &pid_tgid, &a, BPF_ANY) != 0)
		ps_count_state_full();
	return 0;
}

static __always_inline int ps_open_exit(void *ctx, long ret)
{
	__u32 zero = 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct ps_syscall_args *a = bpf_map_lookup_elem(&openat_inflight, &pid_tgid);

	if (!a)
		return 0;
	struct ps_openat_event *e = bpf_map_lookup_elem(&openat_scratch, &zero);
	if (!e)
		goto out;
	e->kind = PS_EVENT_OPENAT;
	e->pid = pid_tgid >> 32;
	e->tid = (__u32)pid_tgid;
	e->dfd = (__s32)a->args[0];
	e->call = a->call;
	e->ret = (__s32)ret;
	e->reserved = 0;
	if (a->call == PS_OPEN_OPENAT2) {
		/* Read at exit too: the kernel copied the struct in (copy_struct_from_user). */
		struct ps_open_how how = {};
		bpf_probe_read_user(&how, sizeof(how), (const void *)a->args[2]);
		e->flags = (__s32)how.flags;
		e->mode = (__u32)how.mode;
		e->resolve = (__u32)how.resolve;
	} else {
		e->flags = (__s32)a->args[2];
		e->mode = (__u32)a->args[3];
		e->resolve = 0;
	}
	bpf_get_current_comm(e->comm, sizeof(e->comm));

	long n = bpf_probe_read_user_str(e->path, sizeof(e->path), (const void *)a->args[1]);
	if (n <= 0) {
		e->path_err = n < 0 ? (__s32)n : -22 /* EINVAL: nothing read */;
		n = 0;
	} else {
		e->path_err = 0;
	}
	if (n > PS_PATH_MAX)
		n = PS_PATH_MAX;
	e->path_len = n;
	ps_output_stamped(ctx, e, PS_OPENAT_HEADER_SIZE + n);
out:
	bpf_map_delete_elem(&openat_inflight, &pid_tgid);
	return 0;
}

SEC("tp/syscalls/sys_enter_openat")
int ps_openat_enter(struct ps_syscall_enter_ctx *ctx)
{
	return ps_open_enter(PS_OPEN_OPENAT, ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3]);
}

SEC("tp/syscalls/sys_exit_openat")
int ps_openat_exit(struct ps_syscall_exit_ctx *ctx)
{
	return ps_open_exit(ctx, ctx->ret);
}

/* open(2) and openat2(2): not every architecture has open(2) (arm64 has no sys_enter_open); the collector
 * does not load a program whose tracepoint this kernel lacks. */
SEC("tp/syscalls/sys_enter_open")
int ps_open_enter_open(struct ps_syscall_enter_ctx *ctx)
{
	return ps_open_enter(PS_OPEN_OPEN, (__u64)(__s64)-100 /* AT_FDCWD */, ctx->args[0], ctx->args[1],
			     ctx->args[2]);
}

SEC("tp/syscalls/sys_exit_open")
int ps_open_exit_open(struct ps_syscall_exit_ctx *ctx)
{
	return ps_open_exit(ctx, ctx->ret);
}

SEC("tp/syscalls/sys_enter_openat2")
int ps_openat2_enter(struct ps_syscall_enter_ctx *ctx)
{
	return ps_open_enter(PS_OPEN_OPENAT2, ctx->args[0], ctx->args[1], ctx->args[2], 0);
}

SEC("tp/syscalls/sys_exit_openat2")
int ps_openat2_exit(struct ps_syscall_exit_ctx *ctx)
{
	return ps_open_exit(ctx, ctx->ret);
}
