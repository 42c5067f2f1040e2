#pragma once
// Strict checks of an HTTP/1.x request head (request line and header fields) on its
// raw bytes, before llhttp sees them. Debian's llhttp 8.1.0, even in strict mode,
// accepts HTTP/0.9 and 2.0 request lines, Transfer-Encoding on HTTP/1.0, a missing or
// repeated Host, and predates the CVE-2024-27982 fix (obs-fold before
// Content-Length); it also rejects HTTP/1.2+, which RFC 9112 says to serve as 1.1.
// So the codec checks the head itself (DESIGN "Conventions", SPEC §3).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "net/header_field.hpp"

namespace meshd::proxy {

// A header field as views (name as received, value without surrounding whitespace):
// the same type routing matches on (mesh::HeaderField aliases it too), so the data
// path hands the parsed fields to the route matcher without copying them.
using FieldView = net::HeaderField;

struct HeadLimits {
  std::size_t max_bytes = 60 * 1024;  // max_request_headers_bytes
  std::size_t max_count = 100;        // max_request_headers_count
};

struct HeadVerdict {
  enum class Status {
    ok,
    incomplete,         // no blank line yet (and under the size limit)
    bad_request,        // 400
    too_large,          // 431
    not_implemented,    // 501 (a transfer coding other than chunked before chunked)
    version_not_supported,  // 505
  } status = Status::incomplete;
  const char* reason = "";  // a short cause for the local reply body and logs

  // Filled when status is ok:
  std::size_t head_size = 0;  // bytes up to and including the blank line
  int minor_version = 1;      // 0 or 1 (1.2+ is served as 1.1)
  bool version_rewritten = false;  // the request line said HTTP/1.2 or above
  std::size_t version_offset = 0;  // where "HTTP/1.x" starts in the request line
  bool chunked = false;
  std::optional<std::uint64_t> content_length;
  std::size_t header_count = 0;
  int status_code = 0;  // responses
};

// Checks `head`, the bytes received so far on a connection for one request. With
// status incomplete the caller reads more (and calls again) unless the limit of
// bytes is reached, which yields too_large.
// When `fields` is given, it receives every header field (views into `head`).
HeadVerdict check_request_head(std::string_view head, const HeadLimits& limits,
                               std::vector<FieldView>* fields = nullptr);

// The same for a response from an upstream: status line "HTTP/1.x NNN reason", the
// same field syntax; framing conflicts (Content-Length with Transfer-Encoding,
// differing lengths, a coding other than chunked) are errors (bad_request: the
// caller answers 502). `request_was_head` and the status decide if a body follows.
HeadVerdict check_response_head(std::string_view head, const HeadLimits& limits,
                                std::vector<FieldView>* fields = nullptr);

// RFC 9110 token characters (field names, methods, transfer codings).
bool is_token_char(unsigned char c);

}  // namespace meshd::proxy
