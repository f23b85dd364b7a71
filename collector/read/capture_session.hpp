// CaptureSession: everything a command needs to capture records: the probes loaded and attached, one perf
// event array shared by all of them, the per-CPU statistics, and (once started) the reader pool.
//
// The first probe's perf event array becomes the shared one; every further probe is loaded with its own
// array replaced by that map (bpf_map__reuse_fd), so N probes still mean one ring per CPU, and their
// records interleave in time order per CPU. Record payloads tell the probes apart by their leading `kind`.
//
// Life cycle: open() loads and attaches (records start flowing into the rings at once, the rings hold them);
// start() makes the readers with the given consumers; stop() detaches the programs first, then drains every
// ring to the end and closes them (so nothing written before stop is lost). Teardown order is fixed here:
// readers, rings, array, probes.
//
// An object whose output map is a BPF ring buffer (BpfProbe::events_map_is_ringbuf) gets no perf event
// array: the ring buffer is mapped (BpfRingbuf) and drained by a RingbufReader into the same consumers, and
// stats() has one slot, 0, for it. Its records' time comes from the event's timestamp field when its schema
// has one (time_field(): a u64 named ts, timestamp, timestamp_ns, time_ns, ts_ns or ktime_ns), else from the
// drain (read/ringbuf_drain.hpp).
//
// Record times on perf rings. By default (SampleTimeSource::Event) the perf events are opened without
// PERF_SAMPLE_TIME when every event type of the recording has such a timestamp field (time_field_of; the
// built-in probes all have `ts`, set by ps_output_stamped just before output) and the recording's clock is
// CLOCK_MONOTONIC, bpf_ktime_get_ns's clock: each record's time is then read from its payload by the drain
// (read/ring_drain.hpp, SampleTiming) and time_field() names the field. Otherwise, or with
// SampleTimeSource::Kernel, the kernel adds PERF_SAMPLE_TIME and time_field() is "". Either way records keep
// their order across CPUs: the field is written before the output call, as the kernel's time is taken
// before the record is committed, and the readers' watermark margin (format/batching_consumer.hpp) covers
// the gap between a record's time and its commit in both cases.
//
// Records a program could not write at all (bpf_perf_event_output failed for a reason other than a full
// ring, so the kernel reports nothing) are counted by the built-in probes themselves (ps_output_failures);
// stop() reads those counters after the drain into RingStats' `unwritable`, so they are final then.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "collector/kernel/bpf_probe.hpp"
#include "collector/kernel/perf_event_array.hpp"
#include "collector/read/reader_pool.hpp"
#include "collector/read/ringbuf_reader.hpp"
#include "collector/read/ring_stats.hpp"
#include "collector/util/result.hpp"
#include "perfstream.pb.h"

namespace perfstream {

// Where a perf ring record's time comes from (--sample-time): the event's own timestamp field when every
// event type has one on the recording's clock, else the kernel's PERF_SAMPLE_TIME; or always the kernel's.
enum class SampleTimeSource { Event, Kernel };

struct CaptureOptions {
  std::vector<std::string> probes;        // built-in probe names
  std::string object_path;                // or one BPF object file
  std::string map_name;                   // its output map (perf event array or ring buffer), when it has several
  std::vector<GlobalSetting> global_settings;  // --set: the object's globals, written before load
  // --event-type: the struct its records are, from the object's BTF or else from event_btf_path (--btf);
  // empty: the struct the object declares with ps_event_layout, if any.
  std::string event_type;
  std::string event_btf_path;
  // Which tasks are recorded, filtered in BPF: see ProbeOptions (kernel/bpf_probe.hpp).
  std::vector<std::uint32_t> filter_tgids;  // -p
  std::vector<std::uint32_t> filter_tids;   // -t
  std::optional<std::uint32_t> filter_uid;  // -u
  std::optional<std::string> filter_comm;   // --comm
  bool trace_self = false;                // by default the collector's own process is filtered out
  std::optional<std::uint32_t> follow_tgid;  // trace only this process and its descendants (--follow)
  EventArrayOptions array;
  SampleTimeSource sample_time = SampleTimeSource::Event;
  // The size of the object's ring buffer, when its output map is one: a power-of-two number of pages; 0 takes
  // it from array.size (-m: pages and bytes round up to 2^n pages, a total:BUDGET rounds down) when that was
  // given, else keeps the object's own max_entries. array.wakeup_bytes, array.cpus and readers.threads > 1
  // have no meaning for one ring buffer: open() refuses them, saying why.
  std::uint32_t ringbuf_bytes = 0;
  ReaderOptions readers;
};

class CaptureSession {
 public:
  static Result<std::unique_ptr<CaptureSession>> open(const CaptureOptions& options);
  ~CaptureSession();

  Status start(const ConsumerFactory& make_consumer);
  void flush();
  void stop();
  // Copies the probes' failed-output counters into stats() (per CPU, summed over the probes). Called by
  // stop(); may be called meanwhile from the thread that owns the session (a status line).
  Status read_output_failures();
  // What went wrong reading them at stop, "" if nothing.
  const std::string& output_failures_error() const { return output_failures_error_; }

  // The perf event array; only when ringbuf() is null.
  PerfEventArray& array() { return *array_; }
  // The BPF ring buffer the object writes to, or null (then array() is the source).
  BpfRingbuf* ringbuf() { return ringbuf_.get(); }
  const std::string& output_map_name() const { return output_map_name_; }
  // The payload field that gives a record its time: for a ring buffer, "" when records are timed at the
  // drain; for perf rings, "" when the kernel's PERF_SAMPLE_TIME does (names joined by "," in the unlikely
  // case that event types name theirs differently).
  const std::string& time_field() const { return time_field_; }
  // The clock of every record time: the perf events' clockid, or CLOCK_MONOTONIC for a ring buffer.
  int clockid() const;
  RingStats& stats() { return *stats_; }
  ReaderPool* pool() { return pool_.get(); }
  const std::vector<std::unique_ptr<BpfProbe>>& probes() const { return probes_; }
  // The layouts of the records, one per probe that declares one (built-ins always do).
  const std::vector<v1::EventSchema>& schemas() const { return schemas_; }
  std::vector<std::string> probe_names() const;
  bool has_probe(const std::string& name) const;

 private:
  CaptureSession() = default;

  CaptureOptions options_;
  std::unique_ptr<BpfProbe> follow_tracker_;  // destroyed after the probes (declared before them)
  std::vector<std::unique_ptr<BpfProbe>> probes_;
  std::unique_ptr<PerfEventArray> array_;
  std::unique_ptr<RingStats> stats_;
  std::unique_ptr<ReaderPool> pool_;
  std::unique_ptr<BpfRingbuf> ringbuf_;            // instead of array_ and pool_
  std::unique_ptr<RingbufReader> ringbuf_reader_;  // destroyed before ringbuf_ (declared after it)
  SampleTiming ringbuf_timing_;
  std::string output_map_name_;
  std::string time_field_;
  std::vector<v1::EventSchema> schemas_;
  std::string output_failures_error_;
  bool stopped_ = false;
};

}  // namespace perfstream
