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
  if (broken_) {
    return Error("cannot store batch " + std::to_string(batch.sequence()) + " in " + path_ +
                 ": an earlier write failed; it is opened again at the collector's next hello");
  }
  if (!writer_) return Error("recording " + id_ + ": its file " + path_ + " is closed (no live connection)");
  EncodedBatch encoded;
  encoded.sequence = batch.sequence();
  encoded.records = batch.record_count();
  encoded.compressed = std::move(compressed);
  Status written = writer_->write_batch(encoded);
  compressed = std::move(encoded.compressed);
  if (!written) {
    // The writer cut the file back to its last complete frame and refuses everything from now on: drop
    // it. The store scans the files again (where they end is theirs to say now) when the sender is back.
    broken_ = true;
    writer_->abandon();
    writer_.reset();
    const int err = written.error().errnum();
    const std::string what = "cannot store batch " + std::to_string(batch.sequence()) + " in " + path_;
    return err != 0 ? Error::from_errno(what, err) : Error(what + ": " + written.error().message());
  }
  count(batch, compressed.size());
  return Stored::New;
}

Status Recording::finish(const v1::TraceTrailer& trailer) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_) return {};
  if (!writer_) {
    return Error("recording " + id_ + ": cannot write its trailer: " +
                 (broken_ ? "an earlier write failed; it is opened again at the collector's next hello"
                          : "its file " + path_ + " is closed"));
  }
  finished_ = true;
  Status closed = writer_->close(trailer);
  writer_.reset();  // a long-running sink keeps no compressor per finished recording
  return closed;
}

Status Recording::sync() {
  std::lock_guard<std::mutex> lock(mutex_);
  return writer_ ? writer_->sync() : Status{};
}

bool Recording::broken() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return broken_;
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

bool RecordingStore::needs_scan(const std::string& id) const {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = recordings_.find(id);
    if (it != recordings_.end()) return it->second->broken();
  }
  std::error_code ec;
  return fs::exists(options_.dir + "/" + file_safe_id(id) + ".data", ec);
}

Result<std::shared_ptr<Recording>> RecordingStore::recording(const std::string& id, const v1::TraceHeader& header) {
  return acquire(id, header, 0);
}

Result<std::shared_ptr<Recording>> RecordingStore::connect(const std::string& id, const v1::TraceHeader& header) {
  return acquire(id, header, 1);
}

Result<std::shared_ptr<Recording>> RecordingStore::acquire(const std::string& id, const v1::TraceHeader& header,
                                                           unsigned connections) {
  std::shared_ptr<std::mutex> loading;
  auto forget_loading = [&] {  // mutex_ held
    if (auto it = loading_.find(id); it != loading_.end() && it->second == loading) loading_.erase(it);
  };
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto known = open_known_locked(id, connections)) return std::move(*known);
    if (recordings_.count(id) == 0 && files_.full() && !files_.victim()) {
      // Refused before the files are scanned: a collector the sink cannot take costs it nothing.
      if (auto room = make_room_locked(id); !room) return room.error();
    }
    auto& slot = loading_[id];
    if (!slot) slot = std::make_shared<std::mutex>();
    loading = slot;
  }
  // One scan per id at a time; other ids go on meanwhile (the store's lock is not held while scanning).
  std::lock_guard<std::mutex> once(*loading);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto known = open_known_locked(id, connections)) {  // put in place while we waited
      forget_loading();
      return std::move(*known);
    }
  }
  Scanned scanned = scan(id, header);
  std::lock_guard<std::mutex> lock(mutex_);
  forget_loading();
  return install_locked(id, header, std::move(scanned), connections);
}

std::optional<Result<std::shared_ptr<Recording>>> RecordingStore::open_known_locked(const std::string& id,
                                                                                   unsigned connections) {
  using Opened = std::optional<Result<std::shared_ptr<Recording>>>;
  auto it = recordings_.find(id);
  if (it == recordings_.end()) return std::nullopt;
  Recording& r = *it->second;
  bool closed, expired, broken;
  {
    std::lock_guard<std::mutex> rlock(r.mutex_);
    closed = r.file_closed();
    expired = r.expired_;
    broken = r.broken_;
  }
  if (expired) return Opened(expired_error(r));
  if (broken) {
    files_.closed(id);  // its writer went when the write failed
    return std::nullopt;  // where its files end is theirs to say: scanned first
  }
  if (closed) {
    if (connections) r.connections_ += connections;  // opened in use: no idle moment in between
    Status reopened = reopen_locked(r);
    if (!reopened) {
      r.connections_ -= connections;
      return Opened(reopened.error());
    }
  } else if (connections) {
    r.connections_ += connections;
    // A finished recording has no file open to attach to.
    if (files_.is_open(id)) files_.attach(id);
  }
  return Opened(it->second);
}

RecordingStore::Scanned RecordingStore::scan(const std::string& id, const v1::TraceHeader& header) const {
  Scanned out;
  auto r = std::make_shared<Recording>();
  out.recording = r;
  r->id_ = id;
  r->host_ = header.host();
  r->path_ = options_.dir + "/" + file_safe_id(id) + ".data";
  TraceWriterOptions& wo = out.writer;
  wo.path = r->path_;
  wo.rotate_bytes = options_.rotate_bytes;
  wo.rotate_time = options_.rotate_time;

  // A restart (or a broken recording): find what its files already hold, and where the last one ends
  // cleanly. `r` is this thread's alone until install_locked: its own lock is not needed.
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
  return out;
}

Result<std::shared_ptr<Recording>> RecordingStore::install_locked(const std::string& id, const v1::TraceHeader& header,
                                                                  Scanned scanned, unsigned connections) {
  // Another scan of this id (one that began after ours, once ours' loading lock was forgotten) may have
  // put it in place already: that one stands.
  if (auto known = open_known_locked(id, connections)) return std::move(*known);
  const auto at = now();
  Recording& s = *scanned.recording;
  auto it = recordings_.find(id);
  // Known already: a broken recording, brought back in place (its connections and duplicates stay).
  std::shared_ptr<Recording> r = it != recordings_.end() ? it->second : scanned.recording;
  const bool reload = r != scanned.recording;
  auto take_scan = [&] {  // r's mutex held
    if (!reload) return;
    r->next_ = s.next_;
    r->above_ = std::move(s.above_);
    r->batches_ = s.batches_;
    r->records_ = s.records_;
    r->compressed_bytes_ = s.compressed_bytes_;
    r->lost_kernel_ = s.lost_kernel_;
    r->lost_collector_ = s.lost_collector_;
    r->finished_ = s.finished_;
    r->expired_ = s.expired_;
  };
  if (s.expired_ || s.finished_) {
    {
      std::lock_guard<std::mutex> rlock(r->mutex_);
      take_scan();
      r->broken_ = false;
    }
    r->header_.Clear();  // kept only to reopen its file: a finished recording's never is
    recordings_[id] = r;  // known from now on: its next hello is answered without a scan
    if (s.expired_) return expired_error(*r);
    log(id, "collector " + id + ": " + r->path_ + " holds its finished recording (" + std::to_string(s.batches_) +
                " batches)");
    return r;
  }
  if (auto room = make_room_locked(id); !room) return room.error();  // a broken one stays broken
  const v1::TraceHeader& created_with = reload && r->header_.ByteSizeLong() != 0 ? r->header_ : header;
  if (reload) {
    log(id, "collector " + id + ": reopening " + r->path_ + " after a failed write, with " +
                std::to_string(s.batches_) + " batches stored");
  } else if (scanned.writer.resume_piece) {
    log(id, "collector " + id + ": resuming " + r->path_ + " with " + std::to_string(s.batches_) +
                " batches already stored");
  }
  auto writer = TraceFileWriter::create(scanned.writer, created_with);
  if (!writer) {
    return reload ? writer.error().with_context("collector " + id + ": reopening its recording") : writer.error();
  }
  if (!reload) r->header_ = header;
  {
    std::lock_guard<std::mutex> rlock(r->mutex_);
    take_scan();
    r->writer_ = std::move(*writer);
    r->broken_ = false;
  }
  if (reload) {
    ++stats_.reopened;
  } else {
    r->idle_since_ = at;
  }
  r->connections_ += connections;
  files_.opened(id, r->connections_, at);
  recordings_[id] = r;
  return r;
}

void RecordingStore::disconnect(const std::shared_ptr<Recording>& recording) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (recording->connections_ == 0) return;
  const auto at = now();
  if (--recording->connections_ == 0) recording->idle_since_ = at;
  files_.detach(recording->id_, at);
  if (recording->broken()) files_.closed(recording->id_);  // its writer went when the write failed
}

Status RecordingStore::finish(const std::shared_ptr<Recording>& recording, const v1::TraceTrailer& trailer) {
  std::lock_guard<std::mutex> lock(mutex_);
  Status finished = recording->finish(trailer);
  if (recording->broken()) {
    files_.closed(recording->id_);
    return finished;  // not finished: the trailer comes again after the recording is reopened
  }
  files_.closed(recording->id_);
  recording->header_.Clear();  // kept only to reopen its file: a finished recording's never is
  return finished;
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
  if (!r.writer_) return;  // a broken recording's went already (and its position with it)
  r.position_ = r.writer_->position();
  // No trailer: the file ends after its last complete frame, and reopen_locked goes on from there.
  r.writer_->abandon();
  r.writer_.reset();
}

Status RecordingStore::reopen_locked(Recording& r) {
  if (auto room = make_room_locked(r.id_); !room) return room;
  std::lock_guard<std::mutex> rlock(r.mutex_);
  if (!r.file_closed()) return {};
  if (r.broken_) return Error("collector " + r.id_ + ": its recording " + r.path_ + " is read again first");
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
  if (!finished) log(r.id_, "collector " + r.id_ + ": expiring its recording: " + finished.error().message());
  return true;
}

std::vector<RecordingSummary> RecordingStore::sweep() {
  if (options_.files.expire.count() > 0) {
    // A broken recording due to expire is scanned again first (without the store's lock, as connect()
    // does): its trailer goes where its files end.
    std::vector<std::pair<std::string, v1::TraceHeader>> rescan;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto at = now();
      for (auto& [id, r] : recordings_) {
        if (r->connections_ == 0 && at - r->idle_since_ >= options_.files.expire && r->broken()) {
          rescan.emplace_back(id, r->header_);
        }
      }
    }
    for (const auto& [id, header] : rescan) {
      if (auto reopened = acquire(id, header, 0); !reopened && options_.log) {
        options_.log->limited("store expiry", "cannot expire yet: " + reopened.error().message());
      }
    }
  }
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

void RecordingStore::log(const std::string& id, const std::string& line) const {
  // A sender that keeps coming back (a full disk refuses it each time) reopens its recording each time.
  if (options_.log) options_.log->limited("store " + id, line);
}

}  // namespace perfstream
