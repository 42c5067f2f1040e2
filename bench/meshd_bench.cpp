// meshd-bench: the HTTP/1.1 load generator users run against their mesh (and the
// project runs against meshd, HAProxy and nginx in bench/compare.sh).
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "bench/load/generator.hpp"
#include "net/address.hpp"

using namespace meshd::bench;

namespace {

constexpr const char* kUsage =
    "usage: meshd-bench [options] URL...\n"
    "\n"
    "Sends HTTP/1.1 load to URL (several: used in turn, e.g. one per virtual service).\n"
    "The connection goes to the URL's host:port, or to --connect IP:PORT (a meshd\n"
    "egress listener, say) with the URL's authority as Host.\n"
    "\n"
    "  -c, --connections N   connections (default 64)\n"
    "  -t, --threads N       threads (default 1)\n"
    "  -d, --duration S      seconds to run (default 10)\n"
    "  -n, --requests N      stop after N requests instead\n"
    "  -R, --rate R          open loop at R requests/s in all (latency from each\n"
    "                        request's scheduled time); default: closed loop\n"
    "  -m, --method M        method (default GET)\n"
    "  -H, --header 'N: V'   a request header (repeatable)\n"
    "  -b, --body TEXT       request body (sent with Content-Length)\n"
    "      --connect IP:PORT where to connect\n"
    "      --timeout S       per-request timeout (default 10)\n"
    "      --no-keepalive    a new connection for every request\n"
    "      --h2 N            HTTP/2 (h2c prior knowledge), N streams in flight per connection\n"
    "      --grpc            with --h2: gRPC unary calls (POST, the body as one message;\n"
    "                        a response is 2xx only with grpc-status 0)\n"
    "      --json            print the result as JSON on stdout\n"
    "      --html FILE       write a self-contained HTML report\n"
    "      --quiet           no progress line\n";

bool parse_url(const std::string& url, Target& t, std::string& ip, std::uint16_t& port) {
  const std::string prefix = "http://";
  if (url.rfind(prefix, 0) != 0) return false;
  const std::string rest = url.substr(prefix.size());
  const auto slash = rest.find('/');
  t.host = rest.substr(0, slash);
  t.path = slash == std::string::npos ? "/" : rest.substr(slash);
  auto hp = meshd::net::split_host_port(t.host);
  if (!hp) return false;
  ip = hp->host == "localhost" ? "127.0.0.1" : hp->host;
  port = hp->port.value_or(80);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  LoadConfig cfg;
  std::vector<std::string> urls;
  std::string connect, html;
  bool json = false;
  std::string method = "GET";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "meshd-bench: " << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return 0;
    } else if (a == "-c" || a == "--connections") {
      cfg.connections = static_cast<unsigned>(std::stoul(value()));
    } else if (a == "-t" || a == "--threads") {
      cfg.threads = static_cast<unsigned>(std::stoul(value()));
    } else if (a == "-d" || a == "--duration") {
      cfg.duration_s = std::stod(value());
    } else if (a == "-n" || a == "--requests") {
      cfg.max_requests = std::stoull(value());
      cfg.duration_s = 3600;
    } else if (a == "-R" || a == "--rate") {
      cfg.rate = std::stod(value());
    } else if (a == "-m" || a == "--method") {
      method = value();
    } else if (a == "-H" || a == "--header") {
      const std::string h = value();
      const auto colon = h.find(':');
      if (colon == std::string::npos) {
        std::cerr << "meshd-bench: -H takes 'name: value'\n";
        return 2;
      }
      std::string v = h.substr(colon + 1);
      while (!v.empty() && v.front() == ' ') v.erase(0, 1);
      cfg.headers.emplace_back(h.substr(0, colon), v);
    } else if (a == "-b" || a == "--body") {
      cfg.body = value();
    } else if (a == "--connect") {
      connect = value();
    } else if (a == "--timeout") {
      cfg.timeout_s = std::stod(value());
    } else if (a == "--no-keepalive") {
      cfg.keep_alive = false;
    } else if (a == "--h2") {
      cfg.h2_streams = static_cast<unsigned>(std::stoul(value()));
    } else if (a == "--grpc") {
      cfg.grpc = true;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--html") {
      html = value();
    } else if (a == "--quiet") {
      cfg.progress = false;
    } else if (!a.empty() && a[0] == '-') {
      std::cerr << "meshd-bench: unknown option " << a << "\n\n" << kUsage;
      return 2;
    } else {
      urls.push_back(a);
    }
  }
  if (cfg.grpc && cfg.h2_streams == 0) {
    std::cerr << "meshd-bench: --grpc needs --h2 N\n";
    return 2;
  }
  if (cfg.h2_streams > 0 && (cfg.rate > 0 || !cfg.keep_alive)) {
    std::cerr << "meshd-bench: --h2 runs a closed loop on kept connections (no -R, no --no-keepalive)\n";
    return 2;
  }
  if (urls.empty() || cfg.connections == 0) {
    std::cerr << kUsage;
    return 2;
  }
  for (const auto& u : urls) {
    Target t;
    t.method = method;
    std::string ip;
    std::uint16_t port = 0;
    if (!parse_url(u, t, ip, port)) {
      std::cerr << "meshd-bench: '" << u << "' is not an http:// URL\n";
      return 2;
    }
    if (cfg.targets.empty()) {
      cfg.connect_ip = ip;
      cfg.connect_port = port;
    }
    cfg.targets.push_back(t);
  }
  if (!connect.empty()) {
    auto hp = meshd::net::split_host_port(connect);
    if (!hp || !hp->port || !meshd::net::parse_ip(hp->host)) {
      std::cerr << "meshd-bench: --connect takes IP:PORT\n";
      return 2;
    }
    cfg.connect_ip = hp->host;
    cfg.connect_port = *hp->port;
  } else if (!meshd::net::parse_ip(cfg.connect_ip)) {
    std::cerr << "meshd-bench: give --connect IP:PORT for a host name URL\n";
    return 2;
  }
  Result r = run_load(cfg);
  r.title = method + " " + urls.front() + (urls.size() > 1 ? " (+" + std::to_string(urls.size() - 1) + " more)" : "") +
            ", " + std::to_string(cfg.connections) + " connections, " +
            (cfg.rate > 0 ? "open loop" : "closed loop") + (cfg.keep_alive ? "" : ", no keep-alive") +
            (cfg.h2_streams > 0 ? ", HTTP/2 x" + std::to_string(cfg.h2_streams) + " streams" : "") +
            (cfg.grpc ? ", gRPC" : "");
  std::cout << (json ? to_json(r) : summary_table(r));
  if (!html.empty()) {
    std::ofstream out(html);
    out << to_html(r);
    if (!out) {
      std::cerr << "meshd-bench: cannot write " << html << "\n";
      return 3;
    }
  }
  return r.requests > 0 ? 0 : 1;
}
