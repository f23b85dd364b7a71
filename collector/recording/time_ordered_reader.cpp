#include "collector/recording/time_ordered_reader.hpp"

#include <algorithm>

namespace perfstream::recording {
namespace {
constexpr std::uint64_t kRecordKind = std::uint64_t{1} << 63;
constexpr std::uint32_t kDenseCpus = 4096;  // CPUs numbered below this are looked up in a vector
}  // namespace

TimeOrderedReader::TimeOrderedReader(RecordingReader& reader, const MergeOptions& options)
    : reader_(reader), options_(options) {
  if (options_.cpus) {
    for (std::uint32_t cpu : *options_.cpus) {
      if (cpu >= kDenseCpus) continue;
      if (cpu_wanted_.size() <= cpu) cpu_wanted_.resize(cpu + 1, false);
      cpu_wanted_[cpu] = true;
    }
  }
}

TimeOrderedReader::~TimeOrderedReader() = default;

bool TimeOrderedReader::wanted_cpu(std::uint32_t cpu) const {
  if (!options_.cpus) return true;
  if (cpu < cpu_wanted_.size()) return cpu_wanted_[cpu];
  return std::find(options_.cpus->begin(), options_.cpus->end(), cpu) != options_.cpus->end();
}

bool TimeOrderedReader::wanted_time(std::uint64_t t) const {
  return (!options_.since_ns || t >= *options_.since_ns) && (!options_.until_ns || t < *options_.until_ns);
}

void TimeOrderedReader::queue(const Item& item, std::uint32_t cpu) {
  auto [it, added] = dense_.try_emplace(cpu, static_cast<std::uint32_t>(queues_.size()));
  if (added) {
    queues_.emplace_back();
    queue_cpu_.push_back(cpu);
  }
  const std::uint32_t d = it->second;
  std::deque<Item>& q = queues_[d];
  const auto head_first = heads_order();
  if (q.empty()) {
    q.push_back(item);
    heap_.push_back(d);
    std::push_heap(heap_.begin(), heap_.end(), head_first);
  } else if (!item.before(q.back())) {
    q.push_back(item);
  } else {
    // Out of order within its CPU (rare: an interrupt between a BPF program's timestamp and its output).
    auto pos = std::upper_bound(q.begin(), q.end(), item, [](const Item& a, const Item& b) { return a.before(b); });
    const bool new_head = pos == q.begin();
    q.insert(pos, item);
    if (new_head) std::make_heap(heap_.begin(), heap_.end(), head_first);
  }
}

const TimeOrderedReader::Item* TimeOrderedReader::earliest() const {
  return heap_.empty() ? nullptr : &queues_[heap_.front()].front();
}

TimeOrderedReader::Item TimeOrderedReader::take_earliest(std::uint32_t& cpu) {
  const auto head_first = heads_order();
  std::pop_heap(heap_.begin(), heap_.end(), head_first);
  const std::uint32_t d = heap_.back();
  std::deque<Item>& q = queues_[d];
  const Item item = q.front();
  q.pop_front();
  if (q.empty()) {
    heap_.pop_back();
  } else {
    std::push_heap(heap_.begin(), heap_.end(), head_first);
  }
  cpu = queue_cpu_[d];
  return item;
}

void TimeOrderedReader::release_slot(std::uint32_t slot) {
  Slot& s = slots_[static_cast<std::uint32_t>(slot - static_cast<std::uint32_t>(first_slot_))];
  if (--s.pending == 0) {
    held_ -= s.bytes;
    if (spare_.size() < 4) spare_.push_back(std::move(s.batch));
    s.batch.reset();
  }
  while (!slots_.empty() && slots_.front().pending == 0) {
    slots_.pop_front();
    ++first_slot_;
  }
}

bool TimeOrderedReader::read_batch() {
  if (options_.until_ns && watermark_ >= *options_.until_ns) return false;  // nothing before `until` can come
  std::unique_ptr<ReadBatch> rb;
  if (!spare_.empty()) {
    rb = std::move(spare_.back());
    spare_.pop_back();
  } else {
    rb = std::make_unique<ReadBatch>();
  }
  if (options_.before_read) options_.before_read();
  if (!reader_.next(*rb)) return false;
  const DecodedBatch& b = rb->batch;
  watermark_ = std::max(watermark_, b.watermark_ns);
  const auto slot = static_cast<std::uint32_t>(next_slot_);
  std::size_t pending = 0;
  for (std::uint32_t i = 0; i < b.lost.size(); ++i) {
    const LostEntry& l = b.lost[i];
    if (!wanted_cpu(l.cpu) || !wanted_time(l.sort_time_ns)) continue;
    queue(Item{l.sort_time_ns, arrival_++, slot, i}, l.cpu);
    ++pending;
  }
  const bool all_cpus = !options_.cpus;
  const bool all_times = !options_.since_ns && !options_.until_ns;
  for (std::uint32_t i = 0; i < b.size(); ++i) {
    if (!all_cpus && !wanted_cpu(b.cpus[i])) continue;
    if (!all_times && !wanted_time(b.times[i])) continue;
    queue(Item{b.times[i], kRecordKind | arrival_++, slot, i}, b.cpus[i]);
    ++pending;
  }
  const std::size_t bytes = b.memory_bytes() + pending * sizeof(Item);
  slots_.push_back(Slot{std::move(rb), pending + 1, bytes});  // +1: held until the end of this function
  ++next_slot_;
  held_ += bytes;
  peak_held_ = std::max(peak_held_, held_);
  release_slot(slot);
  return true;
}

bool TimeOrderedReader::next(Entry& out) {
  if (handed_slot_) {
    release_slot(*handed_slot_);
    handed_slot_.reset();
  }
  for (;;) {
    const Item* e = earliest();
    bool take = e != nullptr && (at_end_ || e->time < watermark_);
    if (!take && e != nullptr && held_ > options_.window_bytes) {
      take = true;
      window_full_ = true;
    }
    if (take) {
      std::uint32_t cpu = 0;
      const Item item = take_earliest(cpu);
      if (last_out_ && item.before(*last_out_)) ++late_;
      last_out_ = item;
      Slot& s = slots_[static_cast<std::uint32_t>(item.slot - static_cast<std::uint32_t>(first_slot_))];
      out.is_lost = item.is_lost();
      out.time_ns = item.time;
      out.cpu = cpu;
      out.batch = &s.batch->batch;
      out.piece = s.batch->piece;
      out.index = item.index;
      handed_slot_ = item.slot;
      return true;
    }
    if (at_end_) return false;
    if (!read_batch()) at_end_ = true;
  }
}

}  // namespace perfstream::recording
