// SPDX-License-Identifier: GPL-2.0
/* Deliberately invalid, for tests only: it reads a hash map value without checking the lookup for NULL, which
 * the verifier refuses. The collector must report that refusal with the verifier's log. */
#include "common.bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counter SEC(".maps");

SEC("raw_tp/sys_enter")
int ps_rejected(void *ctx)
{
	__u32 zero = 0;
	__u64 *value = bpf_map_lookup_elem(&counter, &zero);
	*value += 1; /* no NULL check: rejected */
	return 0;
}
