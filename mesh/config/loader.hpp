#pragma once
// Reads a mesh file: YAML -> MeshConfig, with every error reported at once (SPEC §1).
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "mesh/config/diagnostics.hpp"
#include "mesh/config/model.hpp"

namespace meshd::mesh {

struct LoadResult {
  std::optional<MeshConfig> config;  // set only when there was no error at all
  Diagnostics diagnostics;
  std::string sha256;  // of the bytes read (hex)
  std::chrono::nanoseconds parse_time{0};     // yaml-cpp alone
  std::chrono::nanoseconds validate_time{0};  // typed reading and every check
  bool ok() const { return config.has_value(); }
};

// `display_name` is what error lines start with (the path as given by the user).
LoadResult load_mesh_file(const std::string& path);
LoadResult load_mesh_text(std::string_view text, const std::string& display_name);

}  // namespace meshd::mesh
