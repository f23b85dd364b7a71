// Spool: the collector's bounded, on-disk queue of batches not yet acknowledged by the sink.
//
// Every batch the recorder produces is appended to the spool first (a file of frames in the trace framing,
// in segments of segment_bytes), then sent from there; an Ack removes what it covers, and a segment whose
// batches are all acknowledged is deleted. So a slow or absent sink costs disk, not memory, and a reconnect
// resends from the first unacknowledged batch. When the spool holds max_bytes, append() refuses the batch:
// the caller counts it as lost and says so in-band (BatchingConsumer puts a COLLECTOR LostNotice in the next
// batch), and the sink reports it too. Segments that still hold unacknowledged batches are left on disk
// when the spool is destroyed; the others are deleted.
//
// Files: the directory is made 0700 when create() makes it, and opened once, without following a symlink;
// segments are new files in it (O_EXCL, 0600), so a file or symlink planted under a segment's name is never
// written through. Each segment starts with a preamble, the trace file header and the recording's
// TraceHeader frame (preamble_for), so a segment is a trace file that `perfstream dump` reads.
//
// An earlier run's leftovers: segments that an earlier run left in the directory (its sink never
// acknowledged them, or it was killed) are never deleted nor sent again under this run's recording. create()
// renames each to undelivered-<its mtime, UTC>-segment-N.psf and reports them (earlier_run_notice()); they
// may repeat batches the sink did store, which its duplicate check drops if they are ever delivered by hand.
// A sender that can deliver them as the recording they belong to (StreamClient) finds them with
// find_leftovers(), grouped by recording (the TraceHeader in each segment's preamble), and sends each
// group from a spool made by adopt(): that spool only reads, acknowledges and finally deletes those files.
//
// Threads: append() from any thread (the reader threads' batchers); everything else from the sender's
// thread. A mutex guards the index; notify is called after each append, outside the lock.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "collector/format/batch_sink.hpp"
#include "collector/util/log.hpp"
#include "collector/util/result.hpp"
#include "collector/util/unique_fd.hpp"
#include "perfstream.pb.h"

namespace perfstream {

// One recording's batches that an earlier run left in a spool directory (renamed undelivered-*.psf).
struct LeftoverRecording {
  v1::TraceHeader header;          // from the segments' preamble
  std::string collector_id;        // what that run said hello as: host-recording_id
  std::vector<std::string> names;  // the files, in the spool directory
  std::uint64_t bytes = 0;
};

class Spool {
 public:
  static constexpr std::uint64_t kDefaultSegmentBytes = 16u << 20;
  // `preamble` starts every segment (empty: none); max_bytes bounds the batches, preambles not counted.
  static Result<std::unique_ptr<Spool>> create(const std::string& dir, std::uint64_t max_bytes,
                                               std::uint64_t segment_bytes = kDefaultSegmentBytes,
                                               std::string preamble = {});
  // The trace file header and `header` as a zstd TraceHeader frame: what a segment starts with.
  static std::string preamble_for(const v1::TraceHeader& header);
  // The spool of a sender of one recording (the stream client, the Kafka publisher): default segments,
  // each starting with that recording's preamble; an earlier run's leftovers are reported to `log` (if any).
  static Result<std::unique_ptr<Spool>> create_for_recording(const std::string& dir, std::uint64_t max_bytes,
                                                             const v1::TraceHeader& header, Log* log);
  // The earlier runs' segments in `dir` (undelivered-*.psf), by recording; files that are not trace files
  // are left out, and named in `*skipped` (for a notice).
  static Result<std::vector<LeftoverRecording>> find_leftovers(const std::string& dir,
                                                                std::vector<std::string>* skipped);
  // A spool over `leftover`'s files, which must not be in use by another Spool: next_unsent, rewind and
  // acknowledge work as for any spool, in sequence order; append() refuses. A file is deleted once every
  // batch in it is acknowledged; the others stay. Batches cut short by a kill are not in it.
  static Result<std::unique_ptr<Spool>> adopt(const std::string& dir, const LeftoverRecording& leftover);
  ~Spool();

  // Empty, or one line that says which files an earlier run left here and where they were kept.
  std::string earlier_run_notice() const;
  std::uint64_t earlier_run_files() const { return kept_files_.size(); }

  // Stores one compressed batch; an error (full, or the disk failed) means it was not stored. past_limit
  // stores it even when that takes the spool past max_bytes: only for the few bytes of a stand-in for a
  // refused batch (see StreamClient::write_batch), so that refusals never stall the acknowledgements.
  Status append(std::uint64_t sequence, const std::string& compressed, bool past_limit = false);
  // A batch from the recorder. When the spool refuses it, an empty batch of the same sequence (a few
  // bytes, stored past the limit) stands in for it: acknowledgements are cumulative, and a sequence that
  // never reaches the sink would hold them back for good. The error still says the batch was not kept,
  // so the caller counts the loss and reports it (a COLLECTOR LostNotice in its next batch).
  Status append_batch(const EncodedBatch& batch);
  void set_notify(std::function<void()> notify);
  // Hands the spool to the user a collector drops to: its segments, and its directory if create() made it.
  Status give_to(uid_t uid, gid_t gid);

  // The oldest batch not yet sent on this connection; false when there is none. An error (with its errno)
  // when the batch cannot be read back from its segment: it stays unsent, and the next call tries again.
  Result<bool> next_unsent(std::uint64_t* sequence, std::string* compressed);
  // Marks everything unacknowledged as unsent again (a new connection).
  void rewind();
  // Drops every batch with sequence < through; deletes segments left without live batches.
  void acknowledge(std::uint64_t through);
  // Drops the one batch `sequence` (a sender whose acknowledgements are per batch, as Kafka's delivery
  // reports are: one batch that never arrives must not hold back the others).
  void acknowledge_one(std::uint64_t sequence);

  std::uint64_t pending_batches() const;   // stored, not acknowledged
  std::uint64_t pending_bytes() const;
  std::uint64_t inflight_batches() const;  // sent on this connection, not acknowledged
  std::uint64_t refused_batches() const;   // append() said full

 private:
  struct Entry {
    std::uint64_t sequence;
    std::uint64_t segment;
    std::uint64_t offset;
    std::uint32_t length;
    bool sent;
  };
  struct Segment {
    UniqueFd fd;
    std::string name;  // in the directory
    std::string path;  // for messages
    std::uint64_t bytes = 0;
    std::uint64_t live = 0;  // entries not yet acknowledged
  };
  Spool() = default;
  Status keep_earlier_segments();
  Status open_segment();  // mutex held
  void drop_entries(const std::function<bool(const Entry&)>& acknowledged);  // mutex held

  mutable std::mutex mutex_;
  std::string dir_;
  UniqueFd dir_fd_;
  bool created_dir_ = false;
  std::uint64_t max_bytes_ = 0;
  std::uint64_t segment_bytes_ = 0;
  std::deque<Entry> entries_;
  std::map<std::uint64_t, Segment> segments_;
  std::uint64_t current_segment_ = 0;
  std::uint64_t total_bytes_ = 0;
  std::uint64_t refused_ = 0;
  std::function<void()> notify_;
  std::string preamble_;
  std::vector<std::string> kept_files_;  // an earlier run's segments, renamed
  std::uint64_t kept_bytes_ = 0;
  bool adopted_ = false;                 // made by adopt(): no current segment, nothing appended
};

}  // namespace perfstream
