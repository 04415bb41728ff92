"""Archipel: a federated data mesh for astronomy. ``archipel.connect(addr)`` reaches the whole
archipelago through any island."""

from __future__ import annotations

import os as _os

__version__ = "0.1.0"

# gRPC's C core runs fork handlers around every fork() of a process that uses it (grpcio builds
# them in), though grpcio's Python layer does not support using gRPC in a forked child anyway.
# Islands and jobs fork only to exec (jobs, workers, the Spark JVM); with the handlers on, a
# fork racing gRPC's own threads crashed a job's process in epoll1 ("Check failed:
# next_worker->state == KICKED"). Read when grpc is first imported, hence here; a value the
# caller set is kept.
_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

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
