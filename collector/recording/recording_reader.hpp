// RecordingReader: reads one recording, batch by batch in the order they were written, from a trace file,
// the rotated pieces of one (found from the first: FILE, FILE.1, FILE.2, ...), several named pieces,
// standard input ("-"), a pipe, or a file that is still being written (follow). Everything that reads a
// recording (dump, stats, the exporters) reads through it; TimeOrderedReader (time_ordered_reader.hpp) puts
// its records in time order on top of it.
//
// Memory: one batch at a time (the caller may keep the batches it is handed; the reader keeps none).
//
// Pieces: with a single input that is a file, the reader goes on to the next piece when a piece's trailer
// says the recording continues (`rotated`), and reports a piece that is missing or belongs to another
// recording. Named inputs must be pieces of one recording (an error otherwise, before anything is read) and
// are read in piece order; no other piece is looked for then.
//
// Damage, as TraceFileReader finds it: a file cut short ends that file (Damage::truncated); a corrupt frame
// (one that does not frame, decompress or decode) ends it too, unless skip_corrupt, which reads on from the
// next frame that checks out.
//
// Integrity: batch sequence numbers run 0, 1, 2, ... over the whole recording. The reader reports, once
// reading is over (finish_checks()), every batch that is missing (by ranges), every duplicate (skipped: its
// records are not handed out twice), every batch that came after one with a higher number, a piece of
// another recording, and totals that disagree with the trailer: per piece, the trailer's batch and record
// counts; for the recording, per CPU, the records and kernel losses read against the collector's counters
// (CpuTotals.samples and .lost; records the collector dropped itself are reported by COLLECTOR notices,
// which the check adds back). A recording "ended cleanly" when its last piece has a final trailer and no
// problem was found.
//
// Threads: one reader per thread.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "collector/format/trace_reader.hpp"
#include "collector/recording/decoded_batch.hpp"
#include "collector/util/result.hpp"
#include "perfstream.pb.h"

namespace perfstream::recording {

struct ReaderLimits {
  std::size_t max_batch_bytes = 64u << 20;   // decompressed; writers make at most 32 MiB
  std::uint32_t max_batch_records = 1u << 20;
};

struct RecordingOptions {
  bool skip_corrupt = false;
  ReaderLimits limits;
  // Follow a recording that is being written: wait at the end of the last piece (and for the next piece
  // after a rotation) until its final trailer. `keep_waiting` is asked about every 100 ms while waiting;
  // false stops (Ctrl-C).
  bool follow = false;
  std::function<bool()> keep_waiting;
  // Told when the reader goes on to a piece it found by itself: "FILE.1 (piece 1)".
  std::function<void(const std::string&)> note;
};

struct PieceInfo {
  std::string path;
  v1::TraceHeader header;
  std::optional<v1::TraceTrailer> trailer;
  std::uint64_t file_size = 0;               // bytes read from it
  std::uint64_t batches = 0;
  std::uint64_t records = 0;
  std::uint64_t batch_frame_bytes = 0;       // batch frames as stored: frame headers and compressed payloads
  std::uint64_t compressed_payload_bytes = 0;
  std::uint64_t batch_message_bytes = 0;     // the batches decompressed
  std::uint64_t payload_bytes = 0;           // record payloads
};

struct Damage {
  std::string path;
  std::uint64_t offset = 0;
  std::string message;
  bool truncated = false;                    // cut short; otherwise a corrupt frame
  std::optional<std::uint64_t> resumed_at;   // skip_corrupt: where reading went on
};

// A batch as handed out: decoded, with the piece it came from.
struct ReadBatch {
  DecodedBatch batch;
  std::uint32_t piece = 0;  // index into pieces()
};

class RecordingReader {
 public:
  static Result<std::unique_ptr<RecordingReader>> open(const std::vector<std::string>& inputs,
                                                       const RecordingOptions& options);

  // The first piece's header (every piece carries the recording's).
  const v1::TraceHeader& header() const { return pieces_.front().header; }
  // Reads the next batch into `out` (its buffers are reused); false at the end of the recording.
  bool next(ReadBatch& out);

  // Pieces as they are reached (a deque: a piece's header stays where it is while later ones are added).
  const std::deque<PieceInfo>& pieces() const { return pieces_; }
  // The inputs as named and opened, in piece order: (path, piece number).
  const std::vector<std::pair<std::string, std::uint32_t>>& inputs() const { return inputs_; }
  // Every input is a regular file (not a pipe or standard input).
  bool reads_regular_files() const { return regular_inputs_; }
  const std::vector<Damage>& damage() const { return damage_; }
  // Sequence and totals problems, one sentence each; complete after finish_checks().
  const std::vector<std::string>& problems() const { return problems_; }
  // Checks what only the end can tell (missing batches, trailer totals). Called by next() at the end.
  void finish_checks();
  bool ended_cleanly() const;
  // The collector's counters from the trailer of the latest piece that has one, or nullptr.
  const v1::TraceTrailer* last_trailer() const;
  // Records read per CPU, and kernel and collector losses (what the trailer check compares).
  struct CpuCounts {
    std::uint64_t records = 0, lost_kernel = 0, lost_collector = 0;
  };
  const std::map<std::uint32_t, CpuCounts>& cpu_counts() const { return cpu_counts_; }

 private:
  RecordingReader() = default;
  bool open_next_piece();            // after the current piece ended; false when there is none
  bool handle_frame(ReadOutcome& outcome, ReadBatch& out);  // true: `out` holds a batch
  bool corrupt(std::uint64_t offset, std::string message, bool reader_stopped);
  bool sequence_ok(std::uint64_t sequence, const std::string& where);
  bool wait_a_little();
  // Opens one input with the options' limits, and a waiter when following.
  Result<std::unique_ptr<TraceFileReader>> open_file(const std::string& path);

  RecordingOptions options_;
  std::vector<std::unique_ptr<TraceFileReader>> named_;  // inputs opened at start, in piece order
  std::size_t next_named_ = 0;
  bool discover_ = false;            // one file named: find its later pieces
  std::string base_path_;            // FILE of FILE.N
  std::unique_ptr<TraceFileReader> current_;
  std::deque<PieceInfo> pieces_;
  std::vector<std::pair<std::string, std::uint32_t>> inputs_;
  bool regular_inputs_ = true;
  std::vector<Damage> damage_;
  std::vector<std::string> problems_;
  bool piece_problem_ = false;
  bool finished_ = false;
  bool stop_waiting_ = false;
  // Sequences: every one below contiguous_ has been read; seen_above_ holds those read beyond it.
  std::uint64_t contiguous_ = 0;
  std::set<std::uint64_t> seen_above_;
  std::optional<std::uint64_t> highest_;
  std::uint64_t duplicates_ = 0;
  std::map<std::uint32_t, CpuCounts> cpu_counts_;
};

}  // namespace perfstream::recording
