// What the capturing commands (record, and later stream and bench) share: their probe/CPU/ring flags, and
// the trace header and trailer that describe a capture.
#pragma once

#include <string>
#include <vector>

#include "collector/cli/options.hpp"
#include "collector/read/capture_session.hpp"
#include "perfstream.pb.h"

namespace perfstream::cli {

// --probe, --object, --map, --set, --event-type, --btf, -C/--cpus, -m/--pages, --wakeup, --flush-interval, -p/--pid, --threads.
void add_capture_flags(ArgParser& parser);
Result<CaptureOptions> capture_options_from(const ArgParser& parser, const std::string& command);

v1::TraceHeader make_trace_header(CaptureSession& session, const std::vector<std::string>& command);
v1::TraceTrailer make_trace_trailer(CaptureSession& session);

std::string join(const std::vector<std::string>& parts, const std::string& separator);

}  // namespace perfstream::cli
