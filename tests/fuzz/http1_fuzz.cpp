// The HTTP/1.1 codec, request side (fuzz_http1_request) or response side
// (fuzz_http1_response, built with MESHD_FUZZ_RESPONSE): any bytes, fed in pieces whose
// sizes come from the input. It must never crash, and the events must be consistent:
// a body only after a head, consumption within the input, and bodies inside the input.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "proxy/http1_codec.hpp"

using meshd::proxy::Http1Parser;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t step = 1 + data[0] % 64;
  const std::string input(reinterpret_cast<const char*>(data + 1), size - 1);
#ifdef MESHD_FUZZ_RESPONSE
  Http1Parser p(Http1Parser::Kind::response, {4096, 32});
  p.expect_no_body((data[0] & 0x40) != 0);  // as for a HEAD request
#else
  Http1Parser p(Http1Parser::Kind::request, {4096, 32});
#endif
  std::string buffer;
  std::size_t fed = 0;
  bool in_message = false;
  for (int guard = 0; guard < 100000; ++guard) {
    auto s = p.parse(buffer);
    if (s.consumed > buffer.size()) std::abort();
    if (s.event == Http1Parser::Event::body) {
      if (!in_message) std::abort();
      const auto b = p.body();
      if (b.data() < buffer.data() || b.data() + b.size() > buffer.data() + buffer.size()) std::abort();
    }
    if (s.event == Http1Parser::Event::head) {
      in_message = true;
      (void)p.head().get("host");
      (void)p.head().has_token("connection", "close");
      (void)p.keep_alive();
    }
    if (s.event == Http1Parser::Event::message_complete) in_message = false;
    buffer.erase(0, s.consumed);
    if (s.event == Http1Parser::Event::error) return 0;
    if (s.event == Http1Parser::Event::need_more) {
      if (fed >= input.size()) break;
      buffer += input.substr(fed, step);
      fed += step;
    }
  }
  (void)p.finish();
  return 0;
}
