// The mesh loader and validator on any text: never crash; an accepted file compiles
// for each of its nodes; every diagnostic has a message.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "mesh/compiled/snapshot.hpp"
#include "mesh/config/loader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 64 * 1024) return 0;
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto result = meshd::mesh::load_mesh_text(text, "fuzz.yaml");
  for (const auto& d : result.diagnostics.items()) {
    if (d.message.empty()) std::abort();
  }
  if (!result.ok()) return 0;
  auto config = std::make_shared<const meshd::mesh::MeshConfig>(std::move(*result.config));
  for (const auto& node : config->virtual_nodes) {
    meshd::mesh::Diagnostics diag;
    if (!meshd::mesh::Snapshot::compile(config, node.name, diag)) std::abort();
  }
  return 0;
}
