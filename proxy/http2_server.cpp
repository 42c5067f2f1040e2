#include "proxy/http2_server.hpp"

#include <optional>
#include <utility>
#include <vector>

#include "net/asio_address.hpp"
#include "proxy/grpc.hpp"
#include "proxy/http1_write.hpp"
#include "proxy/http2_session.hpp"
#include "proxy/lifecycle.hpp"
#include "proxy/worker.hpp"

namespace meshd::proxy {

namespace {

Http2Limits limits_of(const Limits& l) {
  Http2Limits h;
  h.max_concurrent_streams = static_cast<std::uint32_t>(l.h2_max_concurrent_streams);
  h.max_header_list_bytes = static_cast<std::uint32_t>(l.h2_max_header_list_bytes);
  h.initial_stream_window = static_cast<std::uint32_t>(l.h2_initial_window_bytes);
  h.connection_window = static_cast<std::uint32_t>(l.h2_connection_window_bytes);
  h.max_resets_per_second = static_cast<std::uint32_t>(l.h2_max_resets_per_second);
  return h;
}

}  // namespace

// One stream: a DownstreamStream for its RequestLifecycle.
class Http2Connection::Stream final : public DownstreamStream {
 public:
  Stream(Http2Connection& conn, std::int32_t id, const RequestHead& head)
      : conn_(conn), id_(id), direction_(conn.direction_), listener_(conn.listener_), peer_(conn.peer_),
        readable_(conn.worker_.ioc().get_executor()), writable_(conn.worker_.ioc().get_executor()) {
    head_ = head;
    std::string_view* const pseudo[] = {&head_.method, &head_.scheme, &head_.authority, &head_.path, &head_.upgrade};
    fields_.assign(head.fields, true, pseudo);
    // content-length is framing: the upstream adapter writes its own where this was
    // (the length itself is head.length, which the codec checked against the DATA).
    head_.framing_at = fields_.remove("content-length");
    if (auto expect = find_field(fields_.fields(), "expect")) {
      expect_continue_ = head_.has_body && iequals_ascii(*expect, "100-continue");
      const auto at = fields_.remove("expect");
      if (at != kFramingAtEnd && head_.framing_at != kFramingAtEnd && at < head_.framing_at) --head_.framing_at;
    }
    head_.fields = fields_.fields();
  }

  std::int32_t id() const { return id_; }
  bool closed() const { return closed_; }
  bool response_ended() const { return response_ended_; }
  bool lifecycle_done = false;

  // From the connection.
  void wake_reader() { readable_.notify(); }
  // Until the stream's data moves on (or it closes), at most `idle`; false at the deadline.
  awaitable<bool> wait_progress(std::chrono::milliseconds idle) {
    const auto deadline = idle.count() > 0 ? Clock::now() + idle : Clock::time_point::max();
    co_return co_await writable_.wait(deadline);
  }
  void wake_writer() { writable_.notify(); }
  void closed_by_codec(std::uint32_t code) {
    closed_ = true;
    close_code_ = code;
    readable_.notify();
    writable_.notify();
  }

  // DownstreamStream
  const RequestHead& request() const override { return head_; }

  awaitable<BodyEvent> read_body(std::chrono::milliseconds idle) override {
    const auto deadline = idle.count() > 0 ? Clock::now() + idle : Clock::time_point::max();
    if (expect_continue_) {
      // The client waits for this before its body (RFC 9110 §10.1.1); meshd answers
      // Expect itself, as for HTTP/1.1 (the upstream never sees it).
      expect_continue_ = false;
      if (!closed_ && status_sent_ == 0) {
        ResponseHead interim;
        interim.status = 100;
        conn_.codec_.submit_interim(id_, interim);
        conn_.kick();
      }
    }
    for (int guard = 0; guard < 1 << 20; ++guard) {
      if (read_cancelled_) co_return reset(ResetCause::closed);
      if (body_ended_) co_return BodyEvent{BodyEvent::Kind::end, {}, trailers_.fields()};
      if (!closed_) {
        if (auto ev = conn_.codec_.take_body(id_)) {
          conn_.kick();  // a WINDOW_UPDATE for what was taken
          if (ev->kind == BodyEvent::Kind::data) {
            piece_.assign(ev->data);
            co_return BodyEvent{BodyEvent::Kind::data, piece_, {}};
          }
          body_ended_ = true;
          // HTTP/2 trailers carry no framing of their own; the RFC 9110 §6.5.1 rule
          // for what a trailer may hold applies as it does to HTTP/1.1's.
          std::vector<Field> allowed;
          for (const auto& t : ev->trailers) {
            if (trailer_allowed(t.name)) allowed.push_back(t);
          }
          trailers_.assign(allowed, false);
          co_return BodyEvent{BodyEvent::Kind::end, {}, trailers_.fields()};
        }
      }
      if (closed_) co_return reset(ResetCause::closed);
      const bool woken = co_await readable_.wait(deadline);
      if (!woken && Clock::now() >= deadline) {
        conn_.codec_.reset(id_, h2_error::cancel);
        conn_.kick();
        co_return reset(ResetCause::timeout);
      }
    }
    co_return reset(ResetCause::closed);
  }

  void cancel_read() override {
    read_cancelled_ = true;
    readable_.notify();
  }

  awaitable<bool> send_interim(const ResponseHead& head) override {
    // 100 is meshd's to send (it would answer Expect) and 101 belongs to tunnels.
    if (closed_ || status_sent_ != 0 || head.status == 100 || head.status == 101) co_return !closed_;
    conn_.codec_.submit_interim(id_, head);
    conn_.kick();
    co_return true;
  }

  void send_head(const ResponseHead& head) override {
    // Submitted now (nghttp2 copies it); the writer runs after this turn's handlers,
    // so a small response still leaves in one write with its data.
    status_sent_ = head.status;
    if (closed_) return;
    head_request_ = head_.method == "HEAD";
    if (!head.has_body || head_request_) {
      conn_.codec_.submit_head(id_, head, true);
      response_ended_ = true;
    } else {
      conn_.codec_.submit_head(id_, head, false);
    }
    conn_.kick();
  }

  awaitable<bool> flush() override {
    conn_.kick();
    co_return !closed_;
  }

  awaitable<bool> send_data(std::string_view piece) override {
    if (closed_) co_return false;
    if (response_ended_ || piece.empty()) co_return true;
    conn_.codec_.submit_data(id_, piece, false);
    bytes_sent_ += piece.size();
    conn_.kick();
    co_return co_await wait_for_room();
  }

  awaitable<bool> send_end(std::string_view last_piece, std::span<const Field> trailers) override {
    if (closed_) co_return false;
    if (response_ended_) co_return true;
    response_ended_ = true;
    std::vector<Field> allowed;
    for (const auto& t : trailers) {
      if (trailer_allowed(t.name)) allowed.push_back(t);
    }
    conn_.codec_.submit_data(id_, last_piece, allowed.empty());
    if (!allowed.empty()) conn_.codec_.submit_trailers(id_, allowed);
    bytes_sent_ += last_piece.size();
    conn_.kick();
    co_return co_await wait_for_room();
  }

  void abort() override {
    if (closed_) return;
    response_ended_ = true;
    conn_.codec_.reset(id_, h2_error::internal_error);
    conn_.kick();
  }

  awaitable<void> send_local_reply(LocalReply r, std::string_view detail, std::uint32_t retry_after) override {
    if (closed_) co_return;
    const auto& i = info(r);
    std::string body(i.summary);
    if (!detail.empty()) {
      body += ": ";
      body += detail;
    }
    std::vector<Field> fields;
    std::string status_text, message, retry;
    ResponseHead head;
    head.version = Version::http2;
    if (head_.grpc) {
      // SPEC §7: trailers-only, one HEADERS frame with END_STREAM.
      status_text = std::to_string(grpc_status(r));
      message = grpc_percent_encode(body);
      fields = {{"content-type", "application/grpc"},
                {"grpc-status", status_text},
                {"grpc-message", message},
                {"x-meshd-error", i.code}};
      head.status = 200;
      head.has_body = false;
    } else {
      body += '\n';
      fields = {{"content-type", "text/plain"}, {"x-meshd-error", i.code}};
      if (retry_after > 0) {
        retry = std::to_string(retry_after);
        fields.push_back({"retry-after", retry});
      }
      head.status = i.status;
      head.length = body.size();
    }
    head.fields = fields;
    send_head(head);
    if (!response_ended_) {
      response_ended_ = true;
      conn_.codec_.submit_data(id_, body, true);
      bytes_sent_ += body.size();
      conn_.kick();
    }
    co_return;
  }

  void close_after() override {}  // the connection carries other streams

  // Copies: a worker that stops destroys its coroutines in no particular order, and
  // a lifecycle's may outlast the connection's (it holds the stream, not the connection).
  metrics::Direction direction() const override { return direction_; }
  std::size_t listener() const override { return listener_; }
  const std::string& peer() const override { return peer_; }
  std::string remote_address() override {
    error_code ec;
    auto r = conn_.stream_.tcp_socket().remote_endpoint(ec);
    return ec ? std::string() : net::endpoint_text(net::from_asio(r.address()), r.port());
  }
  std::string local_address() override {
    error_code ec;
    auto l = conn_.stream_.tcp_socket().local_endpoint(ec);
    return ec ? std::string() : net::endpoint_text(net::from_asio(l.address()), l.port());
  }
  int status_sent() const override { return status_sent_; }
  std::uint64_t bytes_sent() const override { return bytes_sent_; }
  Worker& worker() override { return conn_.worker_; }

 private:
  static BodyEvent reset(ResetCause cause) { return BodyEvent{BodyEvent::Kind::reset, {}, {}, cause}; }

  // Back-pressure: the data submitted and not yet framed stays under
  // kStreamSendBuffer; a client that does not read for downstream_idle_timeout has
  // its stream reset.
  awaitable<bool> wait_for_room() {
    const auto idle = conn_.worker_.limits().downstream_idle_timeout;
    for (int guard = 0; guard < 1 << 20; ++guard) {
      // A stream that closed cleanly after its response ended delivered it all.
      if (closed_) co_return response_ended_ && close_code_ == 0;
      if (conn_.codec_.unsent(id_) <= kStreamSendBuffer) co_return true;
      const auto deadline = idle.count() > 0 ? Clock::now() + idle : Clock::time_point::max();
      const bool woken = co_await writable_.wait(deadline);
      if (!woken && Clock::now() >= deadline) {
        conn_.codec_.reset(id_, h2_error::cancel);
        conn_.kick();
        co_return false;
      }
    }
    co_return false;
  }

  Http2Connection& conn_;
  std::int32_t id_;
  metrics::Direction direction_;
  std::size_t listener_;
  std::string peer_;
  h2::FieldCopy fields_;
  RequestHead head_;
  std::string piece_;     // the body piece last handed out
  h2::FieldCopy trailers_;    // the request's trailers, once its body ended
  Signal readable_;
  Signal writable_;
  bool closed_ = false;   // the codec closed the stream (both ends done, or a reset)
  std::uint32_t close_code_ = 0;
  bool body_ended_ = false;
  bool expect_continue_ = false;  // the client sent Expect: 100-continue (answered on the first read)
  bool read_cancelled_ = false;
  bool response_ended_ = false;
  bool head_request_ = false;
  int status_sent_ = 0;
  std::uint64_t bytes_sent_ = 0;
};

Http2Connection::Http2Connection(Worker& worker, tcp::socket socket, metrics::Direction direction,
                                 std::size_t listener, std::string peer, std::string first_bytes)
    : worker_(worker),
      stream_(std::move(socket)),
      watchdog_(worker.ioc().get_executor()),
      direction_(direction),
      listener_(listener),
      peer_(std::move(peer)),
      first_bytes_(std::move(first_bytes)),
      codec_(limits_of(worker.limits()), *this),
      writer_wake_(worker.ioc().get_executor()),
      all_done_(worker.ioc().get_executor()) {
  tracked_ = worker_.track(this);
}

Http2Connection::~Http2Connection() {
  // Streams first: their lifecycles (ended) refer to nothing else of ours.
  streams_.clear();
  worker_.untrack(tracked_);
}

Http2Connection::Stream* Http2Connection::find(std::int32_t id) const {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

void Http2Connection::close_if_idle() {
  if (draining_ || closing_) return;
  // A connection that has not sent a request yet is not idle: its first requests are
  // served (SPEC §4), then it is told GOAWAY; the header deadline bounds the wait.
  if (streams_seen_ == 0) return;
  go_away();
}

void Http2Connection::go_away() {
  if (draining_ || closing_) return;
  draining_ = true;
  codec_.shutdown();
  kick();
}

void Http2Connection::close() {
  closing_ = true;
  stream_.close();
  end_all_streams();
  kick();
}

void Http2Connection::end_all_streams() {
  for (auto& [id, s] : streams_) {
    if (!s->closed()) s->closed_by_codec(h2_error::cancel);
  }
}

void Http2Connection::on_request(std::int32_t id, const RequestHead& head) {
  ++streams_seen_;
  // Streams the client reset leave the codec at once, their lifecycles only when the
  // upstream answers: the limit counts what still runs, so that reset streams cannot
  // pile up upstream requests beyond it (SPEC §7's answer: REFUSED_STREAM).
  if (streams_.size() >= worker_.limits().h2_max_concurrent_streams) {
    codec_.reset(id, h2_error::refused_stream);
    kick();
    return;
  }
  auto s = std::make_shared<Stream>(*this, id, head);
  streams_.emplace(id, s);
  ++tasks_;
  // Started after this turn, not inside the codec's callback: a lifecycle may answer
  // at once (a local reply), and the codec is not to be re-entered from nghttp2's
  // callbacks.
  watchdog_.disarm();  // not idle
  asio::post(worker_.ioc(), [this, s] {
    // A stream the client reset before its lifecycle started is not forwarded.
    if (s->closed()) {
      stream_done(*s);
      return;
    }
    asio::co_spawn(worker_.ioc(), serve_stream(s), asio::detached);
  });
}

void Http2Connection::maybe_idle() {
  // The last stream ended: the idle timeout runs from now (the read under way may
  // have begun with streams open, unarmed).
  const auto idle = worker_.limits().downstream_idle_timeout;
  if (streams_.empty() && !closing_ && !draining_ && idle.count() > 0) watchdog_.arm(stream_, idle);
}

void Http2Connection::on_body(std::int32_t id) {
  if (Stream* s = find(id)) s->wake_reader();
}

void Http2Connection::on_writable(std::int32_t id) {
  if (Stream* s = find(id)) s->wake_writer();
}

void Http2Connection::on_close(std::int32_t id, std::uint32_t code) {
  Stream* s = find(id);
  if (s == nullptr) return;
  s->closed_by_codec(code);
  if (s->lifecycle_done) {
    streams_.erase(id);
    maybe_idle();
  }
}

awaitable<void> Http2Connection::serve_stream(std::shared_ptr<Stream> s) {
  // The stream outlives its lifecycle even when a stopping worker destroys this
  // frame (the parameter goes last; nothing here runs then). If the lifecycle throws,
  // the stream still ends (the connection waits for every stream).
  try {
    RequestLifecycle lifecycle(*s);
    co_await lifecycle.run();
  } catch (...) {
  }
  stream_done(*s);
  if (!s->closed() && codec_.unsent(s->id()) > 0) co_await linger(s);
}

awaitable<void> Http2Connection::linger(std::shared_ptr<Stream> s) {
  // The lifecycle is done, its response's last bytes wait for the client's window: a
  // client that takes nothing for downstream_idle_timeout has the stream reset (it
  // would hold the stream's memory and a place in the stream limit).
  ++tasks_;
  const auto idle = worker_.limits().downstream_idle_timeout;
  for (int guard = 0; guard < 1 << 20 && !s->closed() && !closing_; ++guard) {
    const std::size_t before = codec_.unsent(s->id());
    if (before == 0) break;
    const bool progressed = co_await s->wait_progress(idle);
    if (s->closed() || closing_) break;
    if (!progressed && codec_.unsent(s->id()) >= before) {
      codec_.reset(s->id(), h2_error::cancel);
      kick();
      break;
    }
  }
  --tasks_;
  all_done_.notify();
}

void Http2Connection::stream_done(Stream& stream) {
  Stream* s = &stream;
  s->lifecycle_done = true;
  if (!s->closed() && !s->response_ended()) {
    // A lifecycle always answers; a stream left without an end is cut short.
    codec_.reset(s->id(), h2_error::internal_error);
    kick();
  }
  if (s->closed()) {
    streams_.erase(s->id());
    maybe_idle();
  }
  --tasks_;
  all_done_.notify();
}

awaitable<void> Http2Connection::write_loop() {
  const auto idle = worker_.limits().downstream_idle_timeout;
  for (;;) {
    const std::string_view out = codec_.output();
    if (!out.empty()) {
      watchdog_.arm(stream_, idle, Watchdog::write);
      auto [ec, n] = co_await stream_.async_write(asio::buffer(out.data(), out.size()));
      watchdog_.disarm(Watchdog::write);
      if (ec) break;
      if (codec_.open_streams() == 0) codec_.trim();
      continue;
    }
    if (closing_ || codec_.finished()) break;
    co_await writer_wake_.wait();
  }
  writer_done_ = true;
  closing_ = true;
  // The reader stops: nothing more can be answered.
  stream_.shutdown_send();
  stream_.cancel();
  --tasks_;
  all_done_.notify();
}

awaitable<void> Http2Connection::run() {
  ++tasks_;
  asio::co_spawn(worker_.ioc(), write_loop(), asio::detached);
  const auto& limits = worker_.limits();
  bool ok = codec_.receive(first_bytes_);
  if (ok && worker_.draining()) close_if_idle();  // once it sent a request
  first_bytes_.clear();
  first_bytes_.shrink_to_fit();
  kick();
  constexpr std::size_t kBusyRead = 16 * 1024;
  static thread_local std::array<char, kBusyRead> drain;  // the worker thread's (never awaited on)
  while (ok && !closing_) {
    // Without streams the connection is idle: after downstream_idle_timeout it is
    // closed with GOAWAY (SPEC §7), as a drain closes it; while draining, one that
    // has sent no request yet has the header deadline for its first.
    const bool waiting_first = worker_.draining() && streams_seen_ == 0;
    const auto idle = waiting_first ? limits.request_header_timeout : limits.downstream_idle_timeout;
    if (streams_.empty() && !draining_ && idle.count() > 0) {
      watchdog_.arm(stream_, idle);
    } else {
      watchdog_.disarm();
    }
    char* into = idle_read_.data();
    std::size_t room = idle_read_.size();
    if (!streams_.empty()) {
      if (!busy_read_) busy_read_ = std::make_unique<char[]>(kBusyRead);
      into = busy_read_.get();
      room = kBusyRead;
    } else {
      busy_read_.reset();
    }
    auto [ec, n] = co_await stream_.async_read_some(asio::buffer(into, room));
    if (ec) {
      if (watchdog_.fired() && !closing_ && !draining_) {
        // Idle: GOAWAY, then the writer ends the connection once it is out.
        go_away();
        continue;
      }
      break;  // EOF, a reset, or the writer ended the connection
    }
    ok = codec_.receive(std::string_view(into, n));
    // A small read that filled up: the rest is read now, into the thread's buffer.
    bool gone = false;
    if (ok && into == idle_read_.data() && n == idle_read_.size()) {
      for (int i = 0; ok && i < 64; ++i) {
        error_code rec;
        const std::size_t m = stream_.read_now(asio::buffer(drain), rec);
        if (rec == asio::error::would_block || rec == asio::error::try_again) break;
        if (rec) {
          gone = true;  // EOF or a reset: as the read's error below
          break;
        }
        ok = codec_.receive(std::string_view(drain.data(), m));
        if (m < drain.size()) break;
      }
    }
    if (gone) break;
    // A connection opened while draining is served what it sent first, then told
    // GOAWAY (as HTTP/1.1 answers it with Connection: close).
    if (ok && worker_.draining()) close_if_idle();
    kick();
  }
  watchdog_.disarm();
  // Read no more. When the codec ended the connection its GOAWAY is queued: the
  // writer sends what is queued, then closes. Streams still open are over.
  closing_ = true;
  end_all_streams();
  kick();
  // Every task ends: the writer once its last frames are out (bounded by the write
  // idle timeout), the lifecycles once they see their stream closed.
  for (int guard = 0; tasks_ > 0 && guard < 1 << 24; ++guard) co_await all_done_.wait();
  stream_.close();
}

}  // namespace meshd::proxy
