#include "proxy/admin_endpoints.hpp"

#include <map>
#include <sstream>

#include "mesh/cluster/endpoints.hpp"
#include "mesh/config/names.hpp"
#include "metrics/collector.hpp"
#include "proxy/json.hpp"
#include "proxy/version.hpp"
#include "proxy/worker.hpp"

namespace meshd::proxy {

namespace {
std::string ms_text(std::chrono::milliseconds d) { return std::to_string(d.count()) + "ms"; }

// The last failed reload, or null (/server_info and /config_dump).
void last_error(Json& j, const PublishedState& st) {
  if (st.last_error.empty()) {
    j.key("last_error").null();
    return;
  }
  j.key("last_error").value(st.last_error);
  j.key("last_error_at").value(st.last_error_at);
}
}  // namespace

metrics::AdminResponse AdminEndpoints::handle(const std::string& method, const std::string& target, bool stats_only) {
  const std::string path = target.substr(0, target.find('?'));
  if (method == "POST" && !stats_only) {
    if (path == "/reload") {
      const auto r = host_.reload_now();
      return {r.ok ? 200 : 400, "text/plain; charset=utf-8", r.message};
    }
    if (path == "/drain") {
      host_.drain_now();  // answered once the drain has started
      return {202, "text/plain; charset=utf-8", "draining\n"};
    }
    return {404, "text/plain; charset=utf-8", "no such admin endpoint\n"};
  }
  if (method != "GET" && method != "HEAD") return {405, "text/plain; charset=utf-8", "use GET\n"};
  if (path == "/ready") {
    if (host_.draining()) return {503, "text/plain; charset=utf-8", "DRAINING\n"};
    return host_.ready() ? metrics::AdminResponse{200, "text/plain; charset=utf-8", "LIVE\n"}
                  : metrics::AdminResponse{503, "text/plain; charset=utf-8", "PRE_INITIALIZING\n"};
  }
  if (path == "/server_info") return {200, "application/json", server_info()};
  if (path == "/metrics" || path == "/stats/prometheus") {
    return {200, "text/plain; version=0.0.4; charset=utf-8", metrics_text()};
  }
  if (path == "/config_dump") return {200, "application/json", config_dump()};
  if (path == "/clusters") return {200, "application/json", clusters()};
  return {404, "text/plain; charset=utf-8", "no such admin endpoint\n"};
}

std::string AdminEndpoints::server_info() {
  Json j;
  j.begin_object();
  j.key("state").value(host_.draining() ? "DRAINING" : "LIVE");
  j.key("version").value(kVersion);
  j.key("node").value(host_.options().node);
  const auto st = host_.state();
  j.key("mesh").value(st->mesh);
  j.key("uptime_seconds").value(static_cast<std::int64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - host_.started()).count()));
  j.key("config_version").value(st->version);
  j.key("loaded_at").value(st->loaded_at);
  last_error(j, *st);
  j.key("workers").value(static_cast<std::int64_t>(host_.worker_count()));
  j.key("listeners").begin_array();
  for (const auto& l : host_.listeners()) {
    const auto space = l.find(' ');
    j.begin_object().key("name").value(l.substr(0, space)).key("address").value(l.substr(space + 1)).end_object();
  }
  j.end_array();
  j.end_object();
  return j.str() + "\n";
}

std::string AdminEndpoints::clusters() {
  auto view = host_.view();
  Json j;
  j.begin_object().key("clusters").begin_array();
  for (std::size_t i = 0; i < view->snap->clusters().size(); ++i) {
    const auto& c = view->snap->clusters()[i];
    j.begin_object();
    j.key("virtual_node").value(c.node_name);
    j.key("port").value(static_cast<std::int64_t>(c.port));
    j.key("discovery").value(c.describe_discovery());
    const auto* ce = i < view->endpoints->size() ? (*view->endpoints)[i].get() : nullptr;
    if (ce != nullptr && !ce->last_error.empty()) j.key("discovery_error").value(ce->last_error);
    j.key("endpoints").begin_array();
    if (ce != nullptr) {
      for (const auto& e : ce->endpoints) {
        j.begin_object();
        j.key("address").value(e->text);
        j.key("healthy").value(e->healthy.load());
        j.key("ejected").value(e->ejected.load());
        j.key("active_requests").value(static_cast<std::int64_t>(e->active_requests.load()));
        j.end_object();
      }
    }
    j.end_array().end_object();
  }
  j.end_array().end_object();
  return j.str() + "\n";
}

std::string AdminEndpoints::config_dump() {
  auto view = host_.view();
  const auto& snap = *view->snap;
  Json j;
  j.begin_object();
  const auto st = host_.state();
  j.key("config_version").value(st->version);
  j.key("sha256").value(st->sha256);
  j.key("loaded_at").value(st->loaded_at);
  last_error(j, *st);
  j.key("mesh_file").value(host_.options().mesh_file);
  j.key("effective").begin_object();
  j.key("mesh").value(snap.config().mesh.name);
  j.key("node").value(snap.node().name);
  j.key("egress_filter").value(std::string(mesh::to_string(snap.egress_filter())));
  const IngressView first = view->ingress.empty() ? IngressView{} : view->ingress.front();
  j.key("app").value(first.app ? first.app->text : std::string());
  j.key("ingress_timeouts").begin_object();
  j.key("per_request").value(ms_text(first.timeouts.per_request));
  j.key("idle").value(ms_text(first.timeouts.idle));
  j.end_object();
  j.key("ingress_listeners").begin_array();
  for (std::size_t i = 0; i < view->ingress.size(); ++i) {
    const auto& in = view->ingress[i];
    j.begin_object();
    j.key("listener_port").value(static_cast<std::int64_t>(in.listener_port));
    j.key("address").value(host_.ingress_address(i));
    j.key("app").value(in.app ? in.app->text : std::string());
    j.key("per_request").value(ms_text(in.timeouts.per_request));
    j.key("idle").value(ms_text(in.timeouts.idle));
    j.key("connection_pool").value(static_cast<std::int64_t>(in.app_limit ? in.app_limit->max_connections() : 0));
    j.end_object();
  }
  j.end_array();
  j.key("limits").begin_object();
  std::istringstream limits(host_.options().limits.describe());
  std::string line;
  while (std::getline(limits, line)) {
    const auto eq = line.find('=');
    j.key(line.substr(0, eq)).value(line.substr(eq + 1));
  }
  j.end_object();
  j.key("virtual_services").begin_array();
  for (const auto& s : snap.services()) {
    j.begin_object();
    j.key("name").value(s.service->name);
    j.key("provider").value(s.provider == mesh::ServiceEntry::Provider::none ? std::string()
                                                                             : s.provider_name);
    j.key("listeners").begin_array();
    if (s.listeners != nullptr) {
      for (const auto& l : *s.listeners) {
        j.begin_object();
        j.key("port").value(static_cast<std::int64_t>(l.port));
        j.key("protocol").value(std::string(mesh::to_string(l.protocol)));
        j.key("routes").begin_array();
        for (const auto& r : l.routes) {
          j.begin_object();
          j.key("name").value(r.name);
          if (r.priority) j.key("priority").value(static_cast<std::int64_t>(*r.priority));
          j.key("match").value(r.match.describe());
          j.key("per_request_timeout").value(ms_text(r.timeouts.per_request));
          j.key("idle_timeout").value(ms_text(r.timeouts.idle));
          j.key("max_retries").value(static_cast<std::int64_t>(r.retry.max_retries));
          j.key("per_try_timeout").value(ms_text(r.retry.per_try_timeout));
          j.key("targets").begin_array();
          for (const auto& t : r.targets) {
            j.begin_object();
            j.key("virtual_node").value(snap.clusters()[t.cluster].node_name);
            j.key("port").value(static_cast<std::int64_t>(snap.clusters()[t.cluster].port));
            j.key("weight").value(static_cast<std::int64_t>(t.weight));
            j.end_object();
          }
          j.end_array().end_object();
        }
        j.end_array().end_object();
      }
    }
    j.end_array().end_object();
  }
  j.end_array();
  j.end_object();
  j.end_object();
  return j.str() + "\n";
}

std::string AdminEndpoints::metrics_text() {
  metrics::Collector collector([this] {
    metrics::Snapshot s;
    s.merged = host_.scrape_workers();
    auto view = host_.view();
    for (std::size_t i = 0; i < view->endpoints->size(); ++i) {
      const auto& ce = (*view->endpoints)[i];
      for (const auto& e : ce->endpoints) {
        s.endpoints.push_back({ce->node, e->text, e->healthy.load(), e->ejected.load()});
      }
    }
    std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> outliers;  // node -> ejections, ejected
    for (std::size_t i = 0; i < view->endpoints->size(); ++i) {
      const auto& ce = (*view->endpoints)[i];
      if (mesh::cluster_listener(view->snap->clusters()[i]) == nullptr ||
          !mesh::cluster_listener(view->snap->clusters()[i])->outlier_detection) {
        continue;
      }
      auto& o = outliers[ce->node];
      o.first = ce->node_state->ejections_total.load();
      for (const auto& e : ce->endpoints) o.second += e->ejected.load() ? 1 : 0;
    }
    for (const auto& [node, o] : outliers) s.outliers.push_back({node, o.first, o.second});
    s.version = kVersion;
    s.mesh = host_.state()->mesh;
    s.config_reloads["success"] = host_.reloads(true);
    s.config_reloads["failure"] = host_.reloads(false);
    s.node = host_.options().node;
    return s;
  });
  return metrics::to_text(collector.Collect());
}


}  // namespace meshd::proxy
