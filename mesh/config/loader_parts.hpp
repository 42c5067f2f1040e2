#pragma once
// The loader's pieces, one per group of resources (internal to mesh/config/).
#include "mesh/config/yaml_reader.hpp"

namespace meshd::mesh::detail {

using yaml::MapReader;
using yaml::Reader;

std::optional<Protocol> read_protocol(Reader& r, const YAML::Node& n, bool allow_tcp = true);
std::optional<PortMapping> read_port_mapping(Reader& r, const YAML::Node& n, bool allow_tcp = true);
std::optional<IpPreference> read_ip_preference(Reader& r, const YAML::Node& n);
std::optional<HttpMethod> read_method(Reader& r, const YAML::Node& n);
std::vector<HeaderMatch> read_header_matches(Reader& r, const YAML::Node& n);
std::vector<QueryParameterMatch> read_query_parameters(Reader& r, const YAML::Node& n);
std::optional<PathMatch> read_path_match(Reader& r, const YAML::Node& n);
HttpTimeout read_http_timeout(Reader& r, const YAML::Node& n);  // {perRequest, idle}
// Compiles a regex with RE2 (full-match semantics) and reports it when it is invalid.
void check_regex(Reader& r, const YAML::Node& n, const std::string& pattern);

void read_virtual_node_spec(Reader& r, const YAML::Node& n, VirtualNodeSpec& out);
void read_virtual_gateway_spec(Reader& r, const YAML::Node& n, VirtualGateway& out);
void read_route_spec(Reader& r, const YAML::Node& n, Route& out);
void read_gateway_route_spec(Reader& r, const YAML::Node& n, GatewayRoute& out);

}  // namespace meshd::mesh::detail
