"""The web face's way into the archipelago: the island's own gRPC API, called as the HTTP
caller (their bearer token, or none), so every rule is the one gRPC applies. Errors become
HTTP statuses with the same messages."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from archipel.client import Client
from archipel.errors import ArchipelError, Unauthenticated

__all__ = ["Gateway", "STATUS", "http_status", "bearer_token", "add_routes"]

T = TypeVar("T")

STATUS = {
    "INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409, "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499, "FAILED_PRECONDITION": 503,
    "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504, "INTERNAL": 500, "DATA_LOSS": 500,
}


def add_routes(app, handlers: object, routes: dict[str, dict[str, str]]) -> None:
    """Adds ``routes`` (HTTP METHOD or "*" -> {PATH: the name of its handler on ``handlers``});
    GET routes answer HEAD too."""
    for method, paths in routes.items():
        for path, handler in paths.items():
            if method == "GET":
                app.router.add_get(path, getattr(handlers, handler))
            else:
                app.router.add_route(method, path, getattr(handlers, handler))


def http_status(exc: ArchipelError) -> int:
    return STATUS.get(exc.code, 500)


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization`` header ("" when none was sent)."""
    if header is None or not header.strip():
        return ""
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("the Authorization header must be 'Bearer TOKEN'")
    if len(token) > 16384 or any(c.isspace() or not c.isprintable() for c in token):
        raise Unauthenticated("the bearer token is malformed (spaces, control characters or too long)")
    return token


class Gateway:
    """Clients of the island's client port, one per token (a few kept open), and a pool of
    threads for their blocking calls."""

    def __init__(self, address: str, ca: str, keep: int = 64, threads: int = 32) -> None:
        self.address = address
        self.ca = ca
        self.keep = keep
        self._clients: OrderedDict[str, Client] = OrderedDict()
        self._lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="web")

    def client(self, authorization: str | None) -> Client:
        token = bearer_token(authorization)
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            found = self._clients.get(key)
            if found is not None:
                self._clients.move_to_end(key)
                return found
            client = Client(self.address, timeout=60.0, token=token, ca=self.ca)
            self._clients[key] = client
            while len(self._clients) > self.keep:
                _, old = self._clients.popitem(last=False)
                threading.Timer(120.0, old.close).start()  # calls in flight finish first
            return client

    async def run(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, lambda: fn(*args, **kw))

    def close(self) -> None:
        with self._lock:
            for c in self._clients.values():
                c.close()
            self._clients.clear()
        self.pool.shutdown(wait=False, cancel_futures=True)
