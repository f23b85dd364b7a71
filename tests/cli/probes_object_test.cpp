// perfstream probes --object FILE, in process, on a real object of the build (bpf/test_opensnoop.bpf.c;
// opened, never loaded: no privileges needed). The whole output is pinned: programs with their sections,
// the output map, every global with type, section, default and what --set takes, and the record fields.
#include <gtest/gtest.h>

#include <sstream>

#include "collector/cli/commands.hpp"

namespace perfstream::cli {
namespace {

const std::string kGen = PERFSTREAM_BPF_GEN_DIR;
const std::string kObject = kGen + "/test_opensnoop.bpf.o";

const char kProgramsMapsGlobals[] =
    "  programs (name, attach section):\n"
    "    tracepoint__syscalls__sys_enter_openat tracepoint/syscalls/sys_enter_openat\n"
    "    tracepoint__syscalls__sys_exit_openat  tracepoint/syscalls/sys_exit_openat\n"
    "  output maps (--map):\n"
    "    events perf event array\n"
    "  globals (--set NAME=VALUE):\n"
    "    targ_pid       pid_t              .rodata = 0  (signed 32-bit integer)\n"
    "    targ_tgid      pid_t              .rodata = 0  (signed 32-bit integer)\n"
    "    targ_uid       __u32              .rodata = 0  (unsigned 32-bit integer)\n"
    "    targ_failed    bool               .rodata = false  (true or false)\n"
    "    targ_outcome   enum snoop_outcome .rodata = SNOOP_ANY  (one of SNOOP_ANY, SNOOP_OPENED, SNOOP_FAILED)\n"
    "    tag            char[8]            .rodata = \"snoop\"  (string of at most 7 bytes)\n"
    "    opens_recorded __u64              .bss    = 0  (unsigned 64-bit integer)\n"
    "    test_s8        __s8               .data   = -8  (signed 8-bit integer)\n"
    "    test_u16       __u16              .data   = 16  (unsigned 16-bit integer)\n"
    "    test_s64       __s64              .data   = -64  (signed 64-bit integer)\n"
    "    test_u64       __u64              .data   = 64  (unsigned 64-bit integer)\n";

TEST(ProbesObject, ListsProgramsOutputMapsAndGlobalsWithTypesAndDefaults) {
  std::ostringstream out, err;
  ASSERT_EQ(run_probes({"--object", kObject}, out, err), 0) << err.str();
  EXPECT_EQ(out.str(), kObject + "\n" + kProgramsMapsGlobals +
                           "  record: not declared (dumped as hex; name its struct with --event-type)\n");
  EXPECT_EQ(err.str(), "");
}

TEST(ProbesObject, ShowsTheFlattenedFieldsOfAnEventTypeFromAnotherBtf) {
  std::ostringstream out, err;
  ASSERT_EQ(run_probes({"--object", kObject, "--event-type", "event", "--btf", kGen + "/test_opensnoop_btf.o"}, out,
                       err),
            0)
      << err.str();
  EXPECT_EQ(out.str(), kObject + "\n" + kProgramsMapsGlobals +
                           "  record event, 344 bytes\n"
                           "    ts              uint    offset 0    size 8\n"
                           "    pid             int     offset 8    size 4\n"
                           "    uid             uint    offset 12   size 4\n"
                           "    ret             int     offset 16   size 4\n"
                           "    flags           int     offset 20   size 4\n"
                           "    outcome         int     offset 24   size 4, enum: SNOOP_ANY=0 SNOOP_OPENED=1 SNOOP_FAILED=2\n"
                           "    args[0]         int     offset 32   size 8\n"
                           "    args[1]         int     offset 40   size 8\n"
                           "    args[2]         int     offset 48   size 8\n"
                           "    comm            string  offset 56   size 16\n"
                           "    tag             string  offset 72   size 8\n"
                           "    fname.len       uint    offset 80   size 4\n"
                           "    fname.pathes    string  offset 84   size 255\n");
}

TEST(ProbesObject, ErrorsNameTheFileAndTheCause) {
  std::ostringstream out, err;
  EXPECT_EQ(run_probes({"--object", kGen + "/no-such.bpf.o"}, out, err), 1);
  EXPECT_NE(err.str().find("opening BPF object " + kGen + "/no-such.bpf.o: No such file or directory"),
            std::string::npos)
      << err.str();
  std::ostringstream out2, err2;
  EXPECT_EQ(run_probes({"--object", kObject, "--event-type", "event"}, out2, err2), 1);
  EXPECT_NE(err2.str().find("has no struct event in its BTF"), std::string::npos) << err2.str();
  std::ostringstream out3, err3;
  EXPECT_EQ(run_probes({"--event-type", "event"}, out3, err3), 2);
  EXPECT_EQ(err3.str(), "perfstream probes: --event-type and --btf go with --object FILE\n");
}

}  // namespace
}  // namespace perfstream::cli
