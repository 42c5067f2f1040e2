#pragma once
// The admin HTTP server (Beast) on its own thread with its own io_context, so that
// scrapes and probes never run on a worker (DESIGN "Threading"). It only parses and
// answers; what each path returns is the handler's business (proxy/server.cpp).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <system_error>

namespace meshd::metrics {

struct AdminResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

using AdminHandler = std::function<AdminResponse(const std::string& method, const std::string& target)>;

class AdminServer {
 public:
  AdminServer();
  ~AdminServer();
  // Listens on ip:port (port 0: chosen); returns the bound "IP:PORT" or an error.
  std::string listen(const std::string& ip, std::uint16_t port, AdminHandler handler, std::error_code& ec);
  void start();  // runs the thread
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshd::metrics
