// SPDX-License-Identifier: GPL-2.0
/* follow: keeps ps_followed equal to a command and its descendants, for --follow. It emits no records: a
 * fork of a followed process adds the child, and a followed process is removed once it is freed. The collector
 * seeds the map with the command before releasing it, and attaches this before any probe. */
#include "common.bpf.h"

SEC("tp_btf/sched_process_fork")
int BPF_PROG(ps_follow_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 parent_tgid = BPF_CORE_READ(parent, tgid);
	__u32 child_tgid = BPF_CORE_READ(child, tgid);
	__u8 one = 1;

	if (child_tgid != parent_tgid && bpf_map_lookup_elem(&ps_followed, &parent_tgid))
		bpf_map_update_elem(&ps_followed, &child_tgid, &one, BPF_ANY);
	return 0;
}

/* At sched_process_free, not sched_process_exit: the exit probe runs on sched_process_exit too, after
 * this program (attached first), and must still find the process followed to record its exit. */
SEC("tp_btf/sched_process_free")
int BPF_PROG(ps_follow_exit, struct task_struct *p)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);

	/* Only the last thread of a process leaves the set with it; a thread exiting does not. */
	if (BPF_CORE_READ(p, pid) == tgid)
		bpf_map_delete_elem(&ps_followed, &tgid);
	return 0;
}
