#pragma once
// The HTTP/2 server codec (issue 12): one accepted HTTP/2 connection as a sans-I/O
// nghttp2 session. Bytes read from the connection go in (receive()); requests come
// out as protocol-neutral RequestHeads and body events per stream; responses go in
// as ResponseHeads, data and trailers; the bytes to write come out (output()). No
// nghttp2 type is visible here. The adapter that drives it (reads, writes, one
// request lifecycle per stream) sits above, as DownstreamConnection does for HTTP/1.1.
//
// Memory is bounded per stream and per connection: request body bytes are kept until
// the adapter takes them, and the peer's flow-control windows open only by what it
// took (nghttp2's automatic window updates are off), so a slow reader holds the
// window, not a buffer. SPEC §7's answers to abuse that nghttp2 1.52 does not give by
// itself (docs/nghttp2_notes.md) are the codec's: excess streams refused with
// RST_STREAM REFUSED_STREAM, reset and control-frame floods answered with GOAWAY
// ENHANCE_YOUR_CALM, header blocks over the list limit or in too many CONTINUATION
// frames ending the connection.
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/message.hpp"

struct nghttp2_session;

namespace meshd::proxy {

using Http2Clock = std::chrono::steady_clock;

struct Http2Limits {
  std::uint32_t max_concurrent_streams = 100;       // h2_max_concurrent_streams (advertised)
  std::uint32_t max_header_list_bytes = 60 * 1024;  // h2_max_header_list_bytes (RFC 9113 §6.5.2 sizes)
  std::uint32_t initial_stream_window = 64 * 1024;  // h2_initial_window_bytes
  std::uint32_t connection_window = 1024 * 1024;
  std::uint32_t max_resets_per_second = 200;            // h2_max_resets_per_second
  std::uint32_t max_continuations = 16;                 // CONTINUATION frames per header block
  std::uint32_t max_control_frames_per_second = 1000;   // SETTINGS, PING, WINDOW_UPDATE, PRIORITY, empty DATA
};

// HTTP/2 error codes (RFC 9113 §7) the adapter uses.
namespace h2_error {
inline constexpr std::uint32_t no_error = 0x0;
inline constexpr std::uint32_t protocol_error = 0x1;
inline constexpr std::uint32_t internal_error = 0x2;
inline constexpr std::uint32_t refused_stream = 0x7;
inline constexpr std::uint32_t cancel = 0x8;
inline constexpr std::uint32_t enhance_your_calm = 0xb;
}  // namespace h2_error

// What the codec tells its adapter, from inside receive() and output().
class Http2ServerEvents {
 public:
  virtual ~Http2ServerEvents() = default;
  // A request head came on a new stream; it and its fields stay valid until the
  // stream is closed (on_close).
  virtual void on_request(std::int32_t stream, const RequestHead& head) = 0;
  // Body bytes or the body's end (with trailers) can be taken (take_body). A reset
  // comes as on_close with its error code.
  virtual void on_body(std::int32_t stream) = 0;
  // Response data submitted earlier went to the wire: unsent() is lower (the
  // adapter's back-pressure waits for this).
  virtual void on_writable(std::int32_t stream) = 0;
  // The stream is closed: by both ends finishing, or a reset (error_code not 0).
  // take_body() still gives what was received while this runs; nothing of the
  // stream may be used after it returns. Only for streams whose request was
  // delivered (on_request).
  virtual void on_close(std::int32_t stream, std::uint32_t error_code) = 0;
};

class Http2ServerCodec {
 public:
  // Why the connection ends (why()).
  enum class End : std::uint8_t {
    none,
    peer_goaway,      // the client said GOAWAY (or closed in an orderly way)
    shutdown,         // the adapter asked (shutdown()): drained
    protocol_error,   // the client broke HTTP/2 (nghttp2's verdict: GOAWAY sent)
    rapid_reset,      // more than max_resets_per_second RST_STREAM frames
    flood,            // SETTINGS, PING, WINDOW_UPDATE, PRIORITY or empty DATA floods
    header_too_large, // a header block over max_header_list_bytes or in too many CONTINUATIONs
  };

  Http2ServerCodec(const Http2Limits& limits, Http2ServerEvents& events);
  ~Http2ServerCodec();
  Http2ServerCodec(const Http2ServerCodec&) = delete;
  Http2ServerCodec& operator=(const Http2ServerCodec&) = delete;

  // Feeds bytes read from the connection (the client preface first). False: the
  // connection is over (write output() once more, then close); why() says why.
  bool receive(std::string_view bytes);
  // What is to be written now, gathered (at most about kOutputCap); empty when
  // nothing. Valid until the next call of output() (other members may be called
  // while it is being written).
  std::string_view output();
  static constexpr std::size_t kOutputCap = 64 * 1024;
  // Gives back the output buffers' memory (an idle connection keeps none).
  void trim() {
    if (out_.empty()) std::string().swap(out_);
    std::string().swap(wire_);
  }
  // The session has nothing more to read or write: close the connection.
  bool finished() const;
  End why() const { return end_; }

  // The request body of `stream`: the next event (data or end), or nullopt when
  // nothing is there yet (on_body says when). Data taken is given back to the peer's
  // windows.
  std::optional<BodyEvent> take_body(std::int32_t stream);

  // The response. submit_head() with end: no body (a HEAD response, 204, a gRPC
  // trailers-only answer). Data is copied and sent as the windows allow; unsent()
  // says how much of it waits, for the adapter's back-pressure.
  bool submit_head(std::int32_t stream, const ResponseHead& head, bool end);
  // An informational response (1xx other than 101) before the head.
  bool submit_interim(std::int32_t stream, const ResponseHead& head);
  bool submit_data(std::int32_t stream, std::string_view data, bool end);
  bool submit_trailers(std::int32_t stream, std::span<const Field> trailers);
  std::size_t unsent(std::int32_t stream) const;
  // Ends a stream with RST_STREAM (a response cut short: CANCEL or INTERNAL_ERROR).
  void reset(std::int32_t stream, std::uint32_t error_code);
  // A graceful end: GOAWAY with the last stream seen; open streams finish.
  void shutdown();
  std::size_t open_streams() const { return streams_.size(); }

 private:
  struct Stream;
  struct Callbacks;
  friend struct Callbacks;

  Stream* find(std::int32_t id) const;
  void terminate(End why, std::uint32_t error_code);
  bool over_rate(std::uint32_t& count, Http2Clock::time_point& window, std::uint32_t limit);
  std::size_t frame_left() const;
  void advance(std::string_view fed);
  void count_frame(std::uint8_t type, std::uint8_t flags, std::size_t length);
  void collect_output();

  const Http2Limits limits_;
  Http2ServerEvents& events_;
  nghttp2_session* session_ = nullptr;
  std::map<std::int32_t, std::unique_ptr<Stream>> streams_;
  std::string out_;   // frames collected, not yet handed out
  std::string wire_;  // the bytes the last output() handed out
  bool settings_patched_ = false;
  // Where the input stands: the client preface, then a frame's header and payload.
  std::size_t preface_left_ = 24;
  unsigned char header_[9] = {};
  std::size_t header_have_ = 0;
  std::size_t payload_left_ = 0;
  End end_ = End::none;
  std::uint32_t resets_ = 0;
  Http2Clock::time_point resets_window_{};
  std::uint32_t control_frames_ = 0;
  std::uint64_t window_update_credit_ = 0;  // two WINDOW_UPDATEs per DATA frame sent
  Http2Clock::time_point control_window_{};
  bool refused_pending_ = false;  // a stream was refused: its RST goes out before more input
};

}  // namespace meshd::proxy
