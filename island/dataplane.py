"""The island's bulk data port: partition files over HTTPS with Range requests, at the speed
of the machine.

The web face (aiohttp) serves files too, but through asyncio's TLS layer, which moved about
0.1 GB/s here. This server is a thread per connection over blocking TLS sockets: a response
is ``sendall`` of the file in 8 MiB slices read into one buffer, so OpenSSL encrypts and writes
with Python's lock released. Who may read what is the same rule as the web face's
(``check_data_read``, ``partition_file``).

Connections are bounded (``max_connections``; one over is closed at once), the TLS handshake runs in
the connection's thread with a timeout (a client that never finishes it holds one thread,
not the port), and idle keep-alive connections close after ``idle_seconds``.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from archipel.errors import ArchipelError, FailedPrecondition, NotFound, PermissionDenied, Unauthenticated
from island.dataserve import check_data_read, partition_file
from metacatalog.store import CatalogStore

__all__ = ["DataPlane", "parse_range"]

logger = logging.getLogger(__name__)

SLICE_BYTES = 8 << 20
_PATH = re.compile(r"^/data/([^/]+)/(.+)$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The [start, end) a ``Range`` header asks of a file of ``size`` bytes; None for the whole
    file. One range only (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``); ValueError when it cannot
    be satisfied or is malformed."""
    if header is None:
        return None
    m = _RANGE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        raise ValueError(f"unsupported Range {header[:80]!r}: one range, bytes=START-END")
    first, last = m.group(1), m.group(2)
    if not first:  # the last n bytes
        n = int(last)
        if n == 0:
            raise ValueError("the range bytes=-0 is empty")
        return max(0, size - n), size
    start = int(first)
    end = min(size, int(last) + 1) if last else size
    if start >= size or end <= start:
        raise ValueError(f"the range {header[:80]!r} is outside the file's {size} bytes")
    return start, end


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, plane: DataPlane, address: tuple[str, int]) -> None:
        self.plane = plane
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:
        if not self.plane._slots.acquire(blocking=False):
            self.plane.refused += 1
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        """A connection that failed before a request (no TLS, a handshake cut or timed out) is
        the client's affair: one debug line, not a traceback in the island's log."""
        import sys

        logger.debug("data connection from %s failed: %s", client_address[0], sys.exc_info()[1])

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.plane._slots.release()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "archipel-data"
    sys_version = ""

    def setup(self) -> None:
        plane: DataPlane = self.server.plane
        self.request.settimeout(plane.handshake_seconds)
        # No Nagle: the tail of each response would wait for the client's delayed ACK (40 ms).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if plane.ssl_context is not None:
            self.request = plane.ssl_context.wrap_socket(self.request, server_side=True)  # handshake here
        self.request.settimeout(plane.idle_seconds)
        self.connection = self.request
        super().setup()

    def handle(self) -> None:
        try:
            super().handle()
        except (OSError, ssl.SSLError):
            pass  # the client went away or never spoke TLS

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        logger.debug("data %s: " + format, self.client_address[0], *args)

    def _reply(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        body = (text.rstrip("\n") + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def _file(self) -> Path | None:
        plane: DataPlane = self.server.plane
        m = _PATH.match(self.path.split("?", 1)[0])
        if not m:
            self._reply(404, f"no such path {self.path[:200]!r}: files are at /data/DATASET/PARTITION")
            return None
        dataset, pid = unquote(m.group(1)), unquote(m.group(2))
        try:
            if plane.gate is not None:
                der = self.request.getpeercert(binary_form=True) if isinstance(self.request, ssl.SSLSocket) else None
                check_data_read(plane.gate, plane.store, der, self.headers.get("Authorization"), dataset)
            return partition_file(plane.store, plane.export, dataset, pid)
        except Unauthenticated as exc:
            self._reply(401, exc.message, {"WWW-Authenticate": "Bearer"})
        except PermissionDenied as exc:
            self._reply(403, exc.message)
        except NotFound as exc:
            self._reply(404, exc.message)
        except ArchipelError as exc:
            self._reply(400, exc.message)
        return None

    def _serve(self) -> None:
        plane: DataPlane = self.server.plane
        path = self._file()
        if path is None:
            return
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            self._reply(404, f"{self.path[:200]!r} is not held here any more")
            return
        try:
            size = os.fstat(fd).st_size
            try:
                span = parse_range(self.headers.get("Range"), size)
            except ValueError as exc:
                self._reply(416, str(exc), {"Content-Range": f"bytes */{size}"})
                return
            start, end = span or (0, size)
            self.send_response(206 if span else 200)
            self.send_header("Content-Type", "application/vnd.apache.parquet")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start))
            if span:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            self.end_headers()
            if self.command == "HEAD" or end == start:
                return
            # Copied from the page cache into one buffer per connection: mapping the file
            # instead costs a page fault per 4 KiB, as much here as the copy.
            buf = plane.take_buffer()
            try:
                at = start
                while at < end:
                    n = os.preadv(fd, [buf[:min(SLICE_BYTES, end - at)]], at)
                    if n <= 0:
                        raise OSError(f"{path} is shorter than its {size} bytes")
                    self.wfile.write(buf[:n])
                    at += n
            finally:
                plane.give_buffer(buf)
            plane.bytes_sent += end - start
        finally:
            os.close(fd)


class DataPlane:
    """Serves ``GET``/``HEAD /data/<dataset>/<partition path>`` on its own port (``base_url``)."""

    def __init__(self, store: CatalogStore, export: Path, host: str, port: int, gate=None,
                 tls_files: tuple[Path, Path] | None = None, max_connections: int = 64,
                 idle_seconds: float = 60.0, handshake_seconds: float = 10.0) -> None:
        self.store = store
        self.export = export
        self.host = host
        self.port = port
        self.gate = gate
        self.ssl_context = gate.server_ssl(*map(str, tls_files)) if gate is not None and tls_files else None
        self.idle_seconds = idle_seconds
        self.handshake_seconds = handshake_seconds
        self._slots = threading.BoundedSemaphore(max_connections)
        self._buffers: list[memoryview] = []
        self._buffers_lock = threading.Lock()
        self.refused = 0
        self.bytes_sent = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def take_buffer(self) -> memoryview:
        """An 8 MiB buffer, reused from response to response (fresh memory faults in slowly)."""
        with self._buffers_lock:
            if self._buffers:
                return self._buffers.pop()
        return memoryview(bytearray(SLICE_BYTES))

    def give_buffer(self, buf: memoryview) -> None:
        with self._buffers_lock:
            if len(self._buffers) < 16:
                self._buffers.append(buf)

    @property
    def base_url(self) -> str:
        return f"{'https' if self.ssl_context is not None else 'http'}://{self.host}:{self.port}/data"

    def start(self) -> None:
        try:
            self._server = _Server(self, (self.host, self.port))
        except OSError as exc:
            raise FailedPrecondition(f"cannot serve the data port on {self.host}:{self.port}: {exc.strerror}") from None
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="data-plane", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
