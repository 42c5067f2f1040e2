// The access log (proxy/access_log.*) written to a temporary file: meshd's builtin
// line, and App Mesh `text` and `json` formats (Envoy format strings, parsed by
// mesh/access_log_format.*): %PROTOCOL% follows the request's version, %REQ(:SCHEME)%
// its scheme, %RESPONSE_FLAGS% maps meshd's flag names to Envoy's.
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "mesh/config/model.hpp"
#include "proxy/access_log.hpp"
#include "proxy/local_reply.hpp"

using namespace meshd::proxy;

namespace {

// A file name of its own under the temporary directory, removed at the end.
struct TempFile {
  std::string path;
  TempFile() {
    const char* dir = std::getenv("TMPDIR");
    std::string tmpl = std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/meshd-access-log-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    const int fd = ::mkstemp(buf.data());
    REQUIRE(fd >= 0);
    ::close(fd);
    path = buf.data();
  }
  ~TempFile() { ::unlink(path.c_str()); }
  std::vector<std::string> lines() const {
    std::ifstream in(path);
    std::vector<std::string> out;
    std::string line;
    while (std::getline(in, line)) out.push_back(line);
    return out;
  }
  std::string text() const {
    std::ifstream in(path);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
};

std::shared_ptr<AccessLog> open_log(const std::string& path, std::optional<meshd::mesh::AccessLogFormat> format) {
  std::string error;
  auto log = AccessLog::open(path, format, error);
  INFO(error);
  REQUIRE(log);
  CHECK(error.empty());
  return log;
}

meshd::mesh::AccessLogFormat text_format(std::string text) {
  meshd::mesh::AccessLogFormat f;
  f.kind = std::move(text);
  return f;
}

const Field kFields[] = {{"Host", "svc.local"}, {"User-Agent", "curl/8"}};

RequestHead request(Version v, std::string_view scheme = "https") {
  RequestHead h;
  h.method = "GET";
  h.scheme = scheme;
  h.authority = "svc.local";
  h.path = "/a?b=1";
  h.fields = kFields;
  h.version = v;
  return h;
}

AccessLogEntry entry(const RequestHead& r, int status, std::string_view flag) {
  return AccessLogEntry{
      .direction = meshd::metrics::Direction::egress,
      .request = r,
      .path = "/a?b=1",
      .authority = "svc.local",
      .status = status,
      .bytes_sent = 1234,
      .seconds = 0.005,
      .service = "svc.local",
      .route = "r1",
      .node = "backend-v1",
      .flag = flag,
      .retries = 2,
      .request_id = "req-1",
  };
}

constexpr const char* kText = "%REQ(:METHOD)% %REQ(:SCHEME)% %PROTOCOL% %RESPONSE_CODE% %RESPONSE_FLAGS%";

}  // namespace

TEST_CASE("access log: a text format logs method, scheme, protocol, status and Envoy's flags") {
  TempFile file;
  auto log = open_log(file.path, text_format(kText));
  const auto h10 = request(Version::http10);
  const auto h11 = request(Version::http11);
  const auto plain = request(Version::http11, "http");
  log->write(entry(h10, 503, info(LocalReply::upstream_connect_failure).code));
  log->write(entry(h11, 200, "-"));
  log->write(entry(plain, 504, info(LocalReply::upstream_timeout).code));
  log->write(entry(h11, 200, kUpstreamResetAfterHeaders));
  log->write(entry(h11, 0, kDownstreamDisconnect));
  log->write(entry(h11, 503, info(LocalReply::no_healthy_upstream).code));
  log->write(entry(h11, 404, info(LocalReply::no_route).code));
  CHECK(file.lines() == std::vector<std::string>{
                            "GET https HTTP/1.0 503 UF",
                            "GET https HTTP/1.1 200 -",
                            "GET http HTTP/1.1 504 UT",
                            "GET https HTTP/1.1 200 UPE",
                            "GET https HTTP/1.1 0 DC",
                            "GET https HTTP/1.1 503 UH",
                            "GET https HTTP/1.1 404 NR",
                        });
  // meshd ends every line (the format has no newline of its own).
  CHECK(file.text().back() == '\n');
  // format() is what write() writes.
  CHECK(log->format(entry(h10, 503, "upstream_connect_failure")) == "GET https HTTP/1.0 503 UF\n");
}

TEST_CASE("access log: a text format's request headers, details and lengths") {
  TempFile file;
  auto log = open_log(file.path, text_format("%REQ(USER-AGENT)% %REQ(X-MISSING)% %RESPONSE_CODE_DETAILS% "
                                             "%REQ(:AUTHORITY):3% %REQ(:PATH)% %UPSTREAM_CLUSTER%\n"));
  const auto h = request(Version::http11);
  CHECK(log->format(entry(h, 503, "upstream_connect_failure")) ==
        "curl/8 - upstream_connect_failure svc /a?b=1 backend-v1\n");
  CHECK(log->format(entry(h, 200, "-")) == "curl/8 - - svc /a?b=1 backend-v1\n");
}

TEST_CASE("access log: the builtin line names the protocol and meshd's own flag") {
  TempFile file;
  auto log = open_log(file.path, std::nullopt);
  const auto h10 = request(Version::http10);
  const auto h11 = request(Version::http11);
  log->write(entry(h10, 503, "upstream_connect_failure"));
  log->write(entry(h11, 200, "-"));
  const auto lines = file.lines();
  REQUIRE(lines.size() == 2);
  // [2026-11-27T13:15:40.123Z] "GET /path HTTP/1.1" 200 - 1234 5 "authority" "request-id"
  //   egress virtual_service route target_node retries=0
  for (const auto& l : lines) {
    CHECK(l.front() == '[');
    CHECK(l.find("Z] \"GET /a?b=1 HTTP/1.") != std::string::npos);
  }
  const std::string tail = " 1234 5 \"svc.local\" \"req-1\" egress svc.local r1 backend-v1 retries=2";
  CHECK(lines[0].find("\"GET /a?b=1 HTTP/1.0\" 503 upstream_connect_failure" + tail) != std::string::npos);
  CHECK(lines[1].find("\"GET /a?b=1 HTTP/1.1\" 200 -" + tail) != std::string::npos);
  CHECK(lines[0].size() >= tail.size());
  CHECK(lines[0].substr(lines[0].size() - tail.size()) == tail);
}

TEST_CASE("access log: a json format keeps numbers numbers and the protocol a string") {
  TempFile file;
  meshd::mesh::AccessLogFormat f;
  f.kind = std::vector<meshd::mesh::JsonFormatEntry>{
      {"code", "%RESPONSE_CODE%"}, {"protocol", "%PROTOCOL%"}, {"flags", "%RESPONSE_FLAGS%"}, {"host", "%UPSTREAM_HOST%"}};
  auto log = open_log(file.path, f);
  const auto h10 = request(Version::http10);
  CHECK(log->format(entry(h10, 503, "upstream_connect_failure")) ==
        "{\"code\":503,\"protocol\":\"HTTP/1.0\",\"flags\":\"UF\",\"host\":null}\n");
}

TEST_CASE("access log: an unparsable format or path is an error") {
  std::string error;
  CHECK_FALSE(AccessLog::open("/nonexistent-dir/x/access.log", std::nullopt, error));
  CHECK(error.find("/nonexistent-dir/x/access.log") != std::string::npos);
  TempFile file;
  error.clear();
  CHECK_FALSE(AccessLog::open(file.path, text_format("%NOPE%"), error));
  CHECK_FALSE(error.empty());
}
