"""The client's channel to an island: TLS always, the archipelago's CA to check the island,
and the caller's bearer token on every call. Shared by the synchronous and asyncio clients."""

from __future__ import annotations

import os
from pathlib import Path

import grpc

from archipel.arrowwire import MAX_MESSAGE_BYTES
from archipel.errors import InvalidArgument

__all__ = ["CHANNEL_OPTIONS", "credentials", "resolve_token", "resolve_ca", "open_channel"]

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]


def resolve_token(token: str | None) -> str:
    """The token given, else ``$ARCHIPEL_TOKEN``; "" for none (anonymous)."""
    value = token if token is not None else os.environ.get("ARCHIPEL_TOKEN", "")
    value = (value or "").strip()
    if not value.isprintable() or " " in value:  # every other space is not printable
        raise InvalidArgument("the token holds spaces or control characters: pass it as printed by "
                              "`archipel tokens create`")
    return value


def resolve_ca(ca: str | os.PathLike | None) -> bytes | None:
    """The PEM of the CA file given, else of ``$ARCHIPEL_CA``; None: the system's roots."""
    path = ca if ca is not None else os.environ.get("ARCHIPEL_CA") or None
    if path is None or path == "":
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read the archipelago's CA certificate {path}: {exc.strerror}") from None
    if b"BEGIN CERTIFICATE" not in data:
        raise InvalidArgument(f"{path} is not a PEM certificate (the archipelago's ca.pem)")
    return data


def credentials(token: str | None = None, ca: str | os.PathLike | None = None) -> grpc.ChannelCredentials:
    creds = grpc.ssl_channel_credentials(resolve_ca(ca))
    tok = resolve_token(token)
    if tok:
        creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(tok))
    return creds


def open_channel(address: str, token: str | None = None, ca: str | os.PathLike | None = None,
                 aio: bool = False):
    creds = credentials(token, ca)
    if aio:
        return grpc.aio.secure_channel(address, creds, options=CHANNEL_OPTIONS)
    return grpc.secure_channel(address, creds, options=CHANNEL_OPTIONS)
