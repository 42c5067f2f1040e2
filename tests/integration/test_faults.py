#!/usr/bin/env python3
"""Faults (issue 6): upstreams that close, reset, hang or refuse; DNS that fails,
times out or says NXDOMAIN; endpoints changing under load; 5,000 concurrent
downstream connections. After each, meshd still serves, its open descriptors return
to the baseline, and (Release build) its RSS stays within 5 % of the baseline taken
after warm-up."""
import argparse
import concurrent.futures
import os
import socket
import sys
import threading
import time
import unittest

import harness
from harness import FakeDns, Meshd, Upstream, header, http_request


def mesh(up_port, dns_port_name):
    return f"""
mesh: {{name: m}}
virtualNodes:
  - name: client
    spec:
      backends:
        - virtualService: {{virtualServiceName: svc.local}}
        - virtualService: {{virtualServiceName: dns.local}}
  - name: static
    spec:
      listeners: [{{portMapping: {{port: 8080, protocol: http}}}}]
      serviceDiscovery: {{static: {{endpoints: [{{address: 127.0.0.1, port: {up_port}}}]}}}}
  - name: named
    spec:
      listeners: [{{portMapping: {{port: {up_port}, protocol: http}}}}]
      serviceDiscovery: {{dns: {{hostname: {dns_port_name}, responseType: ENDPOINTS}}}}
virtualServices:
  - {{name: svc.local, spec: {{provider: {{virtualRouter: {{virtualRouterName: r}}}}}}}}
  - {{name: dns.local, spec: {{provider: {{virtualNode: {{virtualNodeName: named}}}}}}}}
virtualRouters:
  - {{name: r, spec: {{listeners: [{{portMapping: {{port: 8080, protocol: http}}}}]}}}}
routes:
  - name: all
    virtualRouterName: r
    spec:
      httpRoute:
        match: {{prefix: /}}
        action: {{weightedTargets: [{{virtualNode: static, weight: 1}}]}}
        timeout: {{perRequest: {{value: 3, unit: s}}}}
        retryPolicy: {{maxRetries: 1, perRetryTimeout: {{value: 1, unit: s}}, httpRetryEvents: [server-error]}}
"""


class Faults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = Upstream("up")
        cls.dns = FakeDns()
        cls.dns.records["named.test"] = ["127.0.0.1"]
        cls.m = Meshd(mesh(cls.up.port, "named.test"), "client", extra_args=[
            "--set", f"dns_resolvers=127.0.0.1:{cls.dns.port}", "--set", "dns_refresh=200ms",
            "--set", "max_connections_per_listener=20000",
            # pooled upstream connections close after 1 s idle, so descriptors settle fast
            "--set", "upstream_idle_timeout_mesh=1s"])
        assert cls.m.wait_ready()
        # Warm-up, then the baselines.
        for _ in range(200):
            cls.get("/warm")
        time.sleep(0.5)
        cls.fds = cls.m.open_fds()
        cls.rss = cls.m.rss_kib()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.m.stop_and_check(unittest.TestCase())
        finally:
            cls.up.close()
            cls.dns.close()

    @classmethod
    def get(cls, path, host="svc.local"):
        return http_request("127.0.0.1", cls.m.port("egress"), "GET", path, headers={"Host": host})

    def settled(self, check_rss=True):
        """meshd serves, and its descriptors and memory are back to the baselines."""
        self.assertEqual(self.get("/after")[0], 200)
        deadline = time.time() + 8  # pooled upstream connections close within their idle timeout
        fds = self.m.open_fds()
        while time.time() < deadline and fds > self.fds:
            time.sleep(0.2)
            fds = self.m.open_fds()
        self.assertLessEqual(fds, self.fds, "descriptors did not return to the baseline")
        if check_rss and not harness.SANITIZED:
            # Freed memory goes back to the OS within meshd's 5 s trim period.
            limit = self.rss * 1.05
            deadline = time.time() + 12
            rss = self.m.rss_kib()
            while time.time() < deadline and rss > limit:
                time.sleep(0.5)
                rss = self.m.rss_kib()
            self.assertLessEqual(rss, limit, f"RSS {rss} KiB vs baseline {self.rss} KiB")

    def test_upstream_closes_resets_hangs(self):
        for path, status, times in (("/close-mid", None, 10), ("/reset", 502, 10), ("/hang", 504, 2)):
            for _ in range(times):
                try:
                    s, hs, _ = self.get(path)
                    if status is not None:
                        self.assertEqual(s, status, path)
                except (ConnectionError, OSError):
                    self.assertIsNone(status, path)  # reset after the head went out
        self.settled()

    def test_refused_and_dns_failures(self):
        # The DNS-discovered node: SERVFAIL and timeouts keep the last answer...
        self.assertEqual(self.get("/x", host=f"dns.local:{self.up.port}")[0], 200)
        for mode in ("SERVFAIL", "TIMEOUT"):
            self.dns.records["named.test"] = mode
            time.sleep(0.6 if mode == "SERVFAIL" else 2.5)
            self.assertEqual(self.get("/x", host=f"dns.local:{self.up.port}")[0], 200, mode)
        # ...NXDOMAIN drops the endpoints.
        self.dns.records["named.test"] = "NXDOMAIN"
        deadline = time.time() + 5
        s = 0
        while time.time() < deadline:
            s, hs, _ = self.get("/x", host=f"dns.local:{self.up.port}")
            if s == 503:
                break
            time.sleep(0.1)
        self.assertEqual(s, 503)
        # An endpoint that refuses connections: 503 after the retry.
        self.dns.records["named.test"] = ["127.0.0.2"]  # nothing listens there on this port
        time.sleep(0.6)
        s, hs, _ = self.get("/x", host=f"dns.local:{self.up.port}")
        self.assertEqual((s, header(hs, "x-meshd-error")), (503, "upstream_connect_failure"))
        self.dns.records["named.test"] = ["127.0.0.1"]
        time.sleep(0.6)
        self.settled()

    def test_endpoints_change_under_load(self):
        stop = threading.Event()
        failures = []

        def load():
            while not stop.is_set():
                s, _, _ = self.get("/x", host=f"dns.local:{self.up.port}")
                if s != 200:
                    failures.append(s)

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        for i in range(10):  # the answer flips between one and two addresses
            self.dns.records["named.test"] = ["127.0.0.1"] if i % 2 else ["127.0.0.1", "127.0.0.1"]
            time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(10)
        self.assertEqual(failures, [])
        self.settled()

    def wave_of_5000(self):
        socks = []
        try:
            for _ in range(5000):
                socks.append(socket.create_connection(("127.0.0.1", self.m.port("egress")), timeout=10))
            for s in socks[::250]:
                s.sendall(b"GET /c HTTP/1.1\r\nHost: svc.local\r\n\r\n")
            for s in socks[::250]:
                self.assertIn(b"200", s.recv(4096).split(b"\r\n")[0])
            # The last ones may still be in the accept queue (slowly, under ASan).
            active = 0
            for _ in range(100):
                active = self.m.metric("meshd_downstream_connections_active", listener="egress")
                if active >= 5000:
                    break
                time.sleep(0.1)
            self.assertGreaterEqual(active, 5000)
            time.sleep(0.5)  # idle ones are parked (DownstreamConnection::kParkAfter)
        finally:
            for s in socks:
                s.close()

    def wait_rss(self, limit):
        deadline = time.time() + 12  # the main thread trims every 5 s
        rss = self.m.rss_kib()
        while time.time() < deadline and rss > limit:
            time.sleep(0.5)
            rss = self.m.rss_kib()
        return rss

    def test_z_5000_concurrent_downstream_connections(self):
        # Runs last (unittest sorts by name). Two waves of 5,000 connections. Asio keeps
        # one 168-byte record per socket in a pool that never shrinks (its high-water
        # mark, kept on meshd's own slab pages: net/asio_impl.cpp), so the first wave may
        # leave that much behind (and a little allocator residue); the second must
        # leave nothing.
        self.wave_of_5000()
        self.settled(check_rss=False)
        budget = self.rss + 5000 * 0.4  # KiB: 176 B of Asio records and malloc residue per connection
        after_first = self.wait_rss(budget)
        print(f"\nRSS after 5,000 connections closed: {after_first} KiB (baseline {self.rss} KiB)", file=sys.stderr)
        if harness.SANITIZED:
            return
        self.assertLessEqual(after_first, budget, f"RSS {after_first} KiB vs baseline {self.rss} KiB")
        self.wave_of_5000()
        self.settled(check_rss=False)
        after_second = self.wait_rss(after_first * 1.05)
        print(f"RSS after a second wave: {after_second} KiB", file=sys.stderr)
        self.assertLessEqual(after_second, after_first * 1.05)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--meshd", required=True)
    args, rest = parser.parse_known_args()
    harness.MESHD = args.meshd
    unittest.main(argv=[sys.argv[0], "-v", *rest])
