#pragma once
// The mesh file's spelling of enum values, for messages, dumps and `meshd route`.
#include <string_view>

#include "mesh/config/model.hpp"

namespace meshd::mesh {

std::string_view to_string(Protocol p);
std::string_view route_key(Protocol p);  // httpRoute, http2Route, grpcRoute, tcpRoute
std::string_view to_string(EgressFilterType t);
std::string_view to_string(DnsResponseType t);
std::string_view to_string(IpPreference p);
std::string_view to_string(HttpMethod m);
std::string_view to_string(LbPolicy p);
std::string_view to_string(TlsMode m);

}  // namespace meshd::mesh
