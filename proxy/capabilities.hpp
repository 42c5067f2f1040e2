#pragma once
// What this build can enforce. `meshd run` refuses a mesh whose parts used by this
// node ask for more, with one line per PATH (SPEC §1): it never serves a weaker
// configuration than the file says. The parts used by a node are its own listeners
// and client policies, every virtual router it reaches through its backends (their
// listeners and routes), and the listener of every node it may call (its protocol,
// TLS mode and health check). Parts of a shared mesh file that this node never uses
// are not checked, so the same file serves every sidecar. docs/operations.md
// ("What this build refuses") lists every refusal with the issue that lifts it.
#include <string>
#include <vector>

#include "mesh/compiled/snapshot.hpp"

namespace meshd::proxy {

struct Unsupported {
  std::string path;    // e.g. virtualNodes[2].spec.listeners[0].tls
  std::string reason;  // what is missing, and the issue that brings it
};

std::vector<Unsupported> unsupported_features(const mesh::Snapshot& snap);

}  // namespace meshd::proxy
