"""The client's one connection layer, shared by the sync and asyncio clients and their
subscription and replication streams: the protocol's method names and (de)serializers, the
translation of gRPC errors into the ``archipel.errors`` hierarchy, the reading of a query
stream's messages, publish's messages, and a closeable base that warns when a client is never
closed."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import pyarrow as pa

from archipel.arrowwire import (
    DEFAULT_CHUNK_BYTES,
    PUBLISH_CHUNK_FIELD,
    RawChunk,
    chunk_message,
    chunk_or,
    dense_schema,
    encode_batches,
    passthrough,
    read_schema,
    serialize_schema,
    to_dense,
)
from archipel.errors import Internal, InvalidArgument
from archipel.types import QueryPlan, QueryStats, rpc_error
from archipel.v1 import island_pb2 as pb

__all__ = ["QUERY_METHOD", "PUBLISH_METHOD", "QUERY_CALL", "PUBLISH_CALL", "translated", "QueryHeader",
           "query_part", "stats_of", "as_table", "access_fields", "publish_messages", "Closeable"]

QUERY_METHOD = "/archipel.v1.Island/Query"
PUBLISH_METHOD = "/archipel.v1.Island/Publish"
# Query responses and Publish requests carry Arrow chunks as pre-encoded bytes (see arrowwire).
QUERY_CALL = {"request_serializer": pb.QueryRequest.SerializeToString,
              "response_deserializer": chunk_or(pb.QueryResponse.FromString)}
PUBLISH_CALL = {"request_serializer": passthrough(pb.PublishRequest.SerializeToString),
                "response_deserializer": pb.PublishResponse.FromString}


@contextmanager
def translated(address: str) -> Iterator[None]:
    """Raises a failed call's gRPC error as its ``archipel.errors`` exception, the island's
    message intact (and the island named when it cannot be reached)."""
    try:
        yield
    except grpc.RpcError as exc:
        raise rpc_error(exc, address) from None


class QueryHeader:
    """The first message of a query stream: the query's id, schema, plan and, for a direct
    read, the files to fetch."""

    def __init__(self, msg: Any) -> None:
        if msg is None or msg is grpc.aio.EOF or isinstance(msg, RawChunk) or msg.WhichOneof("part") != "header":
            raise Internal("the island's query stream did not start with a header")
        header = msg.header
        self.query_id: str = header.query_id
        self.schema: pa.Schema = read_schema(header.arrow_schema)
        self.plan = QueryPlan.from_pb(header.plan)
        self.direct = header.direct if header.HasField("direct") else None


def query_part(msg: Any) -> tuple[str, Any, bool]:
    """A query stream message as (kind, payload, more): ("chunk", body, more) or
    ("trailer", the trailer message, False); ("", None, False) for anything else."""
    if isinstance(msg, RawChunk):
        return "chunk", msg.body, msg.more
    kind = msg.WhichOneof("part")
    if kind == "chunk":
        return "chunk", msg.chunk.body, msg.chunk.more
    if kind == "trailer":
        return "trailer", msg.trailer, False
    return "", None, False


def stats_of(trailer: Any) -> QueryStats:
    return QueryStats(trailer.num_rows, trailer.num_bytes, trailer.num_batches, trailer.elapsed_seconds,
                      trailer.engine)


def as_table(data: Any) -> pa.Table:
    """A pyarrow Table from a Table, RecordBatch, pandas DataFrame or dict of columns."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, dict):
        return pa.table(data)
    if type(data).__name__ == "DataFrame":
        return pa.Table.from_pandas(data, preserve_index=False)
    raise InvalidArgument(f"publish needs a pyarrow Table, RecordBatch, pandas DataFrame or dict, not {type(data).__name__}")


def access_fields(readers: str | list[str] | tuple[str, ...] | None, public_after: str | None) -> tuple[bool, list[str]]:
    """(readers given, reader names) for the wire; the island checks them."""
    if readers is None:
        return False, []
    items = readers.split(",") if isinstance(readers, str) else list(readers)
    return True, [str(r).strip() for r in items if str(r).strip()]


def publish_messages(name: str, table: pa.Table, ra: str, dec: str, mode: str = "create",
                     readers: str | list[str] | None = None, public_after: str | None = None
                     ) -> Iterator[pb.PublishRequest]:
    schema = dense_schema(table.schema)
    given, names = access_fields(readers, public_after)
    yield pb.PublishRequest(header=pb.PublishHeader(dataset=name, ra_column=ra, dec_column=dec, mode=mode,
                                                    readers=names, readers_given=given,
                                                    public_after=str(public_after or "")))
    yield pb.PublishRequest(arrow_schema=serialize_schema(schema))
    batches = (to_dense(b, schema) for b in table.to_batches(max_chunksize=65_536))
    for body, more, _rows in encode_batches(batches, DEFAULT_CHUNK_BYTES):
        yield chunk_message(body, more, PUBLISH_CHUNK_FIELD)


class Closeable:
    """A client's life: ``close()`` once (a ``with`` block does it); a client collected without
    it warns (ResourceWarning), as an unclosed file does, since its channel holds a connection
    and threads until then."""

    _closed = True  # until the subclass has opened its channel

    def _opened(self) -> None:
        self._closed = False

    def _mark_closed(self) -> bool:
        """True the first time (the caller then releases what it holds)."""
        if self._closed:
            return False
        self._closed = True
        return True

    def __del__(self) -> None:
        if not self._closed:
            warnings.warn(f"{self!r} was never closed: use `with archipel.connect(...) as client:` or "
                          f"client.close()", ResourceWarning, stacklevel=2)
