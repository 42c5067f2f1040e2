#pragma once
// The HTTP/1.1 server adapter: one accepted connection. It reads requests (pipelined
// ones are answered in order, one at a time), enforces the header deadline and the
// idle timeout, turns each request into a protocol-neutral RequestHead, runs a
// RequestLifecycle on it as a DownstreamStream, and writes the response with HTTP/1.1
// framing: Content-Length, chunked (with trailers) or until close; 100 Continue;
// interim responses; hop-by-hop fields; keep-alive; parking of idle connections.
#include <array>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "metrics/stats.hpp"
#include "net/byte_buffer.hpp"
#include "proxy/http1_codec.hpp"
#include "proxy/io.hpp"
#include "proxy/local_reply.hpp"
#include "proxy/served_connection.hpp"
#include "proxy/stream.hpp"

namespace meshd::proxy {

class Worker;

class DownstreamConnection final : public DownstreamStream, public ServedConnection {
 public:
  // A keep-alive connection idle this long is parked by its worker: its coroutines
  // end and only the socket and a few bytes stay (Worker::park), so that thousands of
  // idle connections cost little memory. It comes back when the client sends again.
  static constexpr std::chrono::milliseconds kParkAfter{250};

  // `peer` is empty for a new connection (it is looked up); a connection coming back
  // from parking brings it, with the time it became idle.
  DownstreamConnection(Worker& worker, tcp::socket socket, metrics::Direction direction, std::size_t listener = 0,
                       std::string peer = {}, std::optional<Clock::time_point> idle_since = std::nullopt);
  ~DownstreamConnection() override;
  enum class Outcome { closed, park, http2 };
  // Serves requests until the connection closes (its socket closed), has been idle
  // kParkAfter (its socket left open, for take_socket()), or began with the HTTP/2
  // preface (socket and the bytes read so far, take_buffered(), go to the HTTP/2
  // adapter).
  awaitable<Outcome> run();
  tcp::socket take_socket() { return std::move(stream_.tcp_socket()); }
  std::string take_buffered();
  std::string take_peer() { return std::move(peer_); }
  // When the connection became idle (set when run() returns park).
  Clock::time_point idle_since() const { return idle_since_.value_or(Clock::now()); }
  // Called by the worker when draining: closes the connection now if it is idle.
  void close_if_idle() override;
  // Called by the worker when stopping.
  void close() override { stream_.close(); }

  // DownstreamStream
  const RequestHead& request() const override { return request_; }
  awaitable<BodyEvent> read_body(std::chrono::milliseconds idle) override;
  void cancel_read() override;
  awaitable<bool> send_interim(const ResponseHead& head) override;
  void send_head(const ResponseHead& head) override;
  awaitable<bool> flush() override;
  awaitable<bool> send_data(std::string_view piece) override;
  awaitable<bool> send_end(std::string_view last_piece, std::span<const Field> trailers) override;
  void abort() override;
  awaitable<void> send_local_reply(LocalReply r, std::string_view detail, std::uint32_t retry_after = 0) override;
  void close_after() override { keep_alive_ = false; }
  metrics::Direction direction() const override { return direction_; }
  std::size_t listener() const override { return listener_; }
  const std::string& peer() const override { return peer_; }
  std::string remote_address() override;
  std::string local_address() override;
  int status_sent() const override { return status_sent_; }
  std::uint64_t bytes_sent() const override { return bytes_sent_; }
  Worker& worker() override { return worker_; }

 private:
  enum class HeadResult { head, closed, park, http2 };
  enum class Framing : std::uint8_t { none, length, chunked, close };
  awaitable<HeadResult> read_head();
  void prepare_request();
  awaitable<void> drain_request_body();
  // Up to four pieces in one gathered send (empty ones are skipped); false when the
  // write failed (the connection then closes).
  awaitable<bool> write_gather(std::array<std::string_view, 4> pieces);
  awaitable<bool> write(std::string_view bytes) { return write_gather({bytes, {}, {}, {}}); }

  Worker& worker_;
  ByteStream stream_;
  Watchdog watchdog_;
  metrics::Direction direction_;
  std::size_t listener_;
  Http1Parser parser_;
  net::ByteBuffer buffer_;
  std::array<char, 1024> idle_bytes_;  // the first bytes of a request, read while idle
  std::size_t pending_consume_ = 0;  // bytes of buffer_ handed out as body, consumed on the next read
  std::string peer_;
  // The request being served, in neutral form (its fields point into parser_'s head).
  RequestHead request_;
  std::vector<Field> fields_;
  std::vector<Field> trailers_;  // the request's trailers, filtered
  // The response being written.
  std::string head_bytes_;  // the head, built by send_head, sent with the first data
  bool head_pending_ = false;
  Framing framing_ = Framing::none;
  bool expect_continue_ = false;  // the client waits for "100 Continue" before its body
  bool grpc_request_ = false;  // the exchange's request is gRPC: local replies are trailers-only
  bool read_cancelled_ = false;
  int status_sent_ = 0;
  std::uint64_t bytes_sent_ = 0;
  bool keep_alive_ = true;
  bool idle_ = true;
  bool body_done_ = true;
  bool served_ = false;  // a request was read on this connection (or before parking)
  std::optional<Clock::time_point> idle_since_;  // set while waiting for a request
  std::list<ServedConnection*>::iterator tracked_;
};

}  // namespace meshd::proxy
