#include "collector/kernel/perf_event_array.hpp"

#include <bpf/bpf.h>
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace perfstream {
namespace {

// The default ring: 4 MiB per CPU, while all CPUs together take at most 64 MiB, and never less than perf
// record's 512 KiB per CPU (docs/BENCHMARKS.md, "Zero loss by default"). At the highest rate the bench's
// producer reaches here (about 1.3 M 64-byte records/s into one ring), 512 KiB holds 5 ms of records and lost
// 0.03-0.19% of them in file mode whenever the reader was kept off its CPU a little longer; 4 MiB holds 40 ms
// and lost none in 5 runs of 10 s, even with other processes taking a whole CPU.
constexpr std::uint64_t kDefaultDataBytesPerCpu = 4 * 1024 * 1024;
constexpr std::uint64_t kDefaultDataBytesTotal = 64 * 1024 * 1024;
constexpr std::uint64_t kDefaultDataBytesFloor = 512 * 1024;

std::string human_bytes(std::uint64_t bytes) {
  std::ostringstream out;
  if (bytes >= (1u << 20) && bytes % (1u << 20) == 0) out << bytes / (1u << 20) << " MiB";
  else if (bytes >= 1024 && bytes % 1024 == 0) out << bytes / 1024 << " KiB";
  else out << bytes << " bytes";
  return out.str();
}

std::uint64_t round_up_pow2(std::uint64_t v) {
  std::uint64_t p = 1;
  while (p < v && p < (std::uint64_t{1} << 63)) p <<= 1;  // saturates instead of wrapping to 0 (and looping)
  return p;
}

std::uint64_t round_down_pow2(std::uint64_t v) {
  std::uint64_t p = 1;
  while (p * 2 <= v) p <<= 1;
  return p;
}

std::string read_first_line(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line.empty() ? "?" : line;
}

// Why mmap of a perf ring failed with EPERM, and what to raise.
std::string memlock_hint(std::size_t mapped_bytes) {
  struct rlimit limit {};
  getrlimit(RLIMIT_MEMLOCK, &limit);
  std::string rlimit = limit.rlim_cur == RLIM_INFINITY ? "unlimited" : human_bytes(limit.rlim_cur);
  return "locked memory for perf rings is limited to /proc/sys/kernel/perf_event_mlock_kb = " +
         read_first_line("/proc/sys/kernel/perf_event_mlock_kb") + " KiB per user plus RLIMIT_MEMLOCK = " + rlimit +
         "; this ring needs " + human_bytes(mapped_bytes) +
         ": raise kernel.perf_event_mlock_kb (sysctl) or ulimit -l, run with CAP_IPC_LOCK, or use a smaller -m";
}

std::string open_hint(int err) {
  switch (err) {
    case EACCES:
    case EPERM:
      return "per-CPU perf events need root or CAP_PERFMON (CAP_SYS_ADMIN before Linux 5.8); kernel.perf_event_paranoid is " +
             read_first_line("/proc/sys/kernel/perf_event_paranoid");
    case ENODEV:
      return "the CPU is offline";
    case EMFILE:
      return "too many open files: raise ulimit -n";
    case ENOENT:
    case EOPNOTSUPP:
      return "this kernel has no PERF_COUNT_SW_BPF_OUTPUT event";
    default:
      return {};
  }
}

}  // namespace

Result<RingSize> RingSize::parse(const std::string& text) {
  RingSize out;
  std::string body = text;
  const bool total = body.rfind("total:", 0) == 0;
  if (total) body = body.substr(6);
  if (body.empty()) return Error("ring size \"" + text + "\": empty");
  const std::string not_a_number =
      "ring size \"" + text + "\": not a number (use pages like 64, bytes like 256K or 4M, or total:64M)";
  // stoull would also skip blanks and take a sign ("-1" is 2^64 - 1): a size starts with a digit.
  if (body[0] < '0' || body[0] > '9') return Error(not_a_number);
  std::size_t used = 0;
  unsigned long long n = 0;
  try {
    n = std::stoull(body, &used);
  } catch (const std::exception&) {
    return Error(not_a_number);
  }
  std::string suffix = body.substr(used);
  std::uint64_t scale = 0;
  if (suffix.empty()) scale = 0;
  else if (suffix == "K" || suffix == "k" || suffix == "KiB") scale = 1024;
  else if (suffix == "M" || suffix == "m" || suffix == "MiB") scale = 1024 * 1024;
  else if (suffix == "G" || suffix == "g" || suffix == "GiB") scale = 1024ull * 1024 * 1024;
  else if (suffix == "B") scale = 1;
  else return Error("ring size \"" + text + "\": unknown unit \"" + suffix + "\" (use K, M or G)");
  if (n == 0) return Error("ring size \"" + text + "\": must be at least one page");
  if (scale > 1 && n > ~std::uint64_t{0} / scale) return Error("ring size \"" + text + "\": too large");
  if (total) {
    out.unit = Unit::TotalBytes;
    out.value = n * (scale == 0 ? 1 : scale);
  } else if (scale == 0) {
    out.unit = Unit::PagesPerCpu;
    out.value = n;
  } else {
    out.unit = Unit::BytesPerCpu;
    out.value = n * scale;
  }
  return out;
}

Result<RingGeometry> plan_ring_geometry(const RingSize& size, std::uint64_t wakeup_bytes, std::size_t cpus,
                                        std::size_t page_size) {
  if (cpus == 0) cpus = 1;
  std::uint64_t pages = 0;
  switch (size.unit) {
    case RingSize::Unit::Default: {
      const std::uint64_t share = std::max(kDefaultDataBytesTotal / cpus, kDefaultDataBytesFloor);
      const std::uint64_t bytes = std::min(kDefaultDataBytesPerCpu, share);
      pages = round_down_pow2(std::max<std::uint64_t>(1, bytes / page_size));
      break;
    }
    case RingSize::Unit::PagesPerCpu:
      pages = round_up_pow2(size.value);
      break;
    case RingSize::Unit::BytesPerCpu:
      pages = round_up_pow2(size.value / page_size + (size.value % page_size != 0 ? 1 : 0));
      break;
    case RingSize::Unit::TotalBytes: {
      const std::uint64_t per_cpu_pages = size.value / cpus / page_size;
      if (per_cpu_pages < 2) {
        return Error("ring budget " + human_bytes(size.value) + " for " + std::to_string(cpus) +
                     " CPUs leaves less than 1 data page + 1 metadata page per CPU; give at least " +
                     human_bytes(2 * page_size * cpus));
      }
      pages = round_down_pow2(per_cpu_pages - 1);
      break;
    }
  }
  if (pages > (1u << 20)) return Error("ring size of " + std::to_string(pages) + " pages per CPU is too large");
  RingGeometry g;
  g.page_size = page_size;
  g.data_pages = pages;
  g.data_bytes = pages * page_size;
  g.wakeup_bytes = wakeup_bytes == 0 ? g.data_bytes / 4 : wakeup_bytes;
  if (g.wakeup_bytes == 0) g.wakeup_bytes = 1;
  if (g.wakeup_bytes > g.data_bytes) {
    return Error("wakeup size " + human_bytes(wakeup_bytes) + " is larger than the ring's data area of " +
                 human_bytes(g.data_bytes) + ": the reader would never be woken");
  }
  return g;
}

std::string RingGeometry::describe(std::size_t cpus) const {
  std::ostringstream out;
  out << data_pages << " pages (" << human_bytes(data_bytes) << ") + 1 metadata page per CPU, wakeup at "
      << human_bytes(wakeup_bytes) << "; " << cpus << " CPU" << (cpus == 1 ? "" : "s") << ": "
      << human_bytes((data_pages + 1) * page_size * cpus) << " mapped";
  return out.str();
}

Result<std::unique_ptr<PerfEventArray>> PerfEventArray::create(int map_fd, const std::string& map_name,
                                                               const EventArrayOptions& options) {
  std::unique_ptr<PerfEventArray> array(new PerfEventArray());
  array->map_name_ = map_name;
  array->sysfs_cpu_dir_ = options.sysfs_cpu_dir;
  array->clockid_ = options.clockid;
  array->sample_type_ = PERF_SAMPLE_RAW | (options.sample_time ? PERF_SAMPLE_TIME : 0) |
                        (options.sample_cpu ? PERF_SAMPLE_CPU : 0);

  bpf_map_info info{};
  __u32 info_len = sizeof(info);
  if (bpf_obj_get_info_by_fd(map_fd, &info, &info_len) != 0) {
    return Error::from_errno("map '" + map_name + "': reading its info", errno);
  }
  if (info.type != BPF_MAP_TYPE_PERF_EVENT_ARRAY) {
    return Error("map '" + map_name + "' is of type " + std::to_string(info.type) +
                 ", not BPF_MAP_TYPE_PERF_EVENT_ARRAY (" + std::to_string(BPF_MAP_TYPE_PERF_EVENT_ARRAY) + ")");
  }
  array->max_entries_ = info.max_entries;
  int dup_fd = fcntl(map_fd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return Error::from_errno("map '" + map_name + "': dup", errno);
  array->map_fd_.reset(dup_fd);

  auto possible = CpuSet::possible(options.sysfs_cpu_dir);
  if (!possible) return possible.error();
  auto online = CpuSet::online(options.sysfs_cpu_dir);
  if (!online) return online.error();

  if (options.cpus) {
    CpuSet unknown = options.cpus->minus(*possible);
    if (!unknown.empty()) {
      return Error("CPUs " + unknown.to_string() + " do not exist on this machine (possible CPUs: " +
                   possible->to_string() + ")");
    }
    array->candidates_ = *options.cpus;
  } else {
    array->candidates_ = *possible;
  }
  if (array->candidates_.empty()) return Error("no CPU chosen");
  if (array->candidates_.max() >= info.max_entries) {
    return Error("map '" + map_name + "' has max_entries " + std::to_string(info.max_entries) + " but CPU " +
                 std::to_string(array->candidates_.max()) +
                 " needs a slot: declare the map without max_entries (libbpf then sizes it to the possible CPUs, " +
                 std::to_string(possible->max() + 1) + " here) or choose CPUs below " +
                 std::to_string(info.max_entries) + " with -C");
  }
  array->offline_at_start_ = array->candidates_.minus(*online);

  auto geometry = plan_ring_geometry(options.size, options.wakeup_bytes, array->candidates_.size(),
                                     static_cast<std::size_t>(sysconf(_SC_PAGESIZE)));
  if (!geometry) return geometry.error();
  array->geometry_ = *geometry;

  const CpuSet online_candidates = array->candidates_.intersect(*online);
  for (unsigned cpu : online_candidates.cpus()) {
    auto ring = array->open_ring(cpu);
    if (!ring) {
      // A CPU can go offline between reading the online list and opening its event; it will be picked up
      // by the hotplug logic when it comes back.
      if (ring.error().errnum() == ENODEV) {
        array->offline_at_start_ = CpuSet([&] {
          auto v = array->offline_at_start_.cpus();
          v.push_back(cpu);
          return v;
        }());
        continue;
      }
      return ring.error();
    }
    array->initial_rings_.push_back(std::move(*ring));
  }
  return array;
}

PerfEventArray::~PerfEventArray() = default;

Result<std::unique_ptr<CpuRing>> PerfEventArray::open_ring(unsigned cpu) {
  const std::string where = "CPU " + std::to_string(cpu);
  perf_event_attr attr{};
  attr.size = sizeof(attr);
  attr.type = PERF_TYPE_SOFTWARE;
  attr.config = PERF_COUNT_SW_BPF_OUTPUT;
  attr.sample_period = 1;
  attr.sample_type = sample_type_;
  attr.sample_id_all = 1;  // PERF_RECORD_LOST carries the time of the loss (with PERF_SAMPLE_TIME)
  attr.watermark = 1;
  attr.wakeup_watermark = static_cast<__u32>(geometry_.wakeup_bytes);
  attr.read_format = PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING;  // see event_is_live
  attr.use_clockid = 1;
  attr.clockid = clockid_;

  int fd = static_cast<int>(syscall(SYS_perf_event_open, &attr, -1, static_cast<int>(cpu), -1, PERF_FLAG_FD_CLOEXEC));
  if (fd < 0) {
    const int err = errno;
    return Error::from_errno("opening the BPF output perf event on " + where, err, open_hint(err));
  }
  UniqueFd event(fd);

  const std::size_t mapped = (geometry_.data_pages + 1) * geometry_.page_size;
  void* base = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    const int err = errno;
    return Error::from_errno("mapping the " + human_bytes(mapped) + " ring of " + where, err,
                             err == EPERM ? memlock_hint(mapped) : std::string());
  }
  MappedRegion region(base, mapped);
  auto ring = PerfRing::over(base, mapped);
  if (!ring) return ring.error().with_context(where);

  __u32 key = cpu;
  __u32 value = static_cast<__u32>(fd);
  if (bpf_map_update_elem(map_fd_.get(), &key, &value, BPF_ANY) != 0) {
    return Error::from_errno("map '" + map_name_ + "': storing the event of " + where + " at key " +
                             std::to_string(cpu), errno);
  }
  return std::make_unique<CpuRing>(CpuRing{cpu, std::move(event), std::move(region), std::move(*ring)});
}

Result<bool> event_is_live(int event_fd, unsigned cpu) {
  struct Times {
    std::uint64_t value, enabled, running;
  };
  Times first{}, second{};
  for (Times* t : {&first, &second}) {
    if (::read(event_fd, t, sizeof(*t)) != static_cast<ssize_t>(sizeof(*t))) {
      return Error::from_errno("reading the perf event of CPU " + std::to_string(cpu), errno);
    }
  }
  return second.enabled != first.enabled;
}

Status PerfEventArray::clear_slot(unsigned cpu) {
  __u32 key = cpu;
  if (bpf_map_delete_elem(map_fd_.get(), &key) != 0 && errno != ENOENT) {
    return Error::from_errno("map '" + map_name_ + "': clearing the slot of CPU " + std::to_string(cpu), errno);
  }
  return {};
}

}  // namespace perfstream
