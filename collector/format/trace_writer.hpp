// TraceFileWriter: writes a recording as trace files (see frame.hpp): file header, a TraceHeader frame,
// batch frames as they come, and a TraceTrailer frame when closed cleanly.
//
// Rotation: with rotate_bytes or rotate_time set, a file that would grow past the size, or has been open
// that long, is closed (trailer with rotated = true) and the recording goes on in PATH.1, PATH.2, ...;
// every piece starts with the full header (with its piece number), so each is readable on its own.
//
// Failure: a write that fails (a full disk, an I/O error) is cut back to the end of the last complete frame,
// so the file stays readable with every batch written before; the error names the file and says so. After
// that the writer refuses further batches with that same error (its errno kept).
//
// Deletion: a file deleted while open (rm, or rm -rf of its directory) would take every later batch into an
// inode nobody can reach. The writer checks the open file's link count before each batch, before the
// trailer and on check(): once it is 0 the writer fails like a failed write, with an error that names the
// path and says what was lost with it. A piece that cannot be created at rotation (its directory removed or
// renamed, the file system read-only) fails the same way; the pieces before it are complete.
//
// Standard output: path "-" writes to a dup of fd 1 (a pipe, usually): no rotation, no cut-back after a
// failed write (a pipe cannot be cut; the reader sees the cut frame and says so).
//
// Threads: write_batch and close may be called from any thread; a mutex serialises them.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "collector/format/batch_sink.hpp"
#include "collector/format/frame.hpp"
#include "collector/format/zstd_codec.hpp"
#include "collector/util/result.hpp"
#include "collector/util/unique_fd.hpp"
#include "perfstream.pb.h"

namespace perfstream {

struct TraceWriterOptions {
  std::string path = "perfstream.data";
  std::uint64_t rotate_bytes = 0;           // 0: no size rotation
  std::chrono::seconds rotate_time{0};      // 0: no time rotation
  int header_compression_level = 3;
  // Append to an existing recording (a sink picking up after a restart): piece `resume_piece` is cut to
  // `resume_offset` bytes (the end of its last complete frame) and writing goes on from there. With
  // resume_offset 0 a new piece `resume_piece` is started.
  std::optional<std::uint32_t> resume_piece;
  std::uint64_t resume_offset = 0;
  std::uint64_t resume_batches = 0;  // already in that piece (for its trailer)
  std::uint64_t resume_records = 0;
};

class TraceFileWriter : public BatchSink {
 public:
  static Result<std::unique_ptr<TraceFileWriter>> create(const TraceWriterOptions& options, v1::TraceHeader header);
  ~TraceFileWriter() override;

  Status write_batch(const EncodedBatch& batch) override;
  // Writes the trailer (its batches/records filled in here) and closes. Idempotent. After a failure (a
  // write, a rotation, a deleted file) it only closes, and returns that failure.
  Status close(v1::TraceTrailer trailer);
  // Fails (and from then on refuses batches) when the file has been deleted. Cheap: one fstat.
  Status check();
  // Closes without a trailer: the file ends after its last complete frame, as if the writer had died
  // there, for a recording that goes on later (a sink stopping while its collector still streams).
  // close() after it does nothing.
  void abandon();
  // Forces the current piece's frames to disk (fdatasync): for a sink that acknowledges or commits only
  // what is durably written. A rotated piece was synced when it was closed.
  Status sync();
  // Gives the open piece to uid:gid when it belongs to us (a recorder that drops to another user hands over
  // the file it opened before; the pieces that follow are created by that user). Not someone else's file.
  Status give_to(uid_t uid, gid_t gid);

  // Where the open piece ends: the resume_* of TraceWriterOptions that go on from here with a new writer
  // after abandon() (a sink closing an idle recording's file, to reopen it when its collector is back).
  struct Position {
    std::uint32_t piece = 0;
    std::uint64_t offset = 0;  // the end of its last complete frame
    std::uint64_t batches = 0;
    std::uint64_t records = 0;
  };
  Position position() const;

  std::uint64_t bytes_written() const;    // over every piece
  std::uint64_t batches_written() const;
  std::uint32_t pieces() const;
  std::string current_path() const;

 private:
  TraceFileWriter(const TraceWriterOptions& options, v1::TraceHeader header, ZstdCompressor compressor);
  Status open_piece();                                      // mutex held
  Status write_frame(FrameType type, const std::string& compressed);  // mutex held
  Status write_message_frame(FrameType type, const google::protobuf::MessageLite& message);
  Status finish_piece(bool rotated);                        // mutex held
  Status check_linked();                                    // mutex held
  std::string piece_path(std::uint32_t piece) const;

  mutable std::mutex mutex_;
  TraceWriterOptions options_;
  v1::TraceHeader header_;
  ZstdCompressor compressor_;
  UniqueFd fd_;
  std::uint32_t piece_ = 0;
  std::uint64_t piece_bytes_ = 0;
  std::uint64_t piece_batches_ = 0;
  std::uint64_t piece_records_ = 0;
  std::chrono::steady_clock::time_point piece_started_;
  std::uint64_t total_bytes_ = 0;
  std::uint64_t total_batches_ = 0;
  std::optional<Error> failed_;  // set after a failed write, with its errno: the writer is closed for batches
  bool closed_ = false;
  std::string scratch_;
};

}  // namespace perfstream
