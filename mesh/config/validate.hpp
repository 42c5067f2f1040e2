#pragma once
#include <string>

#include "mesh/config/diagnostics.hpp"
#include "mesh/config/model.hpp"

namespace meshd::mesh {

// Cross-resource checks (references, duplicate names, ports); the loader calls it.
void validate_references(const MeshConfig& cfg, const std::string& file, Diagnostics& diag);

}  // namespace meshd::mesh
