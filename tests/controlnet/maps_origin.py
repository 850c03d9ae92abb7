"""A real HTTP origin on 127.0.0.1 for map tests: counts requests per path and, per route, can
be slow, trickle, fail, redirect or serve bad bytes."""

from __future__ import annotations

import collections
import http.server
import io
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field

from PIL import Image


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    delay: float = 0.0
    #: Seconds between single bytes of the body (a trickling server).
    trickle: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: Send no Content-Length (body until close): a lying or absent length must not matter.
    no_length: bool = False


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        origin = self.server.origin
        path = self.path.split("?", 1)[0]
        with origin.lock:
            origin.counts[path] += 1
            origin.hosts.append(self.headers.get("Host", ""))
        route = origin.routes.get(path)
        if route is None:
            self._send(404, b"not found", {})
            return
        if route.delay:
            time.sleep(route.delay)
        try:
            self._respond(route)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _respond(self, route: Route) -> None:
        self.send_response(route.status)
        for name, value in route.headers.items():
            self.send_header(name, value)
        if route.no_length or route.headers.get("Connection") == "close":
            self.send_header("Connection", "close")
            self.close_connection = True
        elif "Content-Length" not in route.headers:
            self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        if route.trickle is None:
            self.wfile.write(route.body)
            return
        for i in range(len(route.body)):
            self.wfile.write(route.body[i : i + 1])
            self.wfile.flush()
            time.sleep(route.trickle)

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    origin: Origin


class Origin:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Route] = {}
        self.counts: collections.Counter[str] = collections.Counter()
        self.hosts: list[str] = []
        self.lock = threading.Lock()
        self._server = _Server((host, 0), _Handler)
        self._server.origin = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    def start(self) -> Origin:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, path: str, body: bytes = b"", **kwargs: object) -> str:
        self.routes[path] = Route(body=body, **kwargs)  # type: ignore[arg-type]
        return self.url(path)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def count(self, path: str) -> int:
        with self.lock:
            return self.counts[path]


# --- images -----------------------------------------------------------------------------------
def image_bytes(
    fmt: str = "PNG",
    size: tuple[int, int] = (128, 96),
    colour: object = (200, 30, 40),
    mode: str = "RGB",
) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, fmt)  # type: ignore[arg-type]
    return buf.getvalue()


def noisy_png(size: tuple[int, int] = (256, 256)) -> bytes:
    """A PNG that compresses badly, so truncating it cuts real pixel data."""
    import random

    rnd = random.Random(7)
    img = Image.frombytes(
        "RGB", size, bytes(rnd.getrandbits(8) for _ in range(size[0] * size[1] * 3))
    )
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int, height: int) -> bytes:
    """A tiny file declaring a huge greyscale image (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )
