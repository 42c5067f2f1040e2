// The loader accepts every example and reports each invalid file's errors exactly:
// tests/data/invalid/*.yaml end with `# expect: LINE:COL: PATH: message` lines.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "mesh/config/access_log_format.hpp"
#include "mesh/config/loader.hpp"

namespace fs = std::filesystem;
using meshd::mesh::load_mesh_file;
using meshd::mesh::load_mesh_text;

namespace {

std::vector<fs::path> files_in(const fs::path& dir, const std::string& ext) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ext) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> expectations(const fs::path& file) {
  std::ifstream in(file);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# expect: ", 0) == 0) out.push_back(line.substr(10));
  }
  return out;
}

}  // namespace

TEST_CASE("every example mesh validates") {
  const auto files = files_in(fs::path(MESHD_SOURCE_DIR) / "examples", ".yaml");
  REQUIRE(files.size() >= 10);
  for (const auto& f : files) {
    INFO(f.string());
    auto result = load_mesh_file(f.string());
    INFO(result.diagnostics.format_all());
    CHECK(result.ok());
  }
}

TEST_CASE("invalid files report each error with line, column, path and message") {
  const auto files = files_in(fs::path(MESHD_SOURCE_DIR) / "tests/data/invalid", ".yaml");
  REQUIRE(files.size() >= 40);
  for (const auto& f : files) {
    const auto expected = expectations(f);
    INFO(f.string());
    REQUIRE(!expected.empty());
    auto result = load_mesh_file(f.string());
    CHECK_FALSE(result.ok());
    std::vector<std::string> got;
    for (const auto& d : result.diagnostics.items()) {
      std::string line = d.format();
      CHECK(line.rfind(f.string() + ":", 0) == 0);  // FILE as given
      got.push_back(line.substr(f.string().size() + 1));
    }
    CHECK(got == expected);
  }
}

TEST_CASE("all errors of a file are reported at once, in file order") {
  const std::string yaml =
      "mesh: {name: m, spec: {egressFilter: {type: DENY}}}\n"        // 1
      "virtualNodes:\n"                                               // 2
      "  - name: a\n"                                                 // 3
      "    spec:\n"                                                   // 4
      "      listeners: [{portMapping: {port: 0, protocol: http}}]\n" // 5
      "      serviceDiscovery: {dns: {hostname: a.local}}\n"          // 6
      "      backends: [{virtualService: {virtualServiceName: b}}]\n" // 7
      "virtualServices:\n"                                            // 8
      "  - name: s\n"                                                 // 9
      "    spec: {provider: {virtualRouter: {virtualRouterName: r}}}\n"  // 10
      "    extra: 1\n";                                               // 11
  auto result = load_mesh_text(yaml, "multi.yaml");
  REQUIRE_FALSE(result.ok());
  const auto text = result.diagnostics.format_all();
  INFO(text);
  REQUIRE(result.diagnostics.size() == 5);
  const auto& d = result.diagnostics.items();
  CHECK(d[0].line == 1);
  CHECK(d[0].path == "mesh.spec.egressFilter.type");
  CHECK(d[1].line == 5);
  CHECK(d[1].path == "virtualNodes[0].spec.listeners[0].portMapping.port");
  CHECK(d[2].line == 7);
  CHECK(d[2].message.find("no virtual service named 'b'") != std::string::npos);
  CHECK(d[3].line == 10);
  CHECK(d[3].path == "virtualServices[0].spec.provider.virtualRouter.virtualRouterName");
  CHECK(d[4].line == 11);
  CHECK(d[4].message == "unknown field 'extra'; expected one of name, spec");
}

TEST_CASE("JSON, the App Mesh CLI's form, is accepted as YAML") {
  const std::string json = R"({"mesh": {"name": "m"},
    "virtualNodes": [{"name": "a", "spec": {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
                      "serviceDiscovery": {"dns": {"hostname": "a.local"}}}}]})";
  auto result = load_mesh_text(json, "mesh.json");
  INFO(result.diagnostics.format_all());
  REQUIRE(result.ok());
  CHECK(result.config->virtual_nodes.at(0).spec.listeners.at(0).port_mapping.port == 8080);
}

TEST_CASE("a quoted string where a string belongs is fine, a quoted number where a number belongs is not") {
  auto ok = load_mesh_text("mesh: {name: \"1234\"}\n", "m.yaml");
  REQUIRE(ok.ok());
  CHECK(ok.config->mesh.name == "1234");
  auto bad = load_mesh_text(
      "mesh: {name: m}\nvirtualRouters: [{name: r, spec: {listeners: [{portMapping: {port: '80', protocol: http}}]}}]\n",
      "m.yaml");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.diagnostics.items().at(0).message == "expected an integer, got the string \"80\" (remove the quotes)");
}

TEST_CASE("a missing file is an error naming the file") {
  auto result = load_mesh_file("/nonexistent/mesh.yaml");
  REQUIRE_FALSE(result.ok());
  CHECK(result.diagnostics.items().at(0).format().find("/nonexistent/mesh.yaml: cannot read the mesh file") == 0);
}

TEST_CASE("the model keeps what the file says and defaults stay unset") {
  auto result = load_mesh_file(std::string(MESHD_SOURCE_DIR) + "/examples/canary.yaml");
  REQUIRE(result.ok());
  const auto& cfg = *result.config;
  CHECK(cfg.mesh.name == "my-mesh");
  REQUIRE(cfg.routes.size() == 2);
  const auto& canary = cfg.routes[1];
  CHECK(canary.name == "canary");
  CHECK(canary.priority == 20);
  REQUIRE(canary.http.retry_policy);
  CHECK(canary.http.retry_policy->max_retries == 2);
  CHECK(canary.http.retry_policy->per_retry_timeout.millis().count() == 2000);
  CHECK(canary.http.action.weighted_targets.at(1).weight == 10);
  CHECK(result.sha256.size() == 64);
}

TEST_CASE("access log formats: Envoy command operators, arguments and lengths") {
  using meshd::mesh::LogField;
  std::string error;
  auto t = meshd::mesh::parse_log_template(
      "[%START_TIME(%Y %3f)%] \"%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%\" %RESPONSE_CODE% %RESP(Server):5%%BYTES_SENT%\n",
      error);
  REQUIRE(t);
  CHECK(error.empty());
  REQUIRE(t->size() == 10);
  CHECK((*t)[0].text == "[");
  CHECK((*t)[1].field == LogField::start_time);
  CHECK((*t)[1].text == "%Y %3f");
  CHECK((*t)[2].text == "] \"");
  CHECK((*t)[3].field == LogField::request_header);
  CHECK((*t)[3].header == "x-envoy-original-path");
  CHECK((*t)[3].alternate == ":path");
  CHECK((*t)[5].field == LogField::response_code);
  CHECK((*t)[7].field == LogField::response_header);
  CHECK((*t)[7].header == "server");
  CHECK((*t)[7].max_length == 5);
  CHECK((*t)[8].field == LogField::bytes_sent);  // two operators back to back
  CHECK((*t)[9].text == "\n");
  CHECK(meshd::mesh::numeric(LogField::duration));
  CHECK_FALSE(meshd::mesh::numeric(LogField::upstream_host));
  for (const char* bad : {"%NOPE%", "%REQ%", "%REQ(a b)%", "%REQ(x", "%PROTOCOL(x)%", "%DURATION:0%", "%DURATION",
                          "50%", "%%"}) {
    std::string e;
    CHECK_FALSE(meshd::mesh::parse_log_template(bad, e));
    CHECK_FALSE(e.empty());
  }
}
