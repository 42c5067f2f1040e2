#include "proxy/lifecycle.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <cstdio>

#include "mesh/request_view.hpp"
#include "net/asio_address.hpp"
#include "proxy/access_log.hpp"
#include "proxy/http1_write.hpp"

namespace meshd::proxy {

namespace {

// A response body is read from the upstream in pieces of up to 64 KiB: a body that is
// already waiting in the socket goes downstream in one send, not four, which halves
// the system calls and wakes the client once. The buffer is released when the
// connection goes back to the pool, so only streaming responses hold it.
constexpr std::size_t kBodyRead = net::ByteBuffer::kLargeBlock;

bool idempotent(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "PUT" || method == "DELETE" ||
         method == "TRACE";
}

std::string uuid4(std::mt19937_64& rng) {
  // A random (version 4) UUID, formatted without printf (it showed in profiles).
  static constexpr char hex[] = "0123456789abcdef";
  std::uint64_t a = rng(), b = rng();
  a = (a & ~0xf000ULL) | 0x4000ULL;              // version 4
  b = (b & ~(3ULL << 62)) | (2ULL << 62);        // variant 10
  std::string out(36, '-');
  const std::uint64_t words[2] = {a, b};
  int nibble = 0;
  for (int i = 0; i < 36; ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) continue;
    const std::uint64_t w = words[nibble / 16];
    out[static_cast<std::size_t>(i)] = hex[(w >> (60 - 4 * (nibble % 16))) & 0xf];
    ++nibble;
  }
  return out;
}

// RAII: active requests of an endpoint and of its node (LEAST_REQUEST and the retry
// budget read them), and retries in flight to the node.
struct ActiveRequest {
  ActiveRequest(std::shared_ptr<mesh::Endpoint> e, mesh::NodeState* n, bool retry)
      : ep(std::move(e)), node(n), is_retry(retry) {
    if (ep) ep->active_requests.fetch_add(1, std::memory_order_relaxed);
    if (node) node->active_requests.fetch_add(1, std::memory_order_relaxed);
    if (node && is_retry) node->retries_in_flight.fetch_add(1, std::memory_order_relaxed);
  }
  ~ActiveRequest() {
    if (ep) ep->active_requests.fetch_sub(1, std::memory_order_relaxed);
    if (node) node->active_requests.fetch_sub(1, std::memory_order_relaxed);
    if (node && is_retry) node->retries_in_flight.fetch_sub(1, std::memory_order_relaxed);
  }
  ActiveRequest(const ActiveRequest&) = delete;
  ActiveRequest& operator=(const ActiveRequest&) = delete;
  std::shared_ptr<mesh::Endpoint> ep;
  mesh::NodeState* node;
  bool is_retry;
};

}  // namespace

RequestLifecycle::RequestLifecycle(DownstreamConnection& conn)
    : conn_(conn), worker_(conn.worker()), view_(conn.worker().view()), head_(conn.head()) {}

awaitable<void> RequestLifecycle::reply(LocalReply r, std::string_view detail, bool close) {
  flag_ = info(r).code;
  co_await conn_.reply(r, detail, close);
}

std::optional<std::uint32_t> RequestLifecycle::rate_limited() {
  // The node's listener rate limit applies to inbound requests only.
  if (conn_.direction() != metrics::Direction::ingress || !view_->rate_limit) return std::nullopt;
  auto wait = view_->rate_limit->take(Clock::now().time_since_epoch());
  if (!wait) return std::nullopt;
  node_label_ = view_->node_label;
  return static_cast<std::uint32_t>(std::max<std::int64_t>(
      1, std::chrono::duration_cast<std::chrono::seconds>(*wait + std::chrono::milliseconds(999)).count()));
}

awaitable<void> RequestLifecycle::run() {
  start_ = Clock::now();
  has_body_ = head_.chunked || (head_.content_length && *head_.content_length > 0);
  content_length_ = head_.content_length;
  if (!has_body_) body_complete_ = true;

  // Tunnels do not exist yet: CONNECT and Upgrade get 501, except h2c, which is
  // dropped (Upgrade and HTTP2-Settings are hop-by-hop) and served as HTTP/1.1.
  if (head_.method == "CONNECT") {
    co_await reply(LocalReply::not_implemented, "CONNECT tunnels are not supported", true);
  } else if (auto up = head_.get("upgrade"); up && !iequals_ascii(*up, "h2c")) {
    co_await reply(LocalReply::not_implemented, "protocol upgrades are not supported", true);
  } else if (auto wait = rate_limited(); wait) {
    co_await conn_.reply(LocalReply::rate_limited, "", false, *wait);
    flag_ = info(LocalReply::rate_limited).code;
  } else if (co_await route()) {
    // Expect: 100-continue is answered here; the upstream never sees Expect.
    if (has_body_ && head_.minor_version == 1) {
      if (auto expect = head_.get("expect"); expect && iequals_ascii(*expect, "100-continue")) {
        co_await conn_.write("HTTP/1.1 100 Continue\r\n\r\n");
      }
    }
    co_await forward();
  }
  record();
}

awaitable<bool> RequestLifecycle::route() {
  const auto& snap = *view_->snap;
  // Target: origin-form, or absolute-form (an app using HTTP_PROXY), whose authority
  // wins over Host (RFC 9112 §3.2.2: Host is rebuilt from it).
  std::string_view target = head_.target;
  std::string_view authority;
  if (auto scheme_end = target.find("://"); scheme_end != std::string_view::npos && target.front() != '/') {
    const auto rest = target.substr(scheme_end + 3);
    const auto slash = rest.find_first_of("/?");
    authority = rest.substr(0, slash);
    target = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
  } else if (auto host = head_.get("host")) {
    authority = *host;
  }
  if (target == "*") target = "/";
  const auto q = target.find('?');
  path_.reserve(target.size() + 1);
  mesh::normalize_path(target.substr(0, q), path_);
  const std::size_t path_size = path_.size();
  const std::string_view query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
  if (q != std::string_view::npos) {
    path_ += '?';
    path_ += query;
  }
  host_ = std::string(authority);
  if (auto id = head_.get("x-request-id"); !id) request_id_ = uuid4(worker_.rng());

  if (conn_.direction() == metrics::Direction::ingress) {
    target_.to_app = true;
    target_.timeouts = view_->ingress_timeouts;
    target_.retry = mesh::RetryPolicySpec::app_mesh_default();
    target_.retry.max_retries = 0;  // the callers' sidecars retry; this hop only fixes pool races
    node_label_ = view_->node_label;
    if (view_->app == nullptr) {
      co_await reply(LocalReply::no_healthy_upstream, "no application port");
      co_return false;
    }
    co_return true;
  }

  auto parsed = mesh::parse_authority(authority);
  if (!parsed) {
    co_await reply(LocalReply::bad_request, authority.empty() ? "the request has no authority (Host)"
                                                              : "invalid authority", true);
    co_return false;
  }
  mesh::RequestView req;
  req.method = head_.method;
  req.path = std::string_view(path_).substr(0, path_size);
  req.query = query;
  req.headers = head_.fields;  // the parsed fields, not a copy
  const auto d = snap.route(parsed->host, parsed->port, req);
  using Outcome = mesh::RouteDecision::Outcome;
  if (d.service != nullptr) target_.service = d.service;
  switch (d.outcome) {
    case Outcome::outside_mesh:
      if (snap.egress_filter() == mesh::EgressFilterType::ALLOW_ALL) {
        target_.outside_mesh = true;
        target_.outside_host = parsed->host;
        target_.outside_port = parsed->port.value_or(80);
        target_.retry = mesh::RetryPolicySpec::app_mesh_default();
        target_.retry.max_retries = 0;
        co_return true;
      }
      co_await reply(LocalReply::egress_denied,
                     "'" + parsed->host + "' is not a backend of virtual node '" + snap.node().name + "'");
      co_return false;
    case Outcome::no_provider:
      co_await reply(LocalReply::no_healthy_upstream, "virtual service has no provider");
      co_return false;
    case Outcome::no_listener: {
      std::string ports;
      for (const auto& l : *d.service->listeners) ports += (ports.empty() ? "" : ", ") + std::to_string(l.port);
      co_await reply(LocalReply::no_route, "no router listener for this port (listeners: " + ports + ")");
      co_return false;
    }
    case Outcome::no_route:
      co_await reply(LocalReply::no_route, "no route matches");
      co_return false;
    case Outcome::routed:
      break;
  }
  target_.route = d.route;
  const auto& r = *d.route;
  const std::uint32_t draw =
      r.total_weight > 1 ? static_cast<std::uint32_t>(worker_.rng()() % r.total_weight) : 0;
  target_.cluster = r.pick(draw).cluster;
  target_.retry = r.retry;
  target_.timeouts = r.timeouts;
  node_label_ = snap.clusters()[target_.cluster].label;
  co_return true;
}

std::shared_ptr<mesh::Endpoint> RequestLifecycle::pick_endpoint(const std::vector<const mesh::Endpoint*>& tried) {
  if (target_.to_app) return view_->app;
  const auto& table = *view_->endpoints;
  if (target_.cluster >= table.size() || !table[target_.cluster]) return nullptr;
  const auto& ce = *table[target_.cluster];
  const auto& cluster = view_->snap->clusters()[target_.cluster];
  mesh::LbInput in;
  in.endpoints = &ce.endpoints;
  in.ring = &ce.ring;
  in.avoid = &tried;
  if (const auto& lb = cluster.node->spec.load_balancing) {
    in.policy = lb->policy;
    if (lb->hash_on_header) in.hash_key = head_.get(*lb->hash_on_header);
  }
  if (in.policy == mesh::LbPolicy::ROUND_ROBIN) in.round_robin = worker_.next_round_robin(target_.cluster);
  return mesh::pick_endpoint(in, worker_.rng());
}

std::chrono::milliseconds RequestLifecycle::body_read_timeout() const {
  // A request body that stalls longer than the route's idle timeout or the
  // downstream idle timeout, whichever is shorter, gets 408.
  auto t = worker_.limits().downstream_idle_timeout;
  if (target_.timeouts.idle.count() > 0 && target_.timeouts.idle < t) t = target_.timeouts.idle;
  return t;
}

void RequestLifecycle::report_outcome(mesh::Endpoint& ep, bool server_error) {
  // Outlier detection: workers count, the main thread decides (DESIGN).
  if (target_.to_app || target_.outside_mesh) return;
  if (!server_error) {
    if (ep.consecutive_5xx.load(std::memory_order_relaxed) != 0) ep.consecutive_5xx.store(0, std::memory_order_relaxed);
    return;
  }
  const auto* l = mesh::cluster_listener(view_->snap->clusters()[target_.cluster]);
  const auto n = ep.consecutive_5xx.fetch_add(1, std::memory_order_relaxed) + 1;
  if (l != nullptr && l->outlier_detection && n == static_cast<std::uint64_t>(l->outlier_detection->max_server_errors) &&
      view_->outlier_notify) {
    view_->outlier_notify();
  }
}

bool RequestLifecycle::retry_budget_allows() const {
  if (target_.to_app || target_.outside_mesh) return true;
  const auto& table = *view_->endpoints;
  if (target_.cluster >= table.size()) return true;
  const auto& node = *table[target_.cluster]->node_state;
  return mesh::retry_budget_allows(node.retries_in_flight.load(std::memory_order_relaxed),
                                   node.active_requests.load(std::memory_order_relaxed),
                                   target_.retry.budget_percent, target_.retry.budget_min_concurrent);
}

awaitable<bool> RequestLifecycle::acquire_app_slot() {
  // The local app's connectionPool.http: at most maxConnections requests in flight to
  // it (one per HTTP/1.1 connection), at most maxPendingRequests waiting; beyond, 503.
  auto& limit = *view_->app_limit;
  auto try_take = [&] {
    auto active = limit.active.load(std::memory_order_relaxed);
    while (active < limit.max_connections) {
      if (limit.active.compare_exchange_weak(active, active + 1, std::memory_order_relaxed)) return true;
    }
    return false;
  };
  if (try_take()) co_return true;
  if (limit.pending.fetch_add(1, std::memory_order_relaxed) >= limit.max_pending) {
    limit.pending.fetch_sub(1, std::memory_order_relaxed);
    co_return false;
  }
  asio::steady_timer timer(worker_.ioc());
  const auto give_up = deadline_.value_or(Clock::now() + std::chrono::seconds(15));
  bool got = false;
  for (int i = 0; i < 1000000 && Clock::now() < give_up; ++i) {
    timer.expires_after(std::chrono::milliseconds(1));
    co_await timer.async_wait(use_tuple);
    if ((got = try_take())) break;
  }
  limit.pending.fetch_sub(1, std::memory_order_relaxed);
  co_return got;
}

awaitable<std::shared_ptr<mesh::Endpoint>> RequestLifecycle::resolve_outside() {
  tcp::resolver resolver(worker_.ioc());
  auto [ec, results] = co_await resolver.async_resolve(target_.outside_host, std::to_string(target_.outside_port),
                                                       use_tuple);
  if (ec || results.empty()) co_return nullptr;
  const auto ep = results.begin()->endpoint();
  auto out = std::make_shared<mesh::Endpoint>();
  out->ip = net::from_asio(ep.address());
  out->port = ep.port();
  out->text = net::endpoint_text(out->ip, out->port);
  co_return out;
}

awaitable<void> RequestLifecycle::backoff(std::uint32_t attempt) {
  // Full jitter: uniform in [0, min(max, base × 2^(attempt-1))].
  const auto cap = mesh::backoff_ceiling(target_.retry.backoff_base, target_.retry.backoff_max,
                                         attempt > 0 ? attempt - 1 : 0);
  if (cap.count() <= 0) co_return;
  const auto wait = std::chrono::milliseconds(worker_.rng()() % static_cast<std::uint64_t>(cap.count() + 1));
  asio::steady_timer timer(worker_.ioc());
  timer.expires_after(wait);
  co_await timer.async_wait(use_tuple);
}

awaitable<RequestLifecycle::Failure> RequestLifecycle::send_request(UpstreamConnection& up, bool& wrote_any) {
  wrote_any = false;
  UpstreamRequest r;
  r.path_and_query = path_;
  r.host = host_;
  r.forwarded_for = conn_.peer();
  r.request_id = request_id_;
  r.body = has_body_;
  // A body fully kept goes with its length; otherwise it streams (chunked, or with
  // the client's Content-Length).
  if (has_body_ && body_complete_ && !body_overflow_) {
    r.content_length = kept_body_.size();
  } else if (has_body_) {
    r.content_length = content_length_;
  }
  scratch_.clear();
  build_request_head(head_, r, scratch_);
  const bool chunked = has_body_ && !r.content_length;
  const auto idle = target_.timeouts.idle.count() > 0 ? target_.timeouts.idle : std::chrono::milliseconds(300000);
  up.watchdog.arm(up.socket, idle);
  // The head and whatever body is kept, then the rest of the body as it arrives.
  std::string first = std::move(scratch_);
  if (!kept_body_.empty()) {
    if (chunked) first += chunk_header(kept_body_.size());
    first += kept_body_;
    if (chunked) first += "\r\n";
  }
  if (chunked && body_complete_) first += kLastChunk;
  auto [ec, n] = co_await asio::async_write(up.socket, asio::buffer(first), use_tuple);
  scratch_ = std::move(first);
  wrote_any = n > 0;
  if (ec) {
    up.watchdog.disarm();
    co_return Failure::reset;
  }
  while (has_body_ && !body_complete_) {
    auto piece = co_await conn_.read_body(body_read_timeout());
    if (piece.kind == DownstreamConnection::BodyPiece::Kind::end) {
      body_complete_ = true;
      if (chunked) {
        auto [wec, wn] = co_await asio::async_write(up.socket, asio::buffer(kLastChunk.data(), kLastChunk.size()), use_tuple);
        if (wec) co_return Failure::reset;
      }
      break;
    }
    if (piece.kind != DownstreamConnection::BodyPiece::Kind::data) {
      up.watchdog.disarm();
      co_return piece.kind == DownstreamConnection::BodyPiece::Kind::error     ? Failure::downstream_bad
             : piece.kind == DownstreamConnection::BodyPiece::Kind::timeout ? Failure::downstream_timeout
                                                                            : Failure::downstream_closed;
    }
    bytes_received_ += piece.data.size();
    if (!body_overflow_ && kept_body_.size() + piece.data.size() <= worker_.limits().retry_buffer_bytes) {
      kept_body_.append(piece.data);
    } else {
      body_overflow_ = true;
      kept_body_.clear();
      kept_body_.shrink_to_fit();
    }
    std::array<asio::const_buffer, 3> bufs;
    std::string ch = chunked ? chunk_header(piece.data.size()) : std::string();
    bufs[0] = asio::buffer(ch);
    bufs[1] = asio::buffer(piece.data.data(), piece.data.size());
    bufs[2] = asio::buffer(chunked ? "\r\n" : "", chunked ? 2 : 0);
    up.watchdog.arm(up.socket, idle);
    auto [wec, wn] = co_await asio::async_write(up.socket, bufs, use_tuple);
    if (wec) {
      up.watchdog.disarm();
      co_return Failure::reset;
    }
  }
  up.watchdog.disarm();
  co_return Failure::none;
}

awaitable<RequestLifecycle::Failure> RequestLifecycle::read_response_head(UpstreamConnection& up,
                                                                          Clock::time_point try_deadline,
                                                                          bool per_try_limited) {
  up.parser.expect_no_body(head_.method == "HEAD");
  up.watchdog.arm_at(up.socket, try_deadline);
  while (true) {
    const auto step = up.parser.parse(up.buffer.view());
    if (step.event == Http1Parser::Event::head) {
      up.buffer.consume(step.consumed);
      const int status = up.parser.head().status;
      if (status >= 100 && status < 200) {
        // Interim responses (100 Continue, 103) are not forwarded: meshd answered
        // Expect itself. Skip to the final response.
        auto done = up.parser.parse(up.buffer.view());
        up.buffer.consume(done.consumed);
        up.parser.expect_no_body(head_.method == "HEAD");
        continue;
      }
      up.watchdog.disarm();
      co_return Failure::none;
    }
    if (step.event == Http1Parser::Event::error) {
      up.watchdog.disarm();
      co_return Failure::reset;
    }
    char* space = up.buffer.prepare(16384);
    auto [ec, n] = co_await up.socket.async_read_some(asio::buffer(space, 16384), use_tuple);
    up.buffer.commit(n);
    if (ec) {
      const bool timed_out = up.watchdog.fired();
      up.watchdog.disarm();
      if (timed_out) co_return per_try_limited ? Failure::per_try_timeout : Failure::timeout;
      co_return Failure::reset;
    }
  }
}

awaitable<bool> RequestLifecycle::stream_response(UpstreamConnection& up) {
  const MessageHead& rh = up.parser.head();
  const bool no_body = head_.method == "HEAD" || rh.status == 204 || rh.status == 304;
  DownstreamResponse out;
  const bool client_11 = head_.minor_version >= 1;
  if (no_body) {
    if (rh.content_length) {
      out.framing = DownstreamResponse::Framing::length;
      out.content_length = *rh.content_length;
    }
  } else if (rh.content_length) {
    out.framing = DownstreamResponse::Framing::length;
    out.content_length = *rh.content_length;
  } else if (client_11) {
    out.framing = DownstreamResponse::Framing::chunked;
  } else {
    out.framing = DownstreamResponse::Framing::close;
    conn_.set_close();
  }
  if (worker_.draining()) conn_.set_close();
  out.close = !conn_.keep_alive();
  scratch_.clear();
  build_response_head(rh, out, scratch_);
  conn_.status_sent = rh.status;
  // The head waits to go out with the first piece of the body (or the end of the
  // message), so that a small response is one send; it is flushed on its own only
  // before waiting for more of the upstream's bytes.
  bool head_pending = true;
  const bool chunked = out.framing == DownstreamResponse::Framing::chunked;
  const auto idle = target_.timeouts.idle.count() > 0 ? target_.timeouts.idle : std::chrono::milliseconds(300000);
  std::string chunk_size;
  while (true) {
    auto step = up.parser.parse(up.buffer.view());
    const std::string_view head = head_pending ? std::string_view(scratch_) : std::string_view();
    if (step.event == Http1Parser::Event::body) {
      const auto piece = up.parser.body();
      bool ok;
      if (chunked) {
        chunk_size = chunk_header(piece.size());
        ok = co_await conn_.write_gather({head, chunk_size, piece, "\r\n"});
      } else {
        ok = co_await conn_.write_gather({head, piece, {}, {}});
      }
      head_pending = false;
      up.buffer.consume(step.consumed);
      if (!ok) co_return false;
      continue;
    }
    if (step.event == Http1Parser::Event::message_complete) {
      up.buffer.consume(step.consumed);
      if ((head_pending || chunked) &&
          !co_await conn_.write_gather({head, chunked ? kLastChunk : std::string_view(), {}, {}})) {
        co_return false;
      }
      co_return true;
    }
    if (step.event == Http1Parser::Event::error) co_return false;
    if (head_pending) {  // more of the upstream's bytes are needed: the head goes now
      if (!co_await conn_.write(scratch_)) co_return false;
      head_pending = false;
    }
    up.buffer.consume(step.consumed);
    char* space = up.buffer.prepare(kBodyRead);
    if (deadline_) {
      up.watchdog.arm_at(up.socket, std::min(*deadline_, Clock::now() + idle));
    } else {
      up.watchdog.arm(up.socket, idle);
    }
    auto [ec, n] = co_await up.socket.async_read_some(asio::buffer(space, kBodyRead), use_tuple);
    const bool timed_out = up.watchdog.fired();
    up.watchdog.disarm();
    up.buffer.commit(n);
    if (ec) {
      if (timed_out) {
        flag_ = info(LocalReply::upstream_timeout).code;
        ++worker_.stats().timeouts[{target_.service ? target_.service->label : metrics::empty_label(),
                                    node_label_ ? node_label_ : metrics::empty_label()}];
        co_return false;
      }
      if (ec == asio::error::eof) {
        auto fin = up.parser.finish();
        if (fin.event == Http1Parser::Event::message_complete) {
          if (chunked && !co_await conn_.write(kLastChunk)) co_return false;
          conn_.set_close();
          co_return true;
        }
      }
      co_return false;
    }
  }
}

awaitable<RequestLifecycle::Failure> RequestLifecycle::read_first_body_piece() {
  // The first piece of the body is read before anything goes upstream, so that a
  // body broken at its start (a bad chunk size) is refused with nothing forwarded,
  // and a small body is sent whole with its length.
  auto piece = co_await conn_.read_body(body_read_timeout());
  using Kind = DownstreamConnection::BodyPiece::Kind;
  switch (piece.kind) {
    case Kind::data:
      bytes_received_ += piece.data.size();
      kept_body_.append(piece.data);
      if (kept_body_.size() > worker_.limits().retry_buffer_bytes) body_overflow_ = true;
      co_return Failure::none;
    case Kind::end:
      body_complete_ = true;
      co_return Failure::none;
    case Kind::error:
      co_return Failure::downstream_bad;
    case Kind::timeout:
      co_return Failure::downstream_timeout;
    case Kind::closed:
      break;
  }
  co_return Failure::downstream_closed;
}

awaitable<void> RequestLifecycle::answer_downstream_failure(Failure f) {
  conn_.set_close();
  if (conn_.status_sent != 0) co_return;
  if (f == Failure::downstream_bad) {
    co_await reply(LocalReply::bad_request, "malformed request body", true);
  } else if (f == Failure::downstream_timeout) {
    co_await reply(LocalReply::request_timeout, "the request body stalled", true);
  } else {
    flag_ = kDownstreamDisconnect;
  }
}

awaitable<void> RequestLifecycle::forward() {
  const auto& limits = worker_.limits();
  if (has_body_ && !body_complete_) {
    if (auto f = co_await read_first_body_piece(); f != Failure::none) {
      co_await answer_downstream_failure(f);
      co_return;
    }
  }
  if (target_.timeouts.per_request.count() > 0) deadline_ = start_ + target_.timeouts.per_request;
  if (target_.to_app && view_->app_limit) {
    if (!co_await acquire_app_slot()) {
      ++worker_.stats().overflow[node_label_ ? node_label_ : metrics::empty_label()];
      co_await reply(LocalReply::overflow, "the application's connection pool is full");
      co_return;
    }
    holds_app_slot_ = true;
  }
  struct SlotGuard {
    RequestLifecycle& self;
    ~SlotGuard() {
      if (self.holds_app_slot_) self.view_->app_limit->active.fetch_sub(1, std::memory_order_relaxed);
    }
  } slot_guard{*this};
  std::vector<const mesh::Endpoint*> tried;
  std::uint32_t attempt = 0;       // retries counted against maxRetries
  std::uint32_t fresh_retries = 0;  // reused-connection races, not counted
  std::shared_ptr<mesh::Endpoint> outside;
  if (target_.outside_mesh) {
    outside = co_await resolve_outside();
    if (!outside) {
      co_await reply(LocalReply::upstream_connect_failure, "cannot resolve '" + target_.outside_host + "'");
      co_return;
    }
  }
  while (true) {
    auto ep = outside ? outside : pick_endpoint(tried);
    if (!ep) {
      co_await reply(LocalReply::no_healthy_upstream, "the target virtual node has no endpoints");
      co_return;
    }
    tried.push_back(ep.get());
    if (view_->access_log) upstream_ = ep;  // for the access log
    mesh::NodeState* node_state = nullptr;
    if (!target_.to_app && !target_.outside_mesh && target_.cluster < view_->endpoints->size()) {
      node_state = (*view_->endpoints)[target_.cluster]->node_state.get();
    }
    ActiveRequest active(ep, node_state, attempt > 0);
    const bool replayable = !has_body_ || (!body_overflow_ && (body_complete_ || kept_body_.empty()));
    auto can_retry_now = [&](bool replayable_body) {
      return attempt < target_.retry.max_retries && replayable_body && retry_budget_allows();
    };
    const bool can_retry = can_retry_now(replayable);
    auto retry_counted = [&]() {
      ++attempt;
      ++retries_;
      ++worker_.stats().retries[{target_.service ? target_.service->label : metrics::empty_label(),
                                 target_.route ? target_.route->label : metrics::empty_label()}];
    };

    error_code ec;
    const auto connect_timeout = limits.upstream_connect_timeout;
    auto* gauge = &worker_.stats().upstream_connections[node_label_ ? node_label_ : metrics::empty_label()];
    auto up = co_await worker_.pool().acquire(
        ep, connect_timeout, HeadLimits{limits.max_request_headers_bytes, limits.max_request_headers_count}, gauge, ec);
    if (!up) {
      report_outcome(*ep, true);  // connect failures count as server errors
      if (can_retry && target_.retry.on_connect_failure) {
        retry_counted();
        co_await backoff(attempt);
        continue;
      }
      co_await reply(LocalReply::upstream_connect_failure, ep->text + ": " + ec.message());
      co_return;
    }
    const bool reused = up->reused;

    bool wrote_any = false;
    Failure failure = co_await send_request(*up, wrote_any);
    if (failure == Failure::downstream_bad || failure == Failure::downstream_timeout ||
        failure == Failure::downstream_closed) {
      // The client sent a broken body, stalled or went away: the upstream request is
      // abandoned with its connection.
      up.reset();
      co_await answer_downstream_failure(failure);
      co_return;
    }
    const auto now = Clock::now();
    if (failure == Failure::none) {
      Clock::time_point try_deadline = deadline_.value_or(now + std::chrono::hours(24 * 365));
      bool per_try = false;
      if (target_.retry.per_try_timeout.count() > 0 && now + target_.retry.per_try_timeout < try_deadline) {
        try_deadline = now + target_.retry.per_try_timeout;
        per_try = true;
      }
      failure = co_await read_response_head(*up, try_deadline, per_try);
    }
    const bool replayable_now = !has_body_ || (!body_overflow_ && body_complete_);
    if (failure == Failure::reset && reused && fresh_retries < 3 &&
        (!wrote_any || (idempotent(head_.method) && replayable_now))) {
      // The pooled connection was closed under us ("503 UC"): a fresh one, not a retry.
      ++fresh_retries;
      tried.pop_back();
      continue;
    }
    if (failure == Failure::timeout || failure == Failure::per_try_timeout) {
      ++worker_.stats().timeouts[{target_.service ? target_.service->label : metrics::empty_label(),
                                  node_label_ ? node_label_ : metrics::empty_label()}];
      // The upstream request is abandoned: its connection is closed, never reused.
      up.reset();
      report_outcome(*ep, true);
      if (failure == Failure::per_try_timeout && can_retry_now(replayable_now)) {
        retry_counted();
        co_await backoff(attempt);
        continue;
      }
      co_await reply(LocalReply::upstream_timeout, "the upstream did not answer in time");
      co_return;
    }
    if (failure == Failure::reset) {
      up.reset();
      report_outcome(*ep, true);
      if (can_retry_now(replayable_now) && target_.retry.on_reset) {
        retry_counted();
        co_await backoff(attempt);
        continue;
      }
      co_await reply(LocalReply::upstream_reset, ep->text + " closed the connection before a full response");
      co_return;
    }
    const int status = up->parser.head().status;
    keep_logged_response_headers(up->parser.head());
    report_outcome(*ep, status >= 500);
    if (target_.retry.retries_status(status) && can_retry_now(replayable_now)) {
      up.reset();  // not reading the rest of this response: the connection cannot be reused
      retry_counted();
      co_await backoff(attempt);
      continue;
    }
    if (attempt > 0 && target_.retry.retries_status(status)) {
      flag_ = attempt == target_.retry.max_retries ? kRetriesExhausted : kRetryBudgetExhausted;
    }
    const bool ok = co_await stream_response(*up);
    if (!ok) {
      // A failure after the response head went downstream: reset the downstream
      // connection so the client sees a truncated response, never a complete one.
      conn_.set_close();
      error_code ignored;
      conn_.socket().set_option(asio::socket_base::linger(true, 0), ignored);
      conn_.socket().close(ignored);
      if (flag_.empty()) flag_ = kUpstreamResetAfterHeaders;
      co_return;
    }
    if (up->parser.keep_alive() && !up->parser.in_message()) {
      worker_.pool().release(std::move(up),
                             target_.to_app ? limits.upstream_idle_timeout_app : limits.upstream_idle_timeout_mesh,
                             limits.max_idle_upstream_per_endpoint);
    }
    co_return;
  }
}

void RequestLifecycle::record() {
  auto& stats = worker_.stats();
  const auto* service = target_.service ? target_.service->label : metrics::empty_label();
  const auto* route = target_.route ? target_.route->label : metrics::empty_label();
  const auto* node = node_label_ ? node_label_ : metrics::empty_label();
  const auto status = static_cast<std::uint16_t>(conn_.status_sent);
  ++stats.requests[{conn_.direction(), service, route, node, status}];
  const double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
  stats.durations[{conn_.direction(), service, node}].observe(seconds);
  if (view_->access_log) {
    AccessLogEntry e{conn_.direction(), head_, path_, host_, conn_.status_sent,
                     conn_.bytes_sent, seconds, *service, *route, *node, flag_, retries_,
                     request_id_.empty() ? head_.get("x-request-id").value_or("") : std::string_view(request_id_)};
    e.bytes_received = bytes_received_;
    if (upstream_) e.upstream_host = upstream_->text;
    e.remote_ip = conn_.peer();
    if (!response_values_.empty()) e.response_headers = &response_values_;
    std::string remote, local;
    if (view_->access_log->needs_addresses()) {
      error_code ec;
      if (auto r = conn_.socket().remote_endpoint(ec); !ec) remote = net::endpoint_text(net::from_asio(r.address()), r.port());
      if (auto l = conn_.socket().local_endpoint(ec); !ec) local = net::endpoint_text(net::from_asio(l.address()), l.port());
      e.remote_address = remote;
      e.local_address = local;
    }
    view_->access_log->write(e);
  }
}

void RequestLifecycle::keep_logged_response_headers(const MessageHead& response) {
  if (!view_->access_log) return;
  const auto& names = view_->access_log->response_header_names();
  if (names.empty()) return;
  response_values_.assign(names.size(), std::string());
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (auto v = response.get(names[i])) response_values_[i] = std::string(*v);
  }
}

}  // namespace meshd::proxy
