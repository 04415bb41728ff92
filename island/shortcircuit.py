"""Short-circuit local reads: the open descriptors of partition files handed to a client on the
island's own host, over an abstract Unix socket, as HDFS's short-circuit reads do. A notebook
beside its island (a laptop island, a site's JupyterHub) then reads at the speed of the page
cache instead of through TLS on loopback.

Who may read what is decided where it always is: the query that names the files (a direct
read, ``island.direct``) checks the caller's rights and limits, and leaves a grant here, a
random id naming those files for ``grant_seconds``, with a key. A client sends the grant, the
indexes of the files it wants and a nonce; the island answers HMAC-SHA256(key, nonce) and one
read-only descriptor per file, opened now (a replica evicted afterwards stays readable through
it). The socket is in the island's network namespace: a client on another host cannot reach it
and reads over HTTPS. A process that took the same name elsewhere cannot prove the key, so the
client does not use what it hands out, and never sees the caller's token (none is sent here).

Protocol, one request at a time per connection: the client sends one JSON line
``{"grant": HEX, "nonce": HEX, "files": [INDEX, ...]}`` (at most ``MAX_FILES`` indexes,
``REQUEST_BYTES`` bytes); the island answers a 4-byte big-endian length and the JSON
``{"proof": HEX, "sizes": [...]}`` with the descriptors in the same message, or
``{"error": TEXT}`` with none.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import socket
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from archipel.errors import ArchipelError
from archipel.v1 import island_pb2 as pb

__all__ = ["ShortCircuit", "MAX_FILES", "proof"]

logger = logging.getLogger(__name__)

MAX_FILES = 200  # descriptors per answer (the kernel takes at most 253 in one message)
REQUEST_BYTES = 64 * 1024


def proof(key: bytes, nonce: bytes) -> str:
    """What the island answers to a nonce: HMAC-SHA256 of it under the grant's key, in hex."""
    return hmac.new(key, nonce, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class _Grant:
    key: bytes
    paths: tuple[str, ...]
    sizes: tuple[int, ...]
    caller: str
    expires: float
    recheck: Callable[[], None]  # raises when the caller may no longer read (a token revoked)


class _Refused(Exception):
    """A request this socket answers with an error."""


class ShortCircuit:
    """The island's abstract socket of descriptors (``socket_name``), and the grants it honours."""

    def __init__(self, island: str, *, grant_seconds: float = 120.0, max_grants: int = 4096,
                 max_connections: int = 64, idle_seconds: float = 60.0) -> None:
        # Random per start: a client can only learn it from a query's answer, after the bind.
        self.socket_name = f"archipel-data/{island}/{secrets.token_hex(12)}"
        self.grant_seconds = grant_seconds
        self.max_grants = max_grants
        self.idle_seconds = idle_seconds
        self._grants: OrderedDict[bytes, _Grant] = OrderedDict()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_connections)
        # Connections are served by reused threads: a thread's catalog connection (the recheck
        # reads the revoked tokens) is opened once, not for every read.
        self._pool = ThreadPoolExecutor(max_connections, thread_name_prefix="short-circuit-conn")
        self._open: set[socket.socket] = set()  # connections being served, woken by stop()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.files_handed = 0
        self.refused = 0

    # -- grants -----------------------------------------------------------------------------
    def grant(self, paths: list[str], sizes: list[int], caller: str,
              recheck: Callable[[], None] = lambda: None) -> pb.LocalRead:
        """Lets whoever holds the answer take these files' descriptors for a while, as long as
        ``recheck`` (the data port's rule for ``caller``, run at each hand-out) passes."""
        gid, key = secrets.token_bytes(16), secrets.token_bytes(32)
        now = time.monotonic()
        with self._lock:
            while self._grants and (len(self._grants) >= self.max_grants
                                    or next(iter(self._grants.values())).expires < now):
                self._grants.popitem(last=False)
            self._grants[gid] = _Grant(key, tuple(paths), tuple(sizes), caller, now + self.grant_seconds,
                                       recheck)
        return pb.LocalRead(socket=self.socket_name, grant=gid, key=key)

    def _lookup(self, gid: bytes) -> _Grant:
        with self._lock:
            g = self._grants.get(gid)
        if g is None or g.expires < time.monotonic():
            raise _Refused("this read's grant is unknown or expired here: run the query again")
        return g

    # -- serving ----------------------------------------------------------------------------
    def start(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind("\0" + self.socket_name)
        sock.listen(64)
        self._sock = sock
        self._thread = threading.Thread(target=self._accept, name="short-circuit", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            except OSError:
                pass
            sock.close()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            serving = list(self._open)
        for conn in serving:  # the pool's threads are not daemons: none may wait out its idle timeout
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _accept(self) -> None:
        while True:
            sock = self._sock
            if sock is None:
                return
            try:
                conn, _ = sock.accept()
            except OSError:
                if self._sock is None:
                    return
                continue
            if not self._slots.acquire(blocking=False):
                self.refused += 1
                conn.close()
                continue
            try:
                self._pool.submit(self._serve, conn)
            except RuntimeError:  # stopping
                conn.close()
                self._slots.release()
                return

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self._open.add(conn)
        try:
            if self._sock is None:  # stopped meanwhile
                return
            conn.settimeout(self.idle_seconds)
            pending = b""
            while True:
                while b"\n" not in pending:
                    data = conn.recv(REQUEST_BYTES)
                    if not data:
                        return
                    pending += data
                    if len(pending) > REQUEST_BYTES:
                        self._answer(conn, {"error": f"a request is one JSON line of at most {REQUEST_BYTES} bytes"})
                        return
                line, pending = pending.split(b"\n", 1)
                try:
                    answer, fds = self._handle(line)
                except _Refused as exc:
                    self.refused += 1
                    self._answer(conn, {"error": str(exc)})
                    continue
                try:
                    self._answer(conn, answer, fds)
                finally:
                    for fd in fds:
                        os.close(fd)
        except OSError as exc:  # the client went away, or stayed silent past idle_seconds
            logger.debug("short-circuit connection ended: %s", exc)
        finally:
            with self._lock:
                self._open.discard(conn)
            conn.close()
            self._slots.release()

    @staticmethod
    def _answer(conn: socket.socket, answer: dict, fds: list[int] | None = None) -> None:
        body = json.dumps(answer).encode()
        socket.send_fds(conn, [struct.pack(">I", len(body)) + body], fds or [])

    def _handle(self, line: bytes) -> tuple[dict, list[int]]:
        try:
            req = json.loads(line)
            gid = bytes.fromhex(req["grant"])
            nonce = bytes.fromhex(req["nonce"])
            files = req["files"]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise _Refused('a request is {"grant": HEX, "nonce": HEX, "files": [INDEX, ...]}') from None
        if not 16 <= len(nonce) <= 64:
            raise _Refused("the nonce must be 16 to 64 bytes")
        if not isinstance(files, list) or not 0 < len(files) <= MAX_FILES:
            raise _Refused(f"ask for 1 to {MAX_FILES} files at a time")
        g = self._lookup(gid)
        try:
            g.recheck()
        except ArchipelError as exc:
            raise _Refused(f"{g.caller} may not read these files now: {exc.message}") from None
        if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(g.paths) for i in files):
            raise _Refused(f"file indexes must be integers from 0 to {len(g.paths) - 1}")
        fds: list[int] = []
        try:
            for i in files:
                try:
                    fd = os.open(g.paths[i], os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    raise _Refused(f"file {i} of this read is not held here any more: run the query again") from None
                fds.append(fd)
                if os.fstat(fd).st_size != g.sizes[i]:
                    raise _Refused(f"file {i} of this read changed since the query: run it again")
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        self.files_handed += len(fds)
        logger.debug("handed %d files to %s", len(fds), g.caller)
        return {"proof": proof(g.key, nonce), "sizes": [g.sizes[i] for i in files]}, fds
