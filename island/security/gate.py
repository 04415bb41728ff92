"""The front door's identity check: a gRPC call or an HTTP request becomes a ``Caller``.

Users present a bearer token (``authorization: Bearer ...``); islands present their certificate
(mutual TLS on the peer port and, optionally, on the HTTP data port). Nothing past the gate
looks at metadata or headers: use cases get the ``Caller`` only.
"""

from __future__ import annotations

import ssl
from typing import Any

from cryptography import x509

from archipel.errors import PermissionDenied, Unauthenticated
from federation.pki import IslandCredentials, verify_island_cert
from island.security import tokens
from metacatalog.access import ANONYMOUS, Caller
from metacatalog.store import CatalogStore

__all__ = ["Gate", "bearer_metadata"]

_NEED_TOKEN = ("this island needs a token: pass token=... to archipel.connect, --token to the CLI, or set "
               "$ARCHIPEL_TOKEN (an admin makes one with `archipel tokens create --user NAME`)")


def bearer_metadata(caller: Caller) -> list[tuple[str, str]]:
    """The metadata that carries ``caller`` to another island (which checks the token again)."""
    return [("authorization", f"Bearer {caller.raw_token}")] if caller.raw_token else []


_BENCHMARK = Caller(user="benchmark", admin=True)


class Gate:
    def __init__(self, creds: IslandCredentials, store: CatalogStore, anonymous: str = "none",
                 benchmark_plaintext: bool = False) -> None:
        self.creds = creds
        self.store = store
        self.anonymous = anonymous
        self.benchmark_plaintext = benchmark_plaintext

    # -- users ---------------------------------------------------------------------------
    def caller_from_header(self, header: str | None) -> Caller:
        """The caller of an ``authorization`` header value (None: none was sent)."""
        if header is None or not header.strip():
            if self.anonymous == "read-public":
                return ANONYMOUS
            raise Unauthenticated(_NEED_TOKEN)
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the authorization header must be 'Bearer TOKEN'")
        return self.caller_from_token(token.strip())

    def caller_from_token(self, token: str) -> Caller:
        claims = tokens.verify(self.creds, token, self.store.token_revoked)
        return claims.caller(token)

    def grpc_caller(self, context: Any) -> Caller:
        if self.benchmark_plaintext and context.auth_context().get("transport_security_type") != [b"ssl"]:
            return _BENCHMARK  # the benchmark plaintext port (configured, 127.0.0.1 only)
        headers = [v for k, v in (context.invocation_metadata() or ()) if k == "authorization"]
        if len(headers) > 1:
            raise Unauthenticated("more than one authorization header")
        return self.caller_from_header(headers[0] if headers else None)

    # -- islands -------------------------------------------------------------------------
    def grpc_island(self, context: Any) -> str:
        """The island named by the caller's verified certificate ("" when none was presented:
        the call came to the client port)."""
        pems = context.auth_context().get("x509_pem_cert") or []
        if not pems:
            return ""
        return self.island_of_pem(pems[0])

    def island_of_pem(self, pem: bytes) -> str:
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise PermissionDenied("malformed peer certificate") from None
        return verify_island_cert(self.creds.ca, cert)

    def island_of_der(self, der: bytes) -> str:
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            raise PermissionDenied("malformed peer certificate") from None
        return verify_island_cert(self.creds.ca, cert)

    # -- TLS contexts --------------------------------------------------------------------
    def server_ssl(self, cert_path: str, key_path: str) -> ssl.SSLContext:
        """TLS for an HTTP port: the island's certificate (from its files); an island's client
        certificate is asked for and verified when sent (users send a bearer token instead)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert_path, key_path)
        ctx.load_verify_locations(cadata=self.creds.ca_pem.decode())
        ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx
