#include "proxy/http1_head.hpp"

namespace meshd::proxy {

bool is_token_char(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

namespace {

using Status = HeadVerdict::Status;

HeadVerdict fail(Status s, const char* reason) {
  HeadVerdict v;
  v.status = s;
  v.reason = reason;
  return v;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if ((static_cast<unsigned char>(a[i]) | 0x20) != (static_cast<unsigned char>(b[i]) | 0x20)) return false;
  }
  return true;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The request line: method SP request-target SP HTTP/D.D
HeadVerdict check_request_line(std::string_view line, HeadVerdict& v, std::size_t line_start) {
  const auto sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0) return fail(Status::bad_request, "malformed request line");
  const std::string_view method = line.substr(0, sp1);
  for (unsigned char c : method) {
    if (!is_token_char(c)) return fail(Status::bad_request, "invalid method");
  }
  const auto sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) {
    return fail(Status::bad_request, "HTTP/0.9 request line (no version)");
  }
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (target.empty()) return fail(Status::bad_request, "empty request target");
  for (unsigned char c : target) {
    if (c <= 0x20 || c >= 0x7f) return fail(Status::bad_request, "invalid character in request target");
  }
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' || version[5] < '0' ||
      version[5] > '9' || version[7] < '0' || version[7] > '9') {
    return fail(Status::bad_request, "malformed HTTP version");
  }
  if (version[5] != '1') return fail(Status::version_not_supported, "HTTP major version other than 1");
  const int minor = version[7] - '0';
  v.minor_version = minor >= 1 ? 1 : 0;
  v.version_rewritten = minor > 1;
  v.version_offset = line_start + sp2 + 1;
  // Request-target forms (RFC 9112 §3.2).
  const bool origin = target.front() == '/';
  const bool asterisk = target == "*";
  const bool absolute = target.find("://") != std::string_view::npos;
  const bool connect = method == "CONNECT";
  if (asterisk && method != "OPTIONS") return fail(Status::bad_request, "'*' target is only for OPTIONS");
  if (!origin && !asterisk && !absolute && !connect) return fail(Status::bad_request, "invalid request target");
  if (absolute) {
    const auto scheme = target.substr(0, target.find("://"));
    if (!iequals(scheme, "http") && !iequals(scheme, "https")) {
      return fail(Status::bad_request, "absolute target with a scheme other than http or https");
    }
  }
  v.status = Status::ok;
  return v;
}

struct FieldFacts {
  int host_count = 0;
  bool has_te = false;
  int chunked_count = 0;
  bool chunked_last = false;
  bool other_coding = false;
  bool empty_te = false;
  bool has_cl = false;
  std::uint64_t cl = 0;
  const char* cl_error = nullptr;
};

void note_content_length(std::string_view value, FieldFacts& f) {
  // A list of identical values ("5, 5") is the same length; anything else is an error.
  std::size_t start = 0;
  bool any = false;
  while (start <= value.size()) {
    auto comma = value.find(',', start);
    if (comma == std::string_view::npos) comma = value.size();
    const auto item = trim_ows(value.substr(start, comma - start));
    start = comma + 1;
    if (item.empty()) {
      f.cl_error = "empty Content-Length";
      return;
    }
    std::uint64_t n = 0;
    for (unsigned char c : item) {
      if (c < '0' || c > '9') {
        f.cl_error = "Content-Length is not a number";
        return;
      }
      if (n > (UINT64_MAX - 9) / 10 || n * 10 + (c - '0') > (std::uint64_t{1} << 62)) {
        f.cl_error = "Content-Length too large";
        return;
      }
      n = n * 10 + (c - '0');
    }
    if ((f.has_cl || any) && n != f.cl) {
      f.cl_error = "differing Content-Length values";
      return;
    }
    f.has_cl = true;
    any = true;
    f.cl = n;
  }
}

void note_transfer_encoding(std::string_view value, FieldFacts& f) {
  f.has_te = true;
  bool any = false;
  std::size_t start = 0;
  while (start <= value.size()) {
    auto comma = value.find(',', start);
    if (comma == std::string_view::npos) comma = value.size();
    auto item = trim_ows(value.substr(start, comma - start));
    start = comma + 1;
    if (item.empty()) continue;  // empty list elements are allowed (RFC 9110 §5.6.1)
    any = true;
    const auto semi = item.find(';');  // transfer parameters
    const auto coding = trim_ows(item.substr(0, semi));
    if (iequals(coding, "chunked")) {
      ++f.chunked_count;
      f.chunked_last = true;
    } else {
      f.other_coding = true;
      f.chunked_last = false;
    }
  }
  if (!any) f.empty_te = true;
}


// Reads lines from `pos`: the start line (checked by `start_line`), then header fields
// up to the blank line. Fills `facts` and `fields`.
template <class StartLine>
HeadVerdict scan_head(std::string_view head, const HeadLimits& limits, std::vector<FieldView>* fields,
                      FieldFacts& facts, StartLine&& start_line) {
  HeadVerdict v;
  std::size_t pos = 0;
  // RFC 9112 §2.2: ignore empty lines before the start line.
  while (head.substr(pos, 2) == "\r\n") pos += 2;
  bool first = true;
  std::size_t count = 0;
  if (fields != nullptr) fields->clear();
  while (true) {
    // One line, CRLF-terminated; a bare CR or LF, or a NUL, is an error at once.
    std::size_t eol = pos;
    while (eol < head.size()) {
      const char c = head[eol];
      if (c == '\0') return fail(Status::bad_request, "NUL in message head");
      if (c == '\n') return fail(Status::bad_request, "bare LF in message head");
      if (c == '\r') {
        if (eol + 1 >= head.size()) break;  // need the next byte
        if (head[eol + 1] != '\n') return fail(Status::bad_request, "bare CR in message head");
        break;
      }
      ++eol;
    }
    if (eol + 1 >= head.size()) {
      if (head.size() >= limits.max_bytes) return fail(Status::too_large, "headers too large");
      v.status = Status::incomplete;
      return v;
    }
    const std::string_view line = head.substr(pos, eol - pos);
    const std::size_t line_start = pos;
    pos = eol + 2;
    if (pos > limits.max_bytes) return fail(Status::too_large, "headers too large");
    if (first) {
      if (line.empty()) return fail(Status::bad_request, "empty start line");
      HeadVerdict sl = start_line(line, v, line_start);
      if (sl.status != Status::ok) return sl;
      first = false;
      continue;
    }
    if (line.empty()) break;  // end of the head
    if (line.front() == ' ' || line.front() == '\t') {
      return fail(Status::bad_request, "obsolete line folding in a header field");
    }
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return fail(Status::bad_request, "header line without a colon");
    if (colon == 0) return fail(Status::bad_request, "empty header field name");
    const std::string_view name = line.substr(0, colon);
    for (unsigned char c : name) {
      if (c == ' ' || c == '\t') return fail(Status::bad_request, "whitespace before the colon of a header field");
      if (!is_token_char(c)) return fail(Status::bad_request, "invalid character in a header field name");
    }
    const std::string_view value = trim_ows(line.substr(colon + 1));
    for (unsigned char c : value) {
      if ((c < 0x20 && c != '\t') || c == 0x7f) {
        return fail(Status::bad_request, "control character in a header field value");
      }
    }
    if (++count > limits.max_count) return fail(Status::too_large, "too many header fields");
    if (fields != nullptr) fields->push_back({name, value});
    if (iequals(name, "host")) {
      ++facts.host_count;
    } else if (iequals(name, "content-length")) {
      note_content_length(value, facts);
      if (facts.cl_error != nullptr) return fail(Status::bad_request, facts.cl_error);
    } else if (iequals(name, "transfer-encoding")) {
      note_transfer_encoding(value, facts);
    }
  }
  v.head_size = pos;
  v.header_count = count;
  v.status = Status::ok;
  return v;
}

// Transfer-Encoding rules shared by both directions (RFC 9112 §6.3).
HeadVerdict check_framing(HeadVerdict v, const FieldFacts& facts) {
  if (facts.has_te) {
    if (facts.has_cl) return fail(Status::bad_request, "both Content-Length and Transfer-Encoding");
    if (facts.empty_te) return fail(Status::bad_request, "empty Transfer-Encoding");
    if (facts.chunked_count == 0) return fail(Status::bad_request, "Transfer-Encoding without chunked");
    if (facts.chunked_count > 1) return fail(Status::bad_request, "chunked applied more than once");
    if (!facts.chunked_last) return fail(Status::bad_request, "chunked is not the last transfer coding");
    if (facts.other_coding) return fail(Status::not_implemented, "transfer coding other than chunked");
    v.chunked = true;
  }
  if (facts.has_cl) v.content_length = facts.cl;
  return v;
}

}  // namespace

HeadVerdict check_request_head(std::string_view head, const HeadLimits& limits, std::vector<FieldView>* fields) {
  FieldFacts facts;
  HeadVerdict v = scan_head(head, limits, fields, facts,
                            [](std::string_view line, HeadVerdict& out, std::size_t start) {
                              return check_request_line(line, out, start);
                            });
  if (v.status != Status::ok) return v;
  if (facts.host_count > 1) return fail(Status::bad_request, "more than one Host header");
  if (facts.host_count == 0 && v.minor_version == 1) return fail(Status::bad_request, "HTTP/1.1 request without Host");
  if (facts.has_te && v.minor_version == 0) return fail(Status::bad_request, "Transfer-Encoding in an HTTP/1.0 request");
  return check_framing(v, facts);
}

HeadVerdict check_response_head(std::string_view head, const HeadLimits& limits, std::vector<FieldView>* fields) {
  FieldFacts facts;
  HeadVerdict v = scan_head(head, limits, fields, facts, [](std::string_view line, HeadVerdict& out, std::size_t) {
    // HTTP/1.x SP 3DIGIT [SP reason]
    if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[7] < '0' || line[7] > '9' || line[8] != ' ') {
      return fail(Status::bad_request, "malformed status line");
    }
    int code = 0;
    for (std::size_t i = 9; i < 12; ++i) {
      if (line[i] < '0' || line[i] > '9') return fail(Status::bad_request, "malformed status code");
      code = code * 10 + (line[i] - '0');
    }
    if (code < 100 || (line.size() > 12 && line[12] != ' ')) return fail(Status::bad_request, "malformed status line");
    out.status_code = code;
    out.minor_version = line[7] == '0' ? 0 : 1;
    out.status = Status::ok;
    return out;
  });
  if (v.status != Status::ok) return v;
  return check_framing(v, facts);
}

}  // namespace meshd::proxy
