"""A real HTTP server on 127.0.0.1 (http.server, one thread per connection) that serves images and every way a CDN
can fail: used by tests/test_http_images.py and bench/bench_http_images.py.

Routes (``GET``):

- ``/img/<name>``        the bytes registered under ``name``, ``image/jpeg``
- ``/octet/<name>``      the same bytes as ``application/octet-stream`` (a mislabelled image: decoding decides)
- ``/html/<name>``       an HTML page, ``text/html`` (not an image)
- ``/status/<code>``     that status, a short text body
- ``/flaky/<name>``      500 on the first request for the name, then the image
- ``/slow/<name>``       the image after ``slow_s`` seconds of silence
- ``/endless``           200 without a length, then bytes for as long as the client reads
- ``/loop``              302 to itself
- ``/redirect/<name>``   302 to ``/img/<name>``

Every response waits ``delay_s`` first (the bench's simulated CDN latency). ``hits`` counts requests per path.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ImageServer:
    def __init__(self, images: dict[str, bytes] | None = None, *, delay_s: float = 0.0, slow_s: float = 2.0):
        self.images = dict(images or {})
        self.delay_s = delay_s
        self.slow_s = slow_s
        self.hits: Counter = Counter()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the client's pooled connections are reused

            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout): nothing to do
                    self.close_connection = True

            def do_GET(self):  # noqa: N802 - http.server's name
                with server._lock:
                    server.hits[self.path] += 1
                    n = server.hits[self.path]
                if server.delay_s:
                    time.sleep(server.delay_s)
                parts = self.path.strip("/").split("/", 1)
                route, arg = parts[0], (parts[1] if len(parts) > 1 else "")
                image = server.images.get(arg)
                if route in ("img", "octet", "flaky", "slow") and image is None:
                    return self._send(404, b"no such image", "text/plain")
                if route == "img":
                    return self._send(200, image, "image/jpeg")
                if route == "octet":
                    return self._send(200, image, "application/octet-stream")
                if route == "html":
                    return self._send(200, b"<html><body>Access denied</body></html>", "text/html")
                if route == "status":
                    return self._send(int(arg), f"status {arg}".encode(), "text/plain")
                if route == "flaky":
                    if n == 1:
                        return self._send(500, b"try again", "text/plain")
                    return self._send(200, image, "image/jpeg")
                if route == "slow":
                    time.sleep(server.slow_s)
                    return self._send(200, image, "image/jpeg")
                if route == "loop":
                    return self._send(302, b"", "text/plain", {"Location": "/loop"})
                if route == "redirect":
                    return self._send(302, b"", "text/plain", {"Location": f"/img/{arg}"})
                if route == "endless":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    chunk = b"\xff" * 65536
                    try:
                        for _ in range(100_000):  # 6.5 GB: far more than any cap; stops when the client hangs up
                            self.wfile.write(chunk)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return None
                return self._send(404, b"no such route", "text/plain")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "ImageServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
