"""The catalog's record of transfers: the durable state that Celery messages only dispatch.

A partition wanted by any number of queries, rules or subscriptions has one row; only the
request that creates (or revives) the row sends a message, so it is copied once. A worker
claims a row with a lease before copying; a worker that dies leaves a claim the island hands
back (``release_worker``) and sends again, so a job always finishes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from metacatalog.store import CatalogStore

__all__ = ["TransferState", "request", "claim", "renew", "complete", "fail", "report_error", "release_worker", "held_by",
           "unfinished", "states", "summary", "Summary", "recent_errors"]

LEASE_SECONDS = 60.0


@dataclass(frozen=True)
class TransferState:
    dataset: str
    pid: str
    state: str  # "pending", "copying", "done", "failed"
    attempts: int
    bytes_done: int
    source: str
    error: str


def request(store: CatalogStore, dataset: str, pids: list[str]) -> list[str]:
    """Records that ``pids`` of ``dataset`` are wanted here; returns those that need a message
    (new, or failed before and asked for again). Pids already held or in flight need none."""
    now = time.time()
    send = []
    with store.transaction() as w:
        for pid in pids:
            row = w.execute("SELECT state FROM transfers WHERE dataset=? AND pid=?", (dataset, pid)).fetchone()
            if row is None:
                w.execute("INSERT INTO transfers (dataset, pid, state, requested, updated) VALUES (?, ?, 'pending', ?, ?)",
                          (dataset, pid, now, now))
                send.append(pid)
            elif row[0] == "failed" or (row[0] == "done" and not w.execute(
                    "SELECT 1 FROM local_files WHERE dataset=? AND pid=?", (dataset, pid)).fetchone()):
                w.execute("UPDATE transfers SET state='pending', attempts=0, error='', claimed_by='', bytes_done=0,"
                          " updated=? WHERE dataset=? AND pid=?", (now, dataset, pid))
                send.append(pid)
    return send


def claim(store: CatalogStore, dataset: str, pid: str, worker: str) -> bool:
    """Takes the row for ``worker`` unless it is done or another live worker holds it."""
    now = time.time()
    with store.transaction() as w:
        cur = w.execute(
            "UPDATE transfers SET state='copying', claimed_by=?, lease_until=?, updated=? WHERE dataset=? AND pid=?"
            " AND (state='pending' OR (state='copying' AND (lease_until<? OR claimed_by=?)))",
            (worker, now + LEASE_SECONDS, now, dataset, pid, now, worker))
        return cur.rowcount == 1


def renew(store: CatalogStore, dataset: str, pid: str, worker: str, bytes_done: int, source: str) -> None:
    now = time.time()
    with store.transaction() as w:
        w.execute("UPDATE transfers SET lease_until=?, bytes_done=?, source=?, updated=? WHERE dataset=? AND pid=?"
                  " AND claimed_by=?", (now + LEASE_SECONDS, bytes_done, source, now, dataset, pid, worker))


def complete(store: CatalogStore, dataset: str, pid: str, size: int, adler32: int, source: str) -> None:
    """The verified file is in place: the replica is recorded with its row done. Peers hear of
    it from the island's next replication pass, with the others landed meanwhile
    (``Writer.announce_replicas``): one change each would be synced and checked by every peer."""
    with store.transaction() as w:
        w.put_replicas(dataset, [pid], [size], [adler32])
        w.execute("UPDATE transfers SET state='done', bytes_done=?, source=?, error='', claimed_by='', updated=?"
                  " WHERE dataset=? AND pid=?", (size, source, time.time(), dataset, pid))


def fail(store: CatalogStore, dataset: str, pid: str, worker: str, error: str, attempts: int) -> None:
    with store.transaction() as w:
        w.execute("UPDATE transfers SET state='failed', attempts=?, error=?, claimed_by='', updated=?"
                  " WHERE dataset=? AND pid=?", (attempts, error[:2000], time.time(), dataset, pid))


def report_error(store: CatalogStore, source: str, message: str) -> bool:
    """Counts an error of a source; True the first time this error is seen (log it then only)."""
    now = time.time()
    with store.transaction() as w:
        cur = w.execute("UPDATE transfer_errors SET count=count+1, last=? WHERE source=? AND message=?",
                        (now, source, message))
        if cur.rowcount:
            return False
        w.execute("INSERT INTO transfer_errors VALUES (?, ?, 1, ?, ?)", (source, message, now, now))
        return True


def held_by(store: CatalogStore, worker: str) -> int:
    """How many transfers ``worker`` is copying now."""
    return store.query("SELECT count(*) FROM transfers WHERE state='copying' AND claimed_by=?", (worker,))[0][0]


def release_worker(store: CatalogStore, worker: str) -> int:
    """Hands a dead worker's claims back; returns how many."""
    with store.transaction() as w:
        return w.execute("UPDATE transfers SET state='pending', claimed_by='', updated=? WHERE state='copying'"
                         " AND claimed_by=?", (time.time(), worker)).rowcount


def unfinished(store: CatalogStore) -> list[tuple[str, str]]:
    return [(d, p) for d, p in store.query("SELECT dataset, pid FROM transfers WHERE state IN ('pending', 'copying')")]


def states(store: CatalogStore, dataset: str, pids: list[str] | None = None) -> dict[str, TransferState]:
    rows = store.query("SELECT dataset, pid, state, attempts, bytes_done, source, error FROM transfers"
                       " WHERE dataset=?", (dataset,))
    wanted = set(pids) if pids is not None else None
    return {r[1]: TransferState(*r) for r in rows if wanted is None or r[1] in wanted}


@dataclass(frozen=True)
class Summary:
    counts: dict[str, int]  # state -> transfers
    bytes_done: int
    errors: int  # occurrences of reported transfer errors


def summary(store: CatalogStore) -> Summary:
    """Transfers by state, their bytes, and the errors workers reported (for monitoring)."""
    counts = {state: int(n) for state, n in store.query("SELECT state, COUNT(*) FROM transfers GROUP BY state")}
    done = store.query("SELECT COALESCE(SUM(bytes_done), 0) FROM transfers")[0][0]
    errors = store.query("SELECT COALESCE(SUM(count), 0) FROM transfer_errors")[0][0]
    return Summary(counts, int(done), int(errors))


def recent_errors(store: CatalogStore, limit: int = 20) -> list[tuple[str, str, int]]:
    """(source, message, occurrences) of the transfer errors reported last, newest first."""
    return [(src, msg, int(n)) for src, msg, n in store.query(
        "SELECT source, message, count FROM transfer_errors ORDER BY last DESC LIMIT ?", (limit,))]
