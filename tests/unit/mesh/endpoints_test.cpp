// Discovery on a fake resolver: LOADBALANCER and ENDPOINTS answers, SERVFAIL keeps the
// last answer, NXDOMAIN drops it, endpoint state survives re-resolution.
#include <netinet/in.h>

#include <catch2/catch.hpp>
#include <map>

#include "mesh/cluster/endpoints.hpp"
#include "mesh/config/loader.hpp"

using namespace meshd;

namespace {

class FakeResolver : public net::Resolver {
 public:
  std::map<std::string, net::DnsAnswer> answers;
  std::vector<std::pair<std::string, int>> asked;
  void resolve(const std::vector<std::string>& names, int family,
               std::function<void(const std::string&, net::DnsAnswer)> done) override {
    for (const auto& n : names) {
      asked.emplace_back(n, family);
      auto it = answers.find(n);
      done(n, it == answers.end() ? net::DnsAnswer{} : it->second);
    }
  }
};

net::DnsAnswer ok(std::vector<const char*> ips) {
  net::DnsAnswer a;
  a.status = net::DnsAnswer::Status::ok;
  for (auto ip : ips) a.addresses.push_back(*net::parse_ip(ip));
  return a;
}

std::shared_ptr<const mesh::Snapshot> snapshot() {
  auto loaded = mesh::load_mesh_text(R"(
mesh: {name: m, spec: {serviceDiscovery: {ipPreference: IPv4_ONLY}}}
virtualNodes:
  - name: client
    spec:
      backends:
        - virtualService: {virtualServiceName: lb.local}
        - virtualService: {virtualServiceName: all.local}
        - virtualService: {virtualServiceName: fixed.local}
  - name: lb
    spec:
      listeners: [{portMapping: {port: 80, protocol: http}}]
      serviceDiscovery: {dns: {hostname: lb.test}}
  - name: all
    spec:
      listeners: [{portMapping: {port: 81, protocol: http}}]
      serviceDiscovery: {awsCloudMap: {namespaceName: ns, serviceName: all}}
  - name: fixed
    spec:
      listeners: [{portMapping: {port: 82, protocol: http}}]
      serviceDiscovery: {static: {endpoints: [{address: 10.0.0.9}, {address: 10.0.0.10, port: 9000}]}}
virtualServices:
  - {name: lb.local, spec: {provider: {virtualNode: {virtualNodeName: lb}}}}
  - {name: all.local, spec: {provider: {virtualNode: {virtualNodeName: all}}}}
  - {name: fixed.local, spec: {provider: {virtualNode: {virtualNodeName: fixed}}}}
)",
                                     "d.yaml");
  INFO(loaded.diagnostics.format_all());
  REQUIRE(loaded.ok());
  mesh::Diagnostics diag;
  return mesh::Snapshot::compile(std::make_shared<const mesh::MeshConfig>(std::move(*loaded.config)), "client", diag);
}

const mesh::ClusterEndpoints& cluster(const mesh::EndpointRegistry& r, const mesh::Snapshot& s, const std::string& node) {
  for (std::size_t i = 0; i < s.clusters().size(); ++i) {
    if (s.clusters()[i].node_name == node) return *(*r.table())[i];
  }
  FAIL("no cluster " << node);
  throw 0;
}

}  // namespace

TEST_CASE("static endpoints are known at once; DNS ones after the first answer") {
  auto snap = snapshot();
  mesh::EndpointRegistry registry;
  registry.set_snapshot(snap);
  const auto& fixed = cluster(registry, *snap, "fixed");
  REQUIRE(fixed.endpoints.size() == 2);
  CHECK(fixed.endpoints[0]->text == "10.0.0.9:82");
  CHECK(fixed.endpoints[1]->text == "10.0.0.10:9000");
  CHECK_FALSE(registry.all_answered());

  FakeResolver dns;
  dns.answers["lb.test"] = ok({"10.1.0.1", "10.1.0.2"});
  dns.answers["all.ns"] = ok({"10.2.0.1", "10.2.0.2", "10.2.0.3"});
  bool done = false;
  registry.refresh(dns, [&] { done = true; });
  CHECK(done);
  CHECK(registry.all_answered());
  CHECK(cluster(registry, *snap, "lb").endpoints.size() == 1);  // LOADBALANCER: one address
  CHECK(cluster(registry, *snap, "all").endpoints.size() == 3);  // Cloud Map: every address
  for (const auto& [name, family] : dns.asked) CHECK(family == AF_INET);  // IPv4_ONLY from the mesh
}

TEST_CASE("SERVFAIL keeps the last answer, NXDOMAIN drops it, state survives") {
  auto snap = snapshot();
  mesh::EndpointRegistry registry;
  registry.set_snapshot(snap);
  FakeResolver dns;
  dns.answers["all.ns"] = ok({"10.2.0.1", "10.2.0.2"});
  dns.answers["lb.test"] = ok({"10.1.0.1"});
  registry.refresh(dns, [] {});
  auto first = cluster(registry, *snap, "all").endpoints[0];
  first->healthy = false;  // state a health checker would have set

  dns.answers["all.ns"] = ok({"10.2.0.2", "10.2.0.1", "10.2.0.7"});
  registry.refresh(dns, [] {});
  const auto& again = cluster(registry, *snap, "all");
  REQUIRE(again.endpoints.size() == 3);
  bool kept = false;
  for (const auto& e : again.endpoints) kept = kept || (e.get() == first.get() && !e->healthy);
  CHECK(kept);

  net::DnsAnswer servfail;
  servfail.status = net::DnsAnswer::Status::failure;
  servfail.error = "Server failure";
  dns.answers["all.ns"] = servfail;
  registry.refresh(dns, [] {});
  CHECK(cluster(registry, *snap, "all").endpoints.size() == 3);
  CHECK(cluster(registry, *snap, "all").last_error.find("keeping the last answer") != std::string::npos);

  net::DnsAnswer nx;
  nx.status = net::DnsAnswer::Status::nxdomain;
  nx.error = "Domain name not found";
  dns.answers["all.ns"] = nx;
  registry.refresh(dns, [] {});
  CHECK(cluster(registry, *snap, "all").endpoints.empty());
}

TEST_CASE("a new snapshot (a reload) keeps the endpoints that remain, with their state") {
  auto snap = snapshot();
  mesh::EndpointRegistry registry;
  registry.set_snapshot(snap);
  FakeResolver dns;
  dns.answers["lb.test"] = ok({"10.1.0.1"});
  dns.answers["all.ns"] = ok({"10.2.0.1"});
  registry.refresh(dns, [] {});
  auto fixed = cluster(registry, *snap, "fixed").endpoints.at(0);
  auto all = cluster(registry, *snap, "all").endpoints.at(0);
  fixed->healthy = false;
  fixed->ejected = true;
  fixed->consecutive_5xx = 4;
  auto reloaded = snapshot();  // the same file compiled again: new snapshot objects
  REQUIRE(reloaded != snap);
  registry.set_snapshot(reloaded);
  const auto& fixed_after = cluster(registry, *reloaded, "fixed").endpoints.at(0);
  CHECK(fixed_after.get() == fixed.get());  // the same endpoint, not a copy
  CHECK_FALSE(fixed_after->healthy);
  CHECK(fixed_after->ejected);
  CHECK(fixed_after->consecutive_5xx == 4);
  // DNS answers of nodes that remain are kept until the next resolution.
  CHECK(cluster(registry, *reloaded, "all").endpoints.at(0).get() == all.get());
  CHECK(registry.all_answered());
}
