#pragma once
// The HTTP/2 client adapter (SPEC §7): one multiplexed connection to an upstream
// endpoint, driving an Http2ClientCodec with its reads and writes, and the
// UpstreamExchanges on it, one stream each. The pool (upstream.hpp) shares a
// connection among requests up to the server's SETTINGS_MAX_CONCURRENT_STREAMS and
// opens another only when it is full; a GOAWAY drains it (no new streams; the ones
// the server processed finish), and a stream the server refused or left unprocessed
// fails with ErrorKind::upstream_refused, which the lifecycle retries on another
// connection whatever the retry policy says (nothing was processed).
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "mesh/cluster/endpoints.hpp"
#include "proxy/http2_client_codec.hpp"
#include "proxy/io.hpp"
#include "proxy/stream.hpp"

namespace meshd::proxy {

class Http2UpstreamConnection final : public std::enable_shared_from_this<Http2UpstreamConnection>,
                                      private Http2ClientEvents {
 public:
  // A stream's request data waits for the windows only up to this before its
  // sender waits (the downstream's window then holds the rest back).
  static constexpr std::size_t kStreamSendBuffer = 64 * 1024;

  Http2UpstreamConnection(asio::any_io_executor ex, std::shared_ptr<mesh::Endpoint> ep,
                          const Http2ClientLimits& limits);
  ~Http2UpstreamConnection() override;
  Http2UpstreamConnection(const Http2UpstreamConnection&) = delete;
  Http2UpstreamConnection& operator=(const Http2UpstreamConnection&) = delete;

  void count_connection();  // counted in the endpoint's `connections` while it lives (pooled ones)
  // Connects, then starts the reader and the writer.
  awaitable<error_code> connect(std::chrono::milliseconds timeout);
  // An exchange on a new stream (opened by its send_head); nullptr when the
  // connection takes no more streams.
  std::unique_ptr<UpstreamExchange> open_exchange();
  // Whether another stream fits now (connected, no GOAWAY, below the server's limit).
  bool can_open() const;
  bool connected() const { return connected_; }
  bool closed() const { return closed_; }
  std::size_t streams() const { return exchanges_.size() + opening_; }
  // No new streams: closes once its streams end (a drain, a reload's endpoint change).
  void retire();
  // PING keep-alive (called every second by the pool's sweep): after `interval`
  // without a byte from the server a PING goes out; one unanswered for `interval`
  // more closes the connection (a dead peer or path is found before a request is
  // sent into it). A zero interval turns it off.
  void keepalive(Clock::time_point now, std::chrono::milliseconds interval);
  // Ends it now (the worker stops): every exchange sees its stream reset.
  void close();
  // No stream since this time (the pool's sweep retires it after its idle timeout).
  Clock::time_point idle_since() const { return idle_since_; }
  bool idle() const { return exchanges_.empty() && opening_ == 0; }
  std::chrono::milliseconds idle_timeout{30000};  // set by the pool from the lifecycle's release
  const std::shared_ptr<mesh::Endpoint>& endpoint() const { return endpoint_; }
  std::int64_t* gauge = nullptr;  // the worker's meshd_upstream_connections_active for the node

 private:
  class Exchange;
  friend class Exchange;

  // Http2ClientEvents
  void on_response(std::int32_t stream, const ResponseHead& head) override;
  void on_body(std::int32_t stream) override;
  void on_writable(std::int32_t stream) override;
  void on_close(std::int32_t stream, std::uint32_t error_code) override;
  void on_goaway(std::int32_t last_stream, std::uint32_t error_code) override;

  awaitable<void> read_loop(std::shared_ptr<Http2UpstreamConnection> self);
  awaitable<void> write_loop(std::shared_ptr<Http2UpstreamConnection> self);
  void kick() { writer_wake_.notify(); }
  void end_all(std::uint32_t code);  // the connection is gone
  void maybe_finish();                     // retired and no streams left: close
  Exchange* find(std::int32_t id) const;

  ByteStream stream_;
  Watchdog watchdog_;
  std::shared_ptr<mesh::Endpoint> endpoint_;
  Http2ClientCodec codec_;
  std::map<std::int32_t, Exchange*> exchanges_;  // by stream; an exchange unregisters itself
  std::size_t opening_ = 0;  // exchanges handed out that have not opened their stream yet
  Signal writer_wake_;
  Clock::time_point idle_since_ = Clock::now();
  Clock::time_point last_read_ = Clock::now();
  std::optional<Clock::time_point> ping_sent_;
  std::int32_t goaway_last_ = 0x7fffffff;
  std::uint64_t writes_ = 0;  // writes completed (an exchange's wrote_any())
  bool connected_ = false;
  bool used_ = false;  // an exchange was opened before (the next one is "reused")
  bool retired_ = false;
  bool closed_ = false;
  bool counted_ = false;
};

}  // namespace meshd::proxy
