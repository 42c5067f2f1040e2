#include "proxy/http2_server_codec.hpp"

#include <nghttp2/nghttp2.h>

#include "proxy/grpc.hpp"
#include "proxy/http2_session.hpp"

#include <algorithm>
#include <cstring>

namespace meshd::proxy {

namespace {

constexpr std::size_t kFrameHeader = 9;
constexpr std::uint8_t kSettingsFrame = 0x4;
constexpr std::uint16_t kSettingsMaxConcurrentStreams = 0x3;

using h2::view;

}  // namespace

struct Http2ServerCodec::Stream {
  explicit Stream(std::int32_t i) : id(i) {}
  ~Stream() {
    for (auto* b : held) nghttp2_rcbuf_decref(b);
  }
  std::int32_t id;
  // The request's names and values, kept for `fields` (a typical request's inline).
  boost::container::small_vector<nghttp2_rcbuf*, 24> held;
  boost::container::small_vector<Field, 10> fields;
  std::string_view method, scheme, authority, path, protocol;
  std::size_t header_bytes = 0;
  bool head_delivered = false;
  RequestHead head;
  h2::RecvBody request;   // the request body: received and not yet taken; its end
  h2::SendBody response;  // the response body: submitted and not yet framed
  bool response_submitted = false;
  bool closing = false;  // in on_stream_close
};

struct Http2ServerCodec::Callbacks {
  static Http2ServerCodec& self(void* user) { return *static_cast<Http2ServerCodec*>(user); }

  static int on_begin_headers(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    auto& c = self(user);
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    if (c.streams_.size() >= c.limits_.max_concurrent_streams) {
      // SPEC §7: more streams than advertised: this one refused, the connection kept.
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_REFUSED_STREAM);
      c.refused_pending_ = true;
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    c.streams_.emplace(frame->hd.stream_id, std::make_unique<Stream>(frame->hd.stream_id));
    return 0;
  }

  static int on_header(nghttp2_session* /*session*/, const nghttp2_frame* frame, nghttp2_rcbuf* name,
                       nghttp2_rcbuf* value, std::uint8_t /*flags*/, void* user) {
    auto& c = self(user);
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    Stream* s = c.find(frame->hd.stream_id);
    if (s == nullptr) return 0;
    const auto n = view(name);
    const auto v = view(value);
    s->header_bytes += n.size() + v.size() + 32;  // RFC 9113 §6.5.2
    if (s->header_bytes > c.limits_.max_header_list_bytes) {
      // SPEC §7: a header list over the limit ends the connection.
      c.terminate(End::header_too_large, NGHTTP2_ENHANCE_YOUR_CALM);
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    nghttp2_rcbuf_incref(name);
    nghttp2_rcbuf_incref(value);
    s->held.push_back(name);
    s->held.push_back(value);
    if (s->head_delivered) {  // trailers (nghttp2 rejects pseudo-headers there)
      s->request.trailers().push_back(Field{n, v});
      return 0;
    }
    if (!n.empty() && n.front() == ':') {
      if (n == ":method") s->method = v;
      else if (n == ":scheme") s->scheme = v;
      else if (n == ":authority") s->authority = v;
      else if (n == ":path") s->path = v;
      else if (n == ":protocol") s->protocol = v;
      return 0;
    }
    s->fields.push_back(Field{n, v});
    return 0;
  }

  static int on_frame_recv(nghttp2_session* /*session*/, const nghttp2_frame* frame, void* user) {
    auto& c = self(user);
    switch (frame->hd.type) {
      case NGHTTP2_RST_STREAM:
        if (c.over_rate(c.resets_, c.resets_window_, c.limits_.max_resets_per_second)) {
          c.terminate(End::rapid_reset, NGHTTP2_ENHANCE_YOUR_CALM);
          return 0;
        }
        break;
      case NGHTTP2_GOAWAY:
        if (c.end_ == End::none) c.end_ = End::peer_goaway;
        break;
      case NGHTTP2_DATA:
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
          if (Stream* s = c.find(frame->hd.stream_id)) {
            s->request.end();
            c.events_.on_body(s->id);
          }
        }
        break;
      case NGHTTP2_HEADERS: {
        Stream* s = c.find(frame->hd.stream_id);
        if (s == nullptr) break;
        const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
        if (!s->head_delivered) {
          s->head_delivered = true;
          RequestHead& h = s->head;
          h.method = s->method;
          h.scheme = s->scheme.empty() ? std::string_view("http") : s->scheme;
          h.authority = s->authority;
          if (h.authority.empty()) {
            if (auto host = find_field(s->fields, "host")) h.authority = *host;
          }
          h.path = s->path;
          h.fields = s->fields;
          h.version = Version::http2;
          h.upgrade = s->protocol;
          h.has_body = !end;
          if (auto len = find_field(s->fields, "content-length")) {
            std::uint64_t n = 0;
            for (char ch : *len) n = n * 10 + static_cast<std::uint64_t>(ch - '0');  // nghttp2 checked it
            h.length = n;
          }
          if (auto ct = find_field(s->fields, "content-type")) h.grpc = is_grpc_content_type(*ct);
          if (end) s->request.end();
          c.events_.on_request(s->id, h);
        } else if (end) {
          s->request.end();  // trailers
          c.events_.on_body(s->id);
        }
        break;
      }
      default:
        break;
    }
    return 0;
  }

  static int on_data_chunk(nghttp2_session* /*session*/, std::uint8_t /*flags*/, std::int32_t stream,
                           const std::uint8_t* data, std::size_t len, void* user) {
    auto& c = self(user);
    Stream* s = c.find(stream);
    if (s == nullptr) {
      // Not ours any more: give the bytes back to the connection window at once.
      nghttp2_session_consume_connection(c.session_, len);
      return 0;
    }
    s->request.append(std::string_view(reinterpret_cast<const char*>(data), len));
    nghttp2_session_consume_connection(c.session_, len);  // held against the stream's window only
    c.events_.on_body(stream);
    return 0;
  }

  static int on_stream_close(nghttp2_session* /*session*/, std::int32_t stream, std::uint32_t error_code, void* user) {
    auto& c = self(user);
    auto it = c.streams_.find(stream);
    if (it == c.streams_.end()) return 0;
    Stream& s = *it->second;
    s.closing = true;
    // A stream nghttp2 reset before its head was complete (a malformed request) was
    // never the adapter's. During on_close, take_body() still gives what was received.
    if (s.head_delivered) c.events_.on_close(stream, error_code);
    c.streams_.erase(stream);
    return 0;
  }

  // A response complete before its request (an early 413, a long poll answered):
  // the client is told to stop sending with RST_STREAM NO_ERROR (RFC 9113 §8.1),
  // once the response's last frame is out, so that its windows are not held.
  static int on_frame_send(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    auto& c = self(user);
    // Each DATA frame sent earns the client two WINDOW_UPDATEs outside the flood
    // budget (its stream's and the connection's): a fast download is not a flood.
    if (frame->hd.type == NGHTTP2_DATA && frame->hd.length > 0) {
      // (Capped: credit saved up by a long download is not a later flood's budget.)
      c.window_update_credit_ = std::min<std::uint64_t>(c.window_update_credit_ + 2, 2 * c.limits_.max_control_frames_per_second);
    }
    if ((frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS) ||
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) {
      return 0;
    }
    if (Stream* s = c.find(frame->hd.stream_id); s != nullptr && !s->request.ended()) {
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
    }
    return 0;
  }

  static ssize_t read_data(nghttp2_session* session, std::int32_t stream, std::uint8_t* buf, std::size_t length,
                           std::uint32_t* flags, nghttp2_data_source* /*source*/, void* user) {
    auto& c = self(user);
    Stream* s = c.find(stream);
    if (s == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    const ssize_t n = s->response.read(session, stream, buf, length, flags);
    if (n > 0) c.events_.on_writable(stream);  // unsent() went down
    return n;
  }
};

Http2ServerCodec::Http2ServerCodec(const Http2Limits& limits, Http2ServerEvents& events)
    : limits_(limits), events_(events) {
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, &Callbacks::on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback2(cb, &Callbacks::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &Callbacks::on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &Callbacks::on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, &Callbacks::on_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(cb, &Callbacks::on_frame_send);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_continuations(opt, limits_.max_continuations);
  // The codec counts resets itself (SPEC's answer is ENHANCE_YOUR_CALM): nghttp2's
  // own limiter, which answers INTERNAL_ERROR, is kept out of its way.
  nghttp2_option_set_stream_reset_rate_limit(opt, 1000000, 1000000);
  nghttp2_session_server_new2(&session_, cb, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);
  // nghttp2 is told one stream more than the client: its own check, which would
  // end the connection over an acknowledged limit, stays behind the codec's, which
  // refuses the one stream (on_begin_headers). The client is told the real limit
  // (output() rewrites the value in the first SETTINGS frame).
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, std::max(limits_.max_concurrent_streams, limits_.max_concurrent_streams + 1)},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, limits_.initial_stream_window},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, limits_.max_header_list_bytes},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  const auto extra = static_cast<std::int32_t>(limits_.connection_window) - NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE;
  if (extra > 0) nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, limits_.connection_window);
}

Http2ServerCodec::~Http2ServerCodec() {
  // Streams first: their rcbufs belong to the session's memory.
  streams_.clear();
  nghttp2_session_del(session_);
}

Http2ServerCodec::Stream* Http2ServerCodec::find(std::int32_t id) const {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

bool Http2ServerCodec::over_rate(std::uint32_t& count, Http2Clock::time_point& window, std::uint32_t limit) {
  const auto now = Http2Clock::now();
  if (now - window >= std::chrono::seconds(1)) {
    window = now;
    count = 0;
  }
  return ++count > limit;
}

void Http2ServerCodec::terminate(End why, std::uint32_t error_code) {
  if (end_ == End::none || end_ == End::peer_goaway || end_ == End::shutdown) end_ = why;
  nghttp2_session_terminate_session(session_, error_code);
}

bool Http2ServerCodec::receive(std::string_view bytes) {
  // Frame by frame, so that the RST_STREAM of a refused stream goes out (and the
  // stream leaves nghttp2's count) before the next frame is read.
  while (!bytes.empty()) {
    const std::size_t take = std::min(bytes.size(), frame_left());
    const auto* p = reinterpret_cast<const std::uint8_t*>(bytes.data());
    const ssize_t n = nghttp2_session_mem_recv(session_, p, take);
    if (n < 0) {
      if (n == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
        terminate(End::header_too_large, NGHTTP2_ENHANCE_YOUR_CALM);
      } else if (n == NGHTTP2_ERR_FLOODED) {
        terminate(End::flood, NGHTTP2_ENHANCE_YOUR_CALM);
      } else if (end_ == End::none || end_ == End::peer_goaway || end_ == End::shutdown) {
        terminate(End::protocol_error, NGHTTP2_PROTOCOL_ERROR);
      }  // else a callback ended it already, with its reason
      return false;
    }
    advance(bytes.substr(0, static_cast<std::size_t>(n)));
    bytes.remove_prefix(static_cast<std::size_t>(n));
    if (end_ != End::none && end_ != End::peer_goaway && end_ != End::shutdown) return false;
    if (refused_pending_) {
      refused_pending_ = false;
      // The RST goes out (and closes the refused stream) even when the output is at
      // its cap (control frames go before DATA: another cap's worth is enough).
      h2::collect(session_, out_, out_.size() + kOutputCap);
    }
  }
  if (end_ != End::none && end_ != End::peer_goaway && end_ != End::shutdown) return false;
  if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_)) {
    if (end_ == End::none) end_ = End::protocol_error;  // nghttp2 ended it (GOAWAY sent)
    return false;
  }
  return true;
}

std::size_t Http2ServerCodec::frame_left() const {
  if (preface_left_ > 0) return preface_left_;
  if (header_have_ < kFrameHeader) return kFrameHeader - header_have_;
  return std::max<std::size_t>(payload_left_, 1);
}

void Http2ServerCodec::count_frame(std::uint8_t type, std::uint8_t flags, std::size_t length) {
  // Counted from the frame header, so that frames nghttp2 drops without a callback
  // (on closed streams, PRIORITY, duplicates) count too.
  constexpr std::uint8_t kData = 0x0, kHeaders = 0x1, kPriority = 0x2, kSettings = 0x4, kPing = 0x6,
                         kWindowUpdate = 0x8, kContinuation = 0x9;
  constexpr std::uint8_t kEndStream = 0x1;
  bool control = false;
  switch (type) {
    case kSettings:
    case kPing:
    case kPriority:
      control = true;
      break;
    case kWindowUpdate:
      if (window_update_credit_ > 0) {
        --window_update_credit_;
      } else {
        control = true;
      }
      break;
    case kData:
    case kHeaders:
    case kContinuation:
      // Empty frames carry nothing but work (empty DATA without END_STREAM, empty
      // header fragments).
      control = length == 0 && (type == kContinuation || (flags & kEndStream) == 0);
      break;
    default:
      break;
  }
  if (control && over_rate(control_frames_, control_window_, limits_.max_control_frames_per_second)) {
    terminate(End::flood, NGHTTP2_ENHANCE_YOUR_CALM);
  }
}

void Http2ServerCodec::advance(std::string_view fed) {
  // Follows the frame boundaries of what nghttp2 took (fed never crosses one).
  if (fed.empty()) return;
  if (preface_left_ > 0) {
    preface_left_ -= fed.size();
    return;
  }
  if (header_have_ < kFrameHeader) {
    std::memcpy(header_ + header_have_, fed.data(), fed.size());
    header_have_ += fed.size();
    if (header_have_ == kFrameHeader) {
      payload_left_ = (std::size_t{header_[0]} << 16) | (std::size_t{header_[1]} << 8) | header_[2];
      count_frame(header_[3], header_[4], payload_left_);
      if (payload_left_ == 0) header_have_ = 0;  // the next frame
    }
    return;
  }
  payload_left_ -= fed.size();
  if (payload_left_ == 0) header_have_ = 0;
}

void Http2ServerCodec::collect_output() {
  // Up to kOutputCap at a time: what is not yet framed stays in the streams' own
  // buffers (unsent()), where the adapter's back-pressure sees it.
  h2::collect(session_, out_, kOutputCap);
  if (!settings_patched_ && out_.size() >= kFrameHeader) {
    // The server's first frame is its SETTINGS: the client is told the real stream
    // limit (nghttp2 was told one more; see the constructor).
    const auto* f = reinterpret_cast<unsigned char*>(out_.data());
    const std::size_t len = (std::size_t{f[0]} << 16) | (std::size_t{f[1]} << 8) | f[2];
    if (f[3] == kSettingsFrame && out_.size() >= kFrameHeader + len) {
      settings_patched_ = true;
      for (std::size_t at = kFrameHeader; at + 6 <= kFrameHeader + len; at += 6) {
        const auto id = static_cast<std::uint16_t>((f[at] << 8) | f[at + 1]);
        if (id != kSettingsMaxConcurrentStreams) continue;
        const std::uint32_t v = limits_.max_concurrent_streams;
        out_[at + 2] = static_cast<char>(v >> 24);
        out_[at + 3] = static_cast<char>(v >> 16);
        out_[at + 4] = static_cast<char>(v >> 8);
        out_[at + 5] = static_cast<char>(v);
      }
    }
  }
}

std::string_view Http2ServerCodec::output() {
  // What the last call handed out has been written: its buffer takes the new bytes
  // next time (out_ keeps collecting meanwhile, so what is being written stays put).
  wire_.clear();
  collect_output();
  wire_.swap(out_);
  return wire_;
}

bool Http2ServerCodec::finished() const {
  return nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0 && out_.empty();
}

std::optional<BodyEvent> Http2ServerCodec::take_body(std::int32_t stream) {
  Stream* s = find(stream);
  if (s == nullptr) return std::nullopt;
  return s->request.take(session_, stream, s->closing);
}

namespace {

// A response head: :status first, then the fields (the body's length, when the head
// says one, where the sender had its framing field).
void response_block(const ResponseHead& head, h2::NvList& block) {
  block.add(":status", block.keep(std::to_string(head.status)));
  const bool length = head.length && head.status >= 200 && head.status != 204;
  block.add_fields(head.fields, head.framing_at, length ? head.length : std::nullopt);
}

}  // namespace

bool Http2ServerCodec::submit_interim(std::int32_t stream, const ResponseHead& head) {
  Stream* s = find(stream);
  if (s == nullptr || s->response_submitted || head.status < 100 || head.status > 199 || head.status == 101) {
    return false;
  }
  h2::NvList block;
  response_block(head, block);
  return nghttp2_submit_headers(session_, NGHTTP2_FLAG_NONE, stream, nullptr, block.data(), block.size(), nullptr) >= 0;
}

bool Http2ServerCodec::submit_head(std::int32_t stream, const ResponseHead& head, bool end) {
  Stream* s = find(stream);
  if (s == nullptr || s->response_submitted) return false;
  s->response_submitted = true;
  h2::NvList block;
  response_block(head, block);
  if (end) {
    s->response.submit(session_, stream, {}, true);
    return nghttp2_submit_response(session_, stream, block.data(), block.size(), nullptr) == 0;
  }
  nghttp2_data_provider provider{};
  provider.read_callback = &Callbacks::read_data;
  return nghttp2_submit_response(session_, stream, block.data(), block.size(), &provider) == 0;
}

bool Http2ServerCodec::submit_data(std::int32_t stream, std::string_view data, bool end) {
  Stream* s = find(stream);
  if (s == nullptr || !s->response_submitted || s->response.ended()) return false;
  s->response.submit(session_, stream, data, end);
  return true;
}

bool Http2ServerCodec::submit_trailers(std::int32_t stream, std::span<const Field> trailers) {
  Stream* s = find(stream);
  if (s == nullptr || !s->response_submitted || s->response.ended()) return false;
  s->response.submit_trailers(session_, stream, trailers);
  return true;
}

std::size_t Http2ServerCodec::unsent(std::int32_t stream) const {
  const Stream* s = find(stream);
  return s == nullptr ? 0 : s->response.unsent();
}

void Http2ServerCodec::reset(std::int32_t stream, std::uint32_t error_code) {
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream, error_code);
}

void Http2ServerCodec::shutdown() {
  if (end_ == End::none) end_ = End::shutdown;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                        NGHTTP2_NO_ERROR, nullptr, 0);
}

}  // namespace meshd::proxy
