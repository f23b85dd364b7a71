// SPDX-License-Identifier: GPL-2.0
/* fork: one record per new process or thread (fork, vfork, clone), with parent and child. */
#include "common.bpf.h"

PS_EVENT_LAYOUT(struct ps_fork_event);

SEC("tp_btf/sched_process_fork")
int BPF_PROG(ps_fork, struct task_struct *parent, struct task_struct *child)
{
	struct ps_fork_event e;

	if (ps_skip_task(parent))
		return 0;
	e.kind = PS_EVENT_FORK;
	e.parent_pid = BPF_CORE_READ(parent, tgid);
	e.parent_tid = BPF_CORE_READ(parent, pid);
	e.child_pid = BPF_CORE_READ(child, tgid);
	e.child_tid = BPF_CORE_READ(child, pid);
	e.uid = BPF_CORE_READ(parent, cred, uid.val);
	BPF_CORE_READ_STR_INTO(&e.comm, parent, comm);
	ps_output_stamped(ctx, &e, sizeof(e));
	return 0;
}
