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
    auto ring = BpfRingbuf::open(first.events_map_fd(), first.events_map_name());
    if (!ring) return ring.error().with_context(first.name());
    session->ringbuf_ = std::make_unique<BpfRingbuf>(std::move(*ring));
    session->stats_ = std::make_unique<RingStats>(1);
    if (!session->schemas_.empty()) {
      if (const v1::Field* field = time_field_of(session->schemas_.front())) {
        session->time_field_ = field->name();
        session->ringbuf_timing_.time_offset = field->offset();
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
  auto array = PerfEventArray::create(first.events_map_fd(), first.events_map_name(), options.array);
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
