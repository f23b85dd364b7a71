// RecordingStore: a sink's directory of recordings, one per collector id, each batch sequence stored once.
//
// Every way a recording reaches a sink (a socket stream, a Kafka topic) ends here. A recording is the
// file DIR/<id>.data (+ .1, .2 ... with rotation), readable by dump and stats like any trace; `id` is the
// collector's id (host and recording id), made file-safe. Exactly once: a batch whose sequence is already
// stored is counted as a duplicate and dropped. A store opened on a directory that already holds an id's
// files (a sink restart) scans them on first use, cuts a half-written last frame, and carries on in the
// same file; next_sequence() tells the sender where to resume.
//
// Open files: a recording's file is open while a collector is connected to it. One without a live
// connection (connect() ... disconnect()) is idle; sweep() closes an idle file after files.idle_close, and
// when files.max_open files are open, opening one more first closes the file idle for longest (an
// OpenFileLimiter keeps the order). A file with a live connection is never closed for room: when every
// open file has one, connect() fails with EMFILE and says so. A closed file is reopened where it ended
// (TraceFileWriter::Position) when its collector connects again; what is stored stays in memory meanwhile
// (next_sequence, the sequences above it), so duplicates are still dropped exactly. A reopened file keeps
// the header it was created with (not the new hello's) and its rotate_time counts from the reopening.
// Expiry: sweep() finishes a recording without a connection for files.expire with a trailer whose
// expired_after_ns says how long it had been alone; its collector's next connect() is refused (the
// recording on disk is finished), also after a restart, which finds that trailer.
//
// Write failures: a write that fails (the disk is full, read-only, over quota) stores nothing: the file
// is cut back to its last complete frame, the error names the batch, the file and the errno, and the
// recording is `broken` from then on: its file is closed, and since where it ends is no longer known for
// sure, it is treated as a closed file whose position comes from disk: the next connect() (or
// recording()) of its id scans its files again, like a restart does, and reopens it there, in place (the
// same Recording, its connections and duplicates counted on). A sender that retries once space is back
// goes on in the same file, and nothing is stored twice. A broken recording due to expire is rescanned
// by sweep() first, then expired.
//
// Threads: any. The store's mutex guards its maps, the OpenFileLimiter, the counters and each
// Recording's store-guarded fields; each recording has its own mutex for what it stores, so recordings
// are written in parallel. A recording's files are scanned (first use after a restart, or a broken
// recording) WITHOUT the store's lock, under a lock of that id alone (loading_): a scan never holds up
// another id's connect(), and a second connect() of the same id waits for the first scan and uses its
// result. The scanned recording is then put in place under the store's lock, making room then.
// needs_scan() tells a caller that keeps such calls off threads that must stay responsive (the sink's
// network threads) when one would scan. Lock order: an id's loading lock, then the store's, then a
// recording's. Files are opened, closed and reopened under the store's and the recording's; read by a
// scan under the loading lock only.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "collector/format/trace_writer.hpp"
#include "collector/transport/open_file_limiter.hpp"
#include "collector/util/log.hpp"
#include "collector/util/result.hpp"
#include "perfstream.pb.h"

namespace perfstream {

// Where a sink writes its recordings, when it starts a new piece of one, and where it logs (a sink logs
// its own lines there too: SinkOptions and KafkaSinkOptions hold one of these).
// How many recording files a store keeps open, and when it closes them by itself (all 0: never).
struct RecordingFileLimits {
  std::size_t max_open = 0;                  // files open at once; 0: no cap
  std::chrono::milliseconds idle_close{0};   // close a file this long without a connection (sweep())
  std::chrono::milliseconds expire{0};       // finish a recording this long without a connection (sweep())
};

struct RecordingStoreOptions {
  std::string dir;
  std::uint64_t rotate_bytes = 0;
  std::chrono::seconds rotate_time{0};
  Log* log = nullptr;  // not owned; null: nothing is logged
  RecordingFileLimits files;
  std::function<std::chrono::steady_clock::time_point()> now;  // empty: steady_clock::now (tests: a fake)
};

struct RecordingSummary {
  std::string id;
  std::string host;
  std::string file;
  bool finished = false;             // the trailer arrived (or the sink expired it)
  bool expired = false;              // the sink finished it: no connection for --expire
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
  bool file_closed() const { return !writer_ && !finished_; }  // mutex held
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
  bool expired_ = false;
  bool broken_ = false;  // a write failed: its file is closed, and scanned again before it is reopened
  // While its file is closed by the store: where it ended, to go on from there (not when broken).
  TraceFileWriter::Position position_;
  // Guarded by the store's mutex, not this one.
  v1::TraceHeader header_;  // what its files were created with: a reopened file goes on with it
  unsigned connections_ = 0;
  std::chrono::steady_clock::time_point idle_since_;  // when connections_ last became 0
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
  // The same for a live connection of the collector: its file is open (reopened if closed, rescanned first
  // if broken), and it stays open until disconnect(). Fails with EMFILE when the file cap is reached and
  // every open file has a live connection, and when the recording expired (see the top). May scan.
  Result<std::shared_ptr<Recording>> connect(const std::string& id, const v1::TraceHeader& header);
  // Ends a connection that connect() made; the last one makes the recording idle.
  void disconnect(const std::shared_ptr<Recording>& recording);
  // Recording::finish, and the file no longer counts as open.
  Status finish(const std::shared_ptr<Recording>& recording, const v1::TraceTrailer& trailer);
  // True when recording(id) or connect(id) would read files from disk first: the id is not known (and a
  // file of it exists) or its recording is broken. A hint: it may change before the call.
  bool needs_scan(const std::string& id) const;
  // The recording of `id` if it is known already (its file may be closed, or it may be broken); nullptr
  // otherwise.
  std::shared_ptr<Recording> find(const std::string& id) const;
  std::vector<RecordingSummary> summaries() const;
  const std::string& dir() const { return options_.dir; }

  // Closes the files idle past files.idle_close and expires the recordings alone past files.expire, at
  // the store's clock (a broken one is scanned again first); returns the summaries of those it expired.
  std::vector<RecordingSummary> sweep();

  struct FileStats {
    std::size_t limit = 0;            // files.max_open (0: none)
    std::size_t open = 0;             // recordings' files open now
    std::size_t idle = 0;             // of them, without a live connection
    std::uint64_t closed_idle = 0;    // closed by sweep() after files.idle_close
    std::uint64_t closed_for_room = 0;  // closed at the cap for another collector
    std::uint64_t reopened = 0;           // closed files reopened, and broken recordings scanned again
    std::uint64_t expired = 0;
    std::uint64_t refused_full = 0;   // connect() refused: every open file had a live connection
  };
  FileStats file_stats() const;

 private:
  explicit RecordingStore(const RecordingStoreOptions& options)
      : options_(options), files_(options.files.max_open) {}
  void log(const std::string& id, const std::string& line) const;  // rate-limited per id
  std::chrono::steady_clock::time_point now() const;

  // What a scan of an id's files found: the recording as they hold it (no writer, no connection), and
  // where its writer goes on.
  struct Scanned {
    std::shared_ptr<Recording> recording;
    TraceWriterOptions writer;
  };
  // Scans the files of `id` (none: a new recording). No lock held but the id's loading lock.
  Scanned scan(const std::string& id, const v1::TraceHeader& header) const;
  // recording() and connect(): `connections` is 0 or 1.
  Result<std::shared_ptr<Recording>> acquire(const std::string& id, const v1::TraceHeader& header,
                                             unsigned connections);
  // All with mutex_ held.
  // The known, unbroken recording of `id`, its file reopened if closed: nullopt when there is none (not
  // known, or broken: a scan comes first).
  std::optional<Result<std::shared_ptr<Recording>>> open_known_locked(const std::string& id, unsigned connections);
  // Puts a scan's result in place: a new recording, or the broken one of its id brought back to it.
  Result<std::shared_ptr<Recording>> install_locked(const std::string& id, const v1::TraceHeader& header,
                                                    Scanned scanned, unsigned connections);
  Status make_room_locked(const std::string& for_id);
  void close_file_locked(Recording& r);
  Status reopen_locked(Recording& r);
  bool expire_locked(Recording& r, std::chrono::steady_clock::time_point now);  // false: not yet (no room)
  static Error expired_error(const Recording& r);

  RecordingStoreOptions options_;
  mutable std::mutex mutex_;  // guards the fields below, and each Recording's store-guarded fields
  std::map<std::string, std::shared_ptr<Recording>> recordings_;
  // The ids being scanned, each with the lock that a second open of the same id waits on (see the top).
  std::map<std::string, std::shared_ptr<std::mutex>> loading_;
  OpenFileLimiter files_;
  FileStats stats_;  // the counters; limit, open and idle come from files_
};

// A collector id as a file name: letters, digits, '.', '-', '_' are kept. An id that had to be changed
// (or cut) gets a hash of the original appended, so two ids never share a file ("a/b" and "a_b").
std::string file_safe_id(const std::string& id);

}  // namespace perfstream
