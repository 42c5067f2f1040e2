// The command line (SPEC §2): argument parsing and the offline subcommands.
#include "proxy/cli.hpp"

#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <sstream>

#include "mesh/compiled/snapshot.hpp"
#include "mesh/config/loader.hpp"
#include "mesh/config/names.hpp"
#include "proxy/errors.hpp"
#include "proxy/grpc.hpp"
#include "proxy/http1_write.hpp"  // iequals_ascii
#include "proxy/local_reply.hpp"
#include "proxy/run_options.hpp"
#include "proxy/server.hpp"
#include "proxy/version.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "net/address.hpp"

namespace meshd::proxy {
namespace {

constexpr const char* kUsage =
    "meshd: a sidecar proxy with the App Mesh configuration built in\n"
    "\n"
    "usage: meshd <command> [options]\n"
    "\n"
    "commands:\n"
    "  run --mesh FILE --node NAME        run the sidecar for virtual node NAME\n"
    "  status [--admin IP:PORT]           exit 0 when the sidecar is LIVE\n"
    "  validate FILE                      check a mesh file; print every error\n"
    "  route FILE --node NAME METHOD URL  dry run: where this request would go\n"
    "  version                            print the version\n"
    "\n"
    "`meshd <command> --help` describes each command. Exit codes: 0 ok; 1 invalid\n"
    "configuration or request; 2 usage; 3 runtime failure.\n";

constexpr const char* kValidateUsage =
    "usage: meshd validate FILE\n"
    "\n"
    "Loads the mesh file and checks it completely: YAML syntax, unknown fields, types,\n"
    "ranges, unions, references between resources and App Mesh's own rules. Every\n"
    "error is printed on stderr as FILE:LINE:COL: PATH: message.\n"
    "Exit 0 when the file is valid, 1 when it is not (or cannot be read), 2 on usage.\n";

constexpr const char* kRouteUsage =
    "usage: meshd route FILE --node NAME METHOD URL [-H 'name: value']...\n"
    "\n"
    "Shows what the sidecar of virtual node NAME would do with an outbound request:\n"
    "the virtual service (from the URL's authority), the router listener, the route\n"
    "that matches, its retry policy and timeouts, and each weighted target node with\n"
    "its share and its endpoints or discovery. Nothing is sent.\n"
    "\n"
    "  --node NAME       the virtual node whose sidecar routes the request\n"
    "  METHOD            GET, POST, ...\n"
    "  URL               absolute: http://user-service.local:8080/path?query\n"
    "  -H 'name: value'  a request header (repeatable)\n"
    "\n"
    "Exit 0 when the request is routed (or forwarded outside the mesh under\n"
    "ALLOW_ALL), 1 when meshd would answer it itself (403, 404, 503: printed with the\n"
    "reason) or the mesh file is invalid, 2 on usage.\n";

constexpr const char* kRunUsage =
    "usage: meshd run --mesh FILE --node NAME [--ingress-port 15000] [--ingress-port LISTENER_PORT=PORT]...\n"
    "                 [--egress-port 15001]\n"
    "                 [--app-port PORT] [--admin 127.0.0.1:9901] [--stats IP:PORT]\n"
    "                 [--workers N] [--log-level info] [--drain-timeout 20s] [--set NAME=VALUE]...\n"
    "       meshd run --mesh FILE --gateway NAME\n"
    "\n"
    "Runs the sidecar of virtual node NAME: egress on 127.0.0.1:--egress-port (the app\n"
    "calls the mesh through it, e.g. HTTP_PROXY=http://127.0.0.1:15001), ingress on\n"
    "0.0.0.0:--ingress-port forwarding to the app at 127.0.0.1:--app-port (default: the\n"
    "node's first listener port), the admin endpoints on --admin, and the GET admin\n"
    "endpoints also on --stats. A port of 0 is chosen once and printed at start.\n"
    "A node with several listeners is served on --ingress-port for its first listener\n"
    "and on --ingress-port LISTENER_PORT=PORT for each other one, each with its own\n"
    "settings, forwarding to the app at 127.0.0.1:LISTENER_PORT.\n"
    "\n"
    "  --mesh FILE       the mesh file (or MESHD_MESH_FILE)\n"
    "  --node NAME       the virtual node (or APPMESH_RESOURCE_ARN, APPMESH_RESOURCE_NAME,\n"
    "                    APPMESH_VIRTUAL_NODE_NAME: NAME or mesh/MESH/virtualNode/NAME)\n"
    "  --gateway NAME    a virtual gateway instead of a node: the file is validated, then\n"
    "                    refused with the gateway's PATH (gateways are served from issue 15)\n"
    "  --workers N       default: CPUs in the affinity mask, capped by the cgroup quota\n"
    "  --drain-timeout   the longest a drain (SIGTERM, POST /drain) lasts\n"
    "  --set NAME=VALUE  a limit of docs/configuration.md, e.g. --set request_header_timeout=5s\n"
    "\n"
    "Exit codes: 0 after a drain; 1 invalid mesh file or a feature this build cannot\n"
    "enforce (one line per PATH); 2 usage; 3 runtime failure (a port in use...).\n";

constexpr const char* kStatusUsage =
    "usage: meshd status [--admin 127.0.0.1:9901]\n"
    "\n"
    "Asks a running meshd for /server_info: exit 0 when its state is LIVE, 1 when it\n"
    "answers otherwise (DRAINING), 3 when it cannot be reached. A container health\n"
    "check without curl.\n";

constexpr const char* kVersionUsage = "usage: meshd version\n\nPrints meshd's version.\n";

bool is_help(std::string_view a) { return a == "--help" || a == "-h" || a == "help"; }

int usage_error(const std::string& message, const char* usage) {
  std::cerr << "meshd: " << message << "\n\n" << usage;
  return kExitUsage;
}

int load_or_report(const std::string& file, std::optional<mesh::LoadResult>& out) {
  out = mesh::load_mesh_file(file);
  if (!out->ok()) {
    std::cerr << out->diagnostics.format_all();
    return kExitInvalid;
  }
  return kExitOk;
}

int cmd_validate(const std::vector<std::string>& args) {
  std::vector<std::string> files;
  for (const auto& a : args) {
    if (is_help(a)) {
      std::cout << kValidateUsage;
      return kExitOk;
    }
    if (a.size() > 1 && a[0] == '-') return usage_error("unknown option " + a, kValidateUsage);
    files.push_back(a);
  }
  if (files.size() != 1) return usage_error("validate takes exactly one FILE", kValidateUsage);
  std::optional<mesh::LoadResult> result;
  if (int rc = load_or_report(files[0], result); rc != kExitOk) {
    const auto n = result->diagnostics.size();
    std::cerr << files[0] << ": " << n << (n == 1 ? " error" : " errors") << "\n";
    return rc;
  }
  const auto& cfg = *result->config;
  std::cout << files[0] << ": valid mesh '" << cfg.mesh.name << "': " << cfg.virtual_nodes.size()
            << " virtual nodes, " << cfg.virtual_services.size() << " virtual services, "
            << cfg.virtual_routers.size() << " virtual routers, " << cfg.routes.size() << " routes, "
            << cfg.virtual_gateways.size() << " virtual gateways, " << cfg.gateway_routes.size()
            << " gateway routes\n";
  return kExitOk;
}

struct ParsedUrl {
  std::string scheme;
  std::string authority;
  std::string path;
  std::string query;
};

std::optional<ParsedUrl> parse_url(std::string_view url) {
  const auto sep = url.find("://");
  if (sep == std::string_view::npos) return std::nullopt;
  ParsedUrl out;
  out.scheme = std::string(url.substr(0, sep));
  if (out.scheme != "http" && out.scheme != "https") return std::nullopt;
  std::string_view rest = url.substr(sep + 3);
  const auto slash = rest.find_first_of("/?");
  out.authority = std::string(rest.substr(0, slash));
  std::string_view target = slash == std::string_view::npos ? "/" : rest.substr(slash);
  const auto q = target.find('?');
  out.path = std::string(target.substr(0, q));
  if (out.path.empty()) out.path = "/";
  if (q != std::string_view::npos) out.query = std::string(target.substr(q + 1));
  if (out.authority.empty()) return std::nullopt;
  return out;
}

std::string ms(std::chrono::milliseconds d) {
  if (d.count() == 0) return "none";
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + " s";
  return std::to_string(d.count()) + " ms";
}

std::string describe_retry(const mesh::RetryPolicySpec& r) {
  std::ostringstream out;
  out << r.max_retries << (r.max_retries == 1 ? " retry" : " retries");
  if (r.per_try_timeout.count() > 0) out << ", per try " << ms(r.per_try_timeout);
  out << ", on";
  for (int code = 500; code < 532; ++code) {
    if (r.retries_status(code)) out << " " << code;
  }
  if (r.on_409) out << " 409";
  if (r.on_reset) out << " reset";
  if (r.on_connect_failure) out << " connect-failure";
  if (r.on_refused_stream) out << " refused-stream";
  static constexpr const char* kGrpcEvents[] = {"cancelled", "deadline-exceeded", "internal", "resource-exhausted",
                                                "unavailable"};
  for (int ev = 0; ev < 5; ++ev) {
    if ((r.grpc_codes >> ev) & 1u) out << " grpc:" << kGrpcEvents[ev];
  }
  out << ", backoff " << ms(r.backoff_base) << ".." << ms(r.backoff_max) << " (full jitter)";
  out << ", budget max(" << r.budget_min_concurrent << ", " << r.budget_percent << "% of active)";
  if (r.is_default) out << " [App Mesh default]";
  return out.str();
}

// The answer the data path would give (the same error table, proxy/errors.hpp); to
// a gRPC request, its trailers-only form (proxy/grpc.hpp).
int local_reply(ErrorKind kind, const std::string& reason, bool grpc) {
  const auto r = *describe(kind).reply;
  const auto& i = info(r);
  if (grpc) {
    std::cout << "local reply:     200 grpc-status " << grpc_status(r) << " " << i.code << ": " << reason << "\n";
  } else {
    std::cout << "local reply:     " << i.status << " " << i.code << ": " << reason << "\n";
  }
  return kExitInvalid;
}

int cmd_route(const std::vector<std::string>& args) {
  std::string node;
  std::vector<std::string> positional;
  std::vector<std::pair<std::string, std::string>> headers;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (is_help(a)) {
      std::cout << kRouteUsage;
      return kExitOk;
    }
    if (a == "--node" || a == "-H") {
      if (i + 1 >= args.size()) return usage_error(a + " needs a value", kRouteUsage);
      const std::string& v = args[++i];
      if (a == "--node") {
        node = v;
      } else {
        const auto colon = v.find(':');
        if (colon == std::string::npos || colon == 0) {
          return usage_error("-H takes 'name: value', got '" + v + "'", kRouteUsage);
        }
        std::string value = v.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.erase(0, 1);
        headers.emplace_back(v.substr(0, colon), value);
      }
    } else if (a.rfind("--node=", 0) == 0) {
      node = a.substr(7);
    } else if (a.size() > 1 && a[0] == '-') {
      return usage_error("unknown option " + a, kRouteUsage);
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 3) return usage_error("route takes FILE METHOD URL", kRouteUsage);
  if (node.empty()) return usage_error("route needs --node NAME", kRouteUsage);
  const std::string& file = positional[0];
  const std::string& method = positional[1];
  auto url = parse_url(positional[2]);
  if (!url) {
    std::cerr << "meshd: '" << positional[2] << "' is not an absolute http:// or https:// URL\n";
    return kExitInvalid;
  }
  auto authority = mesh::parse_authority(url->authority);
  if (!authority) {
    std::cerr << "meshd: '" << url->authority << "' is not a valid authority\n";
    return kExitInvalid;
  }

  std::optional<mesh::LoadResult> loaded;
  if (int rc = load_or_report(file, loaded); rc != kExitOk) return rc;
  auto config = std::make_shared<const mesh::MeshConfig>(std::move(*loaded->config));
  mesh::Diagnostics diag;
  auto snap = mesh::Snapshot::compile(config, node, diag, file);
  if (!snap) {
    std::cerr << diag.format_all();
    return kExitInvalid;
  }

  const std::string path = mesh::normalize_path(url->path);
  std::vector<mesh::HeaderField> fields;
  for (const auto& [n, v] : headers) fields.push_back({n, v});
  mesh::RequestView req;
  req.method = method;
  req.scheme = url->scheme;
  req.path = path;
  req.query = url->query;
  req.headers = fields;
  bool grpc = false;
  for (const auto& [n, v] : headers) {
    if (iequals_ascii(n, "content-type") && is_grpc_content_type(v)) grpc = true;
  }

  std::cout << "request:         " << method << " " << url->scheme << "://" << url->authority << path
            << (url->query.empty() ? "" : "?" + url->query) << "\n";
  std::cout << "from node:       " << node << " (egress)\n";
  const auto d = snap->route(authority->host, authority->port, req);
  using Outcome = mesh::RouteDecision::Outcome;
  switch (d.outcome) {
    case Outcome::outside_mesh:
      if (snap->egress_filter() == mesh::EgressFilterType::ALLOW_ALL) {
        std::cout << "virtual service: none: '" << authority->host
                  << "' is not a backend of this node\n"
                  << "outside mesh:    egressFilter ALLOW_ALL forwards it to " << url->authority
                  << " (resolved by DNS)\n";
        return kExitOk;
      }
      return local_reply(error_for(d.outcome),
                         "'" + authority->host + "' is not a backend of virtual node '" + node +
                             "' and the mesh's egressFilter is DROP_ALL",
                         grpc);
    case Outcome::no_provider:
      std::cout << "virtual service: " << d.service->service->name << " (no provider)\n";
      return local_reply(error_for(d.outcome), "the virtual service has no provider", grpc);
    case Outcome::no_listener: {
      std::string ports;
      for (const auto& l : *d.service->listeners) {
        ports += (ports.empty() ? "" : ", ") + std::to_string(l.port);
      }
      std::cout << "virtual service: " << d.service->service->name << "\n";
      return local_reply(error_for(d.outcome),
                         authority->port ? "no listener on port " + std::to_string(*authority->port) +
                                               " (listeners: " + ports + ")"
                                         : "several listeners (" + ports + "): give the port in the URL",
                         grpc);
    }
    case Outcome::no_route:
    case Outcome::routed:
      break;
  }
  const bool router = d.service->provider == mesh::ServiceEntry::Provider::virtual_router;
  std::cout << "virtual service: " << d.service->service->name << " (provider: virtual "
            << (router ? "router " : "node ") << d.service->provider_name << ")\n";
  std::cout << "listener:        " << d.listener->port << " (" << mesh::to_string(d.listener->protocol)
            << ")\n";
  if (d.outcome == Outcome::no_route) {
    return local_reply(error_for(d.outcome),
                       "none of the " + std::to_string(d.listener->routes.size()) + " routes on this listener matches",
                       grpc);
  }
  const auto& r = *d.route;
  std::cout << "route:           " << (r.name.empty() ? "(implicit: virtual-node provider)" : r.name);
  if (r.priority) std::cout << " (priority " << *r.priority << ")";
  std::cout << "; match: " << r.match.describe() << "\n";
  std::cout << "retry policy:    " << describe_retry(r.retry) << "\n";
  std::cout << "timeouts:        per request " << ms(r.timeouts.per_request) << ", idle "
            << ms(r.timeouts.idle) << "\n";
  std::cout << "targets:\n";
  for (const auto& t : r.targets) {
    const auto& c = snap->clusters()[t.cluster];
    char share[32];
    std::snprintf(share, sizeof share, "%5.1f%%", r.total_weight ? 100.0 * t.weight / r.total_weight : 0.0);
    std::cout << "  " << c.node_name << " weight " << t.weight << " (" << share << "): "
              << c.describe_discovery() << "\n";
  }
  return kExitOk;
}

// `meshd run --gateway NAME`: virtual gateways are not served by this build yet
// (issue 15). The file is validated as for a node, and the gateway named by its PATH.
int refuse_gateway(const RunOptions& options) {
  auto result = mesh::load_mesh_file(options.mesh_file);
  if (!result.ok()) {
    std::cerr << result.diagnostics.format_all() << std::flush;
    return kExitInvalid;
  }
  const auto& gateways = result.config->virtual_gateways;
  for (std::size_t i = 0; i < gateways.size(); ++i) {
    if (gateways[i].name != options.gateway) continue;
    std::cerr << options.mesh_file << ": virtualGateways[" << i
              << "]: not supported by this build: virtual gateways are served from issue 15 "
                 "(docs/operations.md)\n";
    return kExitInvalid;
  }
  std::cerr << options.mesh_file << ": no virtual gateway named '" << options.gateway << "'\n";
  return kExitInvalid;
}

int cmd_run(const std::vector<std::string>& args) {
  for (const auto& a : args) {
    if (is_help(a)) {
      std::cout << kRunUsage;
      return kExitOk;
    }
  }
  RunOptions options;
  if (auto error = parse_run_options(args, options); !error.empty()) return usage_error(error, kRunUsage);
  if (!options.gateway.empty()) return refuse_gateway(options);
  return run_server(options);
}

int cmd_status(const std::vector<std::string>& args) {
  std::string admin = "127.0.0.1:9901";
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (is_help(args[i])) {
      std::cout << kStatusUsage;
      return kExitOk;
    }
    if (args[i] == "--admin" && i + 1 < args.size()) {
      admin = args[++i];
    } else if (args[i].rfind("--admin=", 0) == 0) {
      admin = args[i].substr(8);
    } else {
      return usage_error("unknown argument " + args[i], kStatusUsage);
    }
  }
  auto hp = net::split_host_port(admin);
  auto ip = hp ? net::parse_ip(hp->host) : std::nullopt;
  if (!hp || !hp->port || !ip || ip->v6) return usage_error("--admin takes IPv4:PORT, got '" + admin + "'", kStatusUsage);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(*hp->port);
  std::memcpy(&addr.sin_addr, ip->bytes, 4);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    std::cerr << "meshd: cannot reach the admin endpoint at " << admin << "\n";
    return kExitRuntime;
  }
  const std::string request = "GET /server_info HTTP/1.1\r\nHost: " + admin + "\r\nConnection: close\r\n\r\n";
  [[maybe_unused]] auto sent = ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string response;
  char buf[4096];
  for (int i = 0; i < 256; ++i) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    response.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  const auto body = response.find("\r\n\r\n");
  if (body == std::string::npos) {
    std::cerr << "meshd: no answer from " << admin << "\n";
    return kExitRuntime;
  }
  std::cout << response.substr(body + 4);
  return response.find("\"state\":\"LIVE\"") != std::string::npos ? kExitOk : kExitInvalid;
}

int cmd_version(const std::vector<std::string>& args) {
  for (const auto& a : args) {
    if (is_help(a)) {
      std::cout << kVersionUsage;
      return kExitOk;
    }
    return usage_error("version takes no arguments", kVersionUsage);
  }
  std::cout << "meshd " << kVersion << "\n";
  return kExitOk;
}

}  // namespace

int run_cli(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kUsage;
    return kExitUsage;
  }
  const std::string cmd = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (is_help(cmd)) {
    std::cout << kUsage;
    return kExitOk;
  }
  if (cmd == "--version") return cmd_version({});
  static const std::map<std::string, int (*)(const std::vector<std::string>&)> commands = {
      {"run", cmd_run},
      {"status", cmd_status},
      {"validate", cmd_validate},
      {"route", cmd_route},
      {"version", cmd_version},
  };
  auto it = commands.find(cmd);
  if (it == commands.end()) return usage_error("unknown command '" + cmd + "'", kUsage);
  return it->second(args);
}

}  // namespace meshd::proxy
