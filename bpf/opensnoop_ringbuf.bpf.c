// SPDX-License-Identifier: GPL-2.0
/* opensnoop_ringbuf: for tests, an object in the shape of libbpf-tools' current opensnoop: one
 * BPF_MAP_TYPE_RINGBUF map `events` (and no perf event array), tp/syscalls/sys_enter_openat, a struct event
 * with a `ts` from bpf_ktime_get_ns, written with bpf_ringbuf_reserve + submit. Its layout reaches the BTF
 * through PS_EVENT_LAYOUT, declared here as a tool would (it does not include common.bpf.h, which would bring
 * a perf event array). It honours the two filters `record -- CMD` sets: follow_mode with the shared
 * ps_followed map, and ignore_tgid. A reserve that fails is counted in `dropped`, the only place a ring
 * buffer's lost records are counted. */
#include "vmlinux_min.h"
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define OS_NAME_MAX 64

struct opensnoop_event {
	__u64 ts;
	__u32 pid;
	__u32 uid;
	__s32 flags;
	__u32 name_len;
	char comm[16];
	char fname[OS_NAME_MAX];
};

const volatile struct opensnoop_event *ps_event_layout __attribute__((used)) = 0;

const volatile __u32 follow_mode = 0;
const volatile __u32 ignore_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} ps_followed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

__u64 dropped = 0;

SEC("tp/syscalls/sys_enter_openat")
int tracepoint__syscalls__sys_enter_openat(struct ps_syscall_enter_ctx *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (ignore_tgid != 0 && tgid == ignore_tgid)
		return 0;
	if (follow_mode != 0 && !bpf_map_lookup_elem(&ps_followed, &tgid))
		return 0;
	struct opensnoop_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&dropped, 1);
		return 0;
	}
	e->ts = bpf_ktime_get_ns();
	e->pid = tgid;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->flags = (__s32)ctx->args[2];
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	long n = bpf_probe_read_user_str(e->fname, sizeof(e->fname), (const char *)ctx->args[1]);
	e->name_len = n > 0 ? (__u32)n : 0;
	bpf_ringbuf_submit(e, 0);
	return 0;
}
