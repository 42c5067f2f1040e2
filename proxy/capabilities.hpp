#pragma once
// What this build can enforce. `meshd run` refuses a mesh whose parts used by this
// node (its own listeners, and every service, router, route and node it can reach
// through its backends) ask for more, with one line per PATH (SPEC §1): it never
// serves a weaker configuration than the file says.
#include <string>
#include <vector>

#include "mesh/snapshot.hpp"

namespace meshd::proxy {

struct Unsupported {
  std::string path;    // e.g. virtualNodes[2].spec.listeners[0].tls
  std::string reason;
};

std::vector<Unsupported> unsupported_features(const mesh::Snapshot& snap);

}  // namespace meshd::proxy
