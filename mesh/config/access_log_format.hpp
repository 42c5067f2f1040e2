#pragma once
// App Mesh's access log formats (logging.accessLog.file.format: `text`, or `json` as
// key/value pairs) are Envoy format strings: literal text and command operators such
// as %START_TIME%, %REQ(:METHOD)%, %RESPONSE_CODE%. This parses one format string
// into pieces; an operator meshd does not know is an error at load (Envoy rejected
// such a configuration too). docs/operations.md lists the operators.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace meshd::mesh {

enum class LogField {
  literal,
  start_time,             // START_TIME, START_TIME(strftime format)
  request_header,         // REQ(name?alternate):max, REQUEST_HEADER(...)
  response_header,        // RESP(name?alternate):max, RESPONSE_HEADER(...)
  protocol,               // HTTP/1.1
  response_code,          // the status sent downstream (0: none)
  response_flags,         // Envoy's short flags: UH UF UT URX NR UC DC RL UO DPE LR -
  response_code_details,  // meshd's flag name (the x-meshd-error code, ...)
  bytes_received,         // request body bytes
  bytes_sent,             // response bytes sent downstream (head and body)
  duration,               // ms from the request's first byte to its last byte out
  upstream_host,          // IP:PORT of the endpoint last tried
  upstream_cluster,       // the target virtual node
  route_name,
  virtual_service,        // meshd's addition: the virtual service
  downstream_remote_address,               // IP:PORT of the client
  downstream_remote_address_without_port,  // IP of the client
  downstream_local_address,                // IP:PORT the client connected to
  hostname,
};

struct LogPiece {
  LogField field = LogField::literal;
  std::string text;       // literal text, or START_TIME's format (empty: the default)
  std::string header;     // REQ/RESP: the field name, lower-cased (":method" etc. too)
  std::string alternate;  // REQ(a?b): the name used when `header` is absent
  std::size_t max_length = 0;  // `:N` after the operator; 0: no limit
};
using LogTemplate = std::vector<LogPiece>;

// Parses one format string; nullopt and `error` for an unknown or malformed operator.
std::optional<LogTemplate> parse_log_template(std::string_view text, std::string& error);

// Operators whose value is a number (a JSON format keeps it a number).
bool numeric(LogField f);

}  // namespace meshd::mesh
