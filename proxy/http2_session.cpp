#include "proxy/http2_session.hpp"

#include <algorithm>
#include <cstring>

#include "proxy/http1_write.hpp"

namespace meshd::proxy::h2 {

std::string lowercase(std::string_view name) {
  std::string lower(name);
  for (char& ch : lower) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  }
  return lower;
}

bool hop_by_hop(std::string_view lower_name) {
  return lower_name == "connection" || lower_name == "keep-alive" || lower_name == "proxy-connection" ||
         lower_name == "transfer-encoding" || lower_name == "upgrade";
}

namespace {
// Connection-specific fields and content-length (framing), compared without case.
bool connection_specific(std::string_view name) {
  static constexpr std::string_view kNames[] = {"connection", "keep-alive", "proxy-connection",
                                                 "transfer-encoding", "upgrade", "content-length"};
  for (auto n : kNames) {
    if (iequals_ascii(name, n)) return true;
  }
  return false;
}
}  // namespace

void NvList::add(std::string_view name, std::string_view value) {
  nva_.push_back(nghttp2_nv{reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data())),
                            reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data())), name.size(),
                            value.size(), NGHTTP2_NV_FLAG_NONE});
}

std::string_view NvList::keep(std::string_view text) {
  if (used_ + text.size() <= arena_.size()) {
    char* at = arena_.data() + used_;
    std::memcpy(at, text.data(), text.size());
    used_ += text.size();
    return std::string_view(at, text.size());
  }
  return overflow_.emplace_back(text);
}

std::string_view NvList::lower(std::string_view name) {
  bool upper = false;
  for (char ch : name) upper = upper || (ch >= 'A' && ch <= 'Z');
  if (!upper) return name;
  if (used_ + name.size() > arena_.size()) return overflow_.emplace_back(lowercase(name));
  char* at = arena_.data() + used_;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char ch = name[i];
    at[i] = ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch - 'A' + 'a') : ch;
  }
  used_ += name.size();
  return std::string_view(at, name.size());
}

void NvList::add_fields(std::span<const Field> fields, std::size_t framing_at, std::optional<std::uint64_t> length) {
  const std::size_t at = std::min(framing_at, fields.size());
  for (std::size_t i = 0; i <= fields.size(); ++i) {
    if (i == at && length) add("content-length", keep(std::to_string(*length)));
    if (i == fields.size()) break;
    const auto& f = fields[i];
    if (connection_specific(f.name)) continue;
    add(lower(f.name), f.value);
  }
}

void NvList::add_trailers(std::span<const Field> trailers) {
  for (const auto& f : trailers) {
    if (connection_specific(f.name)) continue;
    // Sent later, when the body ends: names and values are copied (a name already
    // lowercase too).
    const auto lowered = lower(f.name);
    add(lowered.data() == f.name.data() ? keep(lowered) : lowered, keep(f.value));
  }
}

void SendBody::submit(nghttp2_session* session, std::int32_t stream, std::string_view data, bool end) {
  if (at_ == data_.size()) {
    data_.clear();
    at_ = 0;
  }
  data_.append(data);
  end_ = end_ || end;
  resume(session, stream);
}

void SendBody::submit_trailers(nghttp2_session* session, std::int32_t stream, std::span<const Field> trailers) {
  trailers_.add_trailers(trailers);
  end_ = true;
  resume(session, stream);
}

void SendBody::resume(nghttp2_session* session, std::int32_t stream) {
  if (!deferred_) return;
  deferred_ = false;
  nghttp2_session_resume_data(session, stream);
}

ssize_t SendBody::read(nghttp2_session* session, std::int32_t stream, std::uint8_t* buf, std::size_t length,
                       std::uint32_t* flags) {
  const std::size_t n = std::min(length, data_.size() - at_);
  std::memcpy(buf, data_.data() + at_, n);
  at_ += n;
  if (at_ == data_.size()) {
    data_.clear();
    at_ = 0;
    if (end_) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!trailers_.empty()) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_submit_trailer(session, stream, trailers_.data(), trailers_.size());
      }
    } else if (n == 0) {
      deferred_ = true;
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  return static_cast<ssize_t>(n);
}

std::optional<BodyEvent> RecvBody::take(nghttp2_session* session, std::int32_t stream, bool closing) {
  if (!data_.empty()) {
    taken_.swap(data_);
    data_.clear();
    // Taken: the peer may send as much again on this stream (the connection's window
    // was given back when the bytes came; see the codecs' on_data_chunk).
    if (!closing) nghttp2_session_consume_stream(session, stream, taken_.size());
    return BodyEvent{BodyEvent::Kind::data, taken_, {}};
  }
  if (end_ && !end_delivered_) {
    end_delivered_ = true;
    return BodyEvent{BodyEvent::Kind::end, {}, trailers_};
  }
  return std::nullopt;
}

void FieldCopy::assign(std::span<const Field> in, bool join_cookies, std::span<std::string_view* const> also) {
  // Everything goes into one arena reserved for all of it (a joined cookie takes no
  // more room than its fields did), so views taken while appending stay valid.
  std::size_t bytes = 0;
  for (const auto& f : in) bytes += f.name.size() + f.value.size() + 2;
  for (const auto* t : also) bytes += t->size();
  arena_.clear();
  arena_.reserve(bytes);
  fields_.clear();
  fields_.reserve(in.size());
  auto copy = [&](std::string_view text) {
    const std::size_t at = arena_.size();
    arena_.append(text);
    return std::string_view(arena_).substr(at, text.size());
  };
  std::optional<std::size_t> cookie;  // index in fields_ of the joined cookie
  for (const auto& f : in) {
    if (join_cookies && f.name == "cookie") {
      if (!cookie) {
        cookie = fields_.size();
        fields_.push_back(Field{});  // filled in below, at the arena's end
      }
      continue;
    }
    const auto name = copy(f.name);
    fields_.push_back(Field{name, copy(f.value)});
  }
  if (cookie) {
    const auto name = copy("cookie");
    const std::size_t start = arena_.size();
    bool first = true;
    for (const auto& f : in) {
      if (f.name != "cookie") continue;
      if (!first) arena_.append("; ");
      arena_.append(f.value);
      first = false;
    }
    fields_[*cookie] = Field{name, std::string_view(arena_).substr(start, arena_.size() - start)};
  }
  for (auto* t : also) *t = copy(*t);
}

void collect(nghttp2_session* session, std::string& out, std::size_t cap) {
  for (int guard = 0; guard < 1 << 16 && out.size() < cap; ++guard) {
    const std::uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session, &data);
    if (n <= 0) break;
    out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
  }
}

}  // namespace meshd::proxy::h2
