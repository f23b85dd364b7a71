// TraceFileReader: reads a trace file frame by frame (see frame.hpp) and BatchView decodes one batch.
//
// What a damaged file gives:
//   - cut short (power loss, kill -9, a full disk): every complete frame is read, then next() returns
//     Truncated with the offset of the incomplete frame;
//   - a corrupt frame (bad magic or header checksum, a zstd or protobuf error, a batch whose columns do not
//     agree): next() returns Corrupt with the frame's offset and the cause. The reader stops there unless the
//     caller asks it to resync(), which scans forward for the next frame whose header checks out.
// open() fails on a file that is not a perfstream trace, with a message that says so.
//
// Threads: one reader per thread.
#pragma once

#include <cstdint>
#include <memory>
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

class TraceFileReader {
 public:
  static Result<std::unique_ptr<TraceFileReader>> open(const std::string& path);

  const v1::TraceHeader& header() const { return header_; }
  const std::string& path() const { return path_; }
  std::uint64_t file_size() const { return file_size_; }
  std::uint64_t offset() const { return offset_; }

  ReadOutcome next();
  // After Corrupt: moves to the next frame whose header is valid; false (and End from then on) if none.
  bool resync();

 private:
  TraceFileReader() = default;
  bool read_at(std::uint64_t offset, std::size_t size, std::string& out) const;

  std::string path_;
  UniqueFd fd_;
  std::uint64_t file_size_ = 0;
  std::uint64_t offset_ = 0;
  std::uint64_t damaged_at_ = 0;
  bool stopped_ = false;
  v1::TraceHeader header_;
  std::unique_ptr<ZstdDecompressor> decompressor_;
  std::string compressed_;
};

// One decoded batch: checks that its columns agree, then hands out records in order.
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
