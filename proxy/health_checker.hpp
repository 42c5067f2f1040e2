#pragma once
// Active health checks (App Mesh listener healthCheck), run on the main thread for
// every endpoint this sidecar may call, on the client adapters requests use: http
// (GET path over HTTP/1.1; 200 passes), http2 (GET path over h2c; 2xx passes), grpc
// (grpc.health.v1.Health/Check with an empty service name over h2c; SERVING with
// grpc-status 0 passes; SPEC §7) and tcp (connect). Each endpoint is checked at once
// when it appears, then every intervalMillis plus up to 10 % jitter, each probe
// limited to timeoutMillis; one coroutine per endpoint. Results go through
// mesh::HealthState and land in the endpoint's `healthy` atomic.
#include <map>
#include <memory>
#include <string>

#include "mesh/cluster/endpoints.hpp"
#include "mesh/compiled/snapshot.hpp"
#include "proxy/io.hpp"

namespace meshd::proxy {

class HealthChecker {
 public:
  explicit HealthChecker(asio::io_context& ioc);
  ~HealthChecker();
  // The endpoints to check: new ones start, removed ones stop, others keep their state.
  void update(const mesh::Snapshot& snap, const mesh::EndpointTable& table);
  // Every endpoint that needs checking has had a first result (for /ready).
  bool first_round_done() const;

 private:
  struct Target;
  struct Verdict {
    bool pass = false;
    std::string why;  // for a failure
  };
  static awaitable<void> run(std::shared_ptr<Target> t);
  static awaitable<Verdict> probe(Target& t);
  static awaitable<Verdict> probe_http2(Target& t, bool grpc);
  static void record(Target& t, const Verdict& v);

  asio::io_context& ioc_;
  std::map<const mesh::Endpoint*, std::shared_ptr<Target>> targets_;
};

}  // namespace meshd::proxy
