// A sink's recording files bounded (issue 16, item 3): OpenFileLimiter's order, CollectorIdsPerPeer's
// cap, and RecordingStore closing idle files, at the cap and by time, reopening them where they ended
// (resume exact, duplicates dropped), and expiring recordings with a trailer that says so. Real files, a
// fake clock.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <string>

#include "collector/format/trace_reader.hpp"
#include "collector/transport/collector_ids_per_peer.hpp"
#include "collector/transport/open_file_limiter.hpp"
#include "collector/transport/recording_store.hpp"
#include "testing/sink_peer.hpp"
#include "testing/synthetic_stream.hpp"
#include "testing/temp_dir.hpp"

namespace perfstream {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::SyntheticSource;
using testing::TempDir;
using testing::open_files_under;

TEST(OpenFileLimiter, TheVictimIsTheFileIdleLongestAndNeverOneInUse) {
  OpenFileLimiter files(3);
  const Clock::time_point t0{};
  files.opened("a", 1, t0);
  files.opened("b", 1, t0);
  files.opened("c", 1, t0);
  EXPECT_TRUE(files.full());
  EXPECT_EQ(files.victim(), std::nullopt) << "every file is in use";
  files.detach("b", t0 + 1s);
  files.detach("a", t0 + 2s);
  EXPECT_EQ(files.victim(), "b");
  files.attach("b");  // its collector is back
  EXPECT_EQ(files.victim(), "a");
  files.detach("b", t0 + 3s);
  EXPECT_EQ(files.victim(), "a");
  files.closed("a");
  EXPECT_FALSE(files.full());
  EXPECT_EQ(files.victim(), "b");
  EXPECT_EQ(files.open_files(), 2u);
  EXPECT_EQ(files.idle_files(), 1u);
}

TEST(OpenFileLimiter, IdleBeforeListsTheFilesIdleSinceTheCutoffOrEarlierLongestFirst) {
  OpenFileLimiter files(0);  // no cap
  const Clock::time_point t0{};
  for (int i = 0; i < 5; ++i) files.opened("f" + std::to_string(i), 1, t0);
  files.detach("f3", t0 + 1s);
  files.detach("f1", t0 + 2s);
  files.detach("f4", t0 + 3s);
  files.opened("new", 0, t0 + 4s);  // opened without a connection: idle from the start
  EXPECT_FALSE(files.full());
  EXPECT_EQ(files.idle_before(t0 + 2500ms), (std::vector<std::string>{"f3", "f1"}));
  EXPECT_EQ(files.idle_before(t0 + 10s), (std::vector<std::string>{"f3", "f1", "f4", "new"}));
  EXPECT_EQ(files.idle_before(t0 + 1s), (std::vector<std::string>{"f3"})) << "idle since exactly the cutoff";
  EXPECT_TRUE(files.idle_before(t0 + 999ms).empty());
  files.detach("f0", t0 + 5s);
  files.detach("f0", t0 + 6s);  // a second detach without an attach changes nothing
  EXPECT_EQ(files.idle_files(), 5u);
}

TEST(CollectorIdsPerPeer, NewIdsPastTheCapAreRefusedKnownOnesNever) {
  using A = CollectorIdsPerPeer::Admission;
  CollectorIdsPerPeer ids(2);
  EXPECT_EQ(ids.admit("10.0.0.1", "a"), A::Charged);
  EXPECT_EQ(ids.admit("10.0.0.1", "b"), A::Charged);
  EXPECT_EQ(ids.admit("10.0.0.1", "c"), A::Refused);
  EXPECT_EQ(ids.admit("10.0.0.1", "a"), A::Known);
  EXPECT_EQ(ids.admit("10.0.0.2", "b"), A::Known) << "a collector that moved is still known";
  EXPECT_EQ(ids.admit("10.0.0.2", "c"), A::Charged) << "another address has its own cap";
  EXPECT_EQ(ids.charged("10.0.0.1"), 2u);
  ids.release("a");
  ids.release("a");  // released twice: counted once
  EXPECT_EQ(ids.charged("10.0.0.1"), 1u);
  EXPECT_EQ(ids.admit("10.0.0.1", "d"), A::Charged);
  EXPECT_EQ(ids.admit("", "anything"), A::Known) << "unix sockets are not capped";
  EXPECT_EQ(ids.charged(""), 0u);
}

// A store on a real directory whose clock the test moves.
class StoreWithClock {
 public:
  explicit StoreWithClock(const std::string& dir, RecordingFileLimits limits) {
    RecordingStoreOptions o;
    o.dir = dir;
    o.files = limits;
    o.log = log_.sink();
    o.now = [this] { return now_; };
    auto s = RecordingStore::open(o);
    if (!s) throw std::runtime_error(s.error().message());
    store_ = std::move(*s);
  }
  RecordingStore& operator*() { return *store_; }
  RecordingStore* operator->() { return store_.get(); }
  void advance(std::chrono::milliseconds by) { now_ += by; }
  void reset() { store_.reset(); }
  testing::LogLines& log() { return log_; }

 private:
  testing::LogLines log_;
  Clock::time_point now_{std::chrono::hours(1)};
  std::unique_ptr<RecordingStore> store_;
};

v1::TraceHeader header_of(const std::string& id) { return testing::synthetic_header(id + "-recording"); }

// Stores batches [from, to) of `source` in `r`; each must be new unless below `duplicates_below`.
void store_batches(Recording& r, SyntheticSource& source, std::uint64_t from, std::uint64_t to,
                   std::uint64_t duplicates_below = 0) {
  for (std::uint64_t s = from; s < to; ++s) {
    EncodedBatch b = source.batch(s);
    const std::string message = source.message(s);
    auto view = BatchView::parse(message);
    ASSERT_TRUE(view);
    auto stored = r.store(b.compressed, view->batch());
    ASSERT_TRUE(stored) << "batch " << s << ": " << stored.error().message();
    EXPECT_EQ(*stored, s < duplicates_below ? Recording::Stored::Duplicate : Recording::Stored::New) << s;
  }
}

TEST(RecordingFiles, AnIdleFileClosedAndReopenedResumesExactlyAndDropsDuplicates) {
  TempDir dir;
  StoreWithClock store(dir.path(), RecordingFileLimits{0, 10s, 0ms});
  SyntheticSource source(1, 16);
  auto r = store->connect("one", header_of("one"));
  ASSERT_TRUE(r) << r.error().message();
  store_batches(**r, source, 0, 10);
  store.advance(60s);
  store->sweep();
  EXPECT_EQ(store->file_stats().closed_idle, 0u) << "a file with a live connection stays open";
  EXPECT_EQ(open_files_under(dir.path()), 1u);

  store->disconnect(*r);
  store.advance(9s);
  store->sweep();
  EXPECT_EQ(store->file_stats().open, 1u) << "not idle long enough yet";
  store.advance(1s);
  store->sweep();
  EXPECT_EQ(store->file_stats().open, 0u);
  EXPECT_EQ(store->file_stats().closed_idle, 1u);
  EXPECT_EQ(open_files_under(dir.path()), 0u);
  EXPECT_EQ((*r)->summary().next_sequence, 10u);

  // The collector is back, with a new hello, and resends from 5 (acks it never saw).
  auto again = store->connect("one", header_of("one"));
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->get(), r->get()) << "the same recording, in memory all along";
  EXPECT_EQ(store->file_stats().reopened, 1u);
  EXPECT_EQ((*again)->next_sequence(), 10u);
  store_batches(**again, source, 5, 20, 10);
  v1::TraceTrailer trailer;
  ASSERT_TRUE(store->finish(*again, trailer));
  store->disconnect(*again);
  EXPECT_EQ(store->file_stats().open, 0u);

  const auto s = (*again)->summary();
  EXPECT_EQ(s.batches, 20u);
  EXPECT_EQ(s.duplicates, 5u);
  auto stored = testing::read_recording(s.file);
  EXPECT_EQ(stored.files.size(), 1u) << "reopened in place: no new piece";
  EXPECT_EQ(stored.headers.size(), 1u);
  EXPECT_TRUE(stored.damage.empty()) << stored.damage.front();
  ASSERT_EQ(stored.trailers.size(), 1u);
  EXPECT_EQ(stored.trailers[0].batches(), 20u) << "the trailer counts the batches before the reopening too";
  EXPECT_EQ(stored.trailers[0].records(), 20u * 16);
  EXPECT_TRUE(testing::holds_exactly_once(stored, source, 20));
}

TEST(RecordingFiles, AtTheCapTheFileIdleLongestIsClosedAndAFileInUseNever) {
  TempDir dir;
  StoreWithClock store(dir.path(), RecordingFileLimits{3, 0ms, 0ms});
  std::map<std::string, std::shared_ptr<Recording>> live;
  for (const char* id : {"a", "b", "c"}) {
    auto r = store->connect(id, header_of(id));
    ASSERT_TRUE(r) << r.error().message();
    live[id] = *r;
    store.advance(1s);
  }
  // Every file in use: a fourth collector is refused, with the cap named, and gets no file.
  auto refused = store->connect("d", header_of("d"));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().errnum(), EMFILE);
  EXPECT_EQ(refused.error().message(),
            "no file for collector d: all 3 recording files the sink may keep open (--max-open-files 3) have a "
            "live connection");
  EXPECT_FALSE(std::filesystem::exists(dir.file("d.data")));
  EXPECT_EQ(store->file_stats().refused_full, 1u);

  store->disconnect(live["c"]);
  store.advance(1s);
  store->disconnect(live["a"]);
  auto d = store->connect("d", header_of("d"));
  ASSERT_TRUE(d) << d.error().message();
  EXPECT_EQ(store->file_stats().closed_for_room, 1u);
  EXPECT_EQ(open_files_under(dir.path()), 3u);
  // c went idle first: its file was closed; a is still open.
  auto c = store->connect("c", header_of("c"));
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(store->file_stats().closed_for_room, 2u) << "a's file made room for c's";
  EXPECT_EQ(store->file_stats().reopened, 1u);
  EXPECT_EQ(store->file_stats().open, 3u);
  EXPECT_EQ(store->file_stats().idle, 0u);
  EXPECT_EQ(open_files_under(dir.path()), 3u);
}

TEST(RecordingFiles, ARecordingAloneLongerThanExpireGetsATrailerThatSaysSoAndItsCollectorIsRefused) {
  TempDir dir;
  StoreWithClock store(dir.path(), RecordingFileLimits{0, 1s, 30s});
  SyntheticSource source(2, 8);
  auto r = store->connect("gone", header_of("gone"));
  ASSERT_TRUE(r);
  store_batches(**r, source, 0, 7);
  store->disconnect(*r);
  store.advance(2s);
  EXPECT_TRUE(store->sweep().empty());
  EXPECT_EQ(store->file_stats().open, 0u) << "closed when idle, before it expires";
  store.advance(28s);
  const auto expired = store->sweep();
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_TRUE(expired[0].expired);
  EXPECT_TRUE(expired[0].finished);
  EXPECT_EQ(expired[0].batches, 7u);
  ASSERT_NE(store->find("gone"), nullptr);
  EXPECT_TRUE(store->find("gone")->summary().expired);
  EXPECT_EQ(store->file_stats().expired, 1u);
  EXPECT_EQ(store->file_stats().open, 0u);

  auto stored = testing::read_recording(dir.file("gone.data"));
  ASSERT_EQ(stored.trailers.size(), 1u);
  EXPECT_EQ(stored.trailers[0].expired_after_ns(), std::uint64_t{30'000'000'000});
  EXPECT_EQ(stored.trailers[0].batches(), 7u);
  EXPECT_FALSE(stored.trailers[0].rotated());
  EXPECT_TRUE(testing::holds_exactly_once(stored, source, 7));

  auto back = store->connect("gone", header_of("gone"));
  ASSERT_FALSE(back);
  EXPECT_EQ(back.error().errnum(), ETIMEDOUT);
  EXPECT_NE(back.error().message().find("expired"), std::string::npos) << back.error().message();
  // A store opened later on the directory sees the expiry in the trailer.
  store.reset();
  StoreWithClock later(dir.path(), RecordingFileLimits{});
  auto after_restart = later->connect("gone", header_of("gone"));
  ASSERT_FALSE(after_restart);
  EXPECT_EQ(after_restart.error().errnum(), ETIMEDOUT);
}

TEST(RecordingFiles, ARecordingWithALiveConnectionNeverExpires) {
  TempDir dir;
  StoreWithClock store(dir.path(), RecordingFileLimits{0, 0ms, 1s});
  auto r = store->connect("here", header_of("here"));
  ASSERT_TRUE(r);
  store.advance(1h);
  EXPECT_TRUE(store->sweep().empty());
  EXPECT_FALSE((*r)->summary().finished);
}

TEST(RecordingFiles, AStoreStoppedWhileAFileIsClosedLeavesItResumable) {
  TempDir dir;
  SyntheticSource source(3, 8);
  {
    StoreWithClock store(dir.path(), RecordingFileLimits{0, 1s, 0ms});
    auto r = store->connect("x", header_of("x"));
    ASSERT_TRUE(r);
    store_batches(**r, source, 0, 4);
    store->disconnect(*r);
    store.advance(2s);
    store->sweep();
    ASSERT_EQ(store->file_stats().open, 0u);
  }
  StoreWithClock store(dir.path(), RecordingFileLimits{});
  auto r = store->connect("x", header_of("x"));
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)->next_sequence(), 4u);
  store_batches(**r, source, 2, 6, 4);
  ASSERT_TRUE(store->finish(*r, v1::TraceTrailer()));
  EXPECT_TRUE(testing::holds_exactly_once(testing::read_recording(dir.file("x.data")), source, 6));
}

// Both halves of issue 16 together: a write that fails (here RLIMIT_FSIZE: EFBIG) breaks the recording,
// its file stops counting against --max-open-files once its connection goes, and its next connect() scans
// its files again and reopens it in place (the same Recording), making room at the cap then.
TEST(RecordingFiles, ABrokenRecordingCountsAsClosedAndIsScannedAgainInPlaceAtItsNextConnect) {
  TempDir dir;
  StoreWithClock store(dir.path(), RecordingFileLimits{2, 0ms, 0ms});
  SyntheticSource source(3, 16);
  auto a = store->connect("a", header_of("a"));
  ASSERT_TRUE(a) << a.error().message();
  store_batches(**a, source, 0, 10);
  auto b = store->connect("b", header_of("b"));
  ASSERT_TRUE(b) << b.error().message();

  const auto path = (*a)->summary().file;
  const auto size = std::filesystem::file_size(path);
  struct rlimit old_limit {};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old_limit;
  small.rlim_cur = size;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  EncodedBatch batch = source.batch(10);
  const std::string message = source.message(10);
  auto view = BatchView::parse(message);
  ASSERT_TRUE(view);
  auto failed = (*a)->store(batch.compressed, view->batch());
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old_limit), 0);
  std::signal(SIGXFSZ, old_handler);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().errnum(), EFBIG) << failed.error().message();
  EXPECT_TRUE((*a)->broken());
  EXPECT_EQ(std::filesystem::file_size(path), size) << "cut back to its last complete frame";
  EXPECT_TRUE(store->needs_scan("a"));
  EXPECT_FALSE(store->needs_scan("b"));
  auto refused = (*a)->store(batch.compressed, view->batch());
  ASSERT_FALSE(refused) << "nothing more is stored in a broken recording";

  store->disconnect(*a);
  EXPECT_EQ(store->file_stats().open, 1u) << "a broken recording's file is closed";
  auto c = store->connect("c", header_of("c"));
  ASSERT_TRUE(c) << c.error().message();
  store->disconnect(*c);

  // The collector is back: scanned again, in place, and c's idle file closed for it.
  auto again = store->connect("a", header_of("a"));
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->get(), a->get()) << "the same recording, brought back in place";
  EXPECT_FALSE((*again)->broken());
  EXPECT_EQ((*again)->next_sequence(), 10u);
  EXPECT_EQ(store->file_stats().open, 2u);
  EXPECT_EQ(store->file_stats().closed_for_room, 1u);
  EXPECT_EQ(store->file_stats().reopened, 1u);
  store_batches(**again, source, 5, 20, 10);
  ASSERT_TRUE(store->finish(*again, v1::TraceTrailer{}));
  store->disconnect(*again);
  const auto s = (*again)->summary();
  EXPECT_EQ(s.batches, 20u);
  EXPECT_EQ(s.duplicates, 5u);
  auto stored = testing::read_recording(s.file);
  EXPECT_EQ(stored.files.size(), 1u) << "reopened in place: no new piece";
  EXPECT_EQ(stored.headers.size(), 1u);
  EXPECT_TRUE(stored.damage.empty()) << stored.damage.front();
  ASSERT_EQ(stored.trailers.size(), 1u);
  EXPECT_EQ(stored.trailers[0].batches(), 20u);
  EXPECT_TRUE(testing::holds_exactly_once(stored, source, 20));
  store->disconnect(*b);
}

}  // namespace
}  // namespace perfstream
