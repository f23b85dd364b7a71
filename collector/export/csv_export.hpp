// CsvExporter: one event type of a recording as CSV (RFC 4180), in time order, streaming.
//
// The first line names the columns: time_ns, cpu, then the event's fields in its schema's order (from the
// first piece whose header has the event). Then one line per record of that event, with the values as
// recorded, as `dump --json --raw-fields` prints them (no display hints, so a column keeps its type: ret is
// -2, not ENOENT): integers in decimal, strings as decoded (up to their first NUL; a field hinted argv or
// path_argv keeps its NUL-separated strings), bytes as lower-case hex, a field the payload does not reach
// as an empty cell. A cell holding a comma, a double quote, CR or LF is
// quoted, with its double quotes doubled; lines end in CRLF, as RFC 4180 says. Lost notices are not rows
// (stats and dump report them).
#pragma once

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "collector/decode/payload_schema.hpp"
#include "collector/recording/recording_reader.hpp"
#include "collector/recording/time_ordered_reader.hpp"

namespace perfstream::exporter {

// Appends `cell` to `line`, quoted when RFC 4180 needs it.
void append_csv_cell(std::string& line, std::string_view cell);

class CsvExporter {
 public:
  CsvExporter(recording::RecordingReader& reader, const recording::MergeOptions& merge, std::string event,
              std::ostream& out);
  ~CsvExporter();

  // Writes the header line and every record of the event; the number of rows. An error when no piece's
  // header has the event (naming those it has).
  Result<std::uint64_t> run();
  const recording::TimeOrderedReader* merge() const { return merge_.get(); }

 private:
  recording::RecordingReader& reader_;
  recording::MergeOptions merge_options_;
  std::string event_;
  std::ostream& out_;
  std::unique_ptr<recording::TimeOrderedReader> merge_;
};

}  // namespace perfstream::exporter
