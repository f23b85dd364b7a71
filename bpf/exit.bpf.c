// SPDX-License-Identifier: GPL-2.0
/* exit: one record per exiting thread, with the exit status or the signal that killed it, and whether it
 * was the last thread of its process (then the record is the process's exit, as exitsnoop shows). */
#include "common.bpf.h"

PS_EVENT_LAYOUT(struct ps_exit_event);

SEC("tp_btf/sched_process_exit")
int BPF_PROG(ps_exit, struct task_struct *p)
{
	struct ps_exit_event e;

	if (ps_skip_task(p))
		return 0;
	__u64 now = bpf_ktime_get_ns();
	/* do_exit has set exit_code and counted this thread out of signal->live before the tracepoint. */
	__u32 process_exit = BPF_CORE_READ(p, signal, live.counter) == 0;
	__u32 code = (__u32)BPF_CORE_READ(p, exit_code);
	__u64 start = process_exit ? BPF_CORE_READ(p, group_leader, start_time) : BPF_CORE_READ(p, start_time);

	e.kind = PS_EVENT_EXIT;
	e.pid = BPF_CORE_READ(p, tgid);
	e.tid = BPF_CORE_READ(p, pid);
	e.ppid = BPF_CORE_READ(p, real_parent, tgid);
	e.exit_code = code;
	e.exit_status = (code >> 8) & 0xff;
	e.signal = code & 0x7f;
	e.process_exit = process_exit;
	BPF_CORE_READ_STR_INTO(&e.comm, p, comm);
	e.lifetime_ns = now > start ? now - start : 0;
	ps_output_stamped(ctx, &e, sizeof(e));
	return 0;
}
