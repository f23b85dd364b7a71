// The layout of the records the BPF programs write (bpf/events.h), pinned field by field: the BPF side is
// compiled by clang for -target bpf and the collector by the host compiler, and both must agree with these
// numbers. A change here is a change of the wire format.
#include <gtest/gtest.h>
#include <linux/types.h>  // events.h includes nothing: the includer provides __u32 and friends

#include <cstddef>

#include "bpf/events.h"

namespace perfstream {
namespace {

// The field's offset and size.
#define EXPECT_FIELD(type, field, offset, size)            \
  do {                                                     \
    EXPECT_EQ(offsetof(type, field), std::size_t{offset}); \
    EXPECT_EQ(sizeof(type::field), std::size_t{size});     \
  } while (0)

TEST(EventsLayout, Constants) {
  EXPECT_EQ(PS_COMM_LEN, 16);
  EXPECT_EQ(PS_PATH_MAX, 4096);
  EXPECT_EQ(PS_ARGS_MAX, 4096);
  EXPECT_EQ(PS_ARGC_MAX, 64);
  EXPECT_EQ(PS_LOADGEN_MAX, 16384);
  EXPECT_EQ(PS_EVENT_EXEC, 1);
  EXPECT_EQ(PS_EVENT_OPENAT, 2);
  EXPECT_EQ(PS_EVENT_SCHED_SWITCH, 3);
  EXPECT_EQ(PS_EVENT_LOADGEN, 4);
  EXPECT_EQ(PS_EVENT_EXIT, 5);
  EXPECT_EQ(PS_EVENT_FORK, 6);
  EXPECT_EQ(PS_EVENT_TCP, 7);
  EXPECT_EQ(PS_OPEN_OPENAT, 0);
  EXPECT_EQ(PS_OPEN_OPEN, 1);
  EXPECT_EQ(PS_OPEN_OPENAT2, 2);
  EXPECT_EQ(PS_TCP_CONNECT, 1);
  EXPECT_EQ(PS_TCP_ACCEPT, 2);
  EXPECT_EQ(PS_TCP_CLOSE, 3);
  EXPECT_EQ(PS_TCP_CONNECT_FAILED, 4);
}

TEST(EventsLayout, ExecEvent) {
  EXPECT_EQ(sizeof(ps_exec_event), 72u + 8192u);
  EXPECT_EQ(alignof(ps_exec_event), 8u);
  EXPECT_FIELD(ps_exec_event, kind, 0, 4);
  EXPECT_FIELD(ps_exec_event, pid, 4, 4);
  EXPECT_FIELD(ps_exec_event, tid, 8, 4);
  EXPECT_FIELD(ps_exec_event, ppid, 12, 4);
  EXPECT_FIELD(ps_exec_event, uid, 16, 4);
  EXPECT_FIELD(ps_exec_event, ret, 20, 4);
  EXPECT_FIELD(ps_exec_event, comm, 24, 16);
  EXPECT_FIELD(ps_exec_event, args_count, 40, 4);
  EXPECT_FIELD(ps_exec_event, args_truncated, 44, 4);
  EXPECT_FIELD(ps_exec_event, filename_err, 48, 4);
  EXPECT_FIELD(ps_exec_event, args_err, 52, 4);
  EXPECT_FIELD(ps_exec_event, filename_len, 56, 4);
  EXPECT_FIELD(ps_exec_event, reserved, 60, 4);
  EXPECT_FIELD(ps_exec_event, ts, 64, 8);
  EXPECT_FIELD(ps_exec_event, filename, 72, 8192);
  EXPECT_EQ(PS_EXEC_HEADER_SIZE, offsetof(ps_exec_event, filename));
}

TEST(EventsLayout, OpenatEvent) {
  EXPECT_EQ(sizeof(ps_openat_event), 72u + 4096u);
  EXPECT_EQ(alignof(ps_openat_event), 8u);
  EXPECT_FIELD(ps_openat_event, kind, 0, 4);
  EXPECT_FIELD(ps_openat_event, pid, 4, 4);
  EXPECT_FIELD(ps_openat_event, tid, 8, 4);
  EXPECT_FIELD(ps_openat_event, dfd, 12, 4);
  EXPECT_FIELD(ps_openat_event, flags, 16, 4);
  EXPECT_FIELD(ps_openat_event, mode, 20, 4);
  EXPECT_FIELD(ps_openat_event, comm, 24, 16);
  EXPECT_FIELD(ps_openat_event, ret, 40, 4);
  EXPECT_FIELD(ps_openat_event, path_err, 44, 4);
  EXPECT_FIELD(ps_openat_event, call, 48, 4);
  EXPECT_FIELD(ps_openat_event, resolve, 52, 4);
  EXPECT_FIELD(ps_openat_event, path_len, 56, 4);
  EXPECT_FIELD(ps_openat_event, reserved, 60, 4);
  EXPECT_FIELD(ps_openat_event, ts, 64, 8);
  EXPECT_FIELD(ps_openat_event, path, 72, 4096);
  EXPECT_EQ(PS_OPENAT_HEADER_SIZE, offsetof(ps_openat_event, path));
}

TEST(EventsLayout, ExitEvent) {
  EXPECT_EQ(sizeof(ps_exit_event), 64u);
  EXPECT_EQ(alignof(ps_exit_event), 8u);
  EXPECT_FIELD(ps_exit_event, kind, 0, 4);
  EXPECT_FIELD(ps_exit_event, pid, 4, 4);
  EXPECT_FIELD(ps_exit_event, tid, 8, 4);
  EXPECT_FIELD(ps_exit_event, ppid, 12, 4);
  EXPECT_FIELD(ps_exit_event, exit_code, 16, 4);
  EXPECT_FIELD(ps_exit_event, exit_status, 20, 4);
  EXPECT_FIELD(ps_exit_event, signal, 24, 4);
  EXPECT_FIELD(ps_exit_event, process_exit, 28, 4);
  EXPECT_FIELD(ps_exit_event, comm, 32, 16);
  EXPECT_FIELD(ps_exit_event, lifetime_ns, 48, 8);
  EXPECT_FIELD(ps_exit_event, ts, 56, 8);
}

TEST(EventsLayout, ForkEvent) {
  EXPECT_EQ(sizeof(ps_fork_event), 48u);
  EXPECT_EQ(alignof(ps_fork_event), 8u);
  EXPECT_FIELD(ps_fork_event, kind, 0, 4);
  EXPECT_FIELD(ps_fork_event, parent_pid, 4, 4);
  EXPECT_FIELD(ps_fork_event, parent_tid, 8, 4);
  EXPECT_FIELD(ps_fork_event, child_pid, 12, 4);
  EXPECT_FIELD(ps_fork_event, child_tid, 16, 4);
  EXPECT_FIELD(ps_fork_event, uid, 20, 4);
  EXPECT_FIELD(ps_fork_event, comm, 24, 16);
  EXPECT_FIELD(ps_fork_event, ts, 40, 8);
}

TEST(EventsLayout, TcpEvent) {
  EXPECT_EQ(sizeof(ps_tcp_event), 120u);
  EXPECT_EQ(alignof(ps_tcp_event), 8u);
  EXPECT_FIELD(ps_tcp_event, kind, 0, 4);
  EXPECT_FIELD(ps_tcp_event, pid, 4, 4);
  EXPECT_FIELD(ps_tcp_event, tid, 8, 4);
  EXPECT_FIELD(ps_tcp_event, uid, 12, 4);
  EXPECT_FIELD(ps_tcp_event, comm, 16, 16);
  EXPECT_FIELD(ps_tcp_event, what, 32, 4);
  EXPECT_FIELD(ps_tcp_event, family, 36, 4);
  EXPECT_FIELD(ps_tcp_event, sport, 40, 4);
  EXPECT_FIELD(ps_tcp_event, dport, 44, 4);
  EXPECT_FIELD(ps_tcp_event, oldstate, 48, 4);
  EXPECT_FIELD(ps_tcp_event, newstate, 52, 4);
  EXPECT_FIELD(ps_tcp_event, saddr, 56, 16);
  EXPECT_FIELD(ps_tcp_event, daddr, 72, 16);
  EXPECT_FIELD(ps_tcp_event, bytes_sent, 88, 8);
  EXPECT_FIELD(ps_tcp_event, bytes_received, 96, 8);
  EXPECT_FIELD(ps_tcp_event, duration_ns, 104, 8);
  EXPECT_FIELD(ps_tcp_event, ts, 112, 8);
}

// Kept per thread from sys_enter to sys_exit in openat's and exec's maps.
TEST(EventsLayout, SyscallArgs) {
  EXPECT_EQ(sizeof(ps_syscall_args), 40u);
  EXPECT_FIELD(ps_syscall_args, args, 0, 32);
  EXPECT_FIELD(ps_syscall_args, call, 32, 4);
  EXPECT_FIELD(ps_syscall_args, reserved, 36, 4);
}

TEST(EventsLayout, SchedSwitchEvent) {
  EXPECT_EQ(sizeof(ps_sched_switch_event), 72u);
  EXPECT_EQ(alignof(ps_sched_switch_event), 8u);
  EXPECT_FIELD(ps_sched_switch_event, kind, 0, 4);
  EXPECT_FIELD(ps_sched_switch_event, prev_pid, 4, 4);
  EXPECT_FIELD(ps_sched_switch_event, prev_prio, 8, 4);
  EXPECT_FIELD(ps_sched_switch_event, next_pid, 12, 4);
  EXPECT_FIELD(ps_sched_switch_event, next_prio, 16, 4);
  EXPECT_FIELD(ps_sched_switch_event, reserved, 20, 4);
  EXPECT_FIELD(ps_sched_switch_event, prev_state, 24, 8);
  EXPECT_FIELD(ps_sched_switch_event, prev_comm, 32, 16);
  EXPECT_FIELD(ps_sched_switch_event, next_comm, 48, 16);
  EXPECT_FIELD(ps_sched_switch_event, ts, 64, 8);
}

TEST(EventsLayout, LoadgenEvent) {
  EXPECT_EQ(sizeof(ps_loadgen_event), 16384u);
  EXPECT_EQ(sizeof(ps_loadgen_event), std::size_t{PS_LOADGEN_MAX});
  EXPECT_EQ(alignof(ps_loadgen_event), 8u);
  EXPECT_FIELD(ps_loadgen_event, kind, 0, 4);
  EXPECT_FIELD(ps_loadgen_event, payload_len, 4, 4);
  EXPECT_FIELD(ps_loadgen_event, seq, 8, 8);
  EXPECT_FIELD(ps_loadgen_event, cpu, 16, 4);
  EXPECT_FIELD(ps_loadgen_event, pid, 20, 4);
  EXPECT_FIELD(ps_loadgen_event, ts, 24, 8);
  EXPECT_FIELD(ps_loadgen_event, payload, 32, 16352);
  EXPECT_EQ(PS_LOADGEN_HEADER_SIZE, offsetof(ps_loadgen_event, payload));
}

TEST(EventsLayout, LoadgenConfig) {
  EXPECT_EQ(sizeof(ps_loadgen_config), 16u);
  EXPECT_FIELD(ps_loadgen_config, tgid, 0, 4);
  EXPECT_FIELD(ps_loadgen_config, syscall_nr, 4, 4);
  EXPECT_FIELD(ps_loadgen_config, record_size, 8, 4);
  EXPECT_FIELD(ps_loadgen_config, records_per_call, 12, 4);
}

TEST(EventsLayout, LoadgenStats) {
  EXPECT_EQ(sizeof(ps_loadgen_stats), 24u);
  EXPECT_FIELD(ps_loadgen_stats, emitted, 0, 8);
  EXPECT_FIELD(ps_loadgen_stats, failed, 8, 8);
  EXPECT_FIELD(ps_loadgen_stats, failed_nospace, 16, 8);
}

// Read by the collector from every built-in probe's ps_output_failures per-CPU array.
TEST(EventsLayout, OutputCounts) {
  EXPECT_EQ(sizeof(ps_output_counts), 32u);
  EXPECT_FIELD(ps_output_counts, ring_full, 0, 8);
  EXPECT_FIELD(ps_output_counts, unwritable, 8, 8);
  EXPECT_FIELD(ps_output_counts, last_errno, 16, 4);
  EXPECT_FIELD(ps_output_counts, reserved, 20, 4);
  EXPECT_FIELD(ps_output_counts, state_full, 24, 8);
}

}  // namespace
}  // namespace perfstream
