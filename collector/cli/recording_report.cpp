#include "collector/cli/recording_report.hpp"

#include <ostream>

namespace perfstream::cli {

void add_reading_flags(ArgParser& parser) {
  parser.flag("skip-corrupt", 0, "skip corrupt frames and read on")
      .option("max-batch-bytes", 0, "SIZE", "refuse a batch that expands to more than SIZE (default 64M)")
      .option("max-batch-records", 0, "N", "refuse a batch of more than N records (default 1048576)");
}

bool reading_options(const ArgParser& parser, const std::string& command, recording::RecordingOptions& out,
                     std::ostream& err) {
  out.skip_corrupt = parser.has("skip-corrupt");
  if (auto v = parser.value("max-batch-bytes")) {
    auto n = parse_bytes("max-batch-bytes", *v);
    if (!n || *n == 0 || *n > (1ull << 30)) {
      err << "perfstream " << command << ": --max-batch-bytes: " << (n ? "must be between 1 and 1G" : n.error().message())
          << "\n";
      return false;
    }
    out.limits.max_batch_bytes = *n;
  }
  if (auto v = parser.value("max-batch-records")) {
    auto n = parse_count("max-batch-records", *v);
    if (!n || *n == 0 || *n > (1ull << 28)) {
      err << "perfstream " << command << ": --max-batch-records: "
          << (n ? "must be between 1 and 268435456" : n.error().message()) << "\n";
      return false;
    }
    out.limits.max_batch_records = static_cast<std::uint32_t>(*n);
  }
  return true;
}

bool report_reading(const std::string& command, const recording::RecordingReader& reader, bool skip_corrupt,
                    const recording::TimeOrderedReader* merge, std::size_t window_bytes, std::ostream& err) {
  const std::string me = "perfstream " + command + ": ";
  bool failed = false;
  for (const auto& d : reader.damage()) {
    if (d.truncated) {
      err << me << "warning: " << d.path << ": stopped at byte " << d.offset << ": " << d.message
          << "; every complete record before it was read\n";
    } else if (skip_corrupt) {
      err << me << "warning: " << d.path << ": skipped a " << d.message << "; "
          << (d.resumed_at ? "read on from byte " + std::to_string(*d.resumed_at)
                           : std::string("no readable frame follows it"))
          << "\n";
    } else {
      failed = true;
      err << me << d.path << ": " << d.message
          << "; the records before it were read, the rest of the file was not (pass --skip-corrupt to skip "
             "damaged frames and read on)\n";
    }
  }
  // A file cut exactly between two frames reads without damage: only the missing trailer tells.
  const auto& last = reader.pieces().back();
  bool damaged = false;  // then the damage above says why the trailer was not read
  for (const auto& d : reader.damage()) damaged = damaged || d.path == last.path;
  if (!last.trailer && !damaged) {
    err << me << "warning: " << last.path << " has no trailer: the recording did not end cleanly (stopped hard, "
        << "or still being written); every complete batch was read\n";
  }
  // After damage, missing batches are its consequence: said, but the damage decides the exit status.
  const bool explained = !reader.damage().empty();
  for (const auto& p : reader.problems()) {
    failed = failed || !explained;
    err << me << (explained ? "warning: " : "") << p << "\n";
  }
  if (merge != nullptr && merge->late() > 0) {
    if (merge->window_was_full()) {
      // The reader's own limit: an error, the user can raise it.
      failed = true;
      err << me << merge->late() << " records came in after later ones had been printed: reading this recording "
          << "in time order needs a look-ahead window larger than " << (window_bytes >> 20) << " MiB ("
          << (reader.header().batch_watermarks() ? "a reader thread of the collector stalled"
                                                 : "it was written without watermarks")
          << "); they were printed where they came (pass --window with more)\n";
    } else {
      // The collector's margin was passed (a record delayed in the kernel, a vCPU preempted): the records are
      // all there, a few out of place.
      err << me << "warning: " << merge->late() << " records came in later than the collector's watermark "
          << "promised (a record delayed past its margin); they were printed where they came, out of time order\n";
    }
  }
  return failed;
}

}  // namespace perfstream::cli
