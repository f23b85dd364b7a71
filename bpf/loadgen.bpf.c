// SPDX-License-Identifier: GPL-2.0
/* loadgen: a producer for benchmarks and loss tests (the program is in loadgen.bpf.h), writing into the
 * per-CPU perf event array. A full ring makes bpf_perf_event_output return -ENOSPC, and the kernel reports
 * those records to the reader as lost with the next record that fits. ps_output (common.bpf.h) also counts
 * every failure in ps_output_failures, as the other built-in probes do; loadgen_stats stays its own truth. */
#define PS_LOADGEN_OUTPUT(ctx, e, size) ps_output(ctx, e, size)
#define PS_LOADGEN_FULL 28 /* ENOSPC */
#include "loadgen.bpf.h"
