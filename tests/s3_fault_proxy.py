"""An HTTP proxy in front of an S3 server (moto's, in the tests) that makes some requests fail, as object stores do.

Each request is forwarded to the server, or, drawn from a seed, answered with a fault:

- ``error``: ``500 InternalError`` (the server failed);
- ``throttle``: ``503 SlowDown`` (S3's throttling answer);
- ``cut``: a request with a body (an upload) is forwarded half, then both connections are closed: the client sees
  its connection cut in the middle of the upload, and the server never completes the object.

A request is faulted at most once (by method and target): S3 clients retry a failed request, and the retry goes
through, so a run that retries as it should always ends; one that does not retry fails. Every request and its fate
is recorded in :attr:`FaultProxy.log`. One connection per request (the proxy answers ``Connection: close``).
"""

from __future__ import annotations

import random
import socket
import socketserver
import threading
from dataclasses import dataclass

FAULTS = ("error", "throttle", "cut")
_BODIES = {
    "error": (500, "Internal Server Error", "InternalError", "We encountered an internal error. Please try again."),
    "throttle": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
}


@dataclass
class Request:
    method: str
    target: str
    body_bytes: int  # as sent (an aws-chunked upload carries chunk signatures too)
    object_bytes: int  # the object's size an upload declares (x-amz-decoded-content-length, else the body's)
    fate: str  # "ok" or one of FAULTS


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return b"", b""
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


def _headers(head: bytes) -> tuple[str, dict[str, str], list[str]]:
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return lines[0], hdrs, lines


def _read_body(sock: socket.socket, hdrs: dict[str, str], rest: bytes) -> bytes:
    if "content-length" in hdrs:
        n = int(hdrs["content-length"])
        while len(rest) < n:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return rest[:n]
    if "chunked" in hdrs.get("transfer-encoding", "").lower():
        while not rest.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return rest
    return b""


class FaultProxy:
    """``FaultProxy(upstream_port, rate=0.1, seed=0)``; ``start()`` returns the port to point clients at."""

    def __init__(self, upstream_port: int, *, rate: float = 0.1, seed: int = 0, faults: tuple[str, ...] = FAULTS):
        self.upstream = ("127.0.0.1", int(upstream_port))
        self.rate, self.faults = float(rate), tuple(faults)
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.faulted: set[tuple[str, str]] = set()
        self.log: list[Request] = []
        self.server: socketserver.ThreadingTCPServer | None = None

    def _fate(self, method: str, target: str, body: int) -> str:
        with self.lock:
            if (method, target) in self.faulted or self.rng.random() >= self.rate:
                return "ok"
            kinds = [f for f in self.faults if f != "cut" or body >= 2]  # only an upload can be cut
            if not kinds:
                return "ok"
            self.faulted.add((method, target))
            return self.rng.choice(kinds)

    def counts(self) -> dict[str, int]:
        with self.lock:
            out = {f: 0 for f in ("ok", *FAULTS)}
            for r in self.log:
                out[r.fate] += 1
            return out

    def handle(self, client: socket.socket) -> None:
        head, rest = _read_head(client)
        if not head:
            return
        request_line, hdrs, lines = _headers(head)
        method, target = request_line.split(" ")[:2]
        declared = int(hdrs.get("content-length", "0") or 0)
        size = int(hdrs.get("x-amz-decoded-content-length", declared) or 0)
        fate = self._fate(method, target, size)
        if hdrs.get("expect", "").lower() == "100-continue":
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if fate == "cut":  # take half the upload, hand it on, then close both connections
            half = rest
            while len(half) < size // 2:
                chunk = client.recv(65536)
                if not chunk:
                    break
                half += chunk
            with self.lock:
                self.log.append(Request(method, target, len(half), size, fate))
            kept = [line for line in lines[1:] if line.split(":", 1)[0].strip().lower() != "expect"]
            with socket.create_connection(self.upstream, timeout=60) as up:
                up.sendall(("\r\n".join([request_line, *kept]) + "\r\n\r\n").encode("latin-1") + half)
            return
        body = _read_body(client, hdrs, rest)
        with self.lock:
            self.log.append(Request(method, target, len(body), size, fate))
        if fate in _BODIES:
            status, reason, code, message = _BODIES[fate]
            xml = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
                   f"<RequestId>fault</RequestId></Error>").encode()
            client.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: "
                           f"{len(xml)}\r\nConnection: close\r\n\r\n".encode() + xml)
            return
        kept = [line for line in lines[1:] if line.split(":", 1)[0].strip().lower() not in ("connection", "expect")]
        forward = ("\r\n".join([request_line, *kept, "Connection: close"]) + "\r\n\r\n").encode("latin-1")
        with socket.create_connection(self.upstream, timeout=60) as up:
            up.sendall(forward + body)
            response = b""
            while True:
                chunk = up.recv(65536)
                if not chunk:
                    break
                response += chunk
        rhead, _, rbody = response.partition(b"\r\n\r\n")
        rlines = [line for line in rhead.decode("latin-1").split("\r\n")
                  if line.split(":", 1)[0].strip().lower() != "connection"]
        client.sendall(("\r\n".join([*rlines, "Connection: close"]) + "\r\n\r\n").encode("latin-1") + rbody)

    def start(self) -> int:
        proxy = self

        class _Handler(socketserver.BaseRequestHandler):
            def handle(self):
                try:
                    proxy.handle(self.request)
                except OSError:
                    pass

        class _Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = _Server(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.server.server_address[1]

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
