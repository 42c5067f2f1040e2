#include "proxy/downstream.hpp"

#include <cstring>
#include <span>

#include "net/asio_address.hpp"
#include "proxy/grpc.hpp"
#include "proxy/http1_write.hpp"
#include "proxy/lifecycle.hpp"
#include "proxy/worker.hpp"

namespace meshd::proxy {

namespace {
constexpr std::size_t kReadChunk = 16 * 1024;
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
constexpr std::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";  // RFC 9113 §3.4
// A body up to this size is copied after the head rather than sent beside it.
constexpr std::size_t kCoalesceBytes = 4096;

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
                                           std::size_t listener, std::string peer,
                                           std::optional<Clock::time_point> idle_since)
    : worker_(worker),
      stream_(std::move(socket)),
      watchdog_(stream_.tcp_socket().get_executor()),
      direction_(direction),
      listener_(listener),
      parser_(Http1Parser::Kind::request,
              HeadLimits{worker.limits().max_request_headers_bytes, worker.limits().max_request_headers_count}),
      peer_(std::move(peer)),
      served_(idle_since.has_value()),
      idle_since_(idle_since) {
  if (!idle_since_) {  // new: not back from parking
    error_code ec;
    auto remote = stream_.tcp_socket().remote_endpoint(ec);
    if (!ec) peer_ = remote.address().to_string();
    stream_.tcp_socket().set_option(tcp::no_delay(true), ec);
  }
  tracked_ = worker_.track(this);
}

DownstreamConnection::~DownstreamConnection() { worker_.untrack(tracked_); }

void DownstreamConnection::close_if_idle() {
  // A connection that has not sent its first request yet is not idle: it is served
  // (with Connection: close), since its client cannot tell whether a request it was
  // about to send would have been processed.
  if (idle_ && served_ && buffer_.empty()) {
    stream_.cancel();
    stream_.shutdown_both();
  }
}

std::string DownstreamConnection::take_buffered() {
  std::string bytes(buffer_.view());
  buffer_.consume(bytes.size());
  return bytes;
}

std::string DownstreamConnection::remote_address() {
  error_code ec;
  auto r = stream_.tcp_socket().remote_endpoint(ec);
  return ec ? std::string() : net::endpoint_text(net::from_asio(r.address()), r.port());
}

std::string DownstreamConnection::local_address() {
  error_code ec;
  auto l = stream_.tcp_socket().local_endpoint(ec);
  return ec ? std::string() : net::endpoint_text(net::from_asio(l.address()), l.port());
}

awaitable<DownstreamConnection::HeadResult> DownstreamConnection::read_head() {
  grpc_request_ = false;  // an answer to a head that did not parse is plain HTTP
  const auto& limits = worker_.limits();
  std::optional<Clock::time_point> deadline;
  // While idle: the idle timeout, and when the connection parks (whichever is first).
  Clock::time_point idle_deadline = Clock::time_point::max();
  std::optional<Clock::time_point> park_at;  // kParkAfter from when this wait began
  while (true) {
    // SPEC §7: a connection whose first bytes are HTTP/2's preface speaks HTTP/2
    // (prior knowledge h2c). Its first line is an HTTP/1.1 head of its own, so it is
    // looked for before parsing; a part of it waits for the rest.
    const bool preface = !served_ && !buffer_.empty() &&
                         kHttp2Preface.starts_with(buffer_.view().substr(0, kHttp2Preface.size()));
    if (preface && buffer_.size() >= kHttp2Preface.size()) {
      watchdog_.disarm();
      co_return HeadResult::http2;
    }
    // A part of the preface is not parsed: it reads on below (the header deadline
    // applies).
    const auto step = preface ? Http1Parser::Step{} : parser_.parse(buffer_.view());
    if (step.event == Http1Parser::Event::head) {
      buffer_.consume(step.consumed);
      watchdog_.disarm();
      co_return HeadResult::head;
    }
    if (step.event == Http1Parser::Event::error) {
      watchdog_.disarm();
      keep_alive_ = false;  // the framing is lost: the connection ends after the answer
      co_await send_local_reply(reply_for(parser_.error_status()), parser_.error_reason());
      co_return HeadResult::closed;
    }
    // need_more
    if (buffer_.empty()) {
      idle_ = true;
      const auto now = Clock::now();
      if (worker_.draining()) {
        // An idle connection closes at once when draining; a new one gets the header
        // deadline for its first request, which is served with Connection: close.
        if (served_) co_return HeadResult::closed;
        if (!deadline) {
          deadline = now + limits.request_header_timeout;
          watchdog_.arm_at(stream_, *deadline);
        }
      } else {
        buffer_.release_if_empty();  // an idle connection keeps no buffer
        if (!idle_since_) idle_since_ = now;  // kept across parking
        if (!park_at) park_at = now + kParkAfter;
        if (limits.downstream_idle_timeout.count() > 0) idle_deadline = *idle_since_ + limits.downstream_idle_timeout;
        watchdog_.arm_at(stream_, std::min(idle_deadline, *park_at));
      }
    } else {
      idle_ = false;
      // From the request's first byte; activity does not extend it (slowloris).
      if (!deadline) {
        deadline = Clock::now() + limits.request_header_timeout;
        watchdog_.arm_at(stream_, *deadline);
      }
    }
    if (buffer_.empty()) {
      // Idle: wait for the next request into a small buffer inside the connection,
      // not a read block (an idle keep-alive connection holds none). A read, unlike
      // a readiness wait (async_wait), does not make Asio re-arm the descriptor with
      // epoll_ctl: one system call less per keep-alive request.
      auto [wec, wn] = co_await stream_.async_read_some(asio::buffer(idle_bytes_));
      if (wn > 0) {
        std::memcpy(buffer_.prepare(kReadChunk), idle_bytes_.data(), wn);
        buffer_.commit(wn);
        if (worker_.draining()) idle_ = false;
        continue;  // parse what came; a head longer than idle_bytes_ reads on below
      }
      if (wec == asio::error::operation_aborted) {
        // Woken by the watchdog before the idle timeout: time to park.
        const bool park = watchdog_.fired() && Clock::now() < idle_deadline && !worker_.draining() &&
                          stream_.is_open() && !deadline;
        co_return park ? HeadResult::park : HeadResult::closed;
      }
      co_return HeadResult::closed;  // EOF or reset while idle
    }
    const std::size_t old = buffer_.size();
    char* space = buffer_.prepare(kReadChunk);
    auto [ec, n] = co_await stream_.async_read_some(asio::buffer(space, kReadChunk));
    buffer_.commit(n);
    if (ec) {
      if (watchdog_.fired() && old > 0) {
        keep_alive_ = false;
        co_await send_local_reply(LocalReply::request_timeout, "the request headers did not complete in time");
      }
      co_return HeadResult::closed;  // EOF, reset, idle timeout or a drain
    }
    if (worker_.draining() && old == 0) idle_ = false;
  }
}

void DownstreamConnection::prepare_request() {
  const MessageHead& h = parser_.head();
  RequestHead& r = request_;
  r = RequestHead{};
  r.method = h.method;
  // Origin-form, or absolute-form (an app using HTTP_PROXY), whose authority wins
  // over Host (RFC 9112 §3.2.2).
  std::string_view target = h.target;
  if (auto scheme_end = target.find("://"); scheme_end != std::string_view::npos && !target.empty() &&
                                            target.front() != '/') {
    r.scheme = target.substr(0, scheme_end);
    const auto rest = target.substr(scheme_end + 3);
    const auto slash = rest.find_first_of("/?");
    r.authority = rest.substr(0, slash);
    r.path = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
  } else {
    if (auto host = h.get("host")) r.authority = *host;
    r.path = target;
  }
  r.framing_at = end_to_end_fields(h, true, fields_);
  r.fields = fields_;
  r.version = h.minor_version == 0 ? Version::http10 : Version::http11;
  if (auto up = h.get("upgrade"); up && !iequals_ascii(*up, "h2c")) r.upgrade = *up;
  r.has_body = h.chunked || (h.content_length && *h.content_length > 0);
  if (!h.chunked) r.length = h.content_length;
  const auto content_type = h.get("content-type");
  grpc_request_ = content_type && is_grpc_content_type(*content_type);
  r.grpc = grpc_request_;
  expect_continue_ = false;
  if (r.has_body && h.minor_version == 1) {
    if (auto expect = h.get("expect"); expect && iequals_ascii(*expect, "100-continue")) expect_continue_ = true;
  }
}

awaitable<BodyEvent> DownstreamConnection::read_body(std::chrono::milliseconds idle) {
  buffer_.consume(pending_consume_);
  pending_consume_ = 0;
  if (body_done_) co_return BodyEvent{BodyEvent::Kind::end, {}, trailers_};
  if (expect_continue_) {
    // The client waits for this before its body; meshd answers Expect itself (the
    // upstream never sees it) once the request is on its way.
    expect_continue_ = false;
    if (status_sent_ == 0 && !co_await write(kContinue)) {
      co_return BodyEvent{BodyEvent::Kind::reset, {}, {}, ResetCause::closed};
    }
  }
  while (true) {
    const auto step = parser_.parse(buffer_.view());
    switch (step.event) {
      case Http1Parser::Event::body:
        pending_consume_ = step.consumed;
        co_return BodyEvent{BodyEvent::Kind::data, parser_.body(), {}};
      case Http1Parser::Event::message_complete:
        buffer_.consume(step.consumed);
        body_done_ = true;
        trailers_.clear();
        for (const auto& t : parser_.trailers()) {
          if (trailer_allowed(t.name)) trailers_.push_back(t);
        }
        co_return BodyEvent{BodyEvent::Kind::end, {}, trailers_};
      case Http1Parser::Event::error:
        keep_alive_ = false;
        co_return BodyEvent{BodyEvent::Kind::reset, {}, {}, ResetCause::malformed};
      default:
        break;
    }
    buffer_.consume(step.consumed);
    if (read_cancelled_) co_return BodyEvent{BodyEvent::Kind::reset, {}, {}, ResetCause::closed};
    char* space = buffer_.prepare(kReadChunk);
    watchdog_.arm(stream_, idle, Watchdog::read);
    auto [ec, n] = co_await stream_.async_read_some(asio::buffer(space, kReadChunk));
    const bool timed_out = watchdog_.fired(Watchdog::read);
    watchdog_.disarm(Watchdog::read);
    buffer_.commit(n);
    if (ec) {
      if (read_cancelled_ && ec == asio::error::operation_aborted) {
        co_return BodyEvent{BodyEvent::Kind::reset, {}, {}, ResetCause::closed};
      }
      keep_alive_ = false;
      co_return BodyEvent{BodyEvent::Kind::reset, {}, {}, timed_out ? ResetCause::timeout : ResetCause::closed};
    }
  }
}

void DownstreamConnection::cancel_read() {
  read_cancelled_ = true;
  stream_.cancel();
}

awaitable<bool> DownstreamConnection::write_gather(std::array<std::string_view, 4> pieces) {
  std::array<asio::const_buffer, 4> buffers;
  std::size_t n = 0;
  for (const auto piece : pieces) {
    if (!piece.empty()) buffers[n++] = asio::buffer(piece.data(), piece.size());
  }
  watchdog_.arm(stream_, worker_.limits().downstream_idle_timeout, Watchdog::write);
  // One buffer goes with send(), several with sendmsg() (a little dearer).
  auto [ec, sent] = n == 1 ? co_await stream_.async_write(buffers.front())
                           : co_await stream_.async_write(std::span(buffers.data(), n));
  watchdog_.disarm(Watchdog::write);
  bytes_sent_ += sent;
  if (ec) keep_alive_ = false;
  co_return !ec;
}

awaitable<bool> DownstreamConnection::send_interim(const ResponseHead& head) {
  // RFC 9110 §15.2: not to an HTTP/1.0 client; 100 is meshd's own to send (it
  // answered Expect), and 101 belongs to tunnels.
  if (request_.version == Version::http10 || head.status == 100 || head.status == 101 || status_sent_ != 0) {
    co_return true;
  }
  head_bytes_.clear();
  build_interim_head(head, head_bytes_);
  co_return co_await write(head_bytes_);
}

void DownstreamConnection::send_head(const ResponseHead& head) {
  DownstreamResponse out;
  if (head.status == 204 || head.status < 200) {
    // RFC 9110 §8.6: no Content-Length on a 204 (or 1xx), whatever the upstream sent.
  } else if (!head.has_body) {
    if (head.length) {  // HEAD and 304: the length the body would have
      out.framing = DownstreamResponse::Framing::length;
      out.content_length = *head.length;
    }
  } else if (head.length) {
    out.framing = DownstreamResponse::Framing::length;
    out.content_length = *head.length;
  } else if (request_.version == Version::http11) {
    out.framing = DownstreamResponse::Framing::chunked;
  } else {
    out.framing = DownstreamResponse::Framing::close;
    keep_alive_ = false;
  }
  if (worker_.draining()) keep_alive_ = false;
  out.close = !keep_alive_;
  framing_ = static_cast<Framing>(out.framing);
  head_bytes_.clear();
  build_response_head(head, out, head_bytes_);
  status_sent_ = head.status;
  // The head waits to go out with the first piece of the body (or the end of the
  // message), so that a small response is one send.
  head_pending_ = true;
}

awaitable<bool> DownstreamConnection::flush() {
  if (!head_pending_) co_return true;
  head_pending_ = false;
  co_return co_await write(head_bytes_);
}

awaitable<bool> DownstreamConnection::send_data(std::string_view piece) {
  const std::string_view head = head_pending_ ? std::string_view(head_bytes_) : std::string_view();
  head_pending_ = false;
  if (piece.empty()) co_return head.empty() || co_await write(head);
  if (framing_ == Framing::chunked) {
    const std::string size = chunk_header(piece.size());
    co_return co_await write_gather({head, size, piece, "\r\n"});
  }
  co_return co_await write_gather({head, piece, {}, {}});
}

awaitable<bool> DownstreamConnection::send_end(std::string_view last_piece, std::span<const Field> trailers) {
  // The head (if still held), the last piece and the end of the message in one send.
  const std::string_view head = head_pending_ ? std::string_view(head_bytes_) : std::string_view();
  head_pending_ = false;
  if (framing_ == Framing::chunked) {
    std::string size = last_piece.empty() ? std::string() : chunk_header(last_piece.size());
    std::string_view end = kLastChunk;
    std::string last;
    if (!trailers.empty()) {
      build_last_chunk(trailers, last);
      end = last;
    }
    if (last_piece.empty()) co_return co_await write_gather({head, end, {}, {}});
    // "<size>\r\n<piece>\r\n" then the last chunk: the piece's CRLF leads `end`.
    last.insert(0, "\r\n");
    if (trailers.empty()) last.append(kLastChunk);
    co_return co_await write_gather({head, size, last_piece, last});
  }
  if (head.empty() && last_piece.empty()) co_return true;
  if (!head.empty() && last_piece.size() <= kCoalesceBytes) {
    // A small response: head and body copied into one buffer, one send().
    head_bytes_.append(last_piece);
    co_return co_await write(head_bytes_);
  }
  co_return co_await write_gather({head, last_piece, {}, {}});
}

void DownstreamConnection::abort() {
  keep_alive_ = false;
  stream_.abort();
}

awaitable<void> DownstreamConnection::send_local_reply(LocalReply r, std::string_view detail,
                                                       std::uint32_t retry_after) {
  const auto& i = info(r);
  // Whether the connection ends was decided by whoever answers (close_after(): the
  // lifecycle for downstream errors, read_head() for a broken head); a drain ends it.
  if (worker_.draining()) keep_alive_ = false;
  std::string body(i.summary);
  if (!detail.empty()) {
    body += ": ";
    body += detail;
  }
  if (grpc_request_) {
    // SPEC §7: a gRPC client reads the outcome from grpc-status; the HTTP/1.1 form of
    // a trailers-only response is a 200 with these as headers and no body.
    std::string head = "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: " +
                       std::to_string(grpc_status(r)) + "\r\ngrpc-message: " + grpc_percent_encode(body) +
                       "\r\nx-meshd-error: " + std::string(i.code) + "\r\ncontent-length: 0\r\n";
    if (!keep_alive_) head += "connection: close\r\n";
    head += "\r\n";
    status_sent_ = 200;
    co_await write_gather({head, {}, {}, {}});
    co_return;
  }
  body += '\n';
  std::string head = "HTTP/1.1 " + std::to_string(i.status) + " " + std::string(reason_phrase(i.status)) +
                     "\r\ncontent-type: text/plain\r\nx-meshd-error: " + std::string(i.code) +
                     "\r\ncontent-length: " + std::to_string(body.size()) + "\r\n";
  if (retry_after > 0) head += "retry-after: " + std::to_string(retry_after) + "\r\n";
  if (!keep_alive_) head += "connection: close\r\n";
  head += "\r\n";
  status_sent_ = i.status;
  const bool head_request = parser_.head().method == "HEAD";
  co_await write_gather({head, head_request ? std::string_view() : std::string_view(body), {}, {}});
}

awaitable<void> DownstreamConnection::drain_request_body() {
  // The rest of a request body the upstream did not take: read and drop it, so that
  // the next request on this connection starts at a message boundary.
  read_cancelled_ = false;
  for (int i = 0; i < 1 << 20; ++i) {
    auto piece = co_await read_body(worker_.limits().downstream_idle_timeout);
    if (piece.kind == BodyEvent::Kind::data) continue;
    if (piece.kind != BodyEvent::Kind::end) keep_alive_ = false;
    co_return;
  }
  keep_alive_ = false;
}

awaitable<DownstreamConnection::Outcome> DownstreamConnection::run() {
  while (stream_.is_open()) {
    const auto got = co_await read_head();
    if (got == HeadResult::park) {
      watchdog_.disarm();
      co_return Outcome::park;
    }
    if (got == HeadResult::http2) co_return Outcome::http2;
    if (got != HeadResult::head) break;
    idle_ = false;
    served_ = true;
    idle_since_.reset();
    body_done_ = false;
    read_cancelled_ = false;
    head_pending_ = false;
    framing_ = Framing::none;
    trailers_.clear();
    status_sent_ = 0;
    bytes_sent_ = 0;
    keep_alive_ = parser_.keep_alive() && !worker_.draining();
    prepare_request();
    if (!request_.has_body) {
      // A request without a body: its message ends with the head.
      const auto step = parser_.parse({});
      if (step.event == Http1Parser::Event::message_complete) body_done_ = true;
    }
    co_await RequestLifecycle(*this).run();
    if (!stream_.is_open()) break;  // aborted
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
  stream_.shutdown_send();
  stream_.close();
  co_return Outcome::closed;
}

}  // namespace meshd::proxy
