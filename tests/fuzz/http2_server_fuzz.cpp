// libFuzzer target: the HTTP/2 server codec (proxy/http2_server_codec.hpp), frames in,
// events out. The input is what a client sends after connecting (preface included,
// or not); the codec's adapter side answers every request with a head, a piece of
// data and trailers, and takes request bodies as they come, so that both directions
// and stream closes run under the sanitizers.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "proxy/http2_server_codec.hpp"

using namespace meshd::proxy;

namespace {

struct Adapter : Http2ServerEvents {
  Http2ServerCodec* codec = nullptr;
  std::vector<std::int32_t> pending;
  void on_request(std::int32_t s, const RequestHead& h) override {
    // Touch what the lifecycle would read.
    volatile std::size_t n = h.method.size() + h.path.size() + h.authority.size() + h.fields.size();
    (void)n;
    pending.push_back(s);
  }
  void on_body(std::int32_t s) override {
    while (auto ev = codec->take_body(s)) {
      if (ev->kind != BodyEvent::Kind::data) break;
    }
  }
  void on_writable(std::int32_t) override {}
  void on_close(std::int32_t, std::uint32_t) override {}
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  Http2Limits limits;
  limits.max_concurrent_streams = 8;
  limits.max_header_list_bytes = 4096;
  limits.max_resets_per_second = 50;
  limits.max_control_frames_per_second = 100;
  Adapter adapter;
  Http2ServerCodec codec(limits, adapter);
  adapter.codec = &codec;
  (void)codec.output();
  std::string_view in(reinterpret_cast<const char*>(data), size);
  // Most inputs get the preface, so that the fuzzer spends its time in frames.
  const bool add_preface = size > 0 && (data[0] & 1) == 0;
  if (add_preface && !codec.receive(kPreface)) return 0;
  std::vector<Field> fields = {{"content-type", "text/plain"}};
  std::vector<Field> trailers = {{"grpc-status", "0"}};
  const std::size_t half = in.size() / 2;
  for (std::string_view part : {in.substr(0, half), in.substr(half)}) {
    const bool alive = codec.receive(part);
    for (auto s : adapter.pending) {
      ResponseHead head;
      head.status = 200;
      head.fields = fields;
      if (codec.submit_head(s, head, false)) {
        codec.submit_data(s, "hello", false);
        codec.submit_trailers(s, trailers);
      }
    }
    adapter.pending.clear();
    (void)codec.output();
    if (!alive) break;
  }
  return 0;
}
