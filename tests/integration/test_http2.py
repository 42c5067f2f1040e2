#!/usr/bin/env python3
"""`meshd run` serving HTTP/2 downstream (SPEC §7): h2c with prior knowledge on the
egress and ingress listeners, each stream one request forwarded to an HTTP/1.1
upstream as an HTTP/1.1 request would be; bodies and trailers both ways, flow
control, local replies (gRPC trailers-only), the §7 limits and abuse answers, the
idle timeout, drain, h2load, and that only a connection's first bytes select
HTTP/2. The client is python3-h2 (frames and events checked one by one)."""
import argparse
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

try:
    import h2.config
    import h2.connection
    import h2.errors
    import h2.events
    import h2.exceptions
    import h2.settings
    import hyperframe.frame
except ImportError:  # python3-h2 is Debian's: run under Debian's interpreter (as ctest does)
    if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3", *sys.argv])
    raise

import harness
from harness import Meshd, Upstream, header, http_request, read_response
from test_run import canary_mesh

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REFUSED_STREAM = 0x7
ENHANCE_YOUR_CALM = 0xB
PROTOCOL_ERROR = 0x1
NO_ERROR = 0x0


# ---------------------------------------------------------------- h2 client
class Response:
    def __init__(self):
        self.status = None
        self.headers = []      # the response head's fields (pseudo-headers included)
        self.data = bytearray()
        self.trailers = None
        self.ended = False
        self.reset = None      # RST_STREAM error code
        self.events = []       # event class names, in order
        self.head_ended_stream = False  # END_STREAM on the response HEADERS itself

    def done(self):
        return self.ended or self.reset is not None

    def field(self, name):
        for n, v in self.headers:
            if n == name:
                return v
        return None


class H2Client:
    """One h2c (prior knowledge) connection to 127.0.0.1:port driven by python3-h2.
    `ack`: give received DATA back to meshd's windows (False: a slow reader that
    never opens its windows beyond the initial 65535)."""

    def __init__(self, port, ack=True, timeout=5):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.ack = ack
        self.responses = {}
        self.remote_settings = {}  # SettingCodes -> new value, from RemoteSettingsChanged
        self.terminated = None     # the ConnectionTerminated event (GOAWAY)
        self.goaway_at = None
        self.closed = False        # EOF (or a reset) from meshd
        self.protocol_error = None
        self.data_frames = 0
        self.inbuf = b""
        self.header_block = b""
        self.block_ends_stream = False
        self.goaways = []          # (last stream id, error code) of every GOAWAY
        self.conn.initiate_connection()
        self.flush()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path, authority="svc.local", method="GET", headers=(), body=None, trailers=None):
        sid = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":scheme", "http"), (":authority", authority), (":path", path), *headers]
        self.responses[sid] = Response()
        self.conn.send_headers(sid, fields, end_stream=body is None and trailers is None)
        self.flush()
        if body is not None:
            self.send_body(sid, body, end=trailers is None)
        if trailers is not None:
            self.conn.send_headers(sid, trailers, end_stream=True)
            self.flush()
        return sid

    def send_body(self, sid, body, end=True, timeout=10):
        """Sends `body` as DATA frames as the stream's and connection's windows allow
        (python3-h2 refuses more), reading meshd's WINDOW_UPDATEs in between."""
        deadline = time.time() + timeout
        off = 0
        for _ in range(100000):
            if off >= len(body):
                break
            window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if window > 0:
                piece = body[off:off + window]
                off += len(piece)
                self.conn.send_data(sid, piece, end_stream=end and off >= len(body))
                self.flush()
                continue
            if time.time() > deadline or self.closed or self.responses[sid].done():
                raise AssertionError(f"stream {sid}: window stayed shut after {off} of {len(body)} body bytes")
            self.pump(deadline - time.time())
        if not body and end:
            self.conn.send_data(sid, b"", end_stream=True)
            self.flush()

    def pump(self, timeout):
        """Reads once (at most `timeout` s) and handles the frames. False: nothing came."""
        if self.closed:
            return False
        self.sock.settimeout(max(0.01, timeout))
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return False
        except OSError:
            self.closed = True
            return False
        if not data:
            self.closed = True
            return False
        self.inbuf += data
        # Frame by frame: python3-h2 4.1 takes no frame after a GOAWAY (its connection
        # state is CLOSED), while streams below the GOAWAY's last stream id still
        # finish (RFC 9113 §6.8); those frames are read here by hand.
        for _ in range(1000000):
            if len(self.inbuf) < 9:
                break
            length = int.from_bytes(self.inbuf[:3], "big")
            if len(self.inbuf) < 9 + length:
                break
            frame, self.inbuf = bytes(self.inbuf[:9 + length]), self.inbuf[9 + length:]
            if self.terminated is None:
                try:
                    events = self.conn.receive_data(frame)
                except h2.exceptions.ProtocolError as e:
                    self.protocol_error = e
                    continue
                for ev in events:
                    self.handle(ev)
            else:
                self.after_goaway(frame)
        try:
            self.flush()
        except OSError:
            self.closed = True
        return True

    def after_goaway(self, raw):
        frame, length = hyperframe.frame.Frame.parse_frame_header(memoryview(raw[:9]))
        frame.parse_body(memoryview(raw[9:]))
        r = self.responses.get(frame.stream_id)
        if isinstance(frame, (hyperframe.frame.HeadersFrame, hyperframe.frame.ContinuationFrame)):
            self.header_block += frame.data
            if isinstance(frame, hyperframe.frame.HeadersFrame):
                self.block_ends_stream = "END_STREAM" in frame.flags
            if "END_HEADERS" not in frame.flags:
                return
            fields = [(n, v) for n, v in self.conn.decoder.decode(bytes(self.header_block))]  # keeps HPACK in step
            self.header_block = b""
            if r is None:
                return
            if r.status is None:
                r.events.append("ResponseReceived")
                r.headers = fields
                r.status = int(r.field(":status"))
                r.head_ended_stream = self.block_ends_stream
            else:
                r.events.append("TrailersReceived")
                r.trailers = fields
            if self.block_ends_stream:
                r.events.append("StreamEnded")
                r.ended = True
        elif isinstance(frame, hyperframe.frame.DataFrame):
            self.data_frames += 1
            if r is not None:
                r.events.append("DataReceived")
                r.data += frame.data
                if "END_STREAM" in frame.flags:
                    r.events.append("StreamEnded")
                    r.ended = True
            if self.ack and frame.flow_controlled_length and "END_STREAM" not in frame.flags:
                for sid in (0, frame.stream_id):
                    update = hyperframe.frame.WindowUpdateFrame(sid, window_increment=frame.flow_controlled_length)
                    try:
                        self.sock.sendall(update.serialize())
                    except OSError:
                        pass
        elif isinstance(frame, hyperframe.frame.RstStreamFrame):
            if r is not None:
                r.events.append("StreamReset")
                r.reset = frame.error_code
        elif isinstance(frame, hyperframe.frame.GoAwayFrame):
            self.goaways.append((frame.last_stream_id, frame.error_code))

    def handle(self, ev):
        r = self.responses.get(getattr(ev, "stream_id", None) or 0)
        if r is not None:
            r.events.append(type(ev).__name__)
        if isinstance(ev, h2.events.ResponseReceived):
            r.headers = list(ev.headers)
            r.status = int(r.field(":status"))
            r.head_ended_stream = ev.stream_ended is not None
        elif isinstance(ev, h2.events.DataReceived):
            self.data_frames += 1
            if r is not None:
                r.data += ev.data
            if self.ack and ev.flow_controlled_length:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            r.trailers = list(ev.headers)
        elif isinstance(ev, h2.events.StreamEnded):
            r.ended = True
        elif isinstance(ev, h2.events.StreamReset):
            if r is not None:
                r.reset = ev.error_code
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            for code, change in ev.changed_settings.items():
                self.remote_settings[code] = change.new_value
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.terminated = ev
            self.goaway_at = time.time()
            self.goaways.append((ev.last_stream_id, ev.error_code))

    def wait(self, predicate, timeout=5):
        """Pumps until predicate() holds, meshd closes, or `timeout` s; predicate()'s value."""
        deadline = time.time() + timeout
        for _ in range(1000000):
            if predicate():
                return True
            left = deadline - time.time()
            if left <= 0 or self.closed:
                return predicate()
            self.pump(min(left, 0.5))
        return predicate()

    def wait_closed(self, timeout=5):
        """Reads (and handles) until meshd closes the connection; True if it did."""
        return self.wait(lambda: self.closed, timeout)

    def get(self, path, authority="svc.local", timeout=10, **kw):
        sid = self.request(path, authority, **kw)
        self.wait(lambda: self.responses[sid].done(), timeout)
        return self.responses[sid]


def h2_get(port, path, authority="svc.local", **kw):
    c = H2Client(port)
    try:
        return c.get(path, authority, **kw)
    finally:
        c.close()


def frames(data):
    """Raw HTTP/2 frames in `data`: [(type, flags, stream, payload)] (a partial last frame is dropped)."""
    out, i = [], 0
    while len(data) - i >= 9:
        length = int.from_bytes(data[i:i + 3], "big")
        ftype, flags = data[i + 3], data[i + 4]
        stream = int.from_bytes(data[i + 5:i + 9], "big") & 0x7FFFFFFF
        if len(data) - i - 9 < length:
            break
        out.append((ftype, flags, stream, data[i + 9:i + 9 + length]))
        i += 9 + length
    return out


def read_all(sock, timeout=5):
    """Everything meshd sends until it closes (bounded by `timeout`); (bytes, closed)."""
    deadline = time.time() + timeout
    out = b""
    for _ in range(100000):
        left = deadline - time.time()
        if left <= 0:
            return out, False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return out, False
        except ConnectionResetError:
            return out, True
        if not chunk:
            return out, True
        out += chunk
    return out, False


# ---------------------------------------------------------------- raw frames (floods)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 2, 3, 4, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED = 0x1, 0x1, 0x4, 0x8
FRAME_NAMES = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS", 5: "PUSH_PROMISE",
               6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE", 9: "CONTINUATION"}


def frame(ftype, flags, stream, payload=b""):
    """One HTTP/2 frame, by hand (python3-h2 refuses to send floods)."""
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", ftype, flags, stream & 0x7FFFFFFF) + payload


def window_update(stream, increment):
    return frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", increment))


def hpack_int(value, prefix_bits, first=0):
    """RFC 7541 §5.1: `value` on a `prefix_bits` prefix, the first byte's other bits `first`."""
    top = (1 << prefix_bits) - 1
    if value < top:
        return bytes([first | value])
    out = [first | top]
    value -= top
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_str(s):
    return hpack_int(len(s), 7) + s  # not Huffman-coded


def hpack_literal(name, value):
    """Literal header field without indexing, new name (RFC 7541 §6.2.2)."""
    return b"\x00" + hpack_str(name) + hpack_str(value)


def hpack_request(path, authority="direct.local", method="GET"):
    """A request's pseudo-headers: :method and :scheme http from the static table,
    :path and :authority literal without indexing on the static names 4 and 1."""
    return ({"GET": b"\x82", "POST": b"\x83"}[method] + b"\x86" + hpack_int(4, 4) + hpack_str(path.encode())
            + hpack_int(1, 4) + hpack_str(authority.encode()))


class RawH2:
    """A raw h2c (prior knowledge) connection: the preface and an empty SETTINGS are
    sent at once, a thread reads and splits what meshd sends into frames, each
    with the time it came; `on_frame(conn, f)` (in that thread) may answer. DATA
    payloads are not kept (only their flow-controlled and data lengths)."""

    def __init__(self, port, on_frame=None, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.on_frame = on_frame
        self.received = []     # dicts: t, type, flags, stream, length, payload (b"" for DATA), data_len
        self.closed_at = None
        self.close_how = None  # "EOF" or the exception's name (a reset)
        self.send_error = None
        self.sent_frames = None  # of the last send_frames(), the ones handed to the kernel
        self.stopping = False
        self.deadline = time.time() + timeout
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        buf = bytearray()
        for _ in range(10 ** 7):
            if self.stopping or time.time() > self.deadline:
                return
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            except OSError as e:
                self.close_how, self.closed_at = type(e).__name__, time.time()
                return
            if not data:
                self.close_how, self.closed_at = "EOF", time.time()
                return
            buf += data
            now, off = time.time(), 0
            for _ in range(1 << 20):
                if len(buf) - off < 9:
                    break
                length = int.from_bytes(buf[off:off + 3], "big")
                if len(buf) - off - 9 < length:
                    break
                ftype, flags = buf[off + 3], buf[off + 4]
                stream = int.from_bytes(buf[off + 5:off + 9], "big") & 0x7FFFFFFF
                payload = bytes(buf[off + 9:off + 9 + length]) if ftype != DATA else b""
                data_len = length
                if ftype == DATA and flags & PADDED and length:
                    data_len = length - 1 - buf[off + 9]
                f = {"t": now, "type": ftype, "flags": flags, "stream": stream, "length": length,
                     "payload": payload, "data_len": data_len}
                self.received.append(f)
                off += 9 + length
                if self.on_frame is not None:
                    try:
                        self.on_frame(self, f)
                    except OSError:
                        pass
            del buf[:off]

    def close(self):
        self.stopping = True
        for how in (lambda: self.sock.shutdown(socket.SHUT_RDWR), self.sock.close):
            try:
                how()
            except OSError:
                pass

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except OSError as e:
            self.send_error = (type(e).__name__, time.time())
            return False

    def send_frames(self, frames_list, batch=500):
        """Sends the frames back to back (batches of `batch` per write); stops at a
        refused write (meshd closed). The number written."""
        self.sent_frames = 0
        for i in range(0, len(frames_list), batch):
            if not self.send(b"".join(frames_list[i:i + batch])):
                break
            self.sent_frames += len(frames_list[i:i + batch])
        return self.sent_frames

    def wait(self, predicate, timeout):
        deadline = time.time() + timeout
        for _ in range(int(timeout * 200) + 1):
            if predicate():
                return True
            if self.closed_at is not None or time.time() > deadline:
                break
            time.sleep(0.005)
        return predicate()

    def handshake(self, timeout=3):
        """Waits for meshd's SETTINGS and acknowledges it."""
        ok = self.wait(lambda: any(f["type"] == SETTINGS and not f["flags"] & ACK for f in self.received), timeout)
        if ok:
            self.send(frame(SETTINGS, ACK, 0))
        return ok

    def goaways(self):
        """(time, last stream id, error code) of every GOAWAY."""
        return [(f["t"], int.from_bytes(f["payload"][0:4], "big") & 0x7FFFFFFF,
                 int.from_bytes(f["payload"][4:8], "big")) for f in self.received if f["type"] == GOAWAY]

    def summary(self, t0):
        counts = {}
        for f in self.received:
            name = FRAME_NAMES.get(f["type"], str(f["type"]))
            counts[name] = counts.get(name, 0) + 1
        last = FRAME_NAMES.get(self.received[-1]["type"]) if self.received else None
        goaways = [f"GOAWAY(last_stream={sid}, error=0x{code:x}) at +{t - t0:.3f}s" for t, sid, code in self.goaways()]
        closed = f"closed ({self.close_how}) at +{self.closed_at - t0:.3f}s" if self.closed_at else "still open"
        refused = f", a write refused ({self.send_error[0]}) at +{self.send_error[1] - t0:.3f}s" if self.send_error else ""
        written = f"; {self.sent_frames} attack frames written" if self.sent_frames is not None else ""
        return f"frames from meshd {counts}, last {last}; {goaways or 'no GOAWAY'}; {closed}{refused}{written}"


# ---------------------------------------------------------------- recording upstream
class RecordingUpstream:
    """An HTTP/1.1 server on 127.0.0.1:0 that keeps each request's raw bytes (head,
    body, trailer section) and answers:
      /trailers   200, chunked, 'hello' then the trailers grpc-status: 0, grpc-message: ok
      anything    200 with 'got N' (N: body bytes), Content-Length"""

    def __init__(self):
        self.requests = []  # dicts: head (bytes), body (bytes), trailers (bytes), chunked (bool)
        self.lock = threading.Lock()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.running = True
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def close(self):
        self.running = False
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()

    def accept_loop(self):
        for _ in range(100000):
            if not self.running:
                return
            try:
                s, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(s,), daemon=True).start()

    @staticmethod
    def _until(s, buf, marker):
        for _ in range(100000):
            i = buf.find(marker)
            if i >= 0:
                return buf, i
            data = s.recv(65536)
            if not data:
                raise ConnectionError("closed")
            buf += data
        raise ConnectionError("too long")

    def serve(self, s):
        s.settimeout(10)
        buf = b""
        try:
            for _ in range(1000):
                buf, i = self._until(s, buf, b"\r\n\r\n")
                head, buf = buf[:i + 4], buf[i + 4:]
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                fields = {}
                for line in lines[1:]:
                    if ":" in line:
                        n, v = line.split(":", 1)
                        fields[n.strip().lower()] = v.strip()
                body, trailers, chunked = b"", b"", False
                if "chunked" in fields.get("transfer-encoding", "").lower():
                    chunked = True
                    for _ in range(1 << 20):
                        buf, j = self._until(s, buf, b"\r\n")
                        size = int(buf[:j].split(b";")[0], 16)
                        buf = buf[j + 2:]
                        if size == 0:
                            buf, k = self._until(s, b"\r\n" + buf, b"\r\n\r\n")
                            trailers, buf = buf[2:k + 4], buf[k + 4:]
                            break
                        while len(buf) < size + 2:
                            data = s.recv(1 << 20)
                            if not data:
                                raise ConnectionError("closed in a chunk")
                            buf += data
                        body += buf[:size]
                        buf = buf[size + 2:]
                elif "content-length" in fields:
                    n = int(fields["content-length"])
                    while len(buf) < n:
                        data = s.recv(1 << 20)
                        if not data:
                            raise ConnectionError("closed in the body")
                        buf += data
                    body, buf = buf[:n], buf[n:]
                with self.lock:
                    self.requests.append({"head": head, "body": body, "trailers": trailers, "chunked": chunked,
                                          "path": path})
                if path == "/trailers":
                    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\nTransfer-Encoding: chunked\r\n"
                              b"Trailer: grpc-status, grpc-message\r\n\r\n5\r\nhello\r\n"
                              b"0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n")
                else:
                    reply = b"got %d" % len(body)
                    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(reply) + reply)
        except (OSError, ConnectionError, ValueError, IndexError):
            pass
        finally:
            s.close()


def recording_mesh(port):
    return f"""
mesh: {{name: test-mesh, spec: {{egressFilter: {{type: DROP_ALL}}}}}}
virtualNodes:
  - name: client
    spec:
      listeners: [{{portMapping: {{port: 3000, protocol: http}}}}]
      serviceDiscovery: {{dns: {{hostname: client.local}}}}
      backends:
        - virtualService: {{virtualServiceName: rec.local}}
  - name: rec
    spec:
      listeners: [{{portMapping: {{port: 8080, protocol: http}}}}]
      serviceDiscovery: {{static: {{endpoints: [{{address: 127.0.0.1, port: {port}}}]}}}}
virtualServices:
  - {{name: rec.local, spec: {{provider: {{virtualNode: {{virtualNodeName: rec}}}}}}}}
"""


# ---------------------------------------------------------------- tests
class Base(unittest.TestCase):
    def setUp(self):
        self.v1 = Upstream("v1")
        self.v2 = Upstream("v2")
        for u in (self.v1, self.v2):
            # socketserver listens with a backlog of 5: 40 upstream connections opened
            # at once (one per stream) would wait for SYN retransmits, seconds each.
            u.server.socket.listen(512)
        self.tmp = tempfile.mkdtemp(prefix="meshd-h2-")
        self.access_log = os.path.join(self.tmp, "access.log")
        self.meshes = []
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        for m in self.meshes:
            m.stop_and_check(self)
        self.v1.close()
        self.v2.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, mesh_text=None, node="client", **kw):
        text = (mesh_text or canary_mesh(self.v1.port, self.v2.port)).replace("ACCESS_LOG", self.access_log)
        for attempt in range(50):  # the binary may be briefly missing while it is rebuilt
            if os.path.exists(harness.MESHD):
                break
            time.sleep(0.2)
        m = Meshd(text, node, **kw)
        self.meshes.append(m)
        return m

    def client(self, port, **kw):
        c = H2Client(port, **kw)
        self.clients.append(c)
        return c

    def all_requests(self):
        return self.v1.requests + self.v2.requests

    def upstream_request(self, path):
        got = [r for r in self.all_requests() if r["path"] == path]
        self.assertEqual(len(got), 1, (path, [r["path"] for r in self.all_requests()]))
        return got[0]


class Forwarding(Base):
    def test_get_is_forwarded_as_the_same_http1_request(self):
        m = self.start()
        port = m.port("egress")
        for authority in ("svc.local", "direct.local"):
            path2, path1 = f"/same/{authority}/h2", f"/same/{authority}/h1"
            r = h2_get(port, path2, authority, headers=[("x-custom", "Keep"), ("user-agent", "tester"),
                                                         ("accept", "*/*")])
            self.assertEqual(r.status, 200, (authority, r.headers, bytes(r.data)))
            self.assertEqual(r.reset, None)
            self.assertTrue(r.ended)
            self.assertIn(path2.encode(), bytes(r.data))
            self.assertEqual(r.field("content-type"), "application/json")
            self.assertIn(r.field("x-upstream"), ("v1", "v2"))
            self.assertIsNone(r.field("connection"))  # connection-specific fields are not HTTP/2's
            s, _, body = http_request("127.0.0.1", port, "GET", path1,
                                      headers={"Host": authority, "x-custom": "Keep", "user-agent": "tester",
                                               "accept": "*/*"})
            self.assertEqual(s, 200)
            via2, via1 = self.upstream_request(path2), self.upstream_request(path1)
            self.assertTrue(via2["head"].startswith(f"GET {path2} HTTP/1.1\r\n".encode()), via2["head"])
            self.assertEqual(header(via2["headers"], "host"), authority)
            self.assertEqual([v for n, v in via2["headers"] if n.lower() == "host"], [authority])
            self.assertNotIn("content-length", [n.lower() for n, _ in via2["headers"]])
            self.assertEqual(header(via2["headers"], "x-forwarded-for"), "127.0.0.1")
            self.assertEqual(header(via2["headers"], "x-forwarded-proto"), "http")
            self.assertRegex(header(via2["headers"], "x-request-id"), r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-")

            def comparable(req):
                # Names in lower case (HTTP/2's are), x-request-id's value varies, and Host
                # (checked above) is where the client had it: HTTP/2 has none, so last
                # of the client's fields (proxy/forwarded.hpp).
                return [(n.lower(), "ID" if n.lower() == "x-request-id" else v) for n, v in req["headers"]
                        if n.lower() != "host"]

            self.assertEqual(comparable(via2), comparable(via1), (via2["head"], via1["head"]))
            self.assertNotEqual(header(via2["headers"], "x-request-id"), header(via1["headers"], "x-request-id"))
        # A request id that came with the request is kept.
        r = h2_get(port, "/rid", "direct.local", headers=[("x-request-id", "abc-123")])
        self.assertEqual(r.status, 200)
        self.assertEqual(header(self.upstream_request("/rid")["headers"], "x-request-id"), "abc-123")

    def test_post_bodies_with_and_without_content_length_over_the_window(self):
        m = self.start()
        c = self.client(m.port("egress"))
        size = 200 * 1024  # over the 64 KiB initial stream window: meshd must open it
        body = os.urandom(size)
        sid_cl = c.request("/post/cl", "direct.local", method="POST", headers=[("content-length", str(size))],
                           body=body)
        sid_chunked = c.request("/post/chunked", "direct.local", method="POST", body=body)
        sid_small = c.request("/post/small", "direct.local", method="POST", headers=[("content-length", "5")],
                              body=b"hello")
        self.assertTrue(c.wait(lambda: all(c.responses[s].done() for s in (sid_cl, sid_chunked, sid_small)), 10))
        import json
        for sid, path in ((sid_cl, "/post/cl"), (sid_chunked, "/post/chunked"), (sid_small, "/post/small")):
            r = c.responses[sid]
            self.assertEqual((r.status, r.reset), (200, None), (path, r.headers, bytes(r.data)))
            echo = json.loads(bytes(r.data))
            self.assertEqual(echo["body_len"], 5 if path == "/post/small" else size, path)
        cl = self.upstream_request("/post/cl")
        self.assertEqual([v for n, v in cl["headers"] if n.lower() == "content-length"], [str(size)])
        self.assertNotIn("transfer-encoding", [n.lower() for n, _ in cl["headers"]])
        self.assertEqual(cl["body_len"], size)
        chunked = self.upstream_request("/post/chunked")
        self.assertEqual(header(chunked["headers"], "transfer-encoding"), "chunked")
        self.assertNotIn("content-length", [n.lower() for n, _ in chunked["headers"]])
        self.assertEqual(chunked["body_len"], size)
        small = self.upstream_request("/post/small")
        self.assertEqual([v for n, v in small["headers"] if n.lower() == "content-length"], ["5"])
        # The bytes themselves, both framings, at an upstream that keeps them.
        rec = RecordingUpstream()
        try:
            m2 = self.start(recording_mesh(rec.port))
            c2 = self.client(m2.port("egress"))
            a = c2.request("/bytes/cl", "rec.local", method="POST", headers=[("content-length", str(size))], body=body)
            b = c2.request("/bytes/chunked", "rec.local", method="POST", body=body[::-1])
            self.assertTrue(c2.wait(lambda: c2.responses[a].done() and c2.responses[b].done(), 10))
            self.assertEqual(bytes(c2.responses[a].data), b"got %d" % size)
            self.assertEqual(bytes(c2.responses[b].data), b"got %d" % size)
            got = {r["path"]: r for r in rec.requests}
            self.assertEqual(got["/bytes/cl"]["body"], body)
            self.assertFalse(got["/bytes/cl"]["chunked"])
            self.assertEqual(got["/bytes/chunked"]["body"], body[::-1])
            self.assertTrue(got["/bytes/chunked"]["chunked"])
        finally:
            rec.close()

    def test_cookie_fields_are_joined_into_one(self):
        m = self.start()
        r = h2_get(m.port("egress"), "/cookies", "direct.local",
                   headers=[("cookie", "a=1"), ("x-between", "1"), ("cookie", "b=2"), ("cookie", "c=3")])
        self.assertEqual(r.status, 200)
        req = self.upstream_request("/cookies")
        self.assertEqual([v for n, v in req["headers"] if n.lower() == "cookie"], ["a=1; b=2; c=3"])
        self.assertEqual(header(req["headers"], "x-between"), "1")

    def test_fifty_concurrent_streams_on_one_connection(self):
        m = self.start()
        c = self.client(m.port("egress"))
        t0 = time.time()
        sids = {}
        for i in range(50):
            if i % 5 == 0:
                sids[c.request(f"/c/{i}", "svc.local")] = ("echo", i)
            else:
                sids[c.request("/sleep/200", "direct.local", headers=[("x-i", str(i))])] = ("sleep", i)
        self.assertTrue(c.wait(lambda: all(c.responses[s].done() for s in sids), 10))
        took = time.time() - t0
        for sid, (kind, i) in sids.items():
            r = c.responses[sid]
            self.assertEqual((r.status, r.reset), (200, None), (kind, i, r.headers))
            if kind == "echo":
                self.assertIn(f'"path": "/c/{i}"'.encode(), bytes(r.data))
            else:
                self.assertEqual(bytes(r.data), b"v1 slept\n")
        self.assertLess(took, 2.0)  # 40 sleeps of 200 ms one after the other: 8 s
        self.assertEqual(len([r for r in self.v1.requests if r["path"] == "/sleep/200"]), 40)
        self.assertIsNone(c.terminated)


class FlowControl(Base):
    def test_large_response_is_read_whole(self):
        m = self.start()
        c = self.client(m.port("egress"))
        n = 5 * 1000 * 1000
        r = c.get(f"/big/{n}", "direct.local", timeout=20)
        self.assertEqual((r.status, r.reset, r.ended), (200, None, True))
        self.assertEqual(len(r.data), n)
        self.assertEqual(bytes(r.data[:100]), b"x" * 100)
        self.assertEqual(r.field("content-length"), str(n))
        # meshd saw the response through to its end (not cut after its head: the last
        # piece waits for the client's window, and the stream's clean close is success).
        lines = []
        for _ in range(100):  # bounded: the line is written just after the response
            with open(self.access_log) as f:
                lines = [l for l in f.read().splitlines() if f"/big/{n}" in l]
            if lines:
                break
            time.sleep(0.02)
        self.assertTrue(lines and f'"GET /big/{n} HTTP/2" 200 - ' in lines[0], lines)

    def test_slow_reader_holds_the_window_not_memory(self):
        m = self.start()
        warm = h2_get(m.port("egress"), "/big/1000000", "direct.local")  # warm the allocators up
        self.assertEqual(len(warm.data), 1000000)
        before = m.rss_kib()
        closed_before = self.v1.closed
        c = self.client(m.port("egress"), ack=False)
        sid = c.request("/big/50000000", "direct.local")
        t0 = time.time()
        for _ in range(1000):
            if time.time() - t0 > 1.5:
                break
            c.pump(0.1)
        r = c.responses[sid]
        grown = m.rss_kib() - before
        self.assertEqual(r.status, 200)
        self.assertEqual(r.reset, None)
        self.assertFalse(r.ended)
        self.assertEqual(len(r.data), 65535)  # the client's initial window, and not a byte more
        if not harness.SANITIZED:  # (quarantined memory under the sanitizers)
            self.assertLess(grown, 20 * 1024, f"RSS grew by {grown} KiB for a reader that does not read")
        c.close()
        # The stream's end reaches the upstream: the connection it was on is closed
        # (the warm-up's, pooled, stays).
        for _ in range(100):
            if self.v1.closed > closed_before:
                break
            time.sleep(0.05)
        self.assertEqual(self.v1.closed, closed_before + 1)
        self.assertEqual(h2_get(m.port("egress"), "/after", "direct.local").status, 200)


class LocalReplies(Base):
    def test_local_replies_and_grpc_trailers_only(self):
        m = self.start()
        c = self.client(m.port("egress"))
        for authority, status, code in (("nope.local", 403, "egress_denied"), ("svc.local:9999", 404, "no_route")):
            r = c.get("/x", authority)
            self.assertEqual((r.status, r.field("x-meshd-error")), (status, code), (authority, r.headers))
            self.assertEqual(r.field("content-type"), "text/plain")
            self.assertTrue(r.ended)
            self.assertTrue(bytes(r.data).endswith(b"\n"), bytes(r.data))
            self.assertGreater(len(r.data), 5)
            if r.field("content-length") is not None:
                self.assertEqual(r.field("content-length"), str(len(r.data)))
        # gRPC: trailers-only, one HEADERS frame with END_STREAM, no DATA.
        for content_type in ("application/grpc", "application/grpc+proto"):
            sid = c.request("/pkg.Svc/Method", "nope.local", method="POST",
                            headers=[("content-type", content_type), ("te", "trailers")], body=b"\x00\x00\x00\x00\x00")
            self.assertTrue(c.wait(lambda: c.responses[sid].done(), 5))
            r = c.responses[sid]
            self.assertEqual(r.events[:2], ["ResponseReceived", "StreamEnded"], r.events)
            self.assertTrue(r.head_ended_stream)
            self.assertNotIn("DataReceived", r.events)
            self.assertNotIn("TrailersReceived", r.events)
            self.assertEqual(bytes(r.data), b"")
            self.assertEqual((r.status, r.field("grpc-status"), r.field("x-meshd-error")), (200, "7", "egress_denied"))
            self.assertEqual(r.field("content-type"), "application/grpc")
            self.assertTrue(r.field("grpc-message").startswith("the destination is not a backend"), r.headers)
        self.assertEqual(len(self.all_requests()), 0)
        self.assertIsNone(c.terminated)

    def test_no_route_when_no_route_matches(self):
        text = canary_mesh(self.v1.port, self.v2.port).replace(
            "match: {prefix: /}\n        action:\n          weightedTargets: [{virtualNode: v1, weight: 90}",
            "match: {prefix: /api}\n        action:\n          weightedTargets: [{virtualNode: v1, weight: 90}")
        m = self.start(text)
        r = h2_get(m.port("egress"), "/elsewhere", "svc.local")
        self.assertEqual((r.status, r.field("x-meshd-error"), r.field("content-type")), (404, "no_route", "text/plain"))
        self.assertTrue(r.ended)
        self.assertIn(b"no route", bytes(r.data))


class Trailers(Base):
    def setUp(self):
        super().setUp()
        self.rec = RecordingUpstream()

    def tearDown(self):
        super().tearDown()
        self.rec.close()

    def test_response_trailers_become_a_trailing_headers_frame(self):
        m = self.start(recording_mesh(self.rec.port))
        c = self.client(m.port("egress"))
        sid = c.request("/trailers", "rec.local", method="POST",
                        headers=[("content-type", "application/grpc"), ("te", "trailers")], body=b"\x00\x00\x00\x00\x00")
        self.assertTrue(c.wait(lambda: c.responses[sid].done(), 5))
        r = c.responses[sid]
        self.assertEqual((r.status, r.reset), (200, None))
        self.assertEqual(bytes(r.data), b"hello")
        self.assertEqual([e for e in r.events if e != "DataReceived"],
                         ["ResponseReceived", "TrailersReceived", "StreamEnded"], r.events)
        self.assertIsNotNone(r.trailers, r.events)
        self.assertIn(("grpc-status", "0"), r.trailers)
        self.assertIn(("grpc-message", "ok"), r.trailers)
        self.assertIsNone(r.field("grpc-status"))  # in the trailers, not the head
        self.assertIsNone(r.field("transfer-encoding"))  # connection-specific (RFC 9113 §8.2.2)
        self.assertEqual(self.rec.requests[0]["body"], b"\x00\x00\x00\x00\x00")

    def test_request_trailers_become_chunked_trailers(self):
        m = self.start(recording_mesh(self.rec.port))
        c = self.client(m.port("egress"))
        body = b"abc" * 30000  # 90 KB, several frames
        sid = c.request("/upload", "rec.local", method="POST", headers=[("te", "trailers")], body=body,
                        trailers=[("x-checksum", "c0ffee"), ("x-count", "3")])
        self.assertTrue(c.wait(lambda: c.responses[sid].done(), 10))
        r = c.responses[sid]
        self.assertEqual((r.status, bytes(r.data)), (200, b"got %d" % len(body)))
        got = self.rec.requests[0]
        self.assertTrue(got["chunked"], got["head"])
        self.assertEqual(got["body"], body)
        trailer_fields = [l.split(b":", 1)[0].lower() for l in got["trailers"].split(b"\r\n") if l]
        self.assertIn(b"x-checksum", trailer_fields, got["trailers"])
        self.assertIn(b"x-checksum: c0ffee", got["trailers"])
        self.assertIn(b"x-count: 3", got["trailers"])


class Abuse(Base):
    def test_stream_over_the_advertised_limit_is_refused_and_the_connection_kept(self):
        m = self.start()
        c = self.client(m.port("egress"))
        code = h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS
        self.assertTrue(c.wait(lambda: code in c.remote_settings, 3), c.remote_settings)
        self.assertEqual(c.remote_settings[code], 100)
        # python3-h2 keeps to the peer's limit; this client does not.
        import collections
        c.conn.remote_settings._settings[code] = collections.deque([1000])
        sids = [c.request("/sleep/1000", "direct.local", headers=[("x-n", str(i))]) for i in range(101)]
        self.assertTrue(c.wait(lambda: c.responses[sids[100]].done(), 3), c.responses[sids[100]].events)
        self.assertEqual(c.responses[sids[100]].reset, REFUSED_STREAM)
        self.assertEqual(c.responses[sids[100]].status, None)
        self.assertTrue(all(not c.responses[s].done() for s in sids[:100]))
        self.assertTrue(c.wait(lambda: all(c.responses[s].done() for s in sids[:100]), 10))
        for s in sids[:100]:
            self.assertEqual((c.responses[s].status, c.responses[s].reset), (200, None), s)
        self.assertIsNone(c.terminated)
        self.assertFalse(c.closed)
        r = c.get("/after-refused", "direct.local")  # the connection stays usable
        self.assertEqual(r.status, 200)
        self.assertEqual(len([r for r in self.v1.requests if r["path"] == "/sleep/1000"]), 100)

    def test_rapid_reset_gets_goaway_enhance_your_calm(self):
        m = self.start()
        c = self.client(m.port("egress"))
        self.assertTrue(c.wait(lambda: c.remote_settings, 3))
        t0 = time.time()
        for i in range(300):
            sid = c.conn.get_next_available_stream_id()
            c.responses[sid] = Response()
            c.conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "direct.local"),
                                      (":path", f"/rr/{i}")], end_stream=True)
            c.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        try:
            c.flush()
        except OSError:
            pass
        self.assertLess(time.time() - t0, 1.0)
        self.assertTrue(c.wait_closed(5), "the connection stayed open")
        self.assertIsNotNone(c.terminated, "closed without GOAWAY")
        self.assertEqual(c.terminated.error_code, ENHANCE_YOUR_CALM)
        # Other connections are served.
        self.assertEqual(h2_get(m.port("egress"), "/next", "direct.local").status, 200)

    def test_reset_streams_still_running_upstream_count_toward_the_stream_limit(self):
        # Streams reset by the client leave the codec at once; their requests keep
        # running upstream (a /sleep). Below the rapid-reset rate, they must still count
        # toward the advertised limit: beyond it new streams are refused, so a client
        # cannot pile up upstream requests by resetting what it opened.
        m = self.start(extra_args=("--set", "h2_max_concurrent_streams=10"))
        c = self.client(m.port("egress"))
        self.assertTrue(c.wait(lambda: c.remote_settings, 3))
        opened = []
        for i in range(25):
            sid = c.conn.get_next_available_stream_id()
            c.responses[sid] = Response()
            c.conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "direct.local"),
                                      (":path", f"/sleep/1500?n={i}")], end_stream=True)
            c.flush()
            opened.append(sid)
            c.pump(0.02)  # meshd starts its lifecycle before the reset comes
            try:
                c.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
            except h2.exceptions.StreamClosedError:
                pass  # meshd refused it already
            c.flush()
            c.pump(0.02)
        time.sleep(0.5)
        refused = [sid for sid in opened if c.responses[sid].reset == REFUSED_STREAM]
        self.assertGreaterEqual(len(refused), 10, {sid: c.responses[sid].reset for sid in opened})
        started = [r for r in self.all_requests() if r["path"].startswith("/sleep/1500")]
        self.assertLessEqual(len(started), 10, [r["path"] for r in started])
        self.assertGreaterEqual(len(started), 5)  # the first ones did start
        self.assertIsNone(c.terminated)  # below the reset rate: no GOAWAY
        # Once those requests end, streams are taken again.
        time.sleep(1.5)
        self.assertEqual(c.get("/after", "direct.local").status, 200)

    def test_garbage_after_the_preface_gets_protocol_error(self):
        m = self.start()
        with socket.create_connection(("127.0.0.1", m.port("egress")), timeout=5) as s:
            s.sendall(PREFACE + b"GET / HTTP/1.1\r\nHost: svc.local\r\n\r\n" + b"\xff" * 64)
            out, closed = read_all(s, 5)
        got = frames(out)
        self.assertTrue(closed, out)
        goaways = [f for f in got if f[0] == 0x7]
        self.assertEqual(len(goaways), 1, got)
        self.assertEqual(int.from_bytes(goaways[0][3][4:8], "big"), PROTOCOL_ERROR, got)
        self.assertFalse(any(f[0] in (0x0, 0x1) for f in got), got)  # no DATA, no HEADERS
        self.assertEqual(len(self.all_requests()), 0)
        self.assertEqual(h2_get(m.port("egress"), "/next", "direct.local").status, 200)


class Floods(Base):
    """SPEC §7's floods, one test per attack: each is made on one connection, while a
    well-behaved connection opened before it must keep being served, and meshd's
    memory must stay bounded. The answer is GOAWAY ENHANCE_YOUR_CALM, then close."""

    RSS_BOUND_KIB = 20 * 1024

    def attack(self, prepare, flood, extra_args=(), settle=3.0):
        """Starts meshd, opens the well-behaved connection (one GET through it), then
        the attacker's: prepare(raw) after the handshake, flood(raw) timed. Returns
        an observation dict (nothing asserted here, so that every check is reported)."""
        m = self.start(extra_args=extra_args)
        port = m.port("egress")
        good = self.client(port)
        before_get = good.get("/good/before", "direct.local")
        warm = h2_get(port, "/big/1000000", "direct.local")  # allocators warmed up
        rss_before = m.rss_kib()
        raw = RawH2(port)
        self.clients.append(raw)
        handshake = raw.handshake()
        if prepare is not None:
            prepare(raw)
        t0 = time.time()
        flood(raw)
        t_sent = time.time()
        raw.wait(lambda: raw.closed_at is not None, settle)
        rss_after = m.rss_kib()
        after = good.get("/good/after", "direct.local")
        time.sleep(0.1)  # a request forwarded by the attack would be at the upstream by now
        return {"m": m, "raw": raw, "t0": t0, "sent_in": t_sent - t0, "handshake": handshake,
                "before": before_get, "warm": warm, "after": after, "good": good,
                "grown": rss_after - rss_before, "summary": raw.summary(t0)}

    def assert_calm(self, o, goaway_within=2.0, closed_within=3.0):
        """(1) GOAWAY ENHANCE_YOUR_CALM (the only GOAWAY, meshd's last frame) within
        `goaway_within` s of the flood's first byte, then the connection closed within
        `closed_within` s; (2) the well-behaved connection still served; (3) RSS."""
        raw, t0, why = o["raw"], o["t0"], o["summary"]
        self.assertTrue(o["handshake"], why)
        self.assertEqual((o["before"].status, len(o["warm"].data)), (200, 1000000))
        goaways = raw.goaways()
        self.assertEqual([code for _, _, code in goaways], [ENHANCE_YOUR_CALM], why)
        self.assertLess(goaways[0][0] - t0, goaway_within, why)
        self.assertIsNotNone(raw.closed_at, why)
        self.assertLess(raw.closed_at - t0, closed_within, why)
        self.assertEqual(raw.received[-1]["type"], GOAWAY, why)
        self.assert_others_unharmed(o)

    def assert_others_unharmed(self, o):
        r, why = o["after"], o["summary"]
        self.assertEqual((r.status, r.reset, r.ended), (200, None, True), (r.events, why))
        self.assertIsNone(o["good"].terminated, why)
        self.assertFalse(o["good"].closed, why)
        # (Under the sanitizers freed memory is quarantined: RSS says nothing there.)
        if not harness.SANITIZED:
            self.assertLess(o["grown"], self.RSS_BOUND_KIB, f"RSS grew by {o['grown']} KiB; {why}")

    def attack_paths(self):
        return [r["path"] for r in self.all_requests() if r["path"].startswith("/attack")]

    def test_continuation_flood_gets_enhance_your_calm(self):
        # HEADERS without END_HEADERS, then 30 CONTINUATIONs of one 1 KB literal each
        # (31 KB in all: under the 60 KiB list limit, so that only the count trips);
        # the 30th would end the block.
        head = frame(HEADERS, END_STREAM, 1, hpack_request("/attack/continuation"))
        conts = [frame(CONTINUATION, END_HEADERS if i == 29 else 0, 1,
                       hpack_literal(b"x-fill-%02d" % i, b"c" * 1000)) for i in range(30)]
        o = self.attack(None, lambda raw: raw.send_frames([head, *conts], batch=1))
        self.assert_calm(o)
        self.assertEqual(self.attack_paths(), [], o["summary"])
        self.assertFalse(any(f["type"] == HEADERS for f in o["raw"].received), o["summary"])

    def test_hpack_bomb_gets_enhance_your_calm(self):
        # One 4000-byte value into the dynamic table (entry: 6 + 4000 + 32 = 4038 bytes,
        # under the 4096 table), then referenced 100 times by index 62, one byte each:
        # a ~4.2 KB block that decodes to ~408 KB, over the 60 KiB list limit.
        block = (hpack_request("/attack/hpack") + b"\x40" + hpack_str(b"x-bomb") + hpack_str(b"b" * 4000)
                 + hpack_int(62, 7, 0x80) * 100)
        self.assertLess(len(block), 4400)
        o = self.attack(None, lambda raw: raw.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, block)))
        self.assert_calm(o)
        self.assertEqual(self.attack_paths(), [], o["summary"])
        self.assertFalse(any(f["type"] == HEADERS for f in o["raw"].received), o["summary"])

    def test_ping_flood_gets_enhance_your_calm(self):
        pings = [frame(PING, 0, 0, struct.pack(">Q", i)) for i in range(5000)]
        o = self.attack(None, lambda raw: raw.send_frames(pings))
        self.assert_calm(o)

    def test_settings_flood_gets_enhance_your_calm(self):
        settings = [frame(SETTINGS, 0, 0)] * 5000
        o = self.attack(None, lambda raw: raw.send_frames(settings))
        self.assert_calm(o)

    def test_empty_data_flood_gets_enhance_your_calm(self):
        # An open POST (no END_STREAM; the upstream waits for the body, so the
        # response has not started), then 5000 empty DATA frames without END_STREAM.
        def prepare(raw):
            raw.send(frame(HEADERS, END_HEADERS, 1, hpack_request("/sleep/3000", method="POST")))
        empties = [frame(DATA, 0, 1)] * 5000
        o = self.attack(prepare, lambda raw: raw.send_frames(empties))
        self.assert_calm(o)  # well before the 3 s sleep: the stream does not hold the close

    def test_window_update_flood_gets_enhance_your_calm(self):
        # A stream meshd sends nothing on (an open POST whose response has not
        # started): 5000 WINDOW_UPDATEs of 1 on it (65535 + 5000: no overflow).
        def prepare(raw):
            raw.send(frame(HEADERS, END_HEADERS, 1, hpack_request("/sleep/3000", method="POST")))
        updates = [window_update(1, 1)] * 5000
        o = self.attack(prepare, lambda raw: raw.send_frames(updates))
        self.assert_calm(o)

    def test_window_updates_after_every_data_frame_of_a_download_are_not_a_flood(self):
        # The counter-case: a client that gives back every DATA frame at once, on the
        # stream and on the connection (thousands of WINDOW_UPDATEs per second).
        n = 20 * 1000 * 1000
        updates = [0]

        def give_back(raw, f):
            if f["type"] == DATA and f["stream"] == 1 and f["length"] and not f["flags"] & END_STREAM:
                raw.sock.sendall(window_update(1, f["length"]) + window_update(0, f["length"]))
                updates[0] += 2

        def download(raw):
            raw.on_frame = give_back
            raw.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, hpack_request(f"/big/{n}")))
            raw.wait(lambda: any(f["stream"] == 1 and f["type"] in (DATA, HEADERS) and f["flags"] & END_STREAM
                                 or f["type"] in (GOAWAY, RST_STREAM) for f in raw.received), 12)

        o = self.attack(None, download, settle=0.2)
        raw, t0 = o["raw"], o["t0"]
        data = [f for f in raw.received if f["type"] == DATA and f["stream"] == 1]
        got = sum(f["data_len"] for f in data)
        why = (f"{got} of {n} bytes in {len(data)} DATA frames, {updates[0]} WINDOW_UPDATEs sent, "
               f"{o['sent_in']:.2f} s; {o['summary']}")
        heads = [f for f in raw.received if f["type"] == HEADERS and f["stream"] == 1]
        self.assertTrue(heads, why)
        import hpack
        status = dict(hpack.Decoder().decode(heads[0]["payload"])).get(":status")
        self.assertEqual(status, "200", why)
        self.assertEqual(raw.goaways(), [], why)
        self.assertFalse(any(f["type"] == RST_STREAM for f in raw.received), why)
        self.assertEqual(got, n, why)
        self.assertTrue(data[-1]["flags"] & END_STREAM, why)
        self.assertIsNone(raw.closed_at, why)
        self.assertGreater(updates[0], 2000, why)  # thousands indeed
        self.assert_others_unharmed(o)

    def test_priority_flood_gets_enhance_your_calm(self):
        # Stream 1 is served and closed first; then 5000 PRIORITY frames, half on
        # stream 1 (closed), half on odd ids never opened (3, 5, ...).
        def prepare(raw):
            raw.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, hpack_request("/prio-first")))
            raw.wait(lambda: any(f["stream"] == 1 and f["type"] in (DATA, HEADERS) and f["flags"] & END_STREAM
                                 for f in raw.received), 3)
        weight = b"\x10"
        prios = [frame(PRIORITY, 0, 1 if i % 2 == 0 else 3 + i - 1, struct.pack(">I", 0) + weight)
                 for i in range(5000)]
        o = self.attack(prepare, lambda raw: raw.send_frames(prios))
        self.assertTrue(any(f["stream"] == 1 and f["flags"] & END_STREAM for f in o["raw"].received),
                        "stream 1 was not served: " + o["summary"])
        self.assert_calm(o)


class Lifecycle(Base):
    def test_idle_connection_without_streams_gets_goaway_and_is_closed(self):
        m = self.start(extra_args=("--set", "downstream_idle_timeout=1s"))
        c = self.client(m.port("egress"))
        t0 = time.time()
        self.assertTrue(c.wait_closed(4), f"open 4 s without a stream; GOAWAYs: {c.goaways}")
        self.assertIsNotNone(c.terminated, "closed without GOAWAY")
        self.assertEqual(c.terminated.error_code, NO_ERROR)
        self.assertEqual(c.terminated.last_stream_id, 0)
        waited = c.goaway_at - t0
        self.assertGreater(waited, 0.7)
        self.assertLess(waited, 3.0)

    def test_idle_connection_after_its_last_stream_gets_goaway_and_is_closed(self):
        m = self.start(extra_args=("--set", "downstream_idle_timeout=1s"))
        c = self.client(m.port("egress"))
        # One stream, then none. It outlives the client's last frame (its SETTINGS
        # ACK): the idle clock starts when the last stream ends, not at a read.
        r = c.get("/sleep/300", "direct.local")
        self.assertEqual(r.status, 200)
        t0 = time.time()
        self.assertTrue(c.wait_closed(4), f"open 4 s after its last stream ended; GOAWAYs: {c.goaways}")
        self.assertIsNotNone(c.terminated, "closed without GOAWAY")
        self.assertEqual(c.terminated.error_code, NO_ERROR)
        self.assertEqual(c.terminated.last_stream_id, 1)
        waited = c.goaway_at - t0
        self.assertGreater(waited, 0.7)
        self.assertLess(waited, 3.0)

    def test_drain_sends_goaway_and_finishes_the_in_flight_stream(self):
        m = self.start()
        c = self.client(m.port("egress"))
        sid = c.request("/sleep/800", "direct.local")
        c.wait(lambda: False, 0.2)
        self.assertEqual(m.admin("/drain", method="POST")[0], 202)
        self.assertTrue(c.wait(lambda: c.terminated is not None, 1.0), "no GOAWAY")
        self.assertEqual(c.terminated.error_code, NO_ERROR)
        self.assertGreaterEqual(c.terminated.last_stream_id, sid)
        self.assertFalse(c.responses[sid].done())  # still in flight when GOAWAY came
        # A connection that arrives while the drain waits for that stream is served,
        # and told to go (HTTP/1.1's answers say Connection: close), as GOAWAY.
        late = self.client(m.port("egress"))
        late_sid = late.request("/late", "direct.local")
        late.wait(lambda: late.responses[late_sid].done() and late.terminated is not None, 1.5)
        late_answer, late_goaway = late.responses[late_sid].status, late.terminated
        late.close()  # (an open connection would hold the drain up to --drain-timeout)
        self.assertTrue(c.wait(lambda: c.responses[sid].done(), 3), c.responses[sid].events)
        r = c.responses[sid]
        self.assertEqual((r.status, r.reset, bytes(r.data)), (200, None, b"v1 slept\n"))
        self.assertTrue(c.wait_closed(3), "not closed after its last stream")
        self.assertEqual(c.goaways, [(c.terminated.last_stream_id, NO_ERROR)])
        t0 = time.time()
        self.assertEqual(m.proc.wait(10), 0)
        self.assertLess(time.time() - t0, 3)
        # Afterwards nothing listens.
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", m.port("egress")), timeout=2).close()
        self.assertEqual(late_answer, 200)
        self.assertIsNotNone(late_goaway, "a connection opened during the drain got no GOAWAY within 1.5 s "
                             f"(its stream: {late.responses[late_sid].events})")
        self.assertEqual(late_goaway.error_code, NO_ERROR)

    def test_h2load_smoke(self):
        m = self.start()
        h2load = shutil.which("h2load")
        self.assertIsNotNone(h2load, "h2load is missing: scripts/install-deps.sh installs nghttp2-client")
        # h2load 1.52 sends `-H 'Host: X'` as a host field next to its own :authority
        # (127.0.0.1:PORT), which is what meshd routes on (SPEC §3): :authority is set.
        r = subprocess.run([h2load, "-n", "2000", "-c", "4", "-m", "10", "-H", ":authority: direct.local",
                            f"http://127.0.0.1:{m.port('egress')}/"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        line = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                         r"(\d+) errored, (\d+) timeout", r.stdout)
        self.assertIsNotNone(line, r.stdout)
        self.assertEqual(line.groups(), ("2000", "2000", "2000", "2000", "0", "0", "0"), r.stdout)
        self.assertRegex(r.stdout, r"status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx")
        self.assertIn("h2c", r.stdout)  # the application protocol it used
        self.assertEqual(m.metric_reaches(2000, "meshd_requests_total", code="200"), 2000)

    def test_preface_on_a_used_http1_connection_is_not_http2(self):
        m = self.start()
        with socket.create_connection(("127.0.0.1", m.port("egress")), timeout=5) as s:
            s.sendall(b"GET /first HTTP/1.1\r\nHost: direct.local\r\n\r\n")
            status, _, _, rest = read_response(s)
            self.assertEqual((status, rest), (200, b""))
            s.sendall(PREFACE)
            out, closed = read_all(s, 5)
        self.assertTrue(out.startswith(b"HTTP/1.1 "), out)
        self.assertFalse(out.startswith(b"\x00"), out)  # not a SETTINGS frame
        status = int(out.split(b" ", 2)[1])
        self.assertIn(status, (400, 505), out)
        head = out.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
        self.assertRegex(head, r"\r\nx-meshd-error: (http_version_not_supported|bad_request)\r?\n?")
        self.assertIn("content-type: text/plain", head)
        self.assertTrue(closed, out)
        self.assertEqual([r["path"] for r in self.all_requests()], ["/first"])

    def test_ingress_serves_http2_to_the_app(self):
        m = self.start(node="v1", app_port=self.v1.port)
        r = h2_get(m.port("ingress"), "/in", "v1.local", method="GET")
        self.assertEqual((r.status, r.field("x-upstream")), (200, "v1"), r.headers)
        req = self.upstream_request("/in")
        self.assertTrue(req["head"].startswith(b"GET /in HTTP/1.1\r\n"), req["head"])
        self.assertEqual(header(req["headers"], "host"), "v1.local")
        self.assertEqual(m.metric_reaches(1, "meshd_requests_total", direction="ingress", code="200"), 1)

    def test_access_log_and_metrics_count_http2_requests(self):
        m = self.start()
        r = h2_get(m.port("egress"), "/logged", "svc.local", headers=[("x-request-id", "rid-h2")])
        self.assertEqual(r.status, 200)
        r = h2_get(m.port("egress"), "/", "nope.local")
        self.assertEqual(r.status, 403)
        lines = []
        for _ in range(100):  # bounded: a line is written just after the response
            with open(self.access_log) as f:
                lines = f.read().splitlines()
            if len(lines) >= 2:
                break
            time.sleep(0.02)
        self.assertTrue(any('"GET /logged HTTP/2" 200 - ' in l and '"rid-h2"' in l and " canary " in l
                            for l in lines), lines)
        self.assertTrue(any('"GET / HTTP/2" 403 egress_denied ' in l for l in lines), lines)
        self.assertEqual(m.metric_reaches(1, "meshd_requests_total", direction="egress", route="canary", code="200"), 1)
        self.assertEqual(m.metric_reaches(1, "meshd_requests_total", code="403"), 1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--meshd", required=True)
    args, rest = parser.parse_known_args()
    harness.MESHD = args.meshd
    unittest.main(argv=[sys.argv[0], "-v", *rest])
