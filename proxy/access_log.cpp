#include "proxy/access_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

namespace meshd::proxy {

std::shared_ptr<AccessLog> AccessLog::open(const std::string& path, std::string& error) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    error = "cannot open the access log " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  return std::shared_ptr<AccessLog>(new AccessLog(fd));
}

AccessLog::~AccessLog() { ::close(fd_); }

std::string AccessLog::format(const AccessLogEntry& e) {
  // [2026-11-27T13:15:40.123Z] "GET /path HTTP/1.1" 200 - 1234 5 "authority" "request-id"
  //   egress virtual_service route target_node retries=0
  char when[40];
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
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
  line += e.request.minor_version == 0 ? " HTTP/1.0\" " : " HTTP/1.1\" ";
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
