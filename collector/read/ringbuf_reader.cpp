#include "collector/read/ringbuf_reader.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "collector/util/unique_fd.hpp"

namespace perfstream {

struct RingbufReader::Impl {
  Impl(BpfRingbuf& ring, std::string map_name, SampleTiming timing, const ReaderOptions& options,
       std::unique_ptr<RecordConsumer> consumer, CpuCounters& counters)
      : ring(ring),
        map_name(std::move(map_name)),
        timing(timing),
        options(options),
        consumer(std::move(consumer)),
        counters(counters) {}

  void log(const std::string& message) const {
    if (options.log != nullptr) options.log->line(message);
  }

  // One pass; true when it consumed something and records are still pending (worth another pass).
  bool drain() {
    const DrainResult result = drain_ringbuf(ring, timing, *consumer, counters);
    if (result.corrupt) {
      log("ring buffer map '" + map_name + "': corrupt record header; skipped to the producer position");
    }
    return result.bytes > 0 && ring.pending_bytes() > 0;
  }

  // Passes until one finds nothing new, at most kPassesPerTurn: then the loop looks at its clock and its
  // commands before it goes on (the map fd is level-triggered, so epoll_wait returns at once while records
  // are pending). True when it caught up (or stopped at a busy record), false when it ran out of passes.
  bool drain_until_caught_up() {
    for (int i = 0; i < kPassesPerTurn; ++i) {
      if (!drain()) return true;
    }
    return false;
  }
  static constexpr int kPassesPerTurn = 16;

  // Batches wakeups (see the header): waits kCoalesce before a woken reader drains, unless an eighth of the
  // ring is already pending.
  void coalesce() {
    if (ring.pending_bytes() >= ring.data_size() / 8) return;
    const timespec delay{0, static_cast<long>(std::chrono::nanoseconds(kCoalesce).count())};
    while (::clock_nanosleep(CLOCK_MONOTONIC, 0, &delay, nullptr) == EINTR) {
    }
  }
  static constexpr std::chrono::microseconds kCoalesce{100};

  // The reader thread: epoll_wait on the map fd and the command eventfd, with the next flush as its timeout.
  void run() {
    if (!options.pin_cpus.empty()) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(options.pin_cpus.front(), &set);
      if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0) {
        log("ring buffer map '" + map_name + "': cannot pin its reader to CPU " +
            std::to_string(options.pin_cpus.front()));
      }
    }
    // Records submitted before the thread started woke nobody (or nobody yet waiting): drain them now.
    // caught_up: whether the last turn ended with nothing left to read. Only then is the map fd's readiness
    // a wakeup by the kernel (level triggering also reports records a turn left behind, which are read at
    // once, without waiting).
    bool caught_up = drain_until_caught_up();
    using Clock = std::chrono::steady_clock;
    auto next_flush = Clock::now() + options.flush_interval;
    bool wait_failed = false;
    for (;;) {
      const auto now = Clock::now();
      if (now >= next_flush) {
        caught_up = drain_until_caught_up();
        consumer->on_tick();
        next_flush = now + options.flush_interval;
      }
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(next_flush - Clock::now());
      epoll_event events[2];
      const int n = ::epoll_wait(epoll.get(), events, 2, static_cast<int>(std::max<std::int64_t>(0, left.count())));
      if (n < 0) {
        if (errno == EINTR) continue;
        if (!wait_failed) {
          wait_failed = true;
          log("ring buffer map '" + map_name + "': waiting on it: " + std::strerror(errno) +
              "; the flush timer keeps draining it");
        }
        std::this_thread::sleep_until(next_flush);
        if (run_commands()) return;  // the eventfd is non-blocking: this only looks
        continue;
      }
      for (int i = 0; i < n; ++i) {
        if (events[i].data.u32 == kRingToken) {
          if (caught_up) {
            counters.wakeups.fetch_add(1, std::memory_order_relaxed);
            coalesce();
          }
          caught_up = drain_until_caught_up();
        }
      }
      for (int i = 0; i < n; ++i) {
        if (events[i].data.u32 == kCommandToken && run_commands()) return;
      }
    }
  }

  // Answers flush() and stop(); true when the thread is to end (finish() has run).
  bool run_commands() {
    std::uint64_t value = 0;
    while (::read(command_fd.get(), &value, sizeof(value)) < 0 && errno == EINTR) {
    }
    std::unique_lock lock(mutex);
    if (flushes_done != flushes_asked) {
      const std::uint64_t asked = flushes_asked;
      lock.unlock();
      drain();
      lock.lock();
      flushes_done = asked;
      done.notify_all();
    }
    if (!stop_asked) return false;
    lock.unlock();
    finish();
    return true;
  }

  void signal() {
    const std::uint64_t one = 1;
    while (::write(command_fd.get(), &one, sizeof(one)) < 0 && errno == EINTR) {
    }
  }

  void finish() {
    if (finished) return;
    finished = true;
    drain();
    drain();
    counters.attached.store(0, std::memory_order_relaxed);
    consumer->on_ring_closed(kRingbufCpu);
    consumer->on_stop();
  }

  static constexpr std::uint32_t kRingToken = 1;
  static constexpr std::uint32_t kCommandToken = 2;

  BpfRingbuf& ring;
  std::string map_name;
  SampleTiming timing;
  ReaderOptions options;
  std::unique_ptr<RecordConsumer> consumer;
  CpuCounters& counters;
  UniqueFd map_fd;      // our own dup of the map fd, in `epoll`
  UniqueFd epoll;       // the map fd (level-triggered) and command_fd
  UniqueFd command_fd;  // eventfd: flush() and stop() write it
  std::thread thread;
  std::mutex mutex;  // guards the three below
  std::condition_variable done;
  std::uint64_t flushes_asked = 0, flushes_done = 0;
  bool stop_asked = false;
  bool finished = false;  // reader thread (or the caller before start/after stop)
  bool started = false;   // controlling thread
  bool stopped = false;   // controlling thread
};

Result<std::unique_ptr<RingbufReader>> RingbufReader::create(BpfRingbuf& ring, int map_fd, std::string map_name,
                                                             SampleTiming timing, const ReaderOptions& options,
                                                             const ConsumerFactory& make_consumer,
                                                             CpuCounters& counters) {
  if (options.flush_interval.count() <= 0) return Error("flush interval: must be positive");
  auto consumer = make_consumer(0);
  if (!consumer) return Error("reader 0: the consumer factory returned nothing");
  auto impl = std::make_unique<Impl>(ring, map_name, timing, options, std::move(consumer), counters);
  const std::string what = "ring buffer map '" + map_name + "'";
  impl->map_fd = UniqueFd(::fcntl(map_fd, F_DUPFD_CLOEXEC, 0));
  if (!impl->map_fd) return Error::from_errno(what + ": duplicating its fd to wait on it", errno);
  impl->epoll = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  if (!impl->epoll) return Error::from_errno(what + ": creating an epoll instance to wait on it", errno);
  impl->command_fd = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!impl->command_fd) return Error::from_errno(what + ": creating its reader's eventfd", errno);
  // Level-triggered, as libbpf registers it: epoll_wait itself says whether records are pending, and the
  // registration is never touched again (Asio's reactor re-arms its edge-triggered descriptors with an
  // epoll_ctl per wait, one more system call per wakeup).
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u32 = Impl::kRingToken;
  if (::epoll_ctl(impl->epoll.get(), EPOLL_CTL_ADD, impl->map_fd.get(), &ev) != 0) {
    return Error::from_errno(what + ": cannot wait on it with epoll", errno);
  }
  ev.data.u32 = Impl::kCommandToken;
  if (::epoll_ctl(impl->epoll.get(), EPOLL_CTL_ADD, impl->command_fd.get(), &ev) != 0) {
    return Error::from_errno(what + ": adding its reader's eventfd to epoll", errno);
  }
  counters.ring_size.store(ring.data_size(), std::memory_order_relaxed);
  counters.attached.store(1, std::memory_order_relaxed);
  counters.attach_count.fetch_add(1, std::memory_order_relaxed);
  impl->consumer->on_ring_opened(kRingbufCpu);
  return std::unique_ptr<RingbufReader>(new RingbufReader(std::move(impl)));
}

RingbufReader::RingbufReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RingbufReader::~RingbufReader() { stop(); }

void RingbufReader::start() {
  if (impl_->started || impl_->stopped) return;
  impl_->started = true;
  Impl* impl = impl_.get();
  impl->thread = std::thread([impl] { impl->run(); });
}

void RingbufReader::flush() {
  Impl* impl = impl_.get();
  if (!impl->started || impl->stopped) {
    if (!impl->finished) impl->drain();
    return;
  }
  std::unique_lock lock(impl->mutex);
  const std::uint64_t ticket = ++impl->flushes_asked;
  impl->signal();
  impl->done.wait(lock, [&] { return impl->flushes_done >= ticket; });
}

void RingbufReader::stop() {
  Impl* impl = impl_.get();
  if (impl->stopped) return;
  impl->stopped = true;
  if (impl->started) {
    {
      std::lock_guard lock(impl->mutex);
      impl->stop_asked = true;
    }
    impl->signal();
    if (impl->thread.joinable()) impl->thread.join();
  } else {
    impl->finish();
  }
}

RecordConsumer& RingbufReader::consumer() { return *impl_->consumer; }

}  // namespace perfstream
