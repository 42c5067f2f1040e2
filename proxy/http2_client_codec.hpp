#pragma once
// The HTTP/2 client codec (issue 12): one upstream HTTP/2 connection (h2c with prior
// knowledge; ALPN h2 under TLS next) as a sans-I/O nghttp2 session. Requests go in
// as OutgoingRequests (pseudo-headers from the request line and authority, the
// fields meshd forwards), data and trailers; responses come out per stream as
// protocol-neutral ResponseHeads (interim and final) and body events; the bytes to
// write come out of output(). No nghttp2 type is visible here. The adapter that
// drives it (http2_upstream.hpp) multiplexes exchanges on the connection.
//
// Memory is bounded as on the server side: response body bytes stay in the codec
// until the exchange takes them, and the server's windows open only by what was
// taken; request data waits in the stream's buffer (unsent()) for the windows.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "proxy/message.hpp"

struct nghttp2_session;

namespace meshd::proxy {

struct Http2ClientLimits {
  std::uint32_t initial_stream_window = 64 * 1024;  // h2_initial_window_bytes
  std::uint32_t connection_window = 1024 * 1024;    // h2_connection_window_bytes
  std::uint32_t max_header_list_bytes = 60 * 1024;  // a response head larger resets its stream
};

class Http2ClientEvents {
 public:
  virtual ~Http2ClientEvents() = default;
  // A response head (interim 1xx or final) on `stream`; valid until the next event
  // of the stream.
  virtual void on_response(std::int32_t stream, const ResponseHead& head) = 0;
  // Body bytes or the body's end can be taken (take_body).
  virtual void on_body(std::int32_t stream) = 0;
  // Request data submitted earlier went to the wire (unsent() is lower).
  virtual void on_writable(std::int32_t stream) = 0;
  // The stream is closed: both ends done (0), or reset with an HTTP/2 error code;
  // REFUSED_STREAM when the server refused it or a GOAWAY left it unprocessed.
  // take_body() still gives what was received while this runs (the adapter keeps
  // it); nothing of the stream may be used after it returns.
  virtual void on_close(std::int32_t stream, std::uint32_t error_code) = 0;
  // The server is going away: streams above `last_stream` were not processed.
  virtual void on_goaway(std::int32_t last_stream, std::uint32_t error_code) = 0;
};

class Http2ClientCodec {
 public:
  Http2ClientCodec(const Http2ClientLimits& limits, Http2ClientEvents& events);
  ~Http2ClientCodec();
  Http2ClientCodec(const Http2ClientCodec&) = delete;
  Http2ClientCodec& operator=(const Http2ClientCodec&) = delete;

  // Feeds bytes read from the connection. False: the connection is over (write
  // output() once more, then close).
  bool receive(std::string_view bytes);
  // What is to be written now (at most about kOutputCap; the client preface first);
  // valid until the next output().
  std::string_view output();
  static constexpr std::size_t kOutputCap = 64 * 1024;
  bool finished() const;  // nothing more to read or write

  // A new stream for `r` (`end`: no body follows); its id, or -1 when the session
  // cannot take one. The head is copied.
  std::int32_t submit_request(const OutgoingRequest& r, bool end);
  bool submit_data(std::int32_t stream, std::string_view data, bool end);
  bool submit_trailers(std::int32_t stream, std::span<const Field> trailers);
  std::size_t unsent(std::int32_t stream) const;
  std::optional<BodyEvent> take_body(std::int32_t stream);
  void reset(std::int32_t stream, std::uint32_t error_code);
  void ping();
  bool ping_outstanding() const { return pings_unanswered_ > 0; }
  // A graceful end from our side (an idle connection): GOAWAY, no new streams.
  void shutdown();

  // Whether another stream fits: no GOAWAY either way, and fewer open than the
  // server's SETTINGS_MAX_CONCURRENT_STREAMS (100 until its SETTINGS come).
  bool can_open() const;
  std::size_t open_streams() const { return streams_.size(); }
  std::uint32_t peer_max_streams() const;
  bool goaway() const { return goaway_; }

 private:
  struct Stream;
  struct Callbacks;
  friend struct Callbacks;
  Stream* find(std::int32_t id) const;

  const Http2ClientLimits limits_;
  Http2ClientEvents& events_;
  nghttp2_session* session_ = nullptr;
  std::map<std::int32_t, std::unique_ptr<Stream>> streams_;
  std::string out_;
  std::string wire_;
  bool goaway_ = false;  // received or sent
  std::uint32_t pings_unanswered_ = 0;
  bool failed_ = false;
};

}  // namespace meshd::proxy
