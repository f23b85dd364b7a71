#include "collector/format/trace_reader.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace perfstream {

Result<std::unique_ptr<TraceFileReader>> TraceFileReader::open(const std::string& path) {
  std::unique_ptr<TraceFileReader> reader(new TraceFileReader());
  reader->path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error::from_errno("opening trace file " + path, errno);
  reader->fd_.reset(fd);
  struct stat st {};
  if (fstat(fd, &st) != 0) return Error::from_errno("reading the size of " + path, errno);
  reader->file_size_ = static_cast<std::uint64_t>(st.st_size);
  auto decompressor = ZstdDecompressor::create();
  if (!decompressor) return decompressor.error();
  reader->decompressor_ = std::make_unique<ZstdDecompressor>(std::move(*decompressor));

  std::string bytes;
  std::string why;
  if (!reader->read_at(0, kFileHeaderSize, bytes) || !parse_file_header(bytes, &why)) {
    if (why.empty()) why = "not a perfstream trace (shorter than the 16-byte file header)";
    return Error(path + ": " + why);
  }
  reader->offset_ = kFileHeaderSize;
  ReadOutcome first = reader->next();
  if (first.status != ReadStatus::Frame || first.type != FrameType::Header) {
    return Error(path + ": the trace header (first frame, at byte 16) is " +
                 (first.status == ReadStatus::Frame || first.status == ReadStatus::End
                      ? std::string("missing")
                      : "unreadable: " + first.message));
  }
  if (!reader->header_.ParseFromString(first.message)) return Error(path + ": the trace header does not decode");
  return reader;
}

bool TraceFileReader::read_at(std::uint64_t offset, std::size_t size, std::string& out) const {
  out.resize(size);
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd_.get(), out.data() + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

ReadOutcome TraceFileReader::next() {
  ReadOutcome out;
  out.offset = offset_;
  if (stopped_ || offset_ == file_size_) {
    out.status = ReadStatus::End;
    return out;
  }
  auto damaged = [&](ReadStatus status, std::string message) {
    out.status = status;
    out.message = std::move(message);
    damaged_at_ = offset_;
    stopped_ = true;
    return out;
  };
  if (file_size_ - offset_ < kFrameHeaderSize) {
    return damaged(ReadStatus::Truncated, "the file ends " + std::to_string(file_size_ - offset_) +
                                              " bytes into a frame header at byte " + std::to_string(offset_));
  }
  std::string header_bytes;
  if (!read_at(offset_, kFrameHeaderSize, header_bytes)) {
    return damaged(ReadStatus::Truncated, "cannot read at byte " + std::to_string(offset_) + ": " + std::strerror(errno));
  }
  std::string why;
  auto header = parse_frame_header(header_bytes, &why);
  if (!header) return damaged(ReadStatus::Corrupt, "corrupt frame at byte " + std::to_string(offset_) + ": " + why);
  const std::uint64_t end = offset_ + kFrameHeaderSize + header->payload_length;
  if (end > file_size_) {
    return damaged(ReadStatus::Truncated, "the file is cut short: the frame at byte " + std::to_string(offset_) +
                                              " needs " + std::to_string(end - offset_) + " bytes, " +
                                              std::to_string(file_size_ - offset_) + " are left");
  }
  if (!read_at(offset_ + kFrameHeaderSize, header->payload_length, compressed_)) {
    return damaged(ReadStatus::Truncated, "cannot read the frame at byte " + std::to_string(offset_));
  }
  if (auto st = decompressor_->decompress(compressed_, kMaxMessageSize, out.message); !st) {
    return damaged(ReadStatus::Corrupt, "corrupt frame at byte " + std::to_string(offset_) + ": " + st.error().message());
  }
  out.status = ReadStatus::Frame;
  out.type = header->type;
  offset_ = end;
  return out;
}

bool TraceFileReader::resync() {
  if (!stopped_) return true;
  std::string window;
  std::uint64_t at = damaged_at_ + 1;
  constexpr std::size_t kChunk = 1 << 20;
  while (at + kFrameHeaderSize <= file_size_) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk + kFrameHeaderSize, file_size_ - at));
    if (!read_at(at, n, window)) return false;
    for (std::size_t i = 0; i + kFrameHeaderSize <= window.size(); ++i) {
      if (std::memcmp(window.data() + i, kFrameMagic, sizeof(kFrameMagic)) != 0) continue;
      std::string why;
      auto h = parse_frame_header(std::span<const char>(window.data() + i, kFrameHeaderSize), &why);
      if (!h || at + i + kFrameHeaderSize + h->payload_length > file_size_) continue;
      offset_ = at + i;
      stopped_ = false;
      return true;
    }
    at += kChunk;
  }
  offset_ = file_size_;
  stopped_ = false;
  return false;
}

Result<BatchView> BatchView::parse(const std::string& message) {
  BatchView view;
  if (!view.batch_.ParseFromString(message)) return Error("batch: not a valid Batch message");
  const auto& b = view.batch_;
  const int n = static_cast<int>(b.record_count());
  if (b.time_deltas_size() != n || b.cpus_size() != n || b.sizes_size() != n) {
    return Error("batch " + std::to_string(b.sequence()) + ": record_count " + std::to_string(n) +
                 " but columns of " + std::to_string(b.time_deltas_size()) + " times, " + std::to_string(b.cpus_size()) +
                 " CPUs and " + std::to_string(b.sizes_size()) + " sizes");
  }
  view.times_.resize(n);
  view.offsets_.resize(n);
  std::uint64_t time = b.first_time_ns();
  std::size_t offset = 0;
  for (int i = 0; i < n; ++i) {
    time += static_cast<std::uint64_t>(b.time_deltas(i));
    view.times_[i] = time;
    view.offsets_[i] = offset;
    offset += b.sizes(i);
    if (offset > b.payloads().size()) {
      return Error("batch " + std::to_string(b.sequence()) + ": record sizes run past the payload bytes");
    }
  }
  if (offset != b.payloads().size()) {
    return Error("batch " + std::to_string(b.sequence()) + ": " + std::to_string(b.payloads().size() - offset) +
                 " payload bytes belong to no record");
  }
  for (const auto& lost : b.lost()) {
    if (lost.before() > static_cast<std::uint32_t>(n)) {
      return Error("batch " + std::to_string(b.sequence()) + ": a lost notice points past the last record");
    }
  }
  return view;
}

}  // namespace perfstream
