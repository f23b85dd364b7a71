#include "collector/cli/trace_loader.hpp"

#include <algorithm>
#include <ostream>

#include "collector/format/trace_reader.hpp"

namespace perfstream::cli {
namespace {

// Reads one opened file to its end or its first unrecoverable damage, appending to the trace's vectors.
class FileLoader {
 public:
  FileLoader(TraceFileReader& reader, std::uint32_t file_index, const LoadOptions& options, TraceFileInfo& info,
             std::vector<TraceRecord>& records, std::vector<TraceLost>& lost, std::vector<Damage>& damage,
             std::vector<std::unique_ptr<std::string>>& storage)
      : reader_(reader), file_(file_index), options_(options), info_(info), records_(records), lost_(lost),
        damage_(damage), storage_(storage) {}

  void run() {
    for (;;) {
      ReadOutcome outcome = reader_.next();
      switch (outcome.status) {
        case ReadStatus::End:
          return;
        case ReadStatus::Truncated:
          damage_.push_back(Damage{reader_.path(), outcome.offset, outcome.message, true, std::nullopt});
          return;
        case ReadStatus::Corrupt:
          if (!corrupt(outcome.offset, outcome.message, /*reader_stopped=*/true)) return;
          continue;
        case ReadStatus::Frame:
          if (!frame(outcome)) return;
          continue;
      }
    }
  }

 private:
  // Records the damage; true when reading goes on (skip_corrupt and a frame follows).
  bool corrupt(std::uint64_t offset, std::string message, bool reader_stopped) {
    Damage d{reader_.path(), offset, std::move(message), false, std::nullopt};
    bool go_on = false;
    if (options_.skip_corrupt) {
      // A frame that framed correctly but did not decode leaves the reader past it, at the next frame.
      const bool found = reader_stopped ? reader_.resync() : true;
      if (found && reader_.offset() < reader_.file_size()) {
        d.resumed_at = reader_.offset();
        go_on = true;
      }
    }
    damage_.push_back(std::move(d));
    return go_on;
  }

  bool frame(const ReadOutcome& outcome) {
    switch (outcome.type) {
      case FrameType::Header:
        return true;  // a repeated header carries nothing new
      case FrameType::Trailer: {
        v1::TraceTrailer trailer;
        if (!trailer.ParseFromString(outcome.message)) {
          return corrupt(outcome.offset,
                         "corrupt frame at byte " + std::to_string(outcome.offset) + ": the trailer does not decode",
                         false);
        }
        info_.trailer = std::move(trailer);
        return true;
      }
      case FrameType::Batch:
        break;
      case FrameType::Hello:
      case FrameType::Welcome:
      case FrameType::Ack:
      case FrameType::Refusal:
        // The file reader never yields stream control frames (FrameContext::File refuses them).
        return corrupt(outcome.offset, "stream control frame at byte " + std::to_string(outcome.offset), false);
    }
    auto view = BatchView::parse(outcome.message);
    if (!view) {
      return corrupt(outcome.offset,
                     "corrupt frame at byte " + std::to_string(outcome.offset) + ": " + view.error().message(), false);
    }
    const v1::Batch& batch = view->batch();
    const std::uint64_t frame_bytes = reader_.offset() - outcome.offset;
    ++info_.batches;
    info_.records += view->size();
    info_.batch_frame_bytes += frame_bytes;
    info_.compressed_payload_bytes += frame_bytes - kFrameHeaderSize;
    info_.batch_message_bytes += outcome.message.size();
    info_.payload_bytes += batch.payloads().size();

    storage_.push_back(std::make_unique<std::string>(batch.payloads()));
    const std::string& block = *storage_.back();
    for (std::size_t i = 0; i < view->size(); ++i) {
      const BatchView::Record r = view->record(i);
      const std::size_t at = static_cast<std::size_t>(r.payload.data() - batch.payloads().data());
      records_.push_back(TraceRecord{r.time_ns, r.cpu, std::span<const char>(block.data() + at, r.payload.size()),
                                     batch.sequence(), static_cast<std::uint32_t>(i), file_});
    }
    for (const auto& notice : batch.lost()) {
      TraceLost l;
      l.cpu = notice.cpu();
      l.count = notice.count();
      l.time_ns = notice.time_ns();
      l.source = notice.source();
      l.batch_sequence = batch.sequence();
      l.before = notice.before();
      l.file = file_;
      l.sort_time_ns = l.time_ns;
      if (l.sort_time_ns == 0) {
        if (l.before < view->size()) l.sort_time_ns = view->record(l.before).time_ns;
        else if (view->size() > 0) l.sort_time_ns = view->record(view->size() - 1).time_ns;
        else l.sort_time_ns = batch.first_time_ns();
      }
      lost_.push_back(l);
    }
    return true;
  }

  TraceFileReader& reader_;
  std::uint32_t file_;
  const LoadOptions& options_;
  TraceFileInfo& info_;
  std::vector<TraceRecord>& records_;
  std::vector<TraceLost>& lost_;
  std::vector<Damage>& damage_;
  std::vector<std::unique_ptr<std::string>>& storage_;
};

}  // namespace

Result<LoadedTrace> load_trace(const std::vector<std::string>& paths, const LoadOptions& options) {
  if (paths.empty()) return Error("no trace file given");
  // Open every file first: a wrong file is an error before anything is read, and pieces go in order.
  std::vector<std::unique_ptr<TraceFileReader>> readers;
  for (const auto& path : paths) {
    auto reader = TraceFileReader::open(path);
    if (!reader) return reader.error();
    readers.push_back(std::move(*reader));
  }
  const v1::TraceHeader& first = readers.front()->header();
  for (const auto& r : readers) {
    if (r->header().recording_id() != first.recording_id()) {
      return Error(r->path() + " belongs to recording '" + r->header().recording_id() + "', " + paths.front() +
                   " to recording '" + first.recording_id() + "': name the pieces of one recording only");
    }
  }
  std::stable_sort(readers.begin(), readers.end(),
                   [](const auto& a, const auto& b) { return a->header().piece() < b->header().piece(); });
  for (std::size_t i = 1; i < readers.size(); ++i) {
    if (readers[i]->header().piece() == readers[i - 1]->header().piece()) {
      return Error(readers[i - 1]->path() + " and " + readers[i]->path() + " are both piece " +
                   std::to_string(readers[i]->header().piece()) + " of recording '" + first.recording_id() +
                   "': name each piece once");
    }
  }

  LoadedTrace trace;
  trace.files_.resize(readers.size());
  for (std::size_t i = 0; i < readers.size(); ++i) {
    TraceFileInfo& info = trace.files_[i];
    info.path = readers[i]->path();
    info.header = readers[i]->header();
    info.file_size = readers[i]->file_size();
    FileLoader(*readers[i], static_cast<std::uint32_t>(i), options, info, trace.records_, trace.lost_,
               trace.damage_, trace.storage_)
        .run();
  }
  return trace;
}

std::vector<LoadedTrace::Entry> LoadedTrace::timeline() const {
  std::vector<Entry> entries;
  entries.reserve(records_.size() + lost_.size());
  for (std::size_t i = 0; i < lost_.size(); ++i) entries.push_back(Entry{Entry::Kind::Lost, i});
  for (std::size_t i = 0; i < records_.size(); ++i) entries.push_back(Entry{Entry::Kind::Record, i});
  std::stable_sort(entries.begin(), entries.end(), [this](const Entry& a, const Entry& b) {
    const std::uint64_t ta = time_of(a), tb = time_of(b);
    if (ta != tb) return ta < tb;
    return a.kind < b.kind;
  });
  return entries;
}

bool LoadedTrace::ended_cleanly() const {
  const auto& last = files_.back();
  return last.trailer.has_value() && !last.trailer->rotated();
}

const v1::TraceTrailer* LoadedTrace::last_trailer() const {
  for (auto it = files_.rbegin(); it != files_.rend(); ++it) {
    if (it->trailer) return &*it->trailer;
  }
  return nullptr;
}

// Reports the damage the loader found on err; true when it is an error (a corrupt frame not skipped).
bool report_damage(const std::string& command, const LoadedTrace& trace, bool skip_corrupt, std::ostream& err) {
  bool failed = false;
  for (const auto& d : trace.damage()) {
    if (d.truncated) {
      err << "perfstream " << command << ": warning: " << d.path << ": stopped at byte " << d.offset << ": "
          << d.message << "; every complete record before it was read\n";
    } else if (skip_corrupt) {
      err << "perfstream " << command << ": warning: " << d.path << ": skipped a " << d.message << "; "
          << (d.resumed_at ? "read on from byte " + std::to_string(*d.resumed_at)
                           : std::string("no readable frame follows it"))
          << "\n";
    } else {
      failed = true;
      err << "perfstream " << command << ": " << d.path << ": " << d.message
          << "; the records before it were read, the rest of the file was not (pass --skip-corrupt to skip "
             "damaged frames and read on)\n";
    }
  }
  return failed;
}

}  // namespace perfstream::cli
