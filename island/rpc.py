"""The edge of every gRPC method: who is calling (the gate), ArchipelErrors to status codes,
and one audit entry per call."""

from __future__ import annotations

import functools
import inspect
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc

from archipel.errors import ArchipelError, PermissionDenied
from metacatalog.access import Caller

__all__ = ["Call", "rpc", "peer_rpc", "status_of"]

logger = logging.getLogger(__name__)

_UNAUDITED = {"GetInfo", "WhoAmI", "GetAudit"}  # polled by tools; no data goes out
_UNAUTHENTICATED = Caller(user="(no valid token)")


@dataclass
class Call:
    """One call as the use cases see it: the caller, and what the audit log should say."""

    caller: Caller
    method: str
    datasets: list[str] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0
    detail: str = ""
    labels: dict[str, str] = field(default_factory=dict)  # for the metrics: a query's engine and route
    started: float = field(default_factory=time.monotonic)


def status_of(err: ArchipelError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, err.code, grpc.StatusCode.UNKNOWN)


@contextmanager
def _statuses(context, name: str, call: Call | None, audit, metrics=None):
    """ArchipelError to its status code with its message; anything else to INTERNAL, logged."""
    outcome = "ok"
    try:
        yield
    except ArchipelError as err:
        outcome = "refused" if err.code in ("PERMISSION_DENIED", "UNAUTHENTICATED", "RESOURCE_EXHAUSTED") else "failed"
        if call is not None and not call.detail:
            call.detail = err.message[:300]
        context.abort(status_of(err), err.message)
    except grpc.RpcError:
        outcome = "failed"
        raise
    except Exception as exc:
        outcome = "failed"
        if _aborted(context):  # the method set its own status (context.abort): it stands
            raise
        logger.exception("%s failed", name)
        context.abort(grpc.StatusCode.INTERNAL, f"{name} failed on the island: {exc}")
    finally:
        if audit is not None and call is not None and name not in _UNAUDITED:
            audit.record(call, outcome)
        if metrics is not None and call is not None:
            metrics.observe(call, outcome, time.monotonic() - call.started)


def _aborted(context) -> bool:
    """Whether the call already carries a status a method set (``context.abort``)."""
    try:
        code = context.code()
    except Exception:  # a context without the getter
        return False
    return code is not None and code != grpc.StatusCode.OK


def rpc(method):
    """Wraps a client-facing servicer method (plain or generator): authenticates the caller
    through ``self.gate`` and calls ``method(self, request, context, call)``."""
    name = method.__name__

    def _call(self, context) -> Call:
        try:
            return Call(self.gate.grpc_caller(context), name)
        except ArchipelError as err:  # refused at the door: audited too
            audit = getattr(self, "audit", None)
            if audit is not None and name not in _UNAUDITED:
                audit.record(Call(_UNAUTHENTICATED, name, detail=err.message[:300]), "refused")
            metrics = getattr(self, "metrics", None)
            if metrics is not None:
                metrics.rpcs.labels(name, "refused").inc()
            raise

    @functools.wraps(method)
    def unary(self, request, context):
        call = None
        with _statuses(context, name, None, None):
            call = _call(self, context)
        with _statuses(context, name, call, getattr(self, "audit", None), getattr(self, "metrics", None)):
            return method(self, request, context, call)

    @functools.wraps(method)
    def streaming(self, request, context):
        call = None
        with _statuses(context, name, None, None):
            call = _call(self, context)
        with _statuses(context, name, call, getattr(self, "audit", None), getattr(self, "metrics", None)):
            yield from method(self, request, context, call)

    return streaming if inspect.isgeneratorfunction(method) else unary


def peer_rpc(method=None, *, allow_client_port: bool = False):
    """Wraps an island-to-island method: the caller must present an island certificate of this
    archipelago (mutual TLS on the peer port); ``method(self, request, context, island)``, with
    island "" on the client port when ``allow_client_port``."""
    if method is None:
        return functools.partial(peer_rpc, allow_client_port=allow_client_port)
    name = method.__name__

    def _island(self, context) -> str:
        island = self.gate.grpc_island(context)
        if not island and not allow_client_port:
            raise PermissionDenied(f"{name} is for islands of this archipelago: call the peer port with the "
                                   f"island's certificate")
        return island

    @functools.wraps(method)
    def unary(self, request, context):
        with _statuses(context, name, None, None):
            return method(self, request, context, _island(self, context))

    @functools.wraps(method)
    def streaming(self, request, context):
        with _statuses(context, name, None, None):
            yield from method(self, request, context, _island(self, context))

    return streaming if inspect.isgeneratorfunction(method) else unary
