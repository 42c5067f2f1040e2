#!/usr/bin/env python3
"""Resilience of `meshd run` (issue 4): health checks, outlier ejection, retries that
move to a live endpoint, the retry budget, timeouts under failure, the local app's
connection-pool limit, the rate limit and load-balancing policies."""
import argparse
import concurrent.futures
import json
import os
import shutil
import sys
import tempfile
import time
import unittest

import harness
from harness import Meshd, Upstream, header, http_request


def mesh(endpoints, listener_extra="", lb="", retry="", route_timeout=""):
    eps = ", ".join(f"{{address: 127.0.0.1, port: {p}}}" for p in endpoints)
    return f"""
mesh: {{name: m}}
virtualNodes:
  - name: client
    spec:
      backends: [{{virtualService: {{virtualServiceName: b.local}}}}]
  - name: b
    spec:
      listeners:
        - portMapping: {{port: 8080, protocol: http}}
          {listener_extra}
      serviceDiscovery: {{static: {{endpoints: [{eps}]}}}}
      {lb}
virtualServices:
  - {{name: b.local, spec: {{provider: {{virtualRouter: {{virtualRouterName: r}}}}}}}}
virtualRouters:
  - {{name: r, spec: {{listeners: [{{portMapping: {{port: 8080, protocol: http}}}}]}}}}
routes:
  - name: all
    virtualRouterName: r
    spec:
      httpRoute:
        match: {{prefix: /}}
        action: {{weightedTargets: [{{virtualNode: b, weight: 1}}]}}
        {retry}
        {route_timeout}
"""


class Base(unittest.TestCase):
    def setUp(self):
        self.a = Upstream("a")
        self.b = Upstream("b")
        self.meshes = []

    def tearDown(self):
        for m in self.meshes:
            m.stop_and_check(self)
        self.a.close()
        self.b.close()

    def start(self, text, node="client", **kw):
        m = Meshd(text, node, **kw)
        self.meshes.append(m)
        return m

    def get(self, m, path="/", headers=None):
        h = {"Host": "b.local"}
        h.update(headers or {})
        return http_request("127.0.0.1", m.port("egress"), "GET", path, headers=h)

    def clusters(self, m):
        return json.loads(m.admin("/clusters")[2])["clusters"][0]["endpoints"]


class HealthChecks(Base):
    HC = ("healthCheck: {protocol: http, path: /health, healthyThreshold: 2, unhealthyThreshold: 2, "
          "timeoutMillis: 2000, intervalMillis: 5000}")

    def test_unhealthy_endpoints_get_no_traffic_until_they_pass(self):
        self.b.health_status = 503
        m = self.start(mesh([self.a.port, self.b.port], self.HC))
        self.assertTrue(m.wait_ready())  # waits for the first round
        for _ in range(20):
            s, hs, _ = self.get(m)
            self.assertEqual((s, header(hs, "X-Upstream")), (200, "a"))
        eps = {e["address"]: e["healthy"] for e in self.clusters(m)}
        self.assertEqual(eps, {f"127.0.0.1:{self.a.port}": True, f"127.0.0.1:{self.b.port}": False})
        self.assertEqual(m.metric("meshd_endpoint_healthy", endpoint=f"127.0.0.1:{self.b.port}"), 0)
        self.assertEqual(m.metric("meshd_endpoint_healthy", endpoint=f"127.0.0.1:{self.a.port}"), 1)
        self.b.health_status = 200  # the next check (5 s + jitter) makes it usable
        deadline = time.time() + 9
        seen = set()
        while time.time() < deadline and "b" not in seen:
            seen.add(header(self.get(m)[1], "X-Upstream"))
            time.sleep(0.1)
        self.assertIn("b", seen)
        out = m.stdout()
        self.assertIn("meshd: health check: node b endpoint 127.0.0.1:%d is unhealthy (HTTP 503)" % self.b.port, out)
        self.assertIn("meshd: health check: node b endpoint 127.0.0.1:%d is healthy" % self.b.port, out)
        hc = [r for r in self.b.requests if r["path"] == "/health"]
        self.assertGreaterEqual(len(hc), 2)
        self.assertEqual(header(hc[0]["headers"], "User-Agent"), "meshd-health-check")

    def test_panic_threshold_when_no_endpoint_passes(self):
        self.a.health_status = 500
        self.b.health_status = 500
        m = self.start(mesh([self.a.port, self.b.port], self.HC))
        self.assertTrue(m.wait_ready())
        seen = {header(self.get(m)[1], "X-Upstream") for _ in range(20)}
        self.assertEqual(seen, {"a", "b"})  # fewer than half usable: spread over all

    def test_a_check_that_does_not_answer_in_time_fails(self):
        self.b.health_delay = 4  # /health answers after 4 s; timeoutMillis is 2000 (App Mesh's minimum)
        m = self.start(mesh([self.a.port, self.b.port], self.HC))
        self.assertTrue(m.wait_ready())  # the timed-out check ends the first round
        eps = {e["address"]: e["healthy"] for e in self.clusters(m)}
        self.assertEqual(eps, {f"127.0.0.1:{self.a.port}": True, f"127.0.0.1:{self.b.port}": False})
        self.assertTrue(any(r["path"] == "/health" for r in self.b.requests))  # it was asked, not refused
        for _ in range(10):
            self.assertEqual(header(self.get(m)[1], "X-Upstream"), "a")

    def test_tcp_health_check(self):
        hc = self.HC.replace("protocol: http, path: /health", "protocol: tcp")
        m = self.start(mesh([self.a.port, 1], hc))  # nothing listens on port 1
        self.assertTrue(m.wait_ready())
        eps = {e["address"]: e["healthy"] for e in self.clusters(m)}
        self.assertEqual(eps, {f"127.0.0.1:{self.a.port}": True, "127.0.0.1:1": False})
        for _ in range(10):
            self.assertEqual(self.get(m)[0], 200)


class Outliers(Base):
    OD = ("outlierDetection: {maxServerErrors: 3, interval: {value: 1, unit: s}, "
          "baseEjectionDuration: {value: 30, unit: s}, maxEjectionPercent: 50}")

    def test_consecutive_5xx_eject_the_endpoint(self):
        self.a.force_status = 500
        m = self.start(mesh([self.a.port, self.b.port], self.OD))
        statuses = [self.get(m)[0] for _ in range(8)]
        self.assertEqual(statuses.count(500), 3, statuses)  # then a is out
        time.sleep(0.3)
        for _ in range(20):
            s, hs, _ = self.get(m)
            self.assertEqual((s, header(hs, "X-Upstream")), (200, "b"))
        ejected = {e["address"]: e["ejected"] for e in self.clusters(m)}
        self.assertTrue(ejected[f"127.0.0.1:{self.a.port}"])
        self.assertFalse(ejected[f"127.0.0.1:{self.b.port}"])
        self.assertEqual(m.metric("meshd_outlier_ejections_total", target_virtual_node="b"), 1)
        self.assertEqual(m.metric("meshd_outlier_ejected_endpoints", target_virtual_node="b"), 1)
        self.assertRegex(m.stdout(), r"meshd: outlier detection: node b endpoint 127\.0\.0\.1:%d ejected for 30000 ms "
                                     r"after \d+ server errors in a row \(ejection 1\)" % self.a.port)

    def test_ejection_survives_a_reload(self):
        # Endpoints that remain after a reload keep their state: an ejected one stays
        # out (a fresh endpoint would be usable at once).
        self.a.force_status = 500
        text = mesh([self.a.port, self.b.port], self.OD)
        m = self.start(text)
        for _ in range(6):
            self.get(m)
        time.sleep(0.3)
        self.assertTrue({e["address"]: e["ejected"] for e in self.clusters(m)}[f"127.0.0.1:{self.a.port}"])
        with open(m.mesh_path, "w") as f:
            f.write(text.replace("prefix: /}", "prefix: /, headers: [{name: x-any, invert: true, match: {exact: x}}]}"))
        status, _, body = m.admin("/reload", method="POST")
        self.assertEqual(status, 200, body)
        self.assertIn(b"config_version 2", body)
        self.assertTrue({e["address"]: e["ejected"] for e in self.clusters(m)}[f"127.0.0.1:{self.a.port}"])
        for _ in range(10):
            self.assertEqual(header(self.get(m)[1], "X-Upstream"), "b")

    def test_at_most_the_percentage(self):
        self.a.force_status = 500
        self.b.force_status = 500
        m = self.start(mesh([self.a.port, self.b.port], self.OD))
        for _ in range(12):
            self.get(m)
        time.sleep(0.3)
        self.assertEqual(m.metric("meshd_outlier_ejected_endpoints", target_virtual_node="b"), 1)


class Retries(Base):
    def test_retries_move_to_a_live_endpoint(self):
        # One endpoint refuses connections; App Mesh's default policy retries connect
        # failures on another endpoint.
        m = self.start(mesh([1, self.a.port]))
        for _ in range(20):
            self.assertEqual(self.get(m)[0], 200)
        self.assertGreater(m.metric("meshd_upstream_retries_total"), 0)

    def test_retry_storm_is_held_back_by_the_budget(self):
        self.a.force_status = 503
        retry = ("retryPolicy: {maxRetries: 10, perRetryTimeout: {value: 2, unit: s}, httpRetryEvents: [gateway-error], "
                 "backoff: {baseInterval: {value: 20, unit: ms}, maxInterval: {value: 20, unit: ms}}, "
                 "budget: {percent: 0, minConcurrent: 1}}")
        m = self.start(mesh([self.a.port], retry=retry), workers=2)
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            results = list(pool.map(lambda _: self.get(m)[0], range(20)))
        self.assertEqual(results, [503] * 20)
        attempts = len(self.a.requests)
        # Without the budget: 20 × 11 = 220 attempts. With at most one retry in flight:
        self.assertLess(attempts, 110, attempts)
        self.assertGreater(attempts, 20)

    def test_only_a_body_kept_whole_is_retried(self):
        # The first 64 KiB of a body are kept for retries (retry_buffer_bytes); a longer
        # request streams through and is not retried: its 503 goes back.
        self.a.force_status = 503
        retry = "retryPolicy: {maxRetries: 2, perRetryTimeout: {value: 2, unit: s}, httpRetryEvents: [gateway-error]}"
        m = self.start(mesh([self.a.port], retry=retry))
        for path, size, attempts in (("/kept", 64 * 1024, 3), ("/streamed", 64 * 1024 + 1, 1)):
            s, _, _ = http_request("127.0.0.1", m.port("egress"), "POST", path, headers={"Host": "b.local"},
                                   body=b"x" * size)
            self.assertEqual(s, 503, path)
            got = [r["body_len"] for r in self.a.requests if r["path"] == path]
            self.assertEqual(got, [size] * attempts, path)
        self.assertEqual(m.metric("meshd_upstream_retries_total"), 2)

    def test_backoff_spaces_retries(self):
        self.a.force_status = 503
        retry = ("retryPolicy: {maxRetries: 3, perRetryTimeout: {value: 2, unit: s}, httpRetryEvents: [gateway-error], "
                 "backoff: {baseInterval: {value: 100, unit: ms}, maxInterval: {value: 100, unit: ms}}}")
        m = self.start(mesh([self.a.port], retry=retry))
        t0 = time.time()
        s, hs, _ = self.get(m)
        self.assertEqual(s, 503)
        self.assertEqual(len(self.a.requests), 4)
        self.assertLess(time.time() - t0, 2)


class Timeouts(Base):
    def test_slow_head_and_slow_body_are_abandoned(self):
        m = self.start(mesh([self.a.port], route_timeout="timeout: {perRequest: {value: 400, unit: ms}}",
                            retry="retryPolicy: {maxRetries: 0, perRetryTimeout: {value: 1, unit: s}, "
                                  "httpRetryEvents: [server-error]}"))
        s, hs, _ = self.get(m, "/sleep/2000")
        self.assertEqual((s, header(hs, "x-meshd-error")), (504, "upstream_timeout"))
        before = self.a.connections
        with self.assertRaises((ConnectionError, OSError)):
            self.get(m, "/slow-body")  # the head went out: the client connection is reset
        self.assertGreaterEqual(m.metric("meshd_upstream_timeouts_total"), 2)
        s, _, _ = self.get(m, "/after")
        self.assertEqual(s, 200)
        self.assertGreater(self.a.connections, before)  # timed-out connections are never reused


class ListenerLimits(Base):
    def test_connection_pool_overflow(self):
        text = mesh([self.a.port], "connectionPool: {http: {maxConnections: 1, maxPendingRequests: 1}}")
        m = self.start(text, node="b", app_port=self.a.port)

        def call(_):
            s, hs, _ = http_request("127.0.0.1", m.port("ingress"), "GET", "/sleep/600", headers={"Host": "b"})
            return s, header(hs, "x-meshd-error")
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            results = sorted(pool.map(call, range(3)), key=lambda r: r[0])
        self.assertEqual(results, [(200, None), (200, None), (503, "overflow")])
        self.assertEqual(m.metric("meshd_upstream_overflow_total", target_virtual_node="b"), 1)

    def test_rate_limit_429_with_retry_after(self):
        text = mesh([self.a.port], "rateLimit: {requestsPerUnit: 3, unit: MINUTE}")
        m = self.start(text, node="b", app_port=self.a.port)
        results = [http_request("127.0.0.1", m.port("ingress"), "GET", "/", headers={"Host": "b"}) for _ in range(5)]
        self.assertEqual([r[0] for r in results], [200, 200, 200, 429, 429])
        self.assertEqual(header(results[3][1], "x-meshd-error"), "rate_limited")
        self.assertGreaterEqual(int(header(results[3][1], "retry-after")), 1)


class LoadBalancing(Base):
    def test_policies(self):
        for policy in ("LEAST_REQUEST", "RANDOM"):
            m = self.start(mesh([self.a.port, self.b.port], lb=f"loadBalancing: {{policy: {policy}}}"))
            seen = {header(self.get(m)[1], "X-Upstream") for _ in range(40)}
            self.assertEqual(seen, {"a", "b"}, policy)
        m = self.start(mesh([self.a.port, self.b.port], lb="loadBalancing: {policy: RING_HASH, hashOn: {header: x-user}}"))
        for user in ("alice", "bob", "carol", "dave"):
            seen = {header(self.get(m, headers={"x-user": user})[1], "X-Upstream") for _ in range(10)}
            self.assertEqual(len(seen), 1, user)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--meshd", required=True)
    args, rest = parser.parse_known_args()
    harness.MESHD = args.meshd
    unittest.main(argv=[sys.argv[0], "-v", *rest])
