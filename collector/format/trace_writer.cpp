#include "collector/format/trace_writer.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "collector/format/frame.hpp"

namespace perfstream {
namespace {

// Writes all of `data` at the current offset; returns errno on failure (0 on success).
int write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return 0;
}

std::string directory_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

bool directory_is_gone(const std::string& path) {
  struct stat st {};
  return ::stat(directory_of(path).c_str(), &st) != 0 && (errno == ENOENT || errno == ENOTDIR);
}

}  // namespace

Result<std::unique_ptr<TraceFileWriter>> TraceFileWriter::create(const TraceWriterOptions& options,
                                                                 v1::TraceHeader header) {
  auto compressor = ZstdCompressor::create(options.header_compression_level);
  if (!compressor) return compressor.error();
  std::unique_ptr<TraceFileWriter> writer(new TraceFileWriter(options, std::move(header), std::move(*compressor)));
  std::lock_guard<std::mutex> lock(writer->mutex_);
  if (options.resume_piece && options.resume_offset > 0) {
    writer->piece_ = *options.resume_piece;
    const std::string path = writer->piece_path(writer->piece_);
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return Error::from_errno("reopening trace file " + path, errno);
    writer->fd_.reset(fd);
    if (::ftruncate(fd, static_cast<off_t>(options.resume_offset)) != 0 ||
        ::lseek(fd, static_cast<off_t>(options.resume_offset), SEEK_SET) < 0) {
      return Error::from_errno("cutting trace file " + path + " back to its last complete frame", errno);
    }
    writer->piece_bytes_ = options.resume_offset;
    writer->piece_batches_ = options.resume_batches;
    writer->piece_records_ = options.resume_records;
    writer->total_bytes_ = options.resume_offset;
    writer->piece_started_ = std::chrono::steady_clock::now();
    return writer;
  }
  if (options.resume_piece) writer->piece_ = *options.resume_piece;
  if (auto st = writer->open_piece(); !st) return st.error();
  return writer;
}

TraceFileWriter::TraceFileWriter(const TraceWriterOptions& options, v1::TraceHeader header, ZstdCompressor compressor)
    : options_(options), header_(std::move(header)), compressor_(std::move(compressor)) {}

TraceFileWriter::~TraceFileWriter() {
  if (!closed_) (void)close(v1::TraceTrailer());
}

std::string TraceFileWriter::piece_path(std::uint32_t piece) const {
  if (options_.path == "-") return "-";
  return piece == 0 ? options_.path : options_.path + "." + std::to_string(piece);
}

Status TraceFileWriter::open_piece() {
  const std::string path = piece_path(piece_);
  // 0640 and no symlink following: a trace holds what other processes did, and we may run as root in a
  // directory others can write to.
  // "-": standard output (record -o - | dump -); never rotated, so piece 0 only.
  int fd = options_.path == "-" ? ::fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3)
                                : ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (fd < 0) {
    const int err = errno;
    return Error::from_errno("creating trace file " + path, err,
                             err == ENOENT && total_bytes_ > 0 && directory_is_gone(path)
                                 ? "its directory " + directory_of(path) + " was removed or renamed"
                                 : "");
  }
  fd_.reset(fd);
  piece_bytes_ = piece_batches_ = piece_records_ = 0;
  piece_started_ = std::chrono::steady_clock::now();
  // The file's version is its header's: a sink storing a version 1 collector's stream writes a version 1 file.
  const std::string file_header = encode_file_header(file_format_version(header_.format_version()));
  if (int err = write_all(fd, file_header.data(), file_header.size()); err != 0) {
    return Error::from_errno("writing the file header of " + path, err);
  }
  piece_bytes_ += file_header.size();
  total_bytes_ += file_header.size();
  header_.set_piece(piece_);
  return write_message_frame(FrameType::Header, header_);
}

Status TraceFileWriter::write_message_frame(FrameType type, const google::protobuf::MessageLite& message) {
  std::string encoded;
  if (!message.SerializeToString(&encoded)) return Error("encoding a trace frame");
  if (auto st = compressor_.compress(encoded, scratch_); !st) return st;
  return write_frame(type, scratch_);
}

Status TraceFileWriter::write_frame(FrameType type, const std::string& compressed) {
  if (compressed.size() > kMaxFramePayload) {
    return Error("a frame of " + std::to_string(compressed.size()) + " bytes is over the format's limit of " +
                 std::to_string(kMaxFramePayload));
  }
  std::string frame;
  frame.reserve(kFrameHeaderSize);
  append_frame_header(frame, FrameHeader{type, kEncodingZstd, static_cast<std::uint32_t>(compressed.size())});
  // One writev would save a syscall; two writes keep the cut-back logic simple and cost little per batch.
  int err = write_all(fd_.get(), frame.data(), frame.size());
  if (err == 0) err = write_all(fd_.get(), compressed.data(), compressed.size());
  if (err != 0) {
    // Cut the partial frame off so the file ends on a frame boundary and stays readable.
    bool cut = ::ftruncate(fd_.get(), static_cast<off_t>(piece_bytes_)) == 0 &&
               ::lseek(fd_.get(), static_cast<off_t>(piece_bytes_), SEEK_SET) >= 0;
    if (!cut) {
      // A read-only file system refuses the cut too; often nothing of the frame got in anyway.
      struct stat st {};
      cut = ::fstat(fd_.get(), &st) == 0 && static_cast<std::uint64_t>(st.st_size) == piece_bytes_;
    }
    const std::string path = piece_path(piece_);
    Error error = Error::from_errno(
        "writing to trace file " + path, err,
        std::string(cut ? "the file ends at its last complete frame: " : "the file may end in a partial frame: ") +
            std::to_string(piece_batches_) + " batches (" + std::to_string(piece_records_) +
            " records) written before stay readable" +
            (err == ENOSPC ? "; free disk space or write elsewhere with -o" : ""));
    failed_ = error;
    return error;
  }
  piece_bytes_ += frame.size() + compressed.size();
  total_bytes_ += frame.size() + compressed.size();
  return {};
}

Status TraceFileWriter::finish_piece(bool rotated) {
  v1::TraceTrailer trailer;
  trailer.set_batches(piece_batches_);
  trailer.set_records(piece_records_);
  trailer.set_rotated(rotated);
  if (auto st = write_message_frame(FrameType::Trailer, trailer); !st) return st;
  if (::fsync(fd_.get()) != 0 && errno != EINVAL) {
    return Error::from_errno("flushing trace file " + piece_path(piece_) + " to disk", errno);
  }
  fd_.reset();
  return {};
}

Status TraceFileWriter::check_linked() {
  struct stat st {};
  if (!fd_.valid() || ::fstat(fd_.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink > 0) return {};
  const std::string path = piece_path(piece_);
  // No call failed, so there is no errno of its own: ENOENT is what opening the path would say now.
  failed_ = Error("trace file " + path + " was deleted while being written" +
                      (directory_is_gone(path) ? " (its directory " + directory_of(path) + " was removed)" : "") +
                      ": the " + std::to_string(piece_batches_) + " batches (" + std::to_string(piece_records_) +
                      " records) it held are gone, and nothing more is written",
                  ENOENT);
  fd_.reset();
  return *failed_;
}

Status TraceFileWriter::check() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (failed_) return *failed_;
  if (closed_) return {};
  return check_linked();
}

Status TraceFileWriter::write_batch(const EncodedBatch& batch) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (closed_) return Error("trace file " + piece_path(piece_) + " is closed");
  if (failed_) return *failed_;
  if (auto st = check_linked(); !st) return st;
  const std::uint64_t frame_bytes = kFrameHeaderSize + batch.compressed.size();
  const bool size_full = options_.rotate_bytes != 0 && piece_bytes_ + frame_bytes > options_.rotate_bytes;
  const bool time_full = options_.rotate_time.count() != 0 &&
                         std::chrono::steady_clock::now() - piece_started_ >= options_.rotate_time;
  if ((size_full || time_full) && piece_batches_ > 0) {
    Status st = finish_piece(true);
    if (st) {
      ++piece_;
      st = open_piece();
    }
    if (!st) {
      // The pieces before are complete (trailer and all); this one never started or is cut at a frame.
      failed_ = st.error();
      fd_.reset();
      return st;
    }
  }
  if (auto st = write_frame(FrameType::Batch, batch.compressed); !st) return st;
  ++piece_batches_;
  piece_records_ += batch.records;
  ++total_batches_;
  return {};
}

Status TraceFileWriter::close(v1::TraceTrailer trailer) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (closed_) return {};
  closed_ = true;
  if (!failed_) (void)check_linked();
  if (failed_) {
    fd_.reset();
    return *failed_;
  }
  if (!fd_.valid()) return {};
  trailer.set_batches(piece_batches_);
  trailer.set_records(piece_records_);
  trailer.set_rotated(false);
  if (auto st = write_message_frame(FrameType::Trailer, trailer); !st) return st;
  if (::fsync(fd_.get()) != 0 && errno != EINVAL) {
    return Error::from_errno("flushing trace file " + piece_path(piece_) + " to disk", errno);
  }
  fd_.reset();
  return {};
}

TraceFileWriter::Position TraceFileWriter::position() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return Position{piece_, piece_bytes_, piece_batches_, piece_records_};
}

void TraceFileWriter::abandon() {
  std::lock_guard<std::mutex> lock(mutex_);
  closed_ = true;
  fd_.reset();
}

Status TraceFileWriter::sync() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!fd_.valid()) return {};
  if (::fdatasync(fd_.get()) != 0) {
    return Error::from_errno("syncing " + piece_path(piece_) + " to disk", errno);
  }
  return {};
}

Status TraceFileWriter::give_to(uid_t uid, gid_t gid) {
  std::lock_guard<std::mutex> lock(mutex_);
  struct stat st {};
  if (!fd_.valid() || ::fstat(fd_.get(), &st) != 0 || st.st_uid != ::geteuid()) return {};
  if (::fchown(fd_.get(), uid, gid) != 0) return Error::from_errno("chown " + piece_path(piece_), errno);
  return {};
}

std::uint64_t TraceFileWriter::bytes_written() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return total_bytes_;
}

std::uint64_t TraceFileWriter::batches_written() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return total_batches_;
}

std::uint32_t TraceFileWriter::pieces() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return piece_ + 1;
}

std::string TraceFileWriter::current_path() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return piece_path(piece_);
}

}  // namespace perfstream
