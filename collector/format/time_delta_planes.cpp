#include "collector/format/time_delta_planes.hpp"

#include <cstring>

#include "collector/format/protobuf_wire.hpp"

namespace perfstream {

void TimeDeltaPlanesWriter::append_planes(std::string& out) const {
  const std::size_t n = count();
  const std::size_t w = width();
  const std::size_t at = out.size();
  out.resize(at + n * w);
  char* planes = out.data() + at;
  const char* values = values_.view().data();
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t z;
    std::memcpy(&z, values + i * 8, 8);
    for (std::size_t k = 0; k < w; ++k) planes[k * n + i] = static_cast<char>(z >> (8 * k));
  }
}

Status read_time_delta_planes(const std::string& batch_name, std::span<const unsigned char> planes, std::size_t n,
                              std::size_t varint_deltas, std::vector<std::uint64_t>& deltas) {
  if (varint_deltas != 0) return Error(batch_name + ": time_deltas and time_delta_planes are both set");
  const std::size_t w = n == 0 ? 0 : planes.size() / n;
  if (n == 0 || w == 0 || w > 8 || planes.size() != n * w) {
    return Error(batch_name + ": time_delta_planes has " + std::to_string(planes.size()) + " bytes for " +
                 std::to_string(n) + " records (1 to 8 bytes a record)");
  }
  deltas.assign(n, 0);
  for (std::size_t k = 0; k < w; ++k) {
    const unsigned char* plane = planes.data() + k * n;
    for (std::size_t i = 0; i < n; ++i) deltas[i] |= std::uint64_t{plane[i]} << (8 * k);
  }
  for (auto& z : deltas) z = static_cast<std::uint64_t>(wire::unzigzag(z));
  return {};
}

}  // namespace perfstream
