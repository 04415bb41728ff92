"""The island-to-island gRPC servicer: introductions and the catalog change stream. Only
islands of the archipelago get in: the peer port asks for the caller's certificate (mutual
TLS), and each method checks the island it names."""

from __future__ import annotations

import logging
import threading

from archipel.errors import FailedPrecondition, PermissionDenied
from archipel.v1 import peer_pb2 as ppb
from federation.peers import PROTOCOL_VERSION, Archipelago, check_address
from island.rpc import peer_rpc
from island.config import LimitsSection
from island.security.gate import Gate
from island.shares import FairShares
from metacatalog.store import CatalogStore

__all__ = ["PeerServicer"]

logger = logging.getLogger(__name__)


class PeerServicer:
    def __init__(self, store: CatalogStore, archipelago: Archipelago, stopping: threading.Event, gate: Gate,
                 peer_address: str, shares: FairShares | None = None, limits: LimitsSection | None = None) -> None:
        self.store = store
        self.shares = shares or FairShares()
        self.limits = limits or LimitsSection()
        self.archipelago = archipelago
        self.stopping = stopping
        self.gate = gate
        self.peer_address = peer_address

    @peer_rpc(allow_client_port=True)
    def Hello(self, request, context, island: str):
        if request.protocol_version != PROTOCOL_VERSION:
            logger.warning("refused island %r at %r: protocol %s, ours %s", request.island, request.address,
                           request.protocol_version, PROTOCOL_VERSION)
            raise FailedPrecondition(f"island {self.archipelago.island} speaks protocol {PROTOCOL_VERSION}, "
                                     f"not {request.protocol_version}")
        if not island:  # the client port: only where to go, nothing of the archipelago
            return ppb.HelloResponse(island=self.archipelago.island, protocol_version=PROTOCOL_VERSION,
                                     peer_address=self.peer_address)
        if request.island and request.island != island:
            raise PermissionDenied(f"the caller's certificate is island {island}'s, not {request.island}'s")
        if request.address and island != self.archipelago.island:
            try:  # introductions go both ways: follow the caller back
                self.archipelago.learn(check_address(request.address), island)
            except Exception as exc:
                logger.warning("not following %r back: %s", request.address, exc)
        return ppb.HelloResponse(
            island=self.archipelago.island, address=self.archipelago.address, protocol_version=PROTOCOL_VERSION,
            peers=[ppb.PeerAddress(island=i, address=a) for i, a in self.archipelago.known()],
            sequence=self.store.sequence(),
        )

    @peer_rpc
    def WatchCatalog(self, request, context, island: str):
        """Backlog after the follower's cursors, then each commit as it happens: the stream
        waits on the catalog's commit condition, not on a polling interval (the one-second
        timeout only notices a follower that went away). Each change carries its origin's
        signature and certificate, so the follower checks it whoever relays it."""
        if request.island and request.island != island:
            raise PermissionDenied(f"the caller's certificate is island {island}'s, not {request.island}'s")
        cursors = {str(k): int(v) for k, v in request.cursors.items()}
        release = self.shares.take_stream(f"island {island}", self.limits)
        try:
            yield from self._changes(context, island, cursors)
        finally:
            release()

    def _changes(self, context, island: str, cursors: dict[str, int]):
        store = self.store
        certs: dict[str, bytes] = {}
        while context.is_active() and not self.stopping.is_set():
            with store.changed:
                generation = store.generation
            for change in store.changes_after(cursors, skip_origin=island):
                if change.origin not in certs:
                    certs[change.origin] = store.island_cert(change.origin)
                yield ppb.CatalogChange(origin=change.origin, seq=change.seq, op=change.op, key=change.key,
                                        payload_json=change.payload_json, ts=change.ts,
                                        signature=change.signature, origin_cert=certs[change.origin])
                cursors[change.origin] = change.seq
            with store.changed:
                store.changed.wait_for(lambda: store.generation != generation or self.stopping.is_set(),
                                       timeout=1.0)
