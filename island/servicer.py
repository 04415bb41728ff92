"""The client-facing gRPC servicer: translates messages to calls on the island's parts and
ArchipelErrors to status codes. No logic of its own beyond that translation."""

from __future__ import annotations

import functools
import inspect
import logging
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from archipel import __version__
from archipel.arrowwire import (
    RawChunk,
    chunk_message,
    decode_chunks,
    dense_schema,
    read_schema,
    serialize_schema,
    to_dense,
)
from archipel.errors import ArchipelError, FailedPrecondition, InvalidArgument
from archipel.names import check_dataset_name
from archipel.v1 import island_pb2 as pb
from federation.peers import Archipelago
from federation.planner import QueryPlan, plan_query, referenced_datasets
from federation.router import MAX_HOPS, Placement, place
from island.routing import fetch_scan, forward_query, lowest_limit
from island.config import IslandConfig
from island.convert import ENGINES, ROUTES, dataset_to_pb, plan_to_pb
from island.engines import ArrowEngine, SparkEngine
from island.ingest import Ingester, IngestItem
from island.queries import Chunk, QueryRegistry, Trailer, prefetch, stream_results
from metacatalog.store import CatalogStore

__all__ = ["IslandServicer", "PROTOCOL_VERSION"]

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
_COMPRESSIONS = ("", "lz4", "zstd")


def _status(err: ArchipelError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, err.code, grpc.StatusCode.UNKNOWN)


@contextmanager
def _statuses(context, name: str):
    """ArchipelError to its status code with its message; anything else to INTERNAL, logged."""
    try:
        yield
    except ArchipelError as err:
        context.abort(_status(err), err.message)
    except grpc.RpcError:
        raise
    except Exception as exc:
        logger.exception("%s failed", name)
        context.abort(grpc.StatusCode.INTERNAL, f"{name} failed on the island: {exc}")


def rpc(method):
    """Wraps a servicer method (plain or generator) in ``_statuses``."""

    @functools.wraps(method)
    def unary(self, request, context):
        with _statuses(context, method.__name__):
            return method(self, request, context)

    @functools.wraps(method)
    def streaming(self, request, context):
        with _statuses(context, method.__name__):
            yield from method(self, request, context)

    return streaming if inspect.isgeneratorfunction(method) else unary


def _peer_state(s) -> pb.PeerState:
    return pb.PeerState(island=s.island, address=s.address, state=s.state, last_seq=s.last_seq, error=s.error)


class IslandServicer:
    def __init__(self, cfg: IslandConfig, store: CatalogStore, spark: SparkEngine, ingester: Ingester,
                 archipelago: Archipelago) -> None:
        self.cfg = cfg
        self.archipelago = archipelago
        self.store = store
        self.spark = spark
        self.arrow = ArrowEngine()
        self.ingester = ingester
        self.queries = QueryRegistry()
        self._ingest_lock = threading.Lock()

    # -- catalog --------------------------------------------------------------------------
    @rpc
    def GetInfo(self, request, context):
        return pb.IslandInfo(
            name=self.cfg.island.name, version=__version__, protocol_version=PROTOCOL_VERSION,
            grpc_address=self.cfg.address, spark_ready=self.spark.ready.is_set(),
            spark_master=self.cfg.spark.master, spark_error=self.spark.error,
            datasets=len(self.store.dataset_names()), catalog_sequence=self.store.sequence(),
            running_queries=len(self.queries.running()), spark_active_jobs=self.spark.active_jobs(),
        )

    @rpc
    def ListDatasets(self, request, context):
        pattern = request.pattern
        if len(pattern) > 256:
            raise InvalidArgument("pattern is longer than 256 characters")
        counts = self.store.partition_counts()
        out = pb.ListDatasetsResponse()
        for ds in self.store.datasets(pattern, with_partitions=request.with_partitions):
            replicas = self.store.replica_islands(ds.name) if request.with_partitions else None
            out.datasets.append(dataset_to_pb(ds, self.cfg.island.name, counts.get(ds.name, 0), replicas))
        return out

    @rpc
    def DescribeDataset(self, request, context):
        name = check_dataset_name(request.name)
        ds = self.store.dataset(name)
        return dataset_to_pb(ds, self.cfg.island.name, replicas=self.store.replica_islands(name))

    # -- queries --------------------------------------------------------------------------
    def _plan(self, request) -> tuple[QueryPlan, str, Placement]:
        route = ROUTES.get(request.route)
        engine = ENGINES.get(request.engine)
        if route is None or engine is None:
            raise InvalidArgument("unknown route or engine value")
        if route == "replicate":
            raise FailedPrecondition("route='replicate' needs lazy replication, which is not built yet; "
                                     "use 'auto' or 'remote'")
        plan = plan_query(request.sql, self.store.dataset, engine=engine,
                          arrow_max_aggregate_bytes=self.cfg.query.arrow_max_aggregate_bytes)
        placement = place(plan, self.cfg.island.name, route, list(request.route_path))
        return plan, route, placement

    def _pushdown_target(self, request) -> str:
        """The one other island holding every dataset of the query, when the route lets the
        query go there whole; else "" (the query is planned here)."""
        if ROUTES.get(request.route) not in ("auto", "remote"):
            return ""
        names = referenced_datasets(request.sql)
        if not names:
            return ""
        origins = set()
        for name in names:
            try:
                origins.add(self.store.dataset(name, with_partitions=False).origin)
            except ArchipelError:
                return ""
        if len(origins) != 1 or self.cfg.island.name in origins:
            return ""
        (island,) = origins
        here = self.cfg.island.name
        if here in request.route_path or len(request.route_path) + 1 >= MAX_HOPS:
            return ""  # planning here reports the loop or the hop limit
        return island

    @rpc
    def Explain(self, request, context):
        plan, route, placement = self._plan(request)
        return plan_to_pb(plan, route, self.cfg.island.name, placement)

    @rpc
    def Query(self, request, context):
        if request.compression not in _COMPRESSIONS:
            raise InvalidArgument(f"compression must be one of {_COMPRESSIONS}")
        q = self.cfg.query
        rq = self.queries.start(request.query_id)
        context.add_callback(lambda: rq.cancel("cancelled: the client went away"))
        timeout = q.timeout_seconds
        remaining = context.time_remaining()
        if remaining is not None:
            timeout = min(timeout, remaining)
        timer = threading.Timer(timeout, rq.cancel, args=("timeout",))
        timer.daemon = True
        timer.start()
        execution = None
        spool = self.spark.spool_dir / f"gather-{rq.id}"
        try:
            island = self._pushdown_target(request)
            if island:  # all its data is on one other island: no need to plan it here
                yield from forward_query(self.archipelago, island, request, self.cfg.island.name, rq, timeout,
                                         q.max_rows, q.max_bytes)
                return
            plan, route, placement = self._plan(request)
            if placement.kind == "pushdown":
                yield from forward_query(self.archipelago, placement.island, request, self.cfg.island.name, rq,
                                         timeout, q.max_rows, q.max_bytes)
                return
            if placement.kind == "gather":
                plan.tables = [fetch_scan(self.archipelago, t, request, self.cfg.island.name, rq, timeout, spool)
                               if t.dataset.origin != self.cfg.island.name else t for t in plan.tables]
            engine = self.spark if plan.engine == "spark" else self.arrow
            execution = engine.execute(plan, rq.id, rq.on_cancel, timeout)
            rq.raise_if_cancelled()
            limit_rows = lowest_limit(request.max_rows, q.max_rows)
            limit_bytes = lowest_limit(request.max_bytes, q.max_bytes)
            parts = stream_results(rq, plan, execution.schema, execution.batches,
                                   chunk_bytes=q.chunk_bytes, max_rows=limit_rows, max_bytes=limit_bytes,
                                   compression=request.compression)
            header = next(parts)
            yield pb.QueryResponse(header=pb.QueryHeader(
                query_id=header.query_id, arrow_schema=serialize_schema(header.schema),
                plan=plan_to_pb(header.plan, route, self.cfg.island.name, placement)))
            # Scanning and encoding run ahead of gRPC's blocking send, a few messages deep.
            wire = (chunk_message(p.body, p.more) if isinstance(p, Chunk) else p for p in parts)
            for part in prefetch(wire, depth=4, stop=rq.cancelled):
                if isinstance(part, bytes):
                    yield part
                elif isinstance(part, Trailer):
                    yield pb.QueryResponse(trailer=pb.QueryTrailer(
                        num_rows=part.num_rows, num_bytes=part.num_bytes, num_batches=part.num_batches,
                        elapsed_seconds=part.elapsed, engine=part.engine))
        except ArchipelError:
            if rq.cancelled.is_set():
                rq.raise_if_cancelled()
            raise
        finally:
            timer.cancel()
            if execution is not None:
                execution.close()
            shutil.rmtree(spool, ignore_errors=True)
            self.queries.finish(rq)

    # -- peers ----------------------------------------------------------------------------
    @rpc
    def ListPeers(self, request, context):
        return pb.ListPeersResponse(peers=[_peer_state(s) for s in self.archipelago.statuses()])

    @rpc
    def AddPeer(self, request, context):
        return _peer_state(self.archipelago.add(request.address))

    @rpc
    def Cancel(self, request, context):
        return pb.CancelResponse(cancelled=self.queries.cancel(request.query_id))

    # -- writes ---------------------------------------------------------------------------
    @rpc
    def Ingest(self, request, context):
        items = [IngestItem(i.path, i.dataset, i.ra_column, i.dec_column) for i in request.items]
        with self._ingest_lock:
            datasets = self.ingester.ingest(items)
        return pb.IngestResponse(datasets=[dataset_to_pb(d, self.cfg.island.name) for d in datasets])

    @rpc
    def DeleteDataset(self, request, context):
        name = check_dataset_name(request.name)
        with self._ingest_lock:
            removed = self.ingester.delete(name)
        return pb.DeleteDatasetResponse(deleted=True, files_removed=removed)

    @rpc
    def Publish(self, request_iterator, context):
        it = iter(request_iterator)
        first = next(it, None)
        if first is None or isinstance(first, RawChunk) or first.WhichOneof("part") != "header":
            raise InvalidArgument("publish must start with a header naming the dataset")
        header = first.header
        if header.mode not in ("", "create"):
            raise InvalidArgument(f"publish mode {header.mode!r} is not supported yet (use 'create')")
        name = check_dataset_name(header.dataset)
        second = next(it, None)
        if second is None or isinstance(second, RawChunk) or second.WhichOneof("part") != "arrow_schema":
            raise InvalidArgument("publish must send the Arrow schema after the header")
        try:
            schema = dense_schema(read_schema(second.arrow_schema))
        except Exception as exc:
            raise InvalidArgument(f"publish: malformed Arrow schema: {exc}") from None

        def chunks() -> Iterator[tuple[bytes, bool]]:
            for msg in it:
                if isinstance(msg, RawChunk):
                    yield msg.body, msg.more
                elif msg.WhichOneof("part") == "chunk":
                    yield msg.chunk.body, msg.chunk.more
                else:
                    raise InvalidArgument("publish: expected only Arrow chunks after the schema")

        def batches():
            try:
                for batch in decode_chunks(chunks(), schema):
                    yield to_dense(batch, schema)
            except ArchipelError:
                raise
            except Exception as exc:
                raise InvalidArgument(f"publish: malformed Arrow data: {exc}") from None

        with self._ingest_lock:
            ds = self.ingester.publish(name, batches(), schema, header.ra_column, header.dec_column)
        return pb.PublishResponse(dataset=dataset_to_pb(ds, self.cfg.island.name))
