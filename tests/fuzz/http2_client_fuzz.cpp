// libFuzzer target: the HTTP/2 client codec (proxy/http2_client_codec.hpp), a
// server's frames in, response events out. Three requests are open (one with a body
// and trailers still to send) when the input arrives, in two parts; the adapter side
// takes response bodies as they come, so that heads, interim heads, trailers, resets,
// GOAWAY and stream closes (with take_body() during on_close) run under the
// sanitizers.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "proxy/http2_client_codec.hpp"

using namespace meshd::proxy;

namespace {

struct Adapter : Http2ClientEvents {
  Http2ClientCodec* codec = nullptr;
  void on_response(std::int32_t, const ResponseHead& h) override {
    volatile std::size_t n = h.fields.size() + static_cast<std::size_t>(h.status);  // what the lifecycle reads
    (void)n;
  }
  void on_body(std::int32_t s) override { drain(s); }
  void on_writable(std::int32_t) override {}
  void on_close(std::int32_t s, std::uint32_t) override { drain(s); }  // as the upstream adapter does
  void on_goaway(std::int32_t, std::uint32_t) override {}
  void drain(std::int32_t s) {
    for (int i = 0; i < 1000; ++i) {
      auto ev = codec->take_body(s);
      if (!ev) break;
      volatile std::size_t n = ev->data.size() + ev->trailers.size();
      (void)n;
      if (ev->kind != BodyEvent::Kind::data) break;
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Http2ClientLimits limits;
  limits.max_header_list_bytes = 4096;
  Adapter adapter;
  Http2ClientCodec codec(limits, adapter);
  adapter.codec = &codec;
  std::vector<Field> fields = {{"User-Agent", "fuzz"}, {"x-forwarded-for", "10.0.0.1"}, {"te", "trailers"}};
  RequestHead head;
  head.method = "POST";
  head.path = "/pkg.Svc/Method";
  head.authority = "svc.local";
  head.fields = fields;
  OutgoingRequest r;
  r.head = &head;
  r.path = head.path;
  r.authority = head.authority;
  r.forwarded_for = "127.0.0.1";
  r.has_body = true;
  const auto a = codec.submit_request(r, false);
  const auto b = codec.submit_request(r, true);
  const auto c = codec.submit_request(r, false);
  codec.submit_data(a, "hello", true);
  codec.submit_data(c, "part", false);
  (void)codec.output();
  std::vector<Field> trailers = {{"grpc-status", "0"}};
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const std::size_t half = in.size() / 2;
  for (std::string_view part : {in.substr(0, half), in.substr(half)}) {
    const bool alive = codec.receive(part);
    codec.submit_trailers(c, trailers);
    (void)codec.output();
    (void)b;
    if (!alive) break;
  }
  return 0;
}
