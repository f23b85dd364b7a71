#include "collector/read/reader_pool.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <cstring>
#include <future>
#include <thread>

#include "collector/read/ring_drain.hpp"

namespace perfstream {

namespace asio = boost::asio;

// ---------------------------------------------------------------------------------------------------------
// HotplugTracker

HotplugTracker::HotplugTracker(Options options, HotplugEvents& events, HotplugReaders& readers)
    : options_(std::move(options)), events_(events), readers_(readers) {
  if (options_.readers == 0) options_.readers = 1;
}

void HotplugTracker::deal_initial(std::vector<std::unique_ptr<CpuRing>> rings) {
  unsigned next = 0;
  for (auto& ring : rings) hand_over(std::move(ring), next++ % options_.readers);
}

void HotplugTracker::check() {
  if (stopped_ || !options_.follow) return;
  auto online = CpuSet::online(options_.sysfs_cpu_dir);
  if (!online) {
    log("hotplug: " + online.error().message());
    return;
  }
  retire_gone(*online);
  open_arrived(*online);
}

void HotplugTracker::stop() {
  stopped_ = true;
  owned_.clear();
}

CpuSet HotplugTracker::attached() const {
  std::vector<unsigned> cpus;
  for (const auto& [cpu, owned] : owned_) cpus.push_back(cpu);
  return CpuSet(std::move(cpus));
}

// Gone offline, or gone and back with a dead event: stop BPF output into the slot now, then let the owner
// drain what is left and close the ring.
void HotplugTracker::retire_gone(const CpuSet& online) {
  for (auto it = owned_.begin(); it != owned_.end();) {
    const unsigned cpu = it->first;
    const std::string why = why_retire(cpu, it->second, online);
    if (why.empty()) {
      ++it;
      continue;
    }
    if (auto st = events_.clear_slot(cpu); !st) log(st.error().message());
    readers_.queue_retire(it->second.reader, cpu);
    log("CPU " + std::to_string(cpu) + " " + why);
    it = owned_.erase(it);  // closes the tracker's fd on the old event
  }
}

// Why `cpu`'s ring must go, or "" when it stays.
std::string HotplugTracker::why_retire(unsigned cpu, const Owned& owned, const CpuSet& online) {
  if (!online.contains(cpu)) return "went offline: its ring is drained and closed";
  auto live = events_.is_live(owned.event, cpu);
  if (!live) {
    log("hotplug: " + live.error().message());
    return {};
  }
  if (*live) return {};
  return "went offline and came back since the last check: its old event stopped for good; "
         "draining and closing its ring, then opening a new one";
}

// Came online (or came back after a retire above): a new event, ring and slot.
void HotplugTracker::open_arrived(const CpuSet& online) {
  const CpuSet arrived = options_.candidates.intersect(online);  // kept: cpus() refers into it
  for (unsigned cpu : arrived.cpus()) {
    if (owned_.count(cpu) != 0) continue;
    auto ring = events_.open_ring(cpu);
    if (!ring) {
      if (ring.error().errnum() == ENODEV) continue;  // went away again; next check
      log_once(cpu, ring.error().message());
      continue;
    }
    if (!hand_over(std::move(*ring), reader_for(cpu))) continue;
    last_failure_.erase(cpu);
    log("CPU " + std::to_string(cpu) + " is online: ring opened");
  }
}

// Gives a ring whose slot is filled to `reader`, keeping a fd on its event for later checks. Without that fd
// the event could never be checked: the slot is cleared again and the ring drained once and closed, and the
// CPU stays unowned so that the next check opens it again. False in that case.
bool HotplugTracker::hand_over(std::unique_ptr<CpuRing> ring, unsigned reader) {
  const unsigned cpu = ring->cpu;
  last_reader_[cpu] = reader;  // whatever happens below is queued there: a later ring must queue behind it
  UniqueFd event;
  if (options_.follow) {
    auto dup = events_.dup_event(*ring);
    if (!dup) {
      if (auto st = events_.clear_slot(cpu); !st) log(st.error().message());
      readers_.queue_close(reader, std::move(ring));
      log_once(cpu, "CPU " + std::to_string(cpu) + ": cannot keep a fd on its event to check it later (" +
                        dup.error().message() +
                        "): its map slot is cleared and its ring drained once and closed; the next hotplug "
                        "check opens a new one");
      return false;
    }
    event = std::move(*dup);
  }
  owned_[cpu] = Owned{reader, std::move(event)};
  readers_.queue_adopt(reader, std::move(ring));
  return true;
}

// The reader that last had the CPU, so its retire and this adopt run in order on one thread (counters and
// consumer calls for the CPU stay in order); else the reader with the fewest CPUs.
unsigned HotplugTracker::reader_for(unsigned cpu) const {
  if (auto it = last_reader_.find(cpu); it != last_reader_.end()) return it->second;
  std::vector<unsigned> load(options_.readers, 0);
  for (const auto& [c, owned] : owned_) ++load[owned.reader];
  unsigned best = 0;
  for (unsigned i = 1; i < load.size(); ++i) {
    if (load[i] < load[best]) best = i;
  }
  return best;
}

// Logs a failure for `cpu` unless it is the one logged last time: a check every 250 ms repeats it.
void HotplugTracker::log_once(unsigned cpu, const std::string& message) {
  auto& last = last_failure_[cpu];
  if (last != message) log(message);
  last = message;
}

void HotplugTracker::log(const std::string& message) const {
  if (options_.log) options_.log(message);
}

// ---------------------------------------------------------------------------------------------------------
// ReaderPool

namespace {

// HotplugEvents on a PerfEventArray and the kernel.
class ArrayEvents : public HotplugEvents {
 public:
  explicit ArrayEvents(PerfEventArray& array) : array_(array) {}

  Result<std::unique_ptr<CpuRing>> open_ring(unsigned cpu) override { return array_.open_ring(cpu); }
  Status clear_slot(unsigned cpu) override { return array_.clear_slot(cpu); }
  Result<UniqueFd> dup_event(const CpuRing& ring) override {
    const int fd = fcntl(ring.event_fd.get(), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return Error::from_errno("dup of its event fd", errno);
    return UniqueFd(fd);
  }
  Result<bool> is_live(const UniqueFd& event, unsigned cpu) override { return event_is_live(event.get(), cpu); }

 private:
  PerfEventArray& array_;
};

}  // namespace

// One reader thread, its io_context and the rings it owns. Every member but the io_context is touched only
// on the reader's own thread (work reaches it through post()).
class ReaderPool::Reader {
 public:
  Reader(ReaderPool& pool, unsigned index, std::unique_ptr<RecordConsumer> consumer)
      : pool_(pool),
        index_(index),
        consumer_(std::move(consumer)),
        io_(1),
        work_(asio::make_work_guard(io_)),
        flush_timer_(io_),
        hotplug_timer_(io_) {}

  asio::io_context& io() { return io_; }
  RecordConsumer& consumer() { return *consumer_; }

  void run_thread() {
    thread_ = std::thread([this] {
      const auto& pins = pool_.options_.pin_cpus;
      if (!pins.empty()) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(pins[index_ % pins.size()], &set);
        if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0) {
          pool_.log("reader " + std::to_string(index_) + ": cannot pin to CPU " +
                    std::to_string(pins[index_ % pins.size()]));
        }
      }
      io_.run();
    });
  }
  void join() {
    if (thread_.joinable()) thread_.join();
  }

  // Takes a ring: its event fd moves into a descriptor that is armed. Cannot fail, so the tracker's view
  // that this reader owns the CPU stays true. Reader thread.
  void adopt(std::unique_ptr<CpuRing> ring) {
    const unsigned cpu = ring->cpu;
    if (finished_) {
      // Defensive: stop() stops the tracker before it queues finish, so no adopt should come after it. Arming
      // a ring now would keep run() from ever returning: deliver what it holds and close it. No ring can have
      // been opened for the CPU since (the tracker is stopped), so clearing the slot is safe.
      (void)pool_.array_.clear_slot(cpu);
      close_unwatched(std::move(ring));
      return;
    }
    asio::posix::stream_descriptor descriptor(io_);
    boost::system::error_code ec;
    descriptor.assign(ring->event_fd.get(), ec);
    if (ec) {
      // The ring stays (and keeps its fd): the flush timer drains it.
      pool_.log("CPU " + std::to_string(cpu) + ": cannot wait on its ring: " + ec.message() +
                "; the flush timer keeps draining it");
    } else {
      (void)ring->event_fd.release();  // the descriptor owns it now
    }
    auto watched = std::make_unique<Watched>(Watched{std::move(ring), std::move(descriptor)});
    CpuCounters& counters = pool_.stats_.cpu(cpu);
    counters.ring_size.store(watched->ring->ring.data_size(), std::memory_order_relaxed);
    counters.attached.store(1, std::memory_order_relaxed);
    counters.attach_count.fetch_add(1, std::memory_order_relaxed);
    rings_[cpu] = std::move(watched);
    consumer_->on_ring_opened(cpu);
    // Records written before the wait is armed produce no new edge: drain them now.
    drain(cpu);
    arm(cpu);
  }

  // A ring that is never watched (its event could not be tracked, or the pool is stopping): deliver what it
  // holds and close it. Its slot was cleared by the caller. Reader thread.
  void close_unwatched(std::unique_ptr<CpuRing> ring) {
    const unsigned cpu = ring->cpu;
    consumer_->on_ring_opened(cpu);
    const DrainResult result =
        drain_ring(ring->ring, cpu, pool_.decoder_, *consumer_, pool_.stats_.cpu(cpu), pool_.options_.timing);
    if (result.corrupt) log_corrupt(cpu);
    ring.reset();
    consumer_->on_ring_closed(cpu);
  }

  // Final passes, then close. The map slot was cleared by the caller. Reader thread.
  void retire(unsigned cpu) {
    auto it = rings_.find(cpu);
    if (it == rings_.end()) return;
    boost::system::error_code ignored;
    it->second->descriptor.cancel(ignored);
    // Two passes: the second picks up what was written while the first ran, before the slot was cleared.
    drain(cpu);
    drain(cpu);
    CpuCounters& counters = pool_.stats_.cpu(cpu);
    counters.attached.store(0, std::memory_order_relaxed);
    counters.ring_size.store(0, std::memory_order_relaxed);
    rings_.erase(it);
    consumer_->on_ring_closed(cpu);
  }

  void drain_all() {
    for (auto& [cpu, watched] : rings_) drain(cpu);
  }

  std::vector<unsigned> cpus() const {
    std::vector<unsigned> out;
    for (const auto& [cpu, watched] : rings_) out.push_back(cpu);
    return out;
  }

  void start_timers() {
    arm_flush_timer();
    if (index_ == 0 && pool_.options_.hotplug_interval.count() > 0) arm_hotplug_timer();
  }

  // Cancels the timers, closes every ring after its final passes, and lets run() return. Reader thread.
  void finish() {
    finished_ = true;
    flush_timer_.cancel();
    hotplug_timer_.cancel();
    for (unsigned cpu : cpus()) {
      if (auto st = pool_.array_.clear_slot(cpu); !st) pool_.log(st.error().message());
      retire(cpu);
    }
    consumer_->on_stop();
    work_.reset();
  }

 private:
  struct Watched {
    std::unique_ptr<CpuRing> ring;
    asio::posix::stream_descriptor descriptor;  // owns the ring's event fd; destroyed (closed) before the ring
  };

  void drain(unsigned cpu) {
    auto it = rings_.find(cpu);
    if (it == rings_.end()) return;
    const DrainResult result =
        drain_ring(it->second->ring->ring, cpu, pool_.decoder_, *consumer_, pool_.stats_.cpu(cpu),
                   pool_.options_.timing);
    if (result.corrupt) log_corrupt(cpu);
  }

  void log_corrupt(unsigned cpu) {
    pool_.log("CPU " + std::to_string(cpu) + ": corrupt record header in the ring; skipped to the kernel's head");
  }

  void arm(unsigned cpu) {
    auto it = rings_.find(cpu);
    if (it == rings_.end() || !it->second->descriptor.is_open()) return;
    it->second->descriptor.async_wait(asio::posix::descriptor_base::wait_read,
                                      [this, cpu](const boost::system::error_code& ec) {
                                        if (ec == asio::error::operation_aborted) return;
                                        if (rings_.find(cpu) == rings_.end()) return;
                                        if (ec) {
                                          pool_.log("CPU " + std::to_string(cpu) + ": waiting on its ring: " +
                                                    ec.message() + "; the flush timer keeps draining it");
                                          drain(cpu);
                                          return;
                                        }
                                        pool_.stats_.cpu(cpu).wakeups.fetch_add(1, std::memory_order_relaxed);
                                        drain(cpu);
                                        arm(cpu);
                                      });
  }

  void arm_flush_timer() {
    flush_timer_.expires_after(pool_.options_.flush_interval);
    flush_timer_.async_wait([this](const boost::system::error_code& ec) {
      // A wait that had already completed when finish() cancelled the timer still runs, with no error:
      // re-arming it then would keep run() from ever returning.
      if (ec || finished_) return;
      drain_all();
      consumer_->on_tick();
      arm_flush_timer();
    });
  }

  // Reader 0 only: this thread is the hotplug owner.
  void arm_hotplug_timer() {
    hotplug_timer_.expires_after(pool_.options_.hotplug_interval);
    hotplug_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec || finished_) return;  // as for the flush timer
      pool_.hotplug_.check();
      arm_hotplug_timer();
    });
  }

  ReaderPool& pool_;
  unsigned index_;
  std::unique_ptr<RecordConsumer> consumer_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  asio::steady_timer flush_timer_;
  asio::steady_timer hotplug_timer_;
  std::map<unsigned, std::unique_ptr<Watched>> rings_;
  bool finished_ = false;  // finish() ran: no ring is armed again
  std::thread thread_;
};

Result<std::unique_ptr<ReaderPool>> ReaderPool::create(PerfEventArray& array, const ReaderOptions& options,
                                                       const ConsumerFactory& make_consumer, RingStats& stats) {
  if (options.threads == 0) return Error("reader threads: need at least 1");
  if (options.flush_interval.count() <= 0) return Error("flush interval: must be positive");
  if (array.candidates().max() >= stats.slots()) {
    return Error("ring statistics have " + std::to_string(stats.slots()) + " CPU slots but CPU " +
                 std::to_string(array.candidates().max()) + " is a candidate");
  }
  auto decoder = RecordDecoder::create(array.sample_type(), array.sample_id_all());
  if (!decoder) return decoder.error();

  std::unique_ptr<ReaderPool> pool(new ReaderPool(array, options, *decoder, stats));
  for (unsigned i = 0; i < options.threads; ++i) {
    auto consumer = make_consumer(i);
    if (!consumer) return Error("reader " + std::to_string(i) + ": the consumer factory returned nothing");
    pool->readers_.push_back(std::make_unique<Reader>(*pool, i, std::move(consumer)));
  }
  for (unsigned cpu : array.offline_at_start().cpus()) {
    pool->log("CPU " + std::to_string(cpu) + " is offline: no ring" +
              (options.hotplug_interval.count() > 0 ? " until it comes online" : ""));
  }
  // No reader thread runs yet: this thread stands in for the hotplug owner. The adopts run once the threads
  // start (posted work).
  pool->hotplug_.deal_initial(array.take_initial_rings());
  return pool;
}

ReaderPool::ReaderPool(PerfEventArray& array, const ReaderOptions& options, RecordDecoder decoder, RingStats& stats)
    : array_(array),
      options_(options),
      decoder_(decoder),
      stats_(stats),
      events_(std::make_unique<ArrayEvents>(array)),
      hotplug_(HotplugTracker::Options{array.candidates(), array.sysfs_cpu_dir(), options.threads,
                                       options.hotplug_interval.count() > 0,
                                       [this](const std::string& message) { log(message); }},
               *events_, *this) {}

ReaderPool::~ReaderPool() { stop(); }

void ReaderPool::start() {
  if (started_) return;
  started_ = true;
  for (auto& reader : readers_) {
    Reader* r = reader.get();
    asio::post(r->io(), [r] { r->start_timers(); });
    r->run_thread();
  }
  // Every ring opened at creation was queued for adoption before the timers: once this returns, each is
  // drained of what it held and armed, so records written from now on wait for a wakeup, a flush or stop.
  run_on_all_and_wait([](Reader&) {});
}

void ReaderPool::run_on_all_and_wait(const std::function<void(Reader&)>& work) {
  std::vector<std::future<void>> done;
  for (auto& reader : readers_) {
    auto promise = std::make_shared<std::promise<void>>();
    done.push_back(promise->get_future());
    Reader* r = reader.get();
    asio::post(r->io(), [r, promise, &work] {
      work(*r);
      promise->set_value();
    });
  }
  if (!started_) {
    // No threads yet: run the queued work here.
    for (auto& reader : readers_) {
      reader->io().restart();
      reader->io().poll();
    }
  }
  for (auto& f : done) f.wait();
}

void ReaderPool::run_on_hotplug_owner_and_wait(const std::function<void()>& work) const {
  std::promise<void> done;
  Reader* r0 = readers_.at(0).get();
  asio::post(r0->io(), [&work, &done] {
    work();
    done.set_value();
  });
  if (!started_) {
    // No threads yet: this thread stands in for reader 0's.
    r0->io().restart();
    r0->io().poll();
  }
  done.get_future().wait();
}

void ReaderPool::flush() {
  if (stopped_) return;
  run_on_all_and_wait([](Reader& r) { r.drain_all(); });
}

void ReaderPool::check_hotplug_now() {
  if (stopped_ || readers_.empty()) return;
  run_on_hotplug_owner_and_wait([this] { hotplug_.check(); });
  // Let the queued adopt/retire work finish everywhere.
  run_on_all_and_wait([](Reader&) {});
}

void ReaderPool::stop() {
  if (stopped_) return;
  // Hotplug first: once the tracker has stopped, no check opens a ring or queues an adopt, and every adopt it
  // queued before runs ahead of the finish queued below (a reader runs its queue in order).
  if (readers_.empty()) {
    hotplug_.stop();  // create failed before any reader existed: no thread, no queue
  } else {
    run_on_hotplug_owner_and_wait([this] { hotplug_.stop(); });
  }
  stopped_ = true;
  for (auto& reader : readers_) {
    Reader* r = reader.get();
    asio::post(r->io(), [r] { r->finish(); });
  }
  if (!started_) {
    for (auto& reader : readers_) {
      reader->io().restart();
      reader->io().run();
    }
  }
  for (auto& reader : readers_) reader->join();
}

unsigned ReaderPool::reader_count() const { return static_cast<unsigned>(readers_.size()); }

RecordConsumer& ReaderPool::consumer(unsigned reader_index) { return readers_.at(reader_index)->consumer(); }

CpuSet ReaderPool::attached_cpus() const {
  // No reader thread runs before start or after stop: the tracker can be read here.
  if (!started_ || stopped_) return hotplug_.attached();
  CpuSet cpus;
  run_on_hotplug_owner_and_wait([this, &cpus] { cpus = hotplug_.attached(); });
  return cpus;
}

void ReaderPool::log(const std::string& message) const {
  if (options_.log) options_.log->line(message);
}

void ReaderPool::queue_adopt(unsigned reader, std::unique_ptr<CpuRing> ring) {
  Reader* r = readers_.at(reader).get();
  asio::post(r->io(), [r, ring = std::move(ring)]() mutable { r->adopt(std::move(ring)); });
}

void ReaderPool::queue_retire(unsigned reader, unsigned cpu) {
  Reader* r = readers_.at(reader).get();
  asio::post(r->io(), [r, cpu] { r->retire(cpu); });
}

void ReaderPool::queue_close(unsigned reader, std::unique_ptr<CpuRing> ring) {
  Reader* r = readers_.at(reader).get();
  asio::post(r->io(), [r, ring = std::move(ring)]() mutable { r->close_unwatched(std::move(ring)); });
}

}  // namespace perfstream
