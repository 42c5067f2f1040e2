#!/usr/bin/env python3
"""`meshd run` carrying gRPC (SPEC §3, §5, §7): a grpcio client calls through the
egress (h2c) and meshd calls grpcio servers over HTTP/2 (their listeners are grpc).
Unary and the three streaming kinds, status and trailing metadata passed back,
grpcRoute matching (serviceName, methodName, metadata), grpcRetryEvents and the
default gRPC retry, grpc-timeout, meshd's trailers-only local replies,
meshd_grpc_responses_total, connectionPool.grpc.maxRequests at the app, grpc health
checks, and an HTTP/1.1 caller of a gRPC upstream. No generated code: grpcio's
generic handlers with raw bytes."""
import argparse
import json
import os
import queue
import shutil
import socket
import sys
import tempfile
import threading
import time
import unittest

try:
    from concurrent import futures

    import grpc
    import h2.connection  # noqa: F401  (test_http2's client needs python3-h2 too)
except ImportError:  # python3-grpcio and python3-h2 are Debian's: run under Debian's interpreter (as ctest does)
    if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3", *sys.argv])
    raise

import harness
from harness import Meshd
from test_http2 import H2Client

AUTHORITY = "color.grpc.local:8080"
SERVING, NOT_SERVING = 1, 2


# ---------------------------------------------------------------- fake gRPC servers
class GrpcServer:
    """A grpcio server on 127.0.0.1:0 whose methods record every call (method,
    metadata, :authority, deadline left, request bytes) and behave by metadata:
      color.ColorService/GetColor, /Echo   NAME:REQUEST, trailing metadata x-served-by, x-trailer
      color.ColorService/Sleep             sleeps x-sleep-ms, answers b"slept"
      color.ColorService/Fail              aborts with x-code (a StatusCode name) and x-details
      color.ColorService/ServerStream      10 messages NAME-0..NAME-9
      color.ColorService/ClientStream      the count and the messages joined
      color.ColorService/Chat              one answer per message, as each arrives
      test.Retry/Flaky, /FlakyDefault      aborts with x-code (UNAVAILABLE) for the first x-fail calls of x-key
      grpc.health.v1.Health/Check          `health` (SERVING / NOT_SERVING), or not implemented when None"""

    def __init__(self, name, health=SERVING):
        self.name = name
        self.health = health
        self.calls = []
        self.health_checks = []  # request bytes of each Health/Check
        self.counters = {}
        self.in_flight = 0
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16),
                                  options=[("grpc.so_reuseport", 0)])
        u = grpc.unary_unary_rpc_method_handler
        color = {
            "GetColor": u(lambda req, ctx: self.get_color(req, ctx, "GetColor")),
            "Echo": u(lambda req, ctx: self.get_color(req, ctx, "Echo")),
            "Sleep": u(self.sleep),
            "Fail": u(self.fail),
            "ServerStream": grpc.unary_stream_rpc_method_handler(self.server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(self.client_stream),
            "Chat": grpc.stream_stream_rpc_method_handler(self.chat),
        }
        handlers = [grpc.method_handlers_generic_handler("color.ColorService", color),
                    grpc.method_handlers_generic_handler("test.Retry", {"Flaky": u(self.flaky),
                                                                        "FlakyDefault": u(self.flaky)})]
        if health is not None:
            handlers.append(grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": u(self.check)}))
        self.server.add_generic_rpc_handlers(handlers)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def close(self):
        self.server.stop(0)

    def record(self, context, method, request=b""):
        details = getattr(getattr(context, "_rpc_event", None), "call_details", None)  # grpcio keeps :authority here
        host = getattr(details, "host", None)
        call = {"method": method, "metadata": dict(context.invocation_metadata()),
                "authority": host.decode() if isinstance(host, bytes) else host,
                "time_remaining": context.time_remaining(), "request": request}
        with self.lock:
            self.calls.append(call)
        return call

    def calls_to(self, method):
        with self.lock:
            return [c for c in self.calls if c["method"] == method]

    def get_color(self, request, context, method):
        self.record(context, method, request)
        context.set_trailing_metadata((("x-served-by", self.name), ("x-trailer", "t1")))
        return self.name.encode() + b":" + request

    def sleep(self, request, context):
        call = self.record(context, "Sleep", request)
        with self.lock:
            self.in_flight += 1
        try:
            time.sleep(int(call["metadata"].get("x-sleep-ms", "0")) / 1000)
        finally:
            with self.lock:
                self.in_flight -= 1
        return b"slept"

    def fail(self, request, context):
        call = self.record(context, "Fail", request)
        context.abort(getattr(grpc.StatusCode, call["metadata"]["x-code"]), call["metadata"].get("x-details", ""))

    def server_stream(self, request, context):
        self.record(context, "ServerStream", request)
        for i in range(10):
            yield f"{self.name}-{i}".encode()

    def client_stream(self, request_iterator, context):
        self.record(context, "ClientStream")
        got = [m for m in request_iterator]
        return f"{len(got)}:".encode() + b"|".join(got)

    def chat(self, request_iterator, context):
        self.record(context, "Chat")
        for m in request_iterator:
            yield b"re:" + m

    def flaky(self, request, context):
        call = self.record(context, "Flaky", request)
        md = call["metadata"]
        key = md["x-key"]
        with self.lock:
            self.counters[key] = self.counters.get(key, 0) + 1
            count = self.counters[key]
        if count <= int(md.get("x-fail", "0")):
            context.abort(getattr(grpc.StatusCode, md.get("x-code", "UNAVAILABLE")), f"attempt {count} fails")
        return f"attempt {count}".encode()

    def check(self, request, context):
        with self.lock:
            self.health_checks.append(request)
        return bytes([0x08, self.health])


class SilentServer:
    """Accepts connections on 127.0.0.1:0 and never answers (reads and discards)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.running = True
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        for _ in range(10000):
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self.drain, args=(c,), daemon=True).start()

    @staticmethod
    def drain(c):
        for _ in range(100000):
            try:
                if not c.recv(65536):
                    return
            except OSError:
                return

    def close(self):
        self.running = False
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


# ---------------------------------------------------------------- meshes
def grpc_mesh(v1, v2, silent):
    return f"""
mesh: {{name: grpc-mesh}}
virtualNodes:
  - name: client
    spec:
      backends:
        - virtualService: {{virtualServiceName: color.grpc.local}}
        - virtualService: {{virtualServiceName: retry.grpc.local}}
        - virtualService: {{virtualServiceName: silent.grpc.local}}
      logging: {{accessLog: {{file: {{path: ACCESS_LOG}}}}}}
  - name: color-v1
    spec:
      listeners: [{{portMapping: {{port: 8080, protocol: grpc}}}}]
      serviceDiscovery: {{static: {{endpoints: [{{address: 127.0.0.1, port: {v1}}}]}}}}
  - name: color-v2
    spec:
      listeners: [{{portMapping: {{port: 8080, protocol: grpc}}}}]
      serviceDiscovery: {{static: {{endpoints: [{{address: 127.0.0.1, port: {v2}}}]}}}}
  - name: silent
    spec:
      listeners: [{{portMapping: {{port: 8080, protocol: grpc}}}}]
      serviceDiscovery: {{static: {{endpoints: [{{address: 127.0.0.1, port: {silent}}}]}}}}
  - name: pooled
    spec:
      listeners:
        - portMapping: {{port: 8080, protocol: grpc}}
          connectionPool: {{grpc: {{maxRequests: 1}}}}
      serviceDiscovery: {{static: {{endpoints: [{{address: 127.0.0.1, port: {v1}}}]}}}}
virtualServices:
  - name: color.grpc.local
    spec: {{provider: {{virtualRouter: {{virtualRouterName: color-router}}}}}}
  - name: retry.grpc.local
    spec: {{provider: {{virtualRouter: {{virtualRouterName: retry-router}}}}}}
  - name: silent.grpc.local
    spec: {{provider: {{virtualNode: {{virtualNodeName: silent}}}}}}
virtualRouters:
  - name: color-router
    spec: {{listeners: [{{portMapping: {{port: 8080, protocol: grpc}}}}]}}
  - name: retry-router
    spec: {{listeners: [{{portMapping: {{port: 8080, protocol: grpc}}}}]}}
routes:
  - name: canary-method
    virtualRouterName: color-router
    spec:
      priority: 1
      grpcRoute:
        match:
          serviceName: color.ColorService
          methodName: GetColor
          metadata: [{{name: x-canary, match: {{exact: "yes"}}}}]
        action: {{weightedTargets: [{{virtualNode: color-v2, weight: 1}}]}}
  - name: service
    virtualRouterName: color-router
    spec:
      priority: 2
      grpcRoute:
        match: {{serviceName: color.ColorService}}
        action: {{weightedTargets: [{{virtualNode: color-v1, weight: 1}}]}}
  - name: explicit
    virtualRouterName: retry-router
    spec:
      priority: 1
      grpcRoute:
        match: {{serviceName: test.Retry, methodName: Flaky}}
        action: {{weightedTargets: [{{virtualNode: color-v1, weight: 1}}]}}
        retryPolicy:
          maxRetries: 3
          perRetryTimeout: {{value: 2, unit: s}}
          grpcRetryEvents: [unavailable]
  - name: default
    virtualRouterName: retry-router
    spec:
      priority: 2
      grpcRoute:
        match: {{serviceName: test.Retry}}
        action: {{weightedTargets: [{{virtualNode: color-v1, weight: 1}}]}}
"""


def health_mesh(serving, not_serving, unimplemented):
    check = ("healthCheck: {protocol: grpc, healthyThreshold: 2, unhealthyThreshold: 2, "
             "timeoutMillis: 2000, intervalMillis: 5000}")
    return f"""
mesh: {{name: grpc-health}}
virtualNodes:
  - name: client
    spec:
      backends:
        - virtualService: {{virtualServiceName: mixed.grpc.local}}
        - virtualService: {{virtualServiceName: lone.grpc.local}}
  - name: mixed
    spec:
      listeners:
        - portMapping: {{port: 8080, protocol: grpc}}
          {check}
      serviceDiscovery:
        static: {{endpoints: [{{address: 127.0.0.1, port: {serving}}}, {{address: 127.0.0.1, port: {not_serving}}}]}}
  - name: lone
    spec:
      listeners:
        - portMapping: {{port: 8080, protocol: grpc}}
          {check}
      serviceDiscovery: {{static: {{endpoints: [{{address: 127.0.0.1, port: {unimplemented}}}]}}}}
virtualServices:
  - {{name: mixed.grpc.local, spec: {{provider: {{virtualNode: {{virtualNodeName: mixed}}}}}}}}
  - {{name: lone.grpc.local, spec: {{provider: {{virtualNode: {{virtualNodeName: lone}}}}}}}}
"""


def frame(msg):
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


def unframe(body):
    """The messages of a gRPC body (length-prefixed, uncompressed)."""
    out, i = [], 0
    while i + 5 <= len(body):
        n = int.from_bytes(body[i + 1:i + 5], "big")
        out.append(body[i + 5:i + 5 + n])
        i += 5 + n
    if i != len(body):
        raise AssertionError(f"not whole gRPC frames: {body!r}")
    return out


def http1_exchange(port, head_and_body, timeout=5):
    """Sends an HTTP/1.1 request (with Connection: close) and parses the whole answer:
    (status, headers {lowercased: value}, body, trailers {lowercased: value}, chunked)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head_and_body)
        data = b""
        for _ in range(10000):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        n, v = line.split(":", 1)
        headers[n.strip().lower()] = v.strip()
    trailers = {}
    chunked = headers.get("transfer-encoding", "").lower() == "chunked"
    if not chunked:
        n = int(headers.get("content-length", len(rest)))
        return status, headers, rest[:n], trailers, False
    body = b""
    for _ in range(100000):
        line, rest = rest.split(b"\r\n", 1)
        size = int(line.split(b";")[0], 16)
        if size == 0:
            break
        body += rest[:size]
        rest = rest[size + 2:]
    for line in rest.decode("latin-1").split("\r\n"):
        if not line:
            break
        n, v = line.split(":", 1)
        trailers[n.strip().lower()] = v.strip()
    return status, headers, body, trailers, True


# ---------------------------------------------------------------- tests
class Base(unittest.TestCase):
    def setUp(self):
        self.t0 = time.time()
        self.v1 = GrpcServer("v1")
        self.v2 = GrpcServer("v2")
        self.silent = SilentServer()
        self.servers = [self.v1, self.v2]
        self.tmp = tempfile.mkdtemp(prefix="meshd-grpc-")
        self.access_log = os.path.join(self.tmp, "access.log")
        self.meshes = []
        self.channels = []

    def tearDown(self):
        for c in self.channels:
            c.close()
        for m in self.meshes:
            m.stop_and_check(self)
        for s in self.servers:
            s.close()
        self.silent.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, mesh_text=None, node="client", **kw):
        text = (mesh_text or grpc_mesh(self.v1.port, self.v2.port, self.silent.port)).replace(
            "ACCESS_LOG", self.access_log)
        for _ in range(50):  # the binary may be briefly missing while it is rebuilt
            if os.path.exists(harness.MESHD):
                break
            time.sleep(0.2)
        m = Meshd(text, node, **kw)
        self.meshes.append(m)
        return m

    def channel(self, port, authority=AUTHORITY):
        c = grpc.insecure_channel(f"127.0.0.1:{port}", options=[
            ("grpc.default_authority", authority), ("grpc.enable_http_proxy", 0),
            ("grpc.use_local_subchannel_pool", 1), ("grpc.enable_retries", 0)])
        self.channels.append(c)
        return c

    def unary(self, channel, method, request=b"", timeout=5, metadata=()):
        """(response, trailing metadata dict, code, details); code OK on success."""
        try:
            resp, call = channel.unary_unary(method).with_call(request, timeout=timeout, metadata=list(metadata))
            return resp, dict(call.trailing_metadata() or ()), grpc.StatusCode.OK, call.details()
        except grpc.RpcError as e:
            return None, dict(e.trailing_metadata() or ()), e.code(), e.details()

    def access_lines(self, count, timeout=3):
        lines = []
        for _ in range(int(timeout * 50)):  # a line is written just after the response
            if os.path.exists(self.access_log):
                with open(self.access_log) as f:
                    lines = f.read().splitlines()
            if len(lines) >= count:
                break
            time.sleep(0.02)
        return lines


class Calls(Base):
    def test_unary_call_reaches_the_routed_server_with_metadata_authority_and_trailers(self):
        m = self.start()
        ch = self.channel(m.port("egress"))
        resp, trailing, code, details = self.unary(ch, "/color.ColorService/Echo", b"hello",
                                                   metadata=[("x-caller", "tester"), ("x-request-id", "rid-g1")])
        self.assertEqual(code, grpc.StatusCode.OK, details)
        self.assertEqual(resp, b"v1:hello")
        self.assertEqual(trailing.get("x-served-by"), "v1", trailing)
        self.assertEqual(trailing.get("x-trailer"), "t1", trailing)
        calls = self.v1.calls_to("Echo")
        self.assertEqual(len(calls), 1, calls)
        self.assertEqual(calls[0]["request"], b"hello")
        self.assertEqual(calls[0]["metadata"].get("x-caller"), "tester", calls[0]["metadata"])
        self.assertEqual(calls[0]["metadata"].get("x-request-id"), "rid-g1", calls[0]["metadata"])
        self.assertEqual(calls[0]["authority"], AUTHORITY)
        self.assertEqual(self.v2.calls, [])
        # The access log names the call's route and the HTTP/2 request.
        lines = self.access_lines(1)
        self.assertTrue(any('"POST /color.ColorService/Echo HTTP/2" 200' in l and " service " in l for l in lines),
                        lines)

    def test_server_streaming_client_streaming_and_bidirectional_streams(self):
        m = self.start()
        ch = self.channel(m.port("egress"))
        got = list(ch.unary_stream("/color.ColorService/ServerStream")(b"go", timeout=5))
        self.assertEqual(got, [f"v1-{i}".encode() for i in range(10)])

        sent = [f"c{i}".encode() for i in range(10)]
        resp = ch.stream_unary("/color.ColorService/ClientStream")(iter(sent), timeout=5)
        self.assertEqual(resp, b"10:" + b"|".join(sent))

        # Each message is sent only after the answer to the one before it came back:
        # this finishes only if both directions flow at once through meshd.
        q = queue.Queue()

        def requests():
            for _ in range(10):
                item = q.get(timeout=5)
                if item is None:
                    return
                yield item

        call = ch.stream_stream("/color.ColorService/Chat")(requests(), timeout=10)
        q.put(b"m0")
        replies = []
        try:
            for reply in call:
                replies.append(reply)
                if len(replies) < 10:
                    q.put(f"m{len(replies)}".encode())
        finally:
            q.put(None)
        self.assertEqual(replies, [f"re:m{i}".encode() for i in range(10)])
        self.assertEqual(call.code(), grpc.StatusCode.OK)
        self.assertEqual(len(self.v1.calls_to("Chat")), 1)

    def test_error_status_and_details_propagate(self):
        m = self.start()
        ch = self.channel(m.port("egress"))
        resp, trailing, code, details = self.unary(ch, "/color.ColorService/Fail", b"x", metadata=[
            ("x-code", "NOT_FOUND"), ("x-details", "no such color: mauve")])
        self.assertEqual(code, grpc.StatusCode.NOT_FOUND)
        self.assertEqual(details, "no such color: mauve")
        self.assertNotIn("x-meshd-error", trailing)
        self.assertEqual(len(self.v1.calls_to("Fail")), 1)  # NOT_FOUND is not retried by default

    def test_routing_by_method_name_and_metadata(self):
        m = self.start()
        ch = self.channel(m.port("egress"))
        cases = [("/color.ColorService/GetColor", [("x-canary", "yes")], b"v2:"),
                 ("/color.ColorService/GetColor", [], b"v1:"),
                 ("/color.ColorService/GetColor", [("x-canary", "no")], b"v1:"),
                 ("/color.ColorService/Echo", [("x-canary", "yes")], b"v1:")]  # method differs
        for method, md, want in cases:
            resp, trailing, code, details = self.unary(ch, method, b"q", metadata=md)
            self.assertEqual(code, grpc.StatusCode.OK, (method, md, details))
            self.assertEqual(resp, want + b"q", (method, md))
        self.assertEqual(len(self.v2.calls), 1, self.v2.calls)
        self.assertEqual(len(self.v1.calls), 3, self.v1.calls)
        self.assertEqual(m.metric_reaches(1, "meshd_grpc_responses_total", route="canary-method",
                                          target_virtual_node="color-v2", grpc_status="0"), 1)
        self.assertEqual(m.metric_reaches(3, "meshd_grpc_responses_total", route="service",
                                          target_virtual_node="color-v1", grpc_status="0"), 3)


class Retries(Base):
    def test_grpc_retry_events_retry_unavailable_and_not_other_codes(self):
        m = self.start()
        ch = self.channel(m.port("egress"), "retry.grpc.local:8080")
        resp, trailing, code, details = self.unary(ch, "/test.Retry/Flaky", b"r", metadata=[
            ("x-key", "retry-a"), ("x-fail", "2")])
        self.assertEqual(code, grpc.StatusCode.OK, details)
        self.assertEqual(resp, b"attempt 3")
        self.assertEqual(self.v1.counters.get("retry-a"), 3)
        self.assertEqual(m.metric_reaches(2, "meshd_upstream_retries_total", virtual_service="retry.grpc.local",
                                          route="explicit"), 2)
        # NOT_FOUND is not among the route's grpcRetryEvents: one attempt.
        resp, trailing, code, details = self.unary(ch, "/test.Retry/Flaky", b"r", metadata=[
            ("x-key", "retry-b"), ("x-fail", "5"), ("x-code", "NOT_FOUND")])
        self.assertEqual(code, grpc.StatusCode.NOT_FOUND, details)
        self.assertEqual(details, "attempt 1 fails")
        self.assertEqual(self.v1.counters.get("retry-b"), 1)
        time.sleep(0.2)
        self.assertEqual(self.v1.counters.get("retry-b"), 1)
        self.assertEqual(m.metric("meshd_upstream_retries_total", virtual_service="retry.grpc.local",
                                  route="explicit"), 2)
        # maxRetries 3: a call that keeps failing is tried 4 times, then the last status is passed back.
        resp, trailing, code, details = self.unary(ch, "/test.Retry/Flaky", b"r", metadata=[
            ("x-key", "retry-c"), ("x-fail", "10")])
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE, details)
        self.assertEqual(details, "attempt 4 fails")
        self.assertEqual(self.v1.counters.get("retry-c"), 4)

    def test_grpc_route_without_retry_policy_retries_unavailable_twice(self):
        m = self.start()
        ch = self.channel(m.port("egress"), "retry.grpc.local:8080")
        resp, trailing, code, details = self.unary(ch, "/test.Retry/FlakyDefault", b"r", metadata=[
            ("x-key", "default-a"), ("x-fail", "2")])
        self.assertEqual(code, grpc.StatusCode.OK, details)
        self.assertEqual(resp, b"attempt 3")
        self.assertEqual(self.v1.counters.get("default-a"), 3)
        resp, trailing, code, details = self.unary(ch, "/test.Retry/FlakyDefault", b"r", metadata=[
            ("x-key", "default-b"), ("x-fail", "10")])
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE, details)
        self.assertEqual(self.v1.counters.get("default-b"), 3)  # 1 + App Mesh's 2 default retries
        self.assertEqual(m.metric_reaches(4, "meshd_upstream_retries_total", virtual_service="retry.grpc.local",
                                          route="default"), 4)


class Deadlines(Base):
    def test_client_deadline_ends_a_slow_call_early(self):
        m = self.start()
        ch = self.channel(m.port("egress"))
        t = time.time()
        resp, trailing, code, details = self.unary(ch, "/color.ColorService/Sleep", timeout=0.5,
                                                   metadata=[("x-sleep-ms", "2000")])
        elapsed = time.time() - t
        self.assertEqual(code, grpc.StatusCode.DEADLINE_EXCEEDED, details)
        self.assertLess(elapsed, 1.5)
        calls = self.v1.calls_to("Sleep")
        self.assertEqual(len(calls), 1)
        # The grpc-timeout reached the server (its deadline is the caller's).
        self.assertGreater(calls[0]["time_remaining"], 0)
        self.assertLessEqual(calls[0]["time_remaining"], 0.5)

    def test_grpc_timeout_caps_the_request_and_meshd_answers_deadline_exceeded(self):
        # No client-side deadline: only meshd can end this call (the upstream never answers).
        m = self.start()
        c = H2Client(m.port("egress"))
        try:
            t = time.time()
            sid = c.request("/color.ColorService/Sleep", "silent.grpc.local:8080", method="POST",
                            headers=[("content-type", "application/grpc"), ("te", "trailers"),
                                     ("grpc-timeout", "300m")], body=frame(b""))
            self.assertTrue(c.wait(lambda: c.responses[sid].done(), 5))
            elapsed = time.time() - t
        finally:
            c.close()
        r = c.responses[sid]
        self.assertEqual((r.status, r.field("grpc-status"), r.field("x-meshd-error")), (200, "4", "upstream_timeout"),
                         r.headers)
        self.assertTrue(r.head_ended_stream, r.events)  # trailers-only
        self.assertEqual(r.field("content-type"), "application/grpc")
        self.assertGreaterEqual(elapsed, 0.25)
        self.assertLess(elapsed, 1.5)
        self.assertEqual(m.metric_reaches(1, "meshd_grpc_responses_total", direction="egress",
                                          virtual_service="silent.grpc.local", target_virtual_node="silent",
                                          grpc_status="4"), 1)


class LocalReplies(Base):
    def test_not_a_backend_is_permission_denied_and_unrouted_method_unimplemented(self):
        m = self.start()
        denied = self.channel(m.port("egress"), "elsewhere.grpc.local:8080")
        resp, trailing, code, details = self.unary(denied, "/color.ColorService/GetColor", b"x")
        self.assertEqual(code, grpc.StatusCode.PERMISSION_DENIED, (code, details, trailing))
        self.assertTrue(details, trailing)
        self.assertEqual(trailing.get("x-meshd-error"), "egress_denied", trailing)

        ch = self.channel(m.port("egress"))
        resp, trailing, code, details = self.unary(ch, "/other.Service/GetColor", b"x")
        self.assertEqual(code, grpc.StatusCode.UNIMPLEMENTED, (code, details, trailing))
        self.assertTrue(details, trailing)
        self.assertEqual(trailing.get("x-meshd-error"), "no_route", trailing)
        self.assertEqual(self.v1.calls + self.v2.calls, [])

    def test_grpc_responses_metric_counts_each_status(self):
        m = self.start()
        ch = self.channel(m.port("egress"))
        self.assertEqual(self.unary(ch, "/color.ColorService/Echo", b"a")[2], grpc.StatusCode.OK)
        self.assertEqual(self.unary(ch, "/color.ColorService/Echo", b"b")[2], grpc.StatusCode.OK)
        self.assertEqual(self.unary(ch, "/color.ColorService/Fail", metadata=[("x-code", "NOT_FOUND")])[2],
                         grpc.StatusCode.NOT_FOUND)
        self.assertEqual(self.unary(ch, "/nope.Service/M")[2], grpc.StatusCode.UNIMPLEMENTED)
        denied = self.channel(m.port("egress"), "elsewhere.grpc.local")
        self.assertEqual(self.unary(denied, "/color.ColorService/Echo")[2], grpc.StatusCode.PERMISSION_DENIED)
        retry = self.channel(m.port("egress"), "retry.grpc.local:8080")
        self.assertEqual(self.unary(retry, "/test.Retry/Flaky", metadata=[("x-key", "k"), ("x-fail", "9")])[2],
                         grpc.StatusCode.UNAVAILABLE)
        base = dict(direction="egress", virtual_service="color.grpc.local")
        self.assertEqual(m.metric_reaches(2, "meshd_grpc_responses_total", route="service",
                                          target_virtual_node="color-v1", grpc_status="0", **base), 2)
        self.assertEqual(m.metric_reaches(1, "meshd_grpc_responses_total", route="service",
                                          target_virtual_node="color-v1", grpc_status="5", **base), 1)
        self.assertEqual(m.metric_reaches(1, "meshd_grpc_responses_total", route="", target_virtual_node="",
                                          grpc_status="12", **base), 1)
        self.assertEqual(m.metric_reaches(1, "meshd_grpc_responses_total", direction="egress", virtual_service="",
                                          route="", target_virtual_node="", grpc_status="7"), 1)
        self.assertEqual(m.metric_reaches(1, "meshd_grpc_responses_total", direction="egress",
                                          virtual_service="retry.grpc.local", route="explicit",
                                          target_virtual_node="color-v1", grpc_status="14"), 1)
        self.assertEqual(m.metric("meshd_grpc_responses_total"), 6, m.admin("/metrics")[2].decode())
        # The answers were 200s at the HTTP layer (trailers-only for the local ones).
        self.assertEqual(m.metric("meshd_requests_total", direction="egress", code="200"), 6)


class Ingress(Base):
    def test_grpc_connection_pool_max_requests_refuses_the_second_concurrent_call(self):
        m = self.start(node="pooled", app_port=self.v1.port)
        ch = self.channel(m.port("ingress"), "pooled.grpc.local:8080")
        sleep = ch.unary_unary("/color.ColorService/Sleep")
        first = sleep.future(b"", timeout=10, metadata=[("x-sleep-ms", "1500")])
        for _ in range(250):  # bounded: until the app has the first call
            if self.v1.in_flight == 1:
                break
            time.sleep(0.02)
        self.assertEqual(self.v1.in_flight, 1)
        t = time.time()
        resp, trailing, code, details = self.unary(ch, "/color.ColorService/Echo", b"second")
        self.assertLess(time.time() - t, 1.0)  # no queue
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE, (code, details, trailing))
        self.assertEqual(trailing.get("x-meshd-error"), "overflow", (details, trailing))
        self.assertEqual(self.v1.calls_to("Echo"), [])
        self.assertEqual(first.result(timeout=5), b"slept")
        resp, trailing, code, details = self.unary(ch, "/color.ColorService/Echo", b"third")
        self.assertEqual((code, resp), (grpc.StatusCode.OK, b"v1:third"), details)
        self.assertEqual(m.metric_reaches(1, "meshd_upstream_overflow_total"), 1)
        self.assertEqual(m.metric_reaches(1, "meshd_grpc_responses_total", direction="ingress", grpc_status="14"), 1)
        self.assertEqual(m.metric_reaches(2, "meshd_grpc_responses_total", direction="ingress", grpc_status="0"), 2)


class HealthChecks(Base):
    def test_grpc_health_checks_mark_endpoints_and_route_to_the_serving_one(self):
        serving = GrpcServer("serving", health=SERVING)
        not_serving = GrpcServer("not-serving", health=NOT_SERVING)
        unimplemented = GrpcServer("no-health", health=None)
        self.servers += [serving, not_serving, unimplemented]
        m = self.start(health_mesh(serving.port, not_serving.port, unimplemented.port))
        self.assertTrue(m.wait_ready(), m.stderr())  # the first health-check round answered
        status, _, body = m.admin("/clusters")
        self.assertEqual(status, 200)
        health = {}
        for c in json.loads(body)["clusters"]:
            for e in c["endpoints"]:
                health[(c["virtual_node"], e["address"])] = e["healthy"]
        self.assertEqual(health, {("mixed", f"127.0.0.1:{serving.port}"): True,
                                  ("mixed", f"127.0.0.1:{not_serving.port}"): False,
                                  ("lone", f"127.0.0.1:{unimplemented.port}"): False}, body)
        self.assertEqual(m.metric("meshd_endpoint_healthy", target_virtual_node="mixed",
                                  endpoint=f"127.0.0.1:{serving.port}"), 1)
        self.assertEqual(m.metric("meshd_endpoint_healthy", target_virtual_node="mixed",
                                  endpoint=f"127.0.0.1:{not_serving.port}"), 0)
        self.assertEqual(m.metric("meshd_endpoint_healthy", target_virtual_node="lone"), 0)
        # The check is grpc.health.v1.Health/Check with an empty HealthCheckRequest.
        self.assertGreaterEqual(len(serving.health_checks), 1)
        self.assertEqual(set(serving.health_checks + not_serving.health_checks), {b""})
        # One of two endpoints usable: no panic, every call goes to the serving one.
        ch = self.channel(m.port("egress"), "mixed.grpc.local:8080")
        for i in range(10):
            resp, trailing, code, details = self.unary(ch, "/color.ColorService/Echo", b"%d" % i)
            self.assertEqual((code, resp), (grpc.StatusCode.OK, b"serving:%d" % i), details)
        self.assertEqual(len(serving.calls_to("Echo")), 10)
        self.assertEqual(not_serving.calls, [])
        # The only endpoint failing its check: under the panic threshold meshd spreads
        # over all checked endpoints (SPEC §3), so the call still reaches it.
        ch = self.channel(m.port("egress"), "lone.grpc.local:8080")
        resp, trailing, code, details = self.unary(ch, "/color.ColorService/Echo", b"p")
        self.assertEqual((code, resp), (grpc.StatusCode.OK, b"no-health:p"), (details, trailing))


class Http1Callers(Base):
    def request(self, m, path, msg, extra=""):
        body = frame(msg)
        head = (f"POST {path} HTTP/1.1\r\nHost: {AUTHORITY}\r\nContent-Type: application/grpc\r\n"
                f"TE: trailers\r\nContent-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n")
        return http1_exchange(m.port("egress"), head.encode() + body)

    def test_http1_grpc_post_reaches_the_http2_server_with_trailers_kept(self):
        m = self.start()
        status, headers, body, trailers, chunked = self.request(m, "/color.ColorService/Echo", b"from-h1",
                                                                "x-caller: h1\r\n")
        self.assertEqual(status, 200, (headers, body))
        self.assertTrue(headers.get("content-type", "").startswith("application/grpc"), headers)
        self.assertEqual(len(self.v1.calls_to("Echo")), 1, (headers, body, trailers))
        self.assertEqual(unframe(body), [b"v1:from-h1"], (headers, trailers))
        # The response had a body, so its grpc-status is a trailer: chunked trailers.
        self.assertTrue(chunked, headers)
        self.assertEqual(trailers.get("grpc-status"), "0", (headers, trailers))
        self.assertEqual(trailers.get("x-trailer"), "t1", trailers)
        self.assertNotIn("grpc-status", headers)
        calls = self.v1.calls_to("Echo")
        self.assertEqual(len(calls), 1)
        self.assertEqual(calls[0]["request"], b"from-h1")
        self.assertEqual(calls[0]["metadata"].get("x-caller"), "h1")
        self.assertEqual(calls[0]["authority"], AUTHORITY)
        # A trailers-only error answer: its status fields arrive (as headers or trailers).
        status, headers, body, trailers, chunked = self.request(
            m, "/color.ColorService/Fail", b"", "x-code: NOT_FOUND\r\nx-details: gone\r\n")
        self.assertEqual(status, 200, (headers, body))
        fields = {**headers, **trailers}
        self.assertEqual((fields.get("grpc-status"), fields.get("grpc-message")), ("5", "gone"), (headers, trailers))
        self.assertEqual(body, b"")

    def test_http1_trailers_only_answer_is_framed_on_a_kept_alive_connection(self):
        # The upstream's trailers-only answer (HEADERS with END_STREAM) becomes an
        # HTTP/1.1 response without a body: it must say so (content-length: 0, or an
        # empty chunked body) or the client waits for a close that never comes.
        m = self.start()
        body = frame(b"")
        with socket.create_connection(("127.0.0.1", m.port("egress")), timeout=3) as s:
            s.sendall((f"POST /color.ColorService/Fail HTTP/1.1\r\nHost: {AUTHORITY}\r\n"
                       f"Content-Type: application/grpc\r\nTE: trailers\r\nx-code: NOT_FOUND\r\n"
                       f"x-details: gone\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
            data = b""
            for _ in range(1000):  # bounded: the head
                if b"\r\n\r\n" in data:
                    break
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, rest = data.split(b"\r\n\r\n", 1)
            hmap = {n.strip().lower(): v.strip() for n, v in
                    (l.split(":", 1) for l in head.decode("latin-1").split("\r\n")[1:])}
            self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
            self.assertIn("grpc-status", hmap, head)  # whatever the status, it came as a header
            chunked = hmap.get("transfer-encoding", "").lower() == "chunked"
            self.assertTrue(hmap.get("content-length") == "0" or chunked, head)
            if chunked:  # an empty chunked body (maybe with trailers) ends with an empty line
                for _ in range(1000):
                    if rest.startswith(b"0\r\n") and rest.endswith(b"\r\n\r\n"):
                        break
                    rest += s.recv(65536)
            else:
                self.assertEqual(rest, b"")
            # The connection is still usable: a second request on it is answered.
            s.sendall((f"POST /a/b HTTP/1.1\r\nHost: nope.local\r\nContent-Type: application/grpc\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
            status, headers, _, _ = harness.read_response(s)
            self.assertEqual((status, harness.header(headers, "grpc-status"), harness.header(headers, "x-meshd-error")),
                             (200, "7", "egress_denied"), headers)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--meshd", required=True)
    args, rest = parser.parse_known_args()
    harness.MESHD = args.meshd
    unittest.main(argv=[sys.argv[0], "-v", *rest])
