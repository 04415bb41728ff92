"""An island's replication parts wired together: data serving (HTTP here, XRootD as a child),
the Celery workers, the mover, the rules and the cache, and one thread that keeps rules,
exports and the cache in step with the catalog as it changes."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
from collections import Counter
from contextlib import contextmanager

from archipel.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from federation.peers import Archipelago
from federation.rules import RuleBook
from island.config import IslandConfig
from island.dataplane import DataPlane
from island.shortcircuit import ShortCircuit
from island.integrity import Integrity
from island.dataserve import HttpDataServer, free_port, sync_exports
from island.xrootd import XrootdServer, sync_partition_links, update_replica_links, xrootd_client_env
from island.workers import WorkerPool
from metacatalog.model import Partition
from metacatalog.store import CatalogStore
from replication.transfer import DATA_TLS_ENV
from metacatalog import transfers
from replication import cache
from replication.celery_app import make_app
from replication.layout import replica_path
from replication.mover import REPLICAS_DIR, Mover
from replication.wakeup import WakeupListener

__all__ = ["Replication", "worker_environment"]

logger = logging.getLogger(__name__)

STEP_DELAY = 0.2  # seconds the catalog-change pass waits to take a burst of changes at once
ANNOUNCE_WITHIN = 10.0  # seconds between two catalog-change passes at most


def _kept_port(store: CatalogStore, key: str, host: str) -> int:
    """The port chosen for ``key`` at an earlier start if it is free now, else a new one."""
    kept = store.meta(key)
    if kept.isdigit():
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, int(kept)))
                return int(kept)
            except OSError:
                pass
    port = free_port(host)
    store.set_meta(key, str(port))
    return port


def worker_environment(cfg: IslandConfig, secure: bool = True) -> dict[str, str]:
    """The environment of the island's Celery workers: its catalog, queue and wake-up socket,
    and its identity on the data plane (its certificate for HTTPS and XRootD's GSI). Workers
    the island starts get it; ``archipel island worker DIR`` starts one elsewhere with it."""
    r = cfg.replication
    env = {
        "ARCHIPEL_CATALOG": str(cfg.catalog_path), "ARCHIPEL_ISLAND_NAME": cfg.island.name,
        "ARCHIPEL_QUEUE_DIR": str(cfg.root / "queue"), "ARCHIPEL_BROKER": r.broker,
        "ARCHIPEL_WAKEUP": str(cfg.root / "wakeup.sock"), "XRD_CPUSEPGWRTRD": "0",
        "ARCHIPEL_WORKER_THREADS": str(r.concurrency),  # staging buffers made ready at start
        # Every block read (8 MiB) is a fresh buffer, twice (XRootD's, then Python's bytes):
        # glibc maps blocks this large anew and unmaps them when freed, so each one cost 4096
        # page faults and zeroing. Kept on the heap (up to 64 MiB) and not given back, the
        # memory of the last blocks serves the next.
        "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=536870912",
    }
    if secure:
        paths = [cfg.security_path(k) for k in ("ca", "cert", "key")]
        env.update(dict(zip(DATA_TLS_ENV, map(str, paths))))
        if XrootdServer.available():
            env.update(xrootd_client_env(cfg.root, *paths))
    return env


class Replication:
    def __init__(self, cfg: IslandConfig, store: CatalogStore, archipelago: Archipelago, gate=None) -> None:
        r = cfg.replication
        self.cfg = cfg
        self.store = store
        self.here = cfg.island.name
        self.archipelago = archipelago
        self.export = cfg.root / "export"
        self.links = cfg.root / "xrootd-export"  # partition files only, one link each (what XRootD serves)
        self.replicas = cfg.data_path / REPLICAS_DIR
        self.queue_dir = cfg.root / "queue"
        if not r.broker:  # the catalog's unfinished jobs are sent again at start
            shutil.rmtree(self.queue_dir, ignore_errors=True)
        self.app = make_app(r.broker, self.queue_dir, self.here)
        self.mover = Mover(store, self.app, self.here, cfg.data_path, r.protocols, retries=r.retries,
                           block_bytes=r.block_bytes, bandwidth=r.bandwidth_bytes, fsync=r.fsync,
                           down=archipelago.down, threads=max(1, r.workers) * r.concurrency)
        self.rules = RuleBook(store, self.mover, self.here, r.cache_bytes)
        # Ports left to 0 are chosen once and kept (in the catalog), so the data URLs other
        # islands recorded stay valid across restarts.
        host = cfg.island.host
        self.http = HttpDataServer(store, self.export, host, cfg.island.http_port or _kept_port(store, "http_port", host),
                                   gate, (cfg.security_path("cert"), cfg.security_path("key")))
        # The bulk data port: what clients' direct reads fetch from, and other islands' workers
        # (redirected there by the web face's /data/ when they present their certificate).
        self.data = DataPlane(store, self.export, host, cfg.island.data_port or _kept_port(store, "data_port", host),
                              gate, (cfg.security_path("cert"), cfg.security_path("key")))
        # Same-host direct reads: the files' descriptors over an abstract Unix socket.
        self.local = ShortCircuit(self.here) if cfg.island.local_reads else None
        self.xrootd: XrootdServer | None = None
        self.xrootd_error = ""
        if r.xrootd == "on" or (r.xrootd == "auto" and XrootdServer.available()):
            XrootdServer.reclaim(cfg.root / "xrootd")  # before its port is chosen: a killed run's child holds it
            creds = tuple(cfg.security_path(k) for k in ("ca", "cert", "key")) if gate is not None else None
            self.xrootd = XrootdServer(cfg.root, self.links, host, r.xrootd_port or _kept_port(store, "xrootd_port", host),
                                       r.xrootd_user, self.here, creds)
        self.wakeup_path = cfg.root / "wakeup.sock"
        self.wakeup = WakeupListener(self.wakeup_path, store.bump)
        env = worker_environment(cfg, secure=gate is not None)
        if gate is not None:  # the island's identity on the data plane, for it and its workers
            os.environ.update({k: v for k, v in env.items() if k in DATA_TLS_ENV or k.startswith(("X509", "XrdSec"))})
        self.workers = WorkerPool(self.here, r.workers, r.concurrency, env, cfg.root / "logs", self._worker_died,
                                  busy=lambda name: transfers.held_by(store, name) > 0)
        self.integrity = Integrity(store, self.here, self.replicas, self.mover, r.verify_seconds)
        self._in_use: Counter[tuple[str, str]] = Counter()
        self._in_use_lock = threading.Lock()
        # The export tree's links are changed by one pass at a time, each from the catalog as
        # it reads it under this lock: a full pass and an update never undo each other.
        self._links_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep_in_step, name="replication", daemon=True)

    # -- life ----------------------------------------------------------------------------
    def start(self) -> None:
        self.replicas.mkdir(parents=True, exist_ok=True)
        for leftover in self.replicas.rglob(".*.part"):  # a crash mid-copy: never recorded, never visible
            leftover.unlink(missing_ok=True)
        sync_exports(self.store, self.export, self.replicas, self.here)
        if self.xrootd is not None:
            with self._links_lock:
                sync_partition_links(self.store, self.links, self.replicas, self.here)
        self.http.start()
        try:
            self.data.start()
        except FailedPrecondition:
            self.http.stop()
            raise
        self.http.redirect_islands = self.data.base_url
        if self.local is not None:
            self.local.start()
        self.integrity.start()
        root_url = ""
        if self.xrootd is not None:
            try:
                self.xrootd.start()
                root_url = self.xrootd.base_url
            except FailedPrecondition as exc:
                if self.cfg.replication.xrootd == "on":
                    self.http.stop()
                    self.data.stop()
                    if self.local is not None:
                        self.local.stop()
                    raise
                self.xrootd_error = exc.message
                logger.warning("root:// not served: %s", exc.message)
                self.xrootd = None
        self._announce(self.http.base_url, root_url)
        self.wakeup.start()
        self.mover.warm_up()
        for name in self.workers.names():
            transfers.release_worker(self.store, name)
        self.workers.start()
        sent = self.mover.resend_unfinished()
        if sent:
            logger.info("%d unfinished transfers sent again", sent)
        self._thread.start()

    def _announce(self, http: str, root: str) -> None:
        if self.store.islands().get(self.here) != (http, root):
            with self.store.transaction() as w:
                w.put_island(self.here, http, root)

    def stop(self) -> None:
        self._stop.set()
        self.integrity.stop()
        self.store.bump()
        self._thread.join(5)
        self.mover.stop()
        self.workers.stop()
        if self.xrootd is not None:
            self.xrootd.stop()
        self.http.stop()
        self.data.stop()
        if self.local is not None:
            self.local.stop()
        self.wakeup.stop()

    def _worker_died(self, name: str) -> None:
        for leftover in self.replicas.rglob(f".*.{name}.*.part"):  # its unfinished copies, never visible
            leftover.unlink(missing_ok=True)
        released = transfers.release_worker(self.store, name)
        sent = self.mover.resend_unfinished()
        logger.warning("worker %s died: %d claims handed back, %d jobs sent again", name, released, sent)

    # -- catalog changes -----------------------------------------------------------------
    def _keep_in_step(self) -> None:
        gen = -1
        exported: frozenset[str] = frozenset()
        linked: frozenset[tuple[str, str]] | None = None
        while not self._stop.is_set():
            try:
                self.rules.refresh()
                self._drop_orphans()
                # Under the lock a query takes to register the files it will read (``using``):
                # either its files are kept, or their records are gone before it checks for
                # missing ones and copies them again. Never "checked held, then evicted".
                with self._in_use_lock:
                    cache.evict(self.store, self.replicas, self.cfg.replication.cache_bytes, set(self._in_use))
                # This island's own datasets are re-exported when ingest, publish or delete
                # change them (resync_exports); replica datasets appear and go here.
                with self._links_lock:
                    files = frozenset(self.store.local_files())
                    if files != linked and self.xrootd is not None:
                        if linked is None:  # the first pass: every link checked
                            sync_partition_links(self.store, self.links, self.replicas, self.here)
                        else:  # then only what changed (a rule's files landing)
                            update_replica_links(self.links, self.replicas, files - linked, linked - files)
                linked = files
                held = frozenset(d for d, _ in files)
                if held != exported:
                    sync_exports(self.store, self.export, self.replicas, self.here)
                    exported = held
                # Peers hear of the replicas landed since the last pass once they are served.
                if self.store.unannounced():
                    with self.store.transaction() as w:
                        w.announce_replicas()
            except Exception:
                logger.exception("keeping replication in step with the catalog failed")
            # At least every ANNOUNCE_WITHIN seconds: replicas recorded by workers that cannot
            # wake this island (on another host) are announced to peers that late at most.
            wait = min(self.rules.next_expiry() + 0.01, ANNOUNCE_WITHIN)
            gen = self.store.wait_changed(gen if gen >= 0 else self.store.generation, wait)
            # A burst of changes (a rule's copies landing) is handled in one pass.
            self._stop.wait(STEP_DELAY)
            gen = self.store.generation

    def _drop_orphans(self) -> None:
        """Replicas of datasets deleted or changed at their origin go (records, then files)."""
        gone: dict[str, list[str]] = {}
        for d, p in self.store.stale_replicas():
            gone.setdefault(d, []).append(p)
        if not gone:
            return
        with self.store.transaction() as w:
            for d, pids in gone.items():
                w.delete_replicas(d, pids)
        for d, pids in gone.items():
            for p in pids:
                try:
                    replica_path(self.replicas, d, p).unlink(missing_ok=True)
                except InvalidArgument as exc:
                    logger.warning("not deleting a stale replica file: %s", exc)
        logger.info("dropped %d replica files no longer matching their dataset's partitions",
                    sum(map(len, gone.values())))

    def resync_exports(self) -> None:
        sync_exports(self.store, self.export, self.replicas, self.here)
        if self.xrootd is not None:
            with self._links_lock:
                sync_partition_links(self.store, self.links, self.replicas, self.here)

    # -- queries -------------------------------------------------------------------------
    def held(self, dataset: str) -> set[str]:
        return self.store.valid_replicas(dataset)

    @contextmanager
    def using(self, files: list[tuple[str, str]]):
        """Keeps replica files from eviction while a query reads them."""
        with self._in_use_lock:
            self._in_use.update(files)
        try:
            yield
        finally:
            with self._in_use_lock:
                self._in_use.subtract(files)
                self._in_use += Counter()

    def fetch(self, wanted: list[tuple[object, list[Partition]]], deadline: float,
              cancelled: threading.Event | None = None) -> None:
        """Copies a query's missing partitions here and waits for them."""
        need = sum(p.num_bytes for _, parts in wanted for p in parts)
        usage = cache.usage(self.store, self.cfg.replication.cache_bytes)
        if need > usage.quota - usage.pinned_bytes:
            raise ResourceExhausted(
                f"the query needs {need} bytes of partitions copied to {self.here}, more than its cache can hold "
                f"beside pinned replicas ({usage.quota - usage.pinned_bytes} bytes of {usage.quota})")
        for scan, parts in wanted:
            self.mover.want(scan.dataset, parts)
        for scan, parts in wanted:
            self.mover.wait(scan.dataset.name, parts, deadline, cancelled)


