// SPDX-License-Identifier: GPL-2.0
/* tcp: one record per TCP connect, accept and close, from sock:inet_sock_set_state (as tcplife does).
 *
 * Transitions written (every other one is only tracked):
 *   CLOSE -> SYN_SENT        connect(2), in the caller's context: who it is is kept per socket (tcp_owner)
 *   SYN_SENT -> ESTABLISHED  PS_TCP_CONNECT, with the process kept at SYN_SENT
 *   SYN_SENT -> CLOSE        PS_TCP_CONNECT_FAILED
 *   SYN_RECV -> ESTABLISHED  PS_TCP_ACCEPT: the handshake completes in softirq, before accept(2), so no
 *                            process is known (pid 0, uid the socket's sk_uid)
 *   ESTABLISHED -> FIN_WAIT1, CLOSE_WAIT -> LAST_ACK
 *                            close(2)/shutdown(2) in the owner's context: an accepted socket learns its process
 *   * -> CLOSE (from an established state)
 *                            PS_TCP_CLOSE, with bytes and the duration since connect/accept
 * Filters: a socket is kept when the process that connects passes them; an accepted one, whose process is
 * not known, only when no task filter (-p, -t, --comm, --follow) is on, and its close when the closing
 * process passes them. */
#include "common.bpf.h"

PS_EVENT_LAYOUT(struct ps_tcp_event);

#define PS_AF_INET 2
#define PS_AF_INET6 10
#define PS_IPPROTO_TCP 6
/* TCP states (include/net/tcp_states.h); PS_TCP_* are the record's `what` (events.h). */
#define PS_TCPS_ESTABLISHED 1
#define PS_TCPS_SYN_SENT 2
#define PS_TCPS_SYN_RECV 3
#define PS_TCPS_FIN_WAIT1 4
#define PS_TCPS_CLOSE 7
#define PS_TCPS_CLOSE_WAIT 8
#define PS_TCPS_LAST_ACK 9
#define PS_TCPS_LISTEN 10

/* Who owns a socket, and since when it is established. */
struct ps_tcp_owner {
	__u64 start_ns;         /* connect or accept; 0 while connecting */
	__u32 pid;              /* 0: not known */
	__u32 tid;
	__u32 uid;
	__u32 reserved;
	char comm[PS_COMM_LEN];
};

/* LRU: a socket whose close is never seen (it was open before the probe detached and reattached) must
 * not fill the map; the oldest entry goes. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);     /* struct sock * */
	__type(value, struct ps_tcp_owner);
} tcp_owner SEC(".maps");

static __always_inline void ps_owner_current(struct ps_tcp_owner *o)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	o->pid = pid_tgid >> 32;
	o->tid = (__u32)pid_tgid;
	o->uid = (__u32)bpf_get_current_uid_gid();
	bpf_get_current_comm(o->comm, sizeof(o->comm));
}

SEC("tp/sock/inet_sock_set_state")
int ps_tcp(struct ps_inet_sock_set_state_ctx *ctx)
{
	if (ctx->protocol != PS_IPPROTO_TCP)
		return 0;
	int oldstate = ctx->oldstate, newstate = ctx->newstate;
	__u64 sk = (__u64)ctx->skaddr;
	__u32 what = 0;
	struct ps_tcp_owner *o = bpf_map_lookup_elem(&tcp_owner, &sk);

	if (newstate == PS_TCPS_SYN_SENT) {
		/* connect(2): the caller's context. */
		if (ps_skip_current())
			return 0;
		struct ps_tcp_owner n = {};
		ps_owner_current(&n);
		bpf_map_update_elem(&tcp_owner, &sk, &n, BPF_ANY);
		return 0;
	}
	if (oldstate == PS_TCPS_SYN_SENT && newstate == PS_TCPS_ESTABLISHED) {
		if (!o)
			return 0;       /* connect not seen, or filtered out */
		o->start_ns = bpf_ktime_get_ns();
		what = PS_TCP_CONNECT;
	} else if (oldstate == PS_TCPS_SYN_SENT && newstate == PS_TCPS_CLOSE) {
		if (!o)
			return 0;
		what = PS_TCP_CONNECT_FAILED;
	} else if (oldstate == PS_TCPS_SYN_RECV && newstate == PS_TCPS_ESTABLISHED) {
		if (ps_task_filters_on())
			return 0;       /* no process to test them against */
		struct ps_tcp_owner n = {.start_ns = bpf_ktime_get_ns()};
		struct sock *sock = (struct sock *)ctx->skaddr;
		n.uid = BPF_CORE_READ(sock, sk_uid.val);
		if (filter_uid_on && n.uid != filter_uid)
			return 0;
		bpf_map_update_elem(&tcp_owner, &sk, &n, BPF_ANY);
		o = bpf_map_lookup_elem(&tcp_owner, &sk);
		if (!o)
			return 0;
		what = PS_TCP_ACCEPT;
	} else if ((oldstate == PS_TCPS_ESTABLISHED && newstate == PS_TCPS_FIN_WAIT1) ||
		   (oldstate == PS_TCPS_CLOSE_WAIT && newstate == PS_TCPS_LAST_ACK)) {
		/* close(2) or shutdown(2) by the owner: an accepted socket learns who that is. */
		if (o && o->pid == 0) {
			if (ps_skip_current()) {
				bpf_map_delete_elem(&tcp_owner, &sk);
				return 0;
			}
			ps_owner_current(o);
		} else if (!o && !ps_skip_current()) {
			/* Established before the probe attached (or an accept filtered out): known from now on. */
			struct ps_tcp_owner n = {};
			ps_owner_current(&n);
			bpf_map_update_elem(&tcp_owner, &sk, &n, BPF_ANY);
		}
		return 0;
	} else if (newstate == PS_TCPS_CLOSE && oldstate != PS_TCPS_LISTEN && oldstate != PS_TCPS_SYN_RECV) {
		if (!o)
			return 0;
		what = PS_TCP_CLOSE;
	} else {
		return 0;
	}

	struct ps_tcp_event e = {};
	e.kind = PS_EVENT_TCP;
	e.pid = o->pid;
	e.tid = o->tid;
	e.uid = o->uid;
	__builtin_memcpy(e.comm, o->comm, sizeof(e.comm));
	e.what = what;
	e.family = ctx->family;
	e.sport = ctx->sport;
	e.dport = ctx->dport;
	e.oldstate = oldstate;
	e.newstate = newstate;
	if (ctx->family == PS_AF_INET) {
		__builtin_memcpy(e.saddr, ctx->saddr, 4);
		__builtin_memcpy(e.daddr, ctx->daddr, 4);
	} else {
		__builtin_memcpy(e.saddr, ctx->saddr_v6, 16);
		__builtin_memcpy(e.daddr, ctx->daddr_v6, 16);
	}
	if (what == PS_TCP_CLOSE) {
		struct tcp_sock *tp = (struct tcp_sock *)ctx->skaddr;
		e.bytes_sent = BPF_CORE_READ(tp, bytes_acked);
		e.bytes_received = BPF_CORE_READ(tp, bytes_received);
		__u64 now = bpf_ktime_get_ns();
		e.duration_ns = o->start_ns && now > o->start_ns ? now - o->start_ns : 0;
	}
	ps_output_stamped(ctx, &e, sizeof(e));
	if (what == PS_TCP_CLOSE || what == PS_TCP_CONNECT_FAILED)
		bpf_map_delete_elem(&tcp_owner, &sk);
	return 0;
}
