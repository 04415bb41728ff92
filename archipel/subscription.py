"""Subscriptions from the client's side: what ``subscribe(...)`` returns.

Iterating a Subscription yields SubscriptionEvent items ("events" and "replicate" modes) or
RowBatch items ("rows" mode) as matching data appears anywhere in the archipelago. An item is
acknowledged to the island when the next one is asked for, or when the subscription is closed:
a named subscription resumes after the last acknowledged item (at least once, nothing skipped).
When the island goes away the subscription reconnects by itself for ``reconnect`` seconds,
resuming after the last item consumed and dropping what it already gave.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pyarrow as pa

from archipel.backoff import Backoff
from archipel.errors import ArchipelError, InvalidArgument
from archipel.replication import set_region
from archipel.types import rpc_error
from archipel.v1 import island_pb2 as pb

__all__ = ["Subscription", "SubscriptionEvent", "RowBatch", "SubscriptionInfo", "subscription_spec", "item_of"]

MODES = ("events", "rows", "replicate")
_RESUMABLE = ("UNAVAILABLE", "CANCELLED", "ABORTED", "INTERNAL", "UNKNOWN")


def subscription_spec(dataset_pattern: str, where: str | None, cone: Any, moc: Any, columns: Any, mode: str,
                      start_at: Any, name: str | None) -> pb.SubscriptionSpec:
    if not isinstance(dataset_pattern, str) or not dataset_pattern:
        raise InvalidArgument(f"dataset_pattern must be a non-empty string, not {dataset_pattern!r}")
    if mode not in MODES:
        raise InvalidArgument(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if isinstance(columns, str):
        columns = [columns]
    spec = pb.SubscriptionSpec(dataset_pattern=dataset_pattern, where=where or "", mode=mode,
                               start_at=str(start_at) if start_at is not None else "latest", name=name or "")
    if columns:
        if not all(isinstance(c, str) for c in columns):
            raise InvalidArgument(f"columns must be names, not {columns!r}")
        spec.columns.extend(columns)
    set_region(spec, cone, moc)
    return spec


@dataclass(frozen=True)
class SubscriptionInfo:
    name: str
    dataset_pattern: str
    where: str
    region: str
    columns: tuple[str, ...]
    mode: str
    cursor: int
    position: int
    lag_changes: int
    lag_seconds: float
    durable: bool
    connected: bool
    created: float
    island: str
    error: str

    @classmethod
    def from_pb(cls, m: Any) -> SubscriptionInfo:
        return cls(name=m.name, dataset_pattern=m.dataset_pattern, where=m.where, region=m.region,
                   columns=tuple(m.columns), mode=m.mode, cursor=m.cursor, position=m.position,
                   lag_changes=m.lag_changes, lag_seconds=m.lag_seconds, durable=m.durable, connected=m.connected,
                   created=m.created, island=m.island, error=m.error)


@dataclass(frozen=True)
class SubscriptionEvent:
    """New data that appeared: which dataset, on which island, in which pixels, how many rows
    (matching the predicate when there is one)."""

    cursor: int
    dataset: str
    island: str
    op: str  # "put" or "append"
    partitions: tuple[str, ...]
    pixels: tuple[tuple[int, int], ...]  # (order, pixel)
    rows: int
    timestamp: float  # when it was committed at its origin
    replicated: bool = False  # "replicate" mode: the partitions are held on the island now

    @classmethod
    def from_pb(cls, m: Any) -> SubscriptionEvent:
        return cls(cursor=m.cursor, dataset=m.dataset, island=m.island, op=m.op, partitions=tuple(m.partitions),
                   pixels=tuple((p.order, p.pixel) for p in m.pixels), rows=m.rows, timestamp=m.timestamp,
                   replicated=m.replicated)


@dataclass(frozen=True)
class RowBatch:
    """Matching rows of one change ("rows" mode): an Arrow record batch (``.batch``) with the
    event it came with. Attributes of the batch (``num_rows``, ``column()``, ``to_pandas()``...)
    are reachable on it directly, and pyarrow accepts it where it takes a record batch."""

    batch: pa.RecordBatch
    event: SubscriptionEvent = field(repr=False)

    @property
    def cursor(self) -> int:
        return self.event.cursor

    @property
    def dataset(self) -> str:
        return self.event.dataset

    @property
    def island(self) -> str:
        return self.event.island

    @property
    def pixels(self) -> tuple[tuple[int, int], ...]:
        return self.event.pixels

    def __getattr__(self, name: str) -> Any:
        return getattr(self.batch, name)

    def __len__(self) -> int:
        return self.batch.num_rows

    def __arrow_c_array__(self, requested_schema: Any = None) -> Any:
        return self.batch.__arrow_c_array__(requested_schema)

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        return pa.Table.from_batches([self.batch]).__arrow_c_stream__(requested_schema)

    def to_table(self) -> pa.Table:
        return pa.Table.from_batches([self.batch])


def item_of(m: pb.SubscriptionEvent) -> SubscriptionEvent | RowBatch:
    """What a subscription yields for one event message (rows mode: one batch per message)."""
    event = SubscriptionEvent.from_pb(m)
    if m.arrow:
        return RowBatch(pa.ipc.open_stream(pa.py_buffer(m.arrow)).read_next_batch(), event)
    return event


_END = object()


class Subscription:
    """A live subscription. Iterate it; ``close()`` (or leaving a ``with`` block) ends the
    stream, acknowledging the last item given."""

    def __init__(self, stub: Any, address: str, spec: pb.SubscriptionSpec, reconnect: float = 60.0) -> None:
        self._stub = stub
        self._address = address
        self._spec = spec
        self._reconnect = max(0.0, float(reconnect))
        self._closed = False
        self._reading = threading.Lock()
        self._pending = 0  # cursor of the last item given whose change is complete
        self._failing_since: float | None = None  # reconnecting since (no item since)
        self._backoff = Backoff(0.05, 1.0)
        self.cursor = 0  # the last cursor consumed (acknowledged)
        self.info: SubscriptionInfo = self._open(spec)
        self.cursor = self.info.cursor

    @property
    def name(self) -> str:
        return self.info.name

    def _open(self, spec: pb.SubscriptionSpec) -> SubscriptionInfo:
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._requests.put(pb.SubscribeRequest(subscribe=spec))
        requests = self._requests

        def outgoing() -> Iterator[pb.SubscribeRequest]:
            while (req := requests.get()) is not _END:
                yield req

        self._stream = self._stub.Subscribe(outgoing())
        try:  # the island refuses a malformed subscription before any event: raise it here
            first = next(self._stream)
        except grpc.RpcError as exc:
            self._requests.put(_END)
            raise rpc_error(exc, self._address) from None
        except StopIteration:
            raise InvalidArgument("the island ended the subscription at once") from None
        return SubscriptionInfo.from_pb(first.started)

    def ack(self) -> None:
        """Acknowledges every item given so far (done anyway when the next one is asked for)."""
        if self._pending > self.cursor:
            self.cursor = self._pending
            self._requests.put(pb.SubscribeRequest(ack=self.cursor))

    def _resume(self, error: grpc.RpcError) -> None:
        """Opens the stream again after the island went away, after the last cursor consumed.
        Attempts back off (50 ms doubling to 1 s) until an item arrives again; after
        ``reconnect`` seconds without one the error is raised."""
        code = error.code().name if error.code() else "UNKNOWN"
        if self._closed or self._reconnect <= 0 or code not in _RESUMABLE:
            raise rpc_error(error, self._address) from None
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        self._requests.put(_END)
        spec = pb.SubscriptionSpec()
        spec.CopyFrom(self._spec)
        spec.start_at = str(self.cursor)
        while True:
            if time.monotonic() - self._failing_since > self._reconnect:
                raise rpc_error(error, self._address) from None
            time.sleep(self._backoff.next())  # backing off while the island is away (not waiting for data)
            try:
                self._open(spec)
                return
            except ArchipelError as exc:
                if exc.code not in ("UNAVAILABLE", "CANCELLED"):
                    raise

    def __iter__(self) -> Iterator[SubscriptionEvent | RowBatch]:
        return self

    def __next__(self) -> SubscriptionEvent | RowBatch:
        with self._reading:
            return self._next()

    def _next(self) -> SubscriptionEvent | RowBatch:
        self.ack()
        while not self._closed:
            try:
                msg = next(self._stream)
            except StopIteration:
                break
            except grpc.RpcError as exc:
                self._resume(exc)
                continue
            if msg.WhichOneof("kind") != "event":
                continue
            m = msg.event
            if self._closed:  # closed meanwhile: not given, so not acknowledged
                break
            if m.cursor <= self.cursor:  # given before a reconnect: at least once, but not twice here
                continue
            self._failing_since = None
            self._backoff.reset()
            if m.last:
                self._pending = m.cursor
            return item_of(m)
        raise StopIteration

    def stop(self, grace: float = 5.0) -> None:
        """Ends the stream from any thread (or a signal handler): iteration stops once the
        island closes it, or after ``grace`` seconds. Items given and not acknowledged come
        again on resuming."""
        self._closed = True
        self._requests.put(_END)
        timer = threading.Timer(grace, self._stream.cancel)
        timer.daemon = True
        timer.start()

    def close(self, timeout: float = 5.0) -> None:
        """Acknowledges the last item given and ends the stream (a named subscription stays).
        The island records the acknowledgement before it ends the stream."""
        if self._closed:
            self._stream.cancel()
            return
        self.ack()
        self._closed = True
        self._requests.put(_END)  # half-close: the island ends the stream once it read the acks
        deadline = time.monotonic() + timeout
        if self._reading.acquire(blocking=False):  # nobody iterates: drain here
            try:
                for _ in self._stream:  # what was in flight is not acknowledged: it comes again
                    if time.monotonic() > deadline:
                        break
            except (grpc.RpcError, ValueError):  # cancelled, or interrupted inside gRPC
                pass
            finally:
                self._reading.release()
        else:  # another thread iterates: it sees the end
            while not self._stream.done() and time.monotonic() < deadline:
                time.sleep(0.01)
        self._stream.cancel()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._requests.put(_END)
        except Exception:
            pass
