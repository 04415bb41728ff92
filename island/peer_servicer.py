"""The island-to-island gRPC servicer: introductions and the catalog change stream."""

from __future__ import annotations

import json
import logging
import threading

import grpc

from archipel.v1 import peer_pb2 as ppb
from federation.peers import PROTOCOL_VERSION, Archipelago, check_address
from island.servicer import rpc
from metacatalog.store import CatalogStore

__all__ = ["PeerServicer"]

logger = logging.getLogger(__name__)


class PeerServicer:
    def __init__(self, store: CatalogStore, archipelago: Archipelago, stopping: threading.Event) -> None:
        self.store = store
        self.archipelago = archipelago
        self.stopping = stopping

    @rpc
    def Hello(self, request, context):
        if request.protocol_version != PROTOCOL_VERSION:
            logger.warning("refused island %r at %r: protocol %s, ours %s", request.island, request.address,
                           request.protocol_version, PROTOCOL_VERSION)
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"island {self.archipelago.island} speaks protocol {PROTOCOL_VERSION}, "
                          f"not {request.protocol_version}")
        if request.address and request.island and request.island != self.archipelago.island:
            try:  # introductions go both ways: follow the caller back
                self.archipelago.learn(check_address(request.address), request.island)
            except Exception as exc:
                logger.warning("not following %r back: %s", request.address, exc)
        return ppb.HelloResponse(
            island=self.archipelago.island, address=self.archipelago.address, protocol_version=PROTOCOL_VERSION,
            peers=[ppb.PeerAddress(island=i, address=a) for i, a in self.archipelago.known()],
            sequence=self.store.sequence(),
        )

    @rpc
    def WatchCatalog(self, request, context):
        """Backlog after the follower's cursors, then each commit as it happens: the stream
        waits on the catalog's commit condition, not on a polling interval (the one-second
        timeout only notices a follower that went away)."""
        cursors = {str(k): int(v) for k, v in request.cursors.items()}
        store = self.store
        while context.is_active() and not self.stopping.is_set():
            with store.changed:
                generation = store.generation
            for change in store.changes_after(cursors, skip_origin=request.island):
                yield ppb.CatalogChange(origin=change.origin, seq=change.seq, op=change.op, key=change.key,
                                        payload_json=json.dumps(change.payload, default=str), ts=change.ts)
                cursors[change.origin] = change.seq
            with store.changed:
                store.changed.wait_for(lambda: store.generation != generation or self.stopping.is_set(),
                                       timeout=1.0)
