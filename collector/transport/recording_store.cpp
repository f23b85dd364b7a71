#include "collector/transport/recording_store.hpp"

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
         (finished ? "" : " (not finished: no trailer yet)") + ", lost " + std::to_string(lost_kernel) +
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
  if (broken_ || !writer_) {
    return Error("cannot store batch " + std::to_string(batch.sequence()) + " in " + path_ +
                 ": an earlier write failed; it is opened again at the collector's next hello");
  }
  EncodedBatch encoded;
  encoded.sequence = batch.sequence();
  encoded.records = batch.record_count();
  encoded.compressed = std::move(compressed);
  Status written = writer_->write_batch(encoded);
  compressed = std::move(encoded.compressed);
  if (!written) {
    // The writer cut the file back to its last complete frame and refuses everything from now on: drop
    // it, and let the store open the file again (from what it holds) when the sender comes back.
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
  std::unique_ptr<RecordingStore> store(new RecordingStore());
  store->options_ = options;
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

std::shared_ptr<Recording> RecordingStore::open_recording(const std::string& id) const {
  auto it = recordings_.find(id);
  return it == recordings_.end() || it->second->broken() ? nullptr : it->second;
}

bool RecordingStore::needs_scan(const std::string& id) const {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (open_recording(id)) return false;
  }
  std::error_code ec;
  return fs::exists(options_.dir + "/" + file_safe_id(id) + ".data", ec);
}

Result<std::shared_ptr<Recording>> RecordingStore::recording(const std::string& id, const v1::TraceHeader& header) {
  std::shared_ptr<std::mutex> loading;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto r = open_recording(id)) return r;
    auto& slot = loading_[id];
    if (!slot) slot = std::make_shared<std::mutex>();
    loading = slot;
  }
  // One load per id at a time; other ids go on meanwhile (the store's lock is not held while scanning).
  std::lock_guard<std::mutex> once(*loading);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto r = open_recording(id)) return r;  // loaded while we waited
  }
  auto loaded = load(id, header);
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto it = loading_.find(id); it != loading_.end() && it->second == loading) loading_.erase(it);
  if (!loaded) return loaded.error();
  if (auto it = recordings_.find(id); it != recordings_.end()) {
    // Reopened after a failed write: the duplicates it counted stay counted.
    std::lock_guard<std::mutex> old_lock(it->second->mutex_);
    std::lock_guard<std::mutex> new_lock((*loaded)->mutex_);
    (*loaded)->duplicates_ += it->second->duplicates_;
  }
  recordings_[id] = *loaded;
  return *loaded;
}

Result<std::shared_ptr<Recording>> RecordingStore::load(const std::string& id, const v1::TraceHeader& header) const {
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
    bool trailer = false, final_trailer = false;
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
  }
  if (r->finished_) {
    log(id, "collector " + id + ": " + r->path_ + " holds its finished recording (" + std::to_string(r->batches_) +
        " batches)");
    return r;
  }
  if (wo.resume_piece) {
    log(id, "collector " + id + ": resuming " + r->path_ + " with " + std::to_string(r->batches_) +
        " batches already stored");
  }
  auto writer = TraceFileWriter::create(wo, header);
  if (!writer) return writer.error();
  r->writer_ = std::move(*writer);
  return r;
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
