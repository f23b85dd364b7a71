// SPDX-License-Identifier: GPL-2.0
/* sched_switch: one fixed-size record per context switch, with the fields of sched:sched_switch. */
#include "common.bpf.h"

PS_EVENT_LAYOUT(struct ps_sched_switch_event);

#define PS_TASK_REPORT 0x7f
#define PS_TASK_REPORT_IDLE 0x80
#define PS_TASK_REPORT_MAX 0x100
#define PS_TASK_IDLE 0x402
#define PS_TASK_RTLOCK_WAIT 0x1000
#define PS_TASK_UNINTERRUPTIBLE 0x2

/* The tracepoint's prev_state: the highest TASK_REPORT bit of the state, TASK_REPORT_MAX when preempted. */
static __always_inline __s64 ps_report_state(bool preempt, unsigned int state, long exit_state)
{
	if (preempt)
		return PS_TASK_REPORT_MAX;
	unsigned int bits = (state | (unsigned int)exit_state) & PS_TASK_REPORT;
	if (state == PS_TASK_IDLE)
		bits = PS_TASK_REPORT_IDLE;
	if (state == PS_TASK_RTLOCK_WAIT)
		bits = PS_TASK_UNINTERRUPTIBLE;
	if (!bits)
		return 0;
	__s64 top = 1;
	for (int i = 7; i >= 0; i--) {
		if (bits & (1u << i)) {
			top = 1ll << i;
			break;
		}
	}
	return top;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(ps_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	struct ps_sched_switch_event e;

	if (ps_skip_task(prev) && ps_skip_task(next))
		return 0;
	e.kind = PS_EVENT_SCHED_SWITCH;
	e.prev_pid = BPF_CORE_READ(prev, pid);
	e.prev_prio = BPF_CORE_READ(prev, prio);
	e.next_pid = BPF_CORE_READ(next, pid);
	e.next_prio = BPF_CORE_READ(next, prio);
	e.reserved = 0;
	e.prev_state = ps_report_state(preempt, prev_state, BPF_CORE_READ(prev, exit_state));
	BPF_CORE_READ_STR_INTO(&e.prev_comm, prev, comm);
	BPF_CORE_READ_STR_INTO(&e.next_comm, next, comm);
	ps_output_stamped(ctx, &e, sizeof(e));
	return 0;
}
