"""The client-facing RPCs of identity and access: tokens, who-am-I, dataset readers, audit.
Translation only; the rules are in ``metacatalog.access`` and ``island.security.tokens``."""

from __future__ import annotations

import re

import grpc

from archipel.errors import FailedPrecondition, InvalidArgument, NotFound, error_for_code
from archipel.names import check_dataset_name
from archipel.v1 import island_pb2 as pb
from island.convert import dataset_to_pb
from island.rpc import Call, rpc
from island.security import tokens
from island.security.gate import bearer_metadata
from metacatalog import access

__all__ = ["IdentityRpcs"]

_TOKEN_ID = re.compile(r"^[0-9a-f]{1,64}$")


def _token_pb(rec: dict, token: str = "") -> pb.TokenInfo:
    return pb.TokenInfo(id=rec["id"], user=rec["user"], groups=rec.get("groups", []), rights=rec.get("rights", []),
                        admin=bool(rec.get("admin")), issued=float(rec.get("issued", 0)),
                        expires=float(rec.get("expires", 0)), issuer=rec.get("issuer", ""),
                        revoked_by=rec.get("revoked_by", ""), revoked_at=float(rec.get("revoked_at", 0)), token=token)


class IdentityRpcs:
    """Mixed into IslandServicer (which provides cfg, store, gate, audit, archipelago)."""

    @rpc
    def WhoAmI(self, request, context, call: Call):
        c = call.caller
        return pb.Identity(user=c.user, groups=sorted(c.groups), rights=sorted(c.rights), admin=c.admin,
                           token_id=c.token_id, anonymous=c.anonymous, island=self.cfg.island.name)

    @rpc
    def CreateToken(self, request, context, call: Call):
        access.check_admin(call.caller, "making tokens")
        if request.expires_seconds < 0:
            raise InvalidArgument("expires_seconds must not be negative (0: never)")
        token, claims = tokens.mint(self.gate.creds, request.user, list(request.groups), list(request.rights),
                                    request.admin, tokens.parse_duration(request.expires_seconds))
        with self.store.transaction() as w:
            w.put_token(claims.record())
        call.detail = f"token {claims.id} for {claims.user}"
        return _token_pb(claims.record(), token)

    @rpc
    def ListTokens(self, request, context, call: Call):
        access.check_admin(call.caller, "listing tokens")
        return pb.ListTokensResponse(tokens=[_token_pb(r) for r in self.store.tokens()])

    @rpc
    def RevokeToken(self, request, context, call: Call):
        access.check_admin(call.caller, "revoking tokens")
        if not _TOKEN_ID.match(request.id or ""):
            raise InvalidArgument(f"{request.id[:80]!r} is not a token id (see `archipel tokens list`)")
        if not self.store.has_token(request.id):
            raise NotFound(f"no token {request.id!r} is known on island {self.cfg.island.name}")
        if not self.store.token_revoked(request.id):
            with self.store.transaction() as w:
                w.revoke_token(request.id)
        call.detail = f"token {request.id}"
        rec = next(r for r in self.store.tokens() if r["id"] == request.id)
        return _token_pb(rec)

    @rpc
    def SetAccess(self, request, context, call: Call):
        name = check_dataset_name(request.dataset)
        call.datasets.append(name)
        ds = self.store.dataset(name, with_partitions=False)
        here = self.cfg.island.name
        if ds.origin != here:  # its origin authors its records: the change is made there
            if here in request.route_path or request.route_path:
                raise FailedPrecondition(f"a forwarded access change reached {here}, not {ds.origin}")
            sub = pb.SetAccessRequest()
            sub.CopyFrom(request)
            sub.route_path.append(here)
            stub = self.archipelago.channel(self.archipelago.address_of(ds.origin)).unary_unary(
                "/archipel.v1.Island/SetAccess", request_serializer=pb.SetAccessRequest.SerializeToString,
                response_deserializer=pb.Dataset.FromString)
            try:
                return stub(sub, timeout=30, metadata=bearer_metadata(call.caller))
            except grpc.RpcError as exc:
                code = exc.code().name if exc.code() else "UNKNOWN"
                raise error_for_code(code, f"{ds.origin}: {exc.details() or code}") from None
        access.check_owner(call.caller, name, ds.access, "change the readers of")
        readers = list(ds.readers)
        if request.reader:
            reader = access.parse_reader(request.reader)
            if request.grant and reader not in readers:
                if len(readers) >= 256:
                    raise InvalidArgument(f"{name} has 256 readers already: grant a group instead")
                readers.append(reader)
            elif not request.grant and reader in readers:
                readers.remove(reader)
        public_after = ds.public_after
        if request.public_after:
            public_after = "" if request.public_after == "none" else access.parse_public_after(request.public_after)
        if not request.reader and not request.public_after:
            raise InvalidArgument("name a reader (public, user:NAME or group:NAME) or a public_after date")
        with self._ingest_lock, self.store.transaction() as w:
            w.set_access(name, ds.owner, tuple(readers), public_after)
        call.detail = f"{'grant' if request.grant else 'revoke'} {request.reader}".strip()
        return dataset_to_pb(self.store.dataset(name), here, replicas=self.store.replica_islands(name))

    @rpc
    def GetAudit(self, request, context, call: Call):
        user = request.user
        if not call.caller.admin:
            if user and user != call.caller.name:
                raise access.PermissionDenied(f"{call.caller.name} may read only their own audit entries")
            user = call.caller.name
        limit = min(request.limit or 1000, 100_000)
        return pb.GetAuditResponse(entries=[pb.AuditEntry(**e) for e in self.audit.entries(user, request.since, limit)])
