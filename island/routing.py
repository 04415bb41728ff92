"""Carrying out a placement: streaming a pushed-down query back from the island that runs it,
and fetching remote datasets' pruned rows into the spool for a query that joins them here."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pyarrow.parquet as pq

from archipel.arrowwire import RawChunk, chunk_or, decode_chunks, read_schema
from archipel.errors import Unavailable, error_for_code
from archipel.v1 import island_pb2 as pb
from federation.peers import Archipelago
from federation.planner import TableScan
from island.queries import RunningQuery
from island.storage.files import parquet_partition

__all__ = ["forward_query", "fetch_scan"]

logger = logging.getLogger(__name__)

QUERY_METHOD = "/archipel.v1.Island/Query"


def _sub_request(request: pb.QueryRequest, here: str, query_id: str, sql: str | None = None) -> pb.QueryRequest:
    sub = pb.QueryRequest()
    sub.CopyFrom(request)
    sub.route_path.append(here)
    sub.query_id = query_id
    if sql is not None:
        sub.sql = sql
        sub.engine = pb.ENGINE_AUTO
        sub.max_rows = sub.max_bytes = 0
        sub.direct = False  # the rows are spooled here: they must come in the stream
    return sub


def _raise_remote(exc: grpc.RpcError, island: str, address: str, rq: RunningQuery) -> None:
    if rq.cancelled.is_set():
        rq.raise_if_cancelled()
    code = exc.code().name if exc.code() else "UNKNOWN"
    if code == "UNAVAILABLE":
        raise Unavailable(f"island {island} at {address} is unavailable: {exc.details()}") from None
    if code == "DEADLINE_EXCEEDED":
        raise error_for_code(code, f"island {island} at {address} did not answer in time "
                                   f"({exc.details() or code})") from None
    raise error_for_code(code, exc.details() or code) from None


def lowest_limit(*limits: int) -> int:
    """The tightest of some limits, 0 meaning none."""
    given = [x for x in limits if x]
    return min(given) if given else 0


def forward_query(archipelago: Archipelago, island: str, request: pb.QueryRequest, here: str,
                  rq: RunningQuery, timeout: float, max_rows: int = 0, max_bytes: int = 0,
                  metadata: list[tuple[str, str]] | None = None) -> Iterator[bytes]:
    """The pushed-down query's response messages from ``island``, passed through as received
    (no decoding, no buffering); cancelling ``rq`` cancels the call there. The entry island's
    own limits travel with the query (the tighter of the client's and the island's), and so does the
    caller's token (``metadata``): the island holding the data decides again."""
    address = archipelago.address_of(island)
    sub = _sub_request(request, here, rq.id)
    sub.max_rows = lowest_limit(sub.max_rows, max_rows)
    sub.max_bytes = lowest_limit(sub.max_bytes, max_bytes)
    for attempt in (1, 2):
        channel = archipelago.channel(address) if attempt == 1 else archipelago.reset_channel(address)
        call = channel.unary_stream(QUERY_METHOD, request_serializer=pb.QueryRequest.SerializeToString,
                                    response_deserializer=lambda data: data)
        stream = call(sub, timeout=timeout, metadata=metadata or None)
        rq.on_cancel(stream.cancel)
        started = False
        try:
            for msg in stream:
                started = True
                yield msg
            return
        except grpc.RpcError as exc:
            # A kept channel may still be backing off from when the peer was down: one retry
            # on a fresh channel before anything was received.
            if attempt == 1 and not started and exc.code() == grpc.StatusCode.UNAVAILABLE \
                    and not rq.cancelled.is_set():
                continue
            _raise_remote(exc, island, address, rq)


def fetch_scan(archipelago: Archipelago, scan: TableScan, request: pb.QueryRequest, here: str,
               rq: RunningQuery, timeout: float, spool: Path, metadata: list[tuple[str, str]] | None = None
               ) -> TableScan:
    """Fetches the rows of ``scan`` that can match (its cones pushed down) from the dataset's
    island into a Parquet file in ``spool``; returns the scan pointed at that file."""
    ds = scan.dataset
    island = ds.origin
    address = archipelago.address_of(island)
    where = " AND ".join(f"cone({ds.ra_column}, {ds.dec_column}, {c.ra!r}, {c.dec!r}, {c.radius!r})"
                         for c in scan.cones)
    sql = f"SELECT * FROM {ds.name}" + (f" WHERE {where}" if where else "")
    spool.mkdir(parents=True, exist_ok=True)
    target = spool / f"{scan.view}.parquet"
    call = archipelago.channel(address).unary_stream(
        QUERY_METHOD, request_serializer=pb.QueryRequest.SerializeToString,
        response_deserializer=chunk_or(pb.QueryResponse.FromString))
    stream = call(_sub_request(request, here, f"{rq.id}-{scan.view}", sql), timeout=timeout, metadata=metadata or None)
    rq.on_cancel(stream.cancel)
    try:
        first = next(stream)
        schema = read_schema(first.header.arrow_schema)

        def chunks():
            for msg in stream:
                if isinstance(msg, RawChunk):
                    yield msg.body, msg.more
                elif msg.WhichOneof("part") == "chunk":
                    yield msg.chunk.body, msg.chunk.more

        with pq.ParquetWriter(target, schema) as writer:
            for batch in decode_chunks(chunks(), schema):
                writer.write_batch(batch)
    except grpc.RpcError as exc:
        _raise_remote(exc, island, address, rq)
    part = parquet_partition(target, spool)
    local = replace(ds, origin=here, root=str(spool), partitions=(part,))
    return replace(scan, dataset=local, partitions=[part])
