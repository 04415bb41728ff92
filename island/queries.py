"""Running queries: the registry Cancel looks in, and the loop that streams one query's
results within its limits. Knows nothing of gRPC: it yields domain events."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from archipel.arrowwire import encode_batches
from archipel.errors import AlreadyExists, Cancelled, DeadlineExceeded, InvalidArgument, ResourceExhausted
from federation.planner import QueryPlan

__all__ = ["RunningQuery", "QueryRegistry", "Header", "Chunk", "Trailer", "stream_results"]

logger = logging.getLogger(__name__)


class RunningQuery:
    def __init__(self, query_id: str, owner: str = "") -> None:
        self.id = query_id
        self.owner = owner  # the caller's name: only they (or an admin) may cancel it
        self.started = time.monotonic()
        self.cancelled = threading.Event()
        self.reason = ""
        self._hooks: list[Callable[[], None]] = []
        self._closed = False
        self._lock = threading.Lock()

    def on_cancel(self, hook: Callable[[], None]) -> None:
        with self._lock:
            if not self.cancelled.is_set():
                self._hooks.append(hook)
                return
        hook()

    def close(self) -> None:
        """The query is over: a later cancel (the RPC's end callback) has nothing to stop."""
        with self._lock:
            self._hooks = []
            self._closed = True

    def cancel(self, reason: str = "cancelled") -> bool:
        with self._lock:
            if self.cancelled.is_set() or self._closed:
                return False
            self.reason = reason
            self.cancelled.set()
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            try:
                hook()
            except Exception:
                logger.warning("cancel hook of query %s failed", self.id, exc_info=True)
        return True

    def raise_if_cancelled(self) -> None:
        if self.cancelled.is_set():
            if self.reason.startswith("timeout"):
                why = self.reason.partition(": ")[2] or "its timeout"
                raise DeadlineExceeded(f"query {self.id} stopped: {why}")
            raise Cancelled(f"query {self.id} was {self.reason}")


class QueryRegistry:
    def __init__(self) -> None:
        self._running: dict[str, RunningQuery] = {}
        self._lock = threading.Lock()

    def start(self, query_id: str = "", owner: str = "") -> RunningQuery:
        if query_id and (len(query_id) > 128 or not query_id.replace("-", "").replace("_", "").isalnum()):
            raise InvalidArgument("query_id must be at most 128 letters, digits, - or _")
        qid = query_id or uuid.uuid4().hex
        with self._lock:
            if qid in self._running:
                raise AlreadyExists(f"a query with id {qid!r} is already running")
            rq = self._running[qid] = RunningQuery(qid, owner)
        return rq

    def finish(self, rq: RunningQuery) -> None:
        rq.close()
        with self._lock:
            self._running.pop(rq.id, None)

    def cancel(self, query_id: str, reason: str = "cancelled", owner: str | None = None) -> bool:
        """Cancels a running query (only ``owner``'s when given)."""
        with self._lock:
            rq = self._running.get(query_id)
        if rq is None or (owner is not None and rq.owner != owner):
            return False
        return rq.cancel(reason)

    def running(self) -> list[str]:
        with self._lock:
            return list(self._running)


@dataclass
class Header:
    query_id: str
    schema: pa.Schema
    plan: QueryPlan


@dataclass
class Chunk:
    body: memoryview
    more: bool


@dataclass
class Trailer:
    num_rows: int
    num_bytes: int
    num_batches: int
    elapsed: float
    engine: str


def stream_results(
    rq: RunningQuery,
    plan: QueryPlan,
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch],
    *,
    chunk_bytes: int,
    max_rows: int,
    max_bytes: int,
    compression: str,
) -> Iterator[Header | Chunk | Trailer]:
    """Header, chunks and trailer of one query, stopping at its limits or its cancellation."""
    yield Header(rq.id, schema, plan)
    rows = nbytes = nbatches = 0
    for batch in batches:
        rq.raise_if_cancelled()
        if max_rows and rows + batch.num_rows > max_rows:
            raise ResourceExhausted(f"result exceeds the row limit of {max_rows} (set [query] max_rows or add LIMIT)")
        for body, more, n in encode_batches([batch], chunk_bytes, compression or None):
            nbytes += len(body)
            if max_bytes and nbytes > max_bytes:
                raise ResourceExhausted(f"result exceeds the byte limit of {max_bytes} (the tightest of the client's "
                                        f"max_bytes, [query] max_bytes and [limits] result_bytes)")
            yield Chunk(body, more)
        rows += batch.num_rows
        nbatches += 1
    rq.raise_if_cancelled()
    yield Trailer(rows, nbytes, nbatches, time.monotonic() - rq.started, plan.engine)



_DONE = object()


def prefetch(items: Iterator, depth: int, stop: threading.Event) -> Iterator:
    """Runs ``items`` in a background thread at most ``depth`` items ahead of the consumer, so
    that producing (scanning, encoding) overlaps gRPC's blocking send of the previous message.
    Exceptions are raised again in the consumer; ``stop`` (the query's cancellation) ends the
    producer, which is waited for before the consumer leaves."""
    import queue

    q: queue.Queue = queue.Queue(maxsize=depth)

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer
            put(exc)

    worker = threading.Thread(target=produce, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            try:
                item = q.get(timeout=0.1)
            except queue.Empty:
                if not worker.is_alive() and q.empty():
                    return
                continue
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if worker.is_alive():
            worker.join(timeout=10 if stop.is_set() else 0)
