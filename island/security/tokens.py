"""Bearer tokens of an archipelago: signed by the island that made them, honoured by every
island whose CA signed that island's certificate, and by no other.

A token is ``arch1.<claims>.<signature>`` (base64url): the claims (id, user, groups, rights,
admin, issued and expiry times, issuer island and the issuer's certificate) signed with the
issuer's key (ECDSA P-256). Any island verifies it alone: the certificate against its CA, the
signature against the certificate, the expiry against its clock, the id against the revoked
ids its catalog holds (revocations are catalog records, so they reach every island by sync).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass

from archipel.errors import InvalidArgument, PermissionDenied, Unauthenticated
from archipel.types import TokenInfo, parse_duration
from federation.pki import IslandCredentials, verify_island_der, verify_signature
from metacatalog.access import RIGHTS, Caller, check_user_name

__all__ = ["TokenClaims", "mint", "verify", "parse_duration", "PREFIX"]

PREFIX = "arch1"
MAX_TOKEN_CHARS = 8192


@dataclass(frozen=True)
class TokenClaims(TokenInfo):
    """What a token says (the fields of the client's TokenInfo; revocation is the catalog's,
    not the token's), and the caller it makes."""

    def caller(self, raw: str = "") -> Caller:
        return Caller(user=self.user, groups=frozenset(self.groups), rights=frozenset(self.rights), admin=self.admin,
                      token_id=self.id, raw_token=raw)

    def record(self) -> dict:
        return {"id": self.id, "user": self.user, "groups": list(self.groups), "rights": list(self.rights),
                "admin": self.admin, "issued": self.issued, "expires": self.expires, "issuer": self.issuer}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint(creds: IslandCredentials, user: str, groups: list[str] | tuple[str, ...] = (),
         rights: list[str] | tuple[str, ...] = (), admin: bool = False, expires_in: float = 0.0,
         now: float | None = None) -> tuple[str, TokenClaims]:
    """A new token signed by this island, and its claims."""
    check_user_name(user)
    if len(groups) > 64 or len(rights) > 16:
        raise InvalidArgument("a token holds at most 64 groups and 16 rights")
    for g in groups:
        check_user_name(g)
    bad = [r for r in rights if r not in RIGHTS]
    if bad:
        raise InvalidArgument(f"unknown right {bad[0]!r} (known: {', '.join(RIGHTS)})")
    now = time.time() if now is None else now
    claims = TokenClaims(id=secrets.token_hex(8), user=user, groups=tuple(dict.fromkeys(groups)),
                         rights=tuple(dict.fromkeys(rights)), admin=bool(admin), issued=now,
                         expires=now + expires_in if expires_in else 0.0, issuer=creds.name)
    body = dict(claims.record(), x5c=_b64(creds.cert_der))
    payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    signed = f"{PREFIX}.{payload}"
    return f"{signed}.{_b64(creds.sign(signed.encode()))}", claims


def verify(creds: IslandCredentials, token: str, revoked: "callable[[str], bool]", now: float | None = None,
           leeway: float = 60.0) -> TokenClaims:
    """The claims of a valid token; Unauthenticated saying why not."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise Unauthenticated("the token is empty or too long")
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise Unauthenticated("the token is malformed (not an Archipel token)")
    try:
        body = json.loads(_unb64(parts[1]))
        signature = _unb64(parts[2])
        cert_der = _unb64(body["x5c"])
        claims = TokenClaims(id=str(body["id"]), user=str(body["user"]), groups=tuple(map(str, body["groups"])),
                             rights=tuple(map(str, body["rights"])), admin=bool(body["admin"]),
                             issued=float(body["issued"]), expires=float(body["expires"]), issuer=str(body["issuer"]))
    except (ValueError, KeyError, TypeError):
        raise Unauthenticated("the token is malformed (its claims cannot be read)") from None
    try:
        issuer = verify_island_der(creds.ca, cert_der)
    except PermissionDenied as exc:
        raise Unauthenticated(f"the token was not made in this archipelago: its issuer's {exc}") from None
    if issuer != claims.issuer:
        raise Unauthenticated("the token's issuer does not match its certificate")
    if not verify_signature(cert_der, signature, f"{parts[0]}.{parts[1]}".encode()):
        raise Unauthenticated("the token's signature does not match (altered or forged)")
    now = time.time() if now is None else now
    if claims.expires and now > claims.expires:
        raise Unauthenticated(f"the token {claims.id} of {claims.user} expired at "
                               f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(claims.expires))}")
    if claims.issued > now + leeway:
        raise Unauthenticated("the token is issued in the future (check the clocks)")
    if revoked(claims.id):
        raise Unauthenticated(f"the token {claims.id} of {claims.user} was revoked")
    return claims
