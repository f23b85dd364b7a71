#include "collector/transport/spool.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "collector/format/batch_encoder.hpp"
#include "collector/format/zstd_codec.hpp"
#include "collector/transport/stream_protocol.hpp"

namespace perfstream {

Result<std::unique_ptr<Spool>> Spool::create(const std::string& dir, std::uint64_t max_bytes,
                                             std::uint64_t segment_bytes) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Error("creating spool directory " + dir + ": " + ec.message());
  std::unique_ptr<Spool> spool(new Spool());
  spool->dir_ = dir;
  spool->max_bytes_ = max_bytes;
  spool->segment_bytes_ = std::max<std::uint64_t>(segment_bytes, 64 * 1024);
  std::lock_guard<std::mutex> lock(spool->mutex_);
  if (auto st = spool->open_segment(); !st) return st.error();
  return spool;
}

Spool::~Spool() {
  // Segments still holding unacknowledged batches stay: StreamClient::finish promises they do.
  for (auto& [id, segment] : segments_) {
    segment.fd.reset();
    if (segment.live == 0) ::unlink(segment.path.c_str());
  }
}

Status Spool::open_segment() {
  const std::uint64_t id = segments_.empty() ? 0 : segments_.rbegin()->first + 1;
  Segment segment;
  segment.path = dir_ + "/segment-" + std::to_string(id) + ".psf";
  int fd = ::open(segment.path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Error::from_errno("creating spool segment " + segment.path, errno);
  segment.fd.reset(fd);
  segments_.emplace(id, std::move(segment));
  current_segment_ = id;
  return {};
}

Status Spool::append(std::uint64_t sequence, const std::string& compressed, bool past_limit) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::uint64_t frame = kFrameHeaderSize + compressed.size();
    if (total_bytes_ + frame > max_bytes_ && !past_limit) {
      ++refused_;
      return Error("the spool in " + dir_ + " is full (" + std::to_string(total_bytes_) + " of " +
                   std::to_string(max_bytes_) + " bytes waiting for the sink)");
    }
    if (segments_[current_segment_].bytes + frame > segment_bytes_ && segments_[current_segment_].bytes > 0) {
      if (auto st = open_segment(); !st) return st;
    }
    Segment& seg = segments_[current_segment_];
    const std::string header = data_frame_header(FrameType::Batch, compressed.size());
    const off_t at = static_cast<off_t>(seg.bytes);
    if (::pwrite(seg.fd.get(), header.data(), header.size(), at) != static_cast<ssize_t>(header.size()) ||
        ::pwrite(seg.fd.get(), compressed.data(), compressed.size(), at + static_cast<off_t>(header.size())) !=
            static_cast<ssize_t>(compressed.size())) {
      return Error::from_errno("writing spool segment " + seg.path, errno);
    }
    entries_.push_back(Entry{sequence, current_segment_, seg.bytes + header.size(),
                             static_cast<std::uint32_t>(compressed.size()), false});
    seg.bytes += frame;
    ++seg.live;
    total_bytes_ += frame;
  }
  std::function<void()> notify;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    notify = notify_;
  }
  if (notify) notify();
  return {};
}

Status Spool::append_batch(const EncodedBatch& batch) {
  Status st = append(batch.sequence, batch.compressed);
  if (!st) {
    std::string message, stand_in;
    BatchEncoder().finish(batch.sequence, message);
    if (auto compressor = ZstdCompressor::create(1); compressor && compressor->compress(message, stand_in)) {
      (void)append(batch.sequence, stand_in, true);
    }
  }
  return st;
}

void Spool::set_notify(std::function<void()> notify) {
  std::lock_guard<std::mutex> lock(mutex_);
  notify_ = std::move(notify);
}

bool Spool::next_unsent(std::uint64_t* sequence, std::string* compressed) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& e : entries_) {
    if (e.sent) continue;
    compressed->resize(e.length);
    const Segment& seg = segments_.at(e.segment);
    if (::pread(seg.fd.get(), compressed->data(), e.length, static_cast<off_t>(e.offset)) !=
        static_cast<ssize_t>(e.length)) {
      return false;
    }
    e.sent = true;
    *sequence = e.sequence;
    return true;
  }
  return false;
}

void Spool::rewind() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& e : entries_) e.sent = false;
}

void Spool::acknowledge(std::uint64_t through) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->sequence >= through) {
      ++it;
      continue;
    }
    Segment& seg = segments_.at(it->segment);
    --seg.live;
    total_bytes_ -= kFrameHeaderSize + it->length;
    it = entries_.erase(it);
  }
  for (auto it = segments_.begin(); it != segments_.end();) {
    if (it->second.live == 0 && it->first != current_segment_) {
      it->second.fd.reset();
      ::unlink(it->second.path.c_str());
      it = segments_.erase(it);
    } else {
      ++it;
    }
  }
  // An emptied current segment starts over, so the spool does not grow while the sink keeps up.
  Segment& current = segments_.at(current_segment_);
  if (current.live == 0 && current.bytes > 0 && ::ftruncate(current.fd.get(), 0) == 0) current.bytes = 0;
}

std::uint64_t Spool::pending_batches() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_.size();
}

std::uint64_t Spool::pending_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return total_bytes_;
}

std::uint64_t Spool::inflight_batches() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::uint64_t n = 0;
  for (const auto& e : entries_) n += e.sent ? 1 : 0;
  return n;
}

std::uint64_t Spool::refused_batches() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return refused_;
}

}  // namespace perfstream
