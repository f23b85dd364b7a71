#include "collector/transport/stream_protocol.hpp"

namespace perfstream {

std::string encode_control_frame(FrameType type, const google::protobuf::MessageLite& message) {
  std::string payload = message.SerializeAsString();
  std::string frame;
  append_frame_header(frame, FrameHeader{type, kEncodingNone, static_cast<std::uint32_t>(payload.size())});
  frame += payload;
  return frame;
}

std::string data_frame_header(FrameType type, std::size_t payload_length) {
  std::string header;
  append_frame_header(header, FrameHeader{type, kEncodingZstd, static_cast<std::uint32_t>(payload_length)});
  return header;
}

}  // namespace perfstream
