// SPDX-License-Identifier: GPL-2.0
/* exec: one record per successful execve, with the file name as the kernel resolved it. */
#include "common.bpf.h"

PS_EVENT_LAYOUT(struct ps_exec_event);

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ps_exec_event);
} exec_scratch SEC(".maps");

SEC("tp_btf/sched_process_exec")
int BPF_PROG(ps_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 zero = 0;
	__u32 tgid = BPF_CORE_READ(p, tgid);

	if (ps_skip_tgid(tgid))
		return 0;
	struct ps_exec_event *e = bpf_map_lookup_elem(&exec_scratch, &zero);
	if (!e)
		return 0;
	e->kind = PS_EVENT_EXEC;
	e->pid = tgid;
	e->ppid = BPF_CORE_READ(p, real_parent, tgid);
	e->uid = BPF_CORE_READ(p, cred, uid.val);
	e->reserved = 0;
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), p->comm);

	long n = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(bprm, filename));
	if (n < 0)
		n = 0;
	if (n > PS_PATH_MAX)
		n = PS_PATH_MAX;
	e->filename_len = n;
	ps_output(ctx, e, PS_EXEC_HEADER_SIZE + n);
	return 0;
}
