#pragma once
// The life of one request (docs/life_of_a_request.md): route it, pick an endpoint,
// take a pooled connection, send the request while streaming its body, read the
// response head, retry while the policy and the kept body allow, stream the response
// back, then count and log it (always).
#include <memory>
#include <optional>
#include <string>

#include "mesh/endpoints.hpp"
#include "mesh/snapshot.hpp"
#include "proxy/downstream.hpp"
#include "proxy/upstream.hpp"
#include "proxy/worker.hpp"

namespace meshd::proxy {

class RequestLifecycle {
 public:
  explicit RequestLifecycle(DownstreamConnection& conn);
  awaitable<void> run();

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
  };
  enum class Failure { none, connect, reset, timeout, per_try_timeout, status, downstream_closed, downstream_bad,
                       downstream_timeout };

  std::optional<std::uint32_t> rate_limited();  // seconds to wait, when over the limit
  awaitable<bool> route();
  awaitable<void> forward();
  std::shared_ptr<mesh::Endpoint> pick_endpoint(const std::vector<const mesh::Endpoint*>& tried);
  void report_outcome(mesh::Endpoint& ep, bool server_error);
  bool retry_budget_allows() const;
  std::chrono::milliseconds body_read_timeout() const;
  awaitable<bool> acquire_app_slot();
  awaitable<std::shared_ptr<mesh::Endpoint>> resolve_outside();
  awaitable<Failure> send_request(UpstreamConnection& up, bool& wrote_any);
  awaitable<Failure> read_response_head(UpstreamConnection& up, Clock::time_point try_deadline,
                                        bool per_try_limited);
  awaitable<bool> stream_response(UpstreamConnection& up);
  awaitable<void> backoff(std::uint32_t attempt);
  awaitable<Failure> read_first_body_piece();
  awaitable<void> answer_downstream_failure(Failure f);
  awaitable<void> reply(LocalReply r, std::string_view detail, bool close = false);
  void record();
  void keep_logged_response_headers(const MessageHead& response);

  DownstreamConnection& conn_;
  Worker& worker_;
  std::shared_ptr<const RuntimeView> view_;
  const MessageHead& head_;
  Clock::time_point start_;
  Target target_;
  std::string path_;         // normalized path + query, sent upstream
  std::string host_;         // the Host sent upstream
  std::string request_id_;
  // The request body: the first retry_buffer_bytes kept for retries.
  bool has_body_ = false;
  bool body_complete_ = false;  // every byte of the downstream body has been read
  bool body_overflow_ = false;  // more than the retry buffer: no replay
  std::string kept_body_;
  std::optional<std::uint64_t> content_length_;
  std::string scratch_;
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
