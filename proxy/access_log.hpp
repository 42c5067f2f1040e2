#pragma once
// One line per request to the node's logging.accessLog.file.path (e.g. /dev/stdout):
// meshd's default text format (docs/operations.md), or the node's App Mesh `format`
// (`text`: an Envoy format string; `json`: key/value pairs of Envoy format strings,
// one JSON object per line). One write() per line on an O_APPEND descriptor, shared
// by the workers: lines never interleave.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mesh/config/access_log_format.hpp"
#include "mesh/config/model.hpp"
#include "metrics/stats.hpp"
#include "proxy/message.hpp"

namespace meshd::proxy {

struct AccessLogEntry {
  metrics::Direction direction;
  const RequestHead& request;
  std::string_view path;
  std::string_view authority;
  int status;
  std::uint64_t bytes_sent;
  double seconds;
  std::string_view service, route, node;
  std::string_view flag;  // the local reply code or failure kind, "-" when none
  std::uint32_t retries;
  std::string_view request_id;
  std::uint64_t bytes_received = 0;  // request body bytes
  std::string_view upstream_host{};  // IP:PORT of the endpoint last tried, or empty
  std::string_view remote_ip{};      // the client's address
  // Only for formats that ask (AccessLog::response_header_names, needs_addresses):
  const std::vector<std::string>* response_headers = nullptr;  // values, by name index
  std::string_view remote_address{};  // IP:PORT
  std::string_view local_address{};   // IP:PORT
};

class AccessLog {
 public:
  // `format` is validated by the loader; an unparsable one here is an error too.
  static std::shared_ptr<AccessLog> open(const std::string& path, const std::optional<mesh::AccessLogFormat>& format,
                                         std::string& error);
  ~AccessLog();
  void write(const AccessLogEntry& e) const;
  std::string format(const AccessLogEntry& e) const;  // the line, with its newline

  // Response header fields the format logs (lower-case): the data path keeps their
  // values for the entry, in this order. Empty for most formats.
  const std::vector<std::string>& response_header_names() const { return response_headers_; }
  // The format logs %DOWNSTREAM_REMOTE_ADDRESS% or %DOWNSTREAM_LOCAL_ADDRESS%.
  bool needs_addresses() const { return needs_addresses_; }

 private:
  explicit AccessLog(int fd) : fd_(fd) {}
  std::string builtin(const AccessLogEntry& e) const;
  void render(const mesh::LogTemplate& t, const AccessLogEntry& e, std::string& out) const;
  std::string value(const mesh::LogPiece& p, const AccessLogEntry& e) const;  // empty: none ("-")
  static std::int64_t number(mesh::LogField f, const AccessLogEntry& e);      // the numeric operators
  void learn(const mesh::LogTemplate& t);

  int fd_;
  enum class Kind { builtin, text, json } kind_ = Kind::builtin;
  mesh::LogTemplate text_;
  std::vector<std::pair<std::string, mesh::LogTemplate>> json_;
  std::vector<std::string> response_headers_;
  bool needs_addresses_ = false;
};

}  // namespace meshd::proxy
