// SPDX-License-Identifier: GPL-2.0
/* openat: one record per openat(2) call, with the path as the caller passed it. */
#include "common.bpf.h"

PS_EVENT_LAYOUT(struct ps_openat_event);

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ps_openat_event);
} openat_scratch SEC(".maps");

SEC("tp/syscalls/sys_enter_openat")
int ps_openat(struct ps_syscall_enter_ctx *ctx)
{
	__u32 zero = 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;

	if (ps_skip_tgid(tgid))
		return 0;
	struct ps_openat_event *e = bpf_map_lookup_elem(&openat_scratch, &zero);
	if (!e)
		return 0;
	e->kind = PS_EVENT_OPENAT;
	e->pid = tgid;
	e->tid = (__u32)pid_tgid;
	e->dfd = (__s32)ctx->args[0];
	e->flags = (__s32)ctx->args[2];
	e->mode = (__u32)ctx->args[3];
	e->reserved = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));

	long n = bpf_probe_read_user_str(e->path, sizeof(e->path), (const void *)ctx->args[1]);
	if (n < 0)
		n = 0;
	if (n > PS_PATH_MAX)
		n = PS_PATH_MAX;
	e->path_len = n;
	ps_output(ctx, e, PS_OPENAT_HEADER_SIZE + n);
	return 0;
}
