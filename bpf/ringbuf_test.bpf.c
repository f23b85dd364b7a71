// SPDX-License-Identifier: GPL-2.0
/* ringbuf_test: a BPF_PROG_TYPE_SYSCALL program that writes records into a BPF ring buffer on demand
 * (bpf_prog_test_run), for the tests of the ring buffer reader (tests/kernel/bpf_ringbuf_kernel_test.cpp).
 * User space creates the ring buffer map itself and hands it over with bpf_map__reuse_fd before load.
 *
 * Each run emits `count` records (at most RB_TEST_MAX_COUNT), record i carrying the u64 sequence number first_seq + i in its first 8
 * bytes, then bytes 8.. of `pattern` (which user space fills through the skeleton's .bss):
 *   RB_TEST_OUTPUT   bpf_ringbuf_output of `size` bytes (8..RB_TEST_MAX - 1);
 *   RB_TEST_SUBMIT   bpf_ringbuf_reserve of RB_TEST_FIXED bytes, then submit;
 *   RB_TEST_DISCARD  the same, then discard;
 *   RB_TEST_MIXED    the same, submitting even sequence numbers and discarding odd ones.
 * `emitted` and `failed` count what the ring took and refused, as a tool would. */
#include "vmlinux_min.h"
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define RB_TEST_MAX 4096
#define RB_TEST_FIXED 40
#define RB_TEST_MAX_COUNT 128

enum { RB_TEST_OUTPUT = 0, RB_TEST_SUBMIT = 1, RB_TEST_DISCARD = 2, RB_TEST_MIXED = 3 };

struct rb_test_args {
	__u32 mode;
	__u32 size;
	__u32 count;
	__u32 pad;
	__u64 first_seq;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} rb SEC(".maps");

__u8 pattern[RB_TEST_MAX] = {};
__u64 emitted = 0;
__u64 failed = 0;

SEC("syscall")
int rb_test(struct rb_test_args *args)
{
	__u32 count = args->count;
	__u32 size = args->size;
	__u32 mode = args->mode;
	__u64 seq = args->first_seq;

	if (size < 8)
		size = 8;
	if (size > RB_TEST_MAX - 1)
		size = RB_TEST_MAX - 1;
	for (__u32 i = 0; i < RB_TEST_MAX_COUNT; i++) {
		if (i >= count)
			break;
		__u64 s = seq + i;
		if (mode == RB_TEST_OUTPUT) {
			__builtin_memcpy(pattern, &s, sizeof(s));
			/* The mask, in asm so that clang cannot fold it away, keeps the bound in the very register
			 * the verifier checks (clang's clamped copy loses it). */
			__u64 n = size;
			asm volatile("%0 &= 0xfff" : "+r"(n));
			if (bpf_ringbuf_output(&rb, pattern, n, 0) == 0)
				emitted++;
			else
				failed++;
			continue;
		}
		__u8 *e = bpf_ringbuf_reserve(&rb, RB_TEST_FIXED, 0);
		if (!e) {
			failed++;
			continue;
		}
		__builtin_memcpy(e, &s, sizeof(s));
		__builtin_memcpy(e + 8, pattern + 8, RB_TEST_FIXED - 8);
		if (mode == RB_TEST_SUBMIT || (mode == RB_TEST_MIXED && (s & 1) == 0)) {
			bpf_ringbuf_submit(e, 0);
			emitted++;
		} else {
			bpf_ringbuf_discard(e, 0);
		}
	}
	return 0;
}
