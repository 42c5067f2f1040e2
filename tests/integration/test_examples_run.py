#!/usr/bin/env python3
"""`meshd run` on the shipped examples, unchanged, with real peers: a fake DNS server
points each node's hostname at its own loopback address (color-v1/v1 at 127.0.0.2,
color-v2/v2 at 127.0.0.3), where a server listens on the node's listener port 8080.
examples/grpc-route.yaml: grpcio servers (generic handlers, raw bytes) and a grpcio
client through the client's egress — the canary metadata route, the service route,
its UNAVAILABLE retries. examples/http2-route.yaml: python3-h2 servers and client —
the x-canary header route, the 80/20 split, the server-error retries."""
import argparse
import json
import os
import socket
import sys
import threading
import time
import unittest

try:
    from concurrent import futures

    import grpc
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions
except ImportError:  # python3-grpcio and python3-h2 are Debian's: run under Debian's interpreter (as ctest does)
    if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3", *sys.argv])
    raise

import harness
from harness import FakeDns, Meshd
from test_http2 import H2Client

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples")
PORT = 8080  # the nodes' listener port in both examples: where their DNS names are called
V1_ADDR, V2_ADDR = "127.0.0.2", "127.0.0.3"


def example(name):
    with open(os.path.join(EXAMPLES, name)) as f:
        return f.read()


def bind_error(what, addr, err):
    return (f"cannot bind {addr}:{PORT} for {what} ({err}): the example's nodes are called at their "
            f"listener port {PORT}, so this test needs {addr}:{PORT} free")


def start_meshd(test, text, dns):
    for _ in range(50):  # the binary may be briefly missing while it is rebuilt
        if os.path.exists(harness.MESHD):
            break
        time.sleep(0.2)
    m = Meshd(text, "client", extra_args=["--set", f"dns_resolvers=127.0.0.1:{dns.port}",
                                          "--set", "dns_refresh=1s"])
    test.addCleanup(m.stop_and_check, test)
    test.assertTrue(m.wait_ready(timeout=5), m.stderr())  # the first DNS answers are in
    return m


# ---------------------------------------------------------------- gRPC servers
class ColorServer:
    """A grpcio server on ADDR:8080 serving color.ColorService/GetColor and /ListColors
    with raw bytes: the answer is NAME:METHOD:REQUEST. Metadata x-fail-key makes it
    abort UNAVAILABLE on its first x-fail-count (default 1) calls with that key.
    Every call is recorded (method, metadata)."""

    def __init__(self, name, addr):
        self.name = name
        self.calls = []
        self.counters = {}
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                                  options=[("grpc.so_reuseport", 0)])
        u = grpc.unary_unary_rpc_method_handler
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("color.ColorService", {
            "GetColor": u(lambda req, ctx: self.answer(req, ctx, "GetColor")),
            "ListColors": u(lambda req, ctx: self.answer(req, ctx, "ListColors")),
        })])
        try:
            bound = self.server.add_insecure_port(f"{addr}:{PORT}")
        except RuntimeError as e:  # grpcio raises when the port is taken
            bound, err = 0, e
        else:
            err = "in use"
        if bound != PORT:
            self.server.stop(0)
            raise OSError(bind_error(f"the grpc server {name}", addr, err))
        self.server.start()

    def close(self):
        self.server.stop(0).wait(5)

    def reset(self):
        with self.lock:
            self.calls.clear()
            self.counters.clear()

    def calls_with(self, key):
        with self.lock:
            return [c for c in self.calls if c["metadata"].get("x-fail-key") == key]

    def answer(self, request, context, method):
        md = dict(context.invocation_metadata())
        with self.lock:
            self.calls.append({"method": method, "metadata": md})
            key = md.get("x-fail-key")
            count = 0
            if key is not None:
                self.counters[key] = count = self.counters.get(key, 0) + 1
        if key is not None and count <= int(md.get("x-fail-count", "1")):
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.name} attempt {count} fails")
        return f"{self.name}:{method}:".encode() + request


class GrpcRouteExample(unittest.TestCase):
    """examples/grpc-route.yaml as shipped, from node client."""

    @classmethod
    def setUpClass(cls):
        cls.error = None
        cls.servers = []
        cls.dns = FakeDns()
        cls.dns.records.update({"color-v1.grpc.local": [V1_ADDR], "color-v2.grpc.local": [V2_ADDR]})
        try:
            cls.v1 = ColorServer("color-v1", V1_ADDR)
            cls.servers.append(cls.v1)
            cls.v2 = ColorServer("color-v2", V2_ADDR)
            cls.servers.append(cls.v2)
        except OSError as e:
            cls.error = str(e)

    @classmethod
    def tearDownClass(cls):
        for s in cls.servers:
            s.close()
        cls.dns.close()

    def setUp(self):
        if self.error:
            self.fail(self.error)
        for s in self.servers:
            s.reset()
        self.m = start_meshd(self, example("grpc-route.yaml"), self.dns)
        # The authority: the example's virtual service at its router listener's port.
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.m.port('egress')}", options=[
            ("grpc.default_authority", "color.grpc.local:8080"), ("grpc.enable_http_proxy", 0),
            ("grpc.use_local_subchannel_pool", 1), ("grpc.enable_retries", 0)])
        self.addCleanup(self.channel.close)

    def call(self, method, request=b"", metadata=()):
        """(response bytes or None, status code, details)."""
        try:
            resp, call = self.channel.unary_unary(method).with_call(request, timeout=5, metadata=list(metadata))
            return resp, grpc.StatusCode.OK, call.details()
        except grpc.RpcError as e:
            return None, e.code(), e.details()

    def test_get_color_without_metadata_goes_to_v1(self):
        for i in range(5):
            resp, code, details = self.call("/color.ColorService/GetColor", b"r%d" % i)
            self.assertEqual((code, resp), (grpc.StatusCode.OK, b"color-v1:GetColor:r%d" % i), details)
        self.assertEqual(len(self.v1.calls), 5)
        self.assertEqual(self.v2.calls, [])

    def test_get_color_with_canary_metadata_goes_to_v2(self):
        for i in range(5):
            resp, code, details = self.call("/color.ColorService/GetColor", b"c%d" % i, [("x-canary", "yes")])
            self.assertEqual((code, resp), (grpc.StatusCode.OK, b"color-v2:GetColor:c%d" % i), details)
        self.assertEqual(len(self.v2.calls), 5)
        self.assertEqual(self.v2.calls[0]["metadata"].get("x-canary"), "yes")
        self.assertEqual(self.v1.calls, [])
        # Another value is not the canary.
        resp, code, details = self.call("/color.ColorService/GetColor", b"n", [("x-canary", "no")])
        self.assertEqual((code, resp), (grpc.StatusCode.OK, b"color-v1:GetColor:n"), details)

    def test_another_method_of_the_service_goes_to_v1(self):
        resp, code, details = self.call("/color.ColorService/ListColors", b"a")
        self.assertEqual((code, resp), (grpc.StatusCode.OK, b"color-v1:ListColors:a"), details)
        # The canary route names GetColor: its metadata does not move another method.
        resp, code, details = self.call("/color.ColorService/ListColors", b"b", [("x-canary", "yes")])
        self.assertEqual((code, resp), (grpc.StatusCode.OK, b"color-v1:ListColors:b"), details)
        self.assertEqual([c["method"] for c in self.v1.calls], ["ListColors", "ListColors"])
        self.assertEqual(self.v2.calls, [])

    def test_another_service_has_no_route(self):
        resp, code, details = self.call("/other.Service/GetColor", b"x")
        self.assertEqual(code, grpc.StatusCode.UNIMPLEMENTED, details)  # meshd's no_route, trailers-only
        self.assertEqual((self.v1.calls, self.v2.calls), ([], []))

    def test_unavailable_is_retried(self):
        resp, code, details = self.call("/color.ColorService/GetColor", b"k", [("x-fail-key", "once")])
        self.assertEqual((code, resp), (grpc.StatusCode.OK, b"color-v1:GetColor:k"), details)
        self.assertEqual(len(self.v1.calls_with("once")), 2)  # the UNAVAILABLE answer, then the retry
        self.assertEqual(self.v2.calls, [])

    def test_retries_stop_at_max_retries(self):
        # maxRetries 3: four attempts, and the last UNAVAILABLE reaches the client.
        resp, code, details = self.call("/color.ColorService/GetColor", b"k",
                                        [("x-fail-key", "always"), ("x-fail-count", "100")])
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE, details)
        self.assertIn("color-v1 attempt 4 fails", details or "")
        self.assertEqual(len(self.v1.calls_with("always")), 4)


# ---------------------------------------------------------------- HTTP/2 servers
class H2Server:
    """An h2c server (python3-h2) on ADDR:8080, a thread per connection. Answers by path:
      /flaky/SERVER/KEY/STATUS   STATUS on SERVER's first request with KEY (200 on other servers)
      /fail/KEY/N/STATUS         STATUS for the first N requests with KEY counted over every
                                 server sharing `shared`, then 200
      anything else              200
    The body names the server; every request is recorded (path, headers)."""

    def __init__(self, name, addr, shared):
        self.name = name
        self.shared = shared  # {"lock": Lock, "counters": {}} shared with the other server
        self.requests = []
        self.counters = {}
        self.lock = threading.Lock()
        self.conns = []
        self.running = True
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((addr, PORT))
        except OSError as e:
            self.sock.close()
            raise OSError(bind_error(f"the HTTP/2 server {name}", addr, e))
        self.sock.listen(64)
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def close(self):
        self.running = False
        self.sock.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass

    def reset(self):
        with self.lock:
            self.requests.clear()
            self.counters.clear()

    def paths(self):
        with self.lock:
            return [r["path"] for r in self.requests]

    def accept_loop(self):
        for _ in range(10000):
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, sock):
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False,
                                                                           header_encoding="utf-8"))
        conn.initiate_connection()
        heads = {}
        sock.settimeout(0.5)
        try:
            sock.sendall(conn.data_to_send())
            for _ in range(100000):  # bounded: 0.5 s per idle read, and the test ends first
                if not self.running:
                    return
                try:
                    data = sock.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    return
                try:
                    events = conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    sock.sendall(conn.data_to_send())
                    return
                for ev in events:
                    if isinstance(ev, h2.events.RequestReceived):
                        heads[ev.stream_id] = dict(ev.headers)
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        self.respond(conn, ev.stream_id, heads.pop(ev.stream_id, {}))
                    elif isinstance(ev, h2.events.ConnectionTerminated):
                        sock.sendall(conn.data_to_send())
                        return
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
        except OSError:
            return
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def respond(self, conn, sid, head):
        path = head.get(":path", "")
        with self.lock:
            self.requests.append({"path": path, "headers": head})
        parts = path.split("/")
        status = 200
        if path.startswith("/flaky/") and len(parts) == 5:
            _, _, server, key, code = parts
            with self.lock:
                self.counters[key] = count = self.counters.get(key, 0) + 1
            if server == self.name and count == 1:
                status = int(code)
        elif path.startswith("/fail/") and len(parts) == 5:
            _, _, key, n, code = parts
            with self.shared["lock"]:
                counters = self.shared["counters"]
                counters[key] = count = counters.get(key, 0) + 1
            if count <= int(n):
                status = int(code)
        body = f"{self.name} {status}\n".encode()
        conn.send_headers(sid, [(":status", str(status)), ("content-type", "text/plain"),
                                ("content-length", str(len(body))), ("x-upstream", self.name)])
        conn.send_data(sid, body, end_stream=True)


class Http2RouteExample(unittest.TestCase):
    """examples/http2-route.yaml as shipped, from node client."""

    AUTHORITY = "backend.http2.local"  # the router's only listener (8080) takes it without a port

    @classmethod
    def setUpClass(cls):
        cls.error = None
        cls.servers = []
        cls.shared = {"lock": threading.Lock(), "counters": {}}
        cls.dns = FakeDns()
        cls.dns.records.update({"v1.http2.local": [V1_ADDR], "v2.http2.local": [V2_ADDR]})
        try:
            cls.v1 = H2Server("v1", V1_ADDR, cls.shared)
            cls.servers.append(cls.v1)
            cls.v2 = H2Server("v2", V2_ADDR, cls.shared)
            cls.servers.append(cls.v2)
        except OSError as e:
            cls.error = str(e)

    @classmethod
    def tearDownClass(cls):
        for s in cls.servers:
            s.close()
        cls.dns.close()

    def setUp(self):
        if self.error:
            self.fail(self.error)
        for s in self.servers:
            s.reset()
        with self.shared["lock"]:
            self.shared["counters"].clear()
        self.m = start_meshd(self, example("http2-route.yaml"), self.dns)
        self.client = H2Client(self.m.port("egress"))
        self.addCleanup(self.client.close)

    def get(self, path, headers=(), authority=AUTHORITY):
        r = self.client.get(path, authority, headers=list(headers), timeout=10)
        self.assertTrue(r.ended, f"{path}: no whole response: events {r.events}, reset {r.reset}")
        return r

    def test_canary_header_always_reaches_v2(self):
        for i in range(20):
            authority = self.AUTHORITY if i % 2 else self.AUTHORITY + ":8080"  # with and without the port
            r = self.get(f"/canary/{i}", [("x-canary", "yes")], authority)
            self.assertEqual((r.status, bytes(r.data)), (200, b"v2 200\n"), f"request {i}")
        self.assertEqual(len(self.v2.paths()), 20)
        self.assertEqual(self.v1.paths(), [])
        self.assertEqual(self.v2.requests[0]["headers"].get("x-canary"), "yes")

    def test_the_rest_is_split_80_20(self):
        counts = {"v1": 0, "v2": 0}
        for i in range(200):
            r = self.get(f"/split/{i}")
            self.assertEqual(r.status, 200, bytes(r.data))
            name = bytes(r.data).decode().split(" ")[0]
            self.assertIn(name, counts, bytes(r.data))
            counts[name] += 1
        self.assertEqual((len(self.v1.paths()), len(self.v2.paths())), (counts["v1"], counts["v2"]))
        # 20 % of 200: 40 ± 5.7; the band [20, 64] is more than 3.5 standard deviations wide each way.
        self.assertTrue(20 <= counts["v2"] <= 64, f"split {counts}")

    def retried_once_from_v1(self, status):
        """Requests whose first attempt v1 answers `status` (a server error) are retried
        and the client sees 200: until 5 requests have hit v1 first (bounded: 40)."""
        hit_v1_first = 0
        for i in range(40):
            key = f"k{status}-{i}"
            r = self.get(f"/flaky/v1/{key}/{status}")
            self.assertEqual(r.status, 200, bytes(r.data))
            attempts = [s.name for s in self.servers for p in s.paths() if f"/{key}/" in p]
            if len(attempts) == 1:
                # The first attempt went to v2 (20 %), which answered 200: nothing to retry.
                self.assertEqual(attempts, ["v2"])
                continue
            # v1 answered `status` first (v2 never fails these), then one retry (to v1
            # or v2) answered 200.
            self.assertEqual(len(attempts), 2, attempts)
            self.assertIn("v1", attempts)
            hit_v1_first += 1
            if hit_v1_first >= 5:
                break
        self.assertEqual(hit_v1_first, 5, "fewer than 5 of 40 requests reached v1 first")

    def test_a_503_from_v1_is_retried(self):
        self.retried_once_from_v1(503)

    def test_a_500_from_v1_is_retried(self):
        # 500 is a server-error but not in App Mesh's default retry events (503 only):
        # this is the example's retryPolicy at work.
        self.retried_once_from_v1(500)

    def test_retries_stop_at_max_retries(self):
        # maxRetries 2: three attempts in all (v1 or v2), and the last answer reaches the client.
        r = self.get("/fail/twice/2/502")
        self.assertEqual((r.status, bytes(r.data)[-4:]), (200, b"200\n"))
        r = self.get("/fail/always/100/500")
        self.assertEqual(r.status, 500, bytes(r.data))
        attempts = [p for s in self.servers for p in s.paths()]
        self.assertEqual(sum(1 for p in attempts if "/twice/" in p), 3, attempts)
        self.assertEqual(sum(1 for p in attempts if "/always/" in p), 3, attempts)

    def test_a_4xx_is_not_retried(self):
        r = self.get("/fail/client/1/404")
        self.assertEqual(r.status, 404, bytes(r.data))
        attempts = [p for s in self.servers for p in s.paths() if "/client/" in p]
        self.assertEqual(len(attempts), 1, attempts)


class Http2HealthChecks(unittest.TestCase):
    """healthCheck protocol http2 (SPEC §7: GET path over h2c, 2xx passes), against
    the python3-h2 servers above (not an example file: the same servers, two nodes
    whose checks are answered 200 and 503)."""

    GOOD, BAD = "127.0.0.4", "127.0.0.5"

    def test_http2_health_checks_mark_the_failing_endpoint_unhealthy(self):
        shared = {"lock": threading.Lock(), "counters": {}}
        try:
            good = H2Server("good", self.GOOD, shared)
        except OSError as e:
            self.fail(str(e))
        self.addCleanup(good.close)
        try:
            bad = H2Server("bad", self.BAD, shared)
        except OSError as e:
            self.fail(str(e))
        self.addCleanup(bad.close)
        check = ("healthCheck: {{protocol: http2, path: '{path}', healthyThreshold: 2, unhealthyThreshold: 2, "
                 "timeoutMillis: 2000, intervalMillis: 5000}}")
        text = f"""
mesh: {{name: h2-health}}
virtualNodes:
  - name: client
    spec:
      backends: [{{virtualService: {{virtualServiceName: good.h2.local}}}}, {{virtualService: {{virtualServiceName: bad.h2.local}}}}]
  - name: good
    spec:
      listeners:
        - portMapping: {{port: {PORT}, protocol: http2}}
          {check.format(path="/healthz")}
      serviceDiscovery: {{static: {{endpoints: [{{address: {self.GOOD}, port: {PORT}}}]}}}}
  - name: bad
    spec:
      listeners:
        - portMapping: {{port: {PORT}, protocol: http2}}
          {check.format(path="/fail/hc/100000/503")}
      serviceDiscovery: {{static: {{endpoints: [{{address: {self.BAD}, port: {PORT}}}]}}}}
virtualServices:
  - {{name: good.h2.local, spec: {{provider: {{virtualNode: {{virtualNodeName: good}}}}}}}}
  - {{name: bad.h2.local, spec: {{provider: {{virtualNode: {{virtualNodeName: bad}}}}}}}}
"""
        for _ in range(50):  # the binary may be briefly missing while it is rebuilt
            if os.path.exists(harness.MESHD):
                break
            time.sleep(0.2)
        m = Meshd(text, "client")
        self.addCleanup(m.stop_and_check, self)
        self.assertTrue(m.wait_ready(timeout=8), m.stderr())  # the first round of checks answered
        status, _, body = m.admin("/clusters")
        self.assertEqual(status, 200)
        health = {}
        for c in json.loads(body)["clusters"]:
            for e in c["endpoints"]:
                health[c["virtual_node"]] = e["healthy"]
        self.assertEqual(health, {"good": True, "bad": False}, body)
        # The checks came over HTTP/2, GET of the path, with meshd's user agent.
        self.assertIn("/healthz", good.paths())
        head = next(r["headers"] for r in good.requests if r["path"] == "/healthz")
        self.assertEqual((head.get(":method"), head.get("user-agent")), ("GET", "meshd-health-check"), head)
        self.assertIn("/fail/hc/100000/503", bad.paths())
        self.assertEqual(m.metric("meshd_endpoint_healthy", target_virtual_node="good"), 1)
        self.assertEqual(m.metric("meshd_endpoint_healthy", target_virtual_node="bad"), 0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--meshd", required=True)
    args, rest = parser.parse_known_args()
    harness.MESHD = args.meshd
    unittest.main(argv=[sys.argv[0], "-v", *rest])
