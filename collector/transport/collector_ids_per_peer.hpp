// CollectorIdsPerPeer: how many distinct collector ids each peer address has made a sink keep, capped
// (--max-collectors-per-peer), in the spirit of Kafka's max.connections.per.ip.
//
// Contract: an id is charged to the address whose hello first brought it, and stays charged while the sink
// keeps its recording open for more: until the recording finishes (the collector's trailer) or expires
// (--expire), when release() frees its place. admit() of an id already charged always succeeds, from any
// address (a collector that moved, or reconnects through another route, is the same collector), so a cap
// never locks out a collector the sink already knows; only new ids past the cap are refused. The empty
// address (a unix socket: local, and not told apart) is never capped nor charged.
//
// Threads: any; one mutex guards everything.
#pragma once

#include <cstddef>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

namespace perfstream {

class CollectorIdsPerPeer {
 public:
  explicit CollectorIdsPerPeer(std::size_t cap) : cap_(cap) {}

  enum class Admission {
    Known,    // charged already (to this address or another), or not capped (a unix socket)
    Charged,  // new, and now charged to `address`
    Refused,  // new, and `address` has cap ids charged already
  };
  Admission admit(const std::string& address, const std::string& id);
  // `id` no longer counts (its recording finished or expired). Unknown ids are ignored.
  void release(const std::string& id);
  // The ids charged to `address` now.
  std::size_t charged(const std::string& address) const;
  std::size_t cap() const { return cap_; }

 private:
  const std::size_t cap_;
  mutable std::mutex mutex_;  // guards the two maps
  std::unordered_map<std::string, std::string> address_of_;  // id -> the address it is charged to
  std::map<std::string, std::size_t> per_address_;           // address -> ids charged (absent: 0)
};

}  // namespace perfstream
