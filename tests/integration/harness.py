"""Test harness for black-box tests of `meshd run`: fake upstreams that record what
they receive and misbehave on request, a fake DNS server, and a meshd process on
port 0. Standard library only; every server binds 127.0.0.1 port 0; every loop is
bounded."""
import json
import os
import re
import shutil
import socket
import socketserver
import struct
import subprocess
import tempfile
import threading
import time

MESHD = os.environ.get("MESHD_BINARY", "")
SANITIZED = os.environ.get("MESHD_SANITIZED") == "1"


# ---------------------------------------------------------------- fake upstream
class Upstream:
    """An HTTP/1.1 server on 127.0.0.1:0. Behaviour by path:
    /status/NNN           answer NNN
    /flaky/KEY/N          503 for the first N requests with KEY, then 200
    /hang                 never answer
    /close-mid            headers promising 100 bytes, 10 bytes, then close
    /reset                close without answering
    /big/N                N bytes of body (Content-Length), written in pieces
    /chunked/N            N bytes, chunked
    /until-close/N        N bytes, no length, then close
    /sleep/MS             answer after MS milliseconds
    /idle-close/MS        answer, then close the connection after MS ms without a request
    /slow-body            headers and 10 of 100 bytes, then 5 s of silence
    /health               `health_status` (200 unless a test changes it), after `health_delay` s
    (`force_status` set: every path but /health answers it)
    anything else         200 with a JSON echo of the request
    Every request head (raw bytes) and body length is recorded."""

    def __init__(self, name="up"):
        self.name = name
        self.requests = []  # dicts: head (bytes), method, path, headers [(n, v)], body_len
        self.connections = 0
        self.closed = 0  # connections that have ended (either side closed)
        self.lock = threading.Lock()
        self.counters = {}
        self.health_status = 200  # what /health answers
        self.health_delay = 0  # seconds /health waits before answering
        self.force_status = None  # when set, every other path answers this
        upstream = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                with upstream.lock:
                    upstream.connections += 1
                try:
                    upstream.serve(self.request)
                finally:
                    with upstream.lock:
                        upstream.closed += 1

        class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def _read_until(sock, buf, marker):
        for _ in range(100000):
            i = buf.find(marker)
            if i >= 0:
                return buf, i
            data = sock.recv(65536)
            if not data:
                return buf, -1
            buf += data
        return buf, -1

    def _read_body(self, sock, buf, headers):
        te = [v for n, v in headers if n.lower() == "transfer-encoding"]
        cl = [v for n, v in headers if n.lower() == "content-length"]
        total = 0
        if te and "chunked" in te[-1].lower():
            for _ in range(1 << 22):
                buf, i = self._read_until(sock, buf, b"\r\n")
                if i < 0:
                    return buf, total, False
                size = int(buf[:i].split(b";")[0], 16)
                buf = buf[i + 2:]
                if size == 0:
                    buf, j = self._read_until(sock, buf, b"\r\n\r\n") if not buf.startswith(b"\r\n") else (buf, -2)
                    buf = buf[2:] if j == -2 else buf[j + 4:]
                    return buf, total, True
                while len(buf) < size + 2:
                    data = sock.recv(1 << 20)
                    if not data:
                        return buf, total, False
                    buf += data
                total += size
                buf = buf[size + 2:]
        if cl:
            n = int(cl[0])
            while len(buf) < n:
                data = sock.recv(min(1 << 20, n - len(buf)))
                if not data:
                    return buf, len(buf), False
                buf += data
            return buf[n:], n, True
        return buf, 0, True

    def serve(self, sock):
        buf = b""
        for _ in range(10000):
            try:
                buf, i = self._read_until(sock, buf, b"\r\n\r\n")
            except OSError:
                return
            if i < 0:
                return
            head, buf = buf[:i + 4], buf[i + 4:]
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = [tuple(x.split(":", 1)) for x in lines[1:] if x]
            headers = [(n, v.strip()) for n, v in headers]
            buf, body_len, ok = self._read_body(sock, buf, headers)
            record = {"head": head, "method": method, "path": path, "headers": headers, "body_len": body_len}
            with self.lock:
                self.requests.append(record)
            if not ok:
                return
            try:
                if not self.respond(sock, method, path, headers, body_len):
                    return
            except OSError:
                return

    def respond(self, sock, method, path, headers, body_len):
        def send(status, body=b"", extra=""):
            head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nX-Upstream: {self.name}\r\n{extra}\r\n"
            sock.sendall(head.encode() + (b"" if method == "HEAD" else body))
            return True

        parts = path.split("?")[0].split("/")
        if path == "/health":
            if self.health_delay:
                time.sleep(self.health_delay)
            return send(self.health_status, b"health\n")
        if self.force_status is not None:
            return send(self.force_status, f"{self.name} forced {self.force_status}\n".encode())
        if path == "/slow-body":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            time.sleep(5)
            return False
        if path.startswith("/status/"):
            return send(int(parts[2]), f"{self.name} {parts[2]}\n".encode())
        if path.startswith("/flaky/"):
            key, n = parts[2], int(parts[3])
            with self.lock:
                self.counters[key] = self.counters.get(key, 0) + 1
                count = self.counters[key]
            return send(503 if count <= n else 200, f"{self.name} attempt {count}\n".encode())
        if path == "/hang":
            time.sleep(30)
            return False
        if path == "/close-mid":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            time.sleep(0.05)
            return False
        if path == "/reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if path.startswith("/big/"):
            n = int(parts[2])
            sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n".encode())
            piece = b"x" * 65536
            sent = 0
            while sent < n:
                k = min(len(piece), n - sent)
                sock.sendall(piece[:k])
                sent += k
            return True
        if path.startswith("/chunked/"):
            n = int(parts[2])
            sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            sent = 0
            while sent < n:
                k = min(1000, n - sent)
                sock.sendall(b"%x\r\n" % k + b"c" * k + b"\r\n")
                sent += k
            sock.sendall(b"0\r\n\r\n")
            return True
        if path.startswith("/until-close/"):
            n = int(parts[2])
            sock.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"u" * n)
            return False
        if path.startswith("/idle-close/"):
            # A server keep-alive timeout: the connection closes after MS ms idle.
            sock.settimeout(int(parts[2]) / 1000)
            return send(200, f"{self.name} idle-close\n".encode())
        if path.startswith("/sleep/"):
            time.sleep(int(parts[2]) / 1000)
            return send(200, f"{self.name} slept\n".encode())
        echo = json.dumps({"upstream": self.name, "method": method, "path": path, "headers": headers,
                           "body_len": body_len}).encode()
        return send(200, echo, "Content-Type: application/json\r\n")


# ---------------------------------------------------------------- fake DNS
class FakeDns:
    """A UDP DNS server on 127.0.0.1:0. `records[name] = [ip, ...]`, or one of the
    strings 'NXDOMAIN', 'SERVFAIL', 'TIMEOUT'. Answers A and AAAA (AAAA: none)."""

    def __init__(self):
        self.records = {}
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.running = True
        threading.Thread(target=self.loop, daemon=True).start()

    def close(self):
        self.running = False
        self.sock.close()

    def loop(self):
        while self.running:
            try:
                data, addr = self.sock.recvfrom(512)
            except OSError:
                return
            self.queries += 1
            reply = self.answer(data)
            if reply is not None:
                try:
                    self.sock.sendto(reply, addr)
                except OSError:
                    return

    def answer(self, q):
        qid, flags, qd = struct.unpack("!HHH", q[:6])
        i, labels = 12, []
        while q[i] != 0:
            n = q[i]
            labels.append(q[i + 1:i + 1 + n].decode())
            i += n + 1
        qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
        question = q[12:i + 5]
        name = ".".join(labels).lower()
        rec = self.records.get(name, "NXDOMAIN")
        if rec == "TIMEOUT":
            return None
        rcode = {"NXDOMAIN": 3, "SERVFAIL": 2}.get(rec, 0) if isinstance(rec, str) else 0
        answers = b""
        count = 0
        if rcode == 0 and qtype == 1:
            for ip in rec:
                answers += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4) + socket.inet_aton(ip)
                count += 1
        header = struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, count, 0, 0)
        return header + question + answers


# ---------------------------------------------------------------- meshd
class Meshd:
    """A `meshd run` process on port 0 with the given mesh text."""

    def __init__(self, mesh_text, node, extra_args=(), env=None, app_port=None, workers=2, preexec_fn=None):
        self.dir = tempfile.mkdtemp(prefix="meshd-test-")
        self.mesh_path = os.path.join(self.dir, "mesh.yaml")
        with open(self.mesh_path, "w") as f:
            f.write(mesh_text)
        args = [MESHD, "run", "--mesh", self.mesh_path, "--node", node, "--egress-port", "0",
                "--ingress-port", "0", "--admin", "127.0.0.1:0", "--workers", str(workers),
                "--set", "drain_min=200ms", *extra_args]
        if app_port is not None:
            args += ["--app-port", str(app_port)]
        self.out_path = os.path.join(self.dir, "stdout")
        self.err_path = os.path.join(self.dir, "stderr")
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(args, stdout=out, stderr=err, env=env, preexec_fn=preexec_fn)
        self.addresses = {}
        for _ in range(200):
            text = self.stdout()
            for m in re.finditer(r"meshd: listening ([\w:]+) (\S+)", text):
                self.addresses[m.group(1)] = m.group(2)
            if {"egress", "ingress", "admin"} <= set(self.addresses):
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"meshd exited {self.proc.returncode}: {self.stderr()}")
            time.sleep(0.02)
        else:
            raise RuntimeError("meshd did not start: " + self.stderr())

    def stdout(self):
        with open(self.out_path) as f:
            return f.read()

    def stderr(self):
        with open(self.err_path) as f:
            return f.read()

    def port(self, name):
        return int(self.addresses[name].rsplit(":", 1)[1])

    def admin(self, path, method="GET"):
        return http_request("127.0.0.1", self.port("admin"), method, path, headers={"Host": "admin"})

    def wait_ready(self, timeout=12):
        for _ in range(int(timeout * 20)):
            if self.admin("/ready")[0] == 200:
                return True
            time.sleep(0.05)
        return False

    def metric_reaches(self, value, name, timeout=5, **labels):
        """The metric, once it reaches `value` (bounded wait): a request is counted
        just after its last byte goes out, so a client can read /metrics first."""
        got = self.metric(name, **labels)
        for _ in range(int(timeout * 50)):
            if got >= value:
                break
            time.sleep(0.02)
            got = self.metric(name, **labels)
        return got

    def metric(self, name, **labels):
        status, _, body = self.admin("/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop_and_check(self, test):
        """Stops meshd and has `test` require a clean drain (exit 0) and no sanitizer
        report on its stderr (leaks included)."""
        code = self.stop()
        err = self.stderr()
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer"):
            test.assertNotIn(marker, err, err)
        test.assertEqual(code, 0, err)
        shutil.rmtree(self.dir, ignore_errors=True)  # kept when a check above failed

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def open_fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


# ---------------------------------------------------------------- clients
def read_response(sock, method="GET", limit=1 << 27):
    """Reads one response: (status, headers list, body bytes). Raises on EOF."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before a response head: %r" % buf)
        buf += data
        if len(buf) > limit:
            raise ValueError("head too large")
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = [(n, v.strip()) for n, v in (x.split(":", 1) for x in lines[1:])]
    hmap = {n.lower(): v for n, v in headers}
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return status, headers, b"", rest
    if "content-length" in hmap:
        n = int(hmap["content-length"])
        while len(rest) < n:
            data = sock.recv(min(1 << 20, n - len(rest)))
            if not data:
                raise ConnectionError("truncated body")
            rest += data
        return status, headers, rest[:n], rest[n:]
    if hmap.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        for _ in range(1 << 22):
            while b"\r\n" not in rest:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("truncated chunked body")
                rest += data
            line, rest = rest.split(b"\r\n", 1)
            size = int(line, 16)
            while len(rest) < size + 2:
                data = sock.recv(1 << 20)
                if not data:
                    raise ConnectionError("truncated chunk")
                rest += data
            if size == 0:
                return status, headers, body, rest[2:]
            body += rest[:size]
            rest = rest[size + 2:]
    body = rest
    for _ in range(1 << 20):
        data = sock.recv(1 << 20)
        if not data:
            break
        body += data
    return status, headers, body, b""


def http_request(host, port, method, target, headers=None, body=b"", timeout=10):
    with socket.create_connection((host, port), timeout=timeout) as s:
        head = f"{method} {target} HTTP/1.1\r\n"
        hdrs = {"Host": f"{host}:{port}", "Connection": "close"}
        hdrs.update(headers or {})
        if body:
            hdrs["Content-Length"] = str(len(body))
        head += "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        s.sendall(head.encode() + body)
        status, hs, b, _ = read_response(s, method)
        return status, hs, b


def raw_exchange(port, data, timeout=5):
    """Sends raw bytes; returns everything received until the peer closes (or timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            for _ in range(10000):
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except socket.timeout:
            out += b"<timeout>"
        return out


def header(headers, name):
    for n, v in headers:
        if n.lower() == name.lower():
            return v
    return None
