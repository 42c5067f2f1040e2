#include "mesh/config/loader.hpp"

#include <openssl/evp.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "mesh/config/loader_parts.hpp"
#include "mesh/config/validate.hpp"

namespace meshd::mesh {

using detail::MapReader;
using detail::Reader;

namespace {

std::string sha256_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 0xf];
  }
  return out;
}

// name (and the reference to the parent, for routes) + spec, for one resource.
template <class F>
void read_item(Reader& r, const YAML::Node& n, std::initializer_list<std::string_view> keys,
               std::string& name, Mark& mark, F&& body) {
  MapReader m(r, n, keys);
  if (!m.ok()) return;
  mark = yaml::mark_of(n);
  m.required("name", [&](const YAML::Node& v) {
    name = r.string(v, 1, 255).value_or("");
    mark = yaml::mark_of(v);
  });
  body(m);
}

void read_mesh(Reader& r, const YAML::Node& n, Mesh& out) {
  MapReader m(r, n, {"name", "spec"});
  m.required("name", [&](const YAML::Node& v) { out.name = r.string(v, 1, 255).value_or(""); });
  m.optional("spec", [&](const YAML::Node& v) {
    MapReader sm(r, v, {"egressFilter", "serviceDiscovery"});
    sm.optional("egressFilter", [&](const YAML::Node& e) {
      MapReader em(r, e, {"type"});
      em.required("type", [&](const YAML::Node& t) {
        out.spec.egress_filter = r.enumeration<EgressFilterType>(
            t, {{"ALLOW_ALL", EgressFilterType::ALLOW_ALL}, {"DROP_ALL", EgressFilterType::DROP_ALL}});
      });
    });
    sm.optional("serviceDiscovery", [&](const YAML::Node& d) {
      MapReader dm(r, d, {"ipPreference"});
      dm.optional("ipPreference",
                  [&](const YAML::Node& p) { out.spec.ip_preference = detail::read_ip_preference(r, p); });
    });
  });
}

void read_config(Reader& r, const YAML::Node& root, MeshConfig& cfg) {
  MapReader top(r, root,
                {"mesh", "virtualNodes", "virtualServices", "virtualRouters", "routes",
                 "virtualGateways", "gatewayRoutes"});
  if (!top.ok()) return;
  top.required("mesh", [&](const YAML::Node& v) { read_mesh(r, v, cfg.mesh); });

  top.optional("virtualNodes", [&](const YAML::Node& v) {
    r.list(v, 0, SIZE_MAX, [&](const YAML::Node& e, std::size_t) {
      VirtualNode& node = cfg.virtual_nodes.emplace_back();
      read_item(r, e, {"name", "spec"}, node.name, node.mark, [&](MapReader& m) {
        m.required("spec", [&](const YAML::Node& s) {
          node.spec_mark = yaml::mark_of(s);
          detail::read_virtual_node_spec(r, s, node.spec);
        });
      });
    });
  });
  top.optional("virtualServices", [&](const YAML::Node& v) {
    r.list(v, 0, SIZE_MAX, [&](const YAML::Node& e, std::size_t) {
      VirtualService& vs = cfg.virtual_services.emplace_back();
      read_item(r, e, {"name", "spec"}, vs.name, vs.mark, [&](MapReader& m) {
        m.required("spec", [&](const YAML::Node& s) {
          MapReader sm(r, s, {"provider"});
          sm.optional("provider", [&](const YAML::Node& p) {
            MapReader pm(r, p, {"virtualNode", "virtualRouter"});
            const int which = pm.one_of({"virtualNode", "virtualRouter"});
            if (which < 0) return;
            VirtualServiceProvider prov;
            prov.kind = which == 0 ? VirtualServiceProvider::Kind::virtual_node
                                   : VirtualServiceProvider::Kind::virtual_router;
            const std::string_view key = which == 0 ? "virtualNode" : "virtualRouter";
            const std::string_view name_key = which == 0 ? "virtualNodeName" : "virtualRouterName";
            pm.optional(key, [&](const YAML::Node& x) {
              MapReader xm(r, x, {name_key});
              xm.required(name_key, [&](const YAML::Node& nm) {
                prov.name = r.string(nm, 1, 255).value_or("");
                prov.mark = yaml::mark_of(nm);
              });
            });
            vs.provider = std::move(prov);
          });
        });
      });
    });
  });
  top.optional("virtualRouters", [&](const YAML::Node& v) {
    r.list(v, 0, SIZE_MAX, [&](const YAML::Node& e, std::size_t) {
      VirtualRouter& vr = cfg.virtual_routers.emplace_back();
      read_item(r, e, {"name", "spec"}, vr.name, vr.mark, [&](MapReader& m) {
        m.required("spec", [&](const YAML::Node& s) {
          MapReader sm(r, s, {"listeners"});
          sm.required("listeners", [&](const YAML::Node& l) {
            r.list(l, 1, SIZE_MAX, [&](const YAML::Node& le, std::size_t) {
              MapReader lm(r, le, {"portMapping"});
              lm.required("portMapping", [&](const YAML::Node& pm) {
                if (auto mapping = detail::read_port_mapping(r, pm)) {
                  vr.listeners.push_back(*mapping);
                  vr.listener_marks.push_back(yaml::mark_of(pm));
                }
              });
            });
          });
        });
      });
    });
  });
  top.optional("routes", [&](const YAML::Node& v) {
    r.list(v, 0, SIZE_MAX, [&](const YAML::Node& e, std::size_t) {
      Route& route = cfg.routes.emplace_back();
      read_item(r, e, {"name", "virtualRouterName", "spec"}, route.name, route.mark, [&](MapReader& m) {
        m.required("virtualRouterName", [&](const YAML::Node& s) {
          route.virtual_router_name = r.string(s, 1, 255).value_or("");
          route.router_mark = yaml::mark_of(s);
        });
        m.required("spec", [&](const YAML::Node& s) { detail::read_route_spec(r, s, route); });
      });
    });
  });
  top.optional("virtualGateways", [&](const YAML::Node& v) {
    r.list(v, 0, SIZE_MAX, [&](const YAML::Node& e, std::size_t) {
      VirtualGateway& gw = cfg.virtual_gateways.emplace_back();
      read_item(r, e, {"name", "spec"}, gw.name, gw.mark, [&](MapReader& m) {
        m.required("spec", [&](const YAML::Node& s) { detail::read_virtual_gateway_spec(r, s, gw); });
      });
    });
  });
  top.optional("gatewayRoutes", [&](const YAML::Node& v) {
    r.list(v, 0, SIZE_MAX, [&](const YAML::Node& e, std::size_t) {
      GatewayRoute& gr = cfg.gateway_routes.emplace_back();
      read_item(r, e, {"name", "virtualGatewayName", "spec"}, gr.name, gr.mark, [&](MapReader& m) {
        m.required("virtualGatewayName", [&](const YAML::Node& s) {
          gr.virtual_gateway_name = r.string(s, 1, 255).value_or("");
          gr.gateway_mark = yaml::mark_of(s);
        });
        m.required("spec", [&](const YAML::Node& s) { detail::read_gateway_route_spec(r, s, gr); });
      });
    });
  });
}

}  // namespace

LoadResult load_mesh_text(std::string_view text, const std::string& display_name) {
  LoadResult result;
  result.sha256 = sha256_hex(text);
  const auto t0 = std::chrono::steady_clock::now();
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    const auto line = e.mark.line >= 0 ? static_cast<std::uint32_t>(e.mark.line + 1) : 0;
    const auto col = e.mark.column >= 0 ? static_cast<std::uint32_t>(e.mark.column + 1) : 0;
    result.diagnostics.add({display_name, line, col, "", "YAML syntax error: " + e.msg});
    return result;
  }
  const auto t1 = std::chrono::steady_clock::now();
  result.parse_time = t1 - t0;

  if (!root.IsDefined() || root.IsNull()) {
    result.diagnostics.add({display_name, 1, 1, "", "the file is empty; a mesh file needs at least 'mesh'"});
    return result;
  }
  MeshConfig cfg;
  Reader reader(result.diagnostics, display_name);
  read_config(reader, root, cfg);
  // Cross-references only make sense on a structurally valid file, but they are
  // checked anyway so that one run reports as much as it can.
  validate_references(cfg, display_name, result.diagnostics);
  result.validate_time = std::chrono::steady_clock::now() - t1;
  result.diagnostics.sort();
  if (result.diagnostics.empty()) result.config = std::move(cfg);
  return result;
}

LoadResult load_mesh_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    LoadResult result;
    result.diagnostics.add({path, 0, 0, "", "cannot read the mesh file: " + std::string(std::strerror(errno))});
    return result;
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  return load_mesh_text(buf.str(), path);
}

const VirtualNode* MeshConfig::find_node(std::string_view name) const {
  for (const auto& n : virtual_nodes) {
    if (n.name == name) return &n;
  }
  return nullptr;
}
const VirtualService* MeshConfig::find_service(std::string_view name) const {
  for (const auto& s : virtual_services) {
    if (s.name == name) return &s;
  }
  return nullptr;
}
const VirtualRouter* MeshConfig::find_router(std::string_view name) const {
  for (const auto& r : virtual_routers) {
    if (r.name == name) return &r;
  }
  return nullptr;
}
const VirtualGateway* MeshConfig::find_gateway(std::string_view name) const {
  for (const auto& g : virtual_gateways) {
    if (g.name == name) return &g;
  }
  return nullptr;
}

}  // namespace meshd::mesh
