// SPDX-License-Identifier: GPL-2.0
/* loadgen: a producer for benchmarks and loss tests (the program is in loadgen.bpf.h), writing into the
 * per-CPU perf event array. A full ring makes bpf_perf_event_output return -ENOSPC, and the kernel reports
 * those records to the reader as lost with the next record that fits. */
#define PS_LOADGEN_OUTPUT(ctx, e, size) bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, e, size)
#define PS_LOADGEN_FULL 28 /* ENOSPC */
#include "loadgen.bpf.h"
