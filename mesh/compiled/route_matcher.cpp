#include "mesh/compiled/route_matcher.hpp"

#include <re2/re2.h>

#include <charconv>

#include "mesh/config/names.hpp"

namespace meshd::mesh {

std::shared_ptr<const re2::RE2> compile_regex(const std::string& pattern) {
  RE2::Options options;
  options.set_log_errors(false);
  auto re = std::make_shared<const RE2>(pattern, options);
  return re->ok() ? re : nullptr;
}

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return out;
}

std::vector<RouteMatcher::Header> compile_headers(const std::vector<HeaderMatch>& in) {
  std::vector<RouteMatcher::Header> out;
  out.reserve(in.size());
  for (const auto& h : in) {
    RouteMatcher::Header c;
    c.name = lower(h.name);
    c.invert = h.invert;
    c.presence_only = !h.match.has_value();
    if (h.match) {
      c.kind = h.match->kind;
      c.value = h.match->value;
      c.range = h.match->range;
      if (c.kind == HeaderMatchMethod::Kind::regex) c.regex = compile_regex(c.value);
    }
    out.push_back(std::move(c));
  }
  return out;
}

bool value_matches(const RouteMatcher::Header& h, std::string_view v) {
  switch (h.kind) {
    case HeaderMatchMethod::Kind::exact:
      return v == h.value;
    case HeaderMatchMethod::Kind::prefix:
      return v.substr(0, h.value.size()) == h.value;
    case HeaderMatchMethod::Kind::suffix:
      return v.size() >= h.value.size() && v.substr(v.size() - h.value.size()) == h.value;
    case HeaderMatchMethod::Kind::regex:
      return h.regex && RE2::FullMatch(re2::StringPiece(v.data(), v.size()), *h.regex);
    case HeaderMatchMethod::Kind::range: {
      std::int64_t n = 0;
      const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (v.empty() || ec != std::errc() || end != v.data() + v.size()) return false;
      return n >= h.range.start && n < h.range.end;
    }
  }
  return false;
}

// The first value of a query parameter, percent-decoded, or nullopt when absent.
std::optional<std::string> query_value(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const auto eq = pair.find('=');
    const std::string_view key = pair.substr(0, eq);
    if (key != name) continue;
    std::string_view raw = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    std::string value;
    value.reserve(raw.size());
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '%' && i + 2 < raw.size()) {
        auto hex = [](char c) {
          if (c >= '0' && c <= '9') return c - '0';
          if (c >= 'a' && c <= 'f') return c - 'a' + 10;
          if (c >= 'A' && c <= 'F') return c - 'A' + 10;
          return -1;
        };
        const int hi = hex(raw[i + 1]);
        const int lo = hex(raw[i + 2]);
        if (hi >= 0 && lo >= 0) {
          value += static_cast<char>(hi * 16 + lo);
          i += 2;
          continue;
        }
      }
      value += raw[i] == '+' ? ' ' : raw[i];
    }
    return value;
  }
  return std::nullopt;
}

}  // namespace

bool header_matches(const RouteMatcher::Header& h, const RequestView& req) {
  // Values of a repeated header are matched joined with ',' (as Envoy does).
  const HeaderField* first = nullptr;
  std::string joined;
  for (const auto& f : req.headers) {
    if (!iequals(f.name, h.name)) continue;
    if (first == nullptr) {
      first = &f;
    } else {
      if (joined.empty()) joined.assign(first->value);
      joined += ',';
      joined += f.value;
    }
  }
  bool result;
  if (first == nullptr) {
    result = false;
  } else if (h.presence_only) {
    result = true;
  } else {
    result = value_matches(h, joined.empty() ? first->value : std::string_view(joined));
  }
  return result != h.invert;
}

RouteMatcher RouteMatcher::from_http(const HttpRouteMatch& m) {
  RouteMatcher r;
  if (m.prefix) {
    r.path_.kind = *m.prefix == "/" ? PathKind::any : PathKind::prefix;
    r.path_.value = *m.prefix;
  } else if (m.path) {
    r.path_.kind = m.path->kind == PathMatch::Kind::exact ? PathKind::exact : PathKind::regex;
    r.path_.value = m.path->value;
    if (r.path_.kind == PathKind::regex) r.path_.regex = compile_regex(m.path->value);
  }
  r.headers_ = compile_headers(m.headers);
  r.query_ = m.query_parameters;
  if (m.method) r.method_ = std::string(to_string(*m.method));
  if (m.scheme) r.scheme_ = *m.scheme == HttpScheme::https ? "https" : "http";
  return r;
}

RouteMatcher RouteMatcher::from_grpc(const GrpcRouteMatch& m) {
  RouteMatcher r;
  r.grpc_only_ = true;
  if (m.service_name && m.method_name) {
    r.path_.kind = PathKind::exact;
    r.path_.value = "/" + *m.service_name + "/" + *m.method_name;
  } else if (m.service_name) {
    r.path_.kind = PathKind::prefix;
    r.path_.value = "/" + *m.service_name + "/";
  }
  r.headers_ = compile_headers(m.metadata);
  return r;
}

RouteMatcher RouteMatcher::match_all() { return RouteMatcher{}; }

bool RouteMatcher::matches(const RequestView& req) const {
  switch (path_.kind) {
    case PathKind::any:
      break;
    case PathKind::prefix:
      if (req.path.substr(0, path_.value.size()) != path_.value) return false;
      break;
    case PathKind::exact:
      if (req.path != path_.value) return false;
      break;
    case PathKind::regex:
      if (!path_.regex || !RE2::FullMatch(re2::StringPiece(req.path.data(), req.path.size()), *path_.regex)) {
        return false;
      }
      break;
  }
  if (method_ && req.method != *method_) return false;
  if (scheme_ && !iequals(req.scheme, *scheme_)) return false;
  if (grpc_only_) {
    bool grpc = false;
    for (const auto& f : req.headers) {
      if (iequals(f.name, "content-type") && f.value.substr(0, 16) == "application/grpc") grpc = true;
    }
    if (!grpc) return false;
  }
  for (const auto& h : headers_) {
    if (!header_matches(h, req)) return false;
  }
  for (const auto& q : query_) {
    auto v = query_value(req.query, q.name);
    if (!v) return false;
    if (q.exact && *v != *q.exact) return false;
  }
  return true;
}

std::string RouteMatcher::describe() const {
  std::string out;
  auto add = [&](const std::string& s) {
    if (!out.empty()) out += ", ";
    out += s;
  };
  switch (path_.kind) {
    case PathKind::any:
      add(grpc_only_ ? "any gRPC service" : "prefix /");
      break;
    case PathKind::prefix:
      add("prefix " + path_.value);
      break;
    case PathKind::exact:
      add("path " + path_.value);
      break;
    case PathKind::regex:
      add("path regex " + path_.value);
      break;
  }
  static constexpr const char* kinds[] = {"exact", "prefix", "suffix", "regex", "range"};
  for (const auto& h : headers_) {
    std::string s = "header " + h.name + (h.invert ? " not " : " ");
    if (h.presence_only) {
      s += "present";
    } else if (h.kind == HeaderMatchMethod::Kind::range) {
      s += "range [" + std::to_string(h.range.start) + ", " + std::to_string(h.range.end) + ")";
    } else {
      s += std::string(kinds[static_cast<int>(h.kind)]) + " " + h.value;
    }
    add(s);
  }
  for (const auto& q : query_) add("query " + q.name + (q.exact ? "=" + *q.exact : " present"));
  if (method_) add("method " + *method_);
  if (scheme_) add("scheme " + *scheme_);
  return out;
}

}  // namespace meshd::mesh
