"""Replication rules (made here or forwarded to the island that will hold the copies), their
progress, and the cache."""

from __future__ import annotations

import time

import grpc

from archipel.errors import FailedPrecondition, InvalidArgument, PermissionDenied, error_for_code
from archipel.names import check_dataset_name
from archipel.v1 import island_pb2 as pb
from federation.rules import Region, RuleState
from island.replication import Replication
from island.rpc import Call, rpc
from island.security.gate import bearer_metadata
from metacatalog import transfers
from replication import cache

PROGRESS_INTERVAL = 0.1  # seconds between two progress messages of a replication job


class ReplicationRpcs:
    """Mixed into ``IslandServicer`` (its ``cfg``, ``store``, ``archipelago``, ... ); methods
    translate messages and call the island's parts."""

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
            # At most a few progress messages a second; the first change after a quiet spell,
            # and the first replica (what a user waits for to start working), at once.
            quiet = time.monotonic() - sent
            if quiet < PROGRESS_INTERVAL and st.progress.files_done:
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
