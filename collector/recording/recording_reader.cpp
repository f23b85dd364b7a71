#include "collector/recording/recording_reader.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "collector/util/text.hpp"

namespace perfstream::recording {
namespace {

constexpr std::size_t kListedProblems = 10;  // sequence numbers named one by one before "and N more"

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// FILE for FILE.N when N is the piece number; empty when the name does not end so.
std::string base_of(const std::string& path, std::uint32_t piece) {
  if (piece == 0) return path;
  const std::string suffix = "." + std::to_string(piece);
  if (path.size() > suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0) {
    return path.substr(0, path.size() - suffix.size());
  }
  return "";
}

std::string range_text(std::uint64_t first, std::uint64_t last) {
  return first == last ? "batch " + std::to_string(first)
                       : "batches " + std::to_string(first) + "-" + std::to_string(last);
}

}  // namespace

Result<std::unique_ptr<RecordingReader>> RecordingReader::open(const std::vector<std::string>& inputs,
                                                               const RecordingOptions& options) {
  if (inputs.empty()) return Error("no trace file given");
  if (options.follow && inputs.size() != 1) return Error("--follow reads one recording: name its first file only");
  std::unique_ptr<RecordingReader> r(new RecordingReader());
  r->options_ = options;
  for (const auto& input : inputs) {
    auto reader = r->open_file(input);
    if (!reader) return reader.error();
    r->named_.push_back(std::move(*reader));
  }
  const v1::TraceHeader& first = r->named_.front()->header();
  for (const auto& n : r->named_) {
    if (n->header().recording_id() != first.recording_id()) {
      return Error(n->path() + " belongs to recording '" + n->header().recording_id() + "', " + inputs.front() +
                   " to recording '" + first.recording_id() + "': name the pieces of one recording only");
    }
  }
  std::stable_sort(r->named_.begin(), r->named_.end(),
                   [](const auto& a, const auto& b) { return a->header().piece() < b->header().piece(); });
  for (std::size_t i = 1; i < r->named_.size(); ++i) {
    if (r->named_[i]->header().piece() == r->named_[i - 1]->header().piece()) {
      return Error(r->named_[i - 1]->path() + " and " + r->named_[i]->path() + " are both piece " +
                   std::to_string(r->named_[i]->header().piece()) + " of recording '" + first.recording_id() +
                   "': name each piece once");
    }
  }
  for (const auto& n : r->named_) {
    r->inputs_.emplace_back(n->path(), n->header().piece());
    r->regular_inputs_ = r->regular_inputs_ && n->is_regular_file();
  }
  if (r->named_.size() == 1 && r->named_.front()->is_regular_file()) {
    r->base_path_ = base_of(inputs.front(), r->named_.front()->header().piece());
    r->discover_ = !r->base_path_.empty();
  }
  r->open_next_piece();
  return r;
}

Result<std::unique_ptr<TraceFileReader>> RecordingReader::open_file(const std::string& path) {
  ReadLimits limits;
  limits.max_message_bytes = options_.limits.max_batch_bytes;
  TraceFileReader::WaitForMore waiter;
  if (options_.follow) waiter = [this] { return wait_a_little(); };
  return TraceFileReader::open(path, limits, std::move(waiter));
}

bool RecordingReader::wait_a_little() {
  if (stop_waiting_ || (options_.keep_waiting && !options_.keep_waiting())) {
    stop_waiting_ = true;
    return false;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  return true;
}

bool RecordingReader::open_next_piece() {
  if (next_named_ < named_.size()) {
    current_ = std::move(named_[next_named_++]);
  } else if (discover_ && !pieces_.empty() && pieces_.back().trailer && pieces_.back().trailer->rotated()) {
    const PieceInfo& previous = pieces_.back();
    const std::uint32_t piece = previous.header.piece() + 1;
    const std::string path = base_path_ + "." + std::to_string(piece);
    while (options_.follow && !exists(path) && wait_a_little()) {
    }
    if (!exists(path)) {
      if (!stop_waiting_) {
        problems_.push_back("the recording continues in piece " + std::to_string(piece) + " (" + path +
                            "), which is missing");
      }
      piece_problem_ = true;
      return false;
    }
    auto reader = open_file(path);
    if (!reader) {
      problems_.push_back(reader.error().message());
      piece_problem_ = true;
      return false;
    }
    const v1::TraceHeader& h = (*reader)->header();
    if (h.recording_id() != header().recording_id() || h.piece() != piece) {
      problems_.push_back(path + " is piece " + std::to_string(h.piece()) + " of recording '" + h.recording_id() +
                          "', not piece " + std::to_string(piece) + " of '" + header().recording_id() +
                          "': not read");
      piece_problem_ = true;
      return false;
    }
    if (options_.note) options_.note("reading on in " + path + " (piece " + std::to_string(piece) + ")");
    current_ = std::move(*reader);
  } else {
    return false;
  }
  PieceInfo info;
  info.path = current_->path();
  info.header = current_->header();
  pieces_.push_back(std::move(info));
  return true;
}

bool RecordingReader::next(ReadBatch& out) {
  for (;;) {
    if (!current_ && !open_next_piece()) {
      finish_checks();
      return false;
    }
    ReadOutcome outcome = current_->next();
    pieces_.back().file_size = current_->file_size();
    bool piece_goes_on = true;
    switch (outcome.status) {
      case ReadStatus::End:
        piece_goes_on = false;
        break;
      case ReadStatus::Truncated:
        damage_.push_back(Damage{current_->path(), outcome.offset, outcome.message, true, std::nullopt});
        piece_goes_on = false;
        break;
      case ReadStatus::Corrupt:
        piece_goes_on = corrupt(outcome.offset, outcome.message, true);
        break;
      case ReadStatus::Frame:
        if (handle_frame(outcome, out)) return true;
        piece_goes_on = current_ != nullptr;
        break;
    }
    if (!piece_goes_on) current_.reset();
  }
}

bool RecordingReader::corrupt(std::uint64_t offset, std::string message, bool reader_stopped) {
  Damage d{current_->path(), offset, std::move(message), false, std::nullopt};
  bool go_on = false;
  if (options_.skip_corrupt) {
    // A frame that framed correctly but did not decode leaves the reader past it, at the next frame.
    const bool found = reader_stopped ? current_->resync() : true;
    if (found && (!current_->is_regular_file() || options_.follow || current_->offset() < current_->file_size())) {
      d.resumed_at = current_->offset();
      go_on = true;
    }
  }
  damage_.push_back(std::move(d));
  return go_on;
}

bool RecordingReader::handle_frame(ReadOutcome& outcome, ReadBatch& out) {
  PieceInfo& info = pieces_.back();
  const std::string at = std::to_string(outcome.offset);
  switch (outcome.type) {
    case FrameType::Header:
      return false;  // a repeated header carries nothing new
    case FrameType::Trailer: {
      v1::TraceTrailer trailer;
      if (!trailer.ParseFromString(outcome.message)) {
        if (!corrupt(outcome.offset, "corrupt frame at byte " + at + ": the trailer does not decode", false)) {
          current_.reset();
        }
        return false;
      }
      if (trailer.expired_after_ns() != 0 && options_.note) {
        std::string gone;
        append_seconds(gone, trailer.expired_after_ns());
        options_.note(info.path + ": the sink ended this recording, its collector gone for " + gone +
                      " s (sink --expire): the collector never sent its own trailer");
      }
      info.trailer = std::move(trailer);
      // Followed, the trailer is the last frame: nothing more will be written after it.
      if (options_.follow) current_.reset();
      return false;
    }
    case FrameType::Batch:
      break;
    default:
      // The file reader never yields stream control frames (FrameContext::File refuses them).
      if (!corrupt(outcome.offset, "stream control frame at byte " + at, false)) current_.reset();
      return false;
  }
  const std::uint64_t frame_bytes = current_->offset() - outcome.offset;
  const std::size_t message_bytes = outcome.message.size();
  const Status decoded = out.batch.decode(outcome.message, options_.limits.max_batch_records);
  current_->recycle(std::move(outcome.message));  // the batch's previous buffer, to decompress into next
  if (auto st = decoded; !st) {
    if (!corrupt(outcome.offset, "corrupt frame at byte " + at + ": " + st.error().message(), false)) current_.reset();
    return false;
  }
  const DecodedBatch& b = out.batch;
  ++info.batches;
  info.records += b.size();
  info.batch_frame_bytes += frame_bytes;
  info.compressed_payload_bytes += frame_bytes - kFrameHeaderSize;
  info.batch_message_bytes += message_bytes;
  info.payload_bytes += b.payloads().size();
  if (!sequence_ok(b.sequence, current_->path() + " at byte " + at)) return false;
  // Records come in runs of one CPU: look the CPU up once a run.
  CpuCounts* counts = nullptr;
  std::uint32_t counted_cpu = 0;
  for (std::uint32_t cpu : b.cpus) {
    if (counts == nullptr || cpu != counted_cpu) {
      counts = &cpu_counts_[cpu];
      counted_cpu = cpu;
    }
    ++counts->records;
  }
  for (const auto& l : b.lost) (l.from_collector ? cpu_counts_[l.cpu].lost_collector : cpu_counts_[l.cpu].lost_kernel) += l.count;
  out.piece = static_cast<std::uint32_t>(pieces_.size() - 1);
  return true;
}

bool RecordingReader::sequence_ok(std::uint64_t sequence, const std::string& where) {
  if (sequence < contiguous_ || seen_above_.count(sequence) != 0) {
    if (++duplicates_ <= kListedProblems) {
      problems_.push_back("batch " + std::to_string(sequence) + " appears again (" + where +
                          "); the copy was skipped");
    }
    return false;
  }
  if (highest_ && sequence < *highest_) {
    problems_.push_back("batch " + std::to_string(sequence) + " comes after batch " + std::to_string(*highest_) +
                        " (" + where + "): out of order");
  }
  if (!highest_ || sequence > *highest_) highest_ = sequence;
  if (sequence == contiguous_) {
    ++contiguous_;
    while (!seen_above_.empty() && *seen_above_.begin() == contiguous_) {
      seen_above_.erase(seen_above_.begin());
      ++contiguous_;
    }
  } else {
    seen_above_.insert(sequence);
  }
  return true;
}

void RecordingReader::finish_checks() {
  if (finished_) return;
  finished_ = true;
  if (duplicates_ > kListedProblems) {
    problems_.push_back(std::to_string(duplicates_ - kListedProblems) + " more batches appear again; skipped");
  }
  // Missing batches: the gaps below the highest sequence read.
  if (highest_) {
    std::uint64_t missing = 0, ranges = 0;
    std::uint64_t from = contiguous_;
    auto gap = [&](std::uint64_t first, std::uint64_t last) {
      missing += last - first + 1;
      if (++ranges <= kListedProblems) {
        problems_.push_back(range_text(first, last) + (first == last ? " is" : " are") + " missing (" +
                            std::to_string(last - first + 1) + (first == last ? " batch)" : " batches)"));
      }
    };
    for (std::uint64_t s : seen_above_) {
      if (s > from) gap(from, s - 1);
      from = s + 1;
    }
    if (ranges > kListedProblems) {
      problems_.push_back("and " + std::to_string(ranges - kListedProblems) + " more gaps: " +
                          std::to_string(missing) + " batches are missing in all");
    }
  }
  // Damage already says that, and where, records are missing: the counts below would only repeat it.
  if (!damage_.empty()) return;
  // Each piece against its own trailer.
  for (const auto& p : pieces_) {
    if (!p.trailer) continue;
    if (p.trailer->batches() != p.batches || p.trailer->records() != p.records) {
      problems_.push_back(p.path + ": its trailer counts " + std::to_string(p.trailer->batches()) + " batches and " +
                          std::to_string(p.trailer->records()) + " records, the file holds " +
                          std::to_string(p.batches) + " and " + std::to_string(p.records));
    }
  }
  // The recording against the collector's counters, when every piece from the first was read.
  bool whole = !pieces_.empty() && !piece_problem_;
  for (std::size_t i = 0; i < pieces_.size(); ++i) whole = whole && pieces_[i].header.piece() == i;
  const v1::TraceTrailer* trailer = last_trailer();
  if (!whole || trailer == nullptr || trailer->rotated() || !pieces_.back().trailer || trailer->cpus_size() == 0) return;
  std::uint64_t collector_lost = 0, records = 0, samples = 0;
  for (const auto& [cpu, c] : cpu_counts_) {
    collector_lost += c.lost_collector;
    records += c.records;
  }
  for (const auto& t : trailer->cpus()) samples += t.samples();
  if (collector_lost == 0) {
    for (const auto& t : trailer->cpus()) {
      const auto it = cpu_counts_.find(t.cpu());
      const CpuCounts c = it == cpu_counts_.end() ? CpuCounts{} : it->second;
      if (c.records != t.samples()) {
        problems_.push_back("CPU " + std::to_string(t.cpu()) + ": the trailer counts " + std::to_string(t.samples()) +
                            " samples, the recording holds " + std::to_string(c.records) + " records");
      }
      if (c.lost_kernel != t.lost()) {
        problems_.push_back("CPU " + std::to_string(t.cpu()) + ": the trailer counts " + std::to_string(t.lost()) +
                            " samples lost in the kernel, the recording's notices " + std::to_string(c.lost_kernel));
      }
    }
  } else if (records + collector_lost != samples) {
    problems_.push_back("the trailer counts " + std::to_string(samples) + " samples; the recording holds " +
                        std::to_string(records) + " records and notes " + std::to_string(collector_lost) +
                        " dropped by the collector");
  }
}

bool RecordingReader::ended_cleanly() const {
  if (pieces_.empty() || !pieces_.back().trailer || pieces_.back().trailer->rotated()) return false;
  return problems_.empty();
}

const v1::TraceTrailer* RecordingReader::last_trailer() const {
  for (auto it = pieces_.rbegin(); it != pieces_.rend(); ++it) {
    if (it->trailer) return &*it->trailer;
  }
  return nullptr;
}

}  // namespace perfstream::recording
