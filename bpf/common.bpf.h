/* What every built-in perfstream BPF program shares: the perf event array all of them write to (the collector
 * gives every loaded probe the same map fd, so one set of per-CPU rings carries all of them), and the process
 * filter set from user space before load. */
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

/* Only this process (tgid) is traced; 0 traces every process. Set in .rodata before load. */
const volatile __u32 filter_tgid = 0;
/* This process (the collector itself) is never traced: its own ring draining would fill the trace. */
const volatile __u32 ignore_tgid = 0;
/* With --follow: only processes in ps_followed are traced (a command and its descendants, kept up to date
 * by follow.bpf.c; the collector shares one map among every loaded object). */
const volatile __u32 follow_mode = 0;

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

/* Names the C struct that describes this object's records, so the collector can read its layout from BTF
 * and record it in the trace header (field names, types, offsets). Any BPF object can do the same. */
#define PS_EVENT_LAYOUT(type) const volatile type *ps_event_layout __attribute__((used)) = 0

static __always_inline bool ps_skip_tgid(__u32 tgid)
{
	if ((filter_tgid != 0 && tgid != filter_tgid) || (ignore_tgid != 0 && tgid == ignore_tgid))
		return 1;
	return follow_mode != 0 && !bpf_map_lookup_elem(&ps_followed, &tgid);
}

#endif
