// RecordingStore: a sink's directory of recordings, one per collector id, each batch sequence stored once.
//
// Every way a recording reaches a sink (a socket stream, a Kafka topic) ends here. A recording is the
// file DIR/<id>.data (+ .1, .2 ... with rotation), readable by dump and stats like any trace; `id` is the
// collector's id (host and recording id), made file-safe. Exactly once: a batch whose sequence is already
// stored is counted as a duplicate and dropped. A store opened on a directory that already holds an id's
// files (a sink restart) scans them on first use, cuts a half-written last frame, and carries on in the
// same file; next_sequence() tells the sender where to resume.
//
// A write that fails (the disk is full, read-only, over quota) stores nothing: the file is cut back to its
// last complete frame, the error names the batch, the file and the errno, and the recording is `broken`
// from then on. The next recording() of its id opens it again from what its files hold, so a sender that
// retries once space is back goes on in the same file, and nothing is stored twice.
//
// Threads: any. The store's map has its own lock and each recording its own, so recordings are written
// in parallel. A recording's files are scanned without the store's lock, under a lock of its id alone:
// a scan never holds up another id's recording(); needs_scan() tells a caller that wants to keep such a
// call off a thread that must stay responsive (the sink's network threads) when it would scan.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "collector/format/trace_writer.hpp"
#include "collector/util/log.hpp"
#include "collector/util/result.hpp"
#include "perfstream.pb.h"

namespace perfstream {

// Where a sink writes its recordings, when it starts a new piece of one, and where it logs (a sink logs
// its own lines there too: SinkOptions and KafkaSinkOptions hold one of these).
struct RecordingStoreOptions {
  std::string dir;
  std::uint64_t rotate_bytes = 0;
  std::chrono::seconds rotate_time{0};
  Log* log = nullptr;  // not owned; null: nothing is logged
};

struct RecordingSummary {
  std::string id;
  std::string host;
  std::string file;
  bool finished = false;             // the trailer arrived
  std::uint64_t batches = 0;         // stored
  std::uint64_t records = 0;
  std::uint64_t compressed_bytes = 0;  // the stored batches as written: compressed, without frame headers
  std::uint64_t duplicates = 0;      // received again and dropped
  std::uint64_t lost_kernel = 0;     // samples the collector's kernel reported lost
  std::uint64_t lost_collector = 0;  // samples the collector dropped (spool full)
  std::uint64_t next_sequence = 0;   // every batch below is stored

  // What the recording holds, for the sinks' logs: "60 batches, 2400 records in DIR/ID.data, lost 3 in its
  // kernel and 0 in its spool", with " (not finished: no trailer yet)" after the file until the trailer.
  std::string describe() const;
};

class Recording {
 public:
  enum class Stored { New, Duplicate };

  // Stores one compressed batch (`batch` is its decoded message), unless its sequence is stored already.
  // `compressed` is written as is (borrowed without a copy: it holds the same bytes again on return). An
  // error (the file cannot be written, the recording has finished) means nothing was stored.
  Result<Stored> store(std::string& compressed, const v1::Batch& batch);
  // Writes the trailer and closes the file; later batches are refused.
  Status finish(const v1::TraceTrailer& trailer);
  // Forces what was stored to disk (fdatasync), for a sender that may forget it only afterwards.
  Status sync();
  std::uint64_t next_sequence() const;
  // A write failed: nothing more is stored here; the store opens the files again on the id's next use.
  bool broken() const;
  RecordingSummary summary() const;
  const std::string& id() const { return id_; }

 private:
  friend class RecordingStore;
  bool has(std::uint64_t seq) const { return seq < next_ || above_.count(seq) != 0; }
  void mark(std::uint64_t seq);
  void count(const v1::Batch& batch, std::uint64_t compressed_bytes);

  mutable std::mutex mutex_;
  std::string id_;
  std::string host_;
  std::string path_;
  std::unique_ptr<TraceFileWriter> writer_;
  std::uint64_t next_ = 0;         // every sequence below is stored
  std::set<std::uint64_t> above_;  // stored sequences above next_
  std::uint64_t batches_ = 0, records_ = 0, compressed_bytes_ = 0, duplicates_ = 0, lost_kernel_ = 0,
                lost_collector_ = 0;
  bool finished_ = false;
  bool broken_ = false;
};

class RecordingStore {
 public:
  static Result<std::unique_ptr<RecordingStore>> open(const RecordingStoreOptions& options);
  // Recordings without a trailer are left resumable: a store opened later on this directory goes on in
  // the same files.
  ~RecordingStore();

  // The recording of collector `id`, opened (or resumed from disk) on first use with `header`, or opened
  // again after a write failed. May scan the id's files (see needs_scan).
  Result<std::shared_ptr<Recording>> recording(const std::string& id, const v1::TraceHeader& header);
  // True when recording(id) would read files from disk first: the id is not open (or is broken) and a
  // file of it exists. A hint: it may change before the call.
  bool needs_scan(const std::string& id) const;
  // The recording of `id` if it is open already; nullptr otherwise.
  std::shared_ptr<Recording> find(const std::string& id) const;
  std::vector<RecordingSummary> summaries() const;
  const std::string& dir() const { return options_.dir; }

 private:
  RecordingStore() = default;
  void log(const std::string& id, const std::string& line) const;  // rate-limited per id
  // Opens the recording of `id` from its files (scanning what they hold) or as a new file. No lock held.
  Result<std::shared_ptr<Recording>> load(const std::string& id, const v1::TraceHeader& header) const;
  std::shared_ptr<Recording> open_recording(const std::string& id) const;  // mutex_ held; null if none usable

  RecordingStoreOptions options_;
  mutable std::mutex mutex_;  // guards the two maps
  std::map<std::string, std::shared_ptr<Recording>> recordings_;
  // The ids being loaded, each with the lock that a second recording() of the same id waits on.
  std::map<std::string, std::shared_ptr<std::mutex>> loading_;
};

// A collector id as a file name: letters, digits, '.', '-', '_' are kept. An id that had to be changed
// (or cut) gets a hash of the original appended, so two ids never share a file ("a/b" and "a_b").
std::string file_safe_id(const std::string& id);

}  // namespace perfstream
