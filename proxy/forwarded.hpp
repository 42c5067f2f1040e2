#pragma once
// What meshd changes in a request it forwards, whatever protocol carries it on
// (the HTTP/1.1 head writer and the HTTP/2 client codec both walk it): the authority
// replaces Host (HTTP/1.1: at the place of the client's first Host, or last; HTTP/2:
// no Host field, the authority is :authority), x-forwarded-for gets the client's
// address appended, x-forwarded-proto the downstream's scheme, x-request-id one when
// the request has none. TE goes only to HTTP/2, and only as "trailers" (RFC 9113
// §8.2.2; on HTTP/1.1 it is hop-by-hop).
#include <string_view>

#include "proxy/http1_write.hpp"
#include "proxy/message.hpp"

namespace meshd::proxy {

// emit(name, value, appended): a field to send; `appended` (maybe empty) follows the
// value after ", ". framing(): where the sender had its body framing field.
template <class Emit, class Framing>
void forwarded_fields(const OutgoingRequest& r, bool http2, Emit&& emit, Framing&& framing) {
  const RequestHead& in = *r.head;
  bool host_done = false, xff_done = false, proto_done = false, id_seen = false;
  std::size_t index = 0;
  for (const auto& f : in.fields) {
    if (index++ == in.framing_at) framing();
    const auto name = f.name;
    if (name.size() == 2 && iequals_ascii(name, "te")) {
      if (http2 && iequals_ascii(f.value, "trailers")) emit(name, f.value, std::string_view());
    } else if (iequals_ascii(name, "host")) {
      if (http2 || host_done) continue;
      emit(name, r.authority, std::string_view());
      host_done = true;
    } else if (!xff_done && iequals_ascii(name, "x-forwarded-for")) {
      emit(name, f.value, r.forwarded_for);
      xff_done = true;
    } else if (!proto_done && iequals_ascii(name, "x-forwarded-proto")) {
      emit(name, f.value, std::string_view("http"));  // the downstream connection's (TLS sets https)
      proto_done = true;
    } else {
      if (iequals_ascii(name, "x-request-id")) id_seen = true;
      emit(name, f.value, std::string_view());
    }
  }
  if (!host_done && !http2) emit(std::string_view("Host"), r.authority, std::string_view());
  if (!xff_done && !r.forwarded_for.empty()) {
    emit(std::string_view("x-forwarded-for"), r.forwarded_for, std::string_view());
  }
  if (!proto_done) emit(std::string_view("x-forwarded-proto"), std::string_view("http"), std::string_view());
  if (!id_seen && !r.request_id.empty()) emit(std::string_view("x-request-id"), r.request_id, std::string_view());
  if (in.framing_at >= in.fields.size()) framing();
}

}  // namespace meshd::proxy
