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

  // Takes a ring: arms its descriptor. Reader thread.
  void adopt(std::unique_ptr<CpuRing> ring) {
    const unsigned cpu = ring->cpu;
    if (finished_) {
      // A hotplug check opened this ring while the pool was stopping (its adopt was queued behind finish):
      // arming it would keep run() from ever returning. Deliver what it holds and close it.
      (void)pool_.array_.clear_slot(cpu);
      CpuCounters& counters = pool_.stats_.cpu(cpu);
      drain_ring(ring->ring, cpu, pool_.decoder_, *consumer_, counters);
      consumer_->on_ring_closed(cpu);
      return;
    }
    int dup_fd = fcntl(ring->event_fd.get(), F_DUPFD_CLOEXEC, 0);
    if (dup_fd < 0) {
      pool_.log("CPU " + std::to_string(cpu) + ": cannot watch its ring: dup: " + std::strerror(errno));
      return;
    }
    auto watched = std::make_unique<Watched>(Watched{std::move(ring), asio::posix::stream_descriptor(io_, dup_fd)});
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

  const CpuRing* ring_of(unsigned cpu) const {
    auto it = rings_.find(cpu);
    return it == rings_.end() ? nullptr : it->second->ring.get();
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
    asio::posix::stream_descriptor descriptor;
  };

  void drain(unsigned cpu) {
    auto it = rings_.find(cpu);
    if (it == rings_.end()) return;
    const DrainResult result =
        drain_ring(it->second->ring->ring, cpu, pool_.decoder_, *consumer_, pool_.stats_.cpu(cpu));
    if (result.corrupt) {
      pool_.log("CPU " + std::to_string(cpu) + ": corrupt record header in the ring; skipped to the kernel's head");
    }
  }

  void arm(unsigned cpu) {
    auto it = rings_.find(cpu);
    if (it == rings_.end()) return;
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

  void arm_hotplug_timer() {
    hotplug_timer_.expires_after(pool_.options_.hotplug_interval);
    hotplug_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec || finished_) return;  // as for the flush timer
      pool_.check_hotplug();
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
  // Rings opened at creation are dealt round-robin; adopt runs once the threads start (posted work).
  unsigned next = 0;
  for (auto& ring : array.take_initial_rings()) {
    const unsigned cpu = ring->cpu;
    const unsigned reader = next++ % options.threads;
    pool->owner_of_cpu_[cpu] = Owner{reader, ring->event_fd.get()};
    Reader* r = pool->readers_[reader].get();
    asio::post(r->io(), [r, ring = std::shared_ptr<CpuRing>(ring.release())]() mutable {
      // shared_ptr only to make the handler copyable; ownership moves into the reader here.
      r->adopt(std::unique_ptr<CpuRing>(new CpuRing(std::move(*ring))));
    });
  }
  return pool;
}

ReaderPool::ReaderPool(PerfEventArray& array, const ReaderOptions& options, RecordDecoder decoder, RingStats& stats)
    : array_(array), options_(options), decoder_(decoder), stats_(stats) {}

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

void ReaderPool::flush() {
  if (stopped_) return;
  run_on_all_and_wait([](Reader& r) { r.drain_all(); });
}

void ReaderPool::check_hotplug_now() {
  if (stopped_ || readers_.empty()) return;
  std::promise<void> done;
  Reader* r0 = readers_[0].get();
  asio::post(r0->io(), [this, &done] {
    check_hotplug();
    done.set_value();
  });
  if (!started_) {
    r0->io().restart();
    r0->io().poll();
  }
  done.get_future().wait();
  // Let the posted adopt/retire work finish everywhere.
  run_on_all_and_wait([](Reader&) {});
}

void ReaderPool::stop() {
  if (stopped_) return;
  stopped_ = true;
  stopping_.store(true);
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
  std::lock_guard<std::mutex> lock(owners_mutex_);
  owner_of_cpu_.clear();
}

unsigned ReaderPool::reader_count() const { return static_cast<unsigned>(readers_.size()); }

RecordConsumer& ReaderPool::consumer(unsigned reader_index) { return readers_.at(reader_index)->consumer(); }

CpuSet ReaderPool::attached_cpus() const {
  std::lock_guard<std::mutex> lock(owners_mutex_);
  std::vector<unsigned> cpus;
  for (const auto& [cpu, reader] : owner_of_cpu_) cpus.push_back(cpu);
  return CpuSet(std::move(cpus));
}

void ReaderPool::log(const std::string& message) const {
  if (options_.log) options_.log->line(message);
}

void ReaderPool::check_hotplug() {
  if (stopping_.load()) return;
  auto online = CpuSet::online(CpuSet::kSysfsCpuDir);
  if (!online) {
    log("hotplug: " + online.error().message());
    return;
  }
  std::lock_guard<std::mutex> lock(owners_mutex_);
  // Gone offline, or gone and back with a dead event: stop BPF output into the slot now, then let the
  // owner drain what is left and close the ring.
  for (auto it = owner_of_cpu_.begin(); it != owner_of_cpu_.end();) {
    const unsigned cpu = it->first;
    std::string why;
    if (!online->contains(cpu)) {
      why = "went offline: its ring is drained and closed";
    } else {
      auto live = event_is_live(it->second.event_fd, cpu);
      if (!live) {
        log("hotplug: " + live.error().message());
      } else if (!*live) {
        why = "went offline and came back since the last check: its old event stopped for good; "
              "draining and closing its ring, then opening a new one";
      }
    }
    if (why.empty()) {
      ++it;
      continue;
    }
    if (auto st = array_.clear_slot(cpu); !st) log(st.error().message());
    Reader* r = readers_[it->second.reader].get();
    asio::post(r->io(), [r, cpu] { r->retire(cpu); });
    log("CPU " + std::to_string(cpu) + " " + why);
    it = owner_of_cpu_.erase(it);
  }
  // Came online: a new event, ring and slot, owned by the reader with the fewest CPUs.
  const CpuSet online_candidates = array_.candidates().intersect(*online);
  for (unsigned cpu : online_candidates.cpus()) {
    if (owner_of_cpu_.count(cpu) != 0) continue;
    auto ring = array_.open_ring(cpu);
    if (!ring) {
      if (ring.error().errnum() == ENODEV) continue;  // went away again; next check
      auto& last = open_failures_[cpu];
      if (last != ring.error().message()) log(ring.error().message());
      last = ring.error().message();
      continue;
    }
    open_failures_.erase(cpu);
    std::vector<unsigned> load(readers_.size(), 0);
    for (const auto& [c, owner] : owner_of_cpu_) ++load[owner.reader];
    unsigned best = 0;
    for (unsigned i = 1; i < load.size(); ++i) {
      if (load[i] < load[best]) best = i;
    }
    owner_of_cpu_[cpu] = Owner{best, (*ring)->event_fd.get()};
    Reader* r = readers_[best].get();
    asio::post(r->io(), [r, ring = std::shared_ptr<CpuRing>(ring->release())] {
      r->adopt(std::unique_ptr<CpuRing>(new CpuRing(std::move(*ring))));
    });
    log("CPU " + std::to_string(cpu) + " is online: ring opened");
  }
}

}  // namespace perfstream
