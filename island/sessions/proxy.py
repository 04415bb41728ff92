"""Spark Connect on the island's own port: every call authenticated by the island's gate,
checked by the guard, pinned to the caller's identity, then passed to the Spark Connect server
inside the island's JVM (127.0.0.1, a secret only this process knows).

Why a proxy in the island rather than a Connect server facing users: one door (the island's
TLS port and tokens, revocation included), each plan checked before Spark sees it, dataset
names resolved with the caller's rights, and the same session reachable through any island
(a call carrying ``x-archipel-island: B`` is relayed to island B, which decides again).
Responses pass through as bytes: results are not decoded here.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator

import grpc

from archipel.errors import ArchipelError, FailedPrecondition, InvalidArgument, PermissionDenied
from island.rpc import status_of
from island.sessions.book import Session, SessionBook
from island.sessions.data import DatasetFiles, DatasetFilesFinder
from island.sessions.guard import Guard, view_name
from metacatalog import access
from metacatalog.access import Caller

__all__ = ["ConnectProxy", "SERVICE", "ISLAND_HEADER"]

logger = logging.getLogger(__name__)

SERVICE = "spark.connect.SparkConnectService"
ISLAND_HEADER = "x-archipel-island"
CLIENT_TYPE = "archipel-island"
_UNARY = ("AnalyzePlan", "Config", "ArtifactStatus", "Interrupt", "ReleaseExecute", "ReleaseSession",
          "FetchErrorDetails", "GetStatus", "CloneSession")
_STREAMING = ("ExecutePlan", "ReattachExecute")
_BACKEND_OPTIONS = [("grpc.max_send_message_length", 256 * 1024 * 1024),
                    ("grpc.max_receive_message_length", 256 * 1024 * 1024)]


def _remaining(context) -> float | None:
    """The caller's deadline for the call passed on (None: none; gRPC reports "none" as a huge
    or infinite value, which would end the passed call at once)."""
    t = context.time_remaining()
    return None if t is None or t != t or t > 1e7 else max(t, 0.001)


def _pb():
    import pyspark.sql.connect.proto as pb  # the island's pyspark; imported when a session is used

    return pb


class ConnectProxy:
    def __init__(self, gate, store, here: str, finder: DatasetFilesFinder, book: SessionBook, spark,
                 archipelago=None, audit=None, timeout: float = 600.0) -> None:
        self.gate = gate
        self.store = store
        self.here = here
        self.finder = finder
        self.book = book
        self.spark = spark  # the engine: its Connect port and secret
        self.archipelago = archipelago
        self.audit = audit
        self.timeout = timeout
        self._channel: grpc.Channel | None = None
        self._lock = threading.Lock()

    # -- the backend -------------------------------------------------------------------------
    def _backend(self) -> grpc.Channel:
        with self._lock:
            if self._channel is None:
                port = self.spark.connect_port
                if not port:
                    raise FailedPrecondition("Spark sessions are off on this island ([sessions] enabled = false, "
                                             "or [spark] start = false)")
                self._channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=_BACKEND_OPTIONS)
            return self._channel

    def _metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.spark.connect_secret}")]

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None

    # -- gRPC handlers ------------------------------------------------------------------------
    def handler(self) -> grpc.GenericRpcHandler:
        handlers = {}
        for name in _UNARY:
            handlers[name] = grpc.unary_unary_rpc_method_handler(self._unary(name))
        for name in _STREAMING:
            handlers[name] = grpc.unary_stream_rpc_method_handler(self._streaming(name))
        handlers["AddArtifacts"] = grpc.stream_unary_rpc_method_handler(self._add_artifacts)
        return grpc.method_handlers_generic_handler(SERVICE, handlers)

    def _enter(self, context) -> tuple[Caller, str]:
        caller = self.gate.grpc_caller(context)
        meta = dict(context.invocation_metadata() or ())
        island = meta.get(ISLAND_HEADER, "") or self.here
        if caller.anonymous:
            raise PermissionDenied("Spark sessions need a token: anonymous callers only read through queries")
        return caller, island

    def _abort(self, context, err: Exception, name: str) -> None:
        if isinstance(err, ArchipelError):
            context.abort(status_of(err), err.message)
        if isinstance(err, grpc.RpcError):  # the Connect server's own error, with its details
            trailing = [(k, v) for k, v in (err.trailing_metadata() or ()) if k != "content-type"]
            if trailing:
                context.set_trailing_metadata(trailing)
            context.abort(err.code(), err.details() or str(err.code()))
        logger.exception("session %s failed", name)
        context.abort(grpc.StatusCode.INTERNAL, f"{name} failed on the island: {err}")

    def _unary(self, name: str):
        def handle(raw: bytes, context):
            try:
                caller, island = self._enter(context)
                if island != self.here:
                    return self._relay_unary(name, raw, caller, island, context)
                return getattr(self, f"_do_{name}", self._do_plain(name))(raw, caller, context)
            except Exception as err:  # noqa: BLE001 - each mapped to a status with its message
                self._abort(context, err, name)
        return handle

    def _streaming(self, name: str):
        def handle(raw: bytes, context):
            try:
                caller, island = self._enter(context)
                if island != self.here:
                    yield from self._relay_stream(name, raw, caller, island, context)
                    return
                yield from getattr(self, f"_do_{name}")(raw, caller, context)
            except Exception as err:  # noqa: BLE001
                self._abort(context, err, name)
        return handle

    # -- relaying to the island that runs the session ----------------------------------------------
    def _peer(self, island: str):
        if self.archipelago is None:
            raise FailedPrecondition("this island relays no sessions")
        return self.archipelago.channel(self.archipelago.address_of(island))

    @staticmethod
    def _relay_metadata(caller: Caller, island: str) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {caller.raw_token}"), (ISLAND_HEADER, island)]

    def _relay_unary(self, name, raw, caller, island, context):
        call = self._peer(island).unary_unary(f"/{SERVICE}/{name}")
        return call(raw, metadata=self._relay_metadata(caller, island), timeout=_remaining(context))

    def _relay_stream(self, name, raw, caller, island, context):
        call = self._peer(island).unary_stream(f"/{SERVICE}/{name}")
        stream = call(raw, metadata=self._relay_metadata(caller, island), timeout=_remaining(context))
        context.add_callback(stream.cancel)
        yield from stream

    # -- checks shared by every call --------------------------------------------------------------
    def _session(self, request, caller: Caller) -> Session:
        session = self.book.use(caller, request.session_id)
        request.user_context.user_id = caller.name
        request.user_context.user_name = caller.name
        del request.user_context.extensions[:]
        return session

    def _resolver(self, caller: Caller):
        names = set(self.store.dataset_names())

        def resolve(dotted: str) -> str | None:
            if dotted not in names:
                return None
            ds = self.store.dataset(dotted, with_partitions=False)
            access.check_read(caller, dotted, ds.access)
            return view_name(dotted)
        return resolve

    def _prepare(self, session: Session, caller: Caller, datasets: set[str]) -> None:
        """The session's views of ``datasets``, (re)made where the files they read changed."""
        for name in sorted(datasets):
            files = self.finder.view_files(caller, name, self.timeout)
            with session.lock:
                if session.views.get(name) == files.key:
                    continue
                self._execute_command(session, caller, self._view_command(name, files))
                session.views[name] = files.key

    def _view_command(self, name: str, files: DatasetFiles):
        pb = _pb()
        parts = []
        if files.cached_view:
            parts.append(pb.Relation(read=pb.Read(named_table=pb.Read.NamedTable(
                unparsed_identifier=f"global_temp.{files.cached_view}"))))
        if files.files:
            parts.append(pb.Relation(read=pb.Read(data_source=pb.Read.DataSource(
                format="parquet", paths=list(files.files)))))
        if not parts:  # no partition: an empty table with the dataset's columns
            from archipel.arrowwire import read_schema
            import pyarrow as pa

            sink = pa.BufferOutputStream()
            schema = read_schema(files.arrow_schema)
            with pa.ipc.new_stream(sink, schema) as w:
                w.write_table(schema.empty_table())
            parts.append(pb.Relation(local_relation=pb.LocalRelation(data=sink.getvalue().to_pybytes())))
        rel = parts[0]
        for other in parts[1:]:
            rel = pb.Relation(set_op=pb.SetOperation(left_input=rel, right_input=other, is_all=True, by_name=True,
                                                     set_op_type=pb.SetOperation.SET_OP_TYPE_UNION))
        return pb.Command(create_dataframe_view=pb.CreateDataFrameViewCommand(
            input=rel, name=view_name(name), is_global=False, replace=True))

    def _execute_command(self, session: Session, caller: Caller, command) -> None:
        pb = _pb()
        req = pb.ExecutePlanRequest(session_id=session.id, user_context=pb.UserContext(user_id=caller.name),
                                    operation_id=str(uuid.uuid4()), plan=pb.Plan(command=command),
                                    client_type=CLIENT_TYPE)
        call = self._backend().unary_stream(f"/{SERVICE}/ExecutePlan")
        for _ in call(req.SerializeToString(), metadata=self._metadata(), timeout=self.timeout):
            pass

    def _analyze(self, session: Session, caller: Caller, **kind) -> bytes:
        pb = _pb()
        req = pb.AnalyzePlanRequest(session_id=session.id, user_context=pb.UserContext(user_id=caller.name),
                                    client_type=CLIENT_TYPE, **kind)
        return self._backend().unary_unary(f"/{SERVICE}/AnalyzePlan")(
            req.SerializeToString(), metadata=self._metadata(), timeout=self.timeout)

    def _forward_unary(self, name: str, request, context) -> bytes:
        call = self._backend().unary_unary(f"/{SERVICE}/{name}")
        return call(request.SerializeToString(), metadata=self._metadata(), timeout=_remaining(context))

    def _audit(self, caller: Caller, method: str, datasets, outcome: str = "ok", detail: str = "") -> None:
        if self.audit is None:
            return
        from island.rpc import Call

        self.audit.record(Call(caller, f"Session.{method}", datasets=sorted(datasets), detail=detail[:300]), outcome)

    # -- the methods ------------------------------------------------------------------------------
    def _do_ExecutePlan(self, raw: bytes, caller: Caller, context) -> Iterator[bytes]:
        pb = _pb()
        request = pb.ExecutePlanRequest.FromString(raw)
        session = self._session(request, caller)
        try:
            checked = Guard(self._resolver(caller)).execute(request)
            checked.require(caller.has("compute"))
        except ArchipelError as err:
            self._audit(caller, "ExecutePlan", [], "refused", err.message)
            raise
        self._prepare(session, caller, checked.datasets)
        self._audit(caller, "ExecutePlan", checked.datasets)
        call = self._backend().unary_stream(f"/{SERVICE}/ExecutePlan")
        with session.lock:
            session.operations += 1
            session.running += 1
        try:
            stream = call(request.SerializeToString(), metadata=self._metadata(), timeout=_remaining(context))
            context.add_callback(stream.cancel)
            yield from stream
        finally:
            with session.lock:
                session.running -= 1
                session.last_used = time.time()

    def _do_ReattachExecute(self, raw: bytes, caller: Caller, context) -> Iterator[bytes]:
        pb = _pb()
        request = pb.ReattachExecuteRequest.FromString(raw)
        self._session(request, caller)
        call = self._backend().unary_stream(f"/{SERVICE}/ReattachExecute")
        stream = call(request.SerializeToString(), metadata=self._metadata(), timeout=_remaining(context))
        context.add_callback(stream.cancel)
        yield from stream

    def _do_AnalyzePlan(self, raw: bytes, caller: Caller, context) -> bytes:
        pb = _pb()
        request = pb.AnalyzePlanRequest.FromString(raw)
        session = self._session(request, caller)
        checked = Guard(self._resolver(caller)).analyze(request)
        checked.require(caller.has("compute"))
        self._prepare(session, caller, checked.datasets)
        if request.WhichOneof("analyze") == "persist":
            return self._persist(session, caller, request)
        return self._forward_unary("AnalyzePlan", request, context)

    def _persist(self, session: Session, caller: Caller, request) -> bytes:
        """``df.cache()``: cached as a view named for the session, so that what it holds in memory
        is known and freed when the session ends; the DataFrame itself finds the cache as usual."""
        pb = _pb()
        with session.lock:
            session.persisted += 1
            name = f"archipel_p_{session.tag}_{session.persisted}"
        self._execute_command(session, caller, pb.Command(create_dataframe_view=pb.CreateDataFrameViewCommand(
            input=request.persist.relation, name=name, is_global=False, replace=True)))
        cache = pb.Catalog(cache_table=pb.CacheTable(table_name=name))
        if request.persist.HasField("storage_level"):
            cache.cache_table.storage_level.CopyFrom(request.persist.storage_level)
        req = pb.ExecutePlanRequest(session_id=session.id, user_context=pb.UserContext(user_id=caller.name),
                                    operation_id=str(uuid.uuid4()), client_type=CLIENT_TYPE,
                                    plan=pb.Plan(root=pb.Relation(catalog=cache)))
        server_side = ""
        for raw in self._backend().unary_stream(f"/{SERVICE}/ExecutePlan")(
                req.SerializeToString(), metadata=self._metadata(), timeout=self.timeout):
            server_side = server_side or pb.ExecutePlanResponse.FromString(raw).server_side_session_id
        return pb.AnalyzePlanResponse(session_id=request.session_id, server_side_session_id=server_side,
                                      persist=pb.AnalyzePlanResponse.Persist()).SerializeToString()

    def _do_Config(self, raw: bytes, caller: Caller, context) -> bytes:
        pb = _pb()
        request = pb.ConfigRequest.FromString(raw)
        self._session(request, caller)
        Guard(self._resolver(caller)).config(request)
        return self._forward_unary("Config", request, context)

    def _do_CloneSession(self, raw: bytes, caller: Caller, context) -> bytes:
        raise InvalidArgument("cloning a session is not supported here: open a new session")

    def _do_ReleaseSession(self, raw: bytes, caller: Caller, context) -> bytes:
        pb = _pb()
        request = pb.ReleaseSessionRequest.FromString(raw)
        if self.book.get(request.session_id) is None and self.book.ended(request.session_id):
            return pb.ReleaseSessionResponse(session_id=request.session_id).SerializeToString()  # already ended
        session = self._session(request, caller)
        self.free(session)
        out = self._forward_unary("ReleaseSession", request, context)
        self.book.end(session.id)
        return out

    def _do_plain(self, name: str):
        def do(raw: bytes, caller: Caller, context) -> bytes:
            pb = _pb()
            request = getattr(pb, f"{name}Request").FromString(raw)
            self._session(request, caller)
            return self._forward_unary(name, request, context)
        return do

    def _add_artifacts(self, request_iterator, context):
        try:
            caller, island = self._enter(context)
            pb = _pb()
            if island != self.here:
                call = self._peer(island).stream_unary(f"/{SERVICE}/AddArtifacts")
                return call(request_iterator, metadata=self._relay_metadata(caller, island),
                            timeout=_remaining(context))
            guard = Guard(self._resolver(caller))
            first = True

            def checked():
                nonlocal first
                for raw in request_iterator:
                    req = pb.AddArtifactsRequest.FromString(raw)
                    if first:
                        self._session(req, caller)
                        first = False
                    else:
                        req.user_context.user_id = caller.name
                    kind = req.WhichOneof("payload")
                    names = ([a.name for a in req.batch.artifacts] if kind == "batch"
                             else [req.begin_chunk.name] if kind == "begin_chunk" else [])
                    for n in names:
                        guard.artifact(n)
                    guard.checked.require(caller.has("compute"))
                    yield req.SerializeToString()

            call = self._backend().stream_unary(f"/{SERVICE}/AddArtifacts")
            return call(checked(), metadata=self._metadata(), timeout=_remaining(context))
        except Exception as err:  # noqa: BLE001
            self._abort(context, err, "AddArtifacts")

    # -- ending sessions --------------------------------------------------------------------------
    def free(self, session: Session) -> None:
        """Drops what the session cached (its views named archipel_p_...): the memory goes back."""
        pb = _pb()
        for n in range(1, session.persisted + 1):
            name = f"archipel_p_{session.tag}_{n}"
            try:
                req = pb.ExecutePlanRequest(
                    session_id=session.id, user_context=pb.UserContext(user_id=session.user),
                    operation_id=str(uuid.uuid4()), client_type=CLIENT_TYPE,
                    plan=pb.Plan(root=pb.Relation(catalog=pb.Catalog(uncache_table=pb.UncacheTable(table_name=name)))))
                for _ in self._backend().unary_stream(f"/{SERVICE}/ExecutePlan")(
                        req.SerializeToString(), metadata=self._metadata(), timeout=60):
                    pass
            except grpc.RpcError:
                logger.debug("uncache of %s failed", name, exc_info=True)

    def kill(self, session: Session) -> None:
        """Ends a session now: its operations interrupted, its cache freed, its state dropped."""
        pb = _pb()
        ctx = pb.UserContext(user_id=session.user)
        try:
            self._backend().unary_unary(f"/{SERVICE}/Interrupt")(
                pb.InterruptRequest(session_id=session.id, user_context=ctx, client_type=CLIENT_TYPE,
                                    interrupt_type=pb.InterruptRequest.INTERRUPT_TYPE_ALL).SerializeToString(),
                metadata=self._metadata(), timeout=30)
        except grpc.RpcError:
            logger.debug("interrupt of session %s failed", session.id, exc_info=True)
        self.free(session)
        try:
            self._backend().unary_unary(f"/{SERVICE}/ReleaseSession")(
                pb.ReleaseSessionRequest(session_id=session.id, user_context=ctx,
                                         client_type=CLIENT_TYPE).SerializeToString(),
                metadata=self._metadata(), timeout=30)
        except grpc.RpcError:
            logger.debug("release of session %s failed", session.id, exc_info=True)
        self.book.end(session.id)

    def memory_of(self, session: Session) -> int:
        """Bytes Spark holds in memory for what the session cached."""
        try:
            infos = self.spark.session.sparkContext._jsc.sc().getRDDStorageInfo()
        except Exception:
            return 0
        mark = f"archipel_p_{session.tag}_"
        return sum(int(i.memSize()) for i in infos if mark in str(i.name()))
