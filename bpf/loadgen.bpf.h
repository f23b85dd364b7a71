/* The loadgen producer, shared by loadgen.bpf.c (perf event array) and loadgen_ringbuf.bpf.c (BPF ring
 * buffer), so both channels are fed exactly the same work: the same config, counters, scratch record and
 * sequence numbers. The includer defines, before including this:
 *   PS_LOADGEN_OUTPUT(ctx, e, size)  the output call, returning 0 or a negative errno;
 *   PS_LOADGEN_FULL                  the errno that call returns when its ring is full (counted in
 *                                    failed_nospace: the records the ring dropped).
 * When the configured process makes the configured syscall, the program emits `records_per_call` records of
 * `record_size` bytes and counts per CPU what was emitted and what failed, so user space can check
 * delivered + lost against the truth. */
#ifndef PERFSTREAM_LOADGEN_BPF_H
#define PERFSTREAM_LOADGEN_BPF_H

#include "common.bpf.h"

PS_EVENT_LAYOUT(struct ps_loadgen_event);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ps_loadgen_config);
} loadgen_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ps_loadgen_stats);
} loadgen_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ps_loadgen_event);
} loadgen_scratch SEC(".maps");

SEC("raw_tp/sys_enter")
int ps_loadgen(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 zero = 0;
	struct ps_loadgen_config *cfg = bpf_map_lookup_elem(&loadgen_config, &zero);
	if (!cfg || cfg->tgid == 0 || (bpf_get_current_pid_tgid() >> 32) != cfg->tgid)
		return 0;
	if (ctx->args[1] != cfg->syscall_nr)
		return 0;
	struct ps_loadgen_stats *st = bpf_map_lookup_elem(&loadgen_stats, &zero);
	struct ps_loadgen_event *e = bpf_map_lookup_elem(&loadgen_scratch, &zero);
	if (!st || !e)
		return 0;

	__u32 size = cfg->record_size;
	if (size < PS_LOADGEN_HEADER_SIZE)
		size = PS_LOADGEN_HEADER_SIZE;
	if (size > PS_LOADGEN_MAX)
		size = PS_LOADGEN_MAX;
	__u32 count = cfg->records_per_call;
	if (count < 1)
		count = 1;
	if (count > 1024)
		count = 1024;

	e->kind = PS_EVENT_LOADGEN;
	e->payload_len = size - PS_LOADGEN_HEADER_SIZE;
	e->cpu = bpf_get_smp_processor_id();
	e->pid = bpf_get_current_pid_tgid() >> 32;
	for (__u32 i = 0; i < 1024; i++) {
		if (i >= count)
			break;
		e->seq = st->emitted + st->failed;
		e->ts = bpf_ktime_get_ns();
		long err = PS_LOADGEN_OUTPUT(ctx, e, size);
		if (err == 0) {
			st->emitted++;
		} else {
			st->failed++;
			if (err == -PS_LOADGEN_FULL)
				st->failed_nospace++;
		}
	}
	return 0;
}

#endif
