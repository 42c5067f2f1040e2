#!/usr/bin/env python3
"""`meshd run` against fake upstreams: routing, forwarding, local replies, limits,
pools, retries, discovery, admin, metrics and drain (SPEC §2-§6, issue 3)."""
import argparse
import concurrent.futures
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest

import harness
from harness import FakeDns, Meshd, Upstream, header, http_request, raw_exchange, read_response


def canary_mesh(v1, v2, extra_route="", filter_type="DROP_ALL", route_extras=""):
    return f"""
mesh: {{name: test-mesh, spec: {{egressFilter: {{type: {filter_type}}}}}}}
virtualNodes:
  - name: client
    spec:
      listeners: [{{portMapping: {{port: 3000, protocol: http}}}}]
      serviceDiscovery: {{dns: {{hostname: client.local}}}}
      backends:
        - virtualService: {{virtualServiceName: svc.local}}
        - virtualService: {{virtualServiceName: direct.local}}
        - virtualService: {{virtualServiceName: nowhere.local}}
        - virtualService: {{virtualServiceName: empty.local}}
      logging: {{accessLog: {{file: {{path: ACCESS_LOG}}}}}}
  - name: v1
    spec:
      listeners: [{{portMapping: {{port: 8080, protocol: http}}}}]
      serviceDiscovery: {{static: {{endpoints: [{{address: 127.0.0.1, port: {v1}}}]}}}}
  - name: v2
    spec:
      listeners: [{{portMapping: {{port: 8080, protocol: http}}}}]
      serviceDiscovery: {{static: {{endpoints: [{{address: 127.0.0.1, port: {v2}}}]}}}}
  - name: dead
    spec:
      listeners: [{{portMapping: {{port: 8080, protocol: http}}}}]
      serviceDiscovery: {{static: {{endpoints: [{{address: 127.0.0.1, port: 1}}]}}}}
virtualServices:
  - {{name: svc.local, spec: {{provider: {{virtualRouter: {{virtualRouterName: router}}}}}}}}
  - {{name: direct.local, spec: {{provider: {{virtualNode: {{virtualNodeName: v1}}}}}}}}
  - {{name: nowhere.local, spec: {{provider: {{virtualNode: {{virtualNodeName: dead}}}}}}}}
  - {{name: empty.local, spec: {{}}}}
virtualRouters:
  - name: router
    spec: {{listeners: [{{portMapping: {{port: 8080, protocol: http}}}}]}}
routes:
  - name: beta
    virtualRouterName: router
    spec:
      priority: 1
      httpRoute:
        match: {{prefix: /, headers: [{{name: x-beta, match: {{exact: "yes"}}}}]}}
        action: {{weightedTargets: [{{virtualNode: v2, weight: 1}}]}}
  - name: retry
    virtualRouterName: router
    spec:
      priority: 2
      httpRoute:
        match: {{prefix: /flaky}}
        action: {{weightedTargets: [{{virtualNode: v1, weight: 1}}]}}
        retryPolicy: {{maxRetries: 3, perRetryTimeout: {{value: 300, unit: ms}}, httpRetryEvents: [server-error]}}
  - name: fast-timeout
    virtualRouterName: router
    spec:
      priority: 3
      httpRoute:
        match: {{prefix: /hang}}
        action: {{weightedTargets: [{{virtualNode: v1, weight: 1}}]}}
        timeout: {{perRequest: {{value: 300, unit: ms}}}}
        retryPolicy: {{maxRetries: 0, perRetryTimeout: {{value: 1, unit: s}}, httpRetryEvents: [server-error]}}
  - name: only-api
    virtualRouterName: router
    spec:
      priority: 4
      httpRoute:
        match: {{prefix: /nothing-else}}
        action: {{weightedTargets: [{{virtualNode: v2, weight: 1}}]}}
{extra_route}
  - name: canary
    virtualRouterName: router
    spec:
      priority: 100
      httpRoute:
        match: {{prefix: /{route_extras}}}
        action:
          weightedTargets: [{{virtualNode: v1, weight: 90}}, {{virtualNode: v2, weight: 10}}]
"""


class Base(unittest.TestCase):
    def setUp(self):
        self.v1 = Upstream("v1")
        self.v2 = Upstream("v2")
        self.tmp = self._tmpdir()
        self.access_log = os.path.join(self.tmp, "access.log")
        self.meshes = []

    def _tmpdir(self):
        import tempfile
        return tempfile.mkdtemp(prefix="meshd-run-")

    def tearDown(self):
        for m in self.meshes:
            m.stop_and_check(self)
        self.v1.close()
        self.v2.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, mesh_text=None, node="client", **kw):
        text = (mesh_text or canary_mesh(self.v1.port, self.v2.port)).replace("ACCESS_LOG", self.access_log)
        m = Meshd(text, node, **kw)
        self.meshes.append(m)
        return m

    def egress(self, m, path="/", host="svc.local", headers=None, method="GET", body=b""):
        hdrs = {"Host": host}
        hdrs.update(headers or {})
        return http_request("127.0.0.1", m.port("egress"), method, path, headers=hdrs, body=body)


class Routing(Base):
    def test_canary_split_over_10000_requests(self):
        m = self.start()
        conn = http.client.HTTPConnection("127.0.0.1", m.port("egress"), timeout=10)
        counts = {"v1": 0, "v2": 0}
        n = 10000
        for _ in range(n):
            conn.request("GET", "/split", headers={"Host": "svc.local"})
            r = conn.getresponse()
            r.read()
            counts[r.getheader("X-Upstream")] += 1
        conn.close()
        share = 100.0 * counts["v2"] / n
        self.assertLess(abs(share - 10.0), 1.5, counts)
        # Keep-alive reuse: a handful of upstream connections for 10,000 requests.
        self.assertLessEqual(self.v1.connections + self.v2.connections, 8)
        self.assertEqual(m.metric_reaches(n, "meshd_requests_total", route="canary", code="200"), n)

    def test_header_route_absolute_form_and_authority_rules(self):
        m = self.start()
        status, hs, body = self.egress(m, "/x", headers={"x-beta": "yes"})
        self.assertEqual(status, 200)
        self.assertEqual(header(hs, "X-Upstream"), "v2")
        # Absolute-form (HTTP_PROXY): its authority wins over Host, and Host is rebuilt.
        status, hs, body = self.egress(m, "http://SVC.local.:8080/abs?q=1", host="other.example",
                                       headers={"x-beta": "yes"})
        self.assertEqual(status, 200)
        req = self.v2.requests[-1]
        self.assertEqual(req["path"], "/abs?q=1")
        self.assertEqual(header(req["headers"], "Host"), "SVC.local.:8080")

    def test_local_replies(self):
        m = self.start()
        cases = [
            ("example.com", "/", 403, "egress_denied"),
            ("svc.local:9999", "/", 404, "no_route"),
            ("empty.local", "/", 503, "no_healthy_upstream"),
            ("nowhere.local", "/", 503, "upstream_connect_failure"),
            ("svc.local", "/hang", 504, "upstream_timeout"),
        ]
        for host, path, status, code in cases:
            s, hs, body = self.egress(m, path, host=host)
            self.assertEqual((s, header(hs, "x-meshd-error")), (status, code), (host, path, body))
            self.assertEqual(header(hs, "content-type"), "text/plain")
        self.assertGreaterEqual(m.metric("meshd_upstream_timeouts_total"), 1)
        # The upstream closes before answering: 502.
        s, hs, _ = self.egress(m, "/reset", headers={"x-beta": "yes"})
        self.assertEqual((s, header(hs, "x-meshd-error")), (502, "upstream_reset"))
        # It closes mid-body, after the head went downstream: the client's connection
        # is reset, so it never sees a complete response.
        with self.assertRaises((ConnectionError, OSError)):
            self.egress(m, "/close-mid", headers={"x-beta": "yes"})

    def test_local_replies_to_grpc_requests_are_trailers_only(self):
        # SPEC §7: a request with a gRPC content-type gets meshd's answers as a 200
        # with grpc-status, grpc-message and x-meshd-error and no body (the HTTP/1.1
        # form of a trailers-only response); other requests keep the HTTP form.
        m = self.start()
        cases = [
            ("example.com", "/pkg.Svc/Method", 7, "egress_denied"),
            ("svc.local:9999", "/pkg.Svc/Method", 12, "no_route"),
            ("empty.local", "/pkg.Svc/Method", 14, "no_healthy_upstream"),
            ("svc.local", "/hang", 4, "upstream_timeout"),
        ]
        for host, path, grpc_status, code in cases:
            for content_type in ("application/grpc", "application/grpc+proto"):
                s, hs, body = self.egress(m, path, host=host, method="POST",
                                          headers={"content-type": content_type, "te": "trailers"})
                self.assertEqual((s, header(hs, "grpc-status"), header(hs, "x-meshd-error")),
                                 (200, str(grpc_status), code), (host, content_type))
                self.assertEqual(header(hs, "content-type"), "application/grpc")
                self.assertEqual(header(hs, "content-length"), "0")
                self.assertEqual(body, b"")
                summary = {"egress_denied": "the destination is not a backend", "no_route": "no route matches",
                           "no_healthy_upstream": "the target has no usable endpoints",
                           "upstream_timeout": "the upstream did not answer in time"}[code]
                self.assertTrue(header(hs, "grpc-message").startswith(summary), header(hs, "grpc-message"))
        # grpc-web and JSON keep the HTTP statuses.
        for content_type in ("application/grpc-web", "application/json"):
            s, hs, _ = self.egress(m, "/x", host="svc.local:9999", method="POST", headers={"content-type": content_type})
            self.assertEqual((s, header(hs, "x-meshd-error"), header(hs, "grpc-status")), (404, "no_route", None))
        # The metrics count the 200 that the gRPC client saw, one per answer above.
        self.assertEqual(m.metric_reaches(8, "meshd_requests_total", code="200"), 8)

    def test_grpc_timeout_caps_the_request_timeout(self):
        m = self.start()
        grpc = {"content-type": "application/grpc", "te": "trailers"}

        def timed(host, timeout=None):
            headers = dict(grpc, **({"grpc-timeout": timeout} if timeout else {}))
            t0 = time.time()
            s, hs, _ = self.egress(m, "/hang", host=host, method="POST", headers=headers)
            return time.time() - t0, s, header(hs, "grpc-status"), header(hs, "x-meshd-error")

        # direct.local has App Mesh's default per-request timeout (15 s): the caller's
        # 200 ms deadline ends it, answered DEADLINE_EXCEEDED.
        took, s, status, code = timed("direct.local", "200m")
        self.assertEqual((s, status, code), (200, "4", "upstream_timeout"))
        self.assertGreaterEqual(took, 0.15)
        self.assertLess(took, 3)
        took, s, status, _ = timed("direct.local", "300000u")
        self.assertEqual((s, status), (200, "4"))
        self.assertLess(took, 3)
        # It caps, it does not extend: the route's 300 ms still applies under 10 S.
        took, s, status, _ = timed("svc.local", "10S")
        self.assertEqual((s, status), (200, "4"))
        self.assertLess(took, 3)
        # A value that is not a grpc-timeout is ignored (the route's 300 ms applies).
        took, s, status, _ = timed("svc.local", "soon")
        self.assertEqual((s, status), (200, "4"))
        self.assertLess(took, 3)
        # It is passed on to the upstream as it came.
        s, _, _ = self.egress(m, "/", host="direct.local", method="POST", headers=dict(grpc, **{"grpc-timeout": "5S"}))
        self.assertEqual(s, 200)
        self.assertEqual(header(self.v1.requests[-1]["headers"], "grpc-timeout"), "5S")

    def test_no_route(self):
        text = canary_mesh(self.v1.port, self.v2.port).replace("match: {prefix: /}\n        action:\n          weightedTargets: [{virtualNode: v1, weight: 90}",
                                                                 "match: {prefix: /api}\n        action:\n          weightedTargets: [{virtualNode: v1, weight: 90}")
        m = self.start(text)
        s, hs, _ = self.egress(m, "/elsewhere")
        self.assertEqual((s, header(hs, "x-meshd-error")), (404, "no_route"))

    def test_allow_all_forwards_outside_the_mesh(self):
        m = self.start(canary_mesh(self.v1.port, self.v2.port, filter_type="ALLOW_ALL"))
        s, hs, body = self.egress(m, "/out", host=f"127.0.0.1:{self.v2.port}")
        self.assertEqual(s, 200)
        self.assertEqual(header(hs, "X-Upstream"), "v2")

    def test_virtual_node_provider_and_path_normalization(self):
        m = self.start()
        s, hs, _ = self.egress(m, "/a/./b/../c//d?x=%2F", host="direct.local")
        self.assertEqual(s, 200)
        self.assertEqual(self.v1.requests[-1]["path"], "/a/c/d?x=%2F")


class Forwarding(Base):
    def test_headers_forwarded_exactly(self):
        m = self.start()
        s, hs, body = self.egress(m, "/h", headers={
            "X-Mixed-Case": "Keep", "Connection": "close, X-Drop-Me", "X-Drop-Me": "1", "Keep-Alive": "timeout=5",
            "TE": "trailers", "Proxy-Connection": "keep-alive", "Upgrade": "h2c", "HTTP2-Settings": "AAA",
            "X-Forwarded-For": "10.1.1.1"})
        self.assertEqual(s, 200)
        req = self.v1.requests[-1] if self.v1.requests else self.v2.requests[-1]
        names = [n for n, _ in req["headers"]]
        self.assertIn("X-Mixed-Case", names)  # case kept HTTP/1.1 to HTTP/1.1
        for hop in ("X-Drop-Me", "Keep-Alive", "TE", "Proxy-Connection", "Upgrade", "HTTP2-Settings"):
            self.assertNotIn(hop.lower(), [n.lower() for n in names], hop)
        self.assertEqual(header(req["headers"], "X-Forwarded-For"), "10.1.1.1, 127.0.0.1")
        self.assertEqual(header(req["headers"], "x-forwarded-proto"), "http")
        self.assertRegex(header(req["headers"], "x-request-id"), r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-")
        # A request id that came with the request is kept.
        self.egress(m, "/h2", headers={"x-request-id": "abc-123"})
        req = [r for r in self.v1.requests + self.v2.requests if r["path"] == "/h2"][0]
        self.assertEqual(header(req["headers"], "x-request-id"), "abc-123")

    def test_connect_and_upgrade_get_501(self):
        m = self.start()
        out = raw_exchange(m.port("egress"), b"CONNECT svc.local:443 HTTP/1.1\r\nHost: svc.local:443\r\n\r\n")
        self.assertIn(b"501", out.split(b"\r\n")[0])
        s, hs, _ = self.egress(m, "/ws", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
        self.assertEqual((s, header(hs, "x-meshd-error")), (501, "not_implemented"))
        self.assertEqual(len(self.v1.requests) + len(self.v2.requests), 0)

    def test_a_first_body_piece_over_the_retry_buffer_is_forwarded_whole(self):
        # The first piece read (up to 16 KiB) is larger than a 1 KiB retry buffer: it
        # is sent all the same (the buffer only decides whether a replay is possible).
        m = self.start(extra_args=["--set", "retry_buffer_bytes=1024"])
        body = os.urandom(12000)
        with socket.create_connection(("127.0.0.1", m.port("egress")), timeout=10) as c:
            c.sendall(b"POST /post HTTP/1.1\r\nHost: svc.local\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            status, _, _, _ = read_response(c)
        self.assertEqual(status, 200)
        got = [r for r in self.v1.requests + self.v2.requests if r["path"] == "/post"]
        self.assertEqual(got[0]["body_len"], len(body))

    def test_bodies_content_length_chunked_expect(self):
        m = self.start()
        body = os.urandom(300000)
        s, hs, out = self.egress(m, "/post", method="POST", body=body)
        self.assertEqual(s, 200)
        self.assertEqual([r for r in self.v1.requests + self.v2.requests if r["path"] == "/post"][0]["body_len"], len(body))
        # chunked request, with Expect: 100-continue answered by meshd
        with socket.create_connection(("127.0.0.1", m.port("egress")), timeout=10) as c:
            c.sendall(b"POST /c HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
            status, _, _, rest = read_response(c)
            self.assertEqual(status, 100)
            c.sendall(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            status, hs, _, _ = read_response(c)
            self.assertEqual(status, 200)
        req = [r for r in self.v1.requests + self.v2.requests if r["path"] == "/c"][0]
        self.assertEqual(req["body_len"], 11)
        self.assertIsNone(header(req["headers"], "Expect"))

    def test_responses_head_204_chunked_until_close(self):
        m = self.start()
        s, hs, body = self.egress(m, "/chunked/5000", headers={"x-beta": "yes"})
        self.assertEqual((s, len(body)), (200, 5000))
        s, hs, body = self.egress(m, "/until-close/3000", headers={"x-beta": "yes"})
        self.assertEqual((s, len(body)), (200, 3000))
        s, hs, body = self.egress(m, "/status/204", headers={"x-beta": "yes"})
        self.assertEqual((s, body), (204, b""))
        s, hs, body = self.egress(m, "/big/100", method="HEAD", headers={"x-beta": "yes"})
        self.assertEqual((s, body, header(hs, "content-length")), (200, b"", "100"))

    def test_pipelined_requests_answered_in_order(self):
        m = self.start()
        reqs = b"".join(b"GET /p%d HTTP/1.1\r\nHost: svc.local\r\nx-beta: yes\r\n\r\n" % i for i in range(5))
        with socket.create_connection(("127.0.0.1", m.port("egress")), timeout=10) as c:
            c.sendall(reqs)
            rest = b""
            paths = []
            for i in range(5):
                # read_response reads from the socket; carry over what it read ahead
                class Buffered:
                    def __init__(self, sock, pre):
                        self.sock, self.pre = sock, pre

                    def recv(self, n):
                        if self.pre:
                            out, self.pre = self.pre[:n], self.pre[n:]
                            return out
                        return self.sock.recv(n)
                status, hs, body, rest = read_response(Buffered(c, rest))
                paths.append(body.split(b'"path": "')[1].split(b'"')[0].decode())
        self.assertEqual(paths, [f"/p{i}" for i in range(5)])

    def test_streaming_large_bodies_with_bounded_memory(self):
        if harness.SANITIZED:
            self.skipTest("memory figures mean nothing under the sanitizers")
        m = self.start()
        self.egress(m, "/warm", headers={"x-beta": "yes"})
        base = m.rss_kib()
        # 50 MB response
        with socket.create_connection(("127.0.0.1", m.port("egress")), timeout=30) as c:
            c.sendall(b"GET /big/52428800 HTTP/1.1\r\nHost: svc.local\r\nx-beta: yes\r\n\r\n")
            got = 0
            head = b""
            while b"\r\n\r\n" not in head:
                head += c.recv(65536)
            got = len(head.split(b"\r\n\r\n", 1)[1])
            peak = base
            while got < 52428800:
                data = c.recv(1 << 20)
                self.assertTrue(data)
                got += len(data)
                peak = max(peak, m.rss_kib()) if got % (8 << 20) < (1 << 20) else peak
        # 20 MB chunked request
        with socket.create_connection(("127.0.0.1", m.port("egress")), timeout=30) as c:
            c.sendall(b"POST /upload HTTP/1.1\r\nHost: svc.local\r\nx-beta: yes\r\nTransfer-Encoding: chunked\r\n\r\n")
            piece = b"%x\r\n" % 65536 + b"z" * 65536 + b"\r\n"
            for i in range(320):
                c.sendall(piece)
                if i % 64 == 0:
                    peak = max(peak, m.rss_kib())
            c.sendall(b"0\r\n\r\n")
            status, _, _, _ = read_response(c)
            self.assertEqual(status, 200)
        self.assertEqual(self.v2.requests[-1]["body_len"], 320 * 65536)
        peak = max(peak, m.rss_kib())
        self.assertLess(peak - base, 32 * 1024, f"RSS grew from {base} KiB to {peak} KiB")


class Malformed(Base):
    CASES = [
        (b"POST / HTTP/1.1\r\nHost: svc.local\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: svc.local\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
        (b"POST / HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        (b"POST / HTTP/1.0\r\nHost: svc.local\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: svc.local\r\nX: a\r\n b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: svc.local\rX: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: svc.local\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : svc.local\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: svc.local\r\nHost: svc.local\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: 1\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: svc.local\r\n\r\n", 505),
        (b"GET /\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: svc.local\r\nX: \x00\r\n\r\n", 400),
        # Content-Length: empty, signed, overflowing, not a number, a differing list
        (b"POST / HTTP/1.1\r\nHost: svc.local\r\nContent-Length:\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: svc.local\r\nContent-Length: +5\r\n\r\nhello", 400),
        (b"POST / HTTP/1.1\r\nHost: svc.local\r\nContent-Length: -5\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: svc.local\r\nContent-Length: 99999999999999999999999999\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: svc.local\r\nContent-Length: 0x5\r\n\r\nhello", 400),
        (b"POST / HTTP/1.1\r\nHost: svc.local\r\nContent-Length: 5, 6\r\n\r\nhello", 400),
        # Transfer-Encoding lists
        (b"POST / HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: \x0bchunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding : chunked\r\n\r\n", 400),
        # chunk sizes and extensions
        (b"POST / HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: chunked\r\n\r\n3;\x00=1\r\nabc\r\n0\r\n\r\n", 400),
        # bare CR / LF, empty names, request targets, versions
        (b"GET / HTTP/1.1\r\nHost: svc.local\r\n: empty\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: svc.local\r\n\rX: 1\r\n\r\n", 400),
        (b"GET a/b HTTP/1.1\r\nHost: svc.local\r\n\r\n", 400),
        (b"GET /a b HTTP/1.1\r\nHost: svc.local\r\n\r\n", 400),
        (b"GET ftp://svc.local/ HTTP/1.1\r\nHost: svc.local\r\n\r\n", 400),
        (b"GET / HTTP/0.9\r\n\r\n", 505),
        (b"GET / http/1.1\r\nHost: svc.local\r\n\r\n", 400),
    ]

    def test_each_is_rejected_closed_and_forwarded_nowhere(self):
        m = self.start()
        codes = {400: b"bad_request", 501: b"not_implemented", 505: b"http_version_not_supported"}
        for data, status in self.CASES:
            out = raw_exchange(m.port("egress"), data)
            first = out.split(b"\r\n")[0]
            self.assertIn(str(status).encode(), first, data)
            self.assertIn(b"\r\nx-meshd-error: " + codes[status] + b"\r\n", out, data)
            self.assertIn(b"connection: close", out.lower(), data)
            self.assertTrue(out.endswith(b"\n") and b"<timeout>" not in out, data)  # closed by meshd
        self.assertEqual(self.v1.requests + self.v2.requests, [])  # nothing was forwarded

    def test_unusual_but_valid_requests_are_forwarded_exactly(self):
        m = self.start()
        # HTTP/1.0 without a length: an empty body, forwarded as HTTP/1.1.
        out = raw_exchange(m.port("egress"), b"POST /ten HTTP/1.0\r\nHost: svc.local\r\nx-beta: yes\r\n\r\n")
        self.assertIn(b"200", out.split(b"\r\n")[0])
        req = [r for r in self.v2.requests if r["path"] == "/ten"][0]
        self.assertEqual(req["body_len"], 0)
        self.assertTrue(req["head"].startswith(b"POST /ten HTTP/1.1\r\n"), req["head"])
        self.assertNotIn(b"Transfer-Encoding", req["head"])
        # HTTP/1.0 with Connection: keep-alive: the connection stays open for a second request.
        with socket.create_connection(("127.0.0.1", m.port("egress")), timeout=5) as c:
            for i in range(2):
                c.sendall(b"GET /ka%d HTTP/1.0\r\nHost: svc.local\r\nx-beta: yes\r\nConnection: keep-alive\r\n\r\n" % i)
                status, hs, body, _ = read_response(c)
                self.assertEqual(status, 200)
        # Absolute-form with a different Host: Host is rebuilt from the target (RFC 9112 §3.2.2).
        out = raw_exchange(m.port("egress"), b"GET http://svc.local/abs2 HTTP/1.1\r\nHost: evil.example\r\n"
                                            b"x-beta: yes\r\nConnection: close\r\n\r\n")
        self.assertIn(b"200", out.split(b"\r\n")[0])
        req = [r for r in self.v2.requests if r["path"] == "/abs2"][0]
        self.assertIn(b"\r\nHost: svc.local\r\n", req["head"])
        self.assertNotIn(b"evil.example", req["head"])

    def test_stalled_body_and_connection_cap(self):
        m = self.start(extra_args=["--set", "downstream_idle_timeout=400ms", "--set", "max_connections_per_listener=2"],
                       workers=1)
        with socket.create_connection(("127.0.0.1", m.port("egress")), timeout=5) as c:
            c.sendall(b"POST /slow HTTP/1.1\r\nHost: svc.local\r\nx-beta: yes\r\nContent-Length: 100\r\n\r\nabc")
            status, hs, body, _ = read_response(c)
            self.assertEqual((status, header(hs, "x-meshd-error")), (408, "request_timeout"))  # the body stalled
        # Two connections are the cap; a third is not accepted until one closes.
        a = socket.create_connection(("127.0.0.1", m.port("egress")), timeout=5)
        b = socket.create_connection(("127.0.0.1", m.port("egress")), timeout=5)
        a.sendall(b"GET /1 HTTP/1.1\r\nHost: svc.local\r\nx-beta: yes\r\n\r\n")
        b.sendall(b"GET /2 HTTP/1.1\r\nHost: svc.local\r\nx-beta: yes\r\n\r\n")
        self.assertEqual(read_response(a)[0], 200)
        self.assertEqual(read_response(b)[0], 200)
        c = socket.create_connection(("127.0.0.1", m.port("egress")), timeout=5)
        c.sendall(b"GET /3 HTTP/1.1\r\nHost: svc.local\r\nx-beta: yes\r\n\r\n")
        c.settimeout(0.3)
        with self.assertRaises(socket.timeout):
            c.recv(100)  # queued in the kernel, not served
        a.close()
        b.close()
        c.settimeout(5)
        self.assertEqual(read_response(c)[0], 200)  # the idle ones closed, the third is served
        c.close()

    def test_header_limits_and_http_1_2(self):
        m = self.start(extra_args=["--set", "max_request_headers_count=5"])
        many = b"".join(b"X-%d: 1\r\n" % i for i in range(10))
        out = raw_exchange(m.port("egress"), b"GET / HTTP/1.1\r\nHost: svc.local\r\n" + many + b"\r\n")
        self.assertIn(b"431", out.split(b"\r\n")[0])
        self.assertIn(b"\r\nx-meshd-error: headers_too_large\r\n", out)
        big = b"X-Big: " + b"a" * 70000 + b"\r\n"
        out = raw_exchange(m.port("egress"), b"GET / HTTP/1.1\r\nHost: svc.local\r\n" + big + b"\r\n")
        self.assertIn(b"431", out.split(b"\r\n")[0])
        self.assertIn(b"\r\nx-meshd-error: headers_too_large\r\n", out)
        out = raw_exchange(m.port("egress"), b"GET / HTTP/1.2\r\nHost: svc.local\r\nx-beta: yes\r\nConnection: close\r\n\r\n")
        self.assertIn(b"200", out.split(b"\r\n")[0])

    def test_header_deadline_408_and_idle_close(self):
        m = self.start(extra_args=["--set", "request_header_timeout=300ms", "--set", "downstream_idle_timeout=300ms"])
        with socket.create_connection(("127.0.0.1", m.port("egress")), timeout=5) as c:
            c.sendall(b"GET / HTTP/1.1\r\n")
            for _ in range(5):  # activity does not extend the deadline
                time.sleep(0.1)
                try:
                    c.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    break
            out = b""
            for _ in range(100):
                data = c.recv(65536)
                if not data:
                    break
                out += data
            self.assertIn(b"408", out.split(b"\r\n")[0])
            self.assertIn(b"\r\nx-meshd-error: request_timeout\r\n", out)
        with socket.create_connection(("127.0.0.1", m.port("egress")), timeout=5) as c:
            t0 = time.time()
            self.assertEqual(c.recv(10), b"")  # idle: closed without a 408
            self.assertLess(time.time() - t0, 3)


class Resilience(Base):
    def test_retries_then_success_and_metrics(self):
        m = self.start()
        s, hs, body = self.egress(m, "/flaky/a/2")
        self.assertEqual(s, 200, body)
        self.assertIn(b"attempt 3", body)
        self.assertEqual(m.metric("meshd_upstream_retries_total", route="retry"), 2)
        s, hs, body = self.egress(m, "/flaky/b/9")
        self.assertEqual(s, 503)  # 3 retries, then the upstream's 503 goes back

    def test_default_retry_policy_on_503(self):
        m = self.start()
        s, hs, body = self.egress(m, "/flaky/c/1", host="direct.local")
        self.assertEqual(s, 200, body)
        self.assertIn(b"attempt 2", body)

    def test_pooled_connection_closed_by_upstream_is_not_used(self):
        m = self.start()
        for i in range(3):
            s, _, _ = self.egress(m, "/until-close/10", headers={"x-beta": "yes"})
            self.assertEqual(s, 200)
        s, _, _ = self.egress(m, "/after", headers={"x-beta": "yes"})
        self.assertEqual(s, 200)

    NO_RETRY_ROUTE = """
  - name: no-retry
    virtualRouterName: router
    spec:
      priority: 0
      httpRoute:
        match: {prefix: /, headers: [{name: x-no-retry, match: {exact: "1"}}]}
        action: {weightedTargets: [{virtualNode: v2, weight: 1}]}
        retryPolicy: {maxRetries: 0, perRetryTimeout: {value: 2, unit: s}, httpRetryEvents: [server-error]}
"""

    def test_reused_connection_failure_is_replayed_only_when_spec_allows(self):
        # A pooled connection that is alive takes the request, then the upstream closes
        # it without answering (/reset). The route allows no retry, so only the pool's
        # own rule (SPEC §3) can send it again: a GET (idempotent, nothing to replay)
        # goes once more on a fresh connection; a POST whose bytes went out does not.
        m = self.start(canary_mesh(self.v1.port, self.v2.port, extra_route=self.NO_RETRY_ROUTE), workers=1)
        h = {"x-no-retry": "1"}
        resets = lambda: len([r for r in self.v2.requests if r["path"] == "/reset"])
        self.assertEqual(self.egress(m, "/warm", headers=h)[0], 200)
        before = self.v2.connections
        s, hs, _ = self.egress(m, "/reset", headers=h)
        self.assertEqual((s, header(hs, "x-meshd-error")), (502, "upstream_reset"))
        self.assertEqual(resets(), 2)  # the pooled connection, then a fresh one
        self.assertEqual(self.v2.connections, before + 1)
        self.assertEqual(self.egress(m, "/warm", headers=h)[0], 200)
        s, hs, _ = self.egress(m, "/reset", headers=h, method="POST", body=b"pay once")
        self.assertEqual((s, header(hs, "x-meshd-error")), (502, "upstream_reset"))
        self.assertEqual(resets(), 3)  # the POST went out once
        self.assertEqual(m.metric("meshd_upstream_retries_total"), 0)

    def test_connect_timeout(self):
        # A listener whose accept queue is full drops SYNs: the connect hangs until
        # upstream_connect_timeout, then 503 upstream_connect_failure.
        black = socket.socket()
        black.bind(("127.0.0.1", 0))
        black.listen(0)
        filler = socket.create_connection(black.getsockname(), timeout=2)
        try:
            text = canary_mesh(self.v1.port, self.v2.port, extra_route=self.NO_RETRY_ROUTE).replace(
                "{address: 127.0.0.1, port: %d}" % self.v2.port, "{address: 127.0.0.1, port: %d}" % black.getsockname()[1])
            m = self.start(text, extra_args=["--set", "upstream_connect_timeout=300ms"])
            t0 = time.time()
            s, hs, body = self.egress(m, "/", headers={"x-no-retry": "1"})
            self.assertEqual((s, header(hs, "x-meshd-error")), (503, "upstream_connect_failure"), body)
            self.assertIn(b"timed out", body)
            self.assertLess(time.time() - t0, 4)  # not the 5 s default
        finally:
            filler.close()
            black.close()

    def test_idle_upstream_connections_are_capped_per_endpoint(self):
        m = self.start(extra_args=["--set", "max_idle_upstream_per_endpoint=2"], workers=1)
        def wave():
            with concurrent.futures.ThreadPoolExecutor(5) as pool:
                return list(pool.map(lambda i: self.egress(m, "/sleep/300", headers={"x-beta": "yes"})[0], range(5)))
        self.assertEqual(wave(), [200] * 5)
        self.assertEqual(self.v2.connections, 5)
        for _ in range(100):  # bounded wait: three of the five are closed, two kept
            if self.v2.closed >= 3:
                break
            time.sleep(0.02)
        time.sleep(0.1)
        self.assertEqual(self.v2.closed, 3)
        self.assertEqual(wave(), [200] * 5)
        self.assertEqual(self.v2.connections, 8)  # two reused, three new

    def test_pooled_connection_closed_by_upstream_idle_timeout_is_not_used(self):
        # The upstream closes keep-alive connections after 300 ms idle. A POST 600 ms
        # later must go straight to a fresh connection: the pool checks a connection
        # idle that long before using it (writing to the closed one would need a
        # retry of the route's policy, counted in meshd_upstream_retries_total).
        m = self.start()
        s, _, body = self.egress(m, "/idle-close/300", headers={"x-beta": "yes"}, method="POST", body=b"one")
        self.assertEqual(s, 200, body)
        time.sleep(0.6)
        retries = m.metric("meshd_upstream_retries_total")
        before = self.v2.connections
        s, _, body = self.egress(m, "/after", headers={"x-beta": "yes"}, method="POST", body=b"two")
        self.assertEqual(s, 200, body)
        self.assertEqual(self.v2.connections, before + 1)
        self.assertEqual(self.v2.requests[-1]["path"], "/after")
        self.assertEqual(m.metric("meshd_upstream_retries_total"), retries)


class Discovery(Base):
    def mesh(self, dns_name, response_type="ENDPOINTS"):
        return canary_mesh(self.v1.port, self.v2.port).replace(
            "serviceDiscovery: {static: {endpoints: [{address: 127.0.0.1, port: %d}]}}" % self.v1.port,
            "serviceDiscovery: {dns: {hostname: %s, responseType: %s}}" % (dns_name, response_type)).replace(
            "port: 8080, protocol: http}}]\n      serviceDiscovery: {dns: {hostname: %s" % dns_name,
            "port: %d, protocol: http}}]\n      serviceDiscovery: {dns: {hostname: %s" % (self.v1.port, dns_name))

    def test_dns_endpoints_servfail_keeps_nxdomain_drops(self):
        dns = FakeDns()
        try:
            dns.records["v1.test"] = ["127.0.0.1"]
            m = self.start(self.mesh("v1.test"), extra_args=[
                "--set", f"dns_resolvers=127.0.0.1:{dns.port}", "--set", "dns_refresh=200ms"])
            self.assertTrue(m.wait_ready())
            s, hs, _ = self.egress(m, "/x", host="direct.local:%d" % self.v1.port)
            self.assertEqual(s, 200)
            dns.records["v1.test"] = "SERVFAIL"
            time.sleep(0.8)
            s, hs, _ = self.egress(m, "/x", host="direct.local:%d" % self.v1.port)
            self.assertEqual(s, 200)  # last answer kept
            dns.records["v1.test"] = "NXDOMAIN"
            deadline = time.time() + 5
            while time.time() < deadline:
                s, hs, _ = self.egress(m, "/x", host="direct.local:%d" % self.v1.port)
                if s == 503:
                    break
                time.sleep(0.1)
            self.assertEqual((s, header(hs, "x-meshd-error")), (503, "no_healthy_upstream"))
            status, _, body = m.admin("/clusters")
            self.assertIn(b'"discovery_error":"v1.test: Domain name not found"', body)
        finally:
            dns.close()


    def test_ready_waits_for_the_first_discovery_answer(self):
        dns = FakeDns()
        try:
            dns.records["v1.test"] = "SERVFAIL"  # no answer yet: not ready
            m = self.start(self.mesh("v1.test"), extra_args=[
                "--set", f"dns_resolvers=127.0.0.1:{dns.port}", "--set", "dns_refresh=200ms"])
            for _ in range(10):
                self.assertEqual(m.admin("/ready")[0], 503)
                time.sleep(0.05)
            self.assertGreater(dns.queries, 0)
            dns.records["v1.test"] = ["127.0.0.1"]
            self.assertTrue(m.wait_ready(timeout=5))
            self.assertEqual(self.egress(m, "/x", host="direct.local:%d" % self.v1.port)[0], 200)
        finally:
            dns.close()


    def test_log_levels(self):
        # meshd's own log: info (the default) has health transitions and reloads,
        # warnings (stderr) have discovery failures, debug adds each discovery answer;
        # at `error` none of them, but the bound addresses are still printed.
        dns = FakeDns()
        try:
            dns.records["v1.test"] = ["127.0.0.1"]
            dead = "protocol: http}}]\n      serviceDiscovery: {static: {endpoints: [{address: 127.0.0.1, port: 1}]}}"
            text = self.mesh("v1.test").replace(dead, dead.replace(
                "protocol: http}}]", "protocol: http}, healthCheck: {protocol: tcp, healthyThreshold: 2, "
                "unhealthyThreshold: 2, timeoutMillis: 2000, intervalMillis: 5000}}]"))
            self.assertIn("protocol: tcp", text)
            args = ["--set", f"dns_resolvers=127.0.0.1:{dns.port}", "--set", "dns_refresh=200ms"]
            unhealthy = "meshd: health check: node dead endpoint 127.0.0.1:1 is unhealthy (connect: Connection refused)"
            answer = "meshd: discovery: node v1: v1.test -> 127.0.0.1:%d" % self.v1.port
            info = self.start(text, extra_args=args)
            debug = self.start(text, extra_args=args + ["--log-level", "debug"])
            quiet = self.start(text, extra_args=args + ["--log-level", "error"])
            for m in (info, debug, quiet):
                self.assertTrue(m.wait_ready())
                self.assertEqual(m.admin("/reload", method="POST")[0], 200)
            dns.records["v1.test"] = "SERVFAIL"
            time.sleep(0.8)  # a few refreshes: the failure is logged once, not per refresh
            out, err = info.stdout(), info.stderr()
            self.assertIn(unhealthy, out)
            self.assertIn("meshd: reloaded (POST /reload), config_version 2", out)
            self.assertNotIn(answer, out)
            self.assertEqual(err.count("meshd: discovery: node v1: v1.test: "), 1, err)
            self.assertIn("(keeping the last answer)", err)
            dns.records["v1.test"] = ["127.0.0.1"]
            for _ in range(100):  # bounded: the next refresh (200 ms) answers
                if "meshd: discovery: node v1: v1.test answers again" in info.stdout():
                    break
                time.sleep(0.05)
            self.assertIn("meshd: discovery: node v1: v1.test answers again", info.stdout())
            self.assertIn(answer, debug.stdout())
            self.assertIn(unhealthy, debug.stdout())
            out, err = quiet.stdout(), quiet.stderr()
            self.assertIn("meshd: listening egress 127.0.0.1:", out)
            for line in (unhealthy, "reloaded", "meshd: node client", "discovery"):
                self.assertNotIn(line, out + err)
        finally:
            dns.close()
        r = subprocess.run([harness.MESHD, "run", "--mesh", "x.yaml", "--node", "n", "--log-level", "loud"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--log-level: expected trace, debug, info, warning, error or off, got 'loud'", r.stderr)


class Admin(Base):
    def test_server_info_ready_clusters_config_dump(self):
        m = self.start()
        self.assertTrue(m.wait_ready())
        status, _, body = m.admin("/server_info")
        self.assertEqual(status, 200)
        self.assertIn(b'"state":"LIVE"', body)
        self.assertIn(("127.0.0.1:%d" % m.port("egress")).encode(), body)
        status, _, body = m.admin("/clusters")
        self.assertIn(b'"virtual_node":"v1"', body)
        self.assertIn(("127.0.0.1:%d" % self.v1.port).encode(), body)
        status, _, body = m.admin("/config_dump")
        self.assertIn(b'"config_version":1', body)
        self.assertIn(b'"sha256":"', body)
        self.assertIn(b'"last_error":null', body)
        self.assertEqual(m.admin("/nope")[0], 404)
        r = subprocess.run([harness.MESHD, "status", "--admin", m.addresses["admin"]], capture_output=True)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_metrics_pass_promtool(self):
        m = self.start()
        self.egress(m, "/x")
        self.egress(m, "/", host="example.com")
        # A request is counted when its lifecycle ends, just after its last byte went
        # out: the scrape may come a moment before that.
        for _ in range(40):
            status, _, body = m.admin("/metrics")
            text = body.decode()
            if 'code="403"' in text:
                break
            time.sleep(0.05)
        self.assertEqual(status, 200)
        for name in ("meshd_requests_total", "meshd_request_duration_seconds_bucket", "meshd_info",
                     "meshd_downstream_connections_active", "meshd_endpoint_healthy",
                     "meshd_config_reloads_total"):
            self.assertIn(name, text)
        self.assertIn('code="403"', text)
        promtool = shutil.which("promtool")
        if promtool is None:
            self.fail("promtool is missing: scripts/install-deps.sh installs the prometheus package")
        r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_access_log_lines(self):
        m = self.start()
        self.egress(m, "/logged", headers={"x-request-id": "rid-1"})
        self.egress(m, "/", host="example.com")
        self.assertEqual(self.egress(m, "/flaky/log/9")[0], 503)  # three retries, all 503
        time.sleep(0.2)
        with open(self.access_log) as f:
            lines = f.read().splitlines()
        self.assertTrue(any('"GET /flaky/log/9 HTTP/1.1" 503 retries_exhausted ' in l for l in lines), lines)
        self.assertTrue(any('"GET /logged HTTP/1.1" 200 - ' in l and '"rid-1"' in l and " canary " in l for l in lines), lines)
        self.assertTrue(any('" 403 egress_denied ' in l for l in lines), lines)


class AccessLogFormats(Base):
    """App Mesh's logging.accessLog.file.format: Envoy format strings, as text or JSON."""

    def with_format(self, fmt):
        text = canary_mesh(self.v1.port, self.v2.port)
        plain = "logging: {accessLog: {file: {path: ACCESS_LOG}}}"
        self.assertIn(plain, text)
        return text.replace(plain, "logging: {accessLog: {file: {path: ACCESS_LOG, format: %s}}}" % fmt)

    def lines(self, n):
        for _ in range(100):  # bounded: a line is written just after the response
            with open(self.access_log) as f:
                lines = f.read().splitlines()
            if len(lines) >= n:
                return lines
            time.sleep(0.02)
        return lines

    def test_text(self):
        m = self.start(self.with_format(
            '{text: "texttestingtesting %PROTOCOL%:%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %UPSTREAM_HOST% '
            '%UPSTREAM_CLUSTER% %ROUTE_NAME% %REQ(:METHOD)% %REQ(:PATH)% %REQ(x-missing?user-agent)% '
            '%RESP(x-upstream)% %REQ(user-agent):3%\\n"}'))
        s, _, _ = self.egress(m, "/fmt?q=1", headers={"x-beta": "yes", "User-Agent": "tester"}, method="POST",
                              body=b"hello")
        self.assertEqual(s, 200)
        self.assertEqual(self.egress(m, "/", host="example.com", headers={"User-Agent": "tester"})[0], 403)
        # A line is written just after its response went out, by the worker that
        # served it: two requests on two workers may log in either order.
        self.assertEqual(sorted(self.lines(2)), [
            "texttestingtesting HTTP/1.1:200 - 5 127.0.0.1:%d v2 beta POST /fmt?q=1 tester v2 tes" % self.v2.port,
            "texttestingtesting HTTP/1.1:403 NR 0 - - - GET / tester - tes"])

    def test_json(self):
        m = self.start(self.with_format(
            '{json: [{key: code, value: "%RESPONSE_CODE%"}, {key: flags, value: "%RESPONSE_FLAGS%"}, '
            '{key: details, value: "%RESPONSE_CODE_DETAILS%"}, {key: upstream, value: "%UPSTREAM_HOST%"}, '
            '{key: start, value: "%START_TIME%"}, {key: line, value: "%REQ(:METHOD)% %REQ(:PATH)%"}, '
            '{key: from, value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}, {key: peer, value: "%DOWNSTREAM_REMOTE_ADDRESS%"}, '
            '{key: local, value: "%DOWNSTREAM_LOCAL_ADDRESS%"}, {key: served_by, value: "%RESP(x-upstream)%"}, '
            '{key: ms, value: "%DURATION%"}, {key: "quote\\"d", value: "%REQ(x-q)%"}, '
            '{key: epoch, value: "%START_TIME(%s.%3f)%"}]}'))
        self.assertEqual(self.egress(m, "/j", headers={"x-beta": "yes", "x-q": 'a"b'})[0], 200)
        self.assertEqual(self.egress(m, "/", host="example.com")[0], 403)
        self.assertEqual(self.egress(m, "/flaky/json/9")[0], 503)
        import json as _json
        records = {r["code"]: r for r in (_json.loads(l) for l in self.lines(3))}  # in any order (see test_text)
        ok, denied, exhausted = records[200], records[403], records[503]
        self.assertEqual(ok["code"], 200)  # a lone numeric operator stays a number
        self.assertIsNone(ok["details"])   # no value: null
        self.assertEqual(ok["flags"], "-")
        self.assertEqual(ok["upstream"], "127.0.0.1:%d" % self.v2.port)
        self.assertRegex(ok["start"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(ok["line"], "GET /j")
        self.assertEqual(ok["from"], "127.0.0.1")
        self.assertRegex(ok["peer"], r"^127\.0\.0\.1:\d+$")
        self.assertEqual(ok["local"], "127.0.0.1:%d" % m.port("egress"))
        self.assertEqual(ok["served_by"], "v2")
        self.assertIsInstance(ok["ms"], int)
        self.assertEqual(ok['quote"d'], 'a"b')
        self.assertRegex(ok["epoch"], r"^\d{10}\.\d{3}$")  # a custom START_TIME format, %s and %3f
        self.assertLess(abs(float(ok["epoch"]) - time.time()), 60)
        self.assertEqual((denied["code"], denied["flags"], denied["details"], denied["upstream"]),
                         (403, "NR", "egress_denied", None))
        self.assertEqual((exhausted["code"], exhausted["flags"], exhausted["details"]), (503, "URX", "retries_exhausted"))


class Lifecycle(Base):
    def test_idle_connections_park_and_come_back(self):
        # Keep-alive connections idle longer than 250 ms are parked (no coroutine, no
        # parser, only the descriptor); each comes back when its client sends again,
        # counts as open while parked, and still closes at the idle timeout.
        m = self.start(extra_args=["--set", "downstream_idle_timeout=2s"])
        conns = [socket.create_connection(("127.0.0.1", m.port("egress")), timeout=5) for _ in range(40)]
        try:
            def one(c, path):
                c.sendall(f"GET {path} HTTP/1.1\r\nHost: svc.local\r\n\r\n".encode())
                status, _, body, _ = read_response(c, "GET")
                return status, body
            for c in conns:
                self.assertEqual(one(c, "/first")[0], 200)
            time.sleep(0.8)  # parked
            self.assertEqual(m.metric("meshd_downstream_connections_active", listener="egress"), 40)
            for i, c in enumerate(conns):  # every one comes back, in any order
                status, body = one(c, f"/again/{i}")
                self.assertEqual(status, 200)
                self.assertIn(f"/again/{i}".encode(), body)
            time.sleep(0.8)  # parked again; the idle clock restarted at the last request
            t0 = time.time()
            for c in conns:
                self.assertEqual(c.recv(10), b"")  # closed by the idle timeout
            waited = time.time() - t0
            self.assertGreater(waited, 0.8)  # 2 s from the last request, not from parking
            self.assertLess(waited, 2.5)
            for _ in range(40):
                if m.metric("meshd_downstream_connections_active", listener="egress") == 0:
                    break
                time.sleep(0.05)
            self.assertEqual(m.metric("meshd_downstream_connections_active", listener="egress"), 0)
        finally:
            for c in conns:
                c.close()

    def test_parked_connections_count_against_the_listener_cap(self):
        m = self.start(extra_args=["--set", "max_connections_per_listener=2"], workers=1)
        a = socket.create_connection(("127.0.0.1", m.port("egress")), timeout=5)
        b = socket.create_connection(("127.0.0.1", m.port("egress")), timeout=5)
        c = None
        try:
            for s in (a, b):
                s.sendall(b"GET / HTTP/1.1\r\nHost: svc.local\r\n\r\n")
                self.assertEqual(read_response(s, "GET")[0], 200)
            time.sleep(0.6)  # both parked: still open, still counted
            c = socket.create_connection(("127.0.0.1", m.port("egress")), timeout=5)
            c.sendall(b"GET /3 HTTP/1.1\r\nHost: svc.local\r\n\r\n")
            c.settimeout(0.5)
            with self.assertRaises(socket.timeout):
                c.recv(100)  # queued in the kernel, not served
            a.close()  # a parked connection closes: its place frees
            c.settimeout(5)
            self.assertEqual(read_response(c, "GET")[0], 200)
            b.sendall(b"GET /again HTTP/1.1\r\nHost: svc.local\r\n\r\n")  # and b comes back
            self.assertEqual(read_response(b, "GET")[0], 200)
        finally:
            for s in (a, b, c):
                if s is not None:
                    s.close()

    def test_drain_closes_parked_connections(self):
        m = self.start()
        conns = [socket.create_connection(("127.0.0.1", m.port("egress")), timeout=5) for _ in range(10)]
        try:
            for c in conns:
                c.sendall(b"GET / HTTP/1.1\r\nHost: svc.local\r\n\r\n")
                self.assertEqual(read_response(c, "GET")[0], 200)
            time.sleep(0.6)  # parked
            self.assertEqual(m.admin("/drain", method="POST")[0], 202)
            t0 = time.time()
            for c in conns:
                self.assertEqual(c.recv(10), b"")
            self.assertLess(time.time() - t0, 2)
            self.assertEqual(m.proc.wait(10), 0)
        finally:
            for c in conns:
                c.close()

    def test_drain_finishes_in_flight_and_exits_0(self):
        m = self.start()
        result = {}

        def slow():
            result["r"] = self.egress(m, "/sleep/700", headers={"x-beta": "yes"})

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.2)
        status, _, _ = m.admin("/drain", method="POST")
        self.assertEqual(status, 202)
        self.assertEqual(m.admin("/ready")[0], 503)
        self.assertIn(b"DRAINING", m.admin("/server_info")[2])
        t.join(10)
        self.assertEqual(result["r"][0], 200)
        self.assertEqual(header(result["r"][1], "connection"), "close")
        self.assertEqual(m.proc.wait(10), 0)

    def test_sigterm_drains(self):
        m = self.start()
        m.proc.terminate()
        self.assertEqual(m.proc.wait(10), 0)

    def test_refuses_what_it_cannot_enforce(self):
        text = canary_mesh(self.v1.port, self.v2.port).replace(
            "  - name: v2\n    spec:\n      listeners: [{portMapping: {port: 8080, protocol: http}}]",
            "  - name: v2\n    spec:\n      listeners: [{portMapping: {port: 8080, protocol: http}, "
            "tls: {mode: STRICT, certificate: {file: {certificateChain: /c.pem, privateKey: /k.pem}}}}]")
        path = os.path.join(self.tmp, "m.yaml")
        with open(path, "w") as f:
            f.write(text.replace("ACCESS_LOG", self.access_log))
        r = subprocess.run([harness.MESHD, "run", "--mesh", path, "--node", "client", "--egress-port", "0",
                            "--ingress-port", "0", "--admin", "127.0.0.1:0"], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 1)
        self.assertIn("virtualNodes[2].spec.listeners[0].tls: not supported by this build", r.stderr)

    def test_port_in_use_exits_3_and_usage_exits_2(self):
        m = self.start()
        r = subprocess.run([harness.MESHD, "run", "--mesh", m.mesh_path, "--node", "client", "--egress-port",
                            str(m.port("egress")), "--ingress-port", "0", "--admin", "127.0.0.1:0"],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("cannot listen for egress", r.stderr)
        r = subprocess.run([harness.MESHD, "run", "--mesh", m.mesh_path], capture_output=True, text=True, timeout=10,
                           env={k: v for k, v in os.environ.items() if not k.startswith("APPMESH")})
        self.assertEqual(r.returncode, 2)

    def test_open_files_limit_is_raised_to_the_hard_limit(self):
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        low = min(256, hard)
        m = self.start(preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard)))
        with open(f"/proc/{m.proc.pid}/limits") as f:
            line = [l for l in f if l.startswith("Max open files")][0].split()
        expected = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
        self.assertEqual(line[3], expected, line)  # the soft limit, raised from 256

    def test_node_from_app_mesh_environment(self):
        env = dict(os.environ)
        env["APPMESH_RESOURCE_ARN"] = "arn:aws:appmesh:us-west-2:123456789012:mesh/test-mesh/virtualNode/client"
        text = canary_mesh(self.v1.port, self.v2.port).replace("ACCESS_LOG", self.access_log)
        m = Meshd(text, "client", env=env)  # --node also given: it wins; check the env form alone below
        self.meshes.append(m)
        path = m.mesh_path
        env["APPMESH_RESOURCE_ARN"] = "mesh/other-mesh/virtualNode/client"
        r = subprocess.run([harness.MESHD, "run", "--mesh", path, "--egress-port", "0", "--ingress-port", "0",
                            "--admin", "127.0.0.1:0"], capture_output=True, text=True, timeout=10, env=env)
        self.assertEqual(r.returncode, 1)
        self.assertIn("other-mesh", r.stderr)

    def test_stats_address_serves_only_get_endpoints(self):
        m = self.start(extra_args=["--stats", "127.0.0.1:0"])
        stats_port = m.port("stats")
        status, _, body = http_request("127.0.0.1", stats_port, "GET", "/server_info")
        self.assertEqual(status, 200)
        self.assertIn(b'"state":"LIVE"', body)
        self.assertEqual(http_request("127.0.0.1", stats_port, "GET", "/metrics")[0], 200)
        self.assertEqual(http_request("127.0.0.1", stats_port, "POST", "/drain")[0], 405)
        self.assertIn(b"LIVE", m.admin("/server_info")[2])  # the drain was not started

    def test_refusals_name_each_path(self):
        text = canary_mesh(self.v1.port, self.v2.port).replace(
            "      logging: {accessLog: {file: {path: ACCESS_LOG}}}",
            "      logging: {accessLog: {file: {path: ACCESS_LOG}}}\n"
            "      backendDefaults: {clientPolicy: {tls: {validation: {trust: {file: {certificateChain: /ca.pem}}}}}}").replace(
            "  - name: client\n    spec:\n      listeners: [{portMapping: {port: 3000, protocol: http}}]",
            "  - name: client\n    spec:\n      listeners: [{portMapping: {port: 3000, protocol: tcp}, "
            "rateLimit: {requestsPerUnit: 10, unit: SECOND}}]")
        path = os.path.join(self.tmp, "m.yaml")
        with open(path, "w") as f:
            f.write(text.replace("ACCESS_LOG", self.access_log))
        r = subprocess.run([harness.MESHD, "run", "--mesh", path, "--node", "client", "--egress-port", "0",
                            "--ingress-port", "0", "--admin", "127.0.0.1:0"], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 1, r.stderr)
        for p in ("virtualNodes[0].spec.listeners[0].portMapping.protocol",
                  "virtualNodes[0].spec.backendDefaults.clientPolicy.tls"):
            self.assertIn(f"{path}: {p}: not supported by this build", r.stderr)
        # A node that uses none of it runs on the same file.
        m = self.start(text, node="v1", app_port=self.v1.port)
        self.assertEqual(http_request("127.0.0.1", m.port("ingress"), "GET", "/", headers={"Host": "v1"})[0], 200)

    def test_ingress_listener_timeout(self):
        text = canary_mesh(self.v1.port, self.v2.port).replace(
            "  - name: v1\n    spec:\n      listeners: [{portMapping: {port: 8080, protocol: http}}]",
            "  - name: v1\n    spec:\n      listeners: [{portMapping: {port: 8080, protocol: http}, "
            "timeout: {http: {perRequest: {value: 300, unit: ms}}}}]")
        m = self.start(text, node="v1", app_port=self.v1.port)
        t0 = time.time()
        s, hs, _ = http_request("127.0.0.1", m.port("ingress"), "GET", "/hang", headers={"Host": "v1"})
        self.assertEqual((s, header(hs, "x-meshd-error")), (504, "upstream_timeout"))
        self.assertLess(time.time() - t0, 5)

    def test_every_listener_of_the_node_is_served_with_its_own_settings(self):
        # Listener 8080 (the first: --ingress-port, app at --app-port) times out after
        # 300 ms; the second listener, on v2's port, is served at the port given by
        # --ingress-port V2=0, forwards to the app at 127.0.0.1:V2 and has a rate
        # limit of one request a minute instead.
        second = self.v2.port
        text = f"""
mesh: {{name: test-mesh, spec: {{egressFilter: {{type: DROP_ALL}}}}}}
virtualNodes:
  - name: v1
    spec:
      listeners:
        - portMapping: {{port: 8080, protocol: http}}
          timeout: {{http: {{perRequest: {{value: 300, unit: ms}}}}}}
        - portMapping: {{port: {second}, protocol: http}}
          rateLimit: {{requestsPerUnit: 1, unit: MINUTE}}
      serviceDiscovery: {{static: {{endpoints: [{{address: 127.0.0.1, port: {self.v1.port}}}]}}}}
"""
        path = os.path.join(self.tmp, "two-listeners.yaml")
        with open(path, "w") as f:
            f.write(text)
        # Without a port for the second listener, meshd refuses to start (never
        # silently not serving it).
        r = subprocess.run([harness.MESHD, "run", "--mesh", path, "--node", "v1", "--egress-port", "0",
                            "--ingress-port", "0", "--admin", "127.0.0.1:0", "--app-port", str(self.v1.port)],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(f"also listens on port {second}: serve it with --ingress-port {second}=PORT", r.stderr)
        r = subprocess.run([harness.MESHD, "run", "--mesh", path, "--node", "v1", "--egress-port", "0",
                            "--ingress-port", "0", "--ingress-port", f"{second}=0", "--ingress-port", "9999=0",
                            "--admin", "127.0.0.1:0"], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("has no listener on port 9999", r.stderr)

        m = self.start(text, node="v1", app_port=self.v1.port, extra_args=["--ingress-port", f"{second}=0"])
        name = f"ingress:{second}"
        self.assertIn(name, m.addresses)
        info = json.loads(m.admin("/server_info")[2])
        self.assertIn(name, [l["name"] for l in info["listeners"]])
        first_port, second_port = m.port("ingress"), m.port(name)
        self.assertNotEqual(first_port, second_port)
        # Each listener reaches its own app.
        s, hs, _ = http_request("127.0.0.1", first_port, "GET", "/a", headers={"Host": "v1"})
        self.assertEqual((s, header(hs, "X-Upstream")), (200, "v1"))
        s, hs, _ = http_request("127.0.0.1", second_port, "GET", "/sleep/600", headers={"Host": "v1"})
        self.assertEqual((s, header(hs, "X-Upstream")), (200, "v2"))  # no 300 ms timeout here
        # ... with its own settings: the second's rate limit, the first's timeout.
        s, hs, _ = http_request("127.0.0.1", second_port, "GET", "/b", headers={"Host": "v1"})
        self.assertEqual((s, header(hs, "x-meshd-error")), (429, "rate_limited"))
        for _ in range(3):
            self.assertEqual(http_request("127.0.0.1", first_port, "GET", "/c", headers={"Host": "v1"})[0], 200)
        s, hs, _ = http_request("127.0.0.1", first_port, "GET", "/sleep/600", headers={"Host": "v1"})
        self.assertEqual((s, header(hs, "x-meshd-error")), (504, "upstream_timeout"))

        # A reload that drops the second listener and adds a third: the dropped one's
        # port answers 503, the new one is named in a warning (served after a restart).
        third = self.v1.port
        reloaded = text.replace(f"        - portMapping: {{port: {second}, protocol: http}}\n"
                                "          rateLimit: {requestsPerUnit: 1, unit: MINUTE}\n",
                                f"        - portMapping: {{port: {third}, protocol: http}}\n")
        self.assertNotEqual(reloaded, text)
        with open(m.mesh_path, "w") as f:
            f.write(reloaded)
        self.assertEqual(m.admin("/reload", method="POST")[0], 200)
        s, hs, _ = http_request("127.0.0.1", second_port, "GET", "/d", headers={"Host": "v1"})
        self.assertEqual((s, header(hs, "x-meshd-error")), (503, "no_healthy_upstream"))
        self.assertIn(f"listener port {third} is new: it is served after a restart", m.stdout() + m.stderr())
        self.assertEqual(http_request("127.0.0.1", first_port, "GET", "/e", headers={"Host": "v1"})[0], 200)

    def test_ingress_forwards_to_the_app(self):
        m = self.start(node="v1", app_port=self.v1.port)
        s, hs, body = http_request("127.0.0.1", m.port("ingress"), "GET", "/in", headers={"Host": "v1.local"})
        self.assertEqual(s, 200)
        self.assertEqual(header(hs, "X-Upstream"), "v1")
        self.assertEqual(m.metric_reaches(1, "meshd_requests_total", direction="ingress", code="200"), 1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--meshd", required=True)
    args, rest = parser.parse_known_args()
    harness.MESHD = args.meshd
    unittest.main(argv=[sys.argv[0], "-v", *rest])
