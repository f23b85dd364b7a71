// Fuzzes TraceFileReader and BatchView on a whole trace file. Input: u8 flags | file bytes. Flag bit 0 asks
// the harness to rewrite the frame headers' CRCs (frame_fixup.hpp) so mutations get past them. The file is
// an anonymous memfd opened through /proc/self/fd, so the reader runs its real open/pread path.
// Every frame is read; Batch frames go through BatchView::parse and every record is read byte by byte, and
// through recording::DecodedBatch, which must read alike whatever both accept;
// Header/Trailer messages are parsed; after Corrupt the reader resync()s. Invariants: the reader's offset
// only moves forward and stays inside the file; a record's payload lies inside the batch's payload bytes.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include "collector/format/trace_reader.hpp"
#include "collector/recording/decoded_batch.hpp"
#include "fuzz/frame_fixup.hpp"
#include "fuzz/fuzz_input.hpp"

using namespace perfstream;
using perfstream::fuzz::FuzzInput;
using perfstream::fuzz::touch;

namespace {

// The reader library's own batch decoder against protobuf's: whatever both accept, they read alike.
std::uint64_t decode_both(const std::string& message, const Result<BatchView>& view) {
  recording::DecodedBatch decoded;
  std::string copy = message;
  const Status st = decoded.decode(copy, 1u << 20);
  if (!st || !view) return st ? 1 : 0;
  FUZZ_CHECK(decoded.size() == view->size());
  FUZZ_CHECK(decoded.sequence == view->batch().sequence());
  FUZZ_CHECK(decoded.lost.size() == static_cast<std::size_t>(view->batch().lost_size()));
  for (std::size_t i = 0; i < decoded.size(); ++i) {
    const BatchView::Record r = view->record(i);
    FUZZ_CHECK(decoded.times[i] == r.time_ns && decoded.cpus[i] == r.cpu);
    FUZZ_CHECK(decoded.payload(i).size() == r.payload.size() &&
               std::equal(r.payload.begin(), r.payload.end(), decoded.payload(i).begin()));
  }
  for (std::size_t i = 0; i < decoded.lost.size(); ++i) {
    const auto& l = view->batch().lost(static_cast<int>(i));
    FUZZ_CHECK(decoded.lost[i].count == l.count() && decoded.lost[i].before == l.before() &&
               decoded.lost[i].cpu == l.cpu());
  }
  return 2;
}

std::uint64_t read_batch(const std::string& message) {
  auto view = BatchView::parse(message);
  const std::uint64_t both = decode_both(message, view);
  if (!view) return both;
  FUZZ_CHECK(view->size() == view->batch().record_count());
  const std::string& payloads = view->batch().payloads();
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < view->size(); ++i) {
    const BatchView::Record r = view->record(i);
    FUZZ_CHECK(r.payload.data() >= payloads.data() &&
               r.payload.data() + r.payload.size() <= payloads.data() + payloads.size());
    sum += r.time_ns + r.cpu + touch(r.payload.data(), r.payload.size());
  }
  return sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  const std::uint8_t flags = in.take<std::uint8_t>();
  auto rest = in.rest();
  std::string file(reinterpret_cast<const char*>(rest.data()), rest.size());
  if (flags & 1) perfstream::fuzz::fix_frame_crcs(file, kFileHeaderSize);

  static const int fd = memfd_create("fuzz_trace", MFD_CLOEXEC);
  FUZZ_CHECK(fd >= 0);
  FUZZ_CHECK(ftruncate(fd, 0) == 0);
  FUZZ_CHECK(pwrite(fd, file.data(), file.size(), 0) == static_cast<ssize_t>(file.size()));
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);

  auto reader = TraceFileReader::open(path);
  if (!reader) return 0;
  TraceFileReader& r = **reader;
  FUZZ_CHECK(r.file_size() == file.size());
  std::uint64_t sum = 0;
  std::uint64_t last = r.offset();
  for (int frames = 0; frames < 10000; ++frames) {
    ReadOutcome out = r.next();
    FUZZ_CHECK(r.offset() <= r.file_size());
    if (out.status == ReadStatus::End) break;
    if (out.status == ReadStatus::Frame) {
      FUZZ_CHECK(r.offset() > last);
      if (out.type == FrameType::Batch) {
        sum += read_batch(out.message);
      } else if (out.type == FrameType::Trailer) {
        v1::TraceTrailer trailer;
        sum += trailer.ParseFromString(out.message);
      } else if (out.type == FrameType::Header) {
        v1::TraceHeader header;
        sum += header.ParseFromString(out.message);
      }
    } else if (!r.resync()) {
      FUZZ_CHECK(r.next().status == ReadStatus::End);
      break;
    } else {
      FUZZ_CHECK(r.offset() > out.offset);
    }
    last = r.offset();
  }
  perfstream::fuzz::keep(sum);
  return 0;
}
