// HotplugTracker on a fake sysfs (a temp dir with cpuN/online files and the `online` list) and a fake kernel:
// which rings it opens, retires, and hands to which reader, in what order, what it logs, and that it never
// asks about an event it holds no fd on. No kernel needed; the real thing is in kernel/hotplug_kernel_test.
#include "collector/read/reader_pool.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "testing/fake_ring.hpp"

namespace perfstream {
namespace {

using Lines = std::vector<std::string>;

// A directory standing in for /sys/devices/system/cpu: cpuN/online per CPU and the `online` list, kept in
// step as the kernel keeps them. Removed at the end of the test.
class FakeSysfs {
 public:
  explicit FakeSysfs(unsigned cpus) : online_(cpus, true) {
    std::string pattern = ::testing::TempDir() + "hotplug_tracker_test.XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp " + pattern);
    dir_ = pattern;
    std::ofstream(dir_ + "/possible") << "0-" << cpus - 1 << "\n";
    for (unsigned cpu = 0; cpu < cpus; ++cpu) {
      std::filesystem::create_directory(dir_ + "/cpu" + std::to_string(cpu));
      set_online(cpu, true);
    }
  }
  ~FakeSysfs() { std::filesystem::remove_all(dir_); }
  const std::string& dir() const { return dir_; }

  void set_online(unsigned cpu, bool online) {
    online_.at(cpu) = online;
    std::ofstream(dir_ + "/cpu" + std::to_string(cpu) + "/online") << (online ? "1\n" : "0\n");
    std::vector<unsigned> list;
    for (unsigned c = 0; c < online_.size(); ++c) {
      if (online_[c]) list.push_back(c);
    }
    std::ofstream(dir_ + "/online") << CpuSet(list).to_string() << "\n";
  }
  void remove_online_list() { std::filesystem::remove(dir_ + "/online"); }

 private:
  std::string dir_;
  std::vector<bool> online_;
};

// The kernel's side: events (a /dev/null fd each) with rings over FakeKernelRings. An offline stops every
// event of the CPU for good, as the kernel does. Writes what the tracker does to `journal`.
class FakeEvents : public HotplugEvents {
 public:
  explicit FakeEvents(Lines& journal) : journal_(journal) {}

  // What an offline does to the CPU's events, whether or not the tracker saw the CPU offline.
  void stop_events_of(unsigned cpu) {
    for (auto& [id, event] : events_) {
      if (event.cpu == cpu) event.live = false;
    }
  }
  void fail_next_dups(unsigned count) { failing_dups_ = count; }
  void fail_opens(unsigned cpu, int errnum) { open_errno_[cpu] = errnum; }
  // CPUs whose event the tracker asked about, in order.
  const std::vector<unsigned>& liveness_asked() const { return liveness_asked_; }

  Result<std::unique_ptr<CpuRing>> open_ring(unsigned cpu) override {
    journal_.push_back("open_ring " + std::to_string(cpu));
    if (auto it = open_errno_.find(cpu); it != open_errno_.end() && it->second != 0) {
      return Error::from_errno("opening the BPF output perf event on CPU " + std::to_string(cpu), it->second);
    }
    auto& fake = fake_rings_.emplace_back(std::make_unique<testing::FakeKernelRing>(4096));
    auto ring = PerfRing::over(fake->base(), fake->mapping_size());
    if (!ring) throw std::runtime_error(ring.error().message());
    UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!fd) throw std::runtime_error("open /dev/null");
    const unsigned id = next_id_++;
    events_[id] = Event{cpu, true};
    event_of_fd_[fd.get()] = id;
    return std::make_unique<CpuRing>(CpuRing{cpu, std::move(fd), MappedRegion(), std::move(*ring)});
  }

  Status clear_slot(unsigned cpu) override {
    journal_.push_back("clear_slot " + std::to_string(cpu));
    return {};
  }

  Result<UniqueFd> dup_event(const CpuRing& ring) override {
    if (failing_dups_ > 0) {
      --failing_dups_;
      return Error::from_errno("dup of its event fd", EMFILE);
    }
    UniqueFd fd(fcntl(ring.event_fd.get(), F_DUPFD_CLOEXEC, 0));
    if (!fd) throw std::runtime_error("dup");
    event_of_fd_[fd.get()] = event_of_fd_.at(ring.event_fd.get());
    return fd;
  }

  Result<bool> is_live(const UniqueFd& event, unsigned cpu) override {
    liveness_asked_.push_back(cpu);
    if (fcntl(event.get(), F_GETFD) < 0) {
      ADD_FAILURE() << "the tracker asked about CPU " << cpu << " through a closed fd";
      return Error::from_errno("reading the perf event of CPU " + std::to_string(cpu), errno);
    }
    const Event& e = events_.at(event_of_fd_.at(event.get()));
    EXPECT_EQ(e.cpu, cpu) << "the fd is another CPU's event";
    return e.live;
  }

 private:
  struct Event {
    unsigned cpu = 0;
    bool live = true;
  };
  Lines& journal_;
  std::vector<std::unique_ptr<testing::FakeKernelRing>> fake_rings_;  // outlive every CpuRing over them
  std::map<unsigned, Event> events_;
  std::map<int, unsigned> event_of_fd_;  // fd -> event id; a reused fd number is overwritten when handed out
  unsigned next_id_ = 0;
  unsigned failing_dups_ = 0;
  std::map<unsigned, int> open_errno_;
  std::vector<unsigned> liveness_asked_;
};

// The readers' side: keeps the rings it was given and writes each queued call to `journal`.
class FakeReaders : public HotplugReaders {
 public:
  explicit FakeReaders(Lines& journal) : journal_(journal) {}

  std::set<unsigned> cpus_of(unsigned reader) const {
    std::set<unsigned> out;
    for (const auto& [cpu, owned] : rings_) {
      if (owned.reader == reader) out.insert(cpu);
    }
    return out;
  }

  void queue_adopt(unsigned reader, std::unique_ptr<CpuRing> ring) override {
    const unsigned cpu = ring->cpu;
    journal_.push_back("adopt " + std::to_string(cpu) + " on reader " + std::to_string(reader));
    EXPECT_TRUE(ring->event_fd.valid());
    EXPECT_EQ(rings_.count(cpu), 0u) << "CPU " << cpu << " adopted twice";
    rings_[cpu] = Owned{reader, std::move(ring)};
  }
  void queue_retire(unsigned reader, unsigned cpu) override {
    journal_.push_back("retire " + std::to_string(cpu) + " on reader " + std::to_string(reader));
    auto it = rings_.find(cpu);
    ASSERT_NE(it, rings_.end()) << "CPU " << cpu << " retired but never adopted";
    EXPECT_EQ(it->second.reader, reader);
    rings_.erase(it);
  }
  void queue_close(unsigned reader, std::unique_ptr<CpuRing> ring) override {
    journal_.push_back("close " + std::to_string(ring->cpu) + " on reader " + std::to_string(reader));
  }

 private:
  struct Owned {
    unsigned reader = 0;
    std::unique_ptr<CpuRing> ring;
  };
  Lines& journal_;
  std::map<unsigned, Owned> rings_;
};

// A tracker over `cpus` fake CPUs, all candidates, with the rings of those online at start dealt to `readers`.
struct Rig {
  Lines journal;
  Lines log;
  FakeSysfs sysfs;
  FakeEvents events{journal};
  FakeReaders readers{journal};
  std::unique_ptr<HotplugTracker> tracker;

  explicit Rig(unsigned cpus, unsigned reader_count = 2, std::vector<unsigned> offline = {}, bool follow = true)
      : sysfs(cpus) {
    for (unsigned cpu : offline) sysfs.set_online(cpu, false);
    std::vector<unsigned> all;
    for (unsigned cpu = 0; cpu < cpus; ++cpu) all.push_back(cpu);
    HotplugTracker::Options options;
    options.candidates = CpuSet(all);
    options.sysfs_cpu_dir = sysfs.dir();
    options.readers = reader_count;
    options.follow = follow;
    options.log = [this](const std::string& line) { log.push_back(line); };
    tracker = std::make_unique<HotplugTracker>(options, events, readers);
    // What PerfEventArray::create does: a ring for every candidate online now.
    std::vector<std::unique_ptr<CpuRing>> initial;
    const CpuSet online_at_start = CpuSet(all).minus(CpuSet(offline));
    for (unsigned cpu : online_at_start.cpus()) {
      auto ring = events.open_ring(cpu);
      if (!ring) throw std::runtime_error(ring.error().message());
      initial.push_back(std::move(*ring));
    }
    journal.clear();
    tracker->deal_initial(std::move(initial));
  }

  // The journal since the last call.
  Lines take_journal() { return std::exchange(journal, {}); }
};

::testing::AssertionResult Logged(const Lines& log, const std::string& needle) {
  for (const auto& line : log) {
    if (line.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  }
  ::testing::AssertionResult failure = ::testing::AssertionFailure();
  failure << "no log line contains \"" << needle << "\"; the log:";
  for (const auto& line : log) failure << "\n  " << line;
  return failure;
}

TEST(HotplugTracker, DealsTheInitialRingsRoundRobin) {
  Rig rig(5, 2);
  EXPECT_EQ(rig.take_journal(), (Lines{"adopt 0 on reader 0", "adopt 1 on reader 1", "adopt 2 on reader 0",
                                       "adopt 3 on reader 1", "adopt 4 on reader 0"}));
  EXPECT_EQ(rig.tracker->attached(), CpuSet({0, 1, 2, 3, 4}));
  EXPECT_TRUE(rig.log.empty());
}

TEST(HotplugTracker, NothingChangesWhileEveryCpuStaysOnlineWithALiveEvent) {
  Rig rig(4, 2);
  rig.take_journal();
  rig.tracker->check();
  rig.tracker->check();
  EXPECT_EQ(rig.take_journal(), Lines{});
  EXPECT_EQ(rig.events.liveness_asked(), (std::vector<unsigned>{0, 1, 2, 3, 0, 1, 2, 3}));
  EXPECT_TRUE(rig.log.empty());
}

TEST(HotplugTracker, OfflineCpuHasItsSlotClearedBeforeItsReaderRetiresTheRing) {
  Rig rig(4, 2);
  rig.take_journal();
  rig.sysfs.set_online(1, false);
  rig.events.stop_events_of(1);
  rig.tracker->check();
  EXPECT_EQ(rig.take_journal(), (Lines{"clear_slot 1", "retire 1 on reader 1"}));
  EXPECT_EQ(rig.tracker->attached(), CpuSet({0, 2, 3}));
  EXPECT_TRUE(Logged(rig.log, "CPU 1 went offline: its ring is drained and closed"));

  // Still offline: nothing more to do, and its old event is never asked about again.
  rig.tracker->check();
  EXPECT_EQ(rig.take_journal(), Lines{});
  EXPECT_EQ(std::count(rig.events.liveness_asked().begin(), rig.events.liveness_asked().end(), 1u), 0);
}

TEST(HotplugTracker, CpuThatComesOnlineGetsARingOnTheReaderWithFewestCpus) {
  Rig rig(4, 2, /*offline=*/{3});  // reader 0: CPUs 0 and 2, reader 1: CPU 1
  rig.take_journal();
  rig.tracker->check();
  EXPECT_EQ(rig.take_journal(), Lines{}) << "an offline CPU is not opened";
  rig.sysfs.set_online(3, true);
  rig.tracker->check();
  EXPECT_EQ(rig.take_journal(), (Lines{"open_ring 3", "adopt 3 on reader 1"}));
  EXPECT_EQ(rig.tracker->attached(), CpuSet({0, 1, 2, 3}));
  EXPECT_EQ(rig.readers.cpus_of(1), (std::set<unsigned>{1, 3}));
  EXPECT_TRUE(Logged(rig.log, "CPU 3 is online: ring opened"));
}

TEST(HotplugTracker, CpuBackOnlineReturnsToTheReaderThatClosedItsOldRing) {
  Rig rig(3, 2);  // reader 0: CPUs 0 and 2, reader 1: CPU 1
  rig.take_journal();
  for (unsigned cpu : {0u, 1u, 2u}) {
    rig.sysfs.set_online(cpu, false);
    rig.events.stop_events_of(cpu);
  }
  rig.tracker->check();
  rig.take_journal();
  // Both readers are empty now; the fewest-CPUs rule alone would put CPU 1 on reader 0.
  rig.sysfs.set_online(1, true);
  rig.sysfs.set_online(2, true);
  rig.tracker->check();
  EXPECT_EQ(rig.take_journal(), (Lines{"open_ring 1", "adopt 1 on reader 1", "open_ring 2", "adopt 2 on reader 0"}));
}

// The kernel took the old event off the CPU for good when it went offline; the CPU is online again at the
// next check, so only the event's state tells. The replacement goes to the same reader, queued after the
// retire, so the old ring is closed before the new one is watched.
TEST(HotplugTracker, OfflineAndBackBetweenTwoChecksReplacesTheStoppedEventOnTheSameReader) {
  Rig rig(4, 2);
  rig.take_journal();
  rig.sysfs.set_online(2, false);
  rig.events.stop_events_of(2);
  rig.sysfs.set_online(2, true);
  rig.tracker->check();
  EXPECT_EQ(rig.take_journal(),
            (Lines{"clear_slot 2", "retire 2 on reader 0", "open_ring 2", "adopt 2 on reader 0"}));
  EXPECT_EQ(rig.tracker->attached(), CpuSet({0, 1, 2, 3}));
  EXPECT_TRUE(Logged(rig.log, "CPU 2 went offline and came back since the last check"));
  EXPECT_TRUE(Logged(rig.log, "CPU 2 is online: ring opened"));

  // The new event is live: the next check leaves it alone.
  rig.tracker->check();
  EXPECT_EQ(rig.take_journal(), Lines{});
}

// The tracker cannot dup the new event's fd (EMFILE): it could never check that event, so it must not keep
// the CPU. The slot is cleared, the ring goes to a reader only to be drained once and closed, the CPU is not
// attached, the log says so, and the next check opens it again.
TEST(HotplugTracker, FailingDupOfANewEventReleasesTheSlotAndOwnership) {
  Rig rig(4, 2, /*offline=*/{3});
  rig.take_journal();
  rig.sysfs.set_online(3, true);
  rig.events.fail_next_dups(1);
  rig.tracker->check();
  EXPECT_EQ(rig.take_journal(), (Lines{"open_ring 3", "clear_slot 3", "close 3 on reader 1"}));
  EXPECT_EQ(rig.tracker->attached(), CpuSet({0, 1, 2}));
  EXPECT_TRUE(Logged(rig.log, "CPU 3: cannot keep a fd on its event to check it later (dup of its event fd: "
                              "Too many open files): its map slot is cleared and its ring drained once and "
                              "closed; the next hotplug check opens a new one"));
  EXPECT_FALSE(Logged(rig.log, "CPU 3 is online"));

  rig.tracker->check();
  EXPECT_EQ(rig.take_journal(), (Lines{"open_ring 3", "adopt 3 on reader 1"}));
  EXPECT_EQ(rig.tracker->attached(), CpuSet({0, 1, 2, 3}));
  EXPECT_TRUE(Logged(rig.log, "CPU 3 is online: ring opened"));
  // CPU 3's event was first asked about only after the second ring was handed over.
  EXPECT_EQ(std::count(rig.events.liveness_asked().begin(), rig.events.liveness_asked().end(), 3u), 0);
  rig.tracker->check();
  EXPECT_EQ(rig.take_journal(), Lines{});
  EXPECT_EQ(std::count(rig.events.liveness_asked().begin(), rig.events.liveness_asked().end(), 3u), 1);
}

TEST(HotplugTracker, FailingDupOfAnInitialRingReleasesItAndTheNextCheckRetries) {
  Lines journal, log;
  FakeSysfs sysfs(2);
  FakeEvents events(journal);
  FakeReaders readers(journal);
  HotplugTracker::Options options;
  options.candidates = CpuSet({0, 1});
  options.sysfs_cpu_dir = sysfs.dir();
  options.readers = 2;
  options.log = [&](const std::string& line) { log.push_back(line); };
  HotplugTracker tracker(options, events, readers);
  std::vector<std::unique_ptr<CpuRing>> initial;
  for (unsigned cpu : {0u, 1u}) initial.push_back(std::move(*events.open_ring(cpu)));
  journal.clear();
  events.fail_next_dups(1);
  tracker.deal_initial(std::move(initial));
  EXPECT_EQ(journal, (Lines{"clear_slot 0", "close 0 on reader 0", "adopt 1 on reader 1"}));
  EXPECT_EQ(tracker.attached(), CpuSet({1}));
  EXPECT_TRUE(Logged(log, "CPU 0: cannot keep a fd on its event"));
  journal.clear();
  tracker.check();
  EXPECT_EQ(journal, (Lines{"open_ring 0", "adopt 0 on reader 0"}));
}

TEST(HotplugTracker, RepeatedFailureIsLoggedOnceAndARaceWithOfflineNotAtAll) {
  Rig rig(4, 2, /*offline=*/{2, 3});
  rig.take_journal();
  rig.sysfs.set_online(2, true);
  rig.sysfs.set_online(3, true);
  rig.events.fail_opens(2, EPERM);
  rig.events.fail_opens(3, ENODEV);  // went offline again between the read of `online` and the open
  for (int i = 0; i < 3; ++i) rig.tracker->check();
  EXPECT_EQ(rig.log, (Lines{"opening the BPF output perf event on CPU 2: Operation not permitted"}));
  EXPECT_EQ(rig.tracker->attached(), CpuSet({0, 1}));

  rig.events.fail_opens(2, 0);
  rig.events.fail_opens(3, 0);
  rig.take_journal();
  rig.tracker->check();
  EXPECT_EQ(rig.take_journal(), (Lines{"open_ring 2", "adopt 2 on reader 0", "open_ring 3", "adopt 3 on reader 1"}));
}

TEST(HotplugTracker, UnreadableOnlineListIsLoggedAndChangesNothing) {
  Rig rig(2, 1);
  rig.take_journal();
  rig.sysfs.remove_online_list();
  rig.tracker->check();
  EXPECT_EQ(rig.take_journal(), Lines{});
  EXPECT_EQ(rig.log, (Lines{"hotplug: reading " + rig.sysfs.dir() + "/online: No such file or directory"}));
  EXPECT_EQ(rig.tracker->attached(), CpuSet({0, 1}));
}

TEST(HotplugTracker, OnlyCandidatesGetRings) {
  Lines journal, log;
  FakeSysfs sysfs(4);
  sysfs.set_online(3, false);
  FakeEvents events(journal);
  FakeReaders readers(journal);
  HotplugTracker::Options options;
  options.candidates = CpuSet({1, 3});  // -C 1,3
  options.sysfs_cpu_dir = sysfs.dir();
  options.readers = 1;
  HotplugTracker tracker(options, events, readers);
  std::vector<std::unique_ptr<CpuRing>> initial;
  initial.push_back(std::move(*events.open_ring(1)));
  tracker.deal_initial(std::move(initial));
  journal.clear();
  tracker.check();
  EXPECT_EQ(journal, Lines{});
  sysfs.set_online(3, true);
  tracker.check();
  EXPECT_EQ(journal, (Lines{"open_ring 3", "adopt 3 on reader 0"}));
  EXPECT_EQ(tracker.attached(), CpuSet({1, 3}));
}

TEST(HotplugTracker, WithoutHotplugItKeepsNoFdOnTheEventsAndNeverChecks) {
  Rig rig(2, 1, {}, /*follow=*/false);
  EXPECT_EQ(rig.take_journal(), (Lines{"adopt 0 on reader 0", "adopt 1 on reader 0"}));
  rig.events.fail_next_dups(2);  // would fail if it tried
  rig.sysfs.set_online(1, false);
  rig.tracker->check();
  EXPECT_EQ(rig.take_journal(), Lines{});
  EXPECT_TRUE(rig.events.liveness_asked().empty());
  EXPECT_EQ(rig.tracker->attached(), CpuSet({0, 1}));
}

TEST(HotplugTracker, AfterStopNothingIsCheckedOrOpened) {
  Rig rig(2, 1, /*offline=*/{1});
  rig.take_journal();
  rig.tracker->stop();
  EXPECT_EQ(rig.tracker->attached(), CpuSet());
  rig.sysfs.set_online(1, true);
  rig.sysfs.set_online(0, false);
  rig.tracker->check();
  EXPECT_EQ(rig.take_journal(), Lines{});
  EXPECT_TRUE(rig.events.liveness_asked().empty());
}

}  // namespace
}  // namespace perfstream
