/* What every built-in perfstream BPF program shares: the perf event array all of them write to (the collector
 * gives every loaded probe the same map fd, so one set of per-CPU rings carries all of them), the filters set
 * from user space before load, and the failure counters. */
#ifndef PERFSTREAM_COMMON_BPF_H
#define PERFSTREAM_COMMON_BPF_H

#include "vmlinux_min.h"
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "events.h"

char LICENSE[] SEC("license") = "GPL";

/* max_entries 0: libbpf sizes it to the number of possible CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

/* Which tasks are traced: the collector sets these before load (kernel/bpf_probe.hpp, ProbeOptions, states
 * the contract). A task is traced when it passes every filter that is on:
 *  - tasks: with filter_tgids_on and/or filter_tids_on, its tgid is in ps_filter_tgids or its tid in
 *    ps_filter_tids (-p, -t: the tasks named, as a union);
 *  - filter_uid_on: its real uid is filter_uid (-u);
 *  - filter_comm_on: its comm is filter_comm exactly (--comm);
 *  - follow_mode: its tgid is in ps_followed (a command and its descendants);
 * and its tgid is not ignore_tgid (the collector itself). Filters that are off cost nothing: the verifier
 * sees the .rodata values and drops their code. */
const volatile __u32 filter_tgids_on = 0;
const volatile __u32 filter_tids_on = 0;
const volatile __u32 filter_uid_on = 0;
const volatile __u32 filter_uid = 0;
const volatile __u32 filter_comm_on = 0;
const volatile char filter_comm[PS_COMM_LEN] = {};
/* This process (the collector itself) is never traced: its own ring draining would fill the trace. */
const volatile __u32 ignore_tgid = 0;
/* With --follow: only processes in ps_followed are traced (a command and its descendants, kept up to date
 * by follow.bpf.c; the collector shares one map among every loaded object). */
const volatile __u32 follow_mode = 0;

/* The tgids and tids of -p and -t, filled by the collector after load and before attach. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} ps_filter_tgids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} ps_filter_tids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);     /* tgid */
	__type(value, __u8);
} ps_followed SEC(".maps");

/* Failed outputs of this object's programs, per CPU (see ps_output). Each object has its own; the collector
 * finds it by name in each built-in probe and sums them. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ps_output_counts);
} ps_output_failures SEC(".maps");

/* Counts one failed output in ps_output_failures. A global (not inlined) function: the verifier checks it
 * once, on its own, so a caller that outputs in a loop (loadgen) keeps as few states as it had without it.
 * Atomic adds: a program nested on the same CPU (an NMI, a tracepoint inside a helper) may count too. */
__attribute__((noinline)) int ps_count_output_failure(long err)
{
	__u32 zero = 0;
	struct ps_output_counts *c = bpf_map_lookup_elem(&ps_output_failures, &zero);

	if (!c)
		return 0;
	if (err == -28 /* ENOSPC */) {
		__sync_fetch_and_add(&c->ring_full, 1);
	} else {
		__sync_fetch_and_add(&c->unwritable, 1);
		c->last_errno = -err;
	}
	return 0;
}

/* bpf_perf_event_output into `events` on this CPU, counting a failure in ps_output_failures. A full ring
 * (-ENOSPC) is reported by the kernel as lost too; any other error (no live event on this CPU: it was
 * offline or came back before the collector replaced its event) is seen only here, so it is counted here. */
static __always_inline long ps_output(void *ctx, void *data, __u64 size)
{
	long err = bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, data, size);

	if (err)
		ps_count_output_failure(err);
	return err;
}

/* ps_output for a record with a `__u64 ts` (events.h): stamps it with bpf_ktime_get_ns() (CLOCK_MONOTONIC)
 * as the very last step, so that the time is taken as close to the ring's commit as the kernel's own
 * PERF_SAMPLE_TIME would be; the collector then orders records by it (and drops PERF_SAMPLE_TIME). */
#define ps_output_stamped(ctx, e, size) ({ (e)->ts = bpf_ktime_get_ns(); ps_output(ctx, e, size); })

/* Names the C struct that describes this object's records, so the collector can read its layout from BTF
 * and record it in the trace header (field names, types, offsets). Any BPF object can do the same. */
#define PS_EVENT_LAYOUT(type) const volatile type *ps_event_layout __attribute__((used)) = 0

/* True when `comm` (PS_COMM_LEN bytes, NUL-terminated or full) is filter_comm. */
static __always_inline bool ps_comm_is_filter(const char *comm)
{
	for (int i = 0; i < PS_COMM_LEN; i++) {
		if (comm[i] != filter_comm[i])
			return 0;
		if (comm[i] == 0)
			return 1;
	}
	return 1;
}

/* The process-level filters alone (follow, ignore): for a tgid seen outside the task it belongs to. */
static __always_inline bool ps_skip_tgid(__u32 tgid)
{
	if (ignore_tgid != 0 && tgid == ignore_tgid)
		return 1;
	return follow_mode != 0 && !bpf_map_lookup_elem(&ps_followed, &tgid);
}

/* Whether any filter that needs the task's own identity (tid, uid, comm) is on. */
static __always_inline bool ps_task_filters_on(void)
{
	return filter_tgids_on || filter_tids_on || filter_uid_on || filter_comm_on || follow_mode;
}

/* Every filter, for the task with these ids. `task` is read for uid and comm only when those filters are
 * on; NULL means the current task (then the helpers read them). */
static __always_inline bool ps_skip_ids(__u32 tgid, __u32 tid, struct task_struct *task)
{
	if (ps_skip_tgid(tgid))
		return 1;
	if (filter_tgids_on || filter_tids_on) {
		bool named = (filter_tgids_on && bpf_map_lookup_elem(&ps_filter_tgids, &tgid)) ||
			     (filter_tids_on && bpf_map_lookup_elem(&ps_filter_tids, &tid));
		if (!named)
			return 1;
	}
	if (filter_uid_on) {
		__u32 uid = task ? BPF_CORE_READ(task, cred, uid.val) : (__u32)bpf_get_current_uid_gid();
		if (uid != filter_uid)
			return 1;
	}
	if (filter_comm_on) {
		char comm[PS_COMM_LEN] = {};
		if (task)
			BPF_CORE_READ_STR_INTO(&comm, task, comm);
		else
			bpf_get_current_comm(comm, sizeof(comm));
		if (!ps_comm_is_filter(comm))
			return 1;
	}
	return 0;
}

/* Every filter, for the current task. */
static __always_inline bool ps_skip_current(void)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	return ps_skip_ids(pid_tgid >> 32, (__u32)pid_tgid, 0);
}

/* Every filter, for `task` (not necessarily the current one). */
static __always_inline bool ps_skip_task(struct task_struct *task)
{
	return ps_skip_ids(BPF_CORE_READ(task, tgid), BPF_CORE_READ(task, pid), task);
}

/* Counts, in ps_output_failures, one syscall whose enter state could not be kept (its map was full). */
static __always_inline void ps_count_state_full(void)
{
	__u32 zero = 0;
	struct ps_output_counts *c = bpf_map_lookup_elem(&ps_output_failures, &zero);

	if (c)
		__sync_fetch_and_add(&c->state_full, 1);
}

#endif
