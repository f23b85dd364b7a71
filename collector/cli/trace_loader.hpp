// TraceLoader: reads the trace files of one recording into memory for `dump` and `stats`.
//
// Input: the paths the user named, in any order: one file, or pieces of a rotated recording (PATH,
// PATH.1, ...). Only the named files are read; a piece lying next to them is not picked up. Every file
// must hold a header of the same recording (same recording_id) and no piece number may appear twice;
// files are kept in piece order.
//
// What is collected: each file's header, trailer (when the file was closed cleanly) and byte counts; every
// record of every batch (time, CPU, payload, batch sequence, index in the batch) and every lost notice; and
// a damage report per place where a file could not be read on:
//   - cut short: every complete frame is kept, then reading that file ends (Damage::truncated);
//   - a corrupt frame (a bad frame header, a zstd error, a batch that does not decode or whose columns
//     disagree): reading that file ends there, unless LoadOptions::skip_corrupt, in which case the reader
//     skips to the next frame whose header checks out and reads on (Damage::resumed_at says where).
// A file that cannot be opened, is not a perfstream trace, or belongs to another recording is an error:
// load_trace() fails with a message that names it.
//
// timeline() merges all files and CPUs into time order: a stable sort by time, so records of equal time
// keep the order they were read in, and a lost notice is placed at its time, before a record of the same
// time. A lost notice without a time (0) takes the time of the record it preceded in its batch.
//
// Ownership: record payloads are views into storage the LoadedTrace owns; they live as long as it does
// (a LoadedTrace may be moved: the storage does not move with it).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "collector/util/result.hpp"
#include "perfstream.pb.h"

namespace perfstream::cli {

struct LoadOptions {
  bool skip_corrupt = false;  // resync after a corrupt frame and read on
};

struct TraceRecord {
  std::uint64_t time_ns = 0;
  std::uint32_t cpu = 0;
  std::span<const char> payload;  // owned by the LoadedTrace
  std::uint64_t batch_sequence = 0;
  std::uint32_t index = 0;        // the record's index in its batch
  std::uint32_t file = 0;         // index into LoadedTrace::files()
};

struct TraceLost {
  std::uint32_t cpu = 0;
  std::uint64_t count = 0;
  std::uint64_t time_ns = 0;      // as recorded; 0 when the notice carried no time
  v1::LostNotice::Source source = v1::LostNotice::KERNEL;
  std::uint64_t batch_sequence = 0;
  std::uint32_t before = 0;       // index of the batch record it precedes
  std::uint32_t file = 0;
  std::uint64_t sort_time_ns = 0; // time_ns, or the time of the record it precedes when time_ns is 0
};

struct Damage {
  std::string path;
  std::uint64_t offset = 0;       // where the damaged frame (or the cut) starts
  std::string message;            // the reader's description
  bool truncated = false;         // true: the file is cut short; false: a corrupt frame
  std::optional<std::uint64_t> resumed_at;  // skip_corrupt: where reading went on (none: nothing followed)
};

struct TraceFileInfo {
  std::string path;
  v1::TraceHeader header;
  std::optional<v1::TraceTrailer> trailer;
  std::uint64_t file_size = 0;
  std::uint64_t batches = 0;
  std::uint64_t records = 0;
  std::uint64_t batch_frame_bytes = 0;       // batch frames on disk: frame headers and compressed payloads
  std::uint64_t compressed_payload_bytes = 0;  // the zstd frames of batches alone
  std::uint64_t batch_message_bytes = 0;     // the batches decompressed (protobuf bytes)
  std::uint64_t payload_bytes = 0;           // record payloads
};

class LoadedTrace {
 public:
  // One entry of the merged timeline: a record or a lost notice, by index.
  struct Entry {
    enum class Kind : std::uint8_t { Lost = 0, Record = 1 };  // Lost first: it sorts before a record at its time
    Kind kind;
    std::size_t index;  // into records() or lost()
  };

  // The first piece's header (every piece carries the same recording's).
  const v1::TraceHeader& header() const { return files_.front().header; }
  const std::vector<TraceFileInfo>& files() const { return files_; }
  const std::vector<TraceRecord>& records() const { return records_; }
  const std::vector<TraceLost>& lost() const { return lost_; }
  const std::vector<Damage>& damage() const { return damage_; }

  std::vector<Entry> timeline() const;
  std::uint64_t time_of(const Entry& e) const {
    return e.kind == Entry::Kind::Record ? records_[e.index].time_ns : lost_[e.index].sort_time_ns;
  }

  // The recording ended cleanly: the last piece has a trailer that does not say the recording goes on.
  bool ended_cleanly() const;
  // The collector's counters from the trailer of the highest piece that has one, or nullptr.
  const v1::TraceTrailer* last_trailer() const;

 private:
  friend Result<LoadedTrace> load_trace(const std::vector<std::string>& paths, const LoadOptions& options);

// Tells the user about the trace's damage on `err`, one line each, prefixed "perfstream <command>: ": a cut
// or a skipped corrupt frame is a warning; a corrupt frame that stopped reading (skip_corrupt not set) is an
// error, with the hint to pass --skip-corrupt. True when there was such an error.
bool report_damage(const std::string& command, const LoadedTrace& trace, bool skip_corrupt, std::ostream& err);

  std::vector<TraceFileInfo> files_;
  std::vector<TraceRecord> records_;
  std::vector<TraceLost> lost_;
  std::vector<Damage> damage_;
  std::vector<std::unique_ptr<std::string>> storage_;  // payload bytes, one block per batch
};

// Reads `paths` (at least one). Fails when a file cannot be opened, is not a trace, or belongs to another
// recording than the first; damage inside a file is reported in LoadedTrace::damage() instead.
Result<LoadedTrace> load_trace(const std::vector<std::string>& paths, const LoadOptions& options);

// Tells the user about the trace's damage on `err`, one line each, prefixed "perfstream <command>: ": a cut
// or a skipped corrupt frame is a warning; a corrupt frame that stopped reading (skip_corrupt not set) is an
// error, with the hint to pass --skip-corrupt. True when there was such an error.
bool report_damage(const std::string& command, const LoadedTrace& trace, bool skip_corrupt, std::ostream& err);

}  // namespace perfstream::cli
