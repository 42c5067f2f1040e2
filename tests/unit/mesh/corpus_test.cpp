// The App Mesh specs AWS's own examples use (tests/data/appmesh-examples/cli, MIT-0,
// see INDEX.md there): each is wrapped in a mesh with minimal resources for what it refers to and
// must load, unless it needs the AWS API (ACM, Cloud Map attributes, SDS), in which
// case it must be rejected with exactly that reason and nothing else.
#include <yaml-cpp/yaml.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "mesh/config/loader.hpp"

namespace fs = std::filesystem;

namespace {

const fs::path kDir = fs::path(MESHD_SOURCE_DIR) / "tests/data/appmesh-examples";

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// INDEX.md rows: | cli/NNN-...json | source | form | kind | name(s) | ...
std::map<std::string, std::pair<std::string, std::string>> index_rows() {
  std::map<std::string, std::pair<std::string, std::string>> rows;
  std::istringstream in(read(kDir / "INDEX.md"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("| cli/", 0) != 0) continue;
    std::vector<std::string> cells;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, '|')) {
      while (!cell.empty() && cell.front() == ' ') cell.erase(0, 1);
      while (!cell.empty() && cell.back() == ' ') cell.pop_back();
      cells.push_back(cell);
    }
    rows[cells.at(1)] = {cells.at(4), cells.at(5)};
  }
  return rows;
}

std::string indent(const std::string& text, int n) {
  std::string pad(static_cast<std::size_t>(n), ' '), out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out += pad + line + "\n";
  return out;
}

bool has_key(const YAML::Node& n, const std::set<std::string>& keys) {
  if (n.IsMap()) {
    for (const auto& kv : n) {
      if (keys.count(kv.first.Scalar())) return true;
      if (has_key(kv.second, keys)) return true;
    }
  } else if (n.IsSequence()) {
    for (const auto& e : n) {
      if (has_key(e, keys)) return true;
    }
  }
  return false;
}

std::string protocol_of(const std::string& route_key) {
  if (route_key == "http2Route") return "http2";
  if (route_key == "grpcRoute") return "grpc";
  if (route_key == "tcpRoute") return "tcp";
  return "http";
}

std::string referenced_node(const std::string& name, const std::string& protocol, int port) {
  return "  - name: \"" + name + "\"\n    spec: {listeners: [{portMapping: {port: " + std::to_string(port) +
         ", protocol: " + protocol + "}}], serviceDiscovery: {dns: {hostname: referenced.local}}}\n";
}

// A mesh file holding the spec plus minimal resources for everything it references.
std::string wrap(const std::string& kind, const std::string& name, const std::string& json, const YAML::Node& spec) {
  std::string out = "mesh: {name: corpus}\n";
  const std::string body = "    spec:\n" + indent(json, 6);
  if (kind == "Mesh") return "mesh:\n  name: \"" + name + "\"\n  spec:\n" + indent(json, 4);
  if (kind == "VirtualNode") {
    out += "virtualNodes:\n  - name: \"" + name + "\"\n" + body;
    if (spec["backends"]) {
      out += "virtualServices:\n";
      for (const auto& b : spec["backends"]) {
        out += "  - {name: \"" + b["virtualService"]["virtualServiceName"].Scalar() + "\", spec: {}}\n";
      }
    }
  } else if (kind == "VirtualService") {
    out += "virtualServices:\n  - name: \"" + name + "\"\n" + body;
    const auto provider = spec["provider"];
    if (provider && provider["virtualNode"]) {
      out += "virtualNodes:\n" + referenced_node(provider["virtualNode"]["virtualNodeName"].Scalar(), "http", 80);
    } else if (provider && provider["virtualRouter"]) {
      out += "virtualRouters:\n  - {name: \"" + provider["virtualRouter"]["virtualRouterName"].Scalar() +
             "\", spec: {listeners: [{portMapping: {port: 80, protocol: http}}]}}\n";
    }
  } else if (kind == "VirtualRouter") {
    out += "virtualRouters:\n  - name: \"" + name + "\"\n" + body;
  } else if (kind == "VirtualGateway") {
    out += "virtualGateways:\n  - name: \"" + name + "\"\n" + body;
  } else if (kind == "Route") {
    std::string key;
    for (const auto& kv : spec) {
      if (kv.first.Scalar().find("Route") != std::string::npos) key = kv.first.Scalar();
    }
    const auto route = spec[key];
    const std::string protocol = protocol_of(key);
    const int port = route["match"] && route["match"]["port"] ? route["match"]["port"].as<int>() : 80;
    out += "virtualRouters:\n  - {name: router, spec: {listeners: [{portMapping: {port: " + std::to_string(port) +
           ", protocol: " + protocol + "}}]}}\n";
    out += "routes:\n  - name: \"" + name + "\"\n    virtualRouterName: router\n" + body;
    out += "virtualNodes:\n";
    std::set<std::string> seen;
    for (const auto& t : route["action"]["weightedTargets"]) {
      const auto target = t["virtualNode"].Scalar();
      if (seen.insert(target).second) out += referenced_node(target, protocol, t["port"] ? t["port"].as<int>() : 80);
    }
  } else if (kind == "GatewayRoute") {
    std::string key;
    for (const auto& kv : spec) {
      if (kv.first.Scalar().find("Route") != std::string::npos) key = kv.first.Scalar();
    }
    const auto route = spec[key];
    const int port = route["match"] && route["match"]["port"] ? route["match"]["port"].as<int>() : 8080;
    out += "virtualGateways:\n  - {name: gateway, spec: {listeners: [{portMapping: {port: " + std::to_string(port) +
           ", protocol: " + protocol_of(key) + "}}]}}\n";
    out += "gatewayRoutes:\n  - name: \"" + name + "\"\n    virtualGatewayName: gateway\n" + body;
    out += "virtualServices:\n  - {name: \"" +
           route["action"]["target"]["virtualService"]["virtualServiceName"].Scalar() + "\", spec: {}}\n";
  }
  return out;
}

bool documented_reason(const std::string& message) {
  return message.find("need the AWS API") != std::string::npos ||
         message.find("needs the AWS API") != std::string::npos ||
         message.find("need the Cloud Map API") != std::string::npos ||
         message.find("secret discovery service") != std::string::npos;
}

}  // namespace

TEST_CASE("AWS's own App Mesh specs load, or are rejected only for needing the AWS API") {
  const auto rows = index_rows();
  REQUIRE(rows.size() == 106);
  int accepted = 0, rejected = 0;
  for (const auto& [file, kind_name] : rows) {
    const auto& [kind, name] = kind_name;
    const std::string json = read(kDir / file);
    const YAML::Node spec = YAML::Load(json);
    const std::string mesh = wrap(kind, name, json, spec);
    auto result = meshd::mesh::load_mesh_text(mesh, file);
    INFO(file << " (" << kind << " " << name << ")\n" << mesh << "\n" << result.diagnostics.format_all());
    const bool needs_aws = has_key(spec, {"acm", "sds"}) ||
                           (spec["serviceDiscovery"] && spec["serviceDiscovery"]["awsCloudMap"] &&
                            spec["serviceDiscovery"]["awsCloudMap"]["attributes"]);
    if (needs_aws) {
      ++rejected;
      REQUIRE_FALSE(result.ok());
      for (const auto& d : result.diagnostics.items()) CHECK(documented_reason(d.message));
    } else {
      ++accepted;
      CHECK(result.ok());
    }
  }
  // docs/compatibility.md reports these counts.
  CHECK(accepted == 97);
  CHECK(rejected == 9);
}
