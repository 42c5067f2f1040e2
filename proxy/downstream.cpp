#include "proxy/downstream.hpp"

#include <span>

#include "proxy/http1_write.hpp"
#include "proxy/lifecycle.hpp"
#include "proxy/worker.hpp"

namespace meshd::proxy {

namespace {
constexpr std::size_t kReadChunk = 16 * 1024;

LocalReply reply_for(HeadVerdict::Status s) {
  switch (s) {
    case HeadVerdict::Status::too_large: return LocalReply::headers_too_large;
    case HeadVerdict::Status::not_implemented: return LocalReply::not_implemented;
    case HeadVerdict::Status::version_not_supported: return LocalReply::http_version_not_supported;
    default: return LocalReply::bad_request;
  }
}
}  // namespace

DownstreamConnection::DownstreamConnection(Worker& worker, tcp::socket socket, metrics::Direction direction,
                                           std::string peer, std::optional<Clock::time_point> idle_since)
    : worker_(worker),
      socket_(std::move(socket)),
      watchdog_(socket_.get_executor()),
      direction_(direction),
      parser_(Http1Parser::Kind::request,
              HeadLimits{worker.limits().max_request_headers_bytes, worker.limits().max_request_headers_count}),
      peer_(std::move(peer)),
      idle_since_(idle_since) {
  if (!idle_since_) {  // new: not back from parking
    error_code ec;
    auto remote = socket_.remote_endpoint(ec);
    if (!ec) peer_ = remote.address().to_string();
    socket_.set_option(tcp::no_delay(true), ec);
  }
  tracked_ = worker_.track(this);
}

DownstreamConnection::~DownstreamConnection() { worker_.untrack(tracked_); }

void DownstreamConnection::close_if_idle() {
  if (idle_ && buffer_.empty()) {
    error_code ec;
    socket_.cancel(ec);
    socket_.shutdown(tcp::socket::shutdown_both, ec);
  }
}

awaitable<DownstreamConnection::HeadResult> DownstreamConnection::read_head() {
  const auto& limits = worker_.limits();
  std::optional<Clock::time_point> deadline;
  // While idle: the idle timeout, and when the connection parks (whichever is first).
  Clock::time_point idle_deadline = Clock::time_point::max();
  std::optional<Clock::time_point> park_at;  // kParkAfter from when this wait began
  while (true) {
    const auto step = parser_.parse(buffer_.view());
    if (step.event == Http1Parser::Event::head) {
      buffer_.consume(step.consumed);
      watchdog_.disarm();
      co_return HeadResult::head;
    }
    if (step.event == Http1Parser::Event::error) {
      watchdog_.disarm();
      co_await reply(reply_for(parser_.error_status()), parser_.error_reason(), true);
      co_return HeadResult::closed;
    }
    // need_more
    if (buffer_.empty()) {
      idle_ = true;
      if (worker_.draining()) co_return HeadResult::closed;  // an idle connection closes at once when draining
      buffer_.release_if_empty();                              // an idle connection keeps no buffer
      const auto now = Clock::now();
      if (!idle_since_) idle_since_ = now;  // kept across parking
      if (!park_at) park_at = now + kParkAfter;
      if (limits.downstream_idle_timeout.count() > 0) idle_deadline = *idle_since_ + limits.downstream_idle_timeout;
      watchdog_.arm_at(socket_, std::min(idle_deadline, *park_at));
    } else {
      idle_ = false;
      // From the request's first byte; activity does not extend it (slowloris).
      if (!deadline) {
        deadline = Clock::now() + limits.request_header_timeout;
        watchdog_.arm_at(socket_, *deadline);
      }
    }
    if (buffer_.empty()) {
      // Idle: wait for bytes without holding a buffer (an idle keep-alive connection
      // costs no read buffer).
      auto [wec] = co_await socket_.async_wait(tcp::socket::wait_read, use_tuple);
      if (wec) {
        // Woken by the watchdog before the idle timeout: time to park.
        const bool park = watchdog_.fired() && Clock::now() < idle_deadline && !worker_.draining() &&
                          socket_.is_open();
        co_return park ? HeadResult::park : HeadResult::closed;
      }
    }
    const std::size_t old = buffer_.size();
    char* space = buffer_.prepare(kReadChunk);
    auto [ec, n] = co_await socket_.async_read_some(asio::buffer(space, kReadChunk), use_tuple);
    buffer_.commit(n);
    if (ec) {
      if (watchdog_.fired() && old > 0) {
        co_await reply(LocalReply::request_timeout, "the request headers did not complete in time", true);
      }
      co_return HeadResult::closed;  // EOF, reset, idle timeout or a drain
    }
    if (worker_.draining() && old == 0) idle_ = false;
  }
}

awaitable<DownstreamConnection::BodyPiece> DownstreamConnection::read_body(std::chrono::milliseconds idle) {
  buffer_.consume(pending_consume_);
  pending_consume_ = 0;
  if (body_done_) co_return BodyPiece{BodyPiece::Kind::end, {}};
  while (true) {
    const auto step = parser_.parse(buffer_.view());
    switch (step.event) {
      case Http1Parser::Event::body:
        pending_consume_ = step.consumed;
        co_return BodyPiece{BodyPiece::Kind::data, parser_.body()};
      case Http1Parser::Event::message_complete:
        buffer_.consume(step.consumed);
        body_done_ = true;
        co_return BodyPiece{BodyPiece::Kind::end, {}};
      case Http1Parser::Event::error:
        keep_alive_ = false;
        co_return BodyPiece{BodyPiece::Kind::error, {}};
      default:
        break;
    }
    buffer_.consume(step.consumed);
    char* space = buffer_.prepare(kReadChunk);
    watchdog_.arm(socket_, idle);
    auto [ec, n] = co_await socket_.async_read_some(asio::buffer(space, kReadChunk), use_tuple);
    const bool timed_out = watchdog_.fired();
    watchdog_.disarm();
    buffer_.commit(n);
    if (ec) {
      keep_alive_ = false;
      co_return BodyPiece{timed_out ? BodyPiece::Kind::timeout : BodyPiece::Kind::closed, {}};
    }
  }
}

awaitable<bool> DownstreamConnection::write_gather(std::array<std::string_view, 4> pieces) {
  std::array<asio::const_buffer, 4> buffers;
  std::size_t n = 0;
  for (const auto piece : pieces) {
    if (!piece.empty()) buffers[n++] = asio::buffer(piece.data(), piece.size());
  }
  watchdog_.arm(socket_, worker_.limits().downstream_idle_timeout);
  auto [ec, sent] = co_await asio::async_write(socket_, std::span(buffers.data(), n), use_tuple);
  watchdog_.disarm();
  bytes_sent += sent;
  if (ec) keep_alive_ = false;
  co_return !ec;
}

awaitable<void> DownstreamConnection::reply(LocalReply r, std::string_view detail, bool close,
                                            std::uint32_t retry_after) {
  if (close || worker_.draining()) keep_alive_ = false;
  const auto& i = info(r);
  std::string body(i.summary);
  if (!detail.empty()) {
    body += ": ";
    body += detail;
  }
  body += '\n';
  std::string head = "HTTP/1.1 " + std::to_string(i.status) + " " + std::string(reason_phrase(i.status)) +
                     "\r\ncontent-type: text/plain\r\nx-meshd-error: " + std::string(i.code) +
                     "\r\ncontent-length: " + std::to_string(body.size()) + "\r\n";
  if (retry_after > 0) head += "retry-after: " + std::to_string(retry_after) + "\r\n";
  if (!keep_alive_) head += "connection: close\r\n";
  head += "\r\n";
  status_sent = i.status;
  const bool head_request = parser_.head().method == "HEAD";
  co_await write_gather({head, head_request ? std::string_view() : std::string_view(body), {}, {}});
}

awaitable<void> DownstreamConnection::drain_request_body() {
  // The rest of a request body the upstream did not take: read and drop it, so that
  // the next request on this connection starts at a message boundary.
  for (int i = 0; i < 1 << 20; ++i) {
    auto piece = co_await read_body(worker_.limits().downstream_idle_timeout);
    if (piece.kind == BodyPiece::Kind::data) continue;
    if (piece.kind != BodyPiece::Kind::end) keep_alive_ = false;
    co_return;
  }
  keep_alive_ = false;
}

awaitable<DownstreamConnection::Outcome> DownstreamConnection::run() {
  while (socket_.is_open()) {
    const auto got = co_await read_head();
    if (got == HeadResult::park) {
      watchdog_.disarm();
      co_return Outcome::park;
    }
    if (got != HeadResult::head) break;
    idle_ = false;
    idle_since_.reset();
    body_done_ = false;
    status_sent = 0;
    bytes_sent = 0;
    keep_alive_ = parser_.keep_alive() && !worker_.draining();
    co_await RequestLifecycle(*this).run();
    if (!body_done_) {
      if (keep_alive_) {
        co_await drain_request_body();
      } else {
        // Framing state is unknown after an aborted body: never reuse the connection.
        keep_alive_ = false;
      }
    }
    buffer_.consume(pending_consume_);
    pending_consume_ = 0;
    // The parser must be between messages before the next one (a failed body parse
    // leaves it in error, and the connection closes).
    if (!keep_alive_ || parser_.in_message()) break;
  }
  error_code ec;
  socket_.shutdown(tcp::socket::shutdown_send, ec);
  socket_.close(ec);
  co_return Outcome::closed;
}

}  // namespace meshd::proxy
