// perfstream export --to perfetto end to end: a real recording of exec, openat, fork, exit, tcp and
// sched_switch (the real binary, the real kernel, a workload of processes, a thread-less TCP connection),
// exported, and the .pftrace parsed with the protobuf library and Perfetto's schema
// (tests/export/perfetto_trace_subset.proto). Checked against the recording as the reader library reads it:
// every sched_switch once, on its CPU, in time order; every process with its name; every other record an
// instant with its fields on its thread; every lost notice a marker. Needs root; skips only when the kernel
// refuses BPF.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <thread>

#include "collector/decode/display_hints.hpp"
#include "collector/decode/payload_schema.hpp"
#include "collector/recording/recording_reader.hpp"
#include "testing/kernel_fixture.hpp"
#include "testing/perfetto_model.hpp"
#include "testing/subprocess.hpp"

namespace perfstream::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

bool bpf_refused(const std::string& err) {
  return err.find("refused") != std::string::npos || err.find("Operation not permitted") != std::string::npos;
}

// One loopback TCP connection, opened and closed by this process: tcp records connect, accept and close.
void tcp_round_trip() {
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ASSERT_EQ(listen(listener, 1), 0);
  int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  int server = accept(listener, nullptr, nullptr);
  ASSERT_GE(server, 0);
  ASSERT_EQ(write(client, "hello", 5), 5);
  char buf[8];
  ASSERT_EQ(read(server, buf, sizeof buf), 5);
  close(client);
  close(server);
  close(listener);
}

std::string hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (char c : bytes) {
    out += kDigits[static_cast<unsigned char>(c) >> 4];
    out += kDigits[static_cast<unsigned char>(c) & 15];
  }
  return out;
}

struct RefRecord {
  std::uint64_t ts;
  std::uint32_t cpu;
  std::string event;
  std::map<std::string, std::string> fields;  // as the exporter renders them
  std::map<std::string, std::int64_t> ints;
};

TEST(ExportEndToEnd, PerfettoTraceOfARealRecordingHoldsEverySwitchProcessAndEvent) {
  const fs::path dir = fs::temp_directory_path() / ("perfstream-export-e2e-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const fs::path trace = dir / "all.data";
  const fs::path pftrace = dir / "all.pftrace";
  // System-wide (-a) so that the test's own TCP connection is recorded; the command is the workload:
  // processes that fork, exec, open files, run a thread-less pipeline, exit.
  Background recorder({perfstream_binary(), "record", "--probe", "exec,openat,fork,exit,tcp,sched_switch", "-a",
                       "-o", trace.string(), "--quiet", "--", "/bin/sh", "-c",
                       "sleep 0.5; cat /etc/hostname > /dev/null; /bin/true a b; ls / | wc -l > /dev/null; "
                       "sleep 0.7"});
  // The TCP connection while the command runs (after the probes are attached: the header is written).
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline && !recorder.exited() &&
         !(fs::exists(trace) && fs::file_size(trace) > 16)) {
    std::this_thread::sleep_for(20ms);
  }
  if (!recorder.exited()) {
    std::this_thread::sleep_for(200ms);
    tcp_round_trip();
  }
  RunResult rec = recorder.wait();
  if (rec.exit_status != 0 && bpf_refused(rec.err)) GTEST_SKIP() << "the kernel refuses BPF here: " << rec.err;
  ASSERT_EQ(rec.exit_status, 0) << rec.err;

  RunResult ex = run({perfstream_binary(), "export", "--to", "perfetto", trace.string(), "-o", pftrace.string()});
  ASSERT_EQ(ex.exit_status, 0) << ex.err;
  EXPECT_NE(ex.err.find("instants"), std::string::npos) << ex.err;
  EXPECT_FALSE(fs::exists(pftrace.string() + ".partial"));
  const PfModel m = parse_perfetto_file(pftrace.string());
  ASSERT_EQ(m.error, "");

  // The reference: the recording in file order, through the reader library, decoded with its schemas.
  auto reader = recording::RecordingReader::open({trace.string()}, {});
  ASSERT_TRUE(reader) << reader.error().message();
  std::map<std::uint32_t, std::vector<PfSwitch>> switches;
  std::vector<RefRecord> others;
  std::map<std::uint32_t, std::uint64_t> lost_per_cpu;
  std::vector<FieldValue> values;
  recording::ReadBatch rb;
  while ((*reader)->next(rb)) {
    const auto& schemas = (*reader)->pieces()[rb.piece].header.events();
    for (const auto& l : rb.batch.lost) ++lost_per_cpu[l.cpu];
    for (std::size_t i = 0; i < rb.batch.size(); ++i) {
      const auto payload = rb.batch.payload(i);
      const v1::EventSchema* schema = schema_for_payload(schemas, payload);
      ASSERT_NE(schema, nullptr);
      decode_payload_into(*schema, payload, values);
      RefRecord r{rb.batch.times[i], rb.batch.cpus[i], schema->name(), {}, {}};
      for (std::size_t k = 0; k < values.size(); ++k) {
        const FieldValue& v = values[k];
        if (v.missing) continue;
        const std::string& hint = schema->fields(static_cast<int>(k)).hint();
        if (v.type == v1::Field::STRING && (hint == "argv" || hint == "path_argv")) {
          std::vector<std::string_view> words;
          hints::split_argv(v.text, words);
          std::string list = "[";
          for (std::size_t w = hint == "path_argv" ? 1 : 0; w < words.size(); ++w) {
            list += (list.size() > 1 ? " " : "") + std::string(words[w]);
          }
          list += "]";
          if (hint == "path_argv") {
            r.fields[v.name] = words.empty() ? std::string() : std::string(words.front());
            r.fields["args"] = list;
          } else {
            r.fields[v.name] = list;
          }
          continue;
        }
        switch (v.type) {
          case v1::Field::SIGNED: r.fields[v.name] = std::to_string(v.signed_value); r.ints[v.name] = v.signed_value; break;
          case v1::Field::UNSIGNED:
            r.fields[v.name] = std::to_string(v.unsigned_value);
            r.ints[v.name] = static_cast<std::int64_t>(v.unsigned_value);
            break;
          case v1::Field::STRING: r.fields[v.name] = v.text; break;
          default: r.fields[v.name] = hex(v.text); break;
        }
      }
      if (r.event == "sched_switch") {
        switches[r.cpu].push_back(PfSwitch{r.ts, static_cast<std::int32_t>(r.ints["next_pid"]),
                                           static_cast<std::int32_t>(r.ints["next_prio"]), r.ints["prev_state"],
                                           r.fields["next_comm"], false, 0});
      } else {
        others.push_back(std::move(r));
      }
    }
  }
  ASSERT_FALSE(switches.empty());

  // Every sched_switch, once, on its CPU, in time order (compared without the compact/full distinction).
  std::size_t total_switches = 0;
  for (auto& [cpu, list] : switches) {
    std::stable_sort(list.begin(), list.end(), [](const auto& a, const auto& b) { return a.ts < b.ts; });
    ASSERT_TRUE(m.switches.count(cpu)) << "CPU " << cpu;
    auto got = m.switches.at(cpu);
    for (std::size_t i = 1; i < got.size(); ++i) ASSERT_LE(got[i - 1].ts, got[i].ts) << "CPU " << cpu << " at " << i;
    for (auto& s : got) s.full = false, s.prev_pid = 0;
    ASSERT_EQ(got.size(), list.size()) << "CPU " << cpu;
    // Equal times may come in either order on one CPU only if they are equal records; compare as sorted lists.
    EXPECT_TRUE(got == list) << "CPU " << cpu << ": the switches differ";
    total_switches += list.size();
  }
  EXPECT_EQ(m.switches.size(), switches.size());

  // Every process has its name; every other record is an instant with its fields, on its thread.
  std::multimap<std::pair<std::uint64_t, std::string>, const PfInstant*> instants;
  std::map<std::uint32_t, std::uint64_t> lost_markers;
  for (const auto& i : m.instants) {
    if (i.name.rfind("lost ", 0) == 0) {
      ++lost_markers[static_cast<std::uint32_t>(std::stoul(i.args.at("cpu")))];
    } else {
      instants.emplace(std::make_pair(i.ts, i.name), &i);
    }
  }
  EXPECT_EQ(instants.size(), others.size());
  std::map<std::string, int> per_event;
  bool cat_exec = false, tcp_seen = false;
  for (const auto& r : others) {
    ++per_event[r.event];
    auto [lo, hi] = instants.equal_range({r.ts, r.event});
    bool found = false;
    for (auto it = lo; it != hi && !found; ++it) {
      bool same = it->second->args.at("cpu") == std::to_string(r.cpu);
      for (const auto& [k, v] : r.fields) same = same && it->second->args.count(k) && it->second->args.at(k) == v;
      found = same;
      if (found && r.ints.count("pid") && r.ints.at("pid") > 0 && r.event != "fork") {
        const auto thread = m.thread_of(it->second->track);
        ASSERT_TRUE(thread.has_value()) << r.event << " at " << r.ts;
        EXPECT_EQ(thread->first, r.ints.at("pid"));
      }
    }
    EXPECT_TRUE(found) << r.event << " at " << r.ts << " on CPU " << r.cpu << " has no instant with its fields";
    for (const char* key : {"pid", "parent_pid", "child_pid"}) {
      if (!r.ints.count(key) || r.ints.at(key) <= 0) continue;
      const auto pid = static_cast<std::int32_t>(r.ints.at(key));
      ASSERT_TRUE(m.processes.count(pid)) << r.event << ": process " << pid << " is not in the process tree";
      EXPECT_GT(m.processes.at(pid).cmdline_size(), 0);
      EXPECT_FALSE(m.processes.at(pid).cmdline(0).empty()) << "process " << pid << " has no name";
    }
    if (r.event == "exec" && r.fields.at("filename") == "/bin/true" && r.ints.at("ret") == 0 &&
        r.fields.at("args") == "[/bin/true a b]") {
      const auto& p = m.processes.at(static_cast<std::int32_t>(r.ints.at("pid")));
      cat_exec = p.cmdline_size() == 3 && p.cmdline(1) == "a" && p.cmdline(2) == "b";
    }
    if (r.event == "tcp" && r.ints.at("pid") == getpid()) tcp_seen = true;
  }
  for (const char* e : {"exec", "openat", "fork", "exit", "tcp"}) EXPECT_GT(per_event[e], 0) << e;
  EXPECT_TRUE(cat_exec) << "the exec of /bin/true a b gives its process its argv";
  EXPECT_TRUE(tcp_seen) << "the test's own connection is an instant";
  EXPECT_EQ(lost_markers, lost_per_cpu);
  // Lifetimes: a task_newtask per fork, a sched_process_free per exit.
  std::size_t newtasks = 0, frees = 0;
  for (const auto& t : m.tasks) {
    newtasks += t.kind == "task_newtask";
    frees += t.kind == "sched_process_free";
  }
  EXPECT_EQ(newtasks, static_cast<std::size_t>(per_event["fork"]));
  EXPECT_EQ(frees, static_cast<std::size_t>(per_event["exit"]));
  ASSERT_TRUE(m.clock.has_value());
  EXPECT_TRUE(m.first_track_packet_clears_state);
  std::cout << "exported " << total_switches << " switches on " << switches.size() << " CPUs, " << others.size()
            << " other records\n";
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
}  // namespace perfstream::testing
