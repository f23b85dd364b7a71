// --user parsing, capability names, and drop_privileges in a forked child (the drop cannot be undone, so it
// never runs in the test process itself). The drop tests need root; they skip without it.
#include "collector/util/privileges.hpp"

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <thread>

// ThreadSanitizer's runtime runs a thread of its own in every process, so a forked child is never the
// single thread drop_privileges insists on.
#if defined(__SANITIZE_THREAD__)
#define PERFSTREAM_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PERFSTREAM_UNDER_TSAN 1
#endif
#endif

namespace perfstream {
namespace {

TEST(ResolveUser, NamesAndNumbersGiveTheSameUser) {
  auto by_name = resolve_user("nobody");
  ASSERT_TRUE(by_name) << by_name.error().message();
  auto by_number = resolve_user(std::to_string(by_name->uid));
  ASSERT_TRUE(by_number) << by_number.error().message();
  EXPECT_EQ(by_name->uid, by_number->uid);
  EXPECT_EQ(by_name->gid, by_number->gid);
  EXPECT_EQ(by_name->name, by_number->name);
  EXPECT_NE(std::find(by_name->groups.begin(), by_name->groups.end(), by_name->gid), by_name->groups.end())
      << "the user's own groups, its primary group among them";
}

TEST(ResolveUser, AGroupCanBeGivenByNameOrNumber) {
  auto u = resolve_user("nobody:0");
  ASSERT_TRUE(u) << u.error().message();
  EXPECT_EQ(u->gid, 0u);
  EXPECT_NE(u->name.find(":root ("), std::string::npos) << u->name;
  auto by_name = resolve_user("nobody:root");
  ASSERT_TRUE(by_name) << by_name.error().message();
  EXPECT_EQ(by_name->gid, 0u);
}

TEST(ResolveUser, AUidWithoutAnEntryNeedsItsGroup) {
  auto alone = resolve_user("4000000");
  ASSERT_FALSE(alone);
  EXPECT_NE(alone.error().message().find("give its group too (--user 4000000:GID)"), std::string::npos)
      << alone.error().message();
  auto with_group = resolve_user("4000000:4000001");
  ASSERT_TRUE(with_group) << with_group.error().message();
  EXPECT_EQ(with_group->uid, 4000000u);
  EXPECT_EQ(with_group->gid, 4000001u);
  EXPECT_TRUE(with_group->groups.empty());
  EXPECT_EQ(with_group->name, "4000000:4000001 (4000000:4000001)");
}

TEST(ResolveUser, UnknownNamesAndBadSpellingsAreClearErrors) {
  auto user = resolve_user("no-such-user-here");
  ASSERT_FALSE(user);
  EXPECT_EQ(user.error().message(), "--user 'no-such-user-here': no such user 'no-such-user-here'");
  auto group = resolve_user("nobody:no-such-group-here");
  ASSERT_FALSE(group);
  EXPECT_NE(group.error().message().find("no such group 'no-such-group-here'"), std::string::npos);
  for (const char* bad : {"", ":0", "nobody:", "4294967295"}) {
    EXPECT_FALSE(resolve_user(bad)) << "'" << bad << "'";
  }
}

TEST(DescribeCaps, NamesInCapabilityOrder) {
  EXPECT_EQ(describe_caps(0), "no capabilities");
  EXPECT_EQ(describe_caps(cap_bit(CAP_BPF) | cap_bit(CAP_PERFMON) | cap_bit(CAP_IPC_LOCK)),
            "CAP_IPC_LOCK,CAP_PERFMON,CAP_BPF");
  EXPECT_EQ(describe_caps(cap_bit(CAP_CHOWN) | cap_bit(45)), "CAP_CHOWN,capability 45");
}

// Runs `body` in a forked child; its non-empty return is the failure, reported back through a pipe.
std::string in_child(const std::function<std::string()>& body) {
  int fds[2];
  if (pipe(fds) != 0) return "pipe failed";
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    const std::string failure = body();
    (void)!write(fds[1], failure.data(), failure.size());
    _exit(0);
  }
  close(fds[1]);
  std::string failure;
  char buf[512];
  for (ssize_t n; (n = read(fds[0], buf, sizeof(buf))) > 0;) failure.append(buf, static_cast<std::size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status)) return "the child died: " + failure;
  return failure;
}

TEST(DropPrivileges, BecomesTheUserWithExactlyTheKeptCapabilities) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
#ifdef PERFSTREAM_UNDER_TSAN
  GTEST_SKIP() << "TSan's runtime thread makes every process multi-threaded; the ASan and plain runs cover this";
#endif
  const std::string failure = in_child([]() -> std::string {
    auto nobody = resolve_user("nobody");
    if (!nobody) return nobody.error().message();
    DropPlan plan;
    plan.user = *nobody;
    plan.keep = cap_bit(CAP_BPF) | cap_bit(CAP_PERFMON);
    auto dropped = drop_privileges(plan);
    if (!dropped) return dropped.error().message();
    auto caps = current_caps();
    if (!caps || caps->effective != plan.keep || caps->permitted != plan.keep || caps->inheritable != 0) {
      return "wrong capability sets";
    }
    if (getuid() != nobody->uid || getgid() != nobody->gid) return "wrong ids";
    if (prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0) != 0 || prctl(PR_CAPBSET_READ, CAP_BPF, 0, 0, 0) != 1) {
      return "wrong bounding set";
    }
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) return "no_new_privs is not set";
    if (dropped->describe().find("running as nobody:") != 0 ||
        dropped->describe().find("with CAP_PERFMON,CAP_BPF (") == std::string::npos) {
      return "describe(): " + dropped->describe();
    }
    return "";
  });
  EXPECT_EQ(failure, "");
}

TEST(DropPrivileges, RefusesWhileAnotherThreadRuns) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
#ifdef PERFSTREAM_UNDER_TSAN
  GTEST_SKIP() << "TSan's runtime thread makes every process multi-threaded; the ASan and plain runs cover this";
#endif
  const std::string failure = in_child([]() -> std::string {
    bool stop = false;
    std::thread other([&] {
      while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) usleep(1000);
    });
    auto dropped = drop_privileges(DropPlan{});
    __atomic_store_n(&stop, true, __ATOMIC_RELEASE);
    other.join();
    if (dropped) return "dropped with two threads";
    if (dropped.error().message().find("2 threads") == std::string::npos) return dropped.error().message();
    auto caps = current_caps();
    if (!caps || (caps->effective & cap_bit(CAP_SYS_ADMIN)) == 0) return "capabilities changed anyway";
    return "";
  });
  EXPECT_EQ(failure, "");
}

}  // namespace
}  // namespace perfstream
