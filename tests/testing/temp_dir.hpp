// TempDir: a fresh directory under $TMPDIR (or /tmp) for one test, removed with everything in it at the end;
// and small file helpers for tests that write, cut and damage trace files.
#pragma once

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

namespace perfstream::testing {

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/perfstream-test-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp " + pattern);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

// Points this process's open descriptor of `path` at a write-only descriptor of the same file: writes
// through it still work, reads fail with EBADF (as a failing disk's fail with EIO). Throws when no
// descriptor of `path` is open.
inline void make_unreadable(const std::string& path) {
  const std::string want = std::filesystem::canonical(path).string();
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    if (std::filesystem::read_symlink(entry.path(), ec).string() != want) continue;
    const int fd = std::stoi(entry.path().filename().string());
    const int write_only = ::open(want.c_str(), O_WRONLY | O_CLOEXEC);
    if (write_only < 0 || ::dup3(write_only, fd, O_CLOEXEC) != fd) throw std::runtime_error("cannot redirect " + want);
    ::close(write_only);
    return;
  }
  throw std::runtime_error("no descriptor of " + want + " is open");
}

}  // namespace perfstream::testing
