#include "collector/cli/record_setup.hpp"

#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <random>
#include <sstream>

#include "collector/format/frame.hpp"
#include "collector/kernel/bpf_probe.hpp"
#include "collector/util/clock.hpp"
#include "collector/util/privileges.hpp"

namespace perfstream::cli {
namespace {

std::string random_id() {
  std::random_device rd;
  std::ostringstream out;
  out << std::hex;
  for (int i = 0; i < 4; ++i) out << (rd() & 0xffff) << (i < 3 ? "-" : "");
  return out.str();
}

// The ids of -p or -t: each flag may be repeated and take a comma-separated list; every id must name a
// live task now (a filter on a task that is gone records nothing, silently).
Result<std::vector<std::uint32_t>> live_ids_from(const ArgParser& parser, const std::string& flag,
                                                  const std::string& what) {
  std::vector<std::uint32_t> ids;
  for (const auto& value : parser.values(flag)) {
    std::stringstream list(value);
    std::string item;
    while (std::getline(list, item, ',')) {
      auto id = parse_count(flag, item);
      if (!id) return id.error();
      if (*id == 0 || *id > 0x3fffffff) return Error("--" + flag + " " + item + ": not a " + what + " id");
      struct stat st {};
      if (::stat(("/proc/" + item).c_str(), &st) != 0) {
        return Error("--" + flag + " " + item + ": no such " + what + " (nothing would be recorded)");
      }
      ids.push_back(static_cast<std::uint32_t>(*id));
    }
  }
  return ids;
}

}  // namespace

std::string join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : separator) + p;
  return out;
}

void add_capture_flags(ArgParser& parser) {
  parser.option("probe", 0, "NAME", "built-in probe to load; repeat or comma-separate for several (see perfstream probes)")
      .option("object", 0, "FILE", "load this BPF object file instead of built-in probes")
      .option("map", 0, "NAME", "the object's output map (perf event array or BPF ring buffer), when it has several")
      .option("set", 0, "NAME=VALUE", "with --object: set the object's global NAME before load; repeatable (perfstream probes --object FILE lists them)")
      .option("event-type", 0, "STRUCT", "with --object: its records are this struct (from the object's BTF, else --btf)")
      .option("btf", 0, "FILE", "with --event-type: where the struct is when the object lacks it (clang -g -c of its header, or raw BTF)")
      .option("cpus", 'C', "LIST", "CPUs to record, like 0-3,6 (default: all; offline ones join when they come online)")
      .option("pages", 'm', "SIZE", "ring size per CPU: pages (64), bytes (256K, 4M) or a total budget (total:64M); default 4M per CPU, at most 64M in all")
      .option("wakeup", 0, "SIZE", "wake the reader when this many bytes are pending (default: a quarter ring)")
      .option("flush-interval", 0, "TIME", "drain every ring at least this often (default 100ms)")
      .option("sample-time", 0, "event|kernel", "a record's time: event (default) reads each event's BPF-written timestamp field (ts) and drops the kernel's PERF_SAMPLE_TIME when every event has one; kernel always asks the kernel for it")
      .option("pid", 'p', "PID[,PID...]", "only these processes (filtered in BPF); repeatable")
      .option("tid", 't', "TID[,TID...]", "only these threads (filtered in BPF); repeatable")
      .option("uid", 'u', "USER", "only tasks of this user, by name or number (filtered in BPF)")
      .option("comm", 0, "NAME", "only tasks of this name, as ps -o comm shows it (filtered in BPF)")
      .option("threads", 0, "N", "reader threads (default 1)")
      .option("user", 0, "USER[:GROUP]", "after setup, run as USER (name or number), keeping only the capabilities the run needs")
      .flag("no-hotplug", 0, "only the CPUs online at start: keep no capability at all after setup")
      .notes(
          "privileges: once the programs are attached and the rings and the output are open, perfstream keeps\n"
          "only CAP_BPF, CAP_PERFMON and CAP_IPC_LOCK (a CPU that comes back online needs a new event, ring and\n"
          "map slot; none with --no-hotplug), drops every other capability from its effective, permitted and\n"
          "bounding sets, and sets no_new_privs. With --user it also becomes USER: the trace file (or a spool\n"
          "directory it made) is handed to USER, and rotated pieces and spool segments are created by USER, so\n"
          "their directory must be writable by USER. A command after -- is started before all this and keeps\n"
          "the credentials perfstream was started with (-- runuser -u USER -- CMD runs it as someone else).\n");
}

Result<CaptureOptions> capture_options_from(const ArgParser& parser, const std::string& command) {
  CaptureOptions options;
  auto fail = [&](const Error& e) { return Error("perfstream " + command + ": " + e.message()); };
  for (const auto& value : parser.values("probe")) {
    std::stringstream list(value);
    std::string name;
    while (std::getline(list, name, ',')) {
      if (!name.empty()) options.probes.push_back(name);
    }
  }
  options.object_path = parser.value("object").value_or("");
  options.map_name = parser.value("map").value_or("");
  if (!options.object_path.empty() && !options.probes.empty()) {
    return fail(Error("--probe and --object cannot be combined"));
  }
  for (const auto& text : parser.values("set")) {
    auto parsed = parse_global_setting(text);
    if (!parsed) return fail(parsed.error());
    options.global_settings.push_back(std::move(*parsed));
  }
  options.event_type = parser.value("event-type").value_or("");
  options.event_btf_path = parser.value("btf").value_or("");
  if (options.object_path.empty()) {
    for (const char* flag : {"set", "event-type", "btf"}) {
      if (parser.has(flag)) {
        return fail(Error(std::string("--") + flag + " needs --object FILE (built-in probes set their own globals and know their records)"));
      }
    }
  }
  if (!options.event_btf_path.empty() && options.event_type.empty()) {
    return fail(Error("--btf " + options.event_btf_path + " needs --event-type STRUCT: the struct to take from it"));
  }
  if (options.object_path.empty() && options.probes.empty()) {
    return fail(Error("nothing to record: give --probe NAME (perfstream probes lists them) or --object FILE"));
  }
  for (const auto& name : options.probes) {
    bool known = false;
    for (const auto& info : builtin_probes()) known |= name == info.name;
    if (!known) {
      std::vector<std::string> names;
      for (const auto& info : builtin_probes()) {
        if (!info.driven_by_bench) names.push_back(info.name);
      }
      return fail(Error("unknown probe '" + name + "' (built-in probes: " + join(names, ", ") + ")"));
    }
  }
  if (auto v = parser.value("cpus")) {
    auto cpus = CpuSet::parse(*v);
    if (!cpus) return fail(cpus.error());
    options.array.cpus = *cpus;
  }
  if (auto v = parser.value("pages")) {
    auto size = RingSize::parse(*v);
    if (!size) return fail(size.error());
    options.array.size = *size;
  }
  if (auto v = parser.value("wakeup")) {
    auto bytes = parse_bytes("wakeup", *v);
    if (!bytes) return fail(bytes.error());
    options.array.wakeup_bytes = *bytes;
  }
  if (auto v = parser.value("sample-time")) {
    if (*v == "event") options.sample_time = SampleTimeSource::Event;
    else if (*v == "kernel") options.sample_time = SampleTimeSource::Kernel;
    else return fail(Error("--sample-time: '" + *v + "' is neither event nor kernel"));
  }
  if (auto v = parser.value("flush-interval")) {
    auto ms = parse_duration_ms("flush-interval", *v);
    if (!ms) return fail(ms.error());
    if (*ms == 0) return fail(Error("--flush-interval must be at least 1ms"));
    options.readers.flush_interval = std::chrono::milliseconds(*ms);
  }
  auto tgids = live_ids_from(parser, "pid", "process");
  if (!tgids) return fail(tgids.error());
  options.filter_tgids = std::move(*tgids);
  auto tids = live_ids_from(parser, "tid", "thread");
  if (!tids) return fail(tids.error());
  options.filter_tids = std::move(*tids);
  if (auto v = parser.value("uid")) {
    auto user = resolve_user(*v);
    if (!user) return fail(Error("-u " + *v + ": " + user.error().message()));
    options.filter_uid = user->uid;
  }
  if (auto v = parser.value("comm")) {
    if (v->empty() || v->size() > 15) {
      return fail(Error("--comm '" + *v + "': a task name is 1 to 15 bytes (the kernel keeps no more)"));
    }
    options.filter_comm = *v;
  }
  if (parser.has("no-hotplug")) options.readers.hotplug_interval = std::chrono::milliseconds(0);
  if (auto v = parser.value("threads")) {
    auto n = parse_count("threads", *v);
    if (!n) return fail(n.error());
    if (*n == 0 || *n > 256) return fail(Error("--threads: between 1 and 256"));
    options.readers.threads = static_cast<unsigned>(*n);
  }
  return options;
}

v1::TraceHeader make_trace_header(CaptureSession& session, const std::vector<std::string>& command) {
  v1::TraceHeader h;
  h.set_format_version(kFormatVersion);  // batches hold column groups (BatchingConsumer gets the plans)
  h.set_perfstream_version(PERFSTREAM_VERSION);
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  h.set_host(host);
  utsname uts{};
  if (uname(&uts) == 0) h.set_kernel_release(uts.release);
  if (auto possible = CpuSet::possible()) h.set_possible_cpus(possible->max() + 1);
  if (auto online = CpuSet::online()) h.set_online_cpus(online->to_string());
  const int clockid = session.clockid();
  if (session.ringbuf() != nullptr) {
    h.set_recorded_cpus(h.online_cpus());  // a ring buffer takes records from every CPU
    h.set_output_map(v1::OUTPUT_MAP_RINGBUF);
    h.set_record_time(session.time_field().empty() ? v1::RECORD_TIME_DRAINED : v1::RECORD_TIME_EVENT_FIELD);
    h.set_record_time_field(session.time_field());
  } else {
    h.set_recorded_cpus(session.array().candidates().to_string());
    h.set_record_time(session.time_field().empty() ? v1::RECORD_TIME_PERF_SAMPLE : v1::RECORD_TIME_EVENT_FIELD);
    h.set_record_time_field(session.time_field());
  }
  h.set_output_map_name(session.output_map_name());
  h.set_clock(static_cast<v1::Clock>(clockid + 1));
  h.set_start_time_ns(clock_ns(clockid));
  h.set_start_realtime_ns(clock_ns(CLOCK_REALTIME));
  if (session.ringbuf() == nullptr) h.set_sample_type(session.array().sample_type());
  for (const auto& name : session.probe_names()) h.add_probes(name);
  for (const auto& schema : session.schemas()) *h.add_events() = schema;
  if (BpfRingbuf* ring = session.ringbuf()) {
    const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    h.mutable_ring()->set_data_pages(static_cast<std::uint32_t>(ring->data_size() / page));
    h.mutable_ring()->set_page_size(static_cast<std::uint32_t>(page));
  } else {
    const auto& g = session.array().geometry();
    h.mutable_ring()->set_data_pages(static_cast<std::uint32_t>(g.data_pages));
    h.mutable_ring()->set_page_size(static_cast<std::uint32_t>(g.page_size));
    h.mutable_ring()->set_wakeup_bytes(static_cast<std::uint32_t>(g.wakeup_bytes));
  }
  for (const auto& arg : command) h.add_command(arg);
  h.set_recording_id(random_id());
  h.set_batch_watermarks(true);
  return h;
}

v1::TraceTrailer make_trace_trailer(CaptureSession& session) {
  v1::TraceTrailer t;
  t.set_end_time_ns(clock_ns(session.clockid()));
  if (BpfRingbuf* ring = session.ringbuf()) {
    const auto c = session.stats().snapshot(0);
    auto* out = t.add_cpus();
    out->set_cpu(kRingbufCpu);
    out->set_samples(c.samples);
    out->set_sample_bytes(c.sample_bytes);
    out->set_corrupt(c.corrupt);
    out->set_fill_high_water(c.fill_high_water);
    out->set_ring_size(ring->data_size());
    out->set_wakeups(c.wakeups);
    out->set_passes(c.passes);
    out->set_lost_not_counted(true);
    out->set_discarded(c.discarded);
    return t;
  }
  for (unsigned cpu : session.array().candidates().cpus()) {
    const auto c = session.stats().snapshot(cpu);
    auto* out = t.add_cpus();
    out->set_cpu(cpu);
    out->set_samples(c.samples);
    out->set_sample_bytes(c.sample_bytes);
    out->set_lost(c.lost);
    out->set_corrupt(c.corrupt);
    out->set_fill_high_water(c.fill_high_water);
    out->set_ring_size(session.array().geometry().data_bytes);
    out->set_wakeups(c.wakeups);
    out->set_passes(c.passes);
    out->set_unwritable(c.unwritable);
    out->set_unwritable_errno(c.unwritable_errno);
    out->set_untracked_syscalls(c.untracked);
  }
  return t;
}

}  // namespace perfstream::cli
