#pragma once
// What can go wrong with a request, where it came from and whether a retry is safe,
// and the one table that turns it into a local reply (SPEC §3) and an access-log flag.
// The lifecycle, `meshd route`'s dry run and the access log all read this table.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "mesh/compiled/snapshot.hpp"
#include "proxy/local_reply.hpp"

namespace meshd::proxy {

enum class ErrorKind : std::uint8_t {
  // Routing (the request never left meshd).
  egress_denied,        // DROP_ALL and not a backend
  no_route,             // a backend, but no route (or no router listener) matches
  no_provider,          // the virtual service has no provider
  no_endpoints,         // the target node has no usable endpoint
  no_authority,         // the request names no (valid) authority
  rate_limited,         // the listener's rate limit
  overflow,             // a connection-pool limit
  // The upstream.
  connect_failure,      // no connection to the endpoint
  upstream_reset,       // closed or reset before a full response head
  upstream_protocol,    // a response meshd cannot read (bad framing)
  upstream_refused,     // HTTP/2: the stream was refused or left unprocessed by a GOAWAY (retry_safe)
  upstream_timeout,     // perRequest ran out
  per_try_timeout,      // perRetryTimeout ran out
  reset_after_headers,  // the response broke after its head went downstream
  // The downstream.
  downstream_closed,     // the client went away
  downstream_malformed,  // a broken request body
  downstream_timeout,    // the request body stalled
};

enum class ErrorSource : std::uint8_t { downstream, upstream, internal };

struct ErrorRow {
  ErrorKind kind;
  ErrorSource source;
  std::optional<LocalReply> reply;  // the answer when nothing went downstream yet
  std::string_view flag;            // the access-log flag (a local reply code or a failure kind)
};

const ErrorRow& describe(ErrorKind k);

// One failed step: its kind, and whether another attempt could not duplicate work
// (nothing of the request reached the upstream, or the upstream refused it unprocessed).
struct Error {
  ErrorKind kind;
  bool retry_safe = false;
  std::string detail;  // for the local reply's body and the log
};

// The error for a routing outcome other than routed (outside_mesh means DROP_ALL here).
ErrorKind error_for(mesh::RouteDecision::Outcome o);

}  // namespace meshd::proxy
