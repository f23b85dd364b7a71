// FuzzInput: takes typed values off the front of a libFuzzer input; past the end it yields zeros, so every
// input is a valid one. Test-only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>

namespace perfstream::fuzz {

class FuzzInput {
 public:
  FuzzInput(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

  template <typename T>
  T take() {
    T v{};
    const std::size_t n = std::min(sizeof(T), size_ - pos_);
    if (n > 0) std::memcpy(&v, data_ + pos_, n);
    pos_ += n;
    return v;
  }
  std::span<const std::uint8_t> take_bytes(std::size_t n) {
    n = std::min(n, size_ - pos_);
    std::span<const std::uint8_t> out(data_ + pos_, n);
    pos_ += n;
    return out;
  }
  std::span<const std::uint8_t> rest() { return take_bytes(size_ - pos_); }
  std::size_t remaining() const { return size_ - pos_; }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

// Fails the run with a message: libFuzzer saves the input as a crash.
[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "fuzz invariant violated: %s\n", what);
  std::abort();
}
#define FUZZ_CHECK(cond) \
  do {                   \
    if (!(cond)) ::perfstream::fuzz::fail(#cond); \
  } while (0)

// Reads every byte so that ASan checks the whole range; the sum keeps the loads alive.
inline std::uint64_t touch(const void* p, std::size_t n) {
  std::uint64_t sum = 0;
  const auto* b = static_cast<const volatile unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) sum += b[i];
  return sum;
}

// Keeps a value alive so that the loads it sums are not optimised away.
inline void keep(std::uint64_t v) {
  static volatile std::uint64_t sink;
  sink = sink + v;
}

}  // namespace perfstream::fuzz
