#include "collector/read/capture_session.hpp"

#include <bpf/bpf.h>
#include <unistd.h>

#include "collector/decode/payload_schema.hpp"

namespace perfstream {
namespace {

// The field of `schema` that holds a record's time: a fixed u64 with a timestamp's name.
const v1::Field* time_field_of(const v1::EventSchema& schema) {
  static constexpr const char* kNames[] = {"ts", "timestamp", "timestamp_ns", "time_ns", "ts_ns", "ktime_ns"};
  for (const char* name : kNames) {
    for (const auto& field : schema.fields()) {
      if (field.name() == name && field.size() == 8 && !field.variable() &&
          (field.type() == v1::Field::UNSIGNED || field.type() == v1::Field::SIGNED)) {
        return &field;
      }
    }
  }
  return nullptr;
}

// -m for an object whose output map turns out to be a BPF ring buffer: the size of its one ring, which the
// kernel wants as a power-of-two number of pages (max_entries, a u32). Pages and bytes round up, as a perf
// ring's size per CPU does; a total budget rounds down, so that it is never exceeded.
Result<std::uint32_t> ringbuf_bytes_for(const RingSize& size, std::size_t page_size) {
  std::uint64_t bytes = 0;
  switch (size.unit) {
    case RingSize::Unit::Default: return std::uint32_t{0};
    case RingSize::Unit::PagesPerCpu:
      bytes = size.value > (std::uint64_t{1} << 40) ? std::uint64_t{1} << 40 : size.value * page_size;
      break;
    case RingSize::Unit::BytesPerCpu:
    case RingSize::Unit::TotalBytes: bytes = size.value; break;
  }
  constexpr std::uint64_t kLargest = std::uint64_t{1} << 31;  // the largest power of two in a u32
  std::uint64_t rounded = page_size;
  if (size.unit == RingSize::Unit::TotalBytes) {
    if (bytes < page_size) {
      return Error("-m total:" + std::to_string(bytes) + ": a BPF ring buffer needs at least one page (" +
                   std::to_string(page_size) + " bytes)");
    }
    while (rounded * 2 <= bytes && rounded * 2 <= kLargest) rounded *= 2;
  } else {
    while (rounded < bytes && rounded < kLargest) rounded *= 2;
    if (rounded < bytes) {
      return Error("-m: a BPF ring buffer holds at most 2 GiB (its max_entries is a 32-bit power of two)");
    }
  }
  return static_cast<std::uint32_t>(rounded);
}

// Flags that mean something for per-CPU perf rings and nothing for one BPF ring buffer: refused, with why,
// rather than silently ignored.
Status refuse_perf_ring_flags(const CaptureOptions& options, const std::string& map_name) {
  const std::string rb = "the output map '" + map_name + "' is a BPF ring buffer: ";
  if (options.array.wakeup_bytes != 0) {
    return Error("--wakeup: " + rb +
                 "its BPF program decides when the reader is woken (bpf_ringbuf_submit's flags: by default when "
                 "the reader has caught up, or BPF_RB_FORCE_WAKEUP / BPF_RB_NO_WAKEUP), not the reader; leave "
                 "--wakeup out (--flush-interval bounds how long records wait)");
  }
  if (options.array.cpus) {
    return Error("-C: " + rb +
                 "one ring shared by every CPU, and its records do not say which CPU wrote them, so no CPU can be "
                 "left out; filter in the BPF program instead (a --set global it checks)");
  }
  if (options.sample_time == SampleTimeSource::Kernel) {
    return Error("--sample-time kernel: " + rb +
                 "the kernel gives its records no time; they are timed by their timestamp field, or when drained");
  }
  if (options.readers.threads > 1) {
    return Error("--threads " + std::to_string(options.readers.threads) + ": " + rb +
                 "one ring with one consumer position, read by one thread (as libbpf's ring_buffer and "
                 "cilium/ebpf's ringbuf.Reader read it); leave --threads out");
  }
  return {};
}

// Where every event type of the recording keeps a BPF-written time on `clockid`, or nullopt when one has
// none (then the kernel must add PERF_SAMPLE_TIME). `name` gets the field's name(s).
std::optional<SampleTiming> payload_timing(const std::vector<v1::EventSchema>& schemas, std::size_t probes,
                                           int clockid, std::string& name) {
  // bpf_ktime_get_ns is CLOCK_MONOTONIC: a field on any other clock cannot be compared with the recording's.
  if (clockid != CLOCK_MONOTONIC || schemas.empty() || schemas.size() != probes) return std::nullopt;
  SampleTiming timing;
  timing.clock = static_cast<clockid_t>(clockid);
  std::string names;
  for (const auto& schema : schemas) {
    const v1::Field* field = time_field_of(schema);
    if (field == nullptr) return std::nullopt;
    timing.fields.push_back({schema.kind(), field->offset()});
    if (names.empty()) names = field->name();
    else if (("," + names + ",").find("," + field->name() + ",") == std::string::npos) names += "," + field->name();
  }
  // All at one offset: no need to look at each record's kind.
  bool same = true;
  for (const auto& f : timing.fields) same = same && f.offset == timing.fields.front().offset;
  if (same) timing.fields.resize(1);
  name = names;
  return timing;
}

}  // namespace

Result<std::unique_ptr<CaptureSession>> CaptureSession::open(const CaptureOptions& options) {
  std::unique_ptr<CaptureSession> session(new CaptureSession());
  session->options_ = options;
  if (options.probes.empty() == options.object_path.empty()) {
    return Error("choose what to trace: --probe NAME (see perfstream probes) or --object FILE");
  }
  ProbeOptions probe_options;
  probe_options.map_name = options.map_name;
  probe_options.global_settings = options.global_settings;
  probe_options.ringbuf_bytes = options.ringbuf_bytes;
  // -m sizes a ring buffer output map too (bpf_map__set_max_entries before load, as libbpf loaders do); a
  // perf event array's probe ignores it. Which kind the output map is shows only once the object is opened,
  // so a size no ring buffer can have is an error only then.
  std::optional<Error> ringbuf_size_error;
  if (probe_options.ringbuf_bytes == 0) {
    const long page = ::sysconf(_SC_PAGESIZE);
    auto bytes = ringbuf_bytes_for(options.array.size, page > 0 ? static_cast<std::size_t>(page) : 4096);
    if (bytes) {
      probe_options.ringbuf_bytes = *bytes;
    } else {
      ringbuf_size_error = bytes.error();
    }
  }
  probe_options.filter_tgids = options.filter_tgids;
  probe_options.filter_tids = options.filter_tids;
  probe_options.filter_uid = options.filter_uid;
  probe_options.filter_comm = options.filter_comm;
  if (!options.trace_self) probe_options.ignore_tgid = static_cast<std::uint32_t>(getpid());
  probe_options.attach = false;  // attached once every CPU's ring is in the map, so nothing is lost at start
  if (options.follow_tgid) {
    auto tracker = BpfProbe::load_follow_tracker();
    if (!tracker) return tracker.error().with_context("--follow");
    auto followed = (*tracker)->map_fd("ps_followed");
    if (!followed) return followed.error();
    const __u32 tgid = *options.follow_tgid;
    const __u8 one = 1;
    if (bpf_map_update_elem(*followed, &tgid, &one, BPF_ANY) != 0) {
      return Error::from_errno("--follow: adding process " + std::to_string(tgid) + " to the followed set", errno);
    }
    probe_options.followed_map_fd = *followed;
    session->follow_tracker_ = std::move(*tracker);
  }

  auto add_schema = [&](BpfProbe& probe, std::uint32_t kind, const std::string& name) -> Status {
    Result<std::optional<v1::EventSchema>> schema = std::optional<v1::EventSchema>();
    if (options.event_type.empty()) {
      schema = schema_of_object(probe.object());
    } else if (auto named = schema_of_event_type(probe.object(), name, options.event_type, options.event_btf_path)) {
      schema = std::optional<v1::EventSchema>(std::move(*named));
    } else {
      return named.error();
    }
    if (!schema) return schema.error().with_context("reading the record layout of " + name);
    if (!*schema) return {};
    (*schema)->set_kind(kind);
    (*schema)->set_name(name);
    session->schemas_.push_back(std::move(**schema));
    return {};
  };

  if (!options.object_path.empty()) {
    auto probe = BpfProbe::load_file(options.object_path, probe_options);
    if (!probe) return probe.error();
    if (auto st = add_schema(**probe, 0, options.object_path); !st) return st.error();
    session->probes_.push_back(std::move(*probe));
  } else {
    for (const auto& name : options.probes) {
      for (const auto& loaded : session->probes_) {
        if (loaded->name() == name) return Error("probe '" + name + "' is given twice");
      }
      if (!session->probes_.empty()) probe_options.shared_map_fd = session->probes_.front()->events_map_fd();
      auto probe = BpfProbe::load_builtin(name, probe_options);
      if (!probe) return probe.error();
      std::uint32_t kind = 0;
      for (const auto& info : builtin_probes()) {
        if (name == info.name) kind = info.event_kind;
      }
      if (auto st = add_schema(**probe, kind, name); !st) return st.error();
      session->probes_.push_back(std::move(*probe));
    }
  }

  BpfProbe& first = *session->probes_.front();
  session->output_map_name_ = first.events_map_name();
  if (first.events_map_is_ringbuf()) {
    if (ringbuf_size_error) return *ringbuf_size_error;
    if (auto st = refuse_perf_ring_flags(options, first.events_map_name()); !st) return st.error();
    auto ring = BpfRingbuf::open(first.events_map_fd(), first.events_map_name());
    if (!ring) return ring.error().with_context(first.name());
    session->ringbuf_ = std::make_unique<BpfRingbuf>(std::move(*ring));
    session->stats_ = std::make_unique<RingStats>(1);
    if (!session->schemas_.empty()) {
      if (const v1::Field* field = time_field_of(session->schemas_.front())) {
        session->time_field_ = field->name();
        session->ringbuf_timing_.fields = {{session->schemas_.front().kind(), field->offset()}};
      }
    }
    if (session->follow_tracker_) {
      if (auto st = session->follow_tracker_->attach(); !st) return st.error();
    }
    for (auto& probe : session->probes_) {
      if (auto st = probe->attach(); !st) return st.error();
    }
    return session;
  }
  EventArrayOptions array_options = options.array;
  if (options.sample_time == SampleTimeSource::Event) {
    if (auto timing = payload_timing(session->schemas_, session->probes_.size(), options.array.clockid,
                                     session->time_field_)) {
      array_options.sample_time = false;
      session->options_.readers.timing = std::move(*timing);
    }
  }
  auto array = PerfEventArray::create(first.events_map_fd(), first.events_map_name(), array_options);
  if (!array) return array.error();
  session->array_ = std::move(*array);
  auto possible = CpuSet::possible(options.array.sysfs_cpu_dir);
  if (!possible) return possible.error();
  session->stats_ = std::make_unique<RingStats>(possible->max() + 1);
  if (session->follow_tracker_) {
    if (auto st = session->follow_tracker_->attach(); !st) return st.error();
  }
  for (auto& probe : session->probes_) {
    if (auto st = probe->attach(); !st) return st.error();
  }
  return session;
}

CaptureSession::~CaptureSession() { stop(); }

int CaptureSession::clockid() const { return array_ ? array_->clockid() : CLOCK_MONOTONIC; }

Status CaptureSession::start(const ConsumerFactory& make_consumer) {
  if (pool_ || ringbuf_reader_) return Error("capture already started");
  if (ringbuf_) {
    BpfProbe& first = *probes_.front();
    auto reader = RingbufReader::create(*ringbuf_, first.events_map_fd(), first.events_map_name(), ringbuf_timing_,
                                        options_.readers, make_consumer, stats_->cpu(0));
    if (!reader) return reader.error();
    ringbuf_reader_ = std::move(*reader);
    ringbuf_reader_->start();
    return {};
  }
  auto pool = ReaderPool::create(*array_, options_.readers, make_consumer, *stats_);
  if (!pool) return pool.error();
  pool_ = std::move(*pool);
  pool_->start();
  return {};
}

void CaptureSession::flush() {
  if (pool_) pool_->flush();
  if (ringbuf_reader_) ringbuf_reader_->flush();
}

void CaptureSession::stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& probe : probes_) probe->detach();
  if (follow_tracker_) follow_tracker_->detach();
  if (pool_) pool_->stop();
  if (ringbuf_reader_) ringbuf_reader_->stop();
  if (stats_) {
    if (auto st = read_output_failures(); !st) output_failures_error_ = st.error().message();
  }
}

Status CaptureSession::read_output_failures() {
  std::vector<OutputFailures> sum(stats_->slots());
  for (const auto& probe : probes_) {
    auto failures = probe->output_failures();
    if (!failures) return failures.error();
    for (std::size_t cpu = 0; cpu < failures->size() && cpu < sum.size(); ++cpu) {
      const OutputFailures& f = (*failures)[cpu];
      sum[cpu].unwritable += f.unwritable;
      sum[cpu].state_full += f.state_full;
      if (f.last_errno != 0) sum[cpu].last_errno = f.last_errno;
    }
  }
  for (unsigned cpu = 0; cpu < sum.size(); ++cpu) {
    // The ENOSPC count (ring_full) is left out: the kernel reports those records as lost already.
    stats_->cpu(cpu).unwritable.store(sum[cpu].unwritable, std::memory_order_relaxed);
    stats_->cpu(cpu).unwritable_errno.store(sum[cpu].last_errno, std::memory_order_relaxed);
    stats_->cpu(cpu).untracked.store(sum[cpu].state_full, std::memory_order_relaxed);
  }
  return {};
}

bool CaptureSession::has_probe(const std::string& name) const {
  for (const auto& p : probes_) {
    if (p->name() == name) return true;
  }
  return false;
}

std::vector<std::string> CaptureSession::probe_names() const {
  std::vector<std::string> names;
  for (const auto& p : probes_) names.push_back(p->name());
  return names;
}

}  // namespace perfstream
