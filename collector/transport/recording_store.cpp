#include "collector/transport/recording_store.hpp"

#include <cerrno>
#include <filesystem>

#include "collector/format/frame.hpp"
#include "collector/format/trace_reader.hpp"

namespace perfstream {

namespace fs = std::filesystem;

std::string file_safe_id(const std::string& id) {
  std::string out;
  for (char c : id) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_') ? c : '_';
  if (out.empty() || out[0] == '.') out = "_" + out;
  if (out == id && out.size() <= 200) return out;
  std::uint64_t hash = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : id) hash = (hash ^ c) * 1099511628211ull;
  char suffix[20];
  std::snprintf(suffix, sizeof(suffix), "-%016llx", static_cast<unsigned long long>(hash));
  return out.substr(0, 200) + suffix;
}

std::string RecordingSummary::describe() const {
  return std::to_string(batches) + " batches, " + std::to_string(records) + " records in " + file +
         (expired ? " (expired: closed by the sink, its collector gone past --expire)"
                  : finished ? "" : " (not finished: no trailer yet)") + ", lost " + std::to_string(lost_kernel) +
         " in its kernel and " + std::to_string(lost_collector) + " in its spool";
}

void Recording::mark(std::uint64_t seq) {
  above_.insert(seq);
  while (!above_.empty() && *above_.begin() == next_) {
    above_.erase(above_.begin());
    ++next_;
  }
}

void Recording::count(const v1::Batch& batch, std::uint64_t compressed_bytes) {
  mark(batch.sequence());
  ++batches_;
  records_ += batch.record_count();
  compressed_bytes_ += compressed_bytes;
  for (const auto& lost : batch.lost()) {
    (lost.source() == v1::LostNotice::COLLECTOR ? lost_collector_ : lost_kernel_) += lost.count();
  }
}

Result<Recording::Stored> Recording::store(std::string& compressed, const v1::Batch& batch) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (has(batch.sequence())) {
    ++duplicates_;
    return Stored::Duplicate;
  }
  if (finished_) return Error("recording " + id_ + ": batch " + std::to_string(batch.sequence()) + " after the trailer");
  if (!writer_) return Error("recording " + id_ + ": its file " + path_ + " is closed (no live connection)");
  EncodedBatch encoded;
  encoded.sequence = batch.sequence();
  encoded.records = batch.record_count();
  encoded.compressed = std::move(compressed);
  Status written = writer_->write_batch(encoded);
  compressed = std::move(encoded.compressed);
  if (!written) return Error("cannot store it: " + written.error().message());
  count(batch, compressed.size());
  return Stored::New;
}

Status Recording::finish(const v1::TraceTrailer& trailer) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_) return {};
  finished_ = true;
  Status closed = writer_->close(trailer);
  writer_.reset();  // a long-running sink keeps no compressor per finished recording
  return closed;
}

Status Recording::sync() {
  std::lock_guard<std::mutex> lock(mutex_);
  return writer_ ? writer_->sync() : Status{};
}

std::uint64_t Recording::next_sequence() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return next_;
}

RecordingSummary Recording::summary() const {
  std::lock_guard<std::mutex> lock(mutex_);
  RecordingSummary s;
  s.id = id_;
  s.host = host_;
  s.file = path_;
  s.finished = finished_;
  s.expired = expired_;
  s.batches = batches_;
  s.records = records_;
  s.compressed_bytes = compressed_bytes_;
  s.duplicates = duplicates_;
  s.lost_kernel = lost_kernel_;
  s.lost_collector = lost_collector_;
  s.next_sequence = next_;
  return s;
}

Result<std::unique_ptr<RecordingStore>> RecordingStore::open(const RecordingStoreOptions& options) {
  std::unique_ptr<RecordingStore> store(new RecordingStore(options));
  std::error_code ec;
  fs::create_directories(options.dir, ec);
  if (ec) return Error("sink: creating " + options.dir + ": " + ec.message());
  return store;
}

RecordingStore::~RecordingStore() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& [id, r] : recordings_) {
    std::lock_guard<std::mutex> rlock(r->mutex_);
    // Without a trailer: the collector did not finish, and a store opened later on this directory goes
    // on in the same file. (A finished recording's writer is closed already.)
    if (r->writer_) r->writer_->abandon();
    r->writer_.reset();
  }
}

std::shared_ptr<Recording> RecordingStore::find(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = recordings_.find(id);
  return it == recordings_.end() ? nullptr : it->second;
}

Result<std::shared_ptr<Recording>> RecordingStore::recording(const std::string& id, const v1::TraceHeader& header) {
  std::lock_guard<std::mutex> lock(mutex_);
  return open_locked(id, header, 0);
}

Result<std::shared_ptr<Recording>> RecordingStore::connect(const std::string& id, const v1::TraceHeader& header) {
  std::lock_guard<std::mutex> lock(mutex_);
  return open_locked(id, header, 1);
}

void RecordingStore::disconnect(const std::shared_ptr<Recording>& recording) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (recording->connections_ == 0) return;
  const auto at = now();
  if (--recording->connections_ == 0) recording->idle_since_ = at;
  files_.detach(recording->id_, at);
}

Status RecordingStore::finish(const std::shared_ptr<Recording>& recording, const v1::TraceTrailer& trailer) {
  std::lock_guard<std::mutex> lock(mutex_);
  files_.closed(recording->id_);
  recording->header_.Clear();  // kept only to reopen its file: a finished recording's never is
  return recording->finish(trailer);
}

std::chrono::steady_clock::time_point RecordingStore::now() const {
  return options_.now ? options_.now() : std::chrono::steady_clock::now();
}

Status RecordingStore::make_room_locked(const std::string& for_id) {
  while (files_.full()) {
    auto victim = files_.victim();
    if (!victim) {
      ++stats_.refused_full;
      return Error("no file for collector " + for_id + ": all " + std::to_string(files_.open_files()) +
                       " recording files the sink may keep open (--max-open-files " +
                       std::to_string(files_.capacity()) + ") have a live connection",
                   EMFILE);
    }
    ++stats_.closed_for_room;
    close_file_locked(*recordings_.at(*victim));
  }
  return {};
}

void RecordingStore::close_file_locked(Recording& r) {
  files_.closed(r.id_);
  std::lock_guard<std::mutex> rlock(r.mutex_);
  if (!r.writer_) return;
  r.position_ = r.writer_->position();
  // No trailer: the file ends after its last complete frame, and reopen_locked goes on from there.
  r.writer_->abandon();
  r.writer_.reset();
}

Status RecordingStore::reopen_locked(Recording& r) {
  if (auto room = make_room_locked(r.id_); !room) return room;
  std::lock_guard<std::mutex> rlock(r.mutex_);
  if (!r.file_closed()) return {};
  TraceWriterOptions wo;
  wo.path = r.path_;
  wo.rotate_bytes = options_.rotate_bytes;
  wo.rotate_time = options_.rotate_time;
  wo.resume_piece = r.position_.piece;
  wo.resume_offset = r.position_.offset;
  wo.resume_batches = r.position_.batches;
  wo.resume_records = r.position_.records;
  auto writer = TraceFileWriter::create(wo, r.header_);
  if (!writer) return writer.error().with_context("collector " + r.id_ + ": reopening its recording");
  r.writer_ = std::move(*writer);
  ++stats_.reopened;
  files_.opened(r.id_, r.connections_, now());
  return {};
}

Result<std::shared_ptr<Recording>> RecordingStore::open_locked(const std::string& id, const v1::TraceHeader& header,
                                                               unsigned connections) {
  const auto at = now();
  auto it = recordings_.find(id);
  if (it != recordings_.end()) {
    Recording& r = *it->second;
    bool closed, expired;
    {
      std::lock_guard<std::mutex> rlock(r.mutex_);
      closed = r.file_closed();
      expired = r.expired_;
    }
    if (expired) return expired_error(r);
    if (closed) {
      if (connections) r.connections_ += connections;  // opened in use: no idle moment in between
      Status reopened = reopen_locked(r);
      if (!reopened) {
        r.connections_ -= connections;
        return reopened.error();
      }
    } else if (connections) {
      r.connections_ += connections;
      // A finished recording has no file open to attach to.
      if (files_.is_open(id)) files_.attach(id);
    }
    return it->second;
  }
  if (files_.full() && !files_.victim()) {
    // Refused before the files are scanned: a collector the sink cannot take costs it nothing.
    if (auto room = make_room_locked(id); !room) return room.error();
  }

  auto r = std::make_shared<Recording>();
  r->id_ = id;
  r->host_ = header.host();
  r->path_ = options_.dir + "/" + file_safe_id(id) + ".data";
  TraceWriterOptions wo;
  wo.path = r->path_;
  wo.rotate_bytes = options_.rotate_bytes;
  wo.rotate_time = options_.rotate_time;

  // A restart: find what this recording's files already hold, and where the last one ends cleanly.
  for (std::uint32_t piece = 0;; ++piece) {
    const std::string path = piece == 0 ? r->path_ : r->path_ + "." + std::to_string(piece);
    if (!fs::exists(path)) break;
    auto reader = TraceFileReader::open(path);
    if (!reader) {
      // Not even a header: start this piece over.
      wo.resume_piece = piece;
      wo.resume_offset = 0;
      break;
    }
    std::uint64_t good = (*reader)->offset();
    std::uint64_t batches = 0, records = 0;
    bool trailer = false, final_trailer = false, expired_trailer = false;
    for (;;) {
      ReadOutcome outcome = (*reader)->next();
      if (outcome.status != ReadStatus::Frame) break;
      if (outcome.type == FrameType::Batch) {
        auto view = BatchView::parse(outcome.message);
        if (!view) break;
        // The frame's payload: the compressed batch as it was stored.
        r->count(view->batch(), (*reader)->offset() - outcome.offset - kFrameHeaderSize);
        ++batches;
        records += view->batch().record_count();
      } else if (outcome.type == FrameType::Trailer) {
        trailer = true;
        v1::TraceTrailer t;
        final_trailer = t.ParseFromString(outcome.message) && !t.rotated();
        expired_trailer = final_trailer && t.expired_after_ns() != 0;
      }
      good = (*reader)->offset();
    }
    wo.resume_piece = trailer ? piece + 1 : piece;
    wo.resume_offset = trailer ? 0 : good;
    wo.resume_batches = batches;
    wo.resume_records = records;
    // A recording that ended (its last piece has a trailer that is not a rotation's): nothing more is
    // written; batches sent again are duplicates, a trailer sent again is ignored.
    r->finished_ = trailer && final_trailer && !fs::exists(r->path_ + "." + std::to_string(piece + 1));
    r->expired_ = r->finished_ && expired_trailer;
  }
  if (r->expired_) {
    recordings_[id] = r;  // known from now on: its next hello is refused without a scan
    return expired_error(*r);
  }
  if (r->finished_) {
    log("collector " + id + ": " + r->path_ + " holds its finished recording (" + std::to_string(r->batches_) +
        " batches)");
    recordings_[id] = r;
    return r;
  }
  if (auto room = make_room_locked(id); !room) return room.error();
  if (wo.resume_piece) {
    log("collector " + id + ": resuming " + r->path_ + " with " + std::to_string(r->batches_) +
        " batches already stored");
  }
  auto writer = TraceFileWriter::create(wo, header);
  if (!writer) return writer.error();
  r->writer_ = std::move(*writer);
  r->header_ = header;
  r->connections_ = connections;
  r->idle_since_ = at;
  files_.opened(id, connections, at);
  recordings_[id] = r;
  return r;
}

Error RecordingStore::expired_error(const Recording& r) {
  return Error("collector " + r.id_ + ": its recording " + r.path_ + " expired (the sink ended it after --expire " +
                   "without a connection); start a new recording",
               ETIMEDOUT);
}

bool RecordingStore::expire_locked(Recording& r, std::chrono::steady_clock::time_point now) {
  bool closed;
  {
    std::lock_guard<std::mutex> rlock(r.mutex_);
    closed = r.file_closed();
  }
  if (closed) {
    if (auto reopened = reopen_locked(r); !reopened) {
      // Tried again at the next sweep: said once per interval.
      if (options_.log) options_.log->limited("store expiry", "cannot expire yet: " + reopened.error().message());
      return false;
    }
  }
  v1::TraceTrailer trailer;
  trailer.set_expired_after_ns(static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(now - r.idle_since_).count()));
  files_.closed(r.id_);
  Status finished = r.finish(trailer);
  {
    std::lock_guard<std::mutex> rlock(r.mutex_);
    r.expired_ = r.finished_;
  }
  ++stats_.expired;
  if (!finished) log("collector " + r.id_ + ": expiring its recording: " + finished.error().message());
  return true;
}

std::vector<RecordingSummary> RecordingStore::sweep() {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto at = now();
  std::vector<RecordingSummary> expired;
  if (options_.files.expire.count() > 0) {
    for (auto& [id, recording] : recordings_) {
      Recording& r = *recording;
      bool finished;
      {
        std::lock_guard<std::mutex> rlock(r.mutex_);
        finished = r.finished_;
      }
      if (finished || r.connections_ != 0 || at - r.idle_since_ < options_.files.expire) continue;
      if (expire_locked(r, at)) {
        expired.push_back(r.summary());
        r.header_.Clear();  // kept only to reopen its file, which is ended now
      }
    }
  }
  if (options_.files.idle_close.count() > 0) {
    for (const auto& id : files_.idle_before(at - options_.files.idle_close)) {
      ++stats_.closed_idle;
      close_file_locked(*recordings_.at(id));
    }
  }
  return expired;
}

RecordingStore::FileStats RecordingStore::file_stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  FileStats s = stats_;
  s.limit = files_.capacity();
  s.open = files_.open_files();
  s.idle = files_.idle_files();
  return s;
}

std::vector<RecordingSummary> RecordingStore::summaries() const {
  std::vector<std::shared_ptr<Recording>> all;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [id, r] : recordings_) all.push_back(r);
  }
  std::vector<RecordingSummary> out;
  for (const auto& r : all) out.push_back(r->summary());
  return out;
}

void RecordingStore::log(const std::string& line) const {
  if (options_.log) options_.log->line(line);
}

}  // namespace perfstream
