// Fuzzes what the sink does with the bytes a peer sends (collector/transport/sink_server.cpp): frame
// headers parsed in the Stream context with a small max_frame, control payloads (StreamHello, StreamWelcome,
// StreamAck, StreamRefusal) parsed unencoded, Batch and Trailer payloads decompressed with a small bound and
// decoded (BatchView::parse, every record read). Input: u8 mode | bytes.
//   mode 0: the bytes are a stream of frames, read as the sink reads them;
//   mode 1: the same after rewriting each frame header's CRC (frame_fixup.hpp), to reach the payloads;
//   mode 2: the bytes are a decompressed Batch message (BatchView::parse directly);
//   mode 3: the bytes are a control message of each type.
#include <string>

#include "collector/format/trace_reader.hpp"
#include "collector/format/zstd_codec.hpp"
#include "collector/transport/stream_protocol.hpp"
#include "fuzz/frame_fixup.hpp"
#include "fuzz/fuzz_input.hpp"

using namespace perfstream;
using perfstream::fuzz::FuzzInput;
using perfstream::fuzz::touch;

namespace {

constexpr std::uint32_t kMaxFrame = 1u << 20;  // the sink's max_frame, small so a run stays fast
constexpr std::size_t kMaxBatch = 4u << 20;    // the sink's max_batch

std::uint64_t read_batch(const std::string& message) {
  auto view = BatchView::parse(message);
  if (!view) return 0;
  FUZZ_CHECK(view->size() == view->batch().record_count());
  const std::string& payloads = view->batch().payloads();
  std::uint64_t sum = view->batch().sequence();
  for (std::size_t i = 0; i < view->size(); ++i) {
    const BatchView::Record r = view->record(i);
    FUZZ_CHECK(r.payload.data() >= payloads.data() &&
               r.payload.data() + r.payload.size() <= payloads.data() + payloads.size());
    sum += r.time_ns + r.cpu + touch(r.payload.data(), r.payload.size());
  }
  for (const auto& lost : view->batch().lost()) sum += lost.count();
  return sum;
}

std::uint64_t parse_control(const std::string& payload) {
  std::uint64_t sum = 0;
  v1::StreamHello hello;
  if (hello.ParseFromString(payload)) sum += hello.protocol_version() + hello.collector_id().size() + hello.header().events_size();
  v1::StreamWelcome welcome;
  if (welcome.ParseFromString(payload)) sum += welcome.next_sequence();
  v1::StreamAck ack;
  if (ack.ParseFromString(payload)) sum += ack.through();
  v1::StreamRefusal refusal;
  if (refusal.ParseFromString(payload)) sum += refusal.reason().size();
  return sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  const std::uint8_t mode = in.take<std::uint8_t>() % 4;
  auto rest = in.rest();
  std::string bytes(reinterpret_cast<const char*>(rest.data()), rest.size());
  static ZstdDecompressor decompressor = std::move(*ZstdDecompressor::create());
  std::uint64_t sum = 0;

  if (mode == 2) {
    sum += read_batch(bytes);
  } else if (mode == 3) {
    sum += parse_control(bytes);
  } else {
    if (mode == 1) perfstream::fuzz::fix_frame_crcs(bytes, 0);
    std::size_t offset = 0;
    std::string message;
    while (offset + kFrameHeaderSize <= bytes.size()) {
      std::string why;
      auto h = parse_frame_header(std::span<const char>(bytes.data() + offset, kFrameHeaderSize), &why,
                                  FrameContext::Stream, kMaxFrame);
      if (!h) {
        FUZZ_CHECK(!why.empty());
        break;  // the sink drops the peer
      }
      FUZZ_CHECK(h->payload_length <= kMaxFrame);
      offset += kFrameHeaderSize;
      if (bytes.size() - offset < h->payload_length) break;  // the peer is still sending
      const std::string payload = bytes.substr(offset, h->payload_length);
      offset += h->payload_length;
      switch (h->type) {
        case FrameType::Hello:
        case FrameType::Welcome:
        case FrameType::Ack:
        case FrameType::Refusal:
          sum += parse_control(payload);
          break;
        case FrameType::Batch:
          if (decompressor.decompress(payload, kMaxBatch, message)) {
            FUZZ_CHECK(message.size() <= kMaxBatch);
            sum += read_batch(message);
          }
          break;
        case FrameType::Trailer: {
          v1::TraceTrailer trailer;
          if (decompressor.decompress(payload, 1 << 20, message)) sum += trailer.ParseFromString(message);
          break;
        }
        case FrameType::Header: {
          v1::TraceHeader header;
          if (decompressor.decompress(payload, 1 << 20, message)) sum += header.ParseFromString(message);
          break;
        }
      }
    }
  }
  perfstream::fuzz::keep(sum);
  return 0;
}
