#include "collector/format/trace_reader.hpp"

#include "collector/format/columnar_payloads.hpp"
#include "collector/format/time_delta_planes.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace perfstream {
namespace {

constexpr std::size_t kReadChunk = 256 << 10;

std::string kind_of(const struct stat& st) {
  if (S_ISFIFO(st.st_mode)) return "pipe";
  if (S_ISCHR(st.st_mode)) return "device";
  if (S_ISSOCK(st.st_mode)) return "socket";
  return "input";
}

}  // namespace

Result<std::unique_ptr<TraceFileReader>> TraceFileReader::open(const std::string& path, const ReadLimits& limits,
                                                               WaitForMore wait_for_more) {
  if (path == "-") {
    const int fd = ::fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3);
    if (fd < 0) return Error::from_errno("reading standard input", errno);
    return open_fd(UniqueFd(fd), "standard input", limits, std::move(wait_for_more));
  }
  // A directory opens read-only too: open_fd tells it from a trace.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error::from_errno("opening trace file " + path, errno);
  return open_fd(UniqueFd(fd), path, limits, std::move(wait_for_more));
}

Result<std::unique_ptr<TraceFileReader>> TraceFileReader::open_fd(UniqueFd fd, const std::string& name,
                                                                  const ReadLimits& limits, WaitForMore wait_for_more) {
  std::unique_ptr<TraceFileReader> reader(new TraceFileReader());
  reader->path_ = name;
  reader->limits_ = limits;
  reader->wait_for_more_ = std::move(wait_for_more);
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return Error::from_errno("reading the size of " + name, errno);
  if (S_ISDIR(st.st_mode)) {
    return Error(name + " is a directory, not a trace file (a sink's directory holds one NAME.data per collector: "
                        "name one of them)");
  }
  if (::isatty(fd.get())) {
    return Error(name + " is a terminal: pipe a trace into it (perfstream record -o - | perfstream dump -)");
  }
  reader->fd_ = std::move(fd);
  reader->regular_ = S_ISREG(st.st_mode);
  if (reader->regular_) {
    reader->file_size_ = static_cast<std::uint64_t>(st.st_size);
    reader->seekable_size_known_ = reader->wait_for_more_ == nullptr;
  }
  auto decompressor = ZstdDecompressor::create();
  if (!decompressor) return decompressor.error();
  reader->decompressor_ = std::make_unique<ZstdDecompressor>(std::move(*decompressor));

  if (!reader->fill(0, kFileHeaderSize, true)) {
    const std::uint64_t got = reader->end_;
    if (reader->read_error_ != 0) return Error::from_errno("reading " + name, reader->read_error_);
    if (reader->regular_ || S_ISCHR(st.st_mode)) {
      return Error(name + ": not a perfstream trace (shorter than the 16-byte file header)");
    }
    const std::string kind = kind_of(st);
    if (got == 0) return Error(name + ": the " + kind + " ended before anything was written to it: no trace");
    return Error(name + ": the " + kind + " ended after " + std::to_string(got) +
                 " bytes, inside the 16-byte file header: no trace");
  }
  std::string why;
  if (!parse_file_header(reader->bytes(0, kFileHeaderSize), &why)) return Error(name + ": " + why);
  reader->offset_ = kFileHeaderSize;
  ReadOutcome first = reader->next();
  if (first.status != ReadStatus::Frame || first.type != FrameType::Header) {
    return Error(name + ": the trace header (first frame, at byte 16) is " +
                 (first.status == ReadStatus::Frame || first.status == ReadStatus::End
                      ? std::string("missing")
                      : "unreadable: " + first.message));
  }
  if (!reader->header_.ParseFromString(first.message)) return Error(name + ": the trace header does not decode");
  return reader;
}

bool TraceFileReader::read_more() {
  if (at_eof_ || read_error_ != 0) return false;
  const std::size_t used = static_cast<std::size_t>(end_ - buffer_start_);
  if (buffer_.size() < used + kReadChunk) buffer_.resize(used + kReadChunk);
  for (;;) {
    const ssize_t n = ::read(fd_.get(), buffer_.data() + used, buffer_.size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      read_error_ = errno;
      return false;
    }
    if (n == 0) {
      at_eof_ = true;
      return false;
    }
    end_ += static_cast<std::uint64_t>(n);
    if (regular_ && end_ > file_size_) file_size_ = end_;
    return true;
  }
}

bool TraceFileReader::fill(std::uint64_t at, std::size_t n, bool wait) {
  // Bytes before `at` are not needed again: drop them once they are most of the buffer.
  if (at > buffer_start_ && at - buffer_start_ >= std::max<std::uint64_t>(kReadChunk, (end_ - buffer_start_) / 2)) {
    const std::size_t drop = static_cast<std::size_t>(std::min(at, end_) - buffer_start_);
    std::memmove(buffer_.data(), buffer_.data() + drop, static_cast<std::size_t>(end_ - buffer_start_) - drop);
    buffer_start_ += drop;
  }
  // The buffer grows as bytes arrive (read_more), never to a length a frame header merely declares.
  while (end_ < at + n) {
    if (read_more()) continue;
    if (!wait || !wait_for_more_ || read_error_ != 0 || !wait_for_more_()) return false;
    at_eof_ = false;  // look again
  }
  return true;
}

ReadOutcome TraceFileReader::next() {
  ReadOutcome out;
  out.offset = offset_;
  if (stopped_) {
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
  if (seekable_size_known_ && offset_ >= file_size_) {
    out.status = ReadStatus::End;
    return out;
  }
  if (!fill(offset_, kFrameHeaderSize, true)) {
    if (read_error_ != 0) {
      return damaged(ReadStatus::Truncated,
                     "cannot read at byte " + std::to_string(offset_) + ": " + std::strerror(read_error_));
    }
    if (end_ <= offset_) {
      out.status = ReadStatus::End;
      return out;
    }
    return damaged(ReadStatus::Truncated, "the file ends " + std::to_string(end_ - offset_) +
                                              " bytes into a frame header at byte " + std::to_string(offset_));
  }
  std::string why;
  auto header = parse_frame_header(bytes(offset_, kFrameHeaderSize), &why);
  if (!header) return damaged(ReadStatus::Corrupt, "corrupt frame at byte " + std::to_string(offset_) + ": " + why);
  const std::size_t frame_size = kFrameHeaderSize + header->payload_length;
  if (!fill(offset_, frame_size, true)) {
    if (read_error_ != 0) {
      return damaged(ReadStatus::Truncated,
                     "cannot read the frame at byte " + std::to_string(offset_) + ": " + std::strerror(read_error_));
    }
    const std::uint64_t left = end_ - offset_;
    if (auto after = find_frame(offset_ + 1)) {
      return damaged(ReadStatus::Corrupt, "corrupt frame at byte " + std::to_string(offset_) + ": its header declares " +
                                              std::to_string(frame_size) + " bytes, past the end of the file (" +
                                              std::to_string(left) + " are left), yet a valid frame starts at byte " +
                                              std::to_string(*after));
    }
    return damaged(ReadStatus::Truncated, "the file is cut short: the frame at byte " + std::to_string(offset_) +
                                              " needs " + std::to_string(frame_size) + " bytes, " +
                                              std::to_string(left) + " are left");
  }
  const std::span<const char> payload = bytes(offset_ + kFrameHeaderSize, header->payload_length);
  const unsigned long long content = ZSTD_getFrameContentSize(payload.data(), payload.size());
  if (content != ZSTD_CONTENTSIZE_ERROR && content != ZSTD_CONTENTSIZE_UNKNOWN && content > limits_.max_message_bytes) {
    return damaged(ReadStatus::Corrupt, "corrupt frame at byte " + std::to_string(offset_) + ": it expands to " +
                                            std::to_string(content) + " bytes, over the reader's limit of " +
                                            std::to_string(limits_.max_message_bytes) +
                                            " bytes per message (--max-batch-bytes)");
  }
  out.message.swap(spare_);  // a recycled buffer, if the caller gave one back
  if (auto st = decompressor_->decompress(payload, limits_.max_message_bytes, out.message); !st) {
    return damaged(ReadStatus::Corrupt, "corrupt frame at byte " + std::to_string(offset_) + ": " + st.error().message());
  }
  out.status = ReadStatus::Frame;
  out.type = header->type;
  offset_ += frame_size;
  return out;
}

std::optional<std::uint64_t> TraceFileReader::find_frame(std::uint64_t from) {
  std::uint64_t at = from;
  for (;;) {
    if (!fill(at, kFrameHeaderSize, false)) return std::nullopt;
    const std::size_t avail = static_cast<std::size_t>(end_ - at);
    const char* base = buffer_.data() + (at - buffer_start_);
    const void* hit = std::memchr(base, kFrameMagic[0], avail - kFrameHeaderSize + 1);
    if (hit == nullptr) {
      at += avail - kFrameHeaderSize + 1;
      continue;
    }
    const std::uint64_t candidate = at + static_cast<std::uint64_t>(static_cast<const char*>(hit) - base);
    at = candidate + 1;
    if (std::memcmp(hit, kFrameMagic, sizeof(kFrameMagic)) != 0) continue;
    std::string why;
    auto h = parse_frame_header(bytes(candidate, kFrameHeaderSize), &why);
    if (!h) continue;
    // The buffer may move while we look whether the frame fits; `candidate` is an input offset, so it stays.
    if (fill(candidate, kFrameHeaderSize + h->payload_length, false)) return candidate;
  }
}

bool TraceFileReader::resync() {
  if (!stopped_) return true;
  auto found = find_frame(damaged_at_ + 1);
  if (!found) {
    offset_ = std::max(offset_, end_);
    return false;  // still stopped: End from now on
  }
  offset_ = *found;
  stopped_ = false;
  return true;
}

Result<BatchView> BatchView::parse(const std::string& message) {
  BatchView view;
  if (!view.batch_.ParseFromString(message)) return Error("batch: not a valid Batch message");
  const auto& b = view.batch_;
  const int n = static_cast<int>(b.record_count());
  if (!b.time_delta_planes().empty()) {
    // Version 3: the deltas go into time_deltas, so that batch() is read as any version 1 batch.
    const std::string name = "batch " + std::to_string(b.sequence());
    const auto& planes = b.time_delta_planes();
    std::vector<std::uint64_t> deltas;
    if (auto st = read_time_delta_planes(
            name, {reinterpret_cast<const unsigned char*>(planes.data()), planes.size()}, b.record_count(),
            static_cast<std::size_t>(b.time_deltas_size()), deltas);
        !st) {
      return st.error();
    }
    auto& column = *view.batch_.mutable_time_deltas();
    column.Reserve(n);
    for (std::uint64_t d : deltas) column.AddAlreadyReserved(static_cast<std::int64_t>(d));
    view.batch_.clear_time_delta_planes();
  }
  if (b.time_deltas_size() != n || b.cpus_size() != n || b.sizes_size() != n) {
    return Error("batch " + std::to_string(b.sequence()) + ": record_count " + std::to_string(n) +
                 " but columns of " + std::to_string(b.time_deltas_size()) + " times, " + std::to_string(b.cpus_size()) +
                 " CPUs and " + std::to_string(b.sizes_size()) + " sizes");
  }
  // The records' times first: a columnar batch's TIME_OFFSET columns are rebuilt from them.
  view.times_.resize(n);
  std::uint64_t time = b.first_time_ns();
  for (int i = 0; i < n; ++i) view.times_[i] = time += static_cast<std::uint64_t>(b.time_deltas(i));
  if (b.record_groups_size() != 0 || b.groups_size() != 0) {
    // Versions 2 and 3: rebuild the payloads and hand out a batch that has them all in `payloads`, as version 1.
    std::vector<GroupView> groups;
    for (const auto& g : b.groups()) groups.push_back(group_view(g));
    const std::vector<std::uint32_t> sizes(b.sizes().begin(), b.sizes().end());
    const std::vector<std::uint32_t> record_groups(b.record_groups().begin(), b.record_groups().end());
    std::string rebuilt;
    if (auto st = rebuild_payloads("batch " + std::to_string(b.sequence()), sizes, view.times_, record_groups,
                                   b.payloads(), groups, kMaxMessageSize, rebuilt);
        !st) {
      return st.error();
    }
    view.batch_.set_payloads(std::move(rebuilt));
    view.batch_.clear_record_groups();
    view.batch_.clear_groups();
  }
  view.offsets_.resize(n);
  std::size_t offset = 0;
  for (int i = 0; i < n; ++i) {
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
