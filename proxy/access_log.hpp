#pragma once
// One line per request to the node's logging.accessLog.file.path (e.g. /dev/stdout),
// in meshd's default text format (docs/operations.md); App Mesh's json/text format
// strings come with the observability work. One write() per line on an O_APPEND
// descriptor, shared by the workers: lines never interleave.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "metrics/stats.hpp"
#include "proxy/http1_codec.hpp"

namespace meshd::proxy {

struct AccessLogEntry {
  metrics::Direction direction;
  const MessageHead& request;
  std::string_view path;
  std::string_view authority;
  int status;
  std::uint64_t bytes_sent;
  double seconds;
  std::string_view service, route, node;
  std::string_view flag;  // the local reply code or failure kind, "-" when none
  std::uint32_t retries;
  std::string_view request_id;
};

class AccessLog {
 public:
  static std::shared_ptr<AccessLog> open(const std::string& path, std::string& error);
  ~AccessLog();
  void write(const AccessLogEntry& e) const;
  static std::string format(const AccessLogEntry& e);

 private:
  explicit AccessLog(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace meshd::proxy
