#include "collector/read/ring_stats.hpp"

#include <algorithm>

namespace perfstream {

CpuSnapshot RingStats::snapshot(unsigned cpu) const {
  const CpuCounters& c = cpus_[cpu];
  auto get = [](const auto& v) { return v.load(std::memory_order_relaxed); };
  CpuSnapshot s;
  s.cpu = cpu;
  s.samples = get(c.samples);
  s.sample_bytes = get(c.sample_bytes);
  s.ring_bytes = get(c.ring_bytes);
  s.lost = get(c.lost);
  s.lost_notices = get(c.lost_notices);
  s.corrupt = get(c.corrupt);
  s.corrupt_bytes = get(c.corrupt_bytes);
  s.malformed = get(c.malformed);
  s.other_records = get(c.other_records);
  s.discarded = get(c.discarded);
  s.wakeups = get(c.wakeups);
  s.passes = get(c.passes);
  s.fill_bytes = get(c.fill_bytes);
  s.fill_high_water = get(c.fill_high_water);
  s.ring_size = get(c.ring_size);
  s.unwritable = get(c.unwritable);
  s.unwritable_errno = get(c.unwritable_errno);
  s.untracked = get(c.untracked);
  s.attached = get(c.attached) != 0;
  s.attach_count = get(c.attach_count);
  return s;
}

CpuSnapshot RingStats::total() const {
  CpuSnapshot t;
  t.cpu = slots_;
  for (unsigned i = 0; i < slots_; ++i) {
    CpuSnapshot s = snapshot(i);
    t.samples += s.samples;
    t.sample_bytes += s.sample_bytes;
    t.ring_bytes += s.ring_bytes;
    t.lost += s.lost;
    t.lost_notices += s.lost_notices;
    t.corrupt += s.corrupt;
    t.corrupt_bytes += s.corrupt_bytes;
    t.malformed += s.malformed;
    t.other_records += s.other_records;
    t.discarded += s.discarded;
    t.wakeups += s.wakeups;
    t.passes += s.passes;
    t.fill_bytes += s.fill_bytes;
    t.fill_high_water = std::max(t.fill_high_water, s.fill_high_water);
    t.ring_size += s.ring_size;
    t.unwritable += s.unwritable;
    if (s.unwritable_errno != 0) t.unwritable_errno = s.unwritable_errno;
    t.untracked += s.untracked;
    t.attached = t.attached || s.attached;
    t.attach_count += s.attach_count;
  }
  return t;
}

}  // namespace perfstream
