#include "mesh/config/access_log_format.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>

namespace meshd::mesh {

namespace {

struct Operator {
  std::string_view name;
  LogField field;
  bool takes_argument;  // (required for REQ/RESP, optional for START_TIME)
};

constexpr std::array kOperators = {
    Operator{"START_TIME", LogField::start_time, true},
    Operator{"REQ", LogField::request_header, true},
    Operator{"REQUEST_HEADER", LogField::request_header, true},
    Operator{"RESP", LogField::response_header, true},
    Operator{"RESPONSE_HEADER", LogField::response_header, true},
    Operator{"PROTOCOL", LogField::protocol, false},
    Operator{"RESPONSE_CODE", LogField::response_code, false},
    Operator{"RESPONSE_FLAGS", LogField::response_flags, false},
    Operator{"RESPONSE_CODE_DETAILS", LogField::response_code_details, false},
    Operator{"BYTES_RECEIVED", LogField::bytes_received, false},
    Operator{"BYTES_SENT", LogField::bytes_sent, false},
    Operator{"DURATION", LogField::duration, false},
    Operator{"UPSTREAM_HOST", LogField::upstream_host, false},
    Operator{"UPSTREAM_CLUSTER", LogField::upstream_cluster, false},
    Operator{"ROUTE_NAME", LogField::route_name, false},
    Operator{"VIRTUAL_SERVICE", LogField::virtual_service, false},
    Operator{"DOWNSTREAM_REMOTE_ADDRESS", LogField::downstream_remote_address, false},
    Operator{"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", LogField::downstream_remote_address_without_port, false},
    Operator{"DOWNSTREAM_LOCAL_ADDRESS", LogField::downstream_local_address, false},
    Operator{"HOSTNAME", LogField::hostname, false},
};

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

bool header_name(std::string_view s) {
  if (s.empty()) return false;
  const std::size_t start = s.front() == ':' ? 1 : 0;  // :method, :path, :authority, :scheme
  if (start == s.size()) return false;
  return std::all_of(s.begin() + static_cast<std::ptrdiff_t>(start), s.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '!' || c == '#' || c == '$' || c == '&' ||
           c == '\'' || c == '*' || c == '+' || c == '^' || c == '`' || c == '|' || c == '~';
  });
}

}  // namespace

bool numeric(LogField f) {
  return f == LogField::response_code || f == LogField::bytes_received || f == LogField::bytes_sent ||
         f == LogField::duration;
}

std::optional<LogTemplate> parse_log_template(std::string_view text, std::string& error) {
  LogTemplate out;
  auto literal = [&](std::string_view s) {
    if (s.empty()) return;
    if (out.empty() || out.back().field != LogField::literal) out.push_back(LogPiece{});
    out.back().text.append(s);
  };
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t pct = text.find('%', i);
    if (pct == std::string_view::npos) {
      literal(text.substr(i));
      break;
    }
    literal(text.substr(i, pct - i));
    // %NAME%, %NAME(ARG)%, %NAME(ARG):N%
    std::size_t j = pct + 1;
    while (j < text.size() && (std::isupper(static_cast<unsigned char>(text[j])) || text[j] == '_')) ++j;
    const std::string_view name = text.substr(pct + 1, j - pct - 1);
    if (name.empty()) {
      error = "'%' at position " + std::to_string(pct) + " does not start a command operator (like %RESPONSE_CODE%)";
      return std::nullopt;
    }
    const auto op = std::find_if(kOperators.begin(), kOperators.end(), [&](const Operator& o) { return o.name == name; });
    if (op == kOperators.end()) {
      error = "unknown command operator %" + std::string(name) + "%";
      return std::nullopt;
    }
    LogPiece piece;
    piece.field = op->field;
    bool has_argument = false;
    if (j < text.size() && text[j] == '(') {
      const std::size_t close = text.find(')', j);
      if (close == std::string_view::npos) {
        error = "%" + std::string(name) + "(: missing ')'";
        return std::nullopt;
      }
      if (!op->takes_argument) {
        error = "%" + std::string(name) + "% takes no argument";
        return std::nullopt;
      }
      const std::string_view arg = text.substr(j + 1, close - j - 1);
      has_argument = true;
      if (piece.field == LogField::start_time) {
        piece.text = std::string(arg);
      } else {
        const std::size_t q = arg.find('?');
        const std::string_view main = arg.substr(0, q);
        const std::string_view alt = q == std::string_view::npos ? std::string_view() : arg.substr(q + 1);
        if (!header_name(main) || (q != std::string_view::npos && !header_name(alt))) {
          error = "%" + std::string(name) + "(" + std::string(arg) + ")%: expected a header name, or NAME?ALTERNATE";
          return std::nullopt;
        }
        piece.header = lower(main);
        piece.alternate = lower(alt);
      }
      j = close + 1;
    }
    if (!has_argument && (piece.field == LogField::request_header || piece.field == LogField::response_header)) {
      error = "%" + std::string(name) + "% needs a header name: %" + std::string(name) + "(NAME)%";
      return std::nullopt;
    }
    if (j < text.size() && text[j] == ':') {
      std::size_t k = j + 1;
      std::size_t n = 0;
      while (k < text.size() && std::isdigit(static_cast<unsigned char>(text[k])) && n < 1000000) {
        n = n * 10 + static_cast<std::size_t>(text[k] - '0');
        ++k;
      }
      if (k == j + 1 || n == 0) {
        error = "%" + std::string(name) + "%: ':' must be followed by a length of at least 1";
        return std::nullopt;
      }
      piece.max_length = n;
      j = k;
    }
    if (j >= text.size() || text[j] != '%') {
      error = "%" + std::string(name) + ": missing the closing '%'";
      return std::nullopt;
    }
    out.push_back(std::move(piece));
    i = j + 1;
  }
  return out;
}

}  // namespace meshd::mesh
