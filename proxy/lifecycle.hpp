#pragma once
// The life of one request (docs/life_of_a_request.md), on protocol-neutral streams:
// request filters (the rate limit), route it, pick an endpoint, lease an upstream
// exchange, send the request and stream the rest of its body while the response is
// read (both ways at once), retry while the policy and the kept body allow, stream
// the response back, then count and log it (always). It never sees HTTP/1.1 framing:
// the adapters behind DownstreamStream and UpstreamExchange own that.
#include <array>
#include <memory>
#include <span>
#include <optional>
#include <string>
#include <vector>

#include "mesh/cluster/endpoints.hpp"
#include "mesh/compiled/snapshot.hpp"
#include "proxy/errors.hpp"
#include "proxy/stream.hpp"
#include "proxy/upstream.hpp"
#include "proxy/worker.hpp"

namespace meshd::proxy {

class RequestLifecycle {
 public:
  explicit RequestLifecycle(DownstreamStream& down);
  awaitable<void> run();

  // What a direction applies to its requests (kInbound, kOutbound in lifecycle.cpp).
  struct Pipeline {
    bool tunnel_gate;  // CONNECT and Upgrade: 501 until tunnels exist
    bool rate_limit;   // the listener's rate limit: 429
    bool app_slot;     // the listener's connection pool to the app: 503 overflow
    enum class To : std::uint8_t { mesh, app } to;  // route through the mesh, or to the local app
  };
  static const Pipeline kOutbound;
  static const Pipeline kInbound;

 private:
  // Where the request goes, once routed.
  struct Target {
    const mesh::ServiceEntry* service = nullptr;
    const mesh::CompiledRoute* route = nullptr;
    std::uint32_t cluster = 0;
    bool to_app = false;          // ingress: the local app
    bool outside_mesh = false;    // ALLOW_ALL passthrough
    std::string outside_host;     // passthrough: the name to resolve
    std::uint16_t outside_port = 80;
    mesh::RetryPolicySpec retry;
    mesh::RouteTimeouts timeouts;
    UpstreamProtocol upstream = UpstreamProtocol::http1;  // the target listener's (SPEC §7)
  };
  // How streaming a response ended.
  enum class Streamed { complete, downstream_gone, upstream_broken };

  const IngressView* ingress() const;  // the listener an inbound request came in on
  // Request filters, each wired for its direction in run().
  std::optional<std::uint32_t> rate_limited();  // seconds to wait, when over the limit
  bool route();
  awaitable<void> forward();
  std::shared_ptr<mesh::Endpoint> pick_endpoint(std::span<const mesh::Endpoint* const> tried);
  void report_outcome(mesh::Endpoint& ep, bool server_error);
  bool retry_budget_allows() const;
  std::chrono::milliseconds body_read_timeout() const;
  std::chrono::milliseconds route_idle() const;
  awaitable<std::shared_ptr<mesh::Endpoint>> resolve_outside();
  // One attempt: the request out (the rest of its body pumped by upload()), interim
  // responses passed on, the final response head read into `rh`.
  awaitable<std::optional<Error>> exchange(UpstreamExchange& up, ResponseHead& rh, Clock::time_point try_deadline,
                                           bool per_try);
  awaitable<void> upload(UpstreamExchange& up);
  awaitable<void> finish_upload(UpstreamExchange& up, bool stop);
  awaitable<Streamed> stream_response(UpstreamExchange& up, const ResponseHead& rh);
  awaitable<void> backoff(std::uint32_t attempt);
  awaitable<std::optional<ErrorKind>> read_first_body_piece();
  // A piece of the request body, kept for replays while the retry buffer holds it
  // (`first`: the piece read before anything goes upstream, always kept).
  void keep_body(std::string_view piece, bool first = false);
  void keep_trailers(std::span<const Field> trailers);
  // Answers a failure (the error table: a local reply while nothing went downstream)
  // and sets the access-log flag.
  awaitable<void> fail(ErrorKind kind, std::string_view detail);
  // Records a failure for run() to answer with fail() (route() and forward() call it).
  void failed(ErrorKind kind, std::string detail);
  struct Failure {
    ErrorKind kind;
    std::string detail;
  };
  std::optional<Failure> failure_;
  awaitable<void> reply(LocalReply r, std::string_view detail);
  void record();
  // The grpc-status of a gRPC request's answer, from a head or trailers (metrics, retries).
  void note_grpc_status(std::span<const Field> fields);
  std::optional<int> grpc_status_;
  void keep_logged_response_headers(const ResponseHead& response);

  DownstreamStream& down_;
  Worker& worker_;
  std::shared_ptr<const RuntimeView> view_;
  const RequestHead& req_;
  const Pipeline& pipeline_;
  Clock::time_point start_;
  Target target_;
  std::string path_;         // normalized path + query, sent upstream
  std::string host_;         // the authority sent upstream
  // A generated x-request-id (a UUID), when the request had none.
  std::array<char, 36> request_id_buf_{};
  std::string_view request_id_;
  // The request body: the first retry_buffer_bytes kept for retries, with trailers.
  bool body_complete_ = false;  // every byte of the downstream body has been read
  bool body_overflow_ = false;  // more than the retry buffer: no replay
  std::string kept_body_;
  std::string kept_trailer_bytes_;
  std::vector<Field> kept_trailers_;
  // The concurrent upload of the rest of the body (upload()).
  bool uploading_ = false;
  bool stop_upload_ = false;
  std::optional<ErrorKind> upload_failure_;  // a downstream failure seen by upload()
  std::unique_ptr<asio::steady_timer> upload_done_;
  const std::string* node_label_ = nullptr;
  std::optional<Clock::time_point> deadline_;
  std::uint32_t retries_ = 0;
  bool holds_app_slot_ = false;
  std::string_view flag_;  // access-log response flag
  // For the access log: body bytes read, the endpoint last tried, and the response
  // header values an access log format asks for (AccessLog::response_header_names).
  std::uint64_t bytes_received_ = 0;
  std::shared_ptr<mesh::Endpoint> upstream_;
  std::vector<std::string> response_values_;
};

}  // namespace meshd::proxy
