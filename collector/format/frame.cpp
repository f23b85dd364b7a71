#include "collector/format/frame.hpp"

#include <zlib.h>

#include <algorithm>
#include <cstring>

namespace perfstream {
namespace {

void put_u32(std::string& out, std::uint32_t v) {
  char b[4] = {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16), static_cast<char>(v >> 24)};
  out.append(b, 4);
}

std::uint32_t get_u32(const char* p) {
  return static_cast<std::uint32_t>(static_cast<unsigned char>(p[0])) |
         static_cast<std::uint32_t>(static_cast<unsigned char>(p[1])) << 8 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(p[2])) << 16 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(p[3])) << 24;
}

std::uint32_t crc_of(const char* p, std::size_t n) {
  return static_cast<std::uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(p), static_cast<uInt>(n)));
}

}  // namespace

std::string encode_file_header(std::uint32_t version) {
  std::string out(kFileMagic, sizeof(kFileMagic));
  put_u32(out, version);
  put_u32(out, 0);
  return out;
}

std::optional<std::uint32_t> parse_file_header(std::span<const char> bytes, std::string* why) {
  if (bytes.size() < kFileHeaderSize) {
    *why = "not a perfstream trace (shorter than the 16-byte file header)";
    return std::nullopt;
  }
  if (std::memcmp(bytes.data(), kFileMagic, sizeof(kFileMagic)) != 0) {
    *why = "not a perfstream trace (no PERFSTRM magic at the start)";
    return std::nullopt;
  }
  const std::uint32_t version = get_u32(bytes.data() + 8);
  if (!readable_format_version(version)) {
    *why = "format version " + std::to_string(version) + "; this perfstream reads versions " +
           std::to_string(kOldestFormatVersion) + " to " + std::to_string(kFormatVersion);
    return std::nullopt;
  }
  return version;
}

void append_frame_header(std::string& out, const FrameHeader& header) {
  const std::size_t start = out.size();
  out.append(kFrameMagic, sizeof(kFrameMagic));
  out.push_back(static_cast<char>(header.type));
  out.push_back(static_cast<char>(header.encoding));
  out.push_back(0);
  out.push_back(0);
  put_u32(out, header.payload_length);
  put_u32(out, crc_of(out.data() + start, 12));
}

std::optional<FrameHeader> parse_frame_header(std::span<const char> bytes, std::string* why, FrameContext context,
                                              std::uint32_t max_payload) {
  if (bytes.size() < kFrameHeaderSize) {
    *why = "frame header cut short";
    return std::nullopt;
  }
  if (std::memcmp(bytes.data(), kFrameMagic, sizeof(kFrameMagic)) != 0) {
    *why = "no frame magic";
    return std::nullopt;
  }
  if (crc_of(bytes.data(), 12) != get_u32(bytes.data() + 12)) {
    *why = "frame header checksum mismatch";
    return std::nullopt;
  }
  FrameHeader h;
  const auto type = static_cast<std::uint8_t>(bytes[4]);
  const bool data_type = type >= 1 && type <= 3;
  const bool control_type = type >= 16 && type <= 19;
  if (!data_type && !(control_type && context == FrameContext::Stream)) {
    *why = "unknown frame type " + std::to_string(type);
    return std::nullopt;
  }
  h.type = static_cast<FrameType>(type);
  h.encoding = static_cast<std::uint8_t>(bytes[5]);
  const std::uint8_t wanted = data_type ? kEncodingZstd : kEncodingNone;
  if (h.encoding != wanted) {
    *why = "frame type " + std::to_string(type) + " with unknown encoding " + std::to_string(h.encoding);
    return std::nullopt;
  }
  h.payload_length = get_u32(bytes.data() + 8);
  const std::uint32_t limit = std::min(max_payload, kMaxFramePayload);
  if (h.payload_length > limit) {
    *why = "frame length " + std::to_string(h.payload_length) + " over the limit of " + std::to_string(limit);
    return std::nullopt;
  }
  return h;
}

}  // namespace perfstream
