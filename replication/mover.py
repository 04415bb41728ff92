"""The island's side of replication: which sources hold a partition, sending copy jobs to the
Celery workers (each partition once), and waiting for them on the catalog's commit signal."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from archipel.errors import DeadlineExceeded, Unavailable
from metacatalog.model import Dataset, Partition
from metacatalog.store import CatalogStore
from metacatalog import transfers
from replication.celery_app import COPY_BATCH_TASK, COPY_TASK, LEAD_SECONDS, queue_name
from replication.layout import replica_path
from replication.transfer import BLOCK_BYTES

__all__ = ["Mover", "partition_url", "order_sources", "REPLICAS_DIR"]

logger = logging.getLogger(__name__)

REPLICAS_DIR = "replicas"


def partition_url(base: str, dataset: str, pid: str) -> str:
    """The URL of a partition file on an island whose data URL base is ``base``."""
    if base.startswith("root://"):
        return f"{base.rstrip('/')}//{dataset}/{pid}"
    return f"{base.rstrip('/')}/{quote(dataset)}/{quote(pid)}"


def order_sources(holders: Iterable[str], origin: str, urls: dict[str, tuple[str, str]], protocols: list[str],
                  down: set[str], here: str) -> list[tuple[str, str]]:
    """(island, base URL) to try, best first: reachable islands before ones known to be down,
    the origin before replicas, then the preferred protocols; this island is never a source."""
    islands = sorted({h for h in holders if h != here}, key=lambda i: (i in down, i != origin, i))
    out = []
    for island in islands:
        http, root = urls.get(island, ("", ""))
        by_protocol = {"http": http, "root": root}
        out.extend((island, by_protocol[p]) for p in protocols if by_protocol.get(p))
    return out


# Files per message the sending thread sends at most (COPY_BATCH_TASK); fewer when a request
# has few files, so that every copy thread of the island gets at least two messages.
SEND_BATCH = 8


@dataclass(frozen=True)
class _Later:
    """The jobs of a request sent after its first file: (holders, URLs, islands down) as read
    when it was made."""

    ds: Dataset
    parts: tuple[Partition, ...]
    protocol: str
    lead: str
    known: tuple[dict, dict, set]


@dataclass(frozen=True)
class Progress:
    files_total: int
    files_done: int
    files_failed: int
    bytes_total: int
    bytes_done: int
    errors: tuple[str, ...]

    @property
    def finished(self) -> bool:
        return self.files_done + self.files_failed >= self.files_total


class Mover:
    """Sends copy jobs for an island and reports their progress."""

    def __init__(self, store: CatalogStore, app, here: str, data_path: Path, protocols: list[str], *,
                 retries: int = 3, block_bytes: int = BLOCK_BYTES, bandwidth: int = 0, fsync: bool = True,
                 down: Callable[[], set[str]] = set, threads: int = 4) -> None:
        self.store = store
        self.app = app
        self.here = here
        self.root = data_path / REPLICAS_DIR
        self.protocols = protocols
        self.retries = retries
        self.block_bytes = block_bytes
        self.bandwidth = bandwidth
        self.fsync = fsync
        self._down = down
        self.threads = max(1, threads)  # copies at once in the island's workers
        self._send_lock = threading.Lock()
        self._outbox: queue.Queue[_Later | None] = queue.Queue()  # jobs the sending thread sends in order
        self._sender: threading.Thread | None = None

    def replica_root(self, dataset: str) -> Path:
        return self.root / dataset

    def warm_up(self) -> None:
        """Pays at start what the first job sent would: Celery's lazy imports (its result
        backend), the broker connection and the queue's declaration (about 30 ms)."""
        try:
            self.app.backend  # noqa: B018 (imported on first use)
            with self.app.producer_or_acquire() as producer:
                producer.maybe_declare(self.app.amqp.queues[queue_name(self.here)])
        except Exception as exc:  # only a warm-up: the first real send reports a broken broker
            logger.info("replication queue warm-up: %s", exc)

    def sources(self, ds: Dataset, pid: str, protocol: str = "",
                _known: tuple[dict, dict, set] | None = None) -> list[tuple[str, str]]:
        replicas, urls, down = _known or (self.store.replica_islands(ds.name), self.store.islands(), self._down())
        holders = [ds.origin, *replicas.get(pid, [])]
        protocols = [protocol] if protocol else self.protocols
        bases = order_sources(holders, ds.origin, urls, protocols, down, self.here)
        return [(island, partition_url(base, ds.name, pid)) for island, base in bases]

    def want(self, ds: Dataset, parts: Iterable[Partition], protocol: str = "") -> list[str]:
        """Asks for the partitions not held here; returns the pids sent to the workers now."""
        held = self.store.valid_replicas(ds.name)
        missing = [p for p in parts if p.pid not in held]
        if not missing:
            return []
        with self._send_lock:
            send = set(transfers.request(self.store, ds.name, [p.pid for p in missing]))
            todo = [p for p in missing if p.pid in send]
            if not todo:
                return []
            # The holders and URLs are read once for the whole request, not for each file.
            known = (self.store.replica_islands(ds.name), self.store.islands(), self._down())
            lead = self._job(ds, todo[0], protocol, known=known)
        # The first job goes now, alone; the sending thread sends the others once it is copied
        # (or after LEAD_SECONDS): the first replica has the machine to itself (sending 63 jobs
        # costs the island about 60 ms of CPU), and the caller (a rule's progress stream)
        # answers meanwhile. Until sent, the others are 'pending' rows, which a restart sends.
        self._post([lead])
        if len(todo) > 1:
            self._outbox_put(_Later(ds, tuple(todo[1:]), protocol, todo[0].pid, known))
        return sorted(send)

    def _job(self, ds: Dataset, part: Partition, protocol: str = "", after: str = "",
             known: tuple[dict, dict, set] | None = None) -> dict:
        """``after``: the first partition of the same request, which the others let copy alone
        for a moment (``replication.celery_app.LEAD_SECONDS``), so the first replica lands at once."""
        return {
            "dataset": ds.name, "pid": part.pid, "size": part.num_bytes, "adler32": part.adler32,
            "final": str(replica_path(self.root, ds.name, part.pid)),
            "sources": self.sources(ds, part.pid, protocol, known),
            "retries": self.retries, "block_bytes": self.block_bytes, "bandwidth": self.bandwidth,
            "fsync": self.fsync, "after": after,
        }

    def _send(self, ds: Dataset, part: Partition, protocol: str = "") -> None:
        self._post([self._job(ds, part, protocol)])

    def _post(self, jobs: list[dict]) -> None:
        with self.app.producer_or_acquire() as producer:
            for job in jobs:
                self.app.send_task(COPY_TASK, args=[job], queue=queue_name(self.here), producer=producer)

    def _outbox_put(self, later: _Later) -> None:
        with self._send_lock:
            if self._sender is None or not self._sender.is_alive():
                self._sender = threading.Thread(target=self._send_outbox, name="replication-sender", daemon=True)
                self._sender.start()
        self._outbox.put(later)

    def _send_outbox(self) -> None:
        while True:
            later = self._outbox.get()
            if later is None:
                return
            try:
                self._wait_lead(later.ds.name, later.lead)
                per = max(1, min(SEND_BATCH, -(-len(later.parts) // (2 * self.threads))))
                with self.app.producer_or_acquire() as producer:
                    for i in range(0, len(later.parts), per):  # the workers start on the first ones
                        jobs = [self._job(later.ds, part, later.protocol, after=later.lead, known=later.known)
                                for part in later.parts[i:i + per]]
                        self.app.send_task(COPY_BATCH_TASK, args=[jobs], queue=queue_name(self.here),
                                           producer=producer)
            except Exception:  # the broker is gone: the rows stay pending, sent again at restart
                logger.exception("sending %d copy jobs failed", len(later.parts))

    def _wait_lead(self, dataset: str, lead: str) -> None:
        """Until the request's first file is copied (or failed), LEAD_SECONDS at most: woken by
        the workers' commits, and looking every 20 ms for workers that cannot wake this island."""
        deadline = time.monotonic() + LEAD_SECONDS
        gen = self.store.generation
        while (left := deadline - time.monotonic()) > 0:
            state = transfers.states(self.store, dataset, [lead]).get(lead)
            if state is None or state.state not in ("pending", "copying"):
                return
            gen = self.store.wait_changed(gen, min(0.02, left))

    def stop(self) -> None:
        """Sends what is waiting in the outbox, then stops the sending thread."""
        sender = self._sender
        if sender is not None and sender.is_alive():
            self._outbox.put(None)
            sender.join(10)

    def resend_unfinished(self) -> int:
        """Sends again every job not finished (after a worker died or the island restarted);
        the claim in the catalog keeps a job that is still running from being copied twice."""
        n = 0
        for dataset, pid in transfers.unfinished(self.store):
            try:
                ds = self.store.dataset(dataset)
            except Exception:
                continue
            part = next((p for p in ds.partitions if p.pid == pid), None)
            if part is not None:
                self._send(ds, part)
                n += 1
        return n

    def progress(self, dataset: str, parts: list[Partition]) -> Progress:
        held = self.store.valid_replicas(dataset)
        st = transfers.states(self.store, dataset, [p.pid for p in parts])
        done = [p for p in parts if p.pid in held]
        failed = [p for p in parts if p.pid not in held and p.pid in st and st[p.pid].state == "failed"]
        moving = sum(st[p.pid].bytes_done for p in parts if p.pid not in held and p.pid in st
                     and st[p.pid].state == "copying")
        return Progress(
            files_total=len(parts), files_done=len(done), files_failed=len(failed),
            bytes_total=sum(p.num_bytes for p in parts), bytes_done=sum(p.num_bytes for p in done) + moving,
            errors=tuple(sorted({f"{p.pid}: {st[p.pid].error}" for p in failed})[:5]),
        )

    def wait(self, dataset: str, parts: list[Partition], deadline: float,
             cancelled: threading.Event | None = None) -> Progress:
        """Blocks until every partition is held here or has failed; raises Unavailable naming
        the failures, DeadlineExceeded at the deadline."""
        gen = self.store.generation
        while True:
            prog = self.progress(dataset, parts)
            if prog.finished:
                if prog.files_failed:
                    raise Unavailable(f"{prog.files_failed} of {prog.files_total} partitions of {dataset} could not "
                                      f"be replicated: {'; '.join(prog.errors)}")
                return prog
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded(f"replicating {dataset}: {prog.files_done} of {prog.files_total} partitions "
                                       f"copied before the deadline")
            if cancelled is not None and cancelled.is_set():
                return prog
            gen = self.store.wait_changed(gen, min(left, 1.0))
