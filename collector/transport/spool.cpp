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
  const bool created = std::filesystem::create_directories(dir, ec);
  if (ec) return Error("creating spool directory " + dir + ": " + ec.message());
  if (created && ::chmod(dir.c_str(), 0700) != 0) return Error::from_errno("chmod 0700 " + dir, errno);
  // Opened once, without following a symlink: every segment is created relative to this directory.
  int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dir_fd < 0) {
    const int err = errno;
    return Error::from_errno("opening spool directory " + dir, err,
                             err == ELOOP || err == ENOTDIR ? "a symlink is not followed: give the directory itself" : "");
  }
  std::unique_ptr<Spool> spool(new Spool());
  spool->dir_fd_.reset(dir_fd);
  spool->created_dir_ = created;
  spool->dir_ = dir;
  spool->max_bytes_ = max_bytes;
  spool->segment_bytes_ = std::max<std::uint64_t>(segment_bytes, 64 * 1024);
  std::lock_guard<std::mutex> lock(spool->mutex_);
  if (auto st = spool->open_segment(); !st) return st.error();
  return spool;
}

Status Spool::give_to(uid_t uid, gid_t gid) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (created_dir_ && ::fchown(dir_fd_.get(), uid, gid) != 0) return Error::from_errno("chown " + dir_, errno);
  for (auto& [id, segment] : segments_) {
    if (::fchown(segment.fd.get(), uid, gid) != 0) return Error::from_errno("chown " + segment.path, errno);
  }
  return {};
}

Spool::~Spool() {
  // Segments still holding unacknowledged batches stay: StreamClient::finish promises they do.
  for (auto& [id, segment] : segments_) {
    segment.fd.reset();
    if (segment.live == 0) ::unlinkat(dir_fd_.get(), segment.name.c_str(), 0);
  }
}

Status Spool::open_segment() {
  const std::uint64_t id = segments_.empty() ? 0 : segments_.rbegin()->first + 1;
  Segment segment;
  segment.name = "segment-" + std::to_string(id) + ".psf";
  segment.path = dir_ + "/" + segment.name;
  // A new file, always: a segment left by an earlier run goes, and a file someone else put here is never
  // written into (O_EXCL), nor a symlink followed.
  if (::unlinkat(dir_fd_.get(), segment.name.c_str(), 0) != 0 && errno != ENOENT) {
    return Error::from_errno("removing the old spool segment " + segment.path, errno);
  }
  int fd = ::openat(dir_fd_.get(), segment.name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
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
  drop_entries([through](const Entry& e) { return e.sequence < through; });
}

void Spool::acknowledge_one(std::uint64_t sequence) {
  std::lock_guard<std::mutex> lock(mutex_);
  drop_entries([sequence](const Entry& e) { return e.sequence == sequence; });
}

void Spool::drop_entries(const std::function<bool(const Entry&)>& acknowledged) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (!acknowledged(*it)) {
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
      ::unlinkat(dir_fd_.get(), it->second.name.c_str(), 0);
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
