#include "proxy/http1_codec.hpp"

#include <algorithm>

#include <llhttp.h>

namespace meshd::proxy {

namespace {

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if ((static_cast<unsigned char>(a[i]) | 0x20) != (static_cast<unsigned char>(b[i]) | 0x20)) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::optional<std::string_view> MessageHead::get(std::string_view name) const {
  for (const auto& f : fields) {
    if (iequal(f.name, name)) return f.value;
  }
  return std::nullopt;
}

bool MessageHead::has_token(std::string_view name, std::string_view token) const {
  for (const auto& f : fields) {
    if (!iequal(f.name, name)) continue;
    std::string_view v = f.value;
    while (!v.empty()) {
      const auto comma = v.find(',');
      if (iequal(trim(v.substr(0, comma)), token)) return true;
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  return false;
}

Http1Parser::Http1Parser(Kind kind, HeadLimits limits)
    : kind_(kind), limits_(limits), parser_(new llhttp_t), settings_(new llhttp_settings_t) {
  auto* settings = static_cast<llhttp_settings_t*>(settings_);
  llhttp_settings_init(settings);
  settings->on_body = &Http1Parser::on_body;
  settings->on_message_complete = &Http1Parser::on_message_complete;
  settings->on_headers_complete = &Http1Parser::on_headers_complete;
  settings->on_header_field = &Http1Parser::on_trailer_name;
  settings->on_header_value = &Http1Parser::on_trailer_value;
  llhttp_init(parser_, kind == Kind::request ? HTTP_REQUEST : HTTP_RESPONSE, settings);
  parser_->data = this;
}

Http1Parser::~Http1Parser() {
  delete parser_;
  delete static_cast<llhttp_settings_t*>(settings_);
}

int Http1Parser::on_body(llhttp_t* p, const char* at, std::size_t len) {
  if (len == 0) return 0;  // llhttp flushes an open span at the end of every input
  auto* self = static_cast<Http1Parser*>(p->data);
  self->body_ = std::string_view(at, len);
  self->got_body_ = true;
  return HPE_PAUSED;  // one piece per event: the caller writes it before reading more
}

// llhttp reports header fields through these callbacks: the head's are checked and
// indexed by check_*_head before llhttp sees them, so only the trailers of a chunked
// body are kept here (state body), within the head's byte limit.
int Http1Parser::on_trailer_name(llhttp_t* p, const char* at, std::size_t len) {
  auto* self = static_cast<Http1Parser*>(p->data);
  if (self->state_ != State::body) return 0;
  if (self->in_trailer_value_ || self->trailer_raw_.empty()) {
    if (!self->trailer_raw_.empty()) self->trailer_raw_ += '\0';
    self->in_trailer_value_ = false;
    // As for the head's fields: over the count, the message is refused.
    if (++self->trailer_count_ > self->limits_.max_count) return -1;
  }
  self->trailer_raw_.append(at, len);
  return self->trailer_raw_.size() > self->limits_.max_bytes ? -1 : 0;
}

int Http1Parser::on_trailer_value(llhttp_t* p, const char* at, std::size_t len) {
  auto* self = static_cast<Http1Parser*>(p->data);
  if (self->state_ != State::body) return 0;
  if (!self->in_trailer_value_) {
    self->trailer_raw_ += '\0';
    self->in_trailer_value_ = true;
  }
  self->trailer_raw_.append(at, len);
  return self->trailer_raw_.size() > self->limits_.max_bytes ? -1 : 0;
}

void Http1Parser::index_trailers() {
  trailers_.clear();
  if (trailer_raw_.empty()) return;
  if (!in_trailer_value_) trailer_raw_ += '\0';  // a name without a value
  std::string_view rest = trailer_raw_;
  while (!rest.empty()) {
    const auto n = rest.find('\0');
    const std::string_view name = rest.substr(0, n);
    rest = n == std::string_view::npos ? std::string_view() : rest.substr(n + 1);
    const auto v = rest.find('\0');
    const std::string_view value = trim(rest.substr(0, v));
    rest = v == std::string_view::npos ? std::string_view() : rest.substr(v + 1);
    trailers_.push_back({name, value});
  }
}

int Http1Parser::on_message_complete(llhttp_t* p) {
  auto* self = static_cast<Http1Parser*>(p->data);
  self->index_trailers();
  self->complete_ = true;
  return HPE_PAUSED;  // stop at the message's end: what follows is the next message
}

int Http1Parser::on_headers_complete(llhttp_t* p) {
  auto* self = static_cast<Http1Parser*>(p->data);
  // 1: skip the body. A response to HEAD, and 1xx, 204 and 304 responses, never have
  // one whatever their Content-Length says (llhttp 8.1 would wait for a 304's body).
  const int status = self->kind_ == Kind::response ? p->status_code : 0;
  return self->no_body_ || (status >= 100 && status < 200) || status == 204 || status == 304 ? 1 : 0;
}

Http1Parser::Step Http1Parser::fail(HeadVerdict::Status s, const char* reason, std::size_t consumed) {
  error_status_ = s;
  error_reason_ = reason;
  state_ = State::done;
  return {Event::error, consumed};
}

bool Http1Parser::body_until_close() const { return state_ == State::body && framing_ == Framing::until_close; }

bool Http1Parser::keep_alive() const { return keep_alive_; }

Http1Parser::Step Http1Parser::parse(std::string_view input) {
  if (state_ == State::done) return {Event::error, 0};
  if (state_ == State::idle) {
    const HeadVerdict v = kind_ == Kind::request ? check_request_head(input, limits_, &head_.fields)
                                                 : check_response_head(input, limits_, &head_.fields);
    if (v.status != HeadVerdict::Status::ok) {
      head_.fields.clear();  // views into an input that will not stay
      if (v.status == HeadVerdict::Status::incomplete) return {Event::need_more, 0};
      return fail(v.status, v.reason, 0);
    }
    // Copy the head (without the empty lines allowed before it) and point the
    // fields, parsed as views into the input, into the copy instead.
    std::size_t skip = 0;
    while (input.substr(skip, 2) == "\r\n") skip += 2;
    head_.raw.assign(input.data() + skip, v.head_size - skip);
    if (v.version_rewritten) head_.raw[v.version_offset - skip + 7] = '1';  // HTTP/1.x -> HTTP/1.1
    const char* base = input.data() + skip;
    for (auto& f : head_.fields) {
      f.name = std::string_view(head_.raw.data() + (f.name.data() - base), f.name.size());
      f.value = std::string_view(head_.raw.data() + (f.value.data() - base), f.value.size());
    }
    const std::string_view raw = head_.raw;
    const std::string_view start_line = raw.substr(0, raw.find("\r\n"));
    head_.minor_version = v.minor_version;
    head_.chunked = v.chunked;
    head_.content_length = v.content_length;
    if (kind_ == Kind::request) {
      const auto sp1 = start_line.find(' ');
      const auto sp2 = start_line.find(' ', sp1 + 1);
      head_.method = start_line.substr(0, sp1);
      head_.target = start_line.substr(sp1 + 1, sp2 - sp1 - 1);
      head_.status = 0;
      head_.reason = {};
    } else {
      head_.status = v.status_code;
      head_.reason = start_line.size() > 13 ? start_line.substr(13) : std::string_view();
      head_.method = head_.target = {};
    }
    complete_ = false;
    got_body_ = false;
    trailer_raw_.clear();
    trailers_.clear();
    trailer_count_ = 0;
    in_trailer_value_ = false;
    // Persistence (RFC 9112 §9.3): HTTP/1.1 unless "close", HTTP/1.0 only with
    // "keep-alive"; a body delimited by the close ends the connection.
    const bool close = head_.has_token("connection", "close");
    keep_alive_ = v.minor_version >= 1 ? !close : (!close && head_.has_token("connection", "keep-alive"));
    // The body's framing, from the checked head. Only a chunked body goes through
    // llhttp: a head is scanned once (by check_*_head), a length is counted here.
    const int status = head_.status;
    const bool no_body = kind_ == Kind::response &&
                         (no_body_ || (status >= 100 && status < 200) || status == 204 || status == 304);
    remaining_ = 0;
    if (no_body) {
      framing_ = Framing::none;
    } else if (v.chunked) {
      framing_ = Framing::chunked;
    } else if (v.content_length) {
      framing_ = *v.content_length > 0 ? Framing::length : Framing::none;
      remaining_ = *v.content_length;
    } else {
      framing_ = kind_ == Kind::response ? Framing::until_close : Framing::none;
      if (framing_ == Framing::until_close) keep_alive_ = false;
    }
    if (framing_ == Framing::chunked) {
      // llhttp frames the chunks: it is given a canonical chunked head, not the real
      // one, which check_*_head has checked already (a head is scanned once, and any
      // token is a method, as for bodiless requests).
      static constexpr std::string_view kChunkedRequest = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
      static constexpr std::string_view kChunkedResponse = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
      const std::string_view canonical = kind_ == Kind::request ? kChunkedRequest : kChunkedResponse;
      const llhttp_errno_t err = llhttp_execute(parser_, canonical.data(), canonical.size());
      if (err == HPE_PAUSED) {
        llhttp_resume(parser_);
      } else if (err != HPE_OK) {
        return fail(HeadVerdict::Status::bad_request, llhttp_get_error_reason(parser_), 0);
      }
    } else if (framing_ == Framing::none) {
      complete_ = true;  // the message ends with its head
    }
    state_ = State::body;
    return {Event::head, v.head_size};
  }
  // Body (or the end of a message without one).
  if (complete_) {
    complete_ = false;
    state_ = State::idle;
    no_body_ = false;
    return {Event::message_complete, 0};
  }
  if (framing_ == Framing::length || framing_ == Framing::until_close) {
    if (input.empty()) return {Event::need_more, 0};
    const std::size_t n =
        framing_ == Framing::length ? static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, input.size()))
                                    : input.size();
    body_ = input.substr(0, n);
    if (framing_ == Framing::length) {
      remaining_ -= n;
      if (remaining_ == 0) complete_ = true;  // the next parse() ends the message
    }
    return {Event::body, n};
  }
  // Even with no input: a body that just ended completes the message here (llhttp
  // reaches on_message_complete without consuming a byte).
  static constexpr char kNothing[1] = {0};
  const char* data = input.empty() ? kNothing : input.data();
  got_body_ = false;
  const llhttp_errno_t err = llhttp_execute(parser_, data, input.size());
  if (err == HPE_OK) return {Event::need_more, input.size()};
  if (err != HPE_PAUSED) {
    return fail(HeadVerdict::Status::bad_request, llhttp_get_error_reason(parser_),
                static_cast<std::size_t>(llhttp_get_error_pos(parser_) - data));
  }
  const auto consumed = static_cast<std::size_t>(llhttp_get_error_pos(parser_) - data);
  llhttp_resume(parser_);
  if (got_body_) return {Event::body, consumed};
  // complete_ is set: the message ended.
  complete_ = false;
  state_ = State::idle;
  no_body_ = false;
  return {Event::message_complete, consumed};
}

Http1Parser::Step Http1Parser::finish() {
  if (state_ == State::idle) return {Event::need_more, 0};
  if (state_ == State::body && complete_) return parse({});
  if (state_ == State::body && framing_ == Framing::until_close) {
    state_ = State::idle;
    no_body_ = false;
    return {Event::message_complete, 0};
  }
  return fail(HeadVerdict::Status::bad_request, "connection closed before the message ended", 0);
}

}  // namespace meshd::proxy
