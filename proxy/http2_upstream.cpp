#include "proxy/http2_upstream.hpp"

#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "net/asio_address.hpp"
#include "proxy/http2_session.hpp"

namespace meshd::proxy {

namespace {
constexpr std::uint32_t kRefusedStream = 0x7;
constexpr std::uint32_t kCancel = 0x8;
}  // namespace

// One request on a stream of the connection.
class Http2UpstreamConnection::Exchange final : public UpstreamExchange {
 public:
  Exchange(std::shared_ptr<Http2UpstreamConnection> conn, bool reused)
      : conn_(std::move(conn)), readable_(conn_->stream_.tcp_socket().get_executor()),
        writable_(conn_->stream_.tcp_socket().get_executor()), reused_(reused) {}

  ~Exchange() override {
    auto& c = *conn_;
    if (id_ < 0) {
      --c.opening_;
    } else {
      // Not finished both ways: the server is told to stop (nothing more is read).
      if (!closed_) {
        c.codec_.reset(id_, kCancel);
        c.kick();
      }
      c.exchanges_.erase(id_);
    }
    if (c.exchanges_.empty() && c.opening_ == 0) c.idle_since_ = Clock::now();
    c.maybe_finish();
  }

  // From the connection.
  void response(const ResponseHead& head) {
    auto q = std::make_unique<QueuedHead>();
    q->fields.assign(head.fields, false);
    q->head = head;
    q->head.fields = q->fields.fields();
    heads_.push_back(std::move(q));
    readable_.notify();
  }
  void body() { readable_.notify(); }
  void writable() { writable_.notify(); }
  void closed(std::uint32_t code, bool refused) {
    if (closed_) return;  // the first cause stands (a later end of the connection is not it)
    // What was received and not taken is kept (bounded by the stream's window).
    if (id_ >= 0) {
      for (int guard = 0; guard < 1 << 16; ++guard) {
        auto ev = conn_->codec_.take_body(id_);
        if (!ev) break;
        if (ev->kind == BodyEvent::Kind::data) {
          kept_.emplace_back(ev->data);
        } else {
          kept_end_ = true;
          trailers_.assign(ev->trailers, false);
        }
      }
    }
    closed_ = true;
    close_code_ = code;
    refused_ = refused;
    readable_.notify();
    writable_.notify();
  }

  // UpstreamExchange
  awaitable<std::optional<Error>> send_head(const OutgoingRequest& r, std::string_view body, bool end) override {
    auto& c = *conn_;
    --c.opening_;
    const bool last = end && body.empty();
    id_ = c.codec_.submit_request(r, last);
    if (id_ < 0) {
      ++c.opening_;  // undone by the destructor
      id_ = -1;
      co_return Error{ErrorKind::upstream_refused, true, c.endpoint_->text + " takes no more streams on this connection"};
    }
    c.exchanges_.emplace(id_, this);
    writes_at_head_ = c.writes_;
    if (!last) {
      if (body.empty()) {
        if (end) c.codec_.submit_data(id_, {}, true);
      } else {
        c.codec_.submit_data(id_, body, end);
      }
    }
    c.kick();
    co_return co_await wait_for_room(r.idle);
  }

  awaitable<std::optional<Error>> send_data(std::string_view piece, std::chrono::milliseconds idle) override {
    if (closed_ || id_ < 0) co_return close_error();
    if (piece.empty()) co_return std::nullopt;
    conn_->codec_.submit_data(id_, piece, false);
    conn_->kick();
    co_return co_await wait_for_room(idle);
  }

  awaitable<std::optional<Error>> send_end(std::span<const Field> trailers) override {
    if (closed_ || id_ < 0) co_return closed_ && response_done_ ? std::nullopt : close_error();
    if (trailers.empty()) {
      conn_->codec_.submit_data(id_, {}, true);
    } else {
      conn_->codec_.submit_trailers(id_, trailers);
    }
    conn_->kick();
    co_return std::nullopt;
  }

  awaitable<std::optional<Error>> read_head(Clock::time_point deadline, bool per_try, ResponseHead& out) override {
    for (int guard = 0; guard < 1 << 20; ++guard) {
      if (!heads_.empty()) {
        current_ = std::move(heads_.front());
        heads_.pop_front();
        out = current_->head;
        co_return std::nullopt;
      }
      if (closed_ || aborted_ || id_ < 0) co_return close_error();
      const bool woken = co_await readable_.wait(deadline);
      if (!woken && Clock::now() >= deadline && heads_.empty() && !closed_) {
        abandon();
        co_return Error{per_try ? ErrorKind::per_try_timeout : ErrorKind::upstream_timeout, false,
                        "the upstream did not answer in time"};
      }
    }
    co_return close_error();
  }

  awaitable<BodyEvent> read_body(Clock::time_point deadline) override {
    for (int guard = 0; guard < 1 << 20; ++guard) {
      if (auto ev = next_body()) co_return *ev;
      if (closed_ || aborted_) co_return BodyEvent{BodyEvent::Kind::reset, {}, {}, ResetCause::closed};
      const bool woken = co_await readable_.wait(deadline);
      if (!woken && Clock::now() >= deadline) {
        if (auto ev = next_body()) co_return *ev;
        abandon();
        co_return BodyEvent{BodyEvent::Kind::reset, {}, {}, ResetCause::timeout};
      }
    }
    co_return BodyEvent{BodyEvent::Kind::reset, {}, {}, ResetCause::closed};
  }

  std::optional<BodyEvent> next_body() override {
    if (response_done_) return BodyEvent{BodyEvent::Kind::end, {}, trailers_.fields()};
    // Two buffers taken in turn: the piece handed out before stays valid.
    auto& piece = pieces_[flip_ ^= 1];
    if (!kept_.empty()) {
      piece = std::move(kept_.front());
      kept_.pop_front();
      return BodyEvent{BodyEvent::Kind::data, piece, {}};
    }
    if (kept_end_) {
      response_done_ = true;
      return BodyEvent{BodyEvent::Kind::end, {}, trailers_.fields()};
    }
    if (closed_ || id_ < 0) return std::nullopt;
    auto ev = conn_->codec_.take_body(id_);
    if (!ev) return std::nullopt;
    conn_->kick();  // the WINDOW_UPDATE for what was taken
    if (ev->kind == BodyEvent::Kind::data) {
      piece.assign(ev->data);
      return BodyEvent{BodyEvent::Kind::data, piece, {}};
    }
    response_done_ = true;
    trailers_.assign(ev->trailers, false);
    return BodyEvent{BodyEvent::Kind::end, {}, trailers_.fields()};
  }

  void abandon() override {
    if (id_ >= 0 && !closed_) {
      conn_->codec_.reset(id_, kCancel);
      conn_->kick();
    }
    aborted_ = true;
    readable_.notify();
    writable_.notify();
  }

  // For the lifecycle's "stale pooled connection" retry: a stream the server reset is
  // not that (only a connection that ended under it is).
  bool reused() const override { return reused_ && close_code_ == 0; }
  // Some write of the connection completed after this stream's head was submitted
  // (the writer sends what the codec has in order, so the head went with it).
  bool wrote_any() const override { return id_ >= 0 && conn_->writes_ > writes_at_head_; }
  bool reusable() const override { return response_done_ && !aborted_; }
  bool release_shared(std::chrono::milliseconds keep_for) override {
    conn_->idle_timeout = keep_for;
    return true;
  }

 private:
  struct QueuedHead {
    h2::FieldCopy fields;
    ResponseHead head;
  };

  std::optional<Error> close_error() const {
    const auto& ep = conn_->endpoint_->text;
    if (refused_ || id_ < 0) {
      return Error{ErrorKind::upstream_refused, true, ep + " refused the stream unprocessed"};
    }
    if (aborted_) return Error{ErrorKind::upstream_reset, false, ep + ": the exchange was abandoned"};
    if (close_code_ == 0) return Error{ErrorKind::upstream_reset, !wrote_any(), ep + " closed the connection"};
    return Error{ErrorKind::upstream_reset, false,
                 ep + " reset the stream (HTTP/2 error " + std::to_string(close_code_) + ")"};
  }

  // Back-pressure: this stream's request data waiting for the windows stays under
  // kStreamSendBuffer; a server that takes nothing for `idle` fails the exchange.
  awaitable<std::optional<Error>> wait_for_room(std::chrono::milliseconds idle) {
    for (int guard = 0; guard < 1 << 20; ++guard) {
      if (closed_ || aborted_) {
        // A response may have come complete before the request body went (an early
        // answer): that is not a failure of the upload.
        if (response_done_ || !heads_.empty() || current_) co_return std::nullopt;
        co_return close_error();
      }
      if (conn_->codec_.unsent(id_) <= kStreamSendBuffer) co_return std::nullopt;
      const auto deadline = idle.count() > 0 ? Clock::now() + idle : Clock::time_point::max();
      const bool woken = co_await writable_.wait(deadline);
      if (!woken && Clock::now() >= deadline) {
        abandon();
        co_return Error{ErrorKind::upstream_timeout, false, "the upstream took no request data in time"};
      }
    }
    co_return close_error();
  }

  std::shared_ptr<Http2UpstreamConnection> conn_;
  std::int32_t id_ = -1;
  Signal readable_;
  Signal writable_;
  std::deque<std::unique_ptr<QueuedHead>> heads_;
  std::unique_ptr<QueuedHead> current_;  // the head last handed out
  std::deque<std::string> kept_;         // body received before the stream closed
  bool kept_end_ = false;
  std::string pieces_[2];
  unsigned flip_ = 0;
  h2::FieldCopy trailers_;
  bool closed_ = false;
  std::uint32_t close_code_ = 0;
  bool refused_ = false;
  bool response_done_ = false;
  bool aborted_ = false;
  bool reused_ = false;
  std::uint64_t writes_at_head_ = 0;  // the connection's completed writes when the head was submitted
};

Http2UpstreamConnection::Http2UpstreamConnection(asio::any_io_executor ex, std::shared_ptr<mesh::Endpoint> ep,
                                                 const Http2ClientLimits& limits)
    : stream_(ex), watchdog_(ex), endpoint_(std::move(ep)), codec_(limits, *this), writer_wake_(ex) {}

void Http2UpstreamConnection::count_connection() {
  endpoint_->connections.fetch_add(1, std::memory_order_relaxed);
  counted_ = true;
}

Http2UpstreamConnection::~Http2UpstreamConnection() {
  if (counted_) endpoint_->connections.fetch_sub(1, std::memory_order_relaxed);
  if (gauge != nullptr) --*gauge;
}

awaitable<error_code> Http2UpstreamConnection::connect(std::chrono::milliseconds timeout) {
  watchdog_.arm(stream_, timeout);
  auto [err] = co_await stream_.tcp_socket().async_connect(
      tcp::endpoint(net::to_asio(endpoint_->ip), endpoint_->port), use_tuple);
  const bool timed_out = watchdog_.fired();
  watchdog_.disarm();
  if (err) {
    closed_ = true;
    co_return timed_out ? make_error_code(asio::error::timed_out) : err;
  }
  error_code ignored;
  stream_.tcp_socket().set_option(tcp::no_delay(true), ignored);
  connected_ = true;
  auto self = shared_from_this();
  asio::co_spawn(stream_.tcp_socket().get_executor(), read_loop(self), asio::detached);
  asio::co_spawn(stream_.tcp_socket().get_executor(), write_loop(self), asio::detached);
  co_return error_code{};
}

bool Http2UpstreamConnection::can_open() const {
  if (!connected_ || closed_ || retired_) return false;
  // The codec counts streams it has opened; exchanges handed out but not yet opened
  // count too, so that a burst does not overshoot the server's limit.
  return codec_.can_open() && codec_.open_streams() + opening_ < codec_.peer_max_streams();
}

std::unique_ptr<UpstreamExchange> Http2UpstreamConnection::open_exchange() {
  if (!can_open()) return nullptr;
  const bool reused = used_;
  used_ = true;
  ++opening_;
  return std::make_unique<Exchange>(shared_from_this(), reused);
}

Http2UpstreamConnection::Exchange* Http2UpstreamConnection::find(std::int32_t id) const {
  auto it = exchanges_.find(id);
  return it == exchanges_.end() ? nullptr : it->second;
}

void Http2UpstreamConnection::on_response(std::int32_t stream, const ResponseHead& head) {
  if (Exchange* x = find(stream)) x->response(head);
}

void Http2UpstreamConnection::on_body(std::int32_t stream) {
  if (Exchange* x = find(stream)) x->body();
}

void Http2UpstreamConnection::on_writable(std::int32_t stream) {
  if (Exchange* x = find(stream)) x->writable();
}

void Http2UpstreamConnection::on_close(std::int32_t stream, std::uint32_t code) {
  if (Exchange* x = find(stream)) x->closed(code, code == kRefusedStream || stream > goaway_last_);
}

void Http2UpstreamConnection::on_goaway(std::int32_t last_stream, std::uint32_t /*error_code*/) {
  // No new streams here; nghttp2 closes the ones above last_stream (REFUSED_STREAM).
  goaway_last_ = last_stream;
  retired_ = true;
}

void Http2UpstreamConnection::end_all(std::uint32_t code) {
  // Exchanges unregister themselves when destroyed, not here.
  for (auto& [id, x] : exchanges_) x->closed(code, id > goaway_last_);
}

void Http2UpstreamConnection::keepalive(Clock::time_point now, std::chrono::milliseconds interval) {
  if (!connected_ || closed_ || interval.count() <= 0) return;
  if (ping_sent_ && codec_.ping_outstanding()) {
    if (now - *ping_sent_ >= interval) close();  // no answer: the peer or the path is gone
    return;
  }
  if (now - last_read_ >= interval) {
    codec_.ping();
    ping_sent_ = now;
    kick();
  }
}

void Http2UpstreamConnection::retire() {
  retired_ = true;
  maybe_finish();
}

void Http2UpstreamConnection::maybe_finish() {
  if (!retired_ || closed_ || !exchanges_.empty() || opening_ > 0) return;
  if (connected_) {
    codec_.shutdown();
    kick();  // the writer sends the GOAWAY, then ends the connection
  }
}

void Http2UpstreamConnection::close() {
  if (closed_) return;
  closed_ = true;
  stream_.close();
  end_all(kCancel);
  kick();
}

awaitable<void> Http2UpstreamConnection::read_loop(std::shared_ptr<Http2UpstreamConnection> self) {
  std::string buffer(16 * 1024, '\0');
  for (int guard = 0; guard < 1 << 30 && !closed_; ++guard) {
    auto [ec, n] = co_await stream_.async_read_some(asio::buffer(buffer));
    if (ec) break;
    last_read_ = Clock::now();
    const bool ok = codec_.receive(std::string_view(buffer.data(), n));
    kick();
    if (!ok) break;
  }
  // The connection is over: streams not finished see it closed.
  retired_ = true;
  end_all(0);
  if (!closed_) {
    closed_ = true;
    kick();  // the writer flushes what the codec queued (a GOAWAY), then closes
  }
  static_cast<void>(self);
}

awaitable<void> Http2UpstreamConnection::write_loop(std::shared_ptr<Http2UpstreamConnection> self) {
  for (int guard = 0; guard < 1 << 30; ++guard) {
    const std::string_view out = codec_.output();
    if (!out.empty() && stream_.is_open()) {
      watchdog_.arm(stream_, std::chrono::seconds(30), Watchdog::write);
      auto [ec, n] = co_await stream_.async_write(asio::buffer(out.data(), out.size()));
      watchdog_.disarm(Watchdog::write);
      if (ec) break;
      ++writes_;
      continue;
    }
    if (closed_ || codec_.finished()) break;
    co_await writer_wake_.wait();
  }
  closed_ = true;
  retired_ = true;
  stream_.shutdown_send();
  stream_.close();
  end_all(0);
  static_cast<void>(self);
}

}  // namespace meshd::proxy
