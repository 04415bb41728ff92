"""Queries: planning (local, pushed down, gathered, copied first), running on the Arrow path or
Spark, direct reads, Explain and Cancel."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from archipel.arrowwire import chunk_message, serialize_schema
from archipel.errors import ArchipelError, FailedPrecondition, InvalidArgument
from archipel.v1 import island_pb2 as pb
from federation.lazy import Localization, localize, may_copy
from federation.planner import QueryPlan, plan_query, query_shape
from federation.router import Placement, place, pushdown_target
from island.convert import ENGINES, ROUTES, plan_to_pb
from island.dataserve import check_data_read
from island.direct import DirectFileSpec, direct_read, direct_schema, file_url
from island.queries import Chunk, Trailer, prefetch, stream_results
from island.routing import fetch_scan, forward_query, lowest_limit
from island.rpc import Call, rpc
from island.security.gate import bearer_metadata
from metacatalog import access
from metacatalog.access import Caller
from replication import cache

logger = logging.getLogger(__name__)
_COMPRESSIONS = ("", "lz4", "zstd")


class QueryRpcs:
    """Mixed into ``IslandServicer`` (its ``cfg``, ``store``, ``archipelago``, ... ); methods
    translate messages and call the island's parts."""

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
        query go there whole (``federation.router.pushdown_target``); else ""."""
        route = ROUTES.get(request.route)
        shape = query_shape(request.sql) if route in ("auto", "remote") else None
        if shape is None or not shape.names:
            return ""
        rep = self.replication
        auto_copy = route == "auto" and rep is not None and bool(self.cfg.replication.auto_max_bytes)
        origins: set[str] | None = set()
        for name in shape.names:
            call.datasets.append(name)
            try:
                origins.add(self._readable(call.caller, name, with_partitions=False).origin)
            except ArchipelError:
                origins = None
                break
        return pushdown_target(
            route, origins, self.cfg.island.name, list(request.route_path), self.archipelago.down(),
            copy_may_pay=auto_copy and may_copy(shape, self.store.max_order),
            replicas_here=route == "auto" and rep is not None and origins is not None
            and any(rep.held(n) for n in shape.names))

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
                max_bytes: int, caller: Caller) -> pb.DirectRead | None:
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
            out = direct_read(scan, plan.direct, files, self._footers, max_rows, max_bytes)
        except OSError as exc:  # a file went meanwhile (evicted replica): the stream path says so
            logger.info("direct read of %s falls back to the stream: %s", scan.dataset.name, exc)
            return None
        local = self.replication.local
        if out is not None and local is not None and out.files:
            paths = {spec.url: spec.path for spec in files}
            out.local.CopyFrom(local.grant([paths[f.url] for f in out.files], [f.size for f in out.files],
                                           caller.name, self._data_rule(caller, scan.dataset.name)))
            out.local.mappable = root.resolve().is_relative_to(self.cfg.data_path.resolve())
        return out

    def _data_rule(self, caller: Caller, dataset: str):
        """The data port's rule for ``caller`` and ``dataset``, run again when the files of a
        short-circuit read are handed out (a token revoked since the plan is refused there too)."""
        gate, store = self.gate, self.store

        def recheck() -> None:
            if gate is not None and caller.raw_token:
                check_data_read(gate, store, None, f"Bearer {caller.raw_token}", dataset)
            else:
                access.check_read(caller, dataset, store.dataset(dataset, with_partitions=False).access)
        return recheck

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
            direct = self._direct(request, plan, placement, limit_rows, limit_bytes, call.caller)
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

    @rpc
    def Cancel(self, request, context, call: Call):
        owner = None if call.caller.admin else call.caller.name
        return pb.CancelResponse(cancelled=self.queries.cancel(request.query_id, owner=owner))
