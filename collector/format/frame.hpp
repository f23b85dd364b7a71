// The trace framing: how batches and headers are laid out in a trace file (and, later, on a socket).
//
//   file   := file_header frame*
//   file_header (16 bytes) := "PERFSTRM" | u32 format_version (1 to 3) | u32 flags (0)
//   frame  := frame_header payload
//   frame_header (16 bytes) := "PSFR" | u8 type | u8 encoding | u16 reserved (0) | u32 payload_length
//                            | u32 header_crc
//   payload := payload_length bytes: a zstd frame (encoding 1) holding one protobuf message of `type`
//
// All integers little-endian. header_crc is the CRC-32 (zlib's, as in gzip/PNG) of the first 12 bytes of
// the frame header: a corrupt length is caught before it is trusted, and a reader that lost its place can
// find the next frame by scanning for "PSFR" with a matching CRC. The zstd frame carries the content size
// and a checksum of the content. Frame types: 1 TraceHeader, 2 Batch, 3 TraceTrailer (proto/perfstream.proto).
// docs/FORMAT.md has the same contract for readers in other languages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace perfstream {

// 1-3 appear in files and streams; 16-19 only on a stream (see collector/transport/stream_protocol.hpp).
enum class FrameType : std::uint8_t {
  Header = 1,
  Batch = 2,
  Trailer = 3,
  Hello = 16,
  Welcome = 17,
  Ack = 18,
  Refusal = 19,
};

// Where a frame is read: a file takes only zstd-encoded types 1-3; a stream also takes the control types,
// whose small protobuf payloads travel unencoded (encoding 0).
enum class FrameContext { File, Stream };

struct FrameHeader {
  FrameType type = FrameType::Batch;
  std::uint8_t encoding = 1;  // 1 = zstd
  std::uint32_t payload_length = 0;
};

constexpr char kFileMagic[8] = {'P', 'E', 'R', 'F', 'S', 'T', 'R', 'M'};
// The version this code writes when its batches may hold column groups (3), and the oldest it reads (1: no
// column groups). Versions 2 and 3 change only the Batch message: 2 adds column groups (fields 10-11), 3
// time deltas as byte planes (field 12). Readers read all three.
constexpr std::uint32_t kFormatVersion = 3;
constexpr std::uint32_t kOldestFormatVersion = 1;
constexpr bool readable_format_version(std::uint32_t v) { return v >= kOldestFormatVersion && v <= kFormatVersion; }
// What a writer puts in the file header for a TraceHeader's format_version (0, unset: 1).
constexpr std::uint32_t file_format_version(std::uint32_t header_version) { return header_version == 0 ? 1 : header_version; }
constexpr std::size_t kFileHeaderSize = 16;
constexpr char kFrameMagic[4] = {'P', 'S', 'F', 'R'};
constexpr std::size_t kFrameHeaderSize = 16;
constexpr std::uint8_t kEncodingNone = 0;
constexpr std::uint8_t kEncodingZstd = 1;
// Largest payload a writer produces and a reader accepts.
constexpr std::uint32_t kMaxFramePayload = 64u << 20;
// Largest decompressed message a reader accepts.
constexpr std::size_t kMaxMessageSize = 256u << 20;

// The 16 bytes for a file of this version (the TraceHeader's format_version: file_format_version()).
std::string encode_file_header(std::uint32_t version = kFormatVersion);
// nullopt and *why when the 16 bytes are not a perfstream file header of a version this code reads.
std::optional<std::uint32_t> parse_file_header(std::span<const char> bytes, std::string* why);

void append_frame_header(std::string& out, const FrameHeader& header);
// Checks magic, CRC, type, encoding and length limit (kMaxFramePayload, or max_payload when smaller);
// *why says which failed.
std::optional<FrameHeader> parse_frame_header(std::span<const char> bytes, std::string* why,
                                              FrameContext context = FrameContext::File,
                                              std::uint32_t max_payload = kMaxFramePayload);

}  // namespace perfstream
