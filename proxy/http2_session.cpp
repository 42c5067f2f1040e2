#include "proxy/http2_session.hpp"

#include <algorithm>
#include <cstring>

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

void NvList::add(std::string_view name, std::string_view value) {
  nva_.push_back(nghttp2_nv{reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data())),
                            reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data())), name.size(),
                            value.size(), NGHTTP2_NV_FLAG_NONE});
}

std::string_view NvList::keep(std::string text) { return text_.emplace_back(std::move(text)); }

void NvList::add_fields(std::span<const Field> fields, std::size_t framing_at, std::optional<std::uint64_t> length) {
  nva_.reserve(nva_.size() + fields.size() + 1);
  const std::size_t at = std::min(framing_at, fields.size());
  for (std::size_t i = 0; i <= fields.size(); ++i) {
    if (i == at && length) add("content-length", keep(std::to_string(*length)));
    if (i == fields.size()) break;
    std::string lower = lowercase(fields[i].name);
    if (hop_by_hop(lower) || lower == "content-length") continue;
    add(keep(std::move(lower)), fields[i].value);
  }
}

void NvList::add_trailers(std::span<const Field> trailers) {
  for (const auto& f : trailers) {
    std::string lower = lowercase(f.name);
    if (hop_by_hop(lower)) continue;
    add(keep(std::move(lower)), keep(std::string(f.value)));
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
    // Taken: the peer may send as much again.
    if (closing) {
      nghttp2_session_consume_connection(session, taken_.size());
    } else {
      nghttp2_session_consume(session, stream, taken_.size());
    }
    return BodyEvent{BodyEvent::Kind::data, taken_, {}};
  }
  if (end_ && !end_delivered_) {
    end_delivered_ = true;
    return BodyEvent{BodyEvent::Kind::end, {}, trailers_};
  }
  return std::nullopt;
}

void FieldCopy::assign(std::span<const Field> in, bool join_cookies) {
  std::size_t bytes = 0;
  for (const auto& f : in) bytes += f.name.size() + f.value.size() + 2;
  arena_.clear();
  arena_.reserve(bytes);
  std::vector<std::pair<std::size_t, std::size_t>> at;  // offsets, fixed once the arena is full
  std::vector<std::pair<std::size_t, std::size_t>> len;
  std::optional<std::size_t> cookie;  // index in `at` of the joined cookie
  for (const auto& f : in) {
    if (join_cookies && f.name == "cookie" && cookie) {
      // Appended to the joined value, which must be the arena's last piece.
      continue;
    }
    if (join_cookies && f.name == "cookie") {
      cookie = at.size();
      // All cookie values, joined, at the arena's end after the other fields.
      at.emplace_back(0, 0);
      len.emplace_back(0, 0);
      continue;
    }
    at.emplace_back(arena_.size(), arena_.size() + f.name.size());
    arena_.append(f.name);
    arena_.append(f.value);
    len.emplace_back(f.name.size(), f.value.size());
  }
  if (cookie) {
    const std::size_t start = arena_.size();
    arena_.append("cookie");
    bool first = true;
    for (const auto& f : in) {
      if (f.name != "cookie") continue;
      if (!first) arena_.append("; ");
      arena_.append(f.value);
      first = false;
    }
    at[*cookie] = {start, start + 6};
    len[*cookie] = {6, arena_.size() - start - 6};
  }
  fields_.clear();
  fields_.reserve(at.size());
  for (std::size_t i = 0; i < at.size(); ++i) {
    fields_.push_back(Field{std::string_view(arena_).substr(at[i].first, len[i].first),
                            std::string_view(arena_).substr(at[i].second, len[i].second)});
  }
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
