// fix_frame_crcs: libFuzzer's mutations almost never keep a frame header's CRC right, which would stop every
// mutated input at the header check. When the fuzz input asks for it, the harness walks the frames from
// `offset` (following each payload_length) and rewrites their header CRCs, so the mutations reach the
// payload decoders. Test-only.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "collector/format/frame.hpp"

namespace perfstream::fuzz {

inline void fix_frame_crcs(std::string& bytes, std::size_t offset) {
  while (offset + kFrameHeaderSize <= bytes.size()) {
    char* h = bytes.data() + offset;
    std::memcpy(h, kFrameMagic, sizeof(kFrameMagic));
    const std::uint32_t crc = static_cast<std::uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(h), 12));
    for (int i = 0; i < 4; ++i) h[12 + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
    std::uint32_t length = 0;
    for (int i = 0; i < 4; ++i) length |= std::uint32_t{static_cast<unsigned char>(h[8 + i])} << (8 * i);
    offset += kFrameHeaderSize + length;
  }
}

}  // namespace perfstream::fuzz
