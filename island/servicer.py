"""The client-facing gRPC servicer: translates messages to calls on the island's parts and
ArchipelErrors to status codes. No logic of its own beyond that translation."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from contextlib import ExitStack

import grpc
import pyarrow as pa
import pyarrow.parquet as pq

from archipel import __version__
from archipel.arrowwire import (
    MAX_MESSAGE_BYTES,
    MessageTooLarge,
    RawChunk,
    chunk_message,
    decode_chunks,
    dense_schema,
    read_schema,
    slices,
    serialize_schema,
    to_dense,
)
from archipel.errors import (ArchipelError, DeadlineExceeded, FailedPrecondition, InvalidArgument, NotFound,
                             PermissionDenied, ResourceExhausted, error_for_code)
from archipel.names import check_dataset_name
from archipel.v1 import island_pb2 as pb
from federation.peers import Archipelago
from federation.planner import QueryPlan, plan_query, query_shape
from federation.router import MAX_HOPS, Placement, place
from island.routing import fetch_scan, forward_query, lowest_limit
from island.config import IslandConfig
from island.rpc import Call, rpc
from island.security.gate import Gate, bearer_metadata
from island.audit import AuditLog
from island.identity_servicer import IdentityRpcs
from island.sessions.rpcs import SessionRpcs
from island.shares import FairShares
from metacatalog import access
from metacatalog.access import Caller
from island.convert import ENGINES, ROUTES, dataset_to_pb, plan_to_pb
from federation.lazy import Localization, localize, may_copy
from federation.rules import Region, RuleState
from federation.subscriptions import Subscription, SubscriptionBook
from island.engines import ArrowEngine, SparkEngine
from island.ingest import Ingester, IngestItem
from island.storage.columns import publishable_schema
from island.replication import Replication
from island.direct import DirectFileSpec, FooterCache, direct_read, direct_schema, file_url
from island.engines.base import normalize_batch, normalize_schema
from island.subscribe import CHUNK_BYTES, Delivery, RowFilter, RowSource, deliveries
from island.queries import Chunk, QueryRegistry, Trailer, prefetch, stream_results
from metacatalog.store import CatalogStore
from metacatalog import transfers
from replication import cache

__all__ = ["IslandServicer", "PROTOCOL_VERSION"]

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
PROGRESS_INTERVAL = 0.1  # seconds between two progress messages of a replication job
_COMPRESSIONS = ("", "lz4", "zstd")


def _peer_state(s) -> pb.PeerState:
    return pb.PeerState(island=s.island, address=s.address, state=s.state, last_seq=s.last_seq, error=s.error)


_LISTING_BYTES = MAX_MESSAGE_BYTES - (1 << 20)  # a listing is one message: under gRPC's limit


class IslandServicer(IdentityRpcs, SessionRpcs):
    def __init__(self, cfg: IslandConfig, store: CatalogStore, spark: SparkEngine, ingester: Ingester,
                 archipelago: Archipelago, replication: Replication | None = None,
                 subscriptions: SubscriptionBook | None = None, rows: RowSource | None = None,
                 gate: Gate | None = None, audit: AuditLog | None = None) -> None:
        self.cfg = cfg
        self.gate = gate
        self.audit = audit
        self.shares = FairShares()
        self.subscriptions = subscriptions or SubscriptionBook(store, cfg.island.name)
        self.rows = rows or RowSource(store, cfg.island.name, cfg.data_path, cfg.replication.protocols,
                                      archipelago.down)
        self._streams: dict[str, int] = {}  # subscription name -> live streams
        self._deleted: set[str] = set()
        self._streams_lock = threading.Lock()
        self.replication = replication
        self.archipelago = archipelago
        self.store = store
        self.spark = spark
        self.arrow = ArrowEngine(memory_bytes=cfg.query.memory_bytes)
        self._footers = FooterCache()  # Parquet footers of files read directly
        self.ingester = ingester
        self.queries = QueryRegistry()
        self._ingest_lock = threading.Lock()
        self.metrics = None  # island.metrics.IslandMetrics, set by the island
        self.sessions = None  # island.sessions.service.Sessions, set by the island when sessions are on

    # -- catalog --------------------------------------------------------------------------
    @rpc
    def GetInfo(self, request, context, call: Call):
        return pb.IslandInfo(
            name=self.cfg.island.name, version=__version__, protocol_version=PROTOCOL_VERSION,
            grpc_address=self.cfg.address, spark_ready=self.spark.ready.is_set(),
            spark_master=self.cfg.spark.master, spark_error=self.spark.error,
            datasets=len(self.store.dataset_names()), catalog_sequence=self.store.sequence(),
            running_queries=len(self.queries.running()), spark_active_jobs=self.spark.active_jobs(),
            http_url=self.replication.http.base_url if self.replication else "",
            data_url=self.replication.data.base_url if self.replication else "",
            root_url=self.replication.xrootd.base_url if self.replication and self.replication.xrootd else "",
            workers=[f"{n}={p}" for n, p in self.replication.workers.pids().items()] if self.replication else [],
            peer_address=self.cfg.peer_address, anonymous=self.cfg.security.anonymous,
            spark_storage_bytes=self.spark.storage_bytes(),
            sessions=len(self.sessions.book.sessions()) if self.sessions is not None else 0,
        )

    @rpc
    def ListDatasets(self, request, context, call: Call):
        pattern = request.pattern
        if len(pattern) > 256:
            raise InvalidArgument("pattern is longer than 256 characters")
        counts = self.store.partition_counts()
        urls = self.store.islands()
        out = pb.ListDatasetsResponse()
        size = 0
        for ds in self.store.datasets(pattern, with_partitions=request.with_partitions):
            if not access.may_read(call.caller, ds.access):
                continue  # a dataset the caller may not read is not listed
            replicas = self.store.replica_islands(ds.name) if request.with_partitions else None
            msg = dataset_to_pb(ds, self.cfg.island.name, counts.get(ds.name, 0), replicas,
                                urls if request.with_partitions else None)
            size += msg.ByteSize()
            if size > _LISTING_BYTES:
                raise ResourceExhausted(f"the listing is larger than one message ({_LISTING_BYTES >> 20} MiB) at "
                                        f"{ds.name!r}: narrow the pattern" + (" or leave out the partitions"
                                                                              if request.with_partitions else ""))
            out.datasets.append(msg)
        return out

    @rpc
    def DescribeDataset(self, request, context, call: Call):
        name = check_dataset_name(request.name)
        call.datasets.append(name)
        ds = self._readable(call.caller, name)
        return dataset_to_pb(ds, self.cfg.island.name, replicas=self.store.replica_islands(name),
                             data_urls=self.store.islands())

    # -- access ---------------------------------------------------------------------------
    def _readable(self, caller: Caller, name: str, with_partitions: bool = True):
        """The dataset ``name`` if ``caller`` may read it (PermissionDenied if not)."""
        ds = self.store.dataset(name, with_partitions=with_partitions)
        access.check_read(caller, name, ds.access)
        return ds

    def _lookup(self, call: Call):
        """The planner's catalog lookup for ``call``: every dataset a query names (joins and
        subqueries included) is checked, and recorded for the audit log."""
        def lookup(name: str, **kw):
            call.datasets.append(name)  # before the check: a refusal names what was refused
            return self._readable(call.caller, name, **kw)
        return lookup

    def _plan(self, request, call: Call) -> tuple[QueryPlan, str, Placement, Localization | None]:
        route = ROUTES.get(request.route)
        engine = ENGINES.get(request.engine)
        if route is None or engine is None:
            raise InvalidArgument("unknown route or engine value")
        if route == "replicate" and self.replication is None:
            raise FailedPrecondition("route='replicate' needs the island's replication parts, which are not running")
        plan = plan_query(request.sql, self._lookup(call), engine=engine,
                          arrow_max_aggregate_bytes=self.cfg.query.arrow_max_aggregate_bytes)
        loc = None
        if self.replication is not None and route != "remote":
            rep = self.replication
            # Partitions held here as replicas are read here; 'replicate' (and 'auto' when it
            # moves fewer bytes) copies the missing ones first.
            cap = 0
            if route == "auto" and not request.route_path and self.cfg.replication.auto_max_bytes:
                usage = cache.usage(self.store, self.cfg.replication.cache_bytes)
                cap = max(0, min(self.cfg.replication.auto_max_bytes, usage.quota - usage.pinned_bytes))
            loc = localize(plan, self.cfg.island.name, route, rep.held, lambda d: str(rep.mover.replica_root(d)),
                           cap)
            plan = loc.plan
        placement = place(plan, self.cfg.island.name, route, list(request.route_path), holders=self._holders,
                          down=self.archipelago.down())
        return plan, route, placement, loc

    def _holders(self, scan) -> set[str]:
        """Islands holding every partition ``scan`` reads: its origin, and islands with replicas."""
        replicas = self.store.replica_islands(scan.dataset.name)
        out = {scan.dataset.origin}
        if scan.partitions:
            sets = [set(replicas.get(p.pid, [])) for p in scan.partitions]
            out |= set.intersection(*sets)
        return out

    @staticmethod
    def _notes(plan: QueryPlan, loc: Localization | None, original: dict[str, str]) -> dict[str, str]:
        if loc is None:
            return {}
        copying = {scan.view: parts for scan, parts in loc.to_copy}
        notes = {}
        for scan in plan.tables:
            origin = original.get(scan.view, "")
            if scan.view in copying:
                parts = copying[scan.view]
                notes[scan.view] = (f"replicate:{origin} ({len(parts)} partitions, {sum(p.num_bytes for p in parts)} "
                                    f"bytes copied here, then read here; {loc.reason})")
            elif origin and origin != scan.dataset.origin:
                notes[scan.view] = f"local replica of {origin}'s partitions"
        return notes

    def _pushdown_target(self, request, call: Call) -> str:
        """The one other island holding every dataset of the query, when the route lets the
        query go there whole; else "" (the query is planned here)."""
        route = ROUTES.get(request.route)
        if route not in ("auto", "remote"):
            return ""
        shape = query_shape(request.sql)
        if shape is None or not shape.names:
            return ""
        names = shape.names
        if (route == "auto" and self.replication is not None and self.cfg.replication.auto_max_bytes
                and may_copy(shape, self.store.max_order)):
            return ""  # copying the partitions may pay: that depends on the plan
        origins = set()
        for name in names:
            try:
                call.datasets.append(name)
                origins.add(self._readable(call.caller, name, with_partitions=False).origin)
            except ArchipelError:
                return ""
            if route == "auto" and self.replication is not None and self.replication.held(name):
                return ""  # replicas held here may answer it
        if len(origins) != 1 or self.cfg.island.name in origins:
            return ""
        (island,) = origins
        if island in self.archipelago.down():
            return ""  # planning here may find another island holding replicas
        here = self.cfg.island.name
        if here in request.route_path or len(request.route_path) + 1 >= MAX_HOPS:
            return ""  # planning here reports the loop or the hop limit
        return island

    @rpc
    def Explain(self, request, context, call: Call):
        plan, route, placement, loc = self._plan(request, call)
        origins = self._origins(loc)
        return plan_to_pb(plan, route, self.cfg.island.name, placement, self._notes(plan, loc, origins))

    def _still_missing(self, plan: QueryPlan, loc: Localization) -> list:
        """(original scan, partitions) a localized plan reads here but that are not held now."""
        out = []
        originals = {s.view: s for s in loc.original_tables}
        for scan in plan.tables:
            original = originals.get(scan.view)
            if original is None or original.dataset.origin == scan.dataset.origin:
                continue
            have = self.replication.held(scan.dataset.name)
            missing = [p for p in scan.partitions if p.pid not in have]
            if missing:
                out.append((original, missing))
        return out

    def _direct(self, request, plan: QueryPlan, placement: Placement, max_rows: int,
                max_bytes: int) -> pb.DirectRead | None:
        """The files a client asking for a direct read fetches itself, when the plan is a
        plain read of files held here; else None (the rows are streamed)."""
        if not request.direct or plan.direct is None or placement.kind != "local" or self.replication is None:
            return None
        (scan,) = plan.tables
        base = self.replication.data.base_url
        here = self.cfg.island.name
        root = Path(scan.dataset.root)
        files = [DirectFileSpec(file_url(base, scan.dataset.name, p.pid), here, str(root / p.path))
                 for p in scan.partitions]
        try:
            return direct_read(scan, plan.direct, files, self._footers, max_rows, max_bytes)
        except OSError as exc:  # a file went meanwhile (evicted replica): the stream path says so
            logger.info("direct read of %s falls back to the stream: %s", scan.dataset.name, exc)
            return None

    def _verify(self, plan: QueryPlan, spool: Path) -> None:
        """No corrupt partition file is read: each file of the plan held here is checked
        against the catalog's adler32 (once per change of the file; see island.integrity)."""
        if self.replication is None:
            return
        for scan in plan.tables:
            if scan.dataset.origin == self.cfg.island.name and not Path(scan.dataset.root).is_relative_to(spool):
                self.replication.integrity.check_scan(scan)

    @staticmethod
    def _origins(loc: Localization | None) -> dict[str, str]:
        if loc is None:
            return {}
        return {s.view: s.dataset.origin for s, _ in loc.to_copy} | {
            s.view: s.dataset.origin for s in loc.original_tables}

    @rpc
    def Query(self, request, context, call: Call):
        if request.compression not in _COMPRESSIONS:
            raise InvalidArgument(f"compression must be one of {_COMPRESSIONS}")
        q = self.cfg.query
        limits = self.cfg.limits
        release = self.shares.take(call.caller.name, "concurrent_queries", limits.concurrent_queries, "queries")
        try:
            rq = self.queries.start(request.query_id, owner=call.caller.name)
        except BaseException:
            release()
            raise
        context.add_callback(lambda: rq.cancel("cancelled: the client went away"))
        timeout = q.timeout_seconds
        reason = f"the query ran past the island's [query] timeout_seconds = {q.timeout_seconds:g}"
        if limits.query_seconds and limits.query_seconds < timeout:
            timeout = limits.query_seconds
            reason = f"the query ran past the per-user [limits] query_seconds = {limits.query_seconds:g}"
        remaining = context.time_remaining()
        if remaining is not None and remaining < timeout:
            timeout = remaining
            reason = f"the query ran past the client's timeout ({remaining:.3g} s left when it started)"
        timer = threading.Timer(timeout, rq.cancel, args=(f"timeout: {reason}",))
        timer.daemon = True
        timer.start()
        execution = None
        held = ExitStack()  # replica files this query reads, kept from eviction
        origins: dict[str, str] = {}
        spool = self.spark.spool_dir / f"gather-{rq.id}"
        try:
            max_bytes = lowest_limit(q.max_bytes, limits.result_bytes)
            call.labels["route"] = ROUTES.get(request.route, "unknown")
            island = self._pushdown_target(request, call)
            if island:  # all its data is on one other island: no need to plan it here
                call.labels["engine"] = "remote"
                yield from forward_query(self.archipelago, island, request, self.cfg.island.name, rq, timeout,
                                         q.max_rows, max_bytes, bearer_metadata(call.caller))
                return
            plan, route, placement, loc = self._plan(request, call)
            rq.raise_if_cancelled()
            origins = self._origins(loc)
            # Replica files the plan reads are kept from eviction from now on; any evicted
            # between planning and now is copied again with the missing ones.
            replica_files = [(t.dataset.name, p.pid) for t in plan.tables if origins.get(t.view, t.dataset.origin)
                             != t.dataset.origin for p in t.partitions]
            if replica_files:
                held.enter_context(self.replication.using(replica_files))
            if loc is not None:
                fetch = self._still_missing(plan, loc)
                if fetch:
                    self.replication.fetch(fetch, time.monotonic() + timeout, rq.cancelled)
                    rq.raise_if_cancelled()
            call.labels["engine"] = "remote" if placement.kind == "pushdown" else plan.engine
            if placement.kind == "pushdown":
                yield from forward_query(self.archipelago, placement.island, request, self.cfg.island.name, rq,
                                         timeout, q.max_rows, max_bytes, bearer_metadata(call.caller))
                return
            if placement.kind == "gather":
                plan.tables = [fetch_scan(self.archipelago, t, request, self.cfg.island.name, rq, timeout, spool,
                                          bearer_metadata(call.caller))
                               if t.dataset.origin != self.cfg.island.name else t for t in plan.tables]
            limit_rows = lowest_limit(request.max_rows, q.max_rows)
            limit_bytes = lowest_limit(request.max_bytes, max_bytes)
            self._verify(plan, spool)
            direct = self._direct(request, plan, placement, limit_rows, limit_bytes)
            if direct is not None:  # the client reads the files itself
                call.labels["engine"] = "direct"
                # The audit's rows: those the files hold (exact for a scan, an upper bound with
                # cones); its bytes: what the client is told to fetch.
                call.rows = min(sum(f.num_rows for f in direct.files), direct.limit if direct.has_limit else 1 << 62)
                call.bytes = sum(sum(b - a for a, b in zip(f.spans[::2], f.spans[1::2])) if f.spans else f.size
                                 for f in direct.files)
                plan_pb = plan_to_pb(plan, route, self.cfg.island.name, placement, self._notes(plan, loc, origins))
                plan_pb.engine_reason += f"; the client reads {len(direct.files)} files directly"
                schema = direct_schema(plan.tables[0], plan.direct)
                yield pb.QueryResponse(header=pb.QueryHeader(query_id=rq.id, arrow_schema=serialize_schema(schema),
                                                             plan=plan_pb, direct=direct))
                yield pb.QueryResponse(trailer=pb.QueryTrailer(elapsed_seconds=time.monotonic() - rq.started,
                                                               engine=plan.engine))
                return
            engine = self.spark if plan.engine == "spark" else self.arrow
            for name in {d for d, _ in replica_files}:
                self.store.touch(name, [p for d, p in replica_files if d == name])
            execution = engine.execute(plan, rq.id, rq.on_cancel, timeout, pool=call.caller.name)
            rq.raise_if_cancelled()
            parts = stream_results(rq, plan, execution.schema, execution.batches,
                                   chunk_bytes=q.chunk_bytes, max_rows=limit_rows, max_bytes=limit_bytes,
                                   compression=request.compression)
            header = next(parts)
            yield pb.QueryResponse(header=pb.QueryHeader(
                query_id=header.query_id, arrow_schema=serialize_schema(header.schema),
                plan=plan_to_pb(header.plan, route, self.cfg.island.name, placement,
                                self._notes(header.plan, loc, origins))))
            # Scanning and encoding run ahead of gRPC's blocking send, a few messages deep.
            wire = (chunk_message(p.body, p.more) if isinstance(p, Chunk) else p for p in parts)
            for part in prefetch(wire, depth=4, stop=rq.cancelled):
                if isinstance(part, bytes):
                    yield part
                elif isinstance(part, Trailer):
                    call.rows, call.bytes = part.num_rows, part.num_bytes
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
            held.close()
            shutil.rmtree(spool, ignore_errors=True)
            self.queries.finish(rq)
            release()

    # -- peers ----------------------------------------------------------------------------
    @rpc
    def ListPeers(self, request, context, call: Call):
        access.check_admin(call.caller, "listing peers")
        return pb.ListPeersResponse(peers=[_peer_state(s) for s in self.archipelago.statuses()])

    @rpc
    def AddPeer(self, request, context, call: Call):
        access.check_admin(call.caller, "adding a peer")
        return _peer_state(self.archipelago.add(request.address))

    @rpc
    def RemovePeer(self, request, context, call: Call):
        access.check_admin(call.caller, "removing a peer")
        if not request.peer or len(request.peer) > 300:
            raise InvalidArgument("name the peer to remove: HOST:PORT or island name")
        return _peer_state(self.archipelago.remove(request.peer))

    @rpc
    def Cancel(self, request, context, call: Call):
        owner = None if call.caller.admin else call.caller.name
        return pb.CancelResponse(cancelled=self.queries.cancel(request.query_id, owner=owner))

    # -- writes ---------------------------------------------------------------------------
    def _exports_changed(self) -> None:
        """A dataset of this island's appeared or went: served over HTTP and XRootD at once."""
        if self.replication is not None:
            self.replication.resync_exports()

    @rpc
    def Ingest(self, request, context, call: Call):
        access.check_admin(call.caller, "ingesting files from the island's disk")
        items = [IngestItem(i.path, i.dataset, i.ra_column, i.dec_column, owner=call.caller.user or "admin",
                            **self._access_of(i)) for i in request.items]
        call.datasets.extend(i.dataset for i in items)
        with self._ingest_lock:
            datasets = self.ingester.ingest(items)
        self._exports_changed()
        return pb.IngestResponse(datasets=[dataset_to_pb(d, self.cfg.island.name) for d in datasets])

    @rpc
    def DeleteDataset(self, request, context, call: Call):
        name = check_dataset_name(request.name)
        ds = self.store.dataset(name, with_partitions=False)
        call.datasets.append(name)
        access.check_owner(call.caller, name, ds.access, "delete")
        with self._ingest_lock:
            removed = self.ingester.delete(name)
        self._exports_changed()
        return pb.DeleteDatasetResponse(deleted=True, files_removed=removed)

    @rpc
    def Publish(self, request_iterator, context, call: Call):
        it = iter(request_iterator)
        first = next(it, None)
        if first is None or isinstance(first, RawChunk) or first.WhichOneof("part") != "header":
            raise InvalidArgument("publish must start with a header naming the dataset")
        header = first.header
        if header.mode not in ("", "create", "append"):
            raise InvalidArgument(f"publish mode must be 'create' or 'append', not {header.mode!r}")
        name = check_dataset_name(header.dataset)
        call.datasets.append(name)
        if call.caller.anonymous:
            raise PermissionDenied("publishing needs a token: anonymous callers only read")
        if header.mode == "append":
            access.check_owner(call.caller, name, self.store.dataset(name, with_partitions=False).access, "append to")
        given = self._access_of(header)
        second = next(it, None)
        if second is None or isinstance(second, RawChunk) or second.WhichOneof("part") != "arrow_schema":
            raise InvalidArgument("publish must send the Arrow schema after the header")
        try:
            schema = dense_schema(read_schema(second.arrow_schema))
        except Exception as exc:
            raise InvalidArgument(f"publish: malformed Arrow schema: {exc}") from None
        limits = self.cfg.limits
        publishable_schema(schema, limits.max_columns)  # refused before any data is read

        started = time.monotonic()
        received = 0

        def chunks() -> Iterator[tuple[bytes, bool]]:
            nonlocal received
            for msg in it:
                if isinstance(msg, RawChunk):
                    body, more = msg.body, msg.more
                elif msg.WhichOneof("part") == "chunk":
                    body, more = msg.chunk.body, msg.chunk.more
                else:
                    raise InvalidArgument("publish: expected only Arrow chunks after the schema")
                received += len(body)
                if limits.publish_bytes and received > limits.publish_bytes:
                    raise ResourceExhausted(f"publish sent more than {limits.publish_bytes} bytes of Arrow data "
                                            f"([limits] publish_bytes)")
                if limits.publish_seconds and time.monotonic() - started > limits.publish_seconds:
                    raise DeadlineExceeded(f"publish stream open for more than {limits.publish_seconds:g} s "
                                           f"([limits] publish_seconds)")
                yield body, more

        def batches():
            try:
                for batch in decode_chunks(chunks(), schema, limits.publish_message_bytes):
                    yield to_dense(batch, schema)
            except MessageTooLarge as exc:
                raise ResourceExhausted(f"publish: {exc} ([limits] publish_message_bytes)") from None
            except ArchipelError:
                raise
            except Exception as exc:
                raise InvalidArgument(f"publish: malformed Arrow data: {exc}") from None

        # A sender that stops sending is cut when its time is up (its stream is cancelled);
        # the data is staged with no lock held, so an open publish blocks no other writer.
        timer = threading.Timer(limits.publish_seconds, context.cancel) if limits.publish_seconds else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            staged = self.ingester.stage(batches(), schema)
        finally:
            if timer is not None:
                timer.cancel()
        try:
            with self._ingest_lock:
                if header.mode == "append":
                    ds, _ = self.ingester.append(name, pq.read_table(staged))
                else:
                    ds = self.ingester.publish(name, None, schema, header.ra_column, header.dec_column,
                                               owner=call.caller.user, staged=staged, **given)
        finally:
            shutil.rmtree(staged.parent, ignore_errors=True)
        self._exports_changed()
        return pb.PublishResponse(dataset=dataset_to_pb(ds, self.cfg.island.name))

    @staticmethod
    def _access_of(msg) -> dict:
        """readers and public_after of a publish header or an ingest item, checked."""
        readers = access.parse_readers(list(msg.readers)) if msg.readers_given else ("public",)
        return {"readers": readers, "public_after": access.parse_public_after(msg.public_after)}

    # -- replication ----------------------------------------------------------------------
    def _rule_pb(self, st: RuleState) -> pb.ReplicationRule:
        r, p = st.rule, st.progress
        return pb.ReplicationRule(
            id=r.id, dataset=r.dataset, island=self.cfg.island.name, region=r.region.describe(), protocol=r.protocol,
            created=r.created, expires=r.expires, state=st.state, files_total=p.files_total, files_done=p.files_done,
            files_failed=p.files_failed, bytes_total=p.bytes_total, bytes_done=p.bytes_done, errors=list(p.errors),
            owner=r.owner)

    def _replication(self) -> Replication:
        if self.replication is None:
            raise FailedPrecondition(f"replication is not running on island {self.cfg.island.name}")
        return self.replication

    def _target(self, name: str, route_path) -> str:
        """The address to forward to when ``name`` is another island; "" when it is this one."""
        here = self.cfg.island.name
        if not name or name in (here, self.cfg.address):
            return ""
        if len(name) > 300:
            raise InvalidArgument("island name is longer than 300 characters")
        if here in route_path or route_path:
            raise FailedPrecondition(f"a forwarded replication request reached {here}, not {name}")
        if ":" in name:
            return name
        return self.archipelago.address_of(name)

    @rpc
    def Replicate(self, request, context, call: Call):
        address = self._target(request.to_island, list(request.route_path))
        if address:  # the rule lives on the island that will hold the copies
            sub = pb.ReplicateRequest()
            sub.CopyFrom(request)
            sub.route_path.append(self.cfg.island.name)
            forward = self.archipelago.channel(address).unary_stream(
                "/archipel.v1.Island/Replicate", request_serializer=pb.ReplicateRequest.SerializeToString,
                response_deserializer=lambda data: data)
            remaining = context.time_remaining()
            stream = forward(sub, timeout=remaining if remaining is not None and remaining < 1e7 else None,
                             metadata=bearer_metadata(call.caller))
            context.add_callback(stream.cancel)
            try:
                yield from stream
            except grpc.RpcError as exc:
                code = exc.code().name if exc.code() else "UNKNOWN"
                raise error_for_code(code, f"{request.to_island}: {exc.details() or code}") from None
            return
        rep = self._replication()
        name = check_dataset_name(request.dataset)
        call.datasets.append(name)
        if call.caller.anonymous:
            raise PermissionDenied("replication rules need a token: anonymous callers only read")
        self._readable(call.caller, name, with_partitions=False)
        cone = (request.ra, request.dec, request.radius) if request.has_cone else None
        if len(request.moc) > 64 * 1024 * 1024:
            raise InvalidArgument("the MOC is larger than 64 MiB")
        region = Region.make(cone=cone, moc=request.moc or None)
        rule = rep.rules.create(name, region, request.lifetime_seconds, request.protocol, owner=call.caller.name,
                                owner_limit=self.cfg.limits.pinned_bytes)
        started = time.monotonic()
        gen = self.store.generation
        last = None
        sent = 0.0
        while True:
            st = rep.rules.state(rule)
            msg = pb.ReplicationProgress(rule=self._rule_pb(st), elapsed_seconds=time.monotonic() - started)
            key = (st.state, st.progress.files_done, st.progress.files_failed, st.progress.bytes_done)
            if key != last:
                yield msg
                last, sent = key, time.monotonic()
            if request.detach or st.state in ("ok", "stuck", "expired") or not context.is_active():
                return
            gen = self.store.wait_changed(gen, 5.0)
            # At most a few progress messages a second; the first change after a quiet spell at once.
            quiet = time.monotonic() - sent
            if quiet < PROGRESS_INTERVAL:
                time.sleep(PROGRESS_INTERVAL - quiet)
            gen = self.store.generation

    @rpc
    def ListRules(self, request, context, call: Call):
        rep = self._replication()
        return pb.ListRulesResponse(rules=[self._rule_pb(rep.rules.state(r)) for r in rep.rules.rules()])

    @rpc
    def DeleteRule(self, request, context, call: Call):
        rep = self._replication()
        if not request.id or len(request.id) > 64:
            raise InvalidArgument("a rule id is 1 to 64 characters")
        rule = rep.rules.rule(request.id)
        if not call.caller.admin and rule.owner != call.caller.name:
            raise PermissionDenied(f"rule {rule.id} belongs to {rule.owner or 'the island'}: only its owner or an "
                                   f"admin may delete it")
        st = rep.rules.state(rule)
        rep.rules.delete(rule.id)
        return self._rule_pb(st)

    @rpc
    def GetCache(self, request, context, call: Call):
        rep = self._replication()
        u = cache.usage(self.store, self.cfg.replication.cache_bytes)
        errors = [f"{src}: {msg} (x{n})" for src, msg, n in transfers.recent_errors(self.store)]
        return pb.CacheUsage(
            island=self.cfg.island.name, quota_bytes=u.quota, used_bytes=u.used, pinned_bytes=u.pinned_bytes,
            cached_bytes=u.cached_bytes, files=u.files, pinned_files=u.pinned_files,
            datasets=[pb.CacheDataset(dataset=d, files=f, bytes=b) for d, (f, b) in sorted(u.per_dataset.items())],
            errors=errors + ([f"root:// not served: {rep.xrootd_error}"] if rep.xrootd_error else []))

    # -- subscriptions --------------------------------------------------------------------
    def _subscription_pb(self, sub: Subscription) -> pb.SubscriptionInfo:
        lag, age = self.subscriptions.lag(sub)
        return pb.SubscriptionInfo(
            name=sub.name, dataset_pattern=sub.filter.pattern, where=sub.filter.where,
            region=sub.filter.region.describe(), columns=list(sub.filter.columns), mode=sub.mode, cursor=sub.cursor,
            position=self.store.position(), lag_changes=lag, lag_seconds=age, durable=sub.durable,
            connected=self._streams.get(sub.name, 0) > 0, created=sub.created, island=self.cfg.island.name,
            error=sub.error, owner=sub.owner.name)

    @staticmethod
    def _event_messages(d: Delivery) -> Iterator[pb.SubscriptionMessage]:
        m = d.match
        event = pb.SubscriptionEvent(
            cursor=m.pos, dataset=m.dataset.name, island=m.change.origin, op=m.op,
            partitions=[p.pid for p in d.partitions],
            pixels=[pb.HealpixPixel(order=p.order, pixel=p.pixel) for p in d.partitions if p.has_pixel],
            rows=d.rows, timestamp=m.change.ts, replicated=d.replicated)
        if d.table is None:
            event.last = True
            yield pb.SubscriptionMessage(event=event)
            return
        schema = normalize_schema(d.table.schema)
        pieces = [piece for b in d.table.to_batches(max_chunksize=65_536) for piece in slices(b, CHUNK_BYTES)]
        for i, piece in enumerate(pieces):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, schema) as writer:
                writer.write_batch(normalize_batch(piece, schema))
            msg = pb.SubscriptionEvent()
            msg.CopyFrom(event)
            msg.arrow = sink.getvalue().to_pybytes()
            msg.last = i == len(pieces) - 1
            yield pb.SubscriptionMessage(event=msg)

    def _held(self, d: Delivery) -> bool:
        name = d.match.dataset.name
        have = self.store.valid_replicas(name)
        missing = [p.pid for p in d.partitions if p.pid not in have]
        if not missing:
            return True
        st = transfers.states(self.store, name, missing)
        return all(pid in st and st[pid].state == "failed" for pid in missing)

    @rpc
    def Subscribe(self, request_iterator, context, call: Call):
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("kind") != "subscribe":
            raise InvalidArgument("the first request of Subscribe must describe the subscription")
        spec = first.subscribe
        mode = spec.mode or "events"
        if mode == "replicate":
            self._replication()
        if len(spec.moc) > 64 * 1024 * 1024:
            raise InvalidArgument("the MOC is larger than 64 MiB")
        cone = (spec.ra, spec.dec, spec.radius) if spec.has_cone else None
        book = self.subscriptions
        f = book.make_filter(spec.dataset_pattern, spec.where, cone, spec.moc or None, list(spec.columns), mode,
                             check_rows=lambda ds, flt: RowFilter(ds, flt).check(), reader=call.caller)
        if mode == "replicate" and call.caller.anonymous:
            raise PermissionDenied("replicate-mode subscriptions pin replicas: they need a token")
        stream = self.shares.take_stream(call.caller.name, self.cfg.limits)
        try:
            subs = self.shares.take(call.caller.name, "subscriptions", self.cfg.limits.subscriptions,
                                    "subscription streams")
        except BaseException:
            stream()
            raise

        def release() -> None:
            subs()
            stream()
        try:
            sub = book.open(spec.name, f, mode, spec.start_at, owner=call.caller)
        except BaseException:
            release()
            raise
        name = sub.name
        with self._streams_lock:
            self._streams[name] = self._streams.get(name, 0) + 1
            self._deleted.discard(name)
        state = {"acked": sub.cursor, "delivered": sub.cursor}
        client_done = threading.Event()

        def read_acks() -> None:
            try:
                for req in request_iterator:
                    if req.WhichOneof("kind") == "ack" and name not in self._deleted:
                        state["acked"] = max(state["acked"], min(req.ack, state["delivered"]))
                        book.ack(name, state["acked"])
            except Exception:  # the stream was cancelled
                pass
            client_done.set()  # the client half-closed (its acks are recorded): end the stream
            self.store.bump()

        def on_idle(pos: int) -> None:
            # Everything delivered is acknowledged and nothing matched since: move on.
            if state["acked"] >= state["delivered"] and pos > state["acked"] and name not in self._deleted:
                state["acked"] = state["delivered"] = pos
                book.ack(name, pos)

        def active() -> bool:
            return context.is_active() and name not in self._deleted and not client_done.is_set()

        try:
            threading.Thread(target=read_acks, name=f"acks-{name}", daemon=True).start()
            context.add_callback(self.store.bump)  # wakes the stream when the client goes
            if mode == "replicate":
                self.store.bump()  # the keeper takes the new subscription now
            yield pb.SubscriptionMessage(started=self._subscription_pb(book.get(name)))

            def pinned() -> int:
                found = book.get(name, missing_ok=True)
                return found.pinned if found else 0

            for d in deliveries(book, sub, self.rows, sub.cursor, active, on_idle,
                                pinned=pinned if mode == "replicate" else None,
                                held=self._held if mode == "replicate" else None):
                state["delivered"] = d.match.pos  # before sending: an ack may come back at once
                yield from self._event_messages(d)
            if name in self._deleted:
                raise NotFound(f"subscription {name!r} was deleted")
        finally:
            with self._streams_lock:
                self._streams[name] -= 1
                if not self._streams[name]:
                    del self._streams[name]
            if not sub.durable:
                book.forget(name)
            release()

    @rpc
    def ListSubscriptions(self, request, context, call: Call):
        return pb.ListSubscriptionsResponse(
            subscriptions=[self._subscription_pb(s) for s in self.subscriptions.subscriptions()
                           if call.caller.admin or s.owner.user == call.caller.user])

    @rpc
    def DeleteSubscription(self, request, context, call: Call):
        if not request.name or len(request.name) > 128:
            raise InvalidArgument("a subscription name is 1 to 128 characters")
        found = self.subscriptions.get(request.name)
        self.subscriptions.check_owner(found, call.caller, "delete")
        info = self._subscription_pb(found)
        self.subscriptions.delete(request.name)
        with self._streams_lock:
            if request.name in self._streams:
                self._deleted.add(request.name)
        self.store.bump()
        return info
