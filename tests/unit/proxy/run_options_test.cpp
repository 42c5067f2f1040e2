#include <catch2/catch.hpp>
#include <cstdlib>

#include "proxy/run_options.hpp"

using namespace meshd::proxy;

namespace {
struct EnvGuard {
  explicit EnvGuard(const char* name, const char* value) : name_(name) { setenv(name, value, 1); }
  ~EnvGuard() { unsetenv(name_); }
  const char* name_;
};
}  // namespace

TEST_CASE("durations") {
  CHECK(parse_duration("20s")->count() == 20000);
  CHECK(parse_duration("1500ms")->count() == 1500);
  CHECK(parse_duration("2m")->count() == 120000);
  CHECK(parse_duration("7")->count() == 7000);
  CHECK_FALSE(parse_duration("x"));
  CHECK_FALSE(parse_duration("-1s"));
}

TEST_CASE("every limit of SPEC §6 is settable, bad names and values are refused") {
  Limits l;
  CHECK(l.set("max_request_headers_bytes=32Ki").empty());
  CHECK(l.max_request_headers_bytes == 32 * 1024);
  CHECK(l.set("max_request_headers_count=50").empty());
  CHECK(l.max_request_headers_count == 50);
  CHECK(l.set("request_header_timeout=5s").empty());
  CHECK(l.request_header_timeout.count() == 5000);
  CHECK(l.set("downstream_idle_timeout=60s").empty());
  CHECK(l.set("upstream_connect_timeout=250ms").empty());
  CHECK(l.upstream_connect_timeout.count() == 250);
  CHECK(l.set("upstream_idle_timeout=2s").empty());
  CHECK(l.upstream_idle_timeout_app.count() == 2000);
  CHECK(l.upstream_idle_timeout_mesh.count() == 2000);
  CHECK(l.set("retry_buffer_bytes=1Mi").empty());
  CHECK(l.retry_buffer_bytes == 1024 * 1024);
  CHECK(l.set("max_connections_per_listener=10").empty());
  CHECK(l.set("drain_min=1s").empty());
  CHECK(l.set("dns_resolvers=127.0.0.1:5353,[::1]:53").empty());
  CHECK(l.dns_resolvers.size() == 2);
  CHECK(l.set("bogus=1").find("unknown name 'bogus'") != std::string::npos);
  CHECK_FALSE(l.set("request_header_timeout=soon").empty());
  CHECK_FALSE(l.set("max_request_headers_count=0").empty());
  CHECK_FALSE(l.set("dns_resolvers=resolver.local").empty());
  CHECK_FALSE(l.set("novalue").empty());
  CHECK(l.describe().find("retry_buffer_bytes=1048576") != std::string::npos);
}

TEST_CASE("run options: flags, defaults and usage errors") {
  RunOptions o;
  CHECK(parse_run_options({"--mesh", "m.yaml", "--node", "n", "--egress-port", "0", "--app-port=8080",
                           "--workers", "3", "--drain-timeout", "5s", "--set", "drain_min=1s"},
                          o)
            .empty());
  CHECK(o.mesh_file == "m.yaml");
  CHECK(o.node == "n");
  CHECK(o.egress_port == 0);
  CHECK(o.ingress_port == 15000);
  CHECK(o.app_port == 8080);
  CHECK(o.workers == 3);
  CHECK(o.drain_timeout.count() == 5000);
  CHECK(o.admin == "127.0.0.1:9901");
  RunOptions p;
  CHECK(parse_run_options({"--mesh", "m.yaml"}, p).find("--node") != std::string::npos);
  RunOptions q;
  CHECK_FALSE(parse_run_options({"--mesh", "m.yaml", "--node", "n", "--workers", "0"}, q).empty());
  RunOptions r;
  CHECK_FALSE(parse_run_options({"--mesh", "m.yaml", "--node", "n", "--admin", "localhost:9901"}, r).empty());
  RunOptions s;
  CHECK_FALSE(parse_run_options({"--mesh", "m.yaml", "--node", "n", "--frobnicate", "1"}, s).empty());
}

TEST_CASE("log levels: the --log-level names, and which lines each level lets through") {
  RunOptions o;
  CHECK(o.log_level == meshd::log::Level::info);
  CHECK(parse_run_options({"--mesh", "m.yaml", "--node", "n", "--log-level", "debug"}, o).empty());
  CHECK(o.log_level == meshd::log::Level::debug);
  CHECK(parse_run_options({"--mesh", "m.yaml", "--node", "n", "--log-level", "chatty"}, o).find("chatty") !=
        std::string::npos);
  for (const char* name : {"trace", "debug", "info", "warning", "error", "off"}) CHECK(meshd::log::parse_level(name));
  meshd::log::set_level(meshd::log::Level::warning);
  CHECK_FALSE(meshd::log::enabled(meshd::log::Level::info));
  CHECK(meshd::log::enabled(meshd::log::Level::warning));
  CHECK(meshd::log::enabled(meshd::log::Level::error));
  meshd::log::set_level(meshd::log::Level::off);
  CHECK_FALSE(meshd::log::enabled(meshd::log::Level::error));
  meshd::log::set_level(meshd::log::Level::trace);
  CHECK(meshd::log::enabled(meshd::log::Level::trace));
  CHECK_FALSE(meshd::log::enabled(meshd::log::Level::off));  // `off` is a threshold, never a line's level
  meshd::log::set_level(meshd::log::Level::info);
}

TEST_CASE("the node comes from App Mesh's environment variables, in their order") {
  {
    EnvGuard arn("APPMESH_RESOURCE_ARN", "arn:aws:appmesh:us-west-2:123456789012:mesh/shop/virtualNode/cart");
    EnvGuard name("APPMESH_VIRTUAL_NODE_NAME", "mesh/shop/virtualNode/other");
    RunOptions o;
    CHECK(parse_run_options({"--mesh", "m.yaml"}, o).empty());
    CHECK(o.node == "cart");
    CHECK(o.mesh_from_env == "shop");
  }
  {
    EnvGuard name("APPMESH_VIRTUAL_NODE_NAME", "plain-node");
    EnvGuard file("MESHD_MESH_FILE", "/etc/mesh.yaml");
    RunOptions o;
    CHECK(parse_run_options({}, o).empty());
    CHECK(o.node == "plain-node");
    CHECK(o.mesh_file == "/etc/mesh.yaml");
    CHECK(o.mesh_from_env.empty());
  }
  {
    EnvGuard arn("APPMESH_RESOURCE_ARN", "mesh/shop/virtualGateway/gw");
    RunOptions o;
    CHECK(parse_run_options({"--mesh", "m.yaml"}, o).find("not a virtual node") != std::string::npos);
  }
}

TEST_CASE("run options: --ingress-port LISTENER_PORT=PORT, and --gateway instead of --node") {
  RunOptions o;
  REQUIRE(parse_run_options({"--mesh", "m.yaml", "--node", "n", "--ingress-port", "8080", "--ingress-port",
                             "9090=19090", "--ingress-port=7070=0"},
                            o)
              .empty());
  CHECK(o.ingress_port == 8080);
  CHECK(o.listener_ports == std::vector<std::pair<std::uint16_t, std::uint16_t>>{{9090, 19090}, {7070, 0}});
  RunOptions twice;
  CHECK(parse_run_options({"--mesh", "m", "--node", "n", "--ingress-port", "9090=1", "--ingress-port", "9090=2"}, twice)
            .find("given twice") != std::string::npos);
  RunOptions bad;
  CHECK(parse_run_options({"--mesh", "m", "--node", "n", "--ingress-port", "0=5"}, bad).find("LISTENER_PORT=PORT") !=
        std::string::npos);
  RunOptions gw;
  CHECK(parse_run_options({"--mesh", "m", "--gateway", "g"}, gw).empty());
  CHECK(gw.gateway == "g");
  RunOptions both;
  CHECK(parse_run_options({"--mesh", "m", "--gateway", "g", "--node", "n"}, both).find("not both") != std::string::npos);
}
