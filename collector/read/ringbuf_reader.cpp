#include "collector/read/ringbuf_reader.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <future>
#include <thread>

namespace perfstream {

namespace asio = boost::asio;

struct RingbufReader::Impl {
  Impl(BpfRingbuf& ring, std::string map_name, RingbufTiming timing, const ReaderOptions& options,
       std::unique_ptr<RecordConsumer> consumer, CpuCounters& counters)
      : ring(ring),
        map_name(std::move(map_name)),
        timing(timing),
        options(options),
        consumer(std::move(consumer)),
        counters(counters),
        io(1),
        work(asio::make_work_guard(io)),
        descriptor(io),
        flush_timer(io) {}

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

  // Passes until one finds nothing new: up to kPassesInline in this handler, then the rest posted, so that
  // a producer faster than the reader cannot keep the timer and other work from running.
  void drain_until_caught_up() {
    if (finished) return;
    for (int i = 0; i < kPassesInline; ++i) {
      if (!drain()) return;
    }
    asio::post(io, [this] { drain_until_caught_up(); });
  }
  static constexpr int kPassesInline = 16;

  void arm() {
    if (finished || !descriptor.is_open()) return;
    descriptor.async_wait(asio::posix::descriptor_base::wait_read, [this](const boost::system::error_code& ec) {
      if (ec == asio::error::operation_aborted || finished) return;
      if (ec) {
        log("ring buffer map '" + map_name + "': waiting on it: " + ec.message() +
            "; the flush timer keeps draining it");
        return;
      }
      counters.wakeups.fetch_add(1, std::memory_order_relaxed);
      drain_until_caught_up();
      arm();
    });
  }

  void arm_flush_timer() {
    flush_timer.expires_after(options.flush_interval);
    flush_timer.async_wait([this](const boost::system::error_code& ec) {
      // A wait that had completed when finish() cancelled it still runs, with no error: do not re-arm then.
      if (ec || finished) return;
      drain_until_caught_up();
      consumer->on_tick();
      arm_flush_timer();
    });
  }

  void begin() {
    // Records submitted before the wait is armed produce no new edge: drain them now.
    drain_until_caught_up();
    arm();
    arm_flush_timer();
  }

  void finish() {
    if (finished) return;
    finished = true;
    flush_timer.cancel();
    boost::system::error_code ignored;
    descriptor.cancel(ignored);
    drain();
    drain();
    counters.attached.store(0, std::memory_order_relaxed);
    consumer->on_ring_closed(kRingbufCpu);
    consumer->on_stop();
    work.reset();
  }

  BpfRingbuf& ring;
  std::string map_name;
  RingbufTiming timing;
  ReaderOptions options;
  std::unique_ptr<RecordConsumer> consumer;
  CpuCounters& counters;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  asio::posix::stream_descriptor descriptor;  // owns a dup of the map fd
  asio::steady_timer flush_timer;
  std::thread thread;
  bool finished = false;  // reader thread (or the caller before start/after stop)
  bool started = false;   // controlling thread
  bool stopped = false;   // controlling thread
};

Result<std::unique_ptr<RingbufReader>> RingbufReader::create(BpfRingbuf& ring, int map_fd, std::string map_name,
                                                             RingbufTiming timing, const ReaderOptions& options,
                                                             const ConsumerFactory& make_consumer,
                                                             CpuCounters& counters) {
  if (options.flush_interval.count() <= 0) return Error("flush interval: must be positive");
  auto consumer = make_consumer(0);
  if (!consumer) return Error("reader 0: the consumer factory returned nothing");
  auto impl = std::make_unique<Impl>(ring, map_name, timing, options, std::move(consumer), counters);
  const int dup = ::fcntl(map_fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) {
    return Error::from_errno("ring buffer map '" + map_name + "': duplicating its fd to wait on it", errno);
  }
  boost::system::error_code ec;
  impl->descriptor.assign(dup, ec);
  if (ec) {
    ::close(dup);
    return Error("ring buffer map '" + map_name + "': cannot wait on it with epoll: " + ec.message());
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
  asio::post(impl->io, [impl] { impl->begin(); });
  impl->thread = std::thread([impl] { impl->io.run(); });
}

void RingbufReader::flush() {
  if (!impl_->started || impl_->stopped) {
    if (!impl_->finished) impl_->drain();
    return;
  }
  std::promise<void> done;
  Impl* impl = impl_.get();
  asio::post(impl->io, [impl, &done] {
    if (!impl->finished) impl->drain();
    done.set_value();
  });
  done.get_future().wait();
}

void RingbufReader::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  Impl* impl = impl_.get();
  if (impl->started) {
    asio::post(impl->io, [impl] { impl->finish(); });
    if (impl->thread.joinable()) impl->thread.join();
  } else {
    impl->finish();
  }
}

RecordConsumer& RingbufReader::consumer() { return *impl_->consumer; }

}  // namespace perfstream
