// `perfstream dump` of every built-in probe's records against golden files (tests/cli/golden/): text and
// JSON, with the display hints of today's schemas, with --raw-fields, with --time wall and relative, and as a
// recording made before schemas carried hints (its schemas with the hints taken out) must still dump.
// The recording is synthetic: the real built-in schemas (read from the probes' BTF, as `record` writes
// them) and hand-made payloads, with values chosen to reach every hint's odd cases; no kernel is needed.
//
// After a deliberate change of the output: PERFSTREAM_UPDATE_GOLDEN=1 build/tests/perfstream_unit_tests
// --gtest_filter='DumpGolden.*' rewrites the files; review their diff before committing it.
#include <gtest/gtest.h>
#include <linux/types.h>  // events.h includes nothing: the includer provides __u32 and friends

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "bpf/events.h"
#include "collector/cli/commands.hpp"
#include "collector/format/batch_encoder.hpp"
#include "collector/format/trace_writer.hpp"
#include "collector/format/zstd_codec.hpp"
#include "collector/decode/payload_schema.hpp"
#include "testing/temp_dir.hpp"

namespace perfstream::cli {
namespace {

using perfstream::testing::TempDir;

// The bytes a probe emits: the struct up to `size` (the header and the used part of a trailing array),
// padded to 8 as the kernel pads raw samples.
template <typename T>
std::string payload_of(const T& e, std::size_t size) {
  std::string p(reinterpret_cast<const char*>(&e), size);
  p.resize((p.size() + 7) / 8 * 8, '\0');
  return p;
}

std::string openat(std::uint32_t pid, std::int32_t dfd, std::uint32_t flags, std::uint32_t mode, const char* comm,
                   const std::string& path, bool readable = true, std::int32_t ret = 3, std::uint32_t call = 0,
                   std::uint32_t resolve = 0) {
  ps_openat_event e{};
  e.ret = ret;
  e.path_err = readable ? 0 : -14;  // EFAULT
  e.call = call;
  e.resolve = resolve;
  e.kind = PS_EVENT_OPENAT;
  e.pid = pid;
  e.tid = pid + 1;
  e.dfd = dfd;
  e.flags = static_cast<__s32>(flags);
  e.mode = mode;
  std::strncpy(e.comm, comm, sizeof(e.comm) - 1);
  std::memcpy(e.path, path.data(), path.size());
  e.path_len = readable ? static_cast<__u32>(path.size() + 1) : 0;
  return payload_of(e, PS_OPENAT_HEADER_SIZE + e.path_len);
}

// `strings`: the file name, then argv, each ending in NUL.
std::string exec(std::uint32_t pid, std::uint32_t ppid, std::uint32_t uid, const char* comm, const std::string& strings,
                 std::uint32_t args, std::int32_t ret = 0, std::uint32_t truncated = 0, std::int32_t args_err = 0) {
  ps_exec_event e{};
  e.kind = PS_EVENT_EXEC;
  e.pid = pid;
  e.tid = pid;
  e.ppid = ppid;
  e.uid = uid;
  e.ret = ret;
  e.args_count = args;
  e.args_truncated = truncated;
  e.args_err = args_err;
  std::strncpy(e.comm, comm, sizeof(e.comm) - 1);
  std::memcpy(e.filename, strings.data(), strings.size());
  e.filename_len = static_cast<__u32>(strings.size());
  return payload_of(e, PS_EXEC_HEADER_SIZE + e.filename_len);
}

std::string exit_record(std::uint32_t pid, std::uint32_t code, std::uint32_t process_exit, std::uint64_t lifetime) {
  ps_exit_event e{};
  e.kind = PS_EVENT_EXIT;
  e.pid = pid;
  e.tid = pid;
  e.ppid = 1;
  e.exit_code = code;
  e.exit_status = (code >> 8) & 0xff;
  e.signal = code & 0x7f;
  e.process_exit = process_exit;
  std::strncpy(e.comm, "job", sizeof(e.comm) - 1);
  e.lifetime_ns = lifetime;
  return payload_of(e, sizeof(e));
}

std::string fork_record(std::uint32_t parent, std::uint32_t child_pid, std::uint32_t child_tid) {
  ps_fork_event e{};
  e.kind = PS_EVENT_FORK;
  e.parent_pid = parent;
  e.parent_tid = parent;
  e.child_pid = child_pid;
  e.child_tid = child_tid;
  e.uid = 1000;
  std::strncpy(e.comm, "bash", sizeof(e.comm) - 1);
  return payload_of(e, sizeof(e));
}

std::string tcp_record(std::uint32_t what, std::uint32_t family, const std::string& saddr, std::uint32_t sport,
                       const std::string& daddr, std::uint32_t dport, std::int32_t oldstate, std::int32_t newstate,
                       std::uint64_t sent, std::uint64_t received, std::uint64_t duration) {
  ps_tcp_event e{};
  e.kind = PS_EVENT_TCP;
  e.pid = what == 2 ? 0 : 500;
  e.tid = e.pid;
  e.uid = 1000;
  std::strncpy(e.comm, what == 2 ? "" : "curl", sizeof(e.comm) - 1);
  e.what = what;
  e.family = family;
  e.sport = sport;
  e.dport = dport;
  e.oldstate = oldstate;
  e.newstate = newstate;
  std::memcpy(e.saddr, saddr.data(), std::min<std::size_t>(16, saddr.size()));
  std::memcpy(e.daddr, daddr.data(), std::min<std::size_t>(16, daddr.size()));
  e.bytes_sent = sent;
  e.bytes_received = received;
  e.duration_ns = duration;
  return payload_of(e, sizeof(e));
}

std::string sched_switch(std::int32_t prev_pid, std::int64_t prev_state, const char* prev_comm, std::int32_t next_pid,
                         const char* next_comm) {
  ps_sched_switch_event e{};
  e.kind = PS_EVENT_SCHED_SWITCH;
  e.prev_pid = prev_pid;
  e.prev_prio = 120;
  e.next_pid = next_pid;
  e.next_prio = 120;
  e.prev_state = prev_state;
  std::strncpy(e.prev_comm, prev_comm, sizeof(e.prev_comm) - 1);
  std::strncpy(e.next_comm, next_comm, sizeof(e.next_comm) - 1);
  return payload_of(e, sizeof(e));
}

std::string loadgen(std::uint64_t seq, std::uint32_t cpu, std::uint32_t pid, const std::string& bytes) {
  ps_loadgen_event e{};
  e.kind = PS_EVENT_LOADGEN;
  e.payload_len = static_cast<__u32>(bytes.size());
  e.seq = seq;
  e.cpu = cpu;
  e.pid = pid;
  std::memcpy(e.payload, bytes.data(), bytes.size());
  return payload_of(e, PS_LOADGEN_HEADER_SIZE + bytes.size());
}

// A literal with NULs inside, all of it (not up to its first NUL, and not its implicit last one).
template <std::size_t N>
std::string nuls(const char (&s)[N]) {
  return std::string(s, N - 1);
}

struct Entry {
  std::uint64_t time_ns;
  std::uint32_t cpu;
  std::string payload;  // empty: a kernel loss of 3 samples
};

// One record per interesting value of each hint, in time order on CPUs 0 and 1.
std::vector<Entry> entries() {
  std::vector<Entry> out;
  std::uint64_t t = 1'000'000'500;
  auto add = [&](std::uint32_t cpu, std::string payload) {
    out.push_back(Entry{t, cpu, std::move(payload)});
    t += 1000;
  };
  // openat: the flags of cat, a shell's >, open(O_TMPFILE), a flag no table names, every access mode; modes
  // from none to setuid; AT_FDCWD and a real directory fd; a path that could not be read.
  add(0, openat(100, -100, 0x80000, 0, "cat", "/etc/hosts"));
  add(1, openat(101, -100, 0x241, 0644, "bash", "/tmp/out.txt"));
  add(0, openat(102, 3, 020200002, 0600, "mktemp", "/tmp"));
  add(1, openat(103, -100, 0x40000002 | 0x800 | 0x10000, 04755, "odd", "/opt/a b\xff"));
  add(0, openat(104, 7, 0x3, 0, "bad", "", false, -14));
  add(1, openat(105, -100, 0x101000 | 0x100000 | 0x4000, 01777, "sync", "/var/log/x"));
  // openat results: cat /nonexistent, a permission error, an errno past the table; open(2); openat2 with
  // RESOLVE_NO_SYMLINKS|RESOLVE_BENEATH
  add(0, openat(106, -100, 0, 0, "cat", "/nonexistent", true, -2));
  add(1, openat(107, -100, 0x241, 0600, "sh", "/root/x", true, -13, 1));
  add(0, openat(108, 5, 0x10000, 0, "odd", "d", true, -9999, 2, 0x0c));
  // exec: sh -c 'echo a b "c d"', a failed exec, a cut argv, an argv that could not be read
  add(0, exec(200, 100, 1000, "sh", nuls("/bin/sh\0sh\0-c\0echo a b \"c d\"\0"), 3));
  add(1, exec(201, 200, 1000, "echo", nuls("/bin/echo\0echo\0a\0b\0c d\0"), 4));
  add(0, exec(202, 100, 0, "bash", nuls("/nonexistent\0/nonexistent\0"), 1, -2));
  add(1, exec(203, 100, 0, "xargs", nuls("/bin/rm\0rm\0-f\0a\0"), 4, 0, 1));
  add(0, exec(204, 100, 0, "bash", nuls("/bin/ls\0ls\0"), 1, 0, 0, -14));
  // sched_switch: every state letter, preempted, two bits at once, bits the kernel does not report
  const std::int64_t states[] = {0, 1, 2, 4, 8, 16, 32, 64, 128, 0x100, 3, 0x200, 0x301, -1};
  std::int32_t pid = 300;
  for (std::int64_t s : states) {
    add(static_cast<std::uint32_t>(pid % 2), sched_switch(pid, s, "worker", 0, "swapper/0"));
    ++pid;
  }
  // exit: code 3, killed by SIGKILL, a segfault with a core, one thread of a process, a stop no exit has
  add(0, exit_record(600, 3 << 8, 1, 1'500'000'000));
  add(1, exit_record(601, 9, 1, 250'000));
  add(0, exit_record(602, 11 | 0x80, 1, 3'000'000'000));
  add(1, exit_record(603, 0, 0, 42));
  add(0, exit_record(604, 0x7f, 1, 0));
  // fork: a process, a thread
  add(1, fork_record(700, 701, 701));
  add(0, fork_record(700, 700, 702));
  // tcp: a v4 connect, an accept on v6 loopback, a close with bytes and duration, a failed connect, a state
  // and family no table names
  const std::string v4a("\x0a\x00\x00\x01", 4), v4b("\x0a\x00\x00\x02", 4);
  std::string lo6(16, '\0');
  lo6[15] = 1;
  add(1, tcp_record(1, 2, v4a, 40000, v4b, 443, 2, 1, 0, 0, 0));
  add(0, tcp_record(2, 10, lo6, 8080, lo6, 51000, 3, 1, 0, 0, 0));
  add(1, tcp_record(3, 2, v4a, 40000, v4b, 443, 1, 7, 1536, 3 * 1048576 + 104858, 2'500'000'000));
  add(0, tcp_record(4, 2, v4a, 40001, std::string("\x7f\x00\x00\x01", 4), 9, 2, 7, 0, 0, 0));
  add(1, tcp_record(1, 3, std::string(16, '\x01'), 1, std::string(16, '\x02'), 2, 99, 0, 0, 0, 0));
  out.push_back(Entry{t, 0, ""});  // a loss between records
  t += 1000;
  // loadgen
  add(1, loadgen(7, 1, 400, std::string("\x01\x02\xfe\xff", 4)));
  add(0, loadgen(8, 0, 400, ""));
  // a record no schema describes
  add(1, std::string("\x63\x00\x00\x00\x01\x02\x03\x04", 8));
  return out;
}

// A record struct with every hint none of today's built-in probes uses (a user's --object may), laid out by
// hand as schema_from_btf would from its BTF: errno, signal, wait status, TCP state, address family, IPv4
// and IPv6 addresses paired with their ports, bytes, a duration, hex, a hint this reader does not know,
// and argv.
struct HintedEvent {
  std::uint32_t kind;  // 9
  std::int32_t ret;
  std::int32_t sig;
  std::uint32_t status;
  std::int32_t state;
  std::uint16_t family;
  std::uint16_t sport;
  std::uint16_t dport;
  std::uint16_t pad;
  std::uint8_t saddr[16];
  std::uint8_t daddr[16];
  std::uint32_t addr4;
  std::uint32_t mask;
  std::uint64_t rx;
  std::int64_t lifetime;
  std::uint32_t colour;
  std::uint32_t argv_len;
  char argv[64];
};

v1::EventSchema hinted_schema() {
  v1::EventSchema s;
  s.set_kind(9);
  s.set_name("hinted");
  s.set_type_name("hinted_event");
  s.set_fixed_size(offsetof(HintedEvent, argv));
  auto add = [&](const char* name, v1::Field::Type type, std::size_t offset, std::size_t size, const char* hint) {
    v1::Field* f = s.add_fields();
    f->set_name(name);
    f->set_type(type);
    f->set_offset(static_cast<std::uint32_t>(offset));
    f->set_size(static_cast<std::uint32_t>(size));
    f->set_hint(hint);
    return f;
  };
  using F = v1::Field;
  add("kind", F::UNSIGNED, offsetof(HintedEvent, kind), 4, "hidden");
  add("ret", F::SIGNED, offsetof(HintedEvent, ret), 4, "errno");
  add("sig", F::SIGNED, offsetof(HintedEvent, sig), 4, "signal");
  add("status", F::UNSIGNED, offsetof(HintedEvent, status), 4, "wait_status");
  add("state", F::SIGNED, offsetof(HintedEvent, state), 4, "tcp_state");
  add("family", F::UNSIGNED, offsetof(HintedEvent, family), 2, "address_family");
  add("sport", F::UNSIGNED, offsetof(HintedEvent, sport), 2, "");
  add("dport", F::UNSIGNED, offsetof(HintedEvent, dport), 2, "");
  add("pad", F::UNSIGNED, offsetof(HintedEvent, pad), 2, "hidden");
  auto* saddr = add("saddr", F::BYTES, offsetof(HintedEvent, saddr), 16, "ip");
  (*saddr->mutable_hint_args())["port"] = "sport";
  (*saddr->mutable_hint_args())["family"] = "family";
  auto* daddr = add("daddr", F::BYTES, offsetof(HintedEvent, daddr), 16, "ip");
  (*daddr->mutable_hint_args())["port"] = "dport";
  (*daddr->mutable_hint_args())["family"] = "family";
  add("addr4", F::UNSIGNED, offsetof(HintedEvent, addr4), 4, "ip");
  add("mask", F::UNSIGNED, offsetof(HintedEvent, mask), 4, "hex");
  add("rx", F::UNSIGNED, offsetof(HintedEvent, rx), 8, "bytes");
  add("lifetime", F::SIGNED, offsetof(HintedEvent, lifetime), 8, "duration_ns");
  add("colour", F::UNSIGNED, offsetof(HintedEvent, colour), 4, "colour");
  add("argv_len", F::UNSIGNED, offsetof(HintedEvent, argv_len), 4, "hidden");
  auto* argv = add("argv", F::STRING, offsetof(HintedEvent, argv), 64, "argv");
  argv->set_variable(true);
  argv->set_length_field("argv_len");
  return s;
}

struct Hinted {
  std::int32_t ret, sig;
  std::uint32_t status;
  std::int32_t state;
  std::uint16_t family;
  std::string saddr, daddr;  // 4 or 16 bytes
  std::uint16_t sport, dport;
  std::uint64_t rx;
  std::int64_t lifetime;
  std::string argv;          // NUL-separated
};

std::string hinted(const Hinted& h) {
  HintedEvent e{};
  e.kind = 9;
  e.ret = h.ret;
  e.sig = h.sig;
  e.status = h.status;
  e.state = h.state;
  e.family = h.family;
  e.sport = h.sport;
  e.dport = h.dport;
  std::memcpy(e.saddr, h.saddr.data(), std::min<std::size_t>(16, h.saddr.size()));
  std::memcpy(e.daddr, h.daddr.data(), std::min<std::size_t>(16, h.daddr.size()));
  e.addr4 = 0x0100007f;  // 127.0.0.1 as it sits in memory
  e.mask = 0x1f;
  e.rx = h.rx;
  e.lifetime = h.lifetime;
  e.colour = 7;
  std::memcpy(e.argv, h.argv.data(), h.argv.size());
  e.argv_len = static_cast<std::uint32_t>(h.argv.size());
  return payload_of(e, offsetof(HintedEvent, argv) + h.argv.size());
}

std::string v6(std::initializer_list<int> bytes) {
  std::string s(16, '\0');
  std::size_t i = 0;
  for (int b : bytes) s[i++] = static_cast<char>(b);
  return s;
}

// Good values and values past every table: an unknown errno, signal, state and family, a wait status of a
// stop, an IPv4 address in a 16-byte array, a cut argv.
std::vector<std::string> hinted_records() {
  const std::string loopback6 = v6({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
  return {
      hinted({3, 0, 3 << 8, 1, 2, std::string("\x0a\x00\x00\x01", 4), std::string("\x0a\x00\x00\x02", 4), 40000, 443,
              512, 1'500'000'000, std::string("echo\0a b\0\0c\0", 12)}),
      hinted({-2, 9, 9, 10, 10, loopback6, loopback6, 8080, 0, 1536, 0, std::string("sh\0-c\0echo \"hi\"\0", 17)}),
      hinted({-13, 11, 11 | 0x80, 7, 10, v6({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5}), loopback6, 1, 2,
              3 * 1048576 + 104858, -100, std::string("cut argu", 8)}),
      hinted({-9999, 77, 0x7f, 99, 3, std::string(16, '\x01'), std::string(16, '\x02'), 5, 6, 0, 42, ""}),
  };
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (std::size_t at = 0; (at = s.find(from, at)) != std::string::npos; at += to.size()) s.replace(at, from.size(), to);
  return s;
}

// with_ts false: the schemas without the built-in probes' `ts`, as every recording made before it had them.
v1::TraceHeader header(bool with_hints, bool with_ts) {
  v1::TraceHeader h;
  h.set_format_version(1);
  h.set_perfstream_version("0.1.0");
  h.set_host("golden");
  h.set_kernel_release("6.1.0-test");
  h.set_possible_cpus(2);
  h.set_online_cpus("0-1");
  h.set_recorded_cpus("0-1");
  h.set_clock(v1::MONOTONIC);
  h.set_start_time_ns(1'000'000'000);
  h.set_start_realtime_ns(1'700'000'000'000'000'000ull);  // 2023-11-14T22:13:20Z
  h.set_recording_id("golden");
  for (const char* name : {"exec", "openat", "sched_switch", "loadgen", "exit", "fork", "tcp"}) {
    h.add_probes(name);
    auto built = builtin_probe_schema(name);
    if (!built) throw std::runtime_error(built.error().message());
    v1::EventSchema s = *built;
    if (!with_ts) {
      auto* fields = s.mutable_fields();
      fields->erase(std::remove_if(fields->begin(), fields->end(), [](const v1::Field& f) { return f.name() == "ts"; }),
                    fields->end());
    }
    if (!with_hints) {
      for (auto& f : *s.mutable_fields()) {
        f.clear_hint();
        f.clear_hint_args();
      }
    }
    *h.add_events() = s;
  }
  return h;
}

// `columnar`: format version 2, payloads in column groups planned from the header's schemas, as `record`
// writes them; otherwise version 1, every payload whole.
void write_recording(const std::string& path, bool with_hints, bool every_hint = false, bool with_ts = true,
                     bool columnar = false) {
  TraceWriterOptions options;
  options.path = path;
  v1::TraceHeader h = header(with_hints, with_ts);
  std::vector<Entry> records = entries();
  if (every_hint) {
    *h.add_events() = hinted_schema();
    std::uint64_t t = 2'000'000'000;
    std::uint32_t cpu = 0;
    for (auto& p : hinted_records()) {
      records.push_back(Entry{t, cpu, std::move(p)});
      t += 1000;
      cpu ^= 1;
    }
  }
  if (columnar) h.set_format_version(kFormatVersion);
  auto w = TraceFileWriter::create(options, h);
  if (!w) throw std::runtime_error(w.error().message());
  BatchEncoder enc(columnar ? std::make_shared<const ColumnarLayout>(ColumnarLayout::from_schemas(h.events())) : nullptr);
  v1::TraceTrailer trailer;
  std::uint64_t samples[2] = {0, 0}, lost[2] = {0, 0};
  for (const auto& e : records) {
    if (e.payload.empty()) {
      enc.add_lost(e.cpu, 3, e.time_ns, 0);
      lost[e.cpu] += 3;
    } else {
      enc.add_record(e.time_ns, e.cpu,
                     std::span<const std::byte>(reinterpret_cast<const std::byte*>(e.payload.data()), e.payload.size()));
      ++samples[e.cpu];
    }
  }
  std::string message;
  enc.finish(0, message);
  EncodedBatch b;
  b.sequence = 0;
  b.records = enc.record_count();
  b.lost_notices = enc.lost_count();
  b.encoded_bytes = message.size();
  b.first_time_ns = enc.first_time();
  auto c = ZstdCompressor::create(1);
  if (!c || !c->compress(message, b.compressed)) throw std::runtime_error("compressing the golden batch");
  if (auto st = (*w)->write_batch(std::move(b)); !st) throw std::runtime_error(st.error().message());
  trailer.set_end_time_ns(3'000'000'000);
  for (std::uint32_t cpu = 0; cpu < 2; ++cpu) {
    v1::CpuTotals* t = trailer.add_cpus();
    t->set_cpu(cpu);
    t->set_samples(samples[cpu]);
    t->set_lost(lost[cpu]);
  }
  if (auto st = (*w)->close(trailer); !st) throw std::runtime_error(st.error().message());
}

struct DumpRun {
  int status;
  std::string out;
  std::string err;
};

DumpRun dump(std::vector<std::string> args) {
  std::ostringstream out, err;
  const int status = run_dump(args, out, err);
  return DumpRun{status, out.str(), err.str()};
}

void expect_golden(const std::string& name, DumpRun r, const std::string& dir = "") {
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  if (!dir.empty()) r.out = replace_all(r.out, dir, "DIR");  // a fresh temporary directory each run
  const std::string path = std::string(PERFSTREAM_GOLDEN_DIR) + "/" + name;
  if (const char* update = std::getenv("PERFSTREAM_UPDATE_GOLDEN"); update != nullptr && *update != '\0') {
    perfstream::testing::write_file(path, r.out);
    return;
  }
  std::string expected;
  try {
    expected = perfstream::testing::read_file(path);
  } catch (const std::exception&) {
    FAIL() << "no golden file " << path << " (PERFSTREAM_UPDATE_GOLDEN=1 writes it)";
  }
  EXPECT_EQ(r.out, expected) << "dump's output differs from " << path
                             << "; if the change is meant, rerun with PERFSTREAM_UPDATE_GOLDEN=1 and review the diff";
}

class DumpGolden : public ::testing::Test {
 protected:
  void SetUp() override {
    hinted_ = dir_.file("hinted.data");
    old_ = dir_.file("old.data");
    write_recording(hinted_, true);
    write_recording(old_, false, false, false);  // from before hints, and before ts
    hinted_without_ts_ = dir_.file("hinted-without-ts.data");
    write_recording(hinted_without_ts_, true, false, false);
    every_ = dir_.file("every.data");
    write_recording(every_, true, true);
    // To compare with another perfstream's dump (e.g. an older build's, for old.txt): keep the recordings.
    if (const char* keep = std::getenv("PERFSTREAM_GOLDEN_KEEP_DIR"); keep != nullptr && *keep != '\0') {
      perfstream::testing::write_file(std::string(keep) + "/hinted.data", perfstream::testing::read_file(hinted_));
      perfstream::testing::write_file(std::string(keep) + "/old.data", perfstream::testing::read_file(old_));
    }
  }
  TempDir dir_;
  std::string hinted_, old_, every_, hinted_without_ts_;
};

// Format version 2 stores the payloads in columns; dump and stats show exactly what they show for version 1,
// but for the format number in the header.
TEST_F(DumpGolden, ColumnarRecordingDumpsExactlyAsVersionOne) {
  const std::string v2 = dir_.file("every-v2.data");
  write_recording(v2, true, true, true, true);
  ASSERT_NE(perfstream::testing::read_file(v2).substr(8, 1), perfstream::testing::read_file(every_).substr(8, 1));
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {}, {"--json"}, {"--raw-fields", "--json"}, {"--header", "--json"}, {"--event", "openat", "--filter", "pid=100"}}) {
    std::vector<std::string> a = args, b = args;
    a.push_back(every_);
    b.push_back(v2);
    DumpRun one = dump(a), two = dump(b);
    EXPECT_EQ(two.status, 0) << two.err;
    EXPECT_EQ(two.err, one.err);
    one.out = replace_all(replace_all(one.out, every_, "FILE"), "\"format_version\":1",
                          "\"format_version\":" + std::to_string(kFormatVersion));
    EXPECT_EQ(replace_all(two.out, v2, "FILE"), one.out) << "dump " << (args.empty() ? "" : args[0]);
  }
  std::ostringstream out1, err1, out2, err2;
  EXPECT_EQ(run_stats({"--json", every_}, out1, err1), 0);
  EXPECT_EQ(run_stats({"--json", v2}, out2, err2), 0);
  EXPECT_NE(out2.str(), "");
}

TEST_F(DumpGolden, TextShowsEveryHintOfEveryBuiltInProbe) { expect_golden("builtin.txt", dump({hinted_})); }

TEST_F(DumpGolden, JsonShowsEveryHintOfEveryBuiltInProbe) { expect_golden("builtin.json", dump({"--json", hinted_})); }

TEST_F(DumpGolden, RawFieldsShowEveryFieldAsRecorded) {
  expect_golden("builtin-raw.txt", dump({"--raw-fields", hinted_}));
  expect_golden("builtin-raw.json", dump({"--raw-fields", "--json", hinted_}));
}

TEST_F(DumpGolden, HeaderListsTheHints) {
  expect_golden("header.txt", dump({"--header", "--event", "openat", "--filter", "pid=100", every_}), dir_.path());
  expect_golden("header.json", dump({"--header", "--json", "--event", "openat", "--filter", "pid=100", every_}),
                dir_.path());
}

// stats --by counts a hinted field under the hint's rendering, as dump shows and --filter matches it.
TEST_F(DumpGolden, StatsByCountsUnderWhatTheHintsShow) {
  std::ostringstream out, err;
  EXPECT_EQ(run_stats({"--by", "event,ret", hinted_}, out, err), 0) << err.str();
  expect_golden("stats-by.txt", DumpRun{0, out.str(), err.str()});
  std::ostringstream json, json_err;
  EXPECT_EQ(run_stats({"--by", "flags,comm", "--json", every_}, json, json_err), 0) << json_err.str();
  expect_golden("stats-by.json", DumpRun{0, json.str(), json_err.str()});
}

TEST_F(DumpGolden, WallAndRelativeTimes) {
  expect_golden("time-wall.txt", dump({"--time", "wall", "--event", "exec", hinted_}));
  expect_golden("time-wall.json", dump({"--time", "wall", "--json", "--event", "exec", hinted_}));
  expect_golden("time-relative.txt", dump({"--time", "relative", "--event", "exec", hinted_}));
  expect_golden("time-relative.json", dump({"--time", "relative", "--json", "--event", "exec", hinted_}));
}

TEST_F(DumpGolden, EveryOtherHintInTextAndJson) {
  expect_golden("hints.txt", dump({"--event", "hinted", every_}));
  expect_golden("hints.json", dump({"--event", "hinted", "--json", every_}));
  expect_golden("hints-raw.txt", dump({"--event", "hinted", "--raw-fields", every_}));
  expect_golden("hints-raw.json", dump({"--event", "hinted", "--raw-fields", "--json", every_}));
}

// Filters see a hinted value as dump shows it, as well as the value itself.
TEST_F(DumpGolden, FiltersMatchWhatTheHintsShow) {
  auto lines = [&](std::vector<std::string> args) {
    args.push_back(every_);
    const DumpRun r = dump(args);
    EXPECT_EQ(r.err, "");
    std::size_t n = 0;
    for (char c : r.out) n += c == '\n';
    return n - 1;  // the loss line stays in every output
  };
  const std::string o = "openat", h = "hinted";
  auto in = [&](const std::string& event, const std::string& filter) { return lines({"--event", event, "--filter", filter}); };
  EXPECT_EQ(in(o, "flags=O_RDONLY|O_CLOEXEC"), 1u);
  EXPECT_EQ(in(o, "flags~O_CREAT"), 2u);
  EXPECT_EQ(in(o, "flags~O_RDWR"), 2u);
  EXPECT_EQ(in(o, "flags=0x241"), 2u);  // the number still works
  EXPECT_EQ(in(o, "dfd=AT_FDCWD"), 6u);
  EXPECT_EQ(in(o, "dfd!=AT_FDCWD"), 3u);
  EXPECT_EQ(in(o, "mode=04755"), 1u);
  EXPECT_EQ(in(o, "ret=ENOENT"), 1u);
  EXPECT_EQ(in(o, "ret<0"), 4u);        // opensnoop -x
  EXPECT_EQ(in(o, "ret>=0"), 5u);
  EXPECT_EQ(in(o, "path_len>12"), 2u);  // hidden fields filter all the same
  EXPECT_EQ(in("sched_switch", "prev_state=S"), 1u);
  EXPECT_EQ(in("sched_switch", "prev_state~+"), 3u);
  EXPECT_EQ(in("exec", "filename~echo a b"), 2u);  // the path and argv, as words
  EXPECT_EQ(in("exec", "filename=/bin/echo"), 1u);  // the path alone
  EXPECT_EQ(in("exec", "ret!=0"), 1u);
  EXPECT_EQ(in("exit", "exit_code=3"), 1u);      // the exit code a wait status shows
  EXPECT_EQ(in("exit", "exit_code=SIGKILL"), 1u);
  EXPECT_EQ(in("exit", "signal=SIGSEGV"), 1u);
  EXPECT_EQ(in("tcp", "daddr=10.0.0.2"), 2u);    // without its port
  EXPECT_EQ(in("tcp", "daddr=10.0.0.2:443"), 2u);
  EXPECT_EQ(in("tcp", "newstate=CLOSE"), 2u);
  EXPECT_EQ(in("tcp", "saddr~::1"), 1u);
  EXPECT_EQ(in(h, "ret=ENOENT"), 1u);
  EXPECT_EQ(in(h, "ret<0"), 3u);
  EXPECT_EQ(in(h, "sig=SIGKILL"), 1u);
  EXPECT_EQ(in(h, "saddr=::1"), 1u);
  EXPECT_EQ(in(h, "saddr~[::1]"), 1u);
  EXPECT_EQ(in(h, "state=ESTABLISHED"), 1u);
  EXPECT_EQ(in(h, "argv~a b"), 1u);
  EXPECT_EQ(in(h, "argv~echo"), 2u);
}

// A recording from before hints: its schemas carry none, and dump prints it exactly as it did then (the
// golden files were written by dump at main 2086845, before hints existed).
TEST_F(DumpGolden, OldRecordingDumpsAsBefore) {
  expect_golden("old.txt", dump({old_}));
  expect_golden("old.json", dump({"--json", old_}));
}

// --guess-hints gives an old recording of the built-in probes the hints they have now: the same output as
// a recording made today (whose hidden `ts` only --raw-fields shows: there, today's fields less ts).
TEST_F(DumpGolden, OldRecordingWithGuessedHintsDumpsAsToday) {
  EXPECT_EQ(dump({"--guess-hints", old_}).out, dump({hinted_}).out);
  EXPECT_EQ(dump({"--guess-hints", "--json", old_}).out, dump({"--json", hinted_}).out);
  EXPECT_EQ(dump({"--guess-hints", "--raw-fields", old_}).out, dump({"--raw-fields", hinted_without_ts_}).out);
}

}  // namespace
}  // namespace perfstream::cli
