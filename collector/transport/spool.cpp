#include "collector/transport/spool.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <string_view>
#include <filesystem>

#include "collector/format/batch_encoder.hpp"
#include "collector/format/frame.hpp"
#include "collector/format/trace_reader.hpp"
#include "collector/format/zstd_codec.hpp"
#include "collector/transport/stream_protocol.hpp"

namespace perfstream {

std::string Spool::preamble_for(const v1::TraceHeader& header) {
  std::string payload;
  auto compressor = ZstdCompressor::create(3);
  if (!compressor || !compressor->compress(header.SerializeAsString(), payload)) return {};
  return encode_file_header(file_format_version(header.format_version())) + data_frame_header(FrameType::Header, payload.size()) + payload;
}

Result<std::unique_ptr<Spool>> Spool::create_for_recording(const std::string& dir, std::uint64_t max_bytes,
                                                           const v1::TraceHeader& header, Log* log) {
  auto spool = create(dir, max_bytes, kDefaultSegmentBytes, preamble_for(header));
  if (spool && log) {
    if (const std::string notice = (*spool)->earlier_run_notice(); !notice.empty()) log->line(notice);
  }
  return spool;
}

Result<std::unique_ptr<Spool>> Spool::create(const std::string& dir, std::uint64_t max_bytes,
                                             std::uint64_t segment_bytes, std::string preamble) {
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
  spool->preamble_ = std::move(preamble);
  if (auto st = spool->keep_earlier_segments(); !st) return st.error();
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

namespace {

// "segment-N.psf", the name open_segment gives.
bool is_segment_name(const std::string& name) {
  constexpr std::string_view prefix = "segment-", suffix = ".psf";
  if (name.size() <= prefix.size() + suffix.size() || name.rfind(prefix, 0) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return false;
  }
  for (std::size_t i = prefix.size(); i < name.size() - suffix.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
  }
  return true;
}

std::string utc_stamp(time_t when) {
  struct tm tm {};
  gmtime_r(&when, &tm);
  char text[32];
  std::strftime(text, sizeof(text), "%Y%m%dT%H%M%SZ", &tm);
  return text;
}

}  // namespace

Status Spool::keep_earlier_segments() {
  UniqueFd listing(::openat(dir_fd_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!listing) return Error::from_errno("listing spool directory " + dir_, errno);
  DIR* d = ::fdopendir(listing.get());
  if (d == nullptr) return Error::from_errno("listing spool directory " + dir_, errno);
  (void)listing.release();  // closedir closes it
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(d)) {
    if (is_segment_name(e->d_name)) names.emplace_back(e->d_name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    struct stat st {};
    if (::fstatat(dir_fd_.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (!S_ISREG(st.st_mode) || static_cast<std::size_t>(st.st_size) <= preamble_.size()) {
      // No batches in it, or not a file we could have written (a symlink): nothing to keep.
      ::unlinkat(dir_fd_.get(), name.c_str(), 0);
      continue;
    }
    const std::string base = "undelivered-" + utc_stamp(st.st_mtime) + "-" + name.substr(0, name.size() - 4);
    std::string kept = base + ".psf";
    int rc = -1;
    for (int n = 2; n < 1000; ++n) {
      rc = ::renameat2(dir_fd_.get(), name.c_str(), dir_fd_.get(), kept.c_str(), RENAME_NOREPLACE);
      if (rc == 0 || errno != EEXIST) break;
      kept = base + "-" + std::to_string(n) + ".psf";
    }
    if (rc != 0) {
      return Error::from_errno("keeping the spool segment " + dir_ + "/" + name + " an earlier run left", errno,
                               "move it away, or delete it if its batches are not wanted");
    }
    kept_files_.push_back(dir_ + "/" + kept);
    kept_bytes_ += static_cast<std::uint64_t>(st.st_size);
  }
  return {};
}

std::string Spool::earlier_run_notice() const {
  if (kept_files_.empty()) return {};
  std::string files = kept_files_.front();
  if (kept_files_.size() > 1) files += " ... " + kept_files_.back();
  return "spool " + dir_ + ": an earlier run left " + std::to_string(kept_files_.size()) + " segment" +
         (kept_files_.size() == 1 ? "" : "s") + " (" + std::to_string(kept_bytes_) +
         " bytes) with batches its sink may not have acknowledged; they are kept, not sent, as " + files +
         " (each a trace file: perfstream dump reads it)";
}

Status Spool::open_segment() {
  const std::uint64_t id = segments_.empty() ? 0 : segments_.rbegin()->first + 1;
  Segment segment;
  segment.name = "segment-" + std::to_string(id) + ".psf";
  segment.path = dir_ + "/" + segment.name;
  // A new file, always: an earlier run's segments were renamed by keep_earlier_segments, so what is
  // under this name now was put here since (a symlink, say): it goes, a file someone else put here is
  // never written into (O_EXCL), nor a symlink followed.
  if (::unlinkat(dir_fd_.get(), segment.name.c_str(), 0) != 0 && errno != ENOENT) {
    return Error::from_errno("removing " + segment.path, errno);
  }
  int fd = ::openat(dir_fd_.get(), segment.name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Error::from_errno("creating spool segment " + segment.path, errno);
  segment.fd.reset(fd);
  if (!preamble_.empty()) {
    if (::pwrite(fd, preamble_.data(), preamble_.size(), 0) != static_cast<ssize_t>(preamble_.size())) {
      const int err = errno;
      ::unlinkat(dir_fd_.get(), segment.name.c_str(), 0);
      return Error::from_errno("writing spool segment " + segment.path, err);
    }
    segment.bytes = preamble_.size();
  }
  segments_.emplace(id, std::move(segment));
  current_segment_ = id;
  return {};
}

Result<std::vector<LeftoverRecording>> Spool::find_leftovers(const std::string& dir,
                                                              std::vector<std::string>* skipped) {
  std::vector<std::string> names;
  {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return Error::from_errno("listing spool directory " + dir, errno);
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name.rfind("undelivered-", 0) == 0 && name.size() > 4 && name.compare(name.size() - 4, 4, ".psf") == 0) {
        names.push_back(name);
      }
    }
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  std::map<std::string, LeftoverRecording> by_id;
  for (const std::string& name : names) {
    const std::string path = dir + "/" + name;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      if (skipped) skipped->push_back(path + ": not a regular file");
      continue;
    }
    auto reader = TraceFileReader::open(path);
    if (!reader) {
      if (skipped) skipped->push_back(reader.error().message());
      continue;
    }
    const v1::TraceHeader& header = (*reader)->header();
    const std::string id = header.host() + "-" + header.recording_id();
    LeftoverRecording& leftover = by_id[id];
    if (leftover.names.empty()) {
      leftover.header = header;
      leftover.collector_id = id;
    }
    leftover.names.push_back(name);
    leftover.bytes += static_cast<std::uint64_t>(st.st_size);
  }
  std::vector<LeftoverRecording> out;
  for (auto& [id, leftover] : by_id) out.push_back(std::move(leftover));
  return out;
}

Result<std::unique_ptr<Spool>> Spool::adopt(const std::string& dir, const LeftoverRecording& leftover) {
  int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dir_fd < 0) return Error::from_errno("opening spool directory " + dir, errno);
  std::unique_ptr<Spool> spool(new Spool());
  spool->dir_fd_.reset(dir_fd);
  spool->dir_ = dir;
  spool->adopted_ = true;
  spool->max_bytes_ = 0;  // append() refuses everything
  std::uint64_t id = 0;
  for (const std::string& name : leftover.names) {
    Segment segment;
    segment.name = name;
    segment.path = dir + "/" + name;
    int fd = ::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return Error::from_errno("opening the earlier run's spool segment " + segment.path, errno);
    segment.fd.reset(fd);
    int scan_fd = ::dup(fd);
    if (scan_fd < 0) return Error::from_errno("reading " + segment.path, errno);
    auto reader = TraceFileReader::open_fd(UniqueFd(scan_fd), segment.path);
    if (!reader) return reader.error();
    // Every complete batch frame; the scan stops where a kill cut the segment short.
    for (ReadOutcome outcome = (*reader)->next(); outcome.status == ReadStatus::Frame; outcome = (*reader)->next()) {
      if (outcome.type != FrameType::Batch) continue;
      auto view = BatchView::parse(outcome.message);
      if (!view) break;
      const std::uint64_t length = (*reader)->offset() - outcome.offset - kFrameHeaderSize;
      spool->entries_.push_back(Entry{view->batch().sequence(), id, outcome.offset + kFrameHeaderSize,
                                      static_cast<std::uint32_t>(length), false});
      ++segment.live;
      spool->total_bytes_ += kFrameHeaderSize + length;
    }
    segment.bytes = (*reader)->offset();
    spool->segments_.emplace(id++, std::move(segment));
  }
  std::stable_sort(spool->entries_.begin(), spool->entries_.end(),
                   [](const Entry& a, const Entry& b) { return a.sequence < b.sequence; });
  std::lock_guard<std::mutex> lock(spool->mutex_);
  spool->drop_entries([](const Entry&) { return false; });  // files without a whole batch go now
  return spool;
}

Status Spool::append(std::uint64_t sequence, const std::string& compressed, bool past_limit) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (adopted_) return Error("the spool of an earlier run's batches in " + dir_ + " takes no new ones");
    const std::uint64_t frame = kFrameHeaderSize + compressed.size();
    if (total_bytes_ + frame > max_bytes_ && !past_limit) {
      ++refused_;
      return Error("the spool in " + dir_ + " is full (" + std::to_string(total_bytes_) + " of " +
                   std::to_string(max_bytes_) + " bytes waiting for the sink)");
    }
    if (segments_[current_segment_].bytes + frame > segment_bytes_ &&
        segments_[current_segment_].bytes > preamble_.size()) {
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

Result<bool> Spool::next_unsent(std::uint64_t* sequence, std::string* compressed) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& e : entries_) {
    if (e.sent) continue;
    compressed->resize(e.length);
    const Segment& seg = segments_.at(e.segment);
    const ssize_t n = ::pread(seg.fd.get(), compressed->data(), e.length, static_cast<off_t>(e.offset));
    if (n < 0) {
      return Error::from_errno("reading batch " + std::to_string(e.sequence) + " back from spool segment " + seg.path,
                               errno);
    }
    if (n != static_cast<ssize_t>(e.length)) {
      // Someone cut the segment short: the batch is not there to send (and no errno says so).
      return Error("reading batch " + std::to_string(e.sequence) + " back from spool segment " + seg.path + ": " +
                   std::to_string(n) + " of its " + std::to_string(e.length) + " bytes are left");
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
    if (it->second.live == 0 && (adopted_ || it->first != current_segment_)) {
      it->second.fd.reset();
      ::unlinkat(dir_fd_.get(), it->second.name.c_str(), 0);
      it = segments_.erase(it);
    } else {
      ++it;
    }
  }
  if (adopted_) return;
  // An emptied current segment starts over, so the spool does not grow while the sink keeps up.
  Segment& current = segments_.at(current_segment_);
  if (current.live == 0 && current.bytes > preamble_.size() &&
      ::ftruncate(current.fd.get(), static_cast<off_t>(preamble_.size())) == 0) {
    current.bytes = preamble_.size();
  }
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
