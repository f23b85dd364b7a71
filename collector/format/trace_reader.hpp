// TraceFileReader: reads a trace (see frame.hpp) frame by frame, front to back, from a regular file, a pipe,
// a FIFO or standard input; BatchView decodes one batch with the generated protobuf classes.
//
// Reading is sequential (read(2) into a buffer that holds at most one frame and what follows it), so the
// same code reads a file, a pipe and a file that is still being written. At the end of what is there, the
// reader asks its `wait_for_more` hook (when set): a follower (dump --follow) waits for the writer and says
// whether to look again; without a hook the end is the end.
//
// What a damaged input gives:
//   - cut short (power loss, kill -9, a full disk, a pipe whose writer died): every complete frame is read,
//     then next() returns Truncated with the offset of the incomplete frame;
//   - a corrupt frame (bad magic or header checksum, a zstd error, a message over the limits): next() returns
//     Corrupt with the frame's offset and the cause. A frame header whose length runs past the end of the
//     input is Corrupt too when a valid frame starts after it, Truncated when none does. The reader stops
//     there unless the caller asks it to resync(), which scans forward for the next frame whose header
//     checks out.
// open() fails on an input that is not a perfstream trace, with a message that names it and says why (a
// directory, a terminal, an empty pipe, a file shorter than the file header, another format).
//
// Limits: a frame's payload is at most kMaxFramePayload bytes and its decompressed message at most
// limits.max_message_bytes, so a crafted input cannot make the reader hold more than that.
//
// Threads: one reader per thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "collector/format/frame.hpp"
#include "collector/format/zstd_codec.hpp"
#include "collector/util/result.hpp"
#include "collector/util/unique_fd.hpp"
#include "perfstream.pb.h"

namespace perfstream {

enum class ReadStatus { Frame, End, Truncated, Corrupt };

struct ReadOutcome {
  ReadStatus status = ReadStatus::End;
  FrameType type = FrameType::Batch;
  std::uint64_t offset = 0;  // where the frame (or the damage) starts
  std::string message;       // the decompressed protobuf message (Frame), or what is wrong
};

struct ReadLimits {
  // The largest decompressed message (a batch) a reader accepts. A writer makes batches of at most 32 MiB.
  std::size_t max_message_bytes = 64u << 20;
};

class TraceFileReader {
 public:
  // Called at the end of the bytes available so far; true: look again (more may have been written).
  using WaitForMore = std::function<bool()>;

  // "-" reads standard input.
  static Result<std::unique_ptr<TraceFileReader>> open(const std::string& path, const ReadLimits& limits = {},
                                                       WaitForMore wait_for_more = nullptr);
  // Reads `fd` (owned from now on) under the name `name`.
  static Result<std::unique_ptr<TraceFileReader>> open_fd(UniqueFd fd, const std::string& name,
                                                          const ReadLimits& limits = {},
                                                          WaitForMore wait_for_more = nullptr);

  const v1::TraceHeader& header() const { return header_; }
  const std::string& path() const { return path_; }
  // The bytes read from the input so far (for a regular file opened without a hook: its size at open).
  std::uint64_t file_size() const { return seekable_size_known_ ? file_size_ : end_; }
  std::uint64_t offset() const { return offset_; }
  bool is_regular_file() const { return regular_; }

  ReadOutcome next();
  // Hands a spent message buffer back: the next frame is decompressed into it, without an allocation.
  void recycle(std::string buffer) { spare_ = std::move(buffer); }
  // After Corrupt: moves to the next frame whose header is valid; false (and End from then on) if none.
  bool resync();

 private:
  TraceFileReader() = default;
  Result<bool> open_header();
  // Makes bytes [at, at + n) available in the buffer; false when the input ends first (after asking
  // wait_for_more, when `wait`).
  bool fill(std::uint64_t at, std::size_t n, bool wait);
  // Reads what the input has now; false at its end (or an error, kept in read_error_).
  bool read_more();
  std::span<const char> bytes(std::uint64_t at, std::size_t n) const {
    return std::span<const char>(buffer_.data() + (at - buffer_start_), n);
  }
  // A frame header after `from` whose frame fits in what can be read; its offset, or nullopt.
  std::optional<std::uint64_t> find_frame(std::uint64_t from);

  std::string path_;
  UniqueFd fd_;
  ReadLimits limits_;
  WaitForMore wait_for_more_;
  bool regular_ = false;
  bool seekable_size_known_ = false;
  std::uint64_t file_size_ = 0;
  std::vector<char> buffer_;
  std::uint64_t buffer_start_ = 0;  // the input offset of buffer_[0]
  std::uint64_t end_ = 0;           // the input offset just past the buffer's last byte
  bool at_eof_ = false;
  int read_error_ = 0;
  std::uint64_t offset_ = 0;
  std::uint64_t damaged_at_ = 0;
  bool stopped_ = false;
  v1::TraceHeader header_;
  std::unique_ptr<ZstdDecompressor> decompressor_;
  std::string spare_;
};

// One decoded batch: checks that its columns agree, then hands out records in order. A columnar batch's
// payloads are rebuilt from its column groups and its time delta planes read: batch() has them all in
// `payloads` and `time_deltas`, and no groups or planes, as a version 1 batch.
class BatchView {
 public:
  struct Record {
    std::uint64_t time_ns;
    std::uint32_t cpu;
    std::span<const char> payload;
  };

  // Fails with the reason when the columns disagree (counts, sizes past the payload bytes).
  static Result<BatchView> parse(const std::string& message);

  const v1::Batch& batch() const { return batch_; }
  std::size_t size() const { return times_.size(); }
  Record record(std::size_t i) const {
    return Record{times_[i], batch_.cpus(static_cast<int>(i)),
                  std::span<const char>(batch_.payloads().data() + offsets_[i], batch_.sizes(static_cast<int>(i)))};
  }

 private:
  v1::Batch batch_;
  std::vector<std::uint64_t> times_;
  std::vector<std::size_t> offsets_;
};

}  // namespace perfstream
