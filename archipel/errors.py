"""The one error hierarchy of Archipel.

Each error inherits the builtin it resembles, carries a stable ``code`` (a gRPC status code
name) and keeps the server's message intact, so a peer's error is raised again on the
caller's side unchanged. This module imports nothing of gRPC: the mapping to status codes
is by name, done at the servicer and client edges.
"""

from __future__ import annotations

__all__ = [
    "ArchipelError",
    "InvalidArgument",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "Unauthenticated",
    "Unavailable",
    "DeadlineExceeded",
    "ResourceExhausted",
    "Cancelled",
    "FailedPrecondition",
    "Internal",
    "DataLoss",
    "error_for_code",
]


class ArchipelError(Exception):
    """Root of every error Archipel raises on purpose."""

    code = "UNKNOWN"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(ArchipelError, ValueError):
    """Bad SQL, a malformed name, a malformed file or config."""

    code = "INVALID_ARGUMENT"


class NotFound(ArchipelError, LookupError):
    """An unknown dataset, query or path."""

    code = "NOT_FOUND"


class AlreadyExists(ArchipelError, ValueError):
    code = "ALREADY_EXISTS"


class PermissionDenied(ArchipelError, PermissionError):
    """An operation the island refuses to run at all (writes, file reads in SQL)."""

    code = "PERMISSION_DENIED"


class Unauthenticated(ArchipelError, PermissionError):
    """No credentials, or credentials that are not valid here (malformed, expired, revoked,
    of another archipelago)."""

    code = "UNAUTHENTICATED"


class Unavailable(ArchipelError, ConnectionError):
    """An island that could not be reached; the message names it."""

    code = "UNAVAILABLE"


class DeadlineExceeded(ArchipelError, TimeoutError):
    code = "DEADLINE_EXCEEDED"


class ResourceExhausted(ArchipelError, RuntimeError):
    """A quota or a configured row/byte limit was reached."""

    code = "RESOURCE_EXHAUSTED"


class Cancelled(ArchipelError, RuntimeError):
    code = "CANCELLED"


class FailedPrecondition(ArchipelError, RuntimeError):
    """The island is not ready for this yet (Spark still starting, for example)."""

    code = "FAILED_PRECONDITION"


class Internal(ArchipelError, RuntimeError):
    code = "INTERNAL"


class DataLoss(ArchipelError, OSError):
    """Bytes that are not what the catalog describes (a checksum or size mismatch)."""

    code = "DATA_LOSS"


_BY_CODE: dict[str, type[ArchipelError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        Unauthenticated,
        Unavailable,
        DeadlineExceeded,
        ResourceExhausted,
        Cancelled,
        FailedPrecondition,
        Internal,
        DataLoss,
    )
}


def error_for_code(code: str, message: str) -> ArchipelError:
    """The exception for a status code name, carrying the server's message."""
    return _BY_CODE.get(code, ArchipelError)(message)
