#include "collector/transport/collector_ids_per_peer.hpp"

namespace perfstream {

CollectorIdsPerPeer::Admission CollectorIdsPerPeer::admit(const std::string& address, const std::string& id) {
  if (address.empty()) return Admission::Known;
  std::lock_guard<std::mutex> lock(mutex_);
  if (address_of_.count(id) != 0) return Admission::Known;
  std::size_t& n = per_address_[address];
  if (n >= cap_) {
    if (n == 0) per_address_.erase(address);
    return Admission::Refused;
  }
  ++n;
  address_of_.emplace(id, address);
  return Admission::Charged;
}

void CollectorIdsPerPeer::release(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = address_of_.find(id);
  if (it == address_of_.end()) return;
  auto count = per_address_.find(it->second);
  if (count != per_address_.end() && --count->second == 0) per_address_.erase(count);
  address_of_.erase(it);
}

std::size_t CollectorIdsPerPeer::charged(const std::string& address) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = per_address_.find(address);
  return it == per_address_.end() ? 0 : it->second;
}

}  // namespace perfstream
