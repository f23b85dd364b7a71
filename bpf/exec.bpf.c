// SPDX-License-Identifier: GPL-2.0
/* exec: one record per execve(2)/execveat(2), successful or failed, with the file name, argv and result.
 *
 * Success is recorded at sched_process_exec, when the new image is in place: the file name as the kernel
 * resolved it (bprm->filename, kernel memory), argv from the new process's argument area (mm->arg_start ..
 * arg_end, which the kernel itself has just written, so its pages are present), comm and credentials of the
 * new program, ret 0.
 *
 * Failure is recorded at sys_exit_execve/execveat with ret < 0: sys_enter keeps the file name and argv
 * pointers per thread (key pid_tgid), and they are read at the exit, from the caller's memory that is still
 * there (nothing was replaced) and that the kernel has read itself as far as it got. What still cannot be
 * read is marked (filename_err, args_err), never written as an empty string silently.
 *
 * A success is recorded even when its sys_enter was not seen (the probe attached during the call, or an
 * exec by the kernel); a failure needs it (its pointers). */
#include "common.bpf.h"

PS_EVENT_LAYOUT(struct ps_exec_event);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64);     /* pid_tgid of the calling thread */
	__type(value, struct ps_syscall_args);  /* args[0] filename, args[1] argv */
} exec_inflight SEC(".maps");

/* The record, and room after it so that every string read can be given a bound the verifier accepts
 * (an offset below PS_PATH_MAX + PS_ARGS_MAX plus a size up to PS_ARGS_MAX). */
struct ps_exec_scratch {
	struct ps_exec_event e;
	char slack[PS_ARGS_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ps_exec_scratch);
} exec_scratch SEC(".maps");

#define PS_EXEC_STRINGS (PS_PATH_MAX + PS_ARGS_MAX)

/* min(v, max), in a 64-bit register the verifier sees checked (clang may otherwise check a 32-bit copy
 * and pass the unchecked original to a helper). */
static __always_inline __u64 ps_bound(__u64 v, __u64 max)
{
	barrier_var(v);
	if (v > max)
		v = max;
	barrier_var(v);
	return v;
}

static __always_inline int ps_exec_enter(__u64 filename, __u64 argv)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	if (ps_skip_current())
		return 0;
	struct ps_syscall_args a = {.args = {filename, argv}};
	if (bpf_map_update_elem(&exec_inflight, &pid_tgid, &a, BPF_ANY) != 0)
		ps_count_state_full();
	return 0;
}

SEC("tp/syscalls/sys_enter_execve")
int ps_execve_enter(struct ps_syscall_enter_ctx *ctx)
{
	return ps_exec_enter(ctx->args[0], ctx->args[1]);
}

SEC("tp/syscalls/sys_enter_execveat")
int ps_execveat_enter(struct ps_syscall_enter_ctx *ctx)
{
	return ps_exec_enter(ctx->args[1], ctx->args[2]);
}

/* Reads the file name into e->filename; returns the bytes used (NUL included), 0 when unreadable. */
static __always_inline __u32 ps_read_filename(struct ps_exec_event *e, const char *src, bool user)
{
	long n = user ? bpf_probe_read_user_str(e->filename, PS_PATH_MAX, src)
		      : bpf_probe_read_kernel_str(e->filename, PS_PATH_MAX, src);
	if (n <= 0) {
		e->filename_err = n < 0 ? (__s32)n : -22;
		e->filename[0] = 0;
		return 1;       /* the empty string, marked by filename_err */
	}
	e->filename_err = 0;
	if (n > PS_PATH_MAX)
		n = PS_PATH_MAX;
	return n;
}

struct ps_count_ctx {
	const char *strings;    /* inside exec_scratch: PS_ARGS_MAX bytes readable */
	__u32 count;
};

/* bpf_loop callback: counts the NULs of the argument area (one per argv string). */
static long ps_count_nul(__u64 i, void *data)
{
	struct ps_count_ctx *c = data;

	if (c->strings[i & (PS_ARGS_MAX - 1)] == 0)
		c->count++;
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(ps_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 zero = 0;
	__u32 tgid = BPF_CORE_READ(p, tgid);
	__u64 old_key = ((__u64)tgid << 32) | (__u32)old_pid;
	/* Seen at its enter (and passed the filters then, as the caller), or passes them now, as the new
	 * program (--comm NAME matches the exec that becomes NAME, as well as the execs NAME makes). */
	bool entered = bpf_map_lookup_elem(&exec_inflight, &old_key) != 0;

	if (entered)
		bpf_map_delete_elem(&exec_inflight, &old_key);
	if (!entered && ps_skip_task(p))
		return 0;
	struct ps_exec_scratch *s = bpf_map_lookup_elem(&exec_scratch, &zero);
	if (!s)
		return 0;
	struct ps_exec_event *e = &s->e;
	e->kind = PS_EVENT_EXEC;
	e->pid = tgid;
	e->tid = BPF_CORE_READ(p, pid);
	e->ppid = BPF_CORE_READ(p, real_parent, tgid);
	e->uid = BPF_CORE_READ(p, cred, uid.val);
	e->ret = 0;
	e->reserved = 0;
	e->args_err = 0;
	e->args_truncated = 0;
	e->args_count = 0;
	BPF_CORE_READ_STR_INTO(&e->comm, p, comm);

	__u32 f = ps_read_filename(e, BPF_CORE_READ(bprm, filename), 0);
	unsigned long start = BPF_CORE_READ(p, mm, arg_start);
	unsigned long end = BPF_CORE_READ(p, mm, arg_end);
	__u32 len = 0;
	if (end > start) {
		unsigned long want = end - start;
		len = want > PS_ARGS_MAX ? PS_ARGS_MAX : want;
		if (want > PS_ARGS_MAX)
			e->args_truncated = 1;
	}
	if (f > PS_PATH_MAX)    /* for the verifier: f is at most PS_PATH_MAX already */
		f = PS_PATH_MAX;
	if (len > 0 && len <= PS_ARGS_MAX) {
		long err = bpf_probe_read_user(e->filename + f, len, (const void *)start);
		if (err) {
			e->args_err = (__s32)err;
			len = 0;
		} else {
			/* Cut short: the last string kept ends at the cut. */
			if (e->filename[(f + len - 1) & (PS_EXEC_STRINGS - 1)] != 0)
				e->filename[(f + len - 1) & (PS_EXEC_STRINGS - 1)] = 0;
			struct ps_count_ctx c = {.strings = e->filename + f};
			bpf_loop(len, ps_count_nul, &c, 0);
			e->args_count = c.count;
		}
	}
	__u64 total = ps_bound((__u64)f + len, PS_EXEC_STRINGS);
	e->filename_len = total;
	ps_output_stamped(ctx, e, PS_EXEC_HEADER_SIZE + total);
	return 0;
}

/* A failed exec: the caller is still the caller. Reads the file name and argv from its memory. */
static __always_inline int ps_exec_exit(void *ctx, long ret)
{
	__u32 zero = 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct ps_syscall_args *a = bpf_map_lookup_elem(&exec_inflight, &pid_tgid);

	if (!a)
		return 0;
	if (ret >= 0)   /* recorded at sched_process_exec */
		goto out;
	struct ps_exec_scratch *s = bpf_map_lookup_elem(&exec_scratch, &zero);
	if (!s)
		goto out;
	struct ps_exec_event *e = &s->e;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	e->kind = PS_EVENT_EXEC;
	e->pid = pid_tgid >> 32;
	e->tid = (__u32)pid_tgid;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->ret = (__s32)ret;
	e->reserved = 0;
	e->args_err = 0;
	e->args_truncated = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));

	__u32 f = ps_read_filename(e, (const char *)a->args[0], 1);
	if (f > PS_PATH_MAX)
		f = PS_PATH_MAX;
	const __u64 *argv = (const __u64 *)a->args[1];
	__u32 used = 0, count = 0;
	for (__u32 i = 0; i < PS_ARGC_MAX; i++) {
		const char *arg = 0;
		long err = bpf_probe_read_user(&arg, sizeof(arg), &argv[i]);
		if (err) {
			e->args_err = (__s32)err;
			break;
		}
		if (!arg)
			break;
		if (used >= PS_ARGS_MAX) {
			e->args_truncated = 1;
			break;
		}
		/* 64-bit and masked, so that the register checked is the one passed to the helper. */
		__u64 room = (PS_ARGS_MAX - (__u64)used) & (PS_EXEC_STRINGS - 1);
		__u64 pos = ((__u64)f + used) & (PS_EXEC_STRINGS * 2 - 1);
		barrier_var(room);
		barrier_var(pos);
		if (pos >= PS_EXEC_STRINGS || room > PS_ARGS_MAX || room == 0)
			break;
		long n = bpf_probe_read_user_str(e->filename + pos, room, arg);
		if (n < 0) {
			e->args_err = (__s32)n;
			break;
		}
		if (n == 0)
			break;
		if ((__u64)n == room)
			e->args_truncated = 1;  /* it filled what was left: it may have been longer */
		used += n;
		count++;
		if (i == PS_ARGC_MAX - 1) {
			const char *more = 0;
			if (bpf_probe_read_user(&more, sizeof(more), &argv[PS_ARGC_MAX]) == 0 && more)
				e->args_truncated = 1;
		}
	}
	e->args_count = count;
	if (used > PS_ARGS_MAX)
		used = PS_ARGS_MAX;
	__u64 total = ps_bound((__u64)f + used, PS_EXEC_STRINGS);
	e->filename_len = total;
	ps_output_stamped(ctx, e, PS_EXEC_HEADER_SIZE + total);
out:
	bpf_map_delete_elem(&exec_inflight, &pid_tgid);
	return 0;
}

SEC("tp/syscalls/sys_exit_execve")
int ps_execve_exit(struct ps_syscall_exit_ctx *ctx)
{
	return ps_exec_exit(ctx, ctx->ret);
}

SEC("tp/syscalls/sys_exit_execveat")
int ps_execveat_exit(struct ps_syscall_exit_ctx *ctx)
{
	return ps_exec_exit(ctx, ctx->ret);
}
