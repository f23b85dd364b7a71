// Runs the perfstream binary (or any program) from tests: in the foreground with its output captured, or in
// the background to be signalled later. Children start with SIGINT and SIGTERM at their default action and
// nothing blocked. Test-only.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace perfstream::testing {

struct RunResult {
  int exit_status = -1;  // exit code, or 128 + signal
  std::string out;
  std::string err;
};

// Runs argv to completion; stdout and stderr captured.
RunResult run(const std::vector<std::string>& argv);

class Background {
 public:
  explicit Background(const std::vector<std::string>& argv);
  ~Background();
  pid_t pid() const { return pid_; }
  // Sends `signo` and waits; returns the exit status and the captured output.
  RunResult stop(int signo);
  // Waits for it to exit by itself.
  RunResult wait();
  // True once it has exited (it is not reaped: wait() still gives its status and output).
  bool exited() const;
  // What it has written to stderr (stdout) so far.
  std::string err_so_far() const;
  std::string out_so_far() const;

 private:
  pid_t pid_ = -1;
  std::string out_path_, err_path_;
};

// The perfstream binary under test.
std::string perfstream_binary();

}  // namespace perfstream::testing
