"""Archipel: a federated data mesh for astronomy. ``archipel.connect(addr)`` reaches the whole
archipelago through any island."""

from __future__ import annotations

__version__ = "0.1.0"

from archipel.client import Client, DatasetInfo, PartitionInfo, QueryResult, connect, default_address
from archipel.errors import (
    AlreadyExists,
    ArchipelError,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "__version__", "connect", "default_address", "Client", "DatasetInfo", "PartitionInfo", "QueryResult",
    "ArchipelError", "InvalidArgument", "NotFound", "AlreadyExists", "PermissionDenied", "Unavailable",
    "DeadlineExceeded", "ResourceExhausted", "Cancelled", "FailedPrecondition", "Internal", "DataLoss",
    "Unauthenticated",
]
