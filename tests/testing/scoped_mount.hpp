// ScopedMount: a file system mounted for one test that needs its output to misbehave: a small tmpfs (it
// fills up), an ext4 image that goes read-only as on a disk error, a read-only bind mount over a directory.
// Root only. Each is detached (lazily) when the object goes, whatever the test did; when the mount fails,
// error() says why, for the test to skip with. Test-only.
#pragma once

#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>

#include "testing/subprocess.hpp"

namespace perfstream::testing {

class ScopedMount {
 public:
  static ScopedMount tmpfs(const std::string& dir, const std::string& size) {
    ScopedMount m(dir);
    m.mounted_ = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
    if (!m.mounted_) m.error_ = "cannot mount a tmpfs on " + dir + ": " + std::strerror(errno);
    return m;
  }

  // An ext4 file system in `image` (made here, `megabytes` big) on a loop device, mounted with
  // errors=remount-ro: trigger_error() then makes it read-only under every open file, as a disk error does.
  static ScopedMount ext4_image(const std::string& image, const std::string& dir, int megabytes) {
    ScopedMount m(dir);
    RunResult made = run({"truncate", "-s", std::to_string(megabytes) + "M", image});
    if (made.exit_status == 0) made = run({"mkfs.ext4", "-q", "-F", image});
    if (made.exit_status != 0) {
      m.error_ = "cannot make an ext4 image (mkfs.ext4, from e2fsprogs): " + made.err;
      return m;
    }
    RunResult mounted = run({"mount", "-t", "ext4", "-o", "loop,errors=remount-ro", image, dir});
    m.mounted_ = mounted.exit_status == 0;
    if (!m.mounted_) m.error_ = "cannot mount an ext4 image on a loop device: " + mounted.err;
    return m;
  }

  // A read-only bind mount of `dir` on itself: files already open keep their writable mount, but every
  // path lookup from now on (a new file) finds a read-only one. (A file system with a file open for
  // writing cannot be remounted read-only as a whole: the kernel says EBUSY.)
  static ScopedMount read_only_bind(const std::string& dir) {
    ScopedMount m(dir);
    m.mounted_ = ::mount(dir.c_str(), dir.c_str(), nullptr, MS_BIND, nullptr) == 0;
    if (!m.mounted_) {
      m.error_ = "cannot bind-mount " + dir + ": " + std::strerror(errno);
    } else if (::mount(nullptr, dir.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0) {
      m.error_ = "cannot make the bind mount of " + dir + " read-only: " + std::strerror(errno);
    }
    return m;
  }

  ScopedMount(ScopedMount&& other) noexcept
      : dir_(std::move(other.dir_)), error_(std::move(other.error_)), mounted_(std::exchange(other.mounted_, false)) {}
  ~ScopedMount() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  // ext4_image only: reports an error to the file system (ext4's trigger_fs_error, made for tests); with
  // errors=remount-ro it turns read-only at once. "" or what went wrong.
  std::string trigger_error() const {
    RunResult source = run({"findmnt", "-n", "-o", "SOURCE", "--mountpoint", dir_});
    std::string device = source.out.substr(0, source.out.find('\n'));
    device = device.substr(device.rfind('/') + 1);
    const std::string knob = "/sys/fs/ext4/" + device + "/trigger_fs_error";
    std::ofstream out(knob);
    if (!out) return "cannot open " + knob + ": " + std::strerror(errno);
    out << "perfstream test: read-only from here" << std::flush;
    if (!out) return "writing " + knob + ": " + std::strerror(errno);
    return "";
  }

 private:
  explicit ScopedMount(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
  std::string error_;
  bool mounted_ = false;
};

}  // namespace perfstream::testing
