#include "collector/format/zstd_codec.hpp"

#include <zstd.h>

#include <utility>

namespace perfstream {

Result<ZstdCompressor> ZstdCompressor::create(int level) {
  if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()) {
    return Error("zstd level " + std::to_string(level) + " is out of range (" + std::to_string(ZSTD_minCLevel()) +
                 " to " + std::to_string(ZSTD_maxCLevel()) + ")");
  }
  ZSTD_CCtx* ctx = ZSTD_createCCtx();
  if (ctx == nullptr) return Error("zstd: cannot allocate a compression context");
  for (auto [param, value] : {std::pair{ZSTD_c_compressionLevel, level}, std::pair{ZSTD_c_checksumFlag, 1},
                              std::pair{ZSTD_c_contentSizeFlag, 1}}) {
    const size_t rc = ZSTD_CCtx_setParameter(ctx, param, value);
    if (ZSTD_isError(rc)) {
      ZSTD_freeCCtx(ctx);
      return Error(std::string("zstd: setting a compression parameter: ") + ZSTD_getErrorName(rc));
    }
  }
  return ZstdCompressor(ctx, level);
}

ZstdCompressor::ZstdCompressor(ZstdCompressor&& other) noexcept
    : ctx_(std::exchange(other.ctx_, nullptr)),
      level_(other.level_),
      frame_(std::move(other.frame_)),
      frame_capacity_(std::exchange(other.frame_capacity_, 0)) {}

ZstdCompressor& ZstdCompressor::operator=(ZstdCompressor&& other) noexcept {
  if (this != &other) {
    ZSTD_freeCCtx(ctx_);
    ctx_ = std::exchange(other.ctx_, nullptr);
    level_ = other.level_;
    frame_ = std::move(other.frame_);
    frame_capacity_ = std::exchange(other.frame_capacity_, 0);
  }
  return *this;
}

ZstdCompressor::~ZstdCompressor() { ZSTD_freeCCtx(ctx_); }

Status ZstdCompressor::compress(std::span<const char> input, std::string& out) {
  ZSTD_CCtx_reset(ctx_, ZSTD_reset_session_only);
  const std::size_t bound = ZSTD_compressBound(input.size());
  if (bound > frame_capacity_) {
    frame_ = std::make_unique_for_overwrite<char[]>(bound);
    frame_capacity_ = bound;
  }
  const size_t n = ZSTD_compress2(ctx_, frame_.get(), frame_capacity_, input.data(), input.size());
  if (ZSTD_isError(n)) return Error(std::string("zstd: compressing a batch: ") + ZSTD_getErrorName(n));
  out.assign(frame_.get(), n);
  return {};
}

Result<ZstdDecompressor> ZstdDecompressor::create() {
  ZSTD_DCtx* ctx = ZSTD_createDCtx();
  if (ctx == nullptr) return Error("zstd: cannot allocate a decompression context");
  return ZstdDecompressor(ctx);
}

ZstdDecompressor::ZstdDecompressor(ZstdDecompressor&& other) noexcept : ctx_(std::exchange(other.ctx_, nullptr)) {}

ZstdDecompressor& ZstdDecompressor::operator=(ZstdDecompressor&& other) noexcept {
  if (this != &other) {
    ZSTD_freeDCtx(ctx_);
    ctx_ = std::exchange(other.ctx_, nullptr);
  }
  return *this;
}

ZstdDecompressor::~ZstdDecompressor() { ZSTD_freeDCtx(ctx_); }

Status ZstdDecompressor::decompress(std::span<const char> frame, std::size_t max_output, std::string& out) {
  const size_t frame_size = ZSTD_findFrameCompressedSize(frame.data(), frame.size());
  if (ZSTD_isError(frame_size)) return Error(std::string("zstd frame: ") + ZSTD_getErrorName(frame_size));
  if (frame_size != frame.size()) {
    return Error("zstd frame: " + std::to_string(frame.size() - frame_size) + " bytes follow the frame");
  }
  const unsigned long long content = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (content == ZSTD_CONTENTSIZE_ERROR) return Error("zstd frame: not a zstd frame");
  if (content == ZSTD_CONTENTSIZE_UNKNOWN) return Error("zstd frame: it does not declare its decompressed size");
  if (content > max_output) {
    return Error("zstd frame: declares " + std::to_string(content) + " decompressed bytes, over the limit of " +
                 std::to_string(max_output));
  }
  out.resize(content);
  ZSTD_DCtx_reset(ctx_, ZSTD_reset_session_only);
  const size_t n = ZSTD_decompressDCtx(ctx_, out.data(), out.size(), frame.data(), frame.size());
  if (ZSTD_isError(n)) return Error(std::string("zstd frame: ") + ZSTD_getErrorName(n));
  if (n != content) return Error("zstd frame: decompressed to a size other than the one it declared");
  return {};
}

}  // namespace perfstream
