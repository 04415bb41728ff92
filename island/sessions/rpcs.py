"""The client-facing RPCs of sessions, cached tables and batch jobs. Translation only; the
rules are in ``island.sessions`` (guard, book, jobs, data) and ``federation.router``.

A request naming another island is relayed there with the caller's token: the island that
runs the session or job decides.
"""

from __future__ import annotations

import functools
import time

import grpc

from archipel.errors import ArchipelError, FailedPrecondition, InvalidArgument, error_for_code
from archipel.names import check_dataset_name
from archipel.v1 import island_pb2 as pb
from federation.router import place_session
from island.rpc import Call, rpc
from island.security.gate import bearer_metadata
from metacatalog import access

__all__ = ["SessionRpcs"]

_LOG_CHUNK = 64 * 1024


def _job_pb(job) -> pb.JobInfo:
    return pb.JobInfo(id=job.id, user=job.user, island=job.island, state=job.state, reason=job.reason,
                      exit_code=job.exit_code, submitted=job.submitted, started=job.started, finished=job.finished,
                      filename=job.filename, args=job.args, datasets=job.datasets, published=job.published)


def _table_pb(t, island: str) -> pb.CachedTable:
    return pb.CachedTable(dataset=t.dataset, island=island, cone=t.where, files=len(t.files),
                          memory_bytes=t.bytes_in_memory, created=t.created, last_used=t.last_used)


def _remote_error(exc: grpc.RpcError, island: str):
    """Another island's refusal, as the same error naming that island."""
    code = exc.code().name if exc.code() else "UNKNOWN"
    return error_for_code(code, f"island {island}: {exc.details() or code}")


def parse_cone(text: str) -> tuple[float, float, float] | None:
    if not text:
        return None
    try:
        ra, dec, radius = (float(x) for x in text.split(","))
    except ValueError:
        raise InvalidArgument(f"cone must be RA,DEC,RADIUS in degrees, not {text[:60]!r}") from None
    if not (-90 <= dec <= 90 and 0 < radius <= 180) or any(v != v for v in (ra, dec, radius)):
        raise InvalidArgument(f"cone {text[:60]!r}: dec must be in [-90, 90] and radius in (0, 180]")
    return ra % 360, dec, radius


def relayed(method):
    """A request naming another island (its ``island`` field) is relayed there, with the
    caller's token, and that island's answer returned; ``method`` answers for this one."""
    name = method.__name__

    @functools.wraps(method)
    def wrapper(self, request, context, call: Call):
        if self._elsewhere(request.island):
            return self._relay(name, request, call, request.island)
        return method(self, request, context, call)
    return wrapper


class SessionRpcs:
    """Mixed into IslandServicer (which provides cfg, store, archipelago and ``sessions``, an
    ``island.sessions.Sessions``)."""

    def _sessions_here(self):
        if self.sessions is None:
            raise FailedPrecondition("Spark sessions and jobs are off on this island ([sessions] enabled = false or "
                                     "[spark] start = false)")
        return self.sessions

    def _elsewhere(self, island: str) -> bool:
        return bool(island) and island != self.cfg.island.name

    def _relay(self, method: str, request, call: Call, island: str):
        channel = self.archipelago.channel(self.archipelago.address_of(island))
        response = getattr(pb, {"OpenSession": "SessionInfo", "ListSessions": "ListSessionsResponse",
                                "KillSession": "SessionInfo", "CacheTable": "CachedTable",
                                "ListCachedTables": "ListCachedTablesResponse", "DropCachedTable": "CachedTable",
                                "SubmitJob": "JobInfo", "ListJobs": "ListJobsResponse", "GetJob": "JobInfo",
                                "JobLogs": "JobLogChunk", "CancelJob": "JobInfo"}[method])
        fn = channel.unary_unary(f"/archipel.v1.Island/{method}", request_serializer=type(request).SerializeToString,
                                 response_deserializer=response.FromString)
        try:
            return fn(request, metadata=bearer_metadata(call.caller) or None, timeout=600)
        except grpc.RpcError as exc:
            raise _remote_error(exc, island) from None

    def _session_holders(self, names: list[str], call: Call) -> dict[str, set[str]]:
        """Each dataset the caller may read -> the islands holding all of it (its origin and
        full replicas), for ``place_session``."""
        holders = {}
        for name in names:
            call.datasets.append(name)
            ds = self.store.dataset(name, with_partitions=True)
            access.check_read(call.caller, name, ds.access)
            replicas = self.store.replica_islands(name)
            full = {ds.origin}
            if ds.partitions:
                full |= set.intersection(*[set(replicas.get(p.pid, [])) for p in ds.partitions])
            holders[name] = full
        return holders

    # -- sessions ---------------------------------------------------------------------------------
    @rpc
    def OpenSession(self, request, context, call: Call):
        names = [check_dataset_name(d) for d in request.datasets]
        if len(names) > 100:
            raise InvalidArgument("at most 100 datasets per session")
        holders = self._session_holders(names, call)
        if request.island:
            if request.island not in {i for i, _ in self.archipelago.known()}:
                raise InvalidArgument(f"no island named {request.island[:64]!r} is known here (see `archipel peers`)")
            island, reason = request.island, f"island {request.island} was asked for"
        else:
            place = place_session(names, self.cfg.island.name, holders, self.archipelago.down())
            island, reason = place.island, place.reason
        if self._elsewhere(island):
            sub = pb.OpenSessionRequest(datasets=names, island=island)
            info = self._relay("OpenSession", sub, call, island)
            info.reason = reason
            return info
        info = self._sessions_here().open(call.caller, names)
        info.reason = reason
        return info

    @rpc
    @relayed
    def ListSessions(self, request, context, call: Call):
        return pb.ListSessionsResponse(sessions=self._sessions_here().infos(call.caller))

    @rpc
    @relayed
    def KillSession(self, request, context, call: Call):
        return self._sessions_here().kill(call.caller, request.id)

    # -- tables in memory ------------------------------------------------------------------------
    @rpc
    @relayed
    def CacheTable(self, request, context, call: Call):
        access.check_admin(call.caller, "keeping datasets in the island's memory")
        name = check_dataset_name(request.dataset)
        call.datasets.append(name)
        cone = parse_cone(request.cone)
        where = ""
        if cone is not None:
            ds = self.store.dataset(name, with_partitions=False)
            if not ds.ra_column:
                raise InvalidArgument(f"dataset {name} has no sky position columns: cache it whole (no cone)")
            where = f"cone({ds.ra_column}, {ds.dec_column}, {cone[0]!r}, {cone[1]!r}, {cone[2]!r})"
        table = self._sessions_here().cache.add(call.caller, name, where, self.cfg.query.timeout_seconds)
        table.where = request.cone
        return _table_pb(table, self.cfg.island.name)

    @rpc
    @relayed
    def ListCachedTables(self, request, context, call: Call):
        visible = []
        for t in self._sessions_here().cache.tables():
            try:
                readable = access.may_read(call.caller, self.store.dataset(t.dataset, with_partitions=False).access)
            except ArchipelError:  # deleted since it was cached
                readable = False
            if readable:
                visible.append(t)
        return pb.ListCachedTablesResponse(tables=[_table_pb(t, self.cfg.island.name) for t in visible])

    @rpc
    @relayed
    def DropCachedTable(self, request, context, call: Call):
        access.check_admin(call.caller, "dropping tables from the island's memory")
        name = check_dataset_name(request.dataset)
        cache = self._sessions_here().cache
        table = next((t for t in cache.tables() if t.dataset == name), None)
        if table is None or not cache.drop(name):
            raise error_for_code("NOT_FOUND", f"dataset {name} is not kept in memory on {self.cfg.island.name}")
        return _table_pb(table, self.cfg.island.name)

    # -- batch jobs ---------------------------------------------------------------------------------
    @rpc
    def SubmitJob(self, request, context, call: Call):
        names = [check_dataset_name(d) for d in request.datasets]
        call.datasets.extend(names)
        island = request.island
        if not island and names:  # a job runs at its datasets' origins (their authoritative copies)
            holders = {}
            for name in names:
                ds = self.store.dataset(name, with_partitions=False)
                access.check_read(call.caller, name, ds.access)
                holders[name] = {ds.origin}
            island = place_session(names, self.cfg.island.name, holders, self.archipelago.down()).island
        if self._elsewhere(island):
            sub = pb.SubmitJobRequest()
            sub.CopyFrom(request)
            sub.island = island
            return self._relay("SubmitJob", sub, call, island)
        job = self._sessions_here().jobs.submit(call.caller, request.code, request.filename, list(request.args), names)
        call.detail = f"job {job.id} ({job.filename})"
        return _job_pb(job)

    @rpc
    @relayed
    def ListJobs(self, request, context, call: Call):
        return pb.ListJobsResponse(jobs=[_job_pb(j) for j in self._sessions_here().jobs.jobs(call.caller)])

    @rpc
    @relayed
    def GetJob(self, request, context, call: Call):
        return _job_pb(self._sessions_here().jobs.get(call.caller, request.id))

    @rpc
    @relayed
    def CancelJob(self, request, context, call: Call):
        return _job_pb(self._sessions_here().jobs.cancel(call.caller, request.id))

    @rpc
    def JobLogs(self, request, context, call: Call):
        if self._elsewhere(request.island):
            address = self.archipelago.address_of(request.island)
            fn = self.archipelago.channel(address).unary_stream(
                "/archipel.v1.Island/JobLogs", request_serializer=pb.JobLogsRequest.SerializeToString,
                response_deserializer=pb.JobLogChunk.FromString)
            stream = fn(request, metadata=bearer_metadata(call.caller) or None)
            context.add_callback(stream.cancel)
            try:
                yield from stream
            except grpc.RpcError as exc:
                raise _remote_error(exc, request.island) from None
            return
        jobs = self._sessions_here().jobs
        job = jobs.get(call.caller, request.id)
        path = jobs.log_path(job)
        offset = request.offset
        with open(path, "rb") as f:
            f.seek(offset)
            while context.is_active():
                data = f.read(_LOG_CHUNK)
                if data:
                    yield pb.JobLogChunk(data=data)
                    continue
                job = jobs.get(call.caller, request.id)
                if not request.follow or job.state in ("succeeded", "failed", "cancelled"):
                    rest = f.read()
                    if rest:
                        yield pb.JobLogChunk(data=rest)
                    if request.follow:
                        yield pb.JobLogChunk(job=_job_pb(job))
                    return
                time.sleep(0.2)
