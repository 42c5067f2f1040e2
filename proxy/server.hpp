#pragma once
// `meshd run`: loads the mesh, binds the listeners, starts the workers and the admin
// server, runs discovery on the main thread and drains on SIGTERM or POST /drain.
#include "proxy/run_options.hpp"

namespace meshd::proxy {

// Returns the process exit code (SPEC §2).
int run_server(const RunOptions& options);

}  // namespace meshd::proxy
