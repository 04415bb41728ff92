"""Replication from the client's side: the job a ``replicate(...)`` call returns."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from archipel.errors import InvalidArgument
from archipel.names import check_dataset_name
from archipel._rpc import translated
from archipel.types import RuleInfo
from archipel.v1 import island_pb2 as pb

__all__ = ["ReplicationJob", "replicate_request", "set_region"]


def replicate_request(dataset: str, to: str | None, cone: Any, moc: bytes | str | None, lifetime: float | None,
                      protocol: str | None, detach: bool) -> pb.ReplicateRequest:
    req = pb.ReplicateRequest(dataset=check_dataset_name(dataset), to_island=to or "",
                              lifetime_seconds=float(lifetime or 0), protocol=protocol or "", detach=detach)
    set_region(req, cone, moc)
    return req


def set_region(msg: Any, cone: Any, moc: Any) -> None:
    """Fills a request's has_cone/ra/dec/radius or moc fields from a (ra, dec, radius) cone or
    a MOC (mocpy MOC, or FITS/JSON/ASCII bytes or text)."""
    if cone is not None:
        try:
            ra, dec, radius = (float(x) for x in cone)
        except (TypeError, ValueError):
            raise InvalidArgument(f"cone must be (ra, dec, radius) in degrees, not {cone!r}") from None
        msg.has_cone, msg.ra, msg.dec, msg.radius = True, ra, dec, radius
    if moc is not None:
        if cone is not None:
            raise InvalidArgument("give a cone or a MOC, not both")
        if hasattr(moc, "to_string"):  # a mocpy MOC
            moc = moc.to_string(format="ascii")
        msg.moc = moc.encode() if isinstance(moc, str) else bytes(moc)


class ReplicationJob:
    """A rule being carried out. Iterate for progress (a RuleInfo each time files or bytes
    move); ``wait()`` follows it to the end and returns the last state."""

    def __init__(self, stream: Any, address: str) -> None:
        self._stream = stream
        self._address = address
        self.rule: RuleInfo | None = None
        self.elapsed = 0.0
        # The first message arrives once the rule exists: a refused rule raises here, at once.
        self._first: RuleInfo | None = self._next()

    @property
    def rule_id(self) -> str:
        return self.rule.id if self.rule else ""

    def _next(self) -> RuleInfo | None:
        with translated(self._address):
            msg = next(self._stream, None)
        if msg is None:
            return None
        self.rule = RuleInfo.from_pb(msg.rule)
        self.elapsed = msg.elapsed_seconds
        return self.rule

    def __iter__(self) -> Iterator[RuleInfo]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        while (rule := self._next()) is not None:
            yield rule

    def wait(self) -> RuleInfo:
        for _ in self:
            pass
        if self.rule is None:
            raise InvalidArgument("the island sent no progress for this rule")
        return self.rule

    def cancel(self) -> None:
        """Stops following the progress (the rule stays and its copies go on)."""
        self._stream.cancel()
