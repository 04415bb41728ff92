"""The asyncio twin of the client, for many concurrent queries from one event loop.

    async with archipel.aio.connect("localhost:7770") as client:
        result = await client.sql("SELECT ...")
        async for batch in result: ...
        table = await (await client.sql("SELECT ...")).read_all()
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pyarrow as pa

from archipel._rpc import (PUBLISH_CALL, PUBLISH_METHOD, QUERY_CALL, QUERY_METHOD, Closeable, QueryHeader, as_table,
                           publish_messages, query_part, stats_of, translated)
from archipel.channel import open_channel
from archipel.errors import Internal, InvalidArgument
from archipel.names import check_dataset_name
from archipel.subscription import RowBatch, SubscriptionEvent, SubscriptionInfo, item_of, subscription_spec
from archipel.types import DatasetInfo, QueryPlan, QueryStats, default_address, query_request
from archipel.v1 import island_pb2 as pb
from archipel.v1 import island_pb2_grpc as pb_grpc

__all__ = ["connect", "AsyncClient", "AsyncQueryResult"]


class AsyncQueryResult:
    """Async iterator of RecordBatches; ``await read_all()`` for a Table."""

    def __init__(self, call: Any, address: str) -> None:
        self._call = call
        self._address = address
        self.stats: QueryStats | None = None
        self.query_id = ""
        self.schema: pa.Schema | None = None
        self.plan: QueryPlan | None = None
        self._consumed = False

    async def _start(self) -> AsyncQueryResult:
        with translated(self._address):
            header = QueryHeader(await self._call.read())
        self.query_id, self.schema, self.plan = header.query_id, header.schema, header.plan
        return self

    async def __aiter__(self) -> AsyncIterator[pa.RecordBatch]:
        if self._consumed:
            raise InvalidArgument("this query result was already read")
        self._consumed = True
        pending: list[bytes] = []
        with translated(self._address):
            while (msg := await self._call.read()) is not grpc.aio.EOF:
                kind, payload, more = query_part(msg)
                if kind == "trailer":
                    self.stats = stats_of(payload)
                elif kind == "chunk":
                    pending.append(payload)
                    if not more:  # one Arrow message, whole (fragments joined as arrowwire.decode_chunks does)
                        body = pending[0] if len(pending) == 1 else b"".join(pending)
                        pending = []
                        yield pa.ipc.read_record_batch(pa.py_buffer(body), self.schema)
        if self.stats is None:
            raise Internal("the query stream ended without its trailer")

    async def read_all(self) -> pa.Table:
        batches = [b async for b in self]
        return pa.Table.from_batches(batches, schema=self.schema)

    async def to_pandas(self, **kwargs: Any):
        return (await self.read_all()).to_pandas(**kwargs)

    def cancel(self) -> None:
        self._call.cancel()


class AsyncSubscription:
    """A live subscription for asyncio: ``async for item in sub``. Items are acknowledged when
    the next is asked for, on ``ack()`` or on ``close()``. It does not reconnect by itself:
    subscribe again with the same name to resume."""

    def __init__(self, stub: Any, address: str, spec: pb.SubscriptionSpec) -> None:
        self._stub = stub
        self._address = address
        self._spec = spec
        self._pending = 0
        self.cursor = 0
        self.info: SubscriptionInfo | None = None

    async def _start(self) -> AsyncSubscription:
        self._call = self._stub.Subscribe()
        with translated(self._address):
            await self._call.write(pb.SubscribeRequest(subscribe=self._spec))
            first = await self._call.read()
        if first is grpc.aio.EOF:
            raise InvalidArgument("the island ended the subscription at once")
        self.info = SubscriptionInfo.from_pb(first.started)
        self.cursor = self.info.cursor
        return self

    @property
    def name(self) -> str:
        return self.info.name if self.info else ""

    async def ack(self) -> None:
        if self._pending > self.cursor:
            self.cursor = self._pending
            await self._call.write(pb.SubscribeRequest(ack=self.cursor))

    def __aiter__(self) -> AsyncSubscription:
        return self

    async def __anext__(self) -> SubscriptionEvent | RowBatch:
        await self.ack()
        while True:
            with translated(self._address):
                msg = await self._call.read()
            if msg is grpc.aio.EOF:
                raise StopAsyncIteration
            if msg.WhichOneof("kind") != "event":
                continue
            if msg.event.last:
                self._pending = msg.event.cursor
            return item_of(msg.event)

    async def close(self) -> None:
        """Acknowledges the last item given and ends the stream once the island recorded it."""
        try:
            await self.ack()
            await self._call.done_writing()
            while await self._call.read() is not grpc.aio.EOF:
                pass  # in flight, not acknowledged: it comes again
        except grpc.RpcError:
            pass
        self._call.cancel()

    async def __aenter__(self) -> AsyncSubscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncClient(Closeable):
    """The asyncio client: as ``archipel.Client`` for datasets, queries, publish and subscriptions."""

    def __init__(self, address: str | None = None, timeout: float | None = 30.0, *, token: str | None = None,
                 ca: str | None = None) -> None:
        self.address = default_address(address)
        self.timeout = timeout
        self._channel = open_channel(self.address, token, ca, aio=True)
        self._stub = pb_grpc.IslandStub(self._channel)
        self._query = self._channel.unary_stream(QUERY_METHOD, **QUERY_CALL)
        self._publish = self._channel.stream_unary(PUBLISH_METHOD, **PUBLISH_CALL)
        self._opened()

    async def _unary(self, method: str, request: Any, timeout: float | None = None) -> Any:
        with translated(self.address):
            return await getattr(self._stub, method)(request, timeout=timeout if timeout is not None else self.timeout)

    async def close(self) -> None:
        if self._mark_closed():
            await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def info(self) -> dict[str, Any]:
        m = await self._unary("GetInfo", pb.GetInfoRequest())
        return {f.name: getattr(m, f.name) for f in m.DESCRIPTOR.fields}

    async def datasets(self, pattern: str = "") -> list[DatasetInfo]:
        resp = await self._unary("ListDatasets", pb.ListDatasetsRequest(pattern=pattern))
        return [DatasetInfo.from_pb(d) for d in resp.datasets]

    async def describe(self, name: str) -> DatasetInfo:
        check_dataset_name(name)
        return DatasetInfo.from_pb(await self._unary("DescribeDataset", pb.DescribeDatasetRequest(name=name)))

    async def sql(self, query: str, route: str = "auto", timeout: float | None = None, *, engine: str = "auto",
                  max_rows: int = 0, max_bytes: int = 0, compression: str = "") -> AsyncQueryResult:
        request = query_request(query, route, engine, max_rows, max_bytes, uuid.uuid4().hex, compression)
        call = self._query(request, timeout=timeout)
        return await AsyncQueryResult(call, self.address)._start()

    async def explain(self, query: str, route: str = "auto", *, engine: str = "auto") -> QueryPlan:
        return QueryPlan.from_pb(await self._unary("Explain", query_request(query, route, engine, 0, 0, "", "")))

    async def cancel(self, query_id: str) -> bool:
        return (await self._unary("Cancel", pb.CancelRequest(query_id=query_id))).cancelled

    async def publish(self, name: str, table: Any, ra: str | None = None, dec: str | None = None,
                      timeout: float | None = None, mode: str = "create", *, readers: str | list[str] | None = None,
                      public_after: str | None = None) -> DatasetInfo:
        check_dataset_name(name)
        table = as_table(table)
        with translated(self.address):
            resp = await self._publish(publish_messages(name, table, ra or "", dec or "", mode, readers, public_after),
                                       timeout=timeout)
        return DatasetInfo.from_pb(resp.dataset)

    async def whoami(self) -> dict[str, Any]:
        m = await self._unary("WhoAmI", pb.WhoAmIRequest())
        return {"user": m.user, "groups": list(m.groups), "rights": list(m.rights), "admin": m.admin,
                "token_id": m.token_id, "anonymous": m.anonymous, "island": m.island}

    async def subscribe(self, dataset_pattern: str, where: str | None = None, *,
                        cone: tuple[float, float, float] | None = None, moc: Any = None,
                        columns: list[str] | None = None, mode: str = "events", start_at: str | int = "latest",
                        name: str | None = None) -> AsyncSubscription:
        """As ``Client.subscribe``; bad input raises here, before any event."""
        spec = subscription_spec(dataset_pattern, where, cone, moc, columns, mode, start_at, name)
        return await AsyncSubscription(self._stub, self.address, spec)._start()


def connect(address: str | None = None, timeout: float | None = 30.0, *, token: str | None = None,
            ca: str | None = None) -> AsyncClient:
    """An asyncio client; ``token`` and ``ca`` as for ``archipel.connect``."""
    return AsyncClient(address, timeout=timeout, token=token, ca=ca)
