#pragma once
// Upstream connections and the per-worker pool (DESIGN: pools are per worker, keyed
// by endpoint). A pooled connection idle longer than its idle timeout is closed, and
// one whose peer closed (or sent anything) while idle is never used: checked with a
// non-blocking peek when it is taken after more than kPeekAfter idle. A connection
// given back moments ago is taken without the peek (one syscall per request saved
// under load): only a server that closes idle connections sooner than that could
// race it, and the "503 UC" retry on a fresh connection covers that race anyway
// (docs/life_of_a_request.md).
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "mesh/endpoints.hpp"
#include "net/byte_buffer.hpp"
#include "proxy/http1_codec.hpp"
#include "proxy/io.hpp"

namespace meshd::proxy {

struct UpstreamConnection {
  UpstreamConnection(asio::any_io_executor ex, std::shared_ptr<mesh::Endpoint> ep, HeadLimits limits)
      : socket(ex), watchdog(ex), endpoint(std::move(ep)), parser(Http1Parser::Kind::response, limits) {}
  ~UpstreamConnection();
  tcp::socket socket;
  Watchdog watchdog;
  std::shared_ptr<mesh::Endpoint> endpoint;
  Http1Parser parser;
  net::ByteBuffer buffer;  // bytes read and not yet parsed
  bool reused = false;
  std::int64_t* gauge = nullptr;  // the worker's meshd_upstream_connections_active for the node
};

class UpstreamPool {
 public:
  static constexpr std::chrono::milliseconds kPeekAfter{200};
  explicit UpstreamPool(asio::any_io_executor ex) : ex_(ex) {}
  // A pooled connection to `ep` that is still good, or a new one (connect timeout).
  awaitable<std::unique_ptr<UpstreamConnection>> acquire(std::shared_ptr<mesh::Endpoint> ep,
                                                         std::chrono::milliseconds connect_timeout,
                                                         HeadLimits limits, std::int64_t* gauge,
                                                         error_code& ec);
  // Gives a connection back after a complete exchange (keep-alive): kept idle up to
  // `idle_timeout`, at most `max_idle` per endpoint.
  void release(std::unique_ptr<UpstreamConnection> c, std::chrono::milliseconds idle_timeout,
               std::size_t max_idle);
  // Closes idle connections past their timeout (called every second by the worker).
  void sweep();
  void clear() { idle_.clear(); }
  // Closes idle connections to endpoints not in `keep` (gone after a reload or a new
  // DNS answer); a connection to one of those that comes back from a request still in
  // flight is closed instead of pooled.
  void retain(std::unordered_set<const mesh::Endpoint*> keep);
  std::size_t idle_count() const;

 private:
  struct Idle {
    std::unique_ptr<UpstreamConnection> conn;
    Clock::time_point released;
    Clock::time_point expires;
  };
  asio::any_io_executor ex_;
  std::unordered_map<const mesh::Endpoint*, std::vector<Idle>> idle_;
  // The endpoints of the worker's current view, once it has one. An in-flight
  // connection keeps its endpoint alive, so an address here cannot be reused by a
  // different endpoint while that connection exists.
  std::optional<std::unordered_set<const mesh::Endpoint*>> live_;
};

}  // namespace meshd::proxy
