// What `dump` and `stats` tell the user about a recording they read: damage, integrity problems, records
// that came out of time order, one line each on stderr, and the options both commands share for reading.
#pragma once

#include <iosfwd>
#include <string>

#include "collector/cli/options.hpp"
#include "collector/recording/recording_reader.hpp"
#include "collector/recording/time_ordered_reader.hpp"

namespace perfstream::cli {

// Adds --skip-corrupt, --max-batch-bytes and --max-batch-records.
void add_reading_flags(ArgParser& parser);
// Reads them back; false (and a message on err) for a bad value.
bool reading_options(const ArgParser& parser, const std::string& command, recording::RecordingOptions& out,
                     std::ostream& err);

// Tells the user about the recording's damage and problems on `err`, one line each, prefixed
// "perfstream <command>: ". A cut is a warning; a corrupt frame that stopped reading (skip_corrupt not
// set), a sequence or totals problem, and (with `merge`) records handed out of time order because the
// look-ahead window was full are errors; records that passed the collector's watermark margin are a warning.
// True when there was such an error (the command exits 1).
bool report_reading(const std::string& command, const recording::RecordingReader& reader, bool skip_corrupt,
                    const recording::TimeOrderedReader* merge, std::size_t window_bytes, std::ostream& err);

}  // namespace perfstream::cli
