#include "proxy/http2_client_codec.hpp"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <charconv>

#include "proxy/forwarded.hpp"
#include "proxy/http2_session.hpp"

namespace meshd::proxy {

struct Http2ClientCodec::Stream {
  explicit Stream(std::int32_t i) : id(i) {}
  ~Stream() { release(); }
  void release() {
    for (auto* b : held) nghttp2_rcbuf_decref(b);
    held.clear();
  }
  std::int32_t id;
  bool head_request = false;
  h2::SendBody request;
  // The response head being read (cleared after each head: an interim one, then the
  // final one), then its trailers.
  boost::container::small_vector<nghttp2_rcbuf*, 16> held;  // a typical response's inline
  boost::container::small_vector<Field, 8> fields;
  std::size_t framing_at = kFramingAtEnd;
  std::optional<std::uint64_t> length;
  int status = 0;
  std::size_t header_bytes = 0;
  bool final_head = false;
  bool trailer_block = false;
  h2::RecvBody response;
  bool closing = false;  // in on_stream_close
};

struct Http2ClientCodec::Callbacks {
  static Http2ClientCodec& self(void* user) { return *static_cast<Http2ClientCodec*>(user); }

  static int on_begin_headers(nghttp2_session* /*session*/, const nghttp2_frame* frame, void* user) {
    auto& c = self(user);
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    if (Stream* s = c.find(frame->hd.stream_id)) {
      s->trailer_block = s->final_head;
      s->header_bytes = 0;
      if (!s->trailer_block) {
        s->fields.clear();
        s->framing_at = kFramingAtEnd;
        s->length.reset();
        s->status = 0;
      }
    }
    return 0;
  }

  static int on_header(nghttp2_session* session, const nghttp2_frame* frame, nghttp2_rcbuf* name,
                       nghttp2_rcbuf* value, std::uint8_t /*flags*/, void* user) {
    auto& c = self(user);
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    Stream* s = c.find(frame->hd.stream_id);
    if (s == nullptr) return 0;
    const auto n = h2::view(name);
    const auto v = h2::view(value);
    s->header_bytes += n.size() + v.size() + 32;  // RFC 9113 §6.5.2
    if (s->header_bytes > c.limits_.max_header_list_bytes) {
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (!n.empty() && n.front() == ':') {
      if (n == ":status" && !s->trailer_block) {
        int status = 0;
        std::from_chars(v.data(), v.data() + v.size(), status);
        s->status = status;
      }
      return 0;
    }
    nghttp2_rcbuf_incref(name);
    nghttp2_rcbuf_incref(value);
    s->held.push_back(name);
    s->held.push_back(value);
    if (s->trailer_block) {
      if (trailer_allowed(n)) s->response.trailers().push_back(Field{n, v});
      return 0;
    }
    if (n == "content-length") {
      // Framing: the downstream adapter writes its own where this was (nghttp2 checks
      // it against the DATA received).
      std::uint64_t length = 0;
      std::from_chars(v.data(), v.data() + v.size(), length);
      if (!s->length) {
        s->length = length;
        s->framing_at = s->fields.size();
      }
      return 0;
    }
    s->fields.push_back(Field{n, v});
    return 0;
  }

  static int on_frame_recv(nghttp2_session* /*session*/, const nghttp2_frame* frame, void* user) {
    auto& c = self(user);
    switch (frame->hd.type) {
      case NGHTTP2_PING:
        if ((frame->hd.flags & NGHTTP2_FLAG_ACK) != 0 && c.pings_unanswered_ > 0) --c.pings_unanswered_;
        break;
      case NGHTTP2_GOAWAY:
        c.goaway_ = true;
        c.events_.on_goaway(frame->goaway.last_stream_id, frame->goaway.error_code);
        break;
      case NGHTTP2_DATA:
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
          if (Stream* s = c.find(frame->hd.stream_id)) {
            s->response.end();
            c.events_.on_body(s->id);
          }
        }
        break;
      case NGHTTP2_HEADERS: {
        Stream* s = c.find(frame->hd.stream_id);
        if (s == nullptr) break;
        const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
        if (s->trailer_block) {
          if (end) {
            s->response.end();
            c.events_.on_body(s->id);
          }
          break;
        }
        ResponseHead h;
        h.status = s->status;
        h.fields = s->fields;
        h.version = Version::http2;
        h.length = s->length;
        h.framing_at = s->framing_at;
        const bool interim = s->status >= 100 && s->status < 200;
        const bool bodiless = s->head_request || s->status == 204 || s->status == 304;
        h.has_body = !interim && !end && !bodiless;
        // A final head with END_STREAM (a gRPC trailers-only answer) has an empty
        // body, which HTTP/1.1 must frame (Content-Length: 0).
        if (!interim && end && !bodiless) h.length = 0;
        if (!interim) {
          s->final_head = true;
          if (end) s->response.end();
        }
        c.events_.on_response(s->id, h);
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
      nghttp2_session_consume_connection(c.session_, len);
      return 0;
    }
    s->response.append(std::string_view(reinterpret_cast<const char*>(data), len));
    nghttp2_session_consume_connection(c.session_, len);  // held against the stream's window only
    c.events_.on_body(stream);
    return 0;
  }

  static int on_stream_close(nghttp2_session* /*session*/, std::int32_t stream, std::uint32_t error_code,
                             void* user) {
    auto& c = self(user);
    auto it = c.streams_.find(stream);
    if (it == c.streams_.end()) return 0;
    Stream& s = *it->second;
    s.closing = true;
    // During on_close, take_body() still gives what was received (the adapter keeps it).
    c.events_.on_close(stream, error_code);
    c.streams_.erase(stream);
    return 0;
  }

  static ssize_t read_data(nghttp2_session* session, std::int32_t stream, std::uint8_t* buf, std::size_t length,
                           std::uint32_t* flags, nghttp2_data_source* /*source*/, void* user) {
    auto& c = self(user);
    Stream* s = c.find(stream);
    if (s == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    const ssize_t n = s->request.read(session, stream, buf, length, flags);
    if (n > 0) c.events_.on_writable(stream);
    return n;
  }
};

Http2ClientCodec::Http2ClientCodec(const Http2ClientLimits& limits, Http2ClientEvents& events)
    : limits_(limits), events_(events) {
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, &Callbacks::on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback2(cb, &Callbacks::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &Callbacks::on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &Callbacks::on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, &Callbacks::on_stream_close);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_session_client_new2(&session_, cb, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, limits_.initial_stream_window},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, limits_.max_header_list_bytes},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  if (limits_.connection_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE) {
    nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                          static_cast<std::int32_t>(limits_.connection_window));
  }
}

Http2ClientCodec::~Http2ClientCodec() {
  streams_.clear();
  nghttp2_session_del(session_);
}

Http2ClientCodec::Stream* Http2ClientCodec::find(std::int32_t id) const {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

bool Http2ClientCodec::receive(std::string_view bytes) {
  if (failed_) return false;
  const auto* p = reinterpret_cast<const std::uint8_t*>(bytes.data());
  const ssize_t n = nghttp2_session_mem_recv(session_, p, bytes.size());
  if (n < 0) {
    // Fatal (a flood, a callback failure): nghttp2 queued nothing; say GOAWAY.
    failed_ = true;
    nghttp2_session_terminate_session(session_, NGHTTP2_PROTOCOL_ERROR);
    return false;
  }
  if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_)) return false;
  return true;
}

std::string_view Http2ClientCodec::output() {
  wire_.clear();
  h2::collect(session_, out_, kOutputCap);
  wire_.swap(out_);
  return wire_;
}

bool Http2ClientCodec::finished() const {
  return nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0 && out_.empty();
}

std::uint32_t Http2ClientCodec::peer_max_streams() const {
  return nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

bool Http2ClientCodec::can_open() const {
  return !goaway_ && !failed_ && streams_.size() < peer_max_streams() &&
         nghttp2_session_get_next_stream_id(session_) < (1u << 31) - 2;
}

std::int32_t Http2ClientCodec::submit_request(const OutgoingRequest& r, bool end) {
  if (!can_open()) return -1;
  const RequestHead& in = *r.head;
  h2::NvList block;
  block.add(":method", in.method);
  block.add(":scheme", in.scheme.empty() ? std::string_view("http") : in.scheme);
  block.add(":authority", r.authority);
  block.add(":path", r.path);
  forwarded_fields(
      r, true,
      [&](std::string_view name, std::string_view value, std::string_view appended) {
        const auto n = block.lower(name);
        if (h2::hop_by_hop(n) || n == "content-length") return;
        if (appended.empty()) {
          block.add(n, value);
        } else {
          block.add(n, block.keep(std::string(value) + ", " + std::string(appended)));
        }
      },
      [&] {
        if (r.length) block.add("content-length", block.keep(std::to_string(*r.length)));
      });
  nghttp2_data_provider provider{};
  provider.read_callback = &Callbacks::read_data;
  const std::int32_t id = nghttp2_submit_request(session_, nullptr, block.data(), block.size(),
                                                 end ? nullptr : &provider, nullptr);
  if (id < 0) return -1;
  auto s = std::make_unique<Stream>(id);
  s->head_request = in.method == "HEAD";
  if (end) s->request.submit(session_, id, {}, true);
  streams_.emplace(id, std::move(s));
  return id;
}

bool Http2ClientCodec::submit_data(std::int32_t stream, std::string_view data, bool end) {
  Stream* s = find(stream);
  if (s == nullptr || s->request.ended()) return false;
  s->request.submit(session_, stream, data, end);
  return true;
}

bool Http2ClientCodec::submit_trailers(std::int32_t stream, std::span<const Field> trailers) {
  Stream* s = find(stream);
  if (s == nullptr || s->request.ended()) return false;
  s->request.submit_trailers(session_, stream, trailers);
  return true;
}

std::size_t Http2ClientCodec::unsent(std::int32_t stream) const {
  const Stream* s = find(stream);
  return s == nullptr ? 0 : s->request.unsent();
}

std::optional<BodyEvent> Http2ClientCodec::take_body(std::int32_t stream) {
  Stream* s = find(stream);
  if (s == nullptr) return std::nullopt;
  return s->response.take(session_, stream, s->closing);
}

void Http2ClientCodec::reset(std::int32_t stream, std::uint32_t error_code) {
  if (find(stream) != nullptr) nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream, error_code);
}

void Http2ClientCodec::ping() {
  if (nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr) == 0) ++pings_unanswered_;
}

void Http2ClientCodec::shutdown() {
  goaway_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, nullptr, 0);
}

}  // namespace meshd::proxy
