"""Subscriptions: the Subscribe stream (events, rows or replicas as they come, acknowledged
by the client), listing and deleting."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pyarrow as pa

from archipel.arrowwire import slices
from archipel.errors import InvalidArgument, NotFound, PermissionDenied
from archipel.v1 import island_pb2 as pb
from federation.subscriptions import StreamCursor, Subscription
from island.engines.base import normalize_batch, normalize_schema
from island.rpc import Call, rpc
from island.subscribe import CHUNK_BYTES, Delivery, RowFilter, deliveries
from metacatalog import transfers


class SubscriptionRpcs:
    """Mixed into ``IslandServicer`` (its ``cfg``, ``store``, ``archipelago``, ... ); methods
    translate messages and call the island's parts."""

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
        cursor = StreamCursor(sub.cursor, sub.cursor)
        client_done = threading.Event()

        def read_acks() -> None:
            try:
                for req in request_iterator:
                    if req.WhichOneof("kind") == "ack" and name not in self._deleted:
                        book.ack(name, cursor.on_ack(req.ack))
            except Exception:  # the stream was cancelled
                pass
            client_done.set()  # the client half-closed (its acks are recorded): end the stream
            self.store.bump()

        def on_idle(pos: int) -> None:
            # Everything delivered is acknowledged and nothing matched since: move on.
            if name not in self._deleted and (moved := cursor.on_idle(pos)) is not None:
                book.ack(name, moved)

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
                cursor.on_delivered(d.match.pos)  # before sending: an ack may come back at once
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
