#include "proxy/upstream.hpp"

#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <functional>

#include "net/asio_address.hpp"
#include "proxy/http1_write.hpp"

namespace meshd::proxy {

namespace {
// A response body is read from the upstream in pieces of up to 64 KiB: a body that is
// already waiting in the socket goes downstream in one send, not four, which halves
// the system calls and wakes the client once. The buffer is released when the
// connection goes back to the pool, so only streaming responses hold it.
constexpr std::size_t kBodyRead = net::ByteBuffer::kLargeBlock;
constexpr std::size_t kHeadRead = 16384;

Error upstream_error(ErrorKind kind, bool retry_safe, std::string detail) {
  return Error{kind, retry_safe, std::move(detail)};
}
}  // namespace

std::size_t PoolKeyHash::operator()(const PoolKey& k) const noexcept {
  std::size_t h = std::hash<const void*>()(k.endpoint);
  h ^= static_cast<std::size_t>(k.protocol) * 0x9e3779b97f4a7c15ULL;
  if (!k.tls_identity.empty()) h ^= std::hash<std::string>()(k.tls_identity) << 1;
  return h;
}

void UpstreamConnection::count_connection() {
  endpoint_->connections.fetch_add(1, std::memory_order_relaxed);
  counted_ = true;
}

UpstreamConnection::~UpstreamConnection() {
  if (counted_) endpoint_->connections.fetch_sub(1, std::memory_order_relaxed);
  if (gauge != nullptr) --*gauge;
}

awaitable<error_code> UpstreamConnection::connect(std::chrono::milliseconds timeout) {
  watchdog_.arm(stream_, timeout);
  auto [err] = co_await stream_.tcp_socket().async_connect(tcp::endpoint(net::to_asio(endpoint_->ip), endpoint_->port),
                                                            use_tuple);
  const bool timed_out = watchdog_.fired();
  watchdog_.disarm();
  if (err) co_return timed_out ? make_error_code(asio::error::timed_out) : err;
  error_code ignored;
  stream_.tcp_socket().set_option(tcp::no_delay(true), ignored);
  co_return error_code{};
}

bool UpstreamConnection::still_good() {
  char byte;
  const ssize_t n = ::recv(stream_.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

void UpstreamConnection::begin_exchange() {
  wrote_any_ = false;
  request_done_ = false;
  response_done_ = false;
  pending_consume_ = 0;
  trailers_.clear();
}

bool UpstreamConnection::reusable() const {
  return !broken_ && request_done_ && response_done_ && stream_.is_open() && parser_.keep_alive() &&
         !parser_.in_message();
}

void UpstreamConnection::abandon() {
  broken_ = true;
  stream_.cancel();
}

awaitable<std::optional<Error>> UpstreamConnection::write(std::span<const asio::const_buffer> bufs,
                                                          std::chrono::milliseconds idle) {
  watchdog_.arm(stream_, idle, Watchdog::write);
  // One buffer goes with send(), several with sendmsg() (a little dearer).
  auto [ec, n] = bufs.size() == 1 ? co_await stream_.async_write(bufs.front()) : co_await stream_.async_write(bufs);
  watchdog_.disarm(Watchdog::write);
  if (n > 0) wrote_any_ = true;
  if (ec) {
    broken_ = true;
    co_return upstream_error(ErrorKind::upstream_reset, !wrote_any_, endpoint_->text + ": " + ec.message());
  }
  co_return std::nullopt;
}

awaitable<std::optional<Error>> UpstreamConnection::send_head(const OutgoingRequest& r, std::string_view body,
                                                              bool end) {
  head_request_ = r.head->method == "HEAD";
  parser_.expect_no_body(head_request_);
  framing_ = r.length ? Framing::length : r.has_body ? Framing::chunked : Framing::none;
  scratch_.clear();
  build_request_head(r, scratch_);
  std::array<asio::const_buffer, 4> bufs;
  std::size_t n = 0;
  bufs[n++] = asio::buffer(scratch_);
  std::string size;
  if (framing_ == Framing::chunked && !body.empty()) {
    size = chunk_header(body.size());
    bufs[n++] = asio::buffer(size);
  }
  if (!body.empty()) bufs[n++] = asio::buffer(body.data(), body.size());
  if (framing_ == Framing::chunked) {
    const std::string_view tail = body.empty() ? (end ? kLastChunk : std::string_view())
                                               : (end ? std::string_view("\r\n0\r\n\r\n") : std::string_view("\r\n"));
    if (!tail.empty()) bufs[n++] = asio::buffer(tail.data(), tail.size());
  }
  request_done_ = end;
  co_return co_await write(std::span(bufs.data(), n), r.idle);
}

awaitable<std::optional<Error>> UpstreamConnection::send_data(std::string_view piece, std::chrono::milliseconds idle) {
  if (piece.empty()) co_return std::nullopt;
  if (framing_ == Framing::chunked) {
    const std::string size = chunk_header(piece.size());
    const std::array<asio::const_buffer, 3> bufs{asio::buffer(size), asio::buffer(piece.data(), piece.size()),
                                                 asio::buffer("\r\n", 2)};
    co_return co_await write(bufs, idle);
  }
  const std::array<asio::const_buffer, 1> bufs{asio::buffer(piece.data(), piece.size())};
  co_return co_await write(bufs, idle);
}

awaitable<std::optional<Error>> UpstreamConnection::send_end(std::span<const Field> trailers) {
  request_done_ = true;
  if (framing_ != Framing::chunked) co_return std::nullopt;  // a length says where the body ends
  scratch_.clear();
  build_last_chunk(trailers, scratch_);
  const std::array<asio::const_buffer, 1> bufs{asio::buffer(scratch_)};
  co_return co_await write(bufs, std::chrono::milliseconds(300000));
}

awaitable<std::optional<Error>> UpstreamConnection::read_head(Clock::time_point deadline, bool per_try,
                                                              ResponseHead& out) {
  watchdog_.arm_at(stream_, deadline, Watchdog::read);
  while (true) {
    const auto step = parser_.parse(buffer_.view());
    if (step.event == Http1Parser::Event::head) {
      buffer_.consume(step.consumed);
      const MessageHead& h = parser_.head();
      out.framing_at = end_to_end_fields(h, false, fields_);
      out.status = h.status;
      out.reason = h.reason;
      out.fields = fields_;
      out.version = h.minor_version == 0 ? Version::http10 : Version::http11;
      out.has_body = !(head_request_ || h.status < 200 || h.status == 204 || h.status == 304);
      out.length = h.chunked ? std::nullopt : h.content_length;
      if (h.status >= 100 && h.status < 200) {
        // An interim response: its (empty) message ends here; the final one follows.
        auto done = parser_.parse(buffer_.view());
        buffer_.consume(done.consumed);
        parser_.expect_no_body(head_request_);
      }
      watchdog_.disarm(Watchdog::read);
      co_return std::nullopt;
    }
    if (step.event == Http1Parser::Event::error) {
      watchdog_.disarm(Watchdog::read);
      broken_ = true;
      co_return upstream_error(ErrorKind::upstream_protocol, false,
                               endpoint_->text + " sent a malformed response: " + parser_.error_reason());
    }
    char* space = buffer_.prepare(kHeadRead);
    auto [ec, n] = co_await stream_.async_read_some(asio::buffer(space, kHeadRead));
    buffer_.commit(n);
    if (ec) {
      const bool timed_out = watchdog_.fired(Watchdog::read);
      watchdog_.disarm(Watchdog::read);
      broken_ = true;
      if (timed_out) {
        co_return upstream_error(per_try ? ErrorKind::per_try_timeout : ErrorKind::upstream_timeout, false,
                                 "the upstream did not answer in time");
      }
      co_return upstream_error(ErrorKind::upstream_reset, !wrote_any_,
                               endpoint_->text + " closed the connection before a full response");
    }
  }
}

std::optional<BodyEvent> UpstreamConnection::next_body() {
  // Consuming does not move the bytes: a piece handed out before stays valid.
  buffer_.consume(pending_consume_);
  pending_consume_ = 0;
  auto step = parser_.parse(buffer_.view());
  switch (step.event) {
    case Http1Parser::Event::body:
      pending_consume_ = step.consumed;
      return BodyEvent{BodyEvent::Kind::data, parser_.body(), {}};
    case Http1Parser::Event::message_complete:
      buffer_.consume(step.consumed);
      response_done_ = true;
      trailers_.clear();
      for (const auto& t : parser_.trailers()) {
        if (trailer_allowed(t.name)) trailers_.push_back(t);
      }
      return BodyEvent{BodyEvent::Kind::end, {}, trailers_};
    case Http1Parser::Event::error:
      broken_ = true;
      return BodyEvent{BodyEvent::Kind::reset, {}, {}, ResetCause::malformed};
    default:
      buffer_.consume(step.consumed);
      return std::nullopt;
  }
}

awaitable<BodyEvent> UpstreamConnection::read_body(Clock::time_point deadline) {
  while (true) {
    if (auto ev = next_body()) co_return *ev;
    char* space = buffer_.prepare(kBodyRead);
    watchdog_.arm_at(stream_, deadline, Watchdog::read);
    auto [ec, n] = co_await stream_.async_read_some(asio::buffer(space, kBodyRead));
    const bool timed_out = watchdog_.fired(Watchdog::read);
    watchdog_.disarm(Watchdog::read);
    buffer_.commit(n);
    if (ec) {
      broken_ = true;
      if (timed_out) co_return BodyEvent{BodyEvent::Kind::reset, {}, {}, ResetCause::timeout};
      if (ec == asio::error::eof) {
        // A body delimited by the connection's close ends here.
        if (parser_.finish().event == Http1Parser::Event::message_complete) {
          response_done_ = true;
          co_return BodyEvent{BodyEvent::Kind::end, {}, {}};
        }
      }
      co_return BodyEvent{BodyEvent::Kind::reset, {}, {}, ResetCause::closed};
    }
  }
}

UpstreamPool::UpstreamPool(asio::any_io_executor ex)
    : ex_(ex), connected_(std::make_unique<asio::steady_timer>(ex, Clock::time_point::max())) {}

awaitable<std::unique_ptr<UpstreamExchange>> UpstreamPool::acquire_shared(const PoolKey& key,
                                                                          std::shared_ptr<mesh::Endpoint> ep,
                                                                          std::chrono::milliseconds connect_timeout,
                                                                          std::int64_t* gauge, error_code& ec) {
  const auto give_up = Clock::now() + connect_timeout;
  for (int round = 0; round < 64; ++round) {
    auto& list = shared_[key];
    std::erase_if(list, [](const auto& c) { return c->closed(); });
    bool connecting = false;
    for (auto& c : list) {
      if (c->can_open()) co_return c->open_exchange();
      if (!c->connected() && !c->closed()) connecting = true;
    }
    if (connecting && Clock::now() < give_up) {
      // One connection per endpoint: wait for the one being made (or its failure).
      if (!connected_) break;  // the worker is ending
      auto [wait_ec] = co_await connected_->async_wait(use_tuple);
      static_cast<void>(wait_ec);  // cancelled when a connect ends
      continue;
    }
    auto conn = std::make_shared<Http2UpstreamConnection>(ex_, ep, h2_limits_);
    conn->count_connection();
    conn->gauge = gauge;
    ++*gauge;
    list.push_back(conn);
    ec = co_await conn->connect(connect_timeout);
    if (connected_) connected_->cancel();  // the waiters look again
    if (ec) {
      auto& now_list = shared_[key];
      std::erase(now_list, conn);
      co_return nullptr;
    }
    if (auto x = conn->open_exchange()) co_return x;
  }
  ec = make_error_code(asio::error::timed_out);
  co_return nullptr;
}

awaitable<std::unique_ptr<UpstreamExchange>> UpstreamPool::acquire(const PoolKey& key,
                                                                   std::shared_ptr<mesh::Endpoint> ep,
                                                                   std::chrono::milliseconds connect_timeout,
                                                                   HeadLimits limits, std::int64_t* gauge,
                                                                   error_code& ec) {
  ec.clear();
  if (key.protocol == UpstreamProtocol::http2) {
    co_return co_await acquire_shared(key, std::move(ep), connect_timeout, gauge, ec);
  }
  if (auto it = idle_.find(key); it != idle_.end()) {
    auto& list = it->second;
    while (!list.empty()) {
      Idle idle = std::move(list.back());
      list.pop_back();
      const auto now = Clock::now();
      if (now < idle.expires && (now - idle.released < kPeekAfter || idle.conn->still_good())) {
        idle.conn->begin_exchange();
        co_return std::move(idle.conn);
      }
    }
  }
  auto conn = std::make_unique<UpstreamConnection>(ex_, ep, limits);
  conn->count_connection();
  conn->gauge = gauge;
  conn->key = key;
  ++*gauge;
  if ((ec = co_await conn->connect(connect_timeout))) co_return nullptr;
  conn->begin_exchange();
  co_return std::move(conn);
}

void UpstreamPool::release(std::unique_ptr<UpstreamExchange> x, std::chrono::milliseconds idle_timeout,
                           std::size_t max_idle) {
  // A stream on a shared connection: the connection stays (the sweep retires it once
  // idle for its timeout); the exchange goes.
  if (!x || x->release_shared(idle_timeout)) return;
  std::unique_ptr<UpstreamConnection> c(static_cast<UpstreamConnection*>(x.release()));
  if (!c || !c->reusable() || !c->idle_and_open() || idle_timeout.count() <= 0) return;
  if (live_ && !live_->contains(c->endpoint().get())) return;  // removed while in use
  auto& list = idle_[c->key];
  if (list.size() >= max_idle) return;
  c->release_buffer();  // an idle connection keeps no buffer
  c->mark_reused();
  const auto now = Clock::now();
  list.push_back({std::move(c), now, now + idle_timeout});
}

void UpstreamPool::clear() {
  idle_.clear();
  for (auto& [_, list] : shared_) {
    for (auto& c : list) c->retire();
  }
}

void UpstreamPool::shutdown() {
  idle_.clear();
  for (auto& [_, list] : shared_) {
    for (auto& c : list) c->close();
  }
  shared_.clear();
  connected_.reset();
}

std::size_t UpstreamPool::shared_count() const {
  std::size_t n = 0;
  for (const auto& [_, list] : shared_) {
    for (const auto& c : list) n += c->closed() ? 0 : 1;
  }
  return n;
}

void UpstreamPool::sweep() {
  const auto now = Clock::now();
  for (auto it = shared_.begin(); it != shared_.end();) {
    auto& list = it->second;
    for (auto& c : list) {
      if (c->idle() && now - c->idle_since() >= c->idle_timeout) c->retire();
      c->keepalive(now, h2_keepalive_);
    }
    std::erase_if(list, [](const auto& c) { return c->closed(); });
    it = list.empty() ? shared_.erase(it) : std::next(it);
  }
  for (auto it = idle_.begin(); it != idle_.end();) {
    auto& list = it->second;
    std::erase_if(list, [&](const Idle& i) { return now >= i.expires || !i.conn->idle_and_open(); });
    it = list.empty() ? idle_.erase(it) : std::next(it);
  }
}

void UpstreamPool::retain(std::unordered_set<const mesh::Endpoint*> keep) {
  live_ = std::move(keep);
  for (auto it = idle_.begin(); it != idle_.end();) {
    it = live_->contains(it->first.endpoint) ? std::next(it) : idle_.erase(it);
  }
  for (auto& [key, list] : shared_) {
    if (live_->contains(key.endpoint)) continue;
    for (auto& c : list) c->retire();
  }
}

std::size_t UpstreamPool::idle_count() const {
  std::size_t n = 0;
  for (const auto& [_, list] : idle_) n += list.size();
  return n;
}

}  // namespace meshd::proxy
