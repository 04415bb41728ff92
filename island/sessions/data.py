"""The archipelago's datasets as a session's tables: which files a dataset's view reads here
(copying missing partitions first, as a query with route='replicate' does), and the tables
kept in Spark's memory for every session (``archipel cache-table``).

A dataset's view in a session is ``read.parquet(files)``; when the island keeps part of it in
memory, the view is that cached part (a global temporary view no session can name) united
with the files not cached. Every session that may read the dataset shares the memory.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from archipel.errors import FailedPrecondition, InvalidArgument
from federation.lazy import localize
from federation.planner import QueryPlan, TableScan, plan_query
from island.engines.base import scan_paths
from metacatalog import access
from metacatalog.access import Caller

__all__ = ["DatasetFiles", "CachedTable", "TableCache"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetFiles:
    """What a dataset's view reads here: its files, and the part kept in memory."""

    name: str
    files: tuple[str, ...]
    arrow_schema: bytes
    cached_view: str = ""  # global temporary view of the cached part ("" none)
    cached_files: tuple[str, ...] = ()

    @property
    def key(self) -> tuple:
        return (self.files, self.cached_view)


class DatasetFilesFinder:
    """A dataset's files at this island for ``caller``: held here (origin or replicas), or
    copied here first within ``timeout``."""

    def __init__(self, store, here: str, replication=None) -> None:
        self.store = store
        self.here = here
        self.replication = replication
        self.cache: TableCache | None = None

    def plan(self, caller: Caller, name: str, where: str = "") -> QueryPlan:
        def lookup(n: str, **kw):
            ds = self.store.dataset(n, **kw)
            access.check_read(caller, n, ds.access)
            return ds

        return plan_query(f"SELECT * FROM {name}" + (f" WHERE {where}" if where else ""), lookup, engine="spark")

    def files(self, caller: Caller, name: str, timeout: float, where: str = "") -> tuple[TableScan, list[str]]:
        plan = self.plan(caller, name, where)
        scan = plan.tables[0]
        if scan.dataset.origin == self.here:
            return scan, scan_paths(scan)
        rep = self.replication
        if rep is None:
            raise FailedPrecondition(f"dataset {name} is held by island {scan.dataset.origin}, and this island "
                                     f"copies nothing: open the session there (client.spark(datasets=[{name!r}]))")
        local = localize(plan, self.here, "replicate", rep.held, lambda d: str(rep.mover.replica_root(d)),
                         0).plan.tables[0]
        have = rep.held(name)
        missing = [p for p in local.partitions if p.pid not in have]
        if missing:
            logger.info("session: copying %d partitions of %s here first", len(missing), name)
            rep.fetch([(scan, missing)], time.monotonic() + timeout, threading.Event())
        return local, scan_paths(local)

    def view_files(self, caller: Caller, name: str, timeout: float) -> DatasetFiles:
        scan, files = self.files(caller, name, timeout)
        cached = self.cache.lookup(name, scan) if self.cache is not None else None
        if cached is None:
            return DatasetFiles(name, tuple(files), scan.dataset.arrow_schema)
        rest = tuple(f for f in files if f not in cached.files_set)
        return DatasetFiles(name, rest, scan.dataset.arrow_schema, cached.view, tuple(cached.files))


@dataclass
class CachedTable:
    dataset: str
    view: str  # global temporary view
    files: list[str]
    partitions: dict[str, int]  # pid -> bytes when cached: a change of either drops the cache
    where: str = ""
    created: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    bytes_in_memory: int = 0

    @property
    def files_set(self) -> set[str]:
        return set(self.files)


class TableCache:
    """Tables kept in Spark's memory on this island, shared by every session; at most
    ``cap_bytes`` (the least recently used dropped first), and Spark drops blocks of its own
    under memory pressure (MEMORY_ONLY: a dropped block is read again from its file)."""

    def __init__(self, spark_engine, finder: DatasetFilesFinder, cap_bytes: int) -> None:
        self.spark = spark_engine
        self.finder = finder
        self.cap_bytes = cap_bytes
        self._tables: dict[str, CachedTable] = {}
        self._lock = threading.Lock()

    def lookup(self, name: str, scan: TableScan) -> CachedTable | None:
        with self._lock:
            t = self._tables.get(name)
        if t is None:
            return None
        now = {p.pid: p.num_bytes for p in scan.partitions}
        if any(now.get(pid) != size for pid, size in t.partitions.items()):
            logger.info("cached table %s is stale (its partitions changed): dropped", name)
            self.drop(name)
            return None
        t.last_used = time.time()
        return t

    def add(self, caller: Caller, name: str, where: str, timeout: float) -> CachedTable:
        self.spark.wait_ready(timeout)
        if self.cap_bytes <= 0:
            raise FailedPrecondition("this island keeps no tables in memory ([sessions] cache_bytes = 0)")
        scan, files = self.finder.files(caller, name, timeout, where)
        if not files:
            raise InvalidArgument(f"dataset {name} has no partition here that matches: nothing to cache")
        from pyspark import StorageLevel

        from island.sessions.guard import view_name

        view = "archipel_cache_" + view_name(name).removeprefix("archipel_ds_")
        session = self.spark.session
        self.drop(name)
        df = session.read.parquet(*files)
        df.createOrReplaceGlobalTempView(view)
        session.catalog.cacheTable(f"global_temp.{view}", StorageLevel.MEMORY_ONLY)
        session.table(f"global_temp.{view}").count()  # materialized now, not by the first reader
        table = CachedTable(name, view, list(files), {p.pid: p.num_bytes for p in scan.partitions}, where)
        table.bytes_in_memory = self._memory_of(view)
        with self._lock:
            self._tables[name] = table
        self._enforce_cap(keep=name)
        return table

    def drop(self, name: str) -> bool:
        with self._lock:
            t = self._tables.pop(name, None)
        if t is None:
            return False
        try:
            # The global view stays (uncached): a session's view over it still reads its files.
            self.spark.session.catalog.uncacheTable(f"global_temp.{t.view}")
        except Exception:
            logger.debug("uncache of %s failed", t.view, exc_info=True)
        return True

    def tables(self) -> list[CachedTable]:
        with self._lock:
            tables = list(self._tables.values())
        for t in tables:
            t.bytes_in_memory = self._memory_of(t.view)
        return tables

    def clear(self) -> None:
        for name in list(self._tables):
            self.drop(name)

    def _memory_of(self, view: str) -> int:
        try:
            infos = self.spark.session.sparkContext._jsc.sc().getRDDStorageInfo()
            return sum(int(i.memSize()) for i in infos if view in str(i.name()))
        except Exception:
            return 0

    def _enforce_cap(self, keep: str) -> None:
        with self._lock:
            tables = sorted(self._tables.values(), key=lambda t: t.last_used)
        total = sum(t.bytes_in_memory for t in tables)
        for t in tables:
            if total <= self.cap_bytes:
                break
            if t.dataset == keep and len(tables) > 1:
                continue
            logger.info("cached table %s dropped: the island's [sessions] cache_bytes is reached", t.dataset)
            self.drop(t.dataset)
            total -= t.bytes_in_memory

