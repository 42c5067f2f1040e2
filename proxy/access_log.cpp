#include "proxy/access_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "proxy/json.hpp"
#include "proxy/local_reply.hpp"

namespace meshd::proxy {

namespace {

// strftime with Envoy's %3f / %6f / %9f (fractions of a second) and %s.
std::string format_time(const timespec& ts, std::string_view fmt) {
  if (fmt.empty()) fmt = "%Y-%m-%dT%H:%M:%S.%3fZ";
  tm utc;
  gmtime_r(&ts.tv_sec, &utc);
  std::string expanded;
  for (std::size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] == '%' && i + 2 < fmt.size() && (fmt[i + 1] == '3' || fmt[i + 1] == '6' || fmt[i + 1] == '9') &&
        fmt[i + 2] == 'f') {
      char digits[16];
      std::snprintf(digits, sizeof digits, "%09ld", ts.tv_nsec);
      expanded.append(digits, static_cast<std::size_t>(fmt[i + 1] - '0'));
      i += 2;
    } else if (fmt[i] == '%' && i + 1 < fmt.size() && fmt[i + 1] == 's') {
      expanded += std::to_string(ts.tv_sec);
      ++i;
    } else if (fmt[i] == '%' && i + 1 < fmt.size() && fmt[i + 1] == '%') {
      expanded += "%%";
      ++i;
    } else {
      expanded += fmt[i];
    }
  }
  char buf[256];
  const std::size_t n = std::strftime(buf, sizeof buf, expanded.c_str(), &utc);
  return std::string(buf, n);
}

// When the request started: `seconds` before now.
timespec start_of(const AccessLogEntry& e) {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  const auto ns = static_cast<long long>(e.seconds * 1e9);
  ts.tv_sec -= static_cast<time_t>(ns / 1000000000);
  ts.tv_nsec -= static_cast<long>(ns % 1000000000);
  if (ts.tv_nsec < 0) {
    ts.tv_nsec += 1000000000;
    --ts.tv_sec;
  }
  return ts;
}

const std::string& hostname() {
  static const std::string name = [] {
    char buf[256] = {};
    return gethostname(buf, sizeof buf - 1) == 0 ? std::string(buf) : std::string();
  }();
  return name;
}

}  // namespace

std::shared_ptr<AccessLog> AccessLog::open(const std::string& path, const std::optional<mesh::AccessLogFormat>& format,
                                           std::string& error) {
  std::shared_ptr<AccessLog> log;
  {
    const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      error = "cannot open the access log " + path + ": " + std::strerror(errno);
      return nullptr;
    }
    log.reset(new AccessLog(fd));
  }
  if (!format) return log;
  std::string problem;
  if (const auto* text = std::get_if<std::string>(&format->kind)) {
    auto t = mesh::parse_log_template(*text, problem);
    if (!t) {
      error = "access log format: " + problem;
      return nullptr;
    }
    log->kind_ = Kind::text;
    log->text_ = std::move(*t);
    log->learn(log->text_);
  } else {
    log->kind_ = Kind::json;
    for (const auto& entry : std::get<std::vector<mesh::JsonFormatEntry>>(format->kind)) {
      auto t = mesh::parse_log_template(entry.value, problem);
      if (!t) {
        error = "access log format " + entry.key + ": " + problem;
        return nullptr;
      }
      log->json_.emplace_back(entry.key, std::move(*t));
      log->learn(log->json_.back().second);
    }
  }
  return log;
}

void AccessLog::learn(const mesh::LogTemplate& t) {
  for (const auto& p : t) {
    if (p.field == mesh::LogField::response_header) {
      for (const auto& name : {p.header, p.alternate}) {
        if (!name.empty() && std::find(response_headers_.begin(), response_headers_.end(), name) == response_headers_.end()) {
          response_headers_.push_back(name);
        }
      }
    }
    if (p.field == mesh::LogField::downstream_remote_address || p.field == mesh::LogField::downstream_local_address) {
      needs_addresses_ = true;
    }
  }
}

AccessLog::~AccessLog() { ::close(fd_); }

std::int64_t AccessLog::number(mesh::LogField f, const AccessLogEntry& e) {
  switch (f) {
    case mesh::LogField::response_code: return e.status;
    case mesh::LogField::bytes_received: return static_cast<std::int64_t>(e.bytes_received);
    case mesh::LogField::bytes_sent: return static_cast<std::int64_t>(e.bytes_sent);
    case mesh::LogField::duration: return static_cast<std::int64_t>(e.seconds * 1000);
    default: return 0;
  }
}

std::string AccessLog::value(const mesh::LogPiece& p, const AccessLogEntry& e) const {
  using F = mesh::LogField;
  auto request_header = [&](const std::string& name) -> std::string {
    if (name == ":method") return std::string(e.request.method);
    if (name == ":path") return std::string(e.path);
    if (name == ":authority") return std::string(e.authority);
    if (name == ":scheme") return std::string(e.request.scheme);
    if (auto v = e.request.get(name)) return std::string(*v);
    return {};
  };
  auto response_header = [&](const std::string& name) -> std::string {
    if (e.response_headers == nullptr) return {};
    const auto it = std::find(response_headers_.begin(), response_headers_.end(), name);
    const auto i = static_cast<std::size_t>(it - response_headers_.begin());
    return i < e.response_headers->size() ? (*e.response_headers)[i] : std::string();
  };
  switch (p.field) {
    case F::literal: return p.text;
    case F::start_time: return format_time(start_of(e), p.text);
    case F::request_header: {
      auto v = request_header(p.header);
      if (v.empty() && !p.alternate.empty()) v = request_header(p.alternate);
      return v;
    }
    case F::response_header: {
      auto v = response_header(p.header);
      if (v.empty() && !p.alternate.empty()) v = response_header(p.alternate);
      return v;
    }
    case F::protocol: return std::string(version_text(e.request.version));
    case F::response_code:
    case F::bytes_received:
    case F::bytes_sent:
    case F::duration: return std::to_string(number(p.field, e));
    case F::response_flags: return std::string(envoy_response_flag(e.flag));
    case F::response_code_details: return e.flag.empty() || e.flag == "-" ? std::string() : std::string(e.flag);
    case F::upstream_host: return std::string(e.upstream_host);
    case F::upstream_cluster: return std::string(e.node);
    case F::route_name: return std::string(e.route);
    case F::virtual_service: return std::string(e.service);
    case F::downstream_remote_address: return std::string(e.remote_address);
    case F::downstream_remote_address_without_port: return std::string(e.remote_ip);
    case F::downstream_local_address: return std::string(e.local_address);
    case F::hostname: return hostname();
  }
  return {};
}

void AccessLog::render(const mesh::LogTemplate& t, const AccessLogEntry& e, std::string& out) const {
  for (const auto& p : t) {
    if (p.field == mesh::LogField::literal) {
      out += p.text;
      continue;
    }
    std::string v = value(p, e);
    if (v.empty()) v = "-";
    if (p.max_length > 0 && v.size() > p.max_length) v.resize(p.max_length);
    out += v;
  }
}

std::string AccessLog::format(const AccessLogEntry& e) const {
  std::string line;
  switch (kind_) {
    case Kind::builtin:
      return builtin(e);
    case Kind::text:
      render(text_, e, line);
      // Envoy writes the format as given; a line without its newline would run into
      // the next one, so meshd ends each line.
      if (line.empty() || line.back() != '\n') line += '\n';
      return line;
    case Kind::json: {
      Json j;
      j.begin_object();
      for (const auto& [key, t] : json_) {
        j.key(key);
        if (t.size() == 1 && mesh::numeric(t[0].field)) {
          j.value(number(t[0].field, e));  // a lone numeric operator stays a number
        } else if (t.size() == 1 && t[0].field != mesh::LogField::literal) {
          // A lone operator keeps its type: a string, or null when it has no value.
          std::string v = value(t[0], e);
          if (t[0].max_length > 0 && v.size() > t[0].max_length) v.resize(t[0].max_length);
          if (v.empty()) {
            j.null();
          } else {
            j.value(v);
          }
        } else {
          std::string text;
          render(t, e, text);
          j.value(text);
        }
      }
      j.end_object();
      line = j.str();
      line += '\n';
      return line;
    }
  }
  return line;
}

std::string AccessLog::builtin(const AccessLogEntry& e) const {
  // [2026-11-27T13:15:40.123Z] "GET /path HTTP/1.1" 200 - 1234 5 "authority" "request-id"
  //   egress virtual_service route target_node retries=0
  char when[40];
  const timespec ts = start_of(e);
  tm utc;
  gmtime_r(&ts.tv_sec, &utc);
  const std::size_t n = std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(when + n, sizeof when - n, ".%03ldZ", ts.tv_nsec / 1000000);
  auto dash = [](std::string_view s) { return s.empty() ? std::string_view("-") : s; };
  std::string line;
  line.reserve(256);
  line += '[';
  line += when;
  line += "] \"";
  line += e.request.method;
  line += ' ';
  line += e.path;
  line += ' ';
  line += version_text(e.request.version);
  line += "\" ";
  line += std::to_string(e.status);
  line += ' ';
  line += dash(e.flag);
  line += ' ';
  line += std::to_string(e.bytes_sent);
  line += ' ';
  line += std::to_string(static_cast<long long>(e.seconds * 1000));
  line += " \"";
  line += dash(e.authority);
  line += "\" \"";
  line += dash(e.request_id);
  line += "\" ";
  line += e.direction == metrics::Direction::ingress ? "ingress " : "egress ";
  line += dash(e.service);
  line += ' ';
  line += dash(e.route);
  line += ' ';
  line += dash(e.node);
  line += " retries=";
  line += std::to_string(e.retries);
  line += '\n';
  return line;
}

void AccessLog::write(const AccessLogEntry& e) const {
  const std::string line = format(e);
  // One write per line; a short write on a pipe is not retried (a log line is not
  // worth blocking the worker).
  [[maybe_unused]] const ssize_t n = ::write(fd_, line.data(), line.size());
}

}  // namespace meshd::proxy
