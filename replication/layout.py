"""Where replica files live: ``<data>/replicas/<dataset>/<partition path>``. Every path that a
worker writes, or that eviction and the stale-replica sweep delete, is made here, from names
checked again (a catalog record may come from a buggy or hostile peer) and proven to stay
inside the replica folder."""

from __future__ import annotations

from pathlib import Path

from archipel.errors import InvalidArgument
from archipel.names import check_dataset_name, check_partition_path

__all__ = ["replica_path"]


def replica_path(root: Path, dataset: str, pid: str) -> Path:
    """The replica file of partition ``pid`` of ``dataset`` under ``root``; InvalidArgument
    when either name could lead outside it."""
    check_dataset_name(dataset)
    check_partition_path(pid)
    folder = (root / dataset).resolve()
    path = folder / pid
    resolved = path.resolve()
    if not resolved.is_relative_to(folder):
        raise InvalidArgument(f"replica {dataset}/{pid} would lie outside {folder} (a symbolic link)")
    return path
