// SPDX-License-Identifier: GPL-2.0
/* loadgen_ringbuf: loadgen.bpf.c's producer writing into a BPF ring buffer instead of the per-CPU perf event
 * array, for the libbpf ring_buffer baseline (bench/libbpf_baseline.cpp). Everything but the output call is
 * loadgen.bpf.c's, line for line: the same config, counters, scratch record and seq, so both transports are
 * fed exactly the same work. Keep the two in step.
 *
 * Differences that matter to a reader of the counters:
 *  - one ring shared by every CPU (user space sizes it with bpf_map__set_max_entries before load; it must be
 *    a power-of-two number of pages);
 *  - bpf_ringbuf_output() returns -EAGAIN, not -ENOSPC, when the record does not fit (the kernel's
 *    __bpf_ringbuf_reserve found no room): those are counted in failed_nospace, as loadgen counts its
 *    -ENOSPC, because they are the records the ring dropped. The kernel reports nothing to the reader about
 *    them: these counters are the only record of ringbuf drops;
 *  - flags 0: the adaptive wakeup libbpf users get by default (the reader is woken only when it had caught
 *    up with the producer).
 * The perf event array `events` from common.bpf.h is declared here too and never used. */
#include "common.bpf.h"

PS_EVENT_LAYOUT(struct ps_loadgen_event);

#define EAGAIN 11

/* 1 MiB: perfstream's default budget on two CPUs (2 x 512 KiB). User space resizes it before load. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} ringbuf SEC(".maps");

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
		long err = bpf_ringbuf_output(&ringbuf, e, size, 0);
		if (err == 0) {
			st->emitted++;
		} else {
			st->failed++;
			if (err == -EAGAIN)
				st->failed_nospace++;
		}
	}
	return 0;
}
