"""The replica cache of an island: usage against the quota, and least-recently-used eviction
of replicas copied for queries. Replicas pinned by a rule and the island's own data are never
evicted (own data is not in the cache at all)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from archipel.errors import InvalidArgument
from metacatalog import rule_records
from metacatalog.store import CatalogStore
from replication.layout import replica_path

__all__ = ["CacheUsage", "usage", "pinned", "choose_evictions", "evict"]

logger = logging.getLogger(__name__)

Key = tuple[str, str]


@dataclass(frozen=True)
class CacheUsage:
    quota: int
    used: int
    pinned_bytes: int
    files: int
    pinned_files: int
    per_dataset: dict[str, tuple[int, int]]  # dataset -> (files, bytes)

    @property
    def cached_bytes(self) -> int:
        return self.used - self.pinned_bytes


def pinned(store: CatalogStore, now: float | None = None) -> set[Key]:
    """Partitions an unexpired rule keeps on this island."""
    return rule_records.pinned(store, now)


def usage(store: CatalogStore, quota: int) -> CacheUsage:
    files = [(d, p, n) for (d, p), n in store.local_files().items()]
    pins = pinned(store)
    per: dict[str, tuple[int, int]] = {}
    for d, _, n in files:
        f, b = per.get(d, (0, 0))
        per[d] = (f + 1, b + n)
    return CacheUsage(
        quota=quota, used=sum(r[2] for r in files),
        pinned_bytes=sum(n for d, p, n in files if (d, p) in pins),
        files=len(files), pinned_files=sum(1 for d, p, _ in files if (d, p) in pins), per_dataset=per,
    )


def choose_evictions(files: list[tuple[Key, int, float]], pins: set[Key], quota: int,
                     keep: set[Key] = frozenset()) -> list[Key]:
    """The least recently used unpinned files to drop so that the total fits ``quota``.
    ``files`` are (key, bytes, last access); ``keep`` are files in use right now."""
    total = sum(n for _, n, _ in files)
    out: list[Key] = []
    for key, n, _ in sorted(files, key=lambda f: f[2]):
        if total <= quota:
            break
        if key in pins or key in keep:
            continue
        out.append(key)
        total -= n
    return out


def evict(store: CatalogStore, replicas_root: Path, quota: int, keep: set[Key] = frozenset()) -> list[Key]:
    """Drops LRU cached replicas until the cache fits its quota; the replicas' removal is
    recorded (and announced) before their files go."""
    files = store.local_file_uses()
    victims = choose_evictions(files, pinned(store), quota, keep)
    if not victims:
        return []
    by_dataset: dict[str, list[str]] = {}
    for d, p in victims:
        by_dataset.setdefault(d, []).append(p)
    with store.transaction() as w:
        for d, pids in by_dataset.items():
            w.delete_replicas(d, pids)
    for d, p in victims:
        try:
            replica_path(replicas_root, d, p).unlink(missing_ok=True)
        except InvalidArgument as exc:  # a record no worker could have written: nothing to delete
            logger.warning("not deleting a replica file: %s", exc)
    logger.info("cache over its quota of %d bytes: evicted %d replica files", quota, len(victims))
    return victims
