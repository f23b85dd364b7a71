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
  EXPECT_EQ(PS_LOADGEN_MAX, 16384);
  EXPECT_EQ(PS_EVENT_EXEC, 1);
  EXPECT_EQ(PS_EVENT_OPENAT, 2);
  EXPECT_EQ(PS_EVENT_SCHED_SWITCH, 3);
  EXPECT_EQ(PS_EVENT_LOADGEN, 4);
}

TEST(EventsLayout, ExecEvent) {
  EXPECT_EQ(sizeof(ps_exec_event), 4136u);
  EXPECT_EQ(alignof(ps_exec_event), 4u);
  EXPECT_FIELD(ps_exec_event, kind, 0, 4);
  EXPECT_FIELD(ps_exec_event, pid, 4, 4);
  EXPECT_FIELD(ps_exec_event, ppid, 8, 4);
  EXPECT_FIELD(ps_exec_event, uid, 12, 4);
  EXPECT_FIELD(ps_exec_event, comm, 16, 16);
  EXPECT_FIELD(ps_exec_event, filename_len, 32, 4);
  EXPECT_FIELD(ps_exec_event, reserved, 36, 4);
  EXPECT_FIELD(ps_exec_event, filename, 40, 4096);
  EXPECT_EQ(PS_EXEC_HEADER_SIZE, offsetof(ps_exec_event, filename));
}

TEST(EventsLayout, OpenatEvent) {
  EXPECT_EQ(sizeof(ps_openat_event), 4144u);
  EXPECT_EQ(alignof(ps_openat_event), 4u);
  EXPECT_FIELD(ps_openat_event, kind, 0, 4);
  EXPECT_FIELD(ps_openat_event, pid, 4, 4);
  EXPECT_FIELD(ps_openat_event, tid, 8, 4);
  EXPECT_FIELD(ps_openat_event, dfd, 12, 4);
  EXPECT_FIELD(ps_openat_event, flags, 16, 4);
  EXPECT_FIELD(ps_openat_event, mode, 20, 4);
  EXPECT_FIELD(ps_openat_event, comm, 24, 16);
  EXPECT_FIELD(ps_openat_event, path_len, 40, 4);
  EXPECT_FIELD(ps_openat_event, reserved, 44, 4);
  EXPECT_FIELD(ps_openat_event, path, 48, 4096);
  EXPECT_EQ(PS_OPENAT_HEADER_SIZE, offsetof(ps_openat_event, path));
}

TEST(EventsLayout, SchedSwitchEvent) {
  EXPECT_EQ(sizeof(ps_sched_switch_event), 64u);
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
  EXPECT_FIELD(ps_loadgen_event, payload, 24, 16360);
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
  EXPECT_EQ(sizeof(ps_output_counts), 24u);
  EXPECT_FIELD(ps_output_counts, ring_full, 0, 8);
  EXPECT_FIELD(ps_output_counts, unwritable, 8, 8);
  EXPECT_FIELD(ps_output_counts, last_errno, 16, 4);
  EXPECT_FIELD(ps_output_counts, reserved, 20, 4);
}

}  // namespace
}  // namespace perfstream
