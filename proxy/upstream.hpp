#pragma once
// The HTTP/1.1 client adapter (UpstreamConnection: one exclusive exchange at a time
// on a connection to an endpoint) and the per-worker pool of upstream connections,
// keyed by PoolKey {endpoint, protocol, TLS identity} (DESIGN "The protocol seam").
// HTTP/1.1 leases are exclusive; an HTTP/2 lease will be a stream on a shared
// connection under the same key.
//
// A pooled connection idle longer than its idle timeout is closed, and one whose peer
// closed (or sent anything) while idle is never used: checked with a non-blocking
// peek when it is taken after more than kPeekAfter idle. A connection given back
// moments ago is taken without the peek (one syscall per request saved under load):
// only a server that closes idle connections sooner than that could race it, and the
// "503 UC" retry on a fresh connection covers that race anyway
// (docs/life_of_a_request.md).
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "mesh/cluster/endpoints.hpp"
#include "net/byte_buffer.hpp"
#include "proxy/http1_codec.hpp"
#include "proxy/http2_upstream.hpp"
#include "proxy/io.hpp"
#include "proxy/stream.hpp"

namespace meshd::proxy {

enum class UpstreamProtocol : std::uint8_t { http1, http2, opaque_tcp };

struct PoolKey {
  const mesh::Endpoint* endpoint = nullptr;
  UpstreamProtocol protocol = UpstreamProtocol::http1;
  std::string tls_identity;  // empty: plain TCP (the TLS issue fills it in)
  bool operator==(const PoolKey&) const = default;
};
struct PoolKeyHash {
  std::size_t operator()(const PoolKey& k) const noexcept;
};

class UpstreamConnection final : public UpstreamExchange {
 public:
  UpstreamConnection(asio::any_io_executor ex, std::shared_ptr<mesh::Endpoint> ep, HeadLimits limits)
      : stream_(ex), watchdog_(ex), endpoint_(std::move(ep)), parser_(Http1Parser::Kind::response, limits) {}
  ~UpstreamConnection() override;

  // UpstreamExchange
  awaitable<std::optional<Error>> send_head(const OutgoingRequest& r, std::string_view body, bool end) override;
  awaitable<std::optional<Error>> send_data(std::string_view piece, std::chrono::milliseconds idle) override;
  awaitable<std::optional<Error>> send_end(std::span<const Field> trailers) override;
  awaitable<std::optional<Error>> read_head(Clock::time_point deadline, bool per_try, ResponseHead& out) override;
  awaitable<BodyEvent> read_body(Clock::time_point deadline) override;
  std::optional<BodyEvent> next_body() override;
  void abandon() override;
  bool reused() const override { return reused_; }
  bool wrote_any() const override { return wrote_any_; }
  bool reusable() const override;

  // For the pool (and the health checker, whose connections are not counted).
  awaitable<error_code> connect(std::chrono::milliseconds timeout);
  void count_connection();  // counted in the endpoint's `connections` while it lives
  bool idle_and_open() const { return stream_.is_open() && buffer_.empty(); }
  bool still_good();  // an idle connection: no EOF, error or stray bytes
  const std::shared_ptr<mesh::Endpoint>& endpoint() const { return endpoint_; }
  void begin_exchange();  // taken from the pool for a new request
  void release_buffer() { buffer_.release_if_empty(); }
  void mark_reused() { reused_ = true; }
  std::int64_t* gauge = nullptr;  // the worker's meshd_upstream_connections_active for the node
  PoolKey key;

 private:
  enum class Framing : std::uint8_t { none, length, chunked };
  awaitable<std::optional<Error>> write(std::span<const asio::const_buffer> bufs, std::chrono::milliseconds idle);

  ByteStream stream_;
  Watchdog watchdog_;
  std::shared_ptr<mesh::Endpoint> endpoint_;
  Http1Parser parser_;
  net::ByteBuffer buffer_;  // bytes read and not yet parsed
  std::vector<Field> fields_;    // the response head's end-to-end fields
  std::vector<Field> trailers_;  // the response's trailers, filtered
  std::string scratch_;
  std::size_t pending_consume_ = 0;
  Framing framing_ = Framing::none;
  bool head_request_ = false;
  bool reused_ = false;
  bool wrote_any_ = false;
  bool request_done_ = false;   // every byte of the request went out
  bool response_done_ = false;  // the response ended at a message boundary
  bool broken_ = false;         // an error, an abandon, or a close-delimited body
  bool counted_ = false;        // in the endpoint's connection count (pooled connections)
};

class UpstreamPool {
 public:
  static constexpr std::chrono::milliseconds kPeekAfter{200};
  explicit UpstreamPool(asio::any_io_executor ex);
  // An exchange on a pooled connection for `key` that is still good, or on a new one
  // (connect timeout); nullptr with `ec` when no connection could be made.
  //
  // HTTP/2 (key.protocol http2): a stream on the key's shared connection while it
  // takes more (the server's SETTINGS_MAX_CONCURRENT_STREAMS), else on another; while
  // a connection for the key is being made, requests wait for it instead of each
  // opening one.
  awaitable<std::unique_ptr<UpstreamExchange>> acquire(const PoolKey& key, std::shared_ptr<mesh::Endpoint> ep,
                                                       std::chrono::milliseconds connect_timeout, HeadLimits limits,
                                                       std::int64_t* gauge, error_code& ec);
  void set_http2_limits(const Http2ClientLimits& limits, std::chrono::milliseconds keepalive) {
    h2_limits_ = limits;
    h2_keepalive_ = keepalive;
  }
  // Gives an exchange back when it ended: its connection is kept idle (when reusable)
  // up to `idle_timeout`, at most `max_idle` per key; otherwise closed.
  void release(std::unique_ptr<UpstreamExchange> x, std::chrono::milliseconds idle_timeout, std::size_t max_idle);
  // Closes idle connections past their timeout (called every second by the worker).
  void sweep();
  // Closes the idle HTTP/1.1 connections; HTTP/2 ones close once their streams end.
  void clear();
  // Closes everything now and lets go of the io_context's objects (the worker ends).
  void shutdown();
  // Closes idle connections to endpoints not in `keep` (gone after a reload or a new
  // DNS answer); a connection to one of those that comes back from a request still in
  // flight is closed instead of pooled.
  void retain(std::unordered_set<const mesh::Endpoint*> keep);
  std::size_t idle_count() const;
  std::size_t shared_count() const;  // HTTP/2 connections open

 private:
  awaitable<std::unique_ptr<UpstreamExchange>> acquire_shared(const PoolKey& key, std::shared_ptr<mesh::Endpoint> ep,
                                                              std::chrono::milliseconds connect_timeout,
                                                              std::int64_t* gauge, error_code& ec);
  struct Idle {
    std::unique_ptr<UpstreamConnection> conn;
    Clock::time_point released;
    Clock::time_point expires;
  };
  asio::any_io_executor ex_;
  std::unordered_map<PoolKey, std::vector<Idle>, PoolKeyHash> idle_;
  // The endpoints of the worker's current view, once it has one. An in-flight
  // connection keeps its endpoint alive, so an address here cannot be reused by a
  // different endpoint while that connection exists.
  std::optional<std::unordered_set<const mesh::Endpoint*>> live_;
  // HTTP/2: the connections of each key, shared by their streams.
  std::unordered_map<PoolKey, std::vector<std::shared_ptr<Http2UpstreamConnection>>, PoolKeyHash> shared_;
  Http2ClientLimits h2_limits_;
  std::chrono::milliseconds h2_keepalive_{30000};
  // Woken (cancelled, never expiring) when a connection being made is up or failed.
  std::unique_ptr<asio::steady_timer> connected_;
};

}  // namespace meshd::proxy
