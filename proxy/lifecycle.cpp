#include "proxy/lifecycle.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/container/small_vector.hpp>
#include <charconv>
#include <cstdio>

#include "mesh/compiled/request_view.hpp"
#include "net/asio_address.hpp"
#include "proxy/access_log.hpp"
#include "proxy/grpc.hpp"

namespace meshd::proxy {

namespace {

bool idempotent(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "PUT" || method == "DELETE" ||
         method == "TRACE";
}

std::string_view uuid4(std::mt19937_64& rng, std::array<char, 36>& out) {
  // A random (version 4) UUID, formatted without printf (it showed in profiles).
  static constexpr char hex[] = "0123456789abcdef";
  std::uint64_t a = rng(), b = rng();
  a = (a & ~0xf000ULL) | 0x4000ULL;              // version 4
  b = (b & ~(3ULL << 62)) | (2ULL << 62);        // variant 10
  out.fill('-');
  const std::uint64_t words[2] = {a, b};
  int nibble = 0;
  for (int i = 0; i < 36; ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) continue;
    const std::uint64_t w = words[nibble / 16];
    out[static_cast<std::size_t>(i)] = hex[(w >> (60 - 4 * (nibble % 16))) & 0xf];
    ++nibble;
  }
  return std::string_view(out.data(), out.size());
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

ErrorKind downstream_error(ResetCause c) {
  return c == ResetCause::malformed ? ErrorKind::downstream_malformed
         : c == ResetCause::timeout ? ErrorKind::downstream_timeout
                                    : ErrorKind::downstream_closed;
}

}  // namespace

// The two pipelines, side by side: what each direction applies to a request. Nothing
// else in the lifecycle asks which direction it serves.
//                                   tunnel gate  rate limit  app slot  destination
constexpr RequestLifecycle::Pipeline RequestLifecycle::kOutbound{true, false, false, Pipeline::To::mesh};
constexpr RequestLifecycle::Pipeline RequestLifecycle::kInbound{true, true, true, Pipeline::To::app};

RequestLifecycle::RequestLifecycle(DownstreamStream& down)
    : down_(down),
      worker_(down.worker()),
      view_(down.worker().view()),
      req_(down.request()),
      pipeline_(down.direction() == metrics::Direction::ingress ? kInbound : kOutbound) {}

awaitable<void> RequestLifecycle::reply(LocalReply r, std::string_view detail) {
  flag_ = info(r).code;
  if (req_.grpc) grpc_status_ = grpc_status(r);
  co_await down_.send_local_reply(r, detail);
}

void RequestLifecycle::failed(ErrorKind kind, std::string detail) {
  failure_.emplace(Failure{kind, std::move(detail)});
}

awaitable<void> RequestLifecycle::fail(ErrorKind kind, std::string_view detail) {
  const auto& row = describe(kind);
  flag_ = row.flag;
  if (row.source == ErrorSource::downstream) down_.close_after();
  if (row.reply && down_.status_sent() == 0 && kind != ErrorKind::downstream_closed) {
    if (req_.grpc) grpc_status_ = grpc_status(*row.reply);
    co_await down_.send_local_reply(*row.reply, detail);
  }
}

const IngressView* RequestLifecycle::ingress() const {
  const auto i = down_.listener();
  return i < view_->ingress.size() ? &view_->ingress[i] : nullptr;
}

std::optional<std::uint32_t> RequestLifecycle::rate_limited() {
  const auto* in = ingress();
  if (in == nullptr || !in->rate_limit) return std::nullopt;
  auto wait = in->rate_limit->take(Clock::now().time_since_epoch());
  if (!wait) return std::nullopt;
  node_label_ = view_->node_label;
  return static_cast<std::uint32_t>(std::max<std::int64_t>(
      1, std::chrono::duration_cast<std::chrono::seconds>(*wait + std::chrono::milliseconds(999)).count()));
}

awaitable<void> RequestLifecycle::run() {
  start_ = Clock::now();
  body_complete_ = !req_.has_body;

  // The request filters of the pipeline. The tunnel gate: tunnels do not exist yet,
  // so CONNECT and Upgrade get 501 (h2c is not refused: the adapter dropped Upgrade
  // and HTTP2-Settings, which are hop-by-hop, and the request is served as HTTP/1.1).
  // The rate limit: the node's listener's.
  if (pipeline_.tunnel_gate && req_.method == "CONNECT") {
    down_.close_after();
    co_await reply(LocalReply::not_implemented, "CONNECT tunnels are not supported");
  } else if (pipeline_.tunnel_gate && !req_.upgrade.empty()) {
    down_.close_after();
    co_await reply(LocalReply::not_implemented, "protocol upgrades are not supported");
  } else if (auto wait = pipeline_.rate_limit ? rate_limited() : std::nullopt; wait) {
    flag_ = info(LocalReply::rate_limited).code;
    if (req_.grpc) grpc_status_ = grpc_status(LocalReply::rate_limited);
    co_await down_.send_local_reply(LocalReply::rate_limited, "", *wait);
  } else if (route()) {
    co_await forward();
  }
  // route() and forward() leave a failure to answer here, not where it happened: a
  // coroutine's frame keeps every temporary of every co_await, and frames over
  // 1 KiB miss Asio's per-thread frame cache (docs/benchmarks.md).
  if (failure_) co_await fail(failure_->kind, failure_->detail);
  record();
}

bool RequestLifecycle::route() {
  const auto& snap = *view_->snap;
  std::string_view target = req_.path;
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
  host_ = std::string(req_.authority);
  if (auto id = req_.get("x-request-id"); !id) request_id_ = uuid4(worker_.rng(), request_id_buf_);

  if (pipeline_.to == Pipeline::To::app) {
    const auto* in = ingress();
    target_.to_app = true;
    target_.retry = mesh::RetryPolicySpec::app_mesh_default();
    target_.retry.max_retries = 0;  // the callers' sidecars retry; this hop only fixes pool races
    node_label_ = view_->node_label;
    if (in == nullptr || in->app == nullptr) {
      failed(ErrorKind::no_endpoints, in != nullptr && in->listener_port == 0
                                                 ? "the node no longer has this listener"
                                                 : "no application port");
      return false;
    }
    target_.timeouts = in->timeouts;
    target_.upstream = in->app_protocol;
    return true;
  }

  auto parsed = mesh::parse_authority(req_.authority);
  if (!parsed) {
    down_.close_after();
    failed(ErrorKind::no_authority,
                  req_.authority.empty() ? "the request has no authority (Host)" : "invalid authority");
    return false;
  }
  mesh::RequestView rv;
  rv.method = req_.method;
  rv.scheme = req_.scheme;
  rv.path = std::string_view(path_).substr(0, path_size);
  rv.query = query;
  rv.headers = req_.fields;  // the parsed fields, not a copy
  const auto d = snap.route(parsed->host, parsed->port, rv);
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
        return true;
      }
      failed(error_for(d.outcome),
                    "'" + parsed->host + "' is not a backend of virtual node '" + snap.node().name + "'");
      return false;
    case Outcome::no_provider:
      failed(error_for(d.outcome), "virtual service has no provider");
      return false;
    case Outcome::no_listener: {
      std::string ports;
      for (const auto& l : *d.service->listeners) ports += (ports.empty() ? "" : ", ") + std::to_string(l.port);
      failed(error_for(d.outcome), "no router listener for this port (listeners: " + ports + ")");
      return false;
    }
    case Outcome::no_route:
      failed(error_for(d.outcome), "no route matches");
      return false;
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
  const auto& cluster = snap.clusters()[target_.cluster];
  node_label_ = cluster.label;
  if (cluster.protocol == mesh::Protocol::http2 || cluster.protocol == mesh::Protocol::grpc) {
    target_.upstream = UpstreamProtocol::http2;
  }
  return true;
}

std::shared_ptr<mesh::Endpoint> RequestLifecycle::pick_endpoint(std::span<const mesh::Endpoint* const> tried) {
  if (target_.to_app) return ingress()->app;
  const auto& table = *view_->endpoints;
  if (target_.cluster >= table.size() || !table[target_.cluster]) return nullptr;
  const auto& ce = *table[target_.cluster];
  const auto& cluster = view_->snap->clusters()[target_.cluster];
  mesh::LbInput in;
  in.endpoints = &ce.endpoints;
  in.ring = &ce.ring;
  in.avoid = tried;
  if (const auto& lb = cluster.node->spec.load_balancing) {
    in.policy = lb->policy;
    if (lb->hash_on_header) in.hash_key = req_.get(*lb->hash_on_header);
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

std::chrono::milliseconds RequestLifecycle::route_idle() const {
  return target_.timeouts.idle.count() > 0 ? target_.timeouts.idle : std::chrono::milliseconds(300000);
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

void RequestLifecycle::keep_body(std::string_view piece, bool first) {
  bytes_received_ += piece.size();
  if (first) {
    // Kept whatever its size: the first attempt sends it from here (a piece over the
    // retry buffer only means no replay).
    kept_body_.append(piece);
    body_overflow_ = kept_body_.size() > worker_.limits().retry_buffer_bytes;
  } else if (!body_overflow_ && kept_body_.size() + piece.size() <= worker_.limits().retry_buffer_bytes) {
    kept_body_.append(piece);
  } else {
    body_overflow_ = true;
    kept_body_.clear();
    kept_body_.shrink_to_fit();
  }
}

void RequestLifecycle::keep_trailers(std::span<const Field> trailers) {
  // The downstream's trailers are views into its buffers: kept as copies, for the
  // upload and any replay.
  std::size_t size = 0;
  for (const auto& t : trailers) size += t.name.size() + t.value.size();
  kept_trailer_bytes_.clear();
  kept_trailer_bytes_.reserve(size);
  kept_trailers_.clear();
  for (const auto& t : trailers) {
    const auto at = kept_trailer_bytes_.size();
    kept_trailer_bytes_ += t.name;
    kept_trailer_bytes_ += t.value;
    kept_trailers_.push_back({std::string_view(kept_trailer_bytes_).substr(at, t.name.size()),
                              std::string_view(kept_trailer_bytes_).substr(at + t.name.size(), t.value.size())});
  }
}

awaitable<std::optional<ErrorKind>> RequestLifecycle::read_first_body_piece() {
  // The first piece of the body is read before anything goes upstream, so that a
  // body broken at its start (a bad chunk size) is refused with nothing forwarded,
  // and a small body is sent whole with its length.
  auto ev = co_await down_.read_body(body_read_timeout());
  switch (ev.kind) {
    case BodyEvent::Kind::data:
      keep_body(ev.data, true);
      co_return std::nullopt;
    case BodyEvent::Kind::end:
      keep_trailers(ev.trailers);
      body_complete_ = true;
      co_return std::nullopt;
    case BodyEvent::Kind::reset:
      break;
  }
  co_return downstream_error(ev.cause);
}

awaitable<void> RequestLifecycle::upload(UpstreamExchange& up) {
  // The rest of the request body, while forward() reads the response: a response may
  // begin before the request ends (an early 413, a long poll, a streaming upload).
  for (std::uint64_t i = 0; !stop_upload_; ++i) {
    auto ev = co_await down_.read_body(body_read_timeout());
    if (stop_upload_) break;
    if (ev.kind == BodyEvent::Kind::data) {
      keep_body(ev.data);
      if (co_await up.send_data(ev.data, route_idle())) break;  // the upstream failed: forward() sees it
      continue;
    }
    if (ev.kind == BodyEvent::Kind::end) {
      keep_trailers(ev.trailers);
      body_complete_ = true;
      co_await up.send_end(kept_trailers_);
      break;
    }
    // The client sent a broken body, stalled or went away: the upstream request is
    // abandoned with its connection (which wakes forward()).
    upload_failure_ = downstream_error(ev.cause);
    up.abandon();
    break;
  }
  uploading_ = false;
  upload_done_->cancel();
}

awaitable<void> RequestLifecycle::finish_upload(UpstreamExchange& up, bool stop) {
  if (!uploading_) co_return;
  if (stop) {
    stop_upload_ = true;
    down_.cancel_read();
    up.abandon();
  }
  for (int i = 0; uploading_ && i < 1000000; ++i) co_await upload_done_->async_wait(use_tuple);
}

awaitable<std::optional<Error>> RequestLifecycle::exchange(UpstreamExchange& up, ResponseHead& rh,
                                                           Clock::time_point try_deadline, bool per_try) {
  OutgoingRequest out;
  out.head = &req_;
  out.path = path_;
  out.authority = host_;
  out.forwarded_for = down_.peer();
  out.request_id = request_id_;
  out.has_body = req_.has_body;
  out.idle = route_idle();
  // A body kept whole goes with its length (unless it has trailers, which need a
  // framing that can carry them); otherwise it streams with the client's length,
  // or without one.
  const bool whole = body_complete_ && !body_overflow_;
  if (req_.has_body && whole && kept_trailers_.empty()) {
    out.length = kept_body_.size();
  } else if (req_.has_body && !whole) {
    out.length = req_.length;
  }
  const bool ends_here = body_complete_ && kept_trailers_.empty();
  if (auto err = co_await up.send_head(out, kept_body_, ends_here)) co_return err;
  if (body_complete_ && !ends_here) {
    if (auto err = co_await up.send_end(kept_trailers_)) co_return err;
  }
  if (!body_complete_) {
    uploading_ = true;
    stop_upload_ = false;
    if (!upload_done_) upload_done_ = std::make_unique<asio::steady_timer>(worker_.ioc(), Clock::time_point::max());
    upload_done_->expires_at(Clock::time_point::max());
    asio::co_spawn(worker_.ioc(), upload(up), asio::detached);
  }
  for (int interim = 0;; ++interim) {
    if (auto err = co_await up.read_head(try_deadline, per_try, rh)) co_return err;
    if (rh.status >= 200 || interim >= 100) break;
    // 1xx (103 Early Hints...): passed on as RFC 9110 §15.2 asks of a proxy.
    if (!co_await down_.send_interim(rh)) co_return Error{ErrorKind::downstream_closed, false, ""};
  }
  co_return std::nullopt;
}

awaitable<RequestLifecycle::Streamed> RequestLifecycle::stream_response(UpstreamExchange& up, const ResponseHead& rh) {
  down_.send_head(rh);  // held, to go out with the first piece
  const auto idle = route_idle();
  std::optional<BodyEvent> ev = up.next_body();
  for (std::uint64_t i = 0;; ++i) {
    if (!ev) {
      // The upstream's next bytes are not here yet: what is held goes now.
      if (!co_await down_.flush()) co_return Streamed::downstream_gone;
      const auto until = deadline_ ? std::min(*deadline_, Clock::now() + idle) : Clock::now() + idle;
      ev = co_await up.read_body(until);
    }
    switch (ev->kind) {
      case BodyEvent::Kind::data: {
        // A piece that ends the body goes out with the end (one send).
        const std::string_view piece = ev->data;
        ev = up.next_body();
        if (ev && ev->kind == BodyEvent::Kind::end) {
          note_grpc_status(ev->trailers);
          co_return co_await down_.send_end(piece, ev->trailers) ? Streamed::complete : Streamed::downstream_gone;
        }
        if (!co_await down_.send_data(piece)) co_return Streamed::downstream_gone;
        break;
      }
      case BodyEvent::Kind::end:
        note_grpc_status(ev->trailers);
        co_return co_await down_.send_end({}, ev->trailers) ? Streamed::complete : Streamed::downstream_gone;
      case BodyEvent::Kind::reset:
        if (ev->cause == ResetCause::timeout) {
          flag_ = info(LocalReply::upstream_timeout).code;
          ++worker_.stats().timeouts[{target_.service ? target_.service->label : metrics::empty_label(),
                                      node_label_ ? node_label_ : metrics::empty_label()}];
        }
        co_return Streamed::upstream_broken;
    }
  }
}

awaitable<void> RequestLifecycle::forward() {
  const auto& limits = worker_.limits();
  if (!body_complete_) {
    if (auto f = co_await read_first_body_piece()) {
      failed(*f, *f == ErrorKind::downstream_malformed ? "malformed request body" : "the request body stalled");
      co_return;
    }
  }
  if (target_.timeouts.per_request.count() > 0) deadline_ = start_ + target_.timeouts.per_request;
  if (req_.grpc) {
    // SPEC §7: the caller's grpc-timeout caps the per-request timeout (it is passed on
    // as it came).
    if (auto value = req_.get("grpc-timeout")) {
      if (auto timeout = parse_grpc_timeout(*value)) {
        const auto cap = start_ + *timeout;
        if (!deadline_ || cap < *deadline_) deadline_ = cap;
      }
    }
  }
  const auto* in = pipeline_.app_slot ? ingress() : nullptr;
  if (in != nullptr && in->app_limit) {
    // The local app's connectionPool.http (SPEC §1: the node's own sidecar applies it).
    const auto give_up = deadline_.value_or(Clock::now() + std::chrono::seconds(15));
    if (!co_await in->app_limit->acquire(worker_.ioc().get_executor(), give_up)) {
      ++worker_.stats().overflow[node_label_ ? node_label_ : metrics::empty_label()];
      failed(ErrorKind::overflow, "the application's connection pool is full");
      co_return;
    }
    holds_app_slot_ = true;
  }
  struct SlotGuard {
    RequestLifecycle& self;
    ~SlotGuard() {
      if (self.holds_app_slot_) self.ingress()->app_limit->release();
    }
  } slot_guard{*this};
  boost::container::small_vector<const mesh::Endpoint*, 4> tried;
  std::uint32_t attempt = 0;       // retries counted against maxRetries
  std::uint32_t fresh_retries = 0;  // reused-connection races, not counted
  std::shared_ptr<mesh::Endpoint> outside;
  if (target_.outside_mesh) {
    outside = co_await resolve_outside();
    if (!outside) {
      failed(ErrorKind::connect_failure, "cannot resolve '" + target_.outside_host + "'");
      co_return;
    }
  }
  // One attempt per turn: pick an endpoint, lease an exchange, send, read the head;
  // a failure loops back while the retry policy, the kept body and the budget allow.
  while (true) {
    auto ep = outside ? outside : pick_endpoint(std::span(tried.data(), tried.size()));
    if (!ep) {
      failed(ErrorKind::no_endpoints, "the target virtual node has no endpoints");
      co_return;
    }
    tried.push_back(ep.get());
    if (view_->access_log) upstream_ = ep;  // for the access log
    mesh::NodeState* node_state = nullptr;
    if (!target_.to_app && !target_.outside_mesh && target_.cluster < view_->endpoints->size()) {
      node_state = (*view_->endpoints)[target_.cluster]->node_state.get();
    }
    ActiveRequest active(ep, node_state, attempt > 0);
    auto replayable = [&] { return !req_.has_body || (!body_overflow_ && body_complete_); };
    auto can_retry = [&] { return attempt < target_.retry.max_retries && replayable() && retry_budget_allows(); };
    auto retry_counted = [&]() {
      ++attempt;
      ++retries_;
      ++worker_.stats().retries[{target_.service ? target_.service->label : metrics::empty_label(),
                                 target_.route ? target_.route->label : metrics::empty_label()}];
    };

    error_code ec;
    auto* gauge = &worker_.stats().upstream_connections[node_label_ ? node_label_ : metrics::empty_label()];
    // A named key: GCC 12 mishandles temporaries with destructors in a co_await
    // expression (GCC bugs 99576 and 100611).
    const PoolKey key{ep.get(), target_.upstream, {}};
    auto up = co_await worker_.pool().acquire(
        key, ep, limits.upstream_connect_timeout,
        HeadLimits{limits.max_request_headers_bytes, limits.max_request_headers_count}, gauge, ec);
    if (!up) {
      report_outcome(*ep, true);  // connect failures count as server errors
      if (!body_overflow_ && (body_complete_ || kept_body_.empty() || !req_.has_body) && can_retry() &&
          target_.retry.on_connect_failure) {
        retry_counted();
        co_await backoff(attempt);
        continue;
      }
      failed(ErrorKind::connect_failure, ep->text + ": " + ec.message());
      co_return;
    }

    const auto now = Clock::now();
    Clock::time_point try_deadline = deadline_.value_or(now + std::chrono::hours(24 * 365));
    bool per_try = false;
    if (target_.retry.per_try_timeout.count() > 0 && now + target_.retry.per_try_timeout < try_deadline) {
      try_deadline = now + target_.retry.per_try_timeout;
      per_try = true;
    }
    ResponseHead rh;
    auto err = co_await exchange(*up, rh, try_deadline, per_try);
    if (err && uploading_) co_await finish_upload(*up, true);
    if (upload_failure_ || (err && err->kind == ErrorKind::downstream_closed)) {
      // The client sent a broken body, stalled or went away: the upstream request
      // was abandoned with its connection.
      const auto kind = upload_failure_.value_or(ErrorKind::downstream_closed);
      if (uploading_) co_await finish_upload(*up, true);
      up.reset();
      failed(kind, kind == ErrorKind::downstream_malformed ? "malformed request body"
                                                                  : "the request body stalled");
      co_return;
    }
    if (err && err->kind == ErrorKind::upstream_refused && fresh_retries < 3 && replayable()) {
      // SPEC §7: a stream the server refused or left unprocessed (REFUSED_STREAM, a
      // GOAWAY) goes to another connection whatever the retry policy says (when the
      // body can be sent again whole).
      ++fresh_retries;
      tried.pop_back();
      up.reset();
      continue;
    }
    if (err) {
      const bool reset = err->kind == ErrorKind::upstream_reset || err->kind == ErrorKind::upstream_protocol ||
                         err->kind == ErrorKind::upstream_refused;
      // retry_safe: nothing of the request went out on that connection.
      if (reset && up->reused() && fresh_retries < 3 && (err->retry_safe || (idempotent(req_.method) && replayable()))) {
        // The pooled connection was closed under us ("503 UC"): a fresh one, not a retry.
        ++fresh_retries;
        tried.pop_back();
        continue;
      }
      up.reset();  // an exchange that failed is never reused
      report_outcome(*ep, true);
      if (err->kind == ErrorKind::upstream_timeout || err->kind == ErrorKind::per_try_timeout) {
        ++worker_.stats().timeouts[{target_.service ? target_.service->label : metrics::empty_label(),
                                    node_label_ ? node_label_ : metrics::empty_label()}];
        if (err->kind == ErrorKind::per_try_timeout && can_retry()) {
          retry_counted();
          co_await backoff(attempt);
          continue;
        }
        failed(err->kind, "the upstream did not answer in time");
        co_return;
      }
      if (can_retry() && target_.retry.on_reset) {
        retry_counted();
        co_await backoff(attempt);
        continue;
      }
      failed(ErrorKind::upstream_reset, ep->text + " closed the connection before a full response");
      co_return;
    }
    keep_logged_response_headers(rh);
    report_outcome(*ep, rh.status >= 500);
    if (req_.grpc) note_grpc_status(rh.fields);  // a trailers-only answer carries it in its head
    // grpcRetryEvents: on the grpc-status of a trailers-only answer (a status in
    // trailers comes after the response has gone downstream).
    const bool grpc_retry = req_.grpc && grpc_status_ && target_.retry.retries_grpc(*grpc_status_);
    if ((target_.retry.retries_status(rh.status) || grpc_retry) && can_retry()) {
      grpc_status_.reset();
      // The upload's last step may still be under way on this exchange: it ends first.
      if (uploading_) co_await finish_upload(*up, true);
      up.reset();  // not reading the rest of this response: the connection cannot be reused
      retry_counted();
      co_await backoff(attempt);
      continue;
    }
    if (attempt > 0 && (target_.retry.retries_status(rh.status) || grpc_retry)) {
      flag_ = attempt == target_.retry.max_retries ? kRetriesExhausted : kRetryBudgetExhausted;
    }
    const auto streamed = co_await stream_response(*up, rh);
    // The response is done: a request body still on its way is not wanted any more.
    co_await finish_upload(*up, true);
    if (upload_failure_ && streamed == Streamed::complete) {
      down_.close_after();  // the rest of a broken body cannot be skipped
    } else if (streamed != Streamed::complete) {
      // A failure after the response head went downstream: the client sees a
      // truncated response, never a complete one.
      down_.abort();
      if (flag_.empty()) flag_ = describe(ErrorKind::reset_after_headers).flag;
      co_return;
    }
    worker_.pool().release(std::move(up),
                           target_.to_app ? limits.upstream_idle_timeout_app : limits.upstream_idle_timeout_mesh,
                           limits.max_idle_upstream_per_endpoint);
    co_return;
  }
}

void RequestLifecycle::note_grpc_status(std::span<const Field> fields) {
  if (!req_.grpc) return;
  if (auto v = find_field(fields, "grpc-status")) {
    int code = 0;
    const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), code);
    if (ec == std::errc() && end == v->data() + v->size() && code >= 0 && code < 1000) grpc_status_ = code;
  }
}

void RequestLifecycle::record() {
  auto& stats = worker_.stats();
  const auto* service = target_.service ? target_.service->label : metrics::empty_label();
  const auto* route = target_.route ? target_.route->label : metrics::empty_label();
  const auto* node = node_label_ ? node_label_ : metrics::empty_label();
  const auto status = static_cast<std::uint16_t>(down_.status_sent());
  ++stats.requests[{down_.direction(), service, route, node, status}];
  if (req_.grpc && grpc_status_) {
    ++stats.grpc_responses[{down_.direction(), service, route, node, static_cast<std::uint16_t>(*grpc_status_)}];
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
  stats.durations[{down_.direction(), service, node}].observe(seconds);
  if (view_->access_log) {
    AccessLogEntry e{down_.direction(), req_, path_, host_, down_.status_sent(),
                     down_.bytes_sent(), seconds, *service, *route, *node, flag_, retries_,
                     request_id_.empty() ? req_.get("x-request-id").value_or("") : request_id_};
    e.bytes_received = bytes_received_;
    if (upstream_) e.upstream_host = upstream_->text;
    e.remote_ip = down_.peer();
    if (!response_values_.empty()) e.response_headers = &response_values_;
    std::string remote, local;
    if (view_->access_log->needs_addresses()) {
      remote = down_.remote_address();
      local = down_.local_address();
      e.remote_address = remote;
      e.local_address = local;
    }
    view_->access_log->write(e);
  }
}

void RequestLifecycle::keep_logged_response_headers(const ResponseHead& response) {
  if (!view_->access_log) return;
  const auto& names = view_->access_log->response_header_names();
  if (names.empty()) return;
  response_values_.assign(names.size(), std::string());
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (auto v = response.get(names[i])) response_values_[i] = std::string(*v);
  }
}

}  // namespace meshd::proxy
