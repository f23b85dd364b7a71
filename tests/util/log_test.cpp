// Log: whole lines from many threads at once, and a rate limit that counts every line it holds back, on a
// fake clock.
#include "collector/util/log.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace perfstream {
namespace {

using namespace std::chrono_literals;

// A clock that moves only when told to.
class FakeClock {
 public:
  Log::Clock::time_point now() const { return Log::Clock::time_point(Log::Clock::duration(ticks_.load())); }
  void advance(std::chrono::milliseconds d) { ticks_ += std::chrono::duration_cast<Log::Clock::duration>(d).count(); }
  Log::Options options(std::chrono::milliseconds interval = 10s) {
    return Log::Options{interval, [this] { return now(); }};
  }

 private:
  std::atomic<Log::Clock::rep> ticks_{std::chrono::duration_cast<Log::Clock::duration>(1h).count()};
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(Log, LinesFromManyThreadsAtOnceStayWhole) {
  std::ostringstream out;
  constexpr int kThreads = 8, kLines = 2000;
  {
    Log log(out, "perfstream test: ");
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&log, t] {
        const std::string body(40 + t * 13, static_cast<char>('a' + t));  // lines of different lengths
        for (int i = 0; i < kLines; ++i) log.line("thread " + std::to_string(t) + " line " + std::to_string(i) + " " + body);
      });
    }
    for (auto& t : threads) t.join();
  }
  const auto lines = lines_of(out.str());
  ASSERT_EQ(lines.size(), static_cast<std::size_t>(kThreads * kLines));
  std::map<int, int> next;  // per thread, the line expected next: each thread's lines keep their order
  for (const auto& line : lines) {
    int t = -1, i = -1;
    char body[512] = {};
    ASSERT_EQ(std::sscanf(line.c_str(), "perfstream test: thread %d line %d %511s", &t, &i, body), 3) << line;
    ASSERT_GE(t, 0);
    ASSERT_LT(t, kThreads);
    EXPECT_EQ(i, next[t]++) << line;
    EXPECT_EQ(std::string(body), std::string(40 + t * 13, static_cast<char>('a' + t))) << line;
  }
}

TEST(Log, WritesTheFirstLineOfAKeyAndCountsTheRestUntilTheIntervalEnds) {
  FakeClock clock;
  std::vector<std::string> written;
  Log log([&](const std::string& text) { written.push_back(text); }, clock.options());
  for (int i = 0; i < 38; ++i) {
    log.limited("ring", "CPU 3: waiting on its ring: error " + std::to_string(i));
    clock.advance(100ms);  // 3.8 s in all: one interval
  }
  ASSERT_EQ(written, std::vector<std::string>{"CPU 3: waiting on its ring: error 0"});
  log.flush();
  EXPECT_EQ(written.size(), 1u) << "the interval has not ended";
  clock.advance(6200ms);  // exactly 10 s after the first line
  log.flush();
  ASSERT_EQ(written.size(), 2u);
  EXPECT_EQ(written[1], "CPU 3: waiting on its ring: error 37 (37 more like this suppressed in the last 10 s)");
  log.flush();
  EXPECT_EQ(written.size(), 2u) << "one summary per interval";
  log.limited("ring", "CPU 3: waiting on its ring: again");
  EXPECT_EQ(written.back(), "CPU 3: waiting on its ring: again") << "a new interval starts with a written line";
}

TEST(Log, AKeyWithNothingHeldBackEndsWithoutASummary) {
  FakeClock clock;
  std::vector<std::string> written;
  Log log([&](const std::string& text) { written.push_back(text); }, clock.options());
  log.limited("a", "once");
  clock.advance(11s);
  log.flush();
  log.limited("a", "twice");
  EXPECT_EQ(written, (std::vector<std::string>{"once", "twice"}));
}

TEST(Log, KeysAreLimitedApartAndSummariesComeWithTheNextLineOfAnyKind) {
  FakeClock clock;
  std::vector<std::string> written;
  Log log([&](const std::string& text) { written.push_back(text); }, clock.options(2s));
  for (int i = 0; i < 5; ++i) log.limited("a", "a" + std::to_string(i));
  for (int i = 0; i < 3; ++i) log.limited("b", "b" + std::to_string(i));
  log.line("never limited");
  log.line("never limited");
  EXPECT_EQ(written, (std::vector<std::string>{"a0", "b0", "never limited", "never limited"}));
  clock.advance(2500ms);
  log.line("later");
  EXPECT_EQ(written, (std::vector<std::string>{"a0", "b0", "never limited", "never limited",
                                               "a4 (4 more like this suppressed in the last 2 s)",
                                               "b2 (2 more like this suppressed in the last 2 s)", "later"}));
}

TEST(Log, TheDestructorWritesTheSummariesStillPending) {
  FakeClock clock;
  std::vector<std::string> written;
  {
    Log log([&](const std::string& text) { written.push_back(text); }, clock.options());
    log.limited("k", "first");
    log.limited("k", "second");
    log.limited("k", "third");
    clock.advance(2500ms);
  }
  EXPECT_EQ(written, (std::vector<std::string>{"first", "third (2 more like this suppressed in the last 2.5 s)"}));
}

TEST(Log, TheRateLimitCountsExactlyUnderConcurrentCallers) {
  FakeClock clock;
  std::ostringstream out;
  constexpr int kThreads = 6, kCalls = 5000;
  {
    Log log(out, "", clock.options());
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&log] {
        for (int i = 0; i < kCalls; ++i) log.limited("same", "busy");
      });
    }
    for (auto& t : threads) t.join();
    clock.advance(10s);
    log.flush();
  }
  EXPECT_EQ(lines_of(out.str()), (std::vector<std::string>{
                                     "busy", "busy (" + std::to_string(kThreads * kCalls - 1) +
                                                 " more like this suppressed in the last 10 s)"}));
}

TEST(Log, RawTextGoesOutAsItIsUnderTheSameLock) {
  std::ostringstream out;
  Log log(out, "me: ");
  log.raw("\r\033[Kstatus");
  log.line("a line");
  EXPECT_EQ(out.str(), "\r\033[Kstatusme: a line\n");
}

}  // namespace
}  // namespace perfstream
