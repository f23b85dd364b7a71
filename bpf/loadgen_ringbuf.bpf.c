// SPDX-License-Identifier: GPL-2.0
/* loadgen_ringbuf: the loadgen producer (loadgen.bpf.h) writing into a BPF ring buffer instead of the
 * per-CPU perf event array, for the libbpf ring_buffer baseline (bench/libbpf_baseline.cpp).
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

/* 1 MiB: perfstream's default budget on two CPUs (2 x 512 KiB). User space resizes it before load. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} ringbuf SEC(".maps");

#define PS_LOADGEN_OUTPUT(ctx, e, size) bpf_ringbuf_output(&ringbuf, e, size, 0)
#define PS_LOADGEN_FULL 11 /* EAGAIN */
#include "loadgen.bpf.h"
