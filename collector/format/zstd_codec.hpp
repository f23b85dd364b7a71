// ZstdCompressor / ZstdDecompressor: one zstd frame per call, each with its content size and a content
// checksum, so a reader can bound memory before decompressing and detect corruption after.
//
// One context per object, reused across frames (reset per frame): no allocation in steady state. The
// compressor writes each frame into a buffer of its own, kept at the largest bound seen and never
// zero-filled, and copies out only the frame: a string resized to the bound would clear a batch's worth of
// bytes per frame (3% of the collector's time in the kernel bench, docs/BENCHMARKS.md).
// Decompression refuses frames that do not declare their size or declare more than the caller's limit,
// so a small frame cannot expand into unbounded memory (a zstd bomb).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "collector/util/result.hpp"

struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;

namespace perfstream {

class ZstdCompressor {
 public:
  // level: zstd's levels (1 fast .. 19 small; negative levels are faster still).
  static Result<ZstdCompressor> create(int level);
  ZstdCompressor(ZstdCompressor&&) noexcept;
  ZstdCompressor& operator=(ZstdCompressor&&) noexcept;
  ~ZstdCompressor();

  // Compresses `input` into one frame, replacing `out`.
  Status compress(std::span<const char> input, std::string& out);
  int level() const { return level_; }

 private:
  ZstdCompressor(ZSTD_CCtx_s* ctx, int level) : ctx_(ctx), level_(level) {}
  ZSTD_CCtx_s* ctx_ = nullptr;
  int level_ = 0;
  std::unique_ptr<char[]> frame_;  // room for frame_capacity_ bytes
  std::size_t frame_capacity_ = 0;
};

class ZstdDecompressor {
 public:
  static Result<ZstdDecompressor> create();
  ZstdDecompressor(ZstdDecompressor&&) noexcept;
  ZstdDecompressor& operator=(ZstdDecompressor&&) noexcept;
  ~ZstdDecompressor();

  // Decompresses exactly one frame into `out`. Fails if `frame` is not exactly one valid frame, if its
  // content size is missing or above max_output, or if its checksum does not match.
  Status decompress(std::span<const char> frame, std::size_t max_output, std::string& out);

 private:
  explicit ZstdDecompressor(ZSTD_DCtx_s* ctx) : ctx_(ctx) {}
  ZSTD_DCtx_s* ctx_ = nullptr;
};

}  // namespace perfstream
