"""Partition files checked against the catalog's adler32: on the first read after a file's
mtime, size or inode changed (and after each start of the island), and on a schedule for
every file the island holds. A corrupt file is never read: the query is refused with a
message; a corrupt replica is dropped (copied again on demand or by its rule), and a corrupt
file of the island's own dataset is fetched again from an island holding a replica of it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from pathlib import Path

from archipel.backoff import Backoff
from archipel.errors import ArchipelError, DataLoss, InvalidArgument
from federation.planner import TableScan
from metacatalog.checksum import file_adler32
from metacatalog.model import Dataset, Partition
from metacatalog.store import CatalogStore
from replication.layout import replica_path
from replication.transfer import copy_verified, partial_name, place

__all__ = ["Integrity"]

logger = logging.getLogger(__name__)


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size, st.st_ino


class Integrity:
    """Verifies the partition files this island reads; see the module's text."""

    def __init__(self, store: CatalogStore, here: str, replicas: Path, mover, interval: float = 0.0) -> None:
        self.store = store
        self.here = here
        self.replicas = replicas
        self.mover = mover
        self.interval = interval
        self._verified: dict[str, tuple[tuple[int, int, int], int]] = {}  # path -> (stamp, adler32)
        self._lock = threading.Lock()
        self._repairing: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="integrity", daemon=True)
        self.corrupt_found = 0  # files found corrupt since the start (a metric)

    def start(self) -> None:
        if self.interval:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    # -- checks --------------------------------------------------------------------------
    def check_scan(self, scan: TableScan) -> None:
        """Checks every file ``scan`` reads here; DataLoss names the first corrupt one."""
        root = Path(scan.dataset.root)
        for part in scan.partitions:
            self.check(scan.dataset, part, root / part.path)

    def check(self, ds: Dataset, part: Partition, path: Path) -> None:
        key = str(path)
        try:
            stamp = _stamp(path)
        except OSError:
            return  # not here (an evicted replica): the engines say so, or it is copied again
        with self._lock:
            if self._verified.get(key) == (stamp, part.adler32):
                return
        try:
            adler, size = file_adler32(path)
        except OSError as exc:
            raise DataLoss(f"partition {part.pid} of {ds.name} cannot be read on island {self.here}: {exc}") from None
        if size == part.num_bytes and adler == part.adler32:
            with self._lock:
                self._verified[key] = (stamp, part.adler32)
            return
        remedy = self._corrupt(ds, part, path)
        error = DataLoss(f"partition {part.pid} of {ds.name} is corrupt on island {self.here}: {size} bytes with "
                         f"adler32 {adler:08x}, the catalog says {part.num_bytes} bytes with adler32 "
                         f"{part.adler32:08x}; {remedy}")
        logger.error("%s", error)
        raise error

    def sweep(self) -> int:
        """Checks every partition file held here (own datasets and replicas); returns how many
        were found corrupt."""
        found = 0
        for ds in self.store.datasets(with_partitions=True):
            if self._stop.is_set():
                break
            if ds.origin == self.here:
                files = [(p, Path(ds.root) / p.path) for p in ds.partitions]
            else:
                held = self.store.valid_replicas(ds.name)
                files = []
                for p in ds.partitions:
                    if p.pid in held:
                        try:
                            files.append((p, replica_path(self.replicas, ds.name, p.pid)))
                        except InvalidArgument:
                            continue
            for part, path in files:
                try:
                    self.check(ds, part, path)
                except DataLoss:
                    found += 1
        return found

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                t0 = time.monotonic()
                found = self.sweep()
                logger.log(logging.ERROR if found else logging.DEBUG,
                           "verified the island's partition files in %.1f s: %d corrupt", time.monotonic() - t0, found)
            except Exception:
                logger.exception("the scheduled partition check failed")

    # -- what a corrupt file leads to -----------------------------------------------------
    def _corrupt(self, ds: Dataset, part: Partition, path: Path) -> str:
        self.corrupt_found += 1
        with self._lock:
            self._verified.pop(str(path), None)
        # A scan of a replica carries this island as its origin (its files are read here):
        # the catalog says whose the dataset is.
        origin = self.store.dataset(ds.name, with_partitions=False).origin
        if origin != self.here:
            with self.store.transaction() as w:
                w.delete_replicas(ds.name, [part.pid])
            path.unlink(missing_ok=True)
            return "the replica was dropped and is copied again when next needed"
        holders = [i for i in self.store.replica_islands(ds.name).get(part.pid, []) if i != self.here]
        if not holders or self.mover is None:
            return "no other island holds a replica of it: restore the file from a backup"
        with self._lock:
            if str(path) in self._repairing:
                return f"it is being fetched again from {', '.join(sorted(holders))}; try again shortly"
            self._repairing.add(str(path))
        threading.Thread(target=self._repair, args=(ds, part, path), name="integrity-repair", daemon=True).start()
        return f"it is being fetched again from {', '.join(sorted(holders))}; try again shortly"

    def _repair(self, ds: Dataset, part: Partition, path: Path) -> None:
        """Fetches a good copy of an own partition file from an island holding a replica."""
        try:
            errors: list[str] = []
            backoff = Backoff(0.5, 8.0)
            for _attempt in range(6):  # a replica just recorded may not be served yet: retry a while
                errors = []
                for island, url in self.mover.sources(ds, part.pid, "http"):
                    if island == self.here:
                        continue
                    tmp = partial_name(path, f"repair-{uuid.uuid4().hex[:8]}")
                    try:
                        copy_verified(url, tmp, part.num_bytes, part.adler32)
                    except ArchipelError as exc:
                        errors.append(f"{island}: {exc}")
                        continue
                    place(tmp, path)
                    logger.warning("partition %s of %s was corrupt here and was fetched again from %s",
                                   part.pid, ds.name, island)
                    return
                if self._stop.wait(backoff.next()):
                    return
            logger.error("partition %s of %s is corrupt and no replica could be fetched: %s", part.pid, ds.name,
                         "; ".join(errors) or "no source")
        except Exception:
            logger.exception("repairing partition %s of %s failed", part.pid, ds.name)
        finally:
            with self._lock:
                self._repairing.discard(str(path))
