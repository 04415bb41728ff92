"""The Celery worker of an island (``celery -A replication.worker worker``), started by the
island as child processes. It learns its island from the environment the island sets:
ARCHIPEL_CATALOG, ARCHIPEL_ISLAND_NAME, ARCHIPEL_QUEUE_DIR, ARCHIPEL_BROKER, ARCHIPEL_WAKEUP."""

from __future__ import annotations

import importlib
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from celery import current_task
from celery.signals import worker_ready

from metacatalog.checksum import file_adler32
from metacatalog.signing import signer_from_key_file
from metacatalog.store import CatalogStore
from metacatalog import transfers
from replication.celery_app import COPY_BATCH_TASK, COPY_TASK, LEAD_SECONDS, make_app
from replication.transfer import (
    BLOCK_BYTES,
    IN_FLIGHT_BYTES,
    ChecksumMismatch,
    SourceFailed,
    copy_verified,
    data_ssl_context,
    fail_fast_xrootd,
    open_url,
    partial_name,
    place,
    staging,
    warm_http,
)
from replication.wakeup import poke
from archipel.backoff import Backoff

__all__ = ["app", "copy_partition", "copy_partitions"]

logger = logging.getLogger("archipel.worker")

fail_fast_xrootd()

# The island always names its queue folder; a bare import (tools, tests) uses the temporary
# folder, never the current directory.
app = make_app(os.environ.get("ARCHIPEL_BROKER", ""),
               os.environ.get("ARCHIPEL_QUEUE_DIR") or str(Path(tempfile.gettempdir()) / "archipel-queue"),
               os.environ.get("ARCHIPEL_ISLAND_NAME", "island"))

_store: CatalogStore | None = None
_store_lock = threading.Lock()
RENEW_EVERY = 1.0  # seconds between lease renewals (and progress updates) of one transfer
HTTP_RENEW_SECONDS = 20.0  # kept HTTP connections are renewed this often (servers keep them 60 s)
# Copies running in this process, by (dataset, pid): a job waiting for its request's first file
# waits on the event when that file copies here (the usual case), instead of asking the catalog.
_copying: dict[tuple[str, str], threading.Event] = {}
_copying_lock = threading.Lock()


def store() -> CatalogStore:
    global _store
    with _store_lock:
        if _store is None:
            key = os.environ.get("ARCHIPEL_DATA_KEY", "")
            signer = signer_from_key_file(key) if key else None  # the island's key: its changes are signed
            _store = CatalogStore(os.environ["ARCHIPEL_CATALOG"], os.environ["ARCHIPEL_ISLAND_NAME"], signer=signer)
        return _store


def _worker_name() -> str:
    req = getattr(current_task, "request", None)
    return getattr(req, "hostname", None) or f"worker@{socket.gethostname()}"


def _file_matches(path: Path, size: int, adler32: int) -> bool:
    if not path.is_file() or path.stat().st_size != size:
        return False
    return file_adler32(path) == (adler32, size)


def _error_key(island: str, exc: SourceFailed, pid: str) -> str:
    return f"checksum mismatch of {pid}" if isinstance(exc, ChecksumMismatch) else "unreachable or unreadable"


def _let_lead_go(st: CatalogStore, dataset: str, lead: str) -> None:
    """Waits up to LEAD_SECONDS while the request's first file is still being copied: on its
    event when a thread of this process copies it, else by asking the catalog every 10 ms."""
    deadline = time.monotonic() + LEAD_SECONDS
    while (left := deadline - time.monotonic()) > 0:
        with _copying_lock:
            event = _copying.get((dataset, lead))
        if event is not None:
            event.wait(left)
            return
        state = transfers.states(st, dataset, [lead]).get(lead)
        if state is None or state.state not in ("pending", "copying"):
            return
        time.sleep(min(0.01, left))


def copy_partition(job: dict[str, Any]) -> str:
    """Copies one partition file from the first source that delivers it intact."""
    st = store()
    dataset, pid = job["dataset"], job["pid"]
    worker = _worker_name()
    if not transfers.claim(st, dataset, pid, worker):
        return "skipped: done or in flight elsewhere"
    done = threading.Event()
    with _copying_lock:
        _copying[(dataset, pid)] = done
    try:
        return _copy_claimed(st, job, worker)
    finally:
        with _copying_lock:
            _copying.pop((dataset, pid), None)
        done.set()


def _copy_claimed(st: CatalogStore, job: dict[str, Any], worker: str) -> str:
    """The copy of a partition this worker has claimed."""
    dataset, pid = job["dataset"], job["pid"]
    wakeup = os.environ.get("ARCHIPEL_WAKEUP", "")
    final = Path(job["final"])
    size, adler32 = int(job["size"]), int(job["adler32"])
    if job.get("after"):
        _let_lead_go(st, dataset, str(job["after"]))
    try:
        if _file_matches(final, size, adler32):  # placed before a crash, not yet recorded
            transfers.complete(st, dataset, pid, size, adler32, "local")
            return "done (already in place)"
        final.parent.mkdir(parents=True, exist_ok=True)
        errors: list[str] = []
        retries = int(job.get("retries", 3))
        backoff = Backoff(1.0, 8.0)  # 1, 2, 4, 8 s between attempts
        for attempt in range(1, retries + 1):
            for island, url in job["sources"]:
                last = [time.monotonic()]

                def progress(done: int, island: str = island) -> None:
                    if time.monotonic() - last[0] >= RENEW_EVERY:
                        last[0] = time.monotonic()
                        transfers.renew(st, dataset, pid, worker, done, island)
                        if wakeup:
                            poke(wakeup)

                tmp = partial_name(final, f"{worker}.{uuid.uuid4().hex[:10]}")
                try:
                    n = copy_verified(url, tmp, size, adler32, block_bytes=int(job.get("block_bytes", BLOCK_BYTES)),
                                      bandwidth=int(job.get("bandwidth", 0)), on_progress=progress,
                                      fsync=bool(job.get("fsync", True)))
                    place(tmp, final, fsync=bool(job.get("fsync", True)))
                    transfers.complete(st, dataset, pid, n, adler32, island)
                    return f"done from {island}"
                except SourceFailed as exc:
                    errors.append(f"{island}: {exc.message}")
                    if transfers.report_error(st, island, _error_key(island, exc, pid)):
                        logger.warning("source %s failed for %s/%s: %s", island, dataset, pid, exc.message)
            if attempt < retries:
                time.sleep(backoff.next())
        transfers.fail(st, dataset, pid, worker, "; ".join(errors[-len(job["sources"]) or None:]) or "no source", retries)
        return "failed"
    finally:
        if wakeup:
            poke(wakeup)


def copy_partitions(jobs: list[dict[str, Any]]) -> str:
    """Copies the files of a batch one after the other (each claimed on its own, so a batch
    sent again after a crash skips those already done)."""
    if not isinstance(jobs, list) or not all(isinstance(j, dict) for j in jobs):
        raise TypeError(f"a batch of copy jobs is a list of objects, not {type(jobs).__name__}")
    return "; ".join(copy_partition(job) for job in jobs)


app.task(name=COPY_TASK, acks_late=True, reject_on_worker_lost=True)(copy_partition)
app.task(name=COPY_BATCH_TASK, acks_late=True, reject_on_worker_lost=True)(copy_partitions)


@worker_ready.connect
def _warm_up(**_: Any) -> None:
    """Pays ahead what a rule's first copy would: the catalog opened, XRootD's library loaded
    and logged in to every island serving root:// (a security handshake of 0.1-0.2 s, kept by
    the client while it is used), one file of each opened once (the first one read too)
    (``_warm_read``), and a TLS connection kept open to every island serving
    http(s):// and to the data port its web face redirects islands to. The first replica then
    costs the time of its bytes. Islands learnt later are warmed up as they appear; logins
    are renewed before XRootD's idle limit (XRD_DATASERVERTTL, 300 s by default), HTTP
    connections before the servers' 60 s."""
    threading.Thread(target=_keep_warm, name="warm-up", daemon=True).start()


def _probe(st: CatalogStore, island: str, base: str) -> str:
    """The URL of one file of ``island`` under ``base`` (its web face or its root:// URL; ""
    when it holds none)."""
    from replication.mover import partition_url

    rows = st.query("SELECT p.dataset, p.pid FROM partitions p JOIN datasets d ON d.name = p.dataset "
                    "WHERE d.origin = ? LIMIT 1", (island,))
    return partition_url(base, rows[0][0], rows[0][1]) if rows else ""


def _warm_read(url: str, first: bool) -> None:
    """Opens ``url`` and closes it; the first time in this process, reads IN_FLIGHT_BYTES of it
    too (dropped): the memory XRootD's threads receive into is then touched, which cost a fresh
    worker's first copy about 20 ms more than the next ones (a page fault per 4 KiB here)."""
    with open_url(url, timeout=3) as src:
        done = 0
        while first and done < IN_FLIGHT_BYTES and (block := src.read(BLOCK_BYTES)):
            done += len(block)


def _keep_warm(check_every: float = 2.0, renew_every: float = 120.0) -> None:
    seen: dict[str, float] = {}
    opened: set[str] = set()  # root:// islands one of whose files was opened (the first also read)
    here = os.environ.get("ARCHIPEL_ISLAND_NAME", "")
    try:
        st = store()
        data_ssl_context()
        staging.warm(int(os.environ.get("ARCHIPEL_WORKER_THREADS", "4")))  # one per copy at once
        from XRootD import client as xrootd
        importlib.import_module("XRootD.client.flags")  # imported by the first copy otherwise
    except Exception as exc:  # only a warm-up: the copies report real failures
        logger.info("warm-up: %s", exc)
        return
    while True:
        try:
            now = time.monotonic()
            for island, (http, root) in st.islands().items():
                if island == here:
                    continue
                if root and now - seen.get(root, -1e9) > renew_every:
                    seen[root] = now
                    xrootd.FileSystem(root).ping(timeout=3)
                probe = _probe(st, island, root) if root and root not in opened else ""
                if probe:  # a fresh worker's first open took 14-16 ms after the log-in, later ones 1-2
                    _warm_read(probe, first=not opened)
                    opened.add(root)
                if http and now - seen.get(http, -1e9) > HTTP_RENEW_SECONDS:
                    probe = _probe(st, island, http)
                    if probe:
                        seen[http] = now
                        warm_http(probe, timeout=3, renew_after=HTTP_RENEW_SECONDS)
        except Exception as exc:
            logger.debug("warm-up: %s", exc)
        time.sleep(check_every)
