"""Writes to the catalog inside one transaction (``CatalogStore.transaction()``): every write
of a shared record appends its change to the log, signed by this island, in the same SQLite
transaction; peers' changes are applied (or recorded as refused) here too."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from archipel.errors import AlreadyExists, ArchipelError, NotFound, ResourceExhausted
from metacatalog.model import Change, Dataset, Partition

if TYPE_CHECKING:
    from metacatalog.store import CatalogStore

__all__ = ["Writer", "ANNOUNCE_BYTES"]

ANNOUNCE_BYTES = 64 * 1024  # partition names per replica.put of announce_replicas, at most


def _dataset_payload(ds: Dataset) -> dict[str, Any]:
    d = asdict(ds)
    d["arrow_schema"] = ds.arrow_schema.hex()
    d["partitions"] = [asdict(p) for p in ds.partitions]
    return d


class Writer:  # noqa: D101 - see CatalogStore.transaction
    """Writes inside one transaction; every write appends its change."""

    def __init__(self, store: CatalogStore, conn: sqlite3.Connection) -> None:
        self._store = store
        self._conn = conn

    def _log(self, op: str, key: str, payload: dict[str, Any]) -> int:
        origin = self._store.island
        seq = self._conn.execute(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM changes WHERE origin=?", (origin,)
        ).fetchone()[0]
        text, ts = json.dumps(payload, default=str), time.time()
        if len(text) > self._store.max_change_bytes:
            raise ResourceExhausted(
                f"{op} of {key!r} would be a catalog change of {len(text) / 1024**2:.1f} MiB, over the island's "
                f"limit of {self._store.max_change_bytes / 1024**2:.1f} MiB ([limits] max_change_bytes): "
                f"fewer columns or partitions")
        signer = self._store.signer
        sig = signer(Change(origin, int(seq), op, key, {}, ts, b"", text).signed_bytes()) if signer else b""
        self._conn.execute(
            "INSERT INTO changes (origin, seq, op, key, payload, ts, sig) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (origin, seq, op, key, text, ts, sig),
        )
        return int(seq)

    def put_dataset(self, ds: Dataset, replace: bool = False) -> int:
        exists = self._conn.execute("SELECT 1 FROM datasets WHERE name=?", (ds.name,)).fetchone()
        if exists and not replace:
            raise AlreadyExists(f"dataset {ds.name!r} already exists")
        if exists:
            self._conn.execute("DELETE FROM partitions WHERE dataset=?", (ds.name,))
            self._conn.execute("DELETE FROM datasets WHERE name=?", (ds.name,))
        self._insert_dataset(ds)
        return self._log("dataset.put", ds.name, _dataset_payload(ds))

    def _insert_dataset(self, ds: Dataset) -> None:
        """The dataset's row and its partitions' rows (no change logged)."""
        self._conn.execute(
            "INSERT INTO datasets VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                ds.name, ds.origin, ds.kind, ds.root, ds.arrow_schema, ds.num_rows, ds.num_bytes,
                ds.ra_column, ds.dec_column, json.dumps(ds.hats_properties), ds.moc, ds.sky_fraction,
                ds.created, ds.owner, json.dumps(list(ds.readers)), ds.public_after,
            ),
        )
        self.put_partitions(ds.name, ds.partitions, log=False)

    def put_partitions(self, dataset: str, parts: Iterable[Partition], log: bool = True) -> None:
        rows = [
            (dataset, p.pid, p.order, p.pixel, p.path, p.num_rows, p.num_bytes, p.adler32,
             json.dumps(p.stats, default=str))
            for p in parts
        ]
        self._conn.executemany("INSERT INTO partitions VALUES (?,?,?,?,?,?,?,?,?)", rows)
        if log:
            self._log("partitions.put", dataset, {"partitions": [r[1] for r in rows]})

    def append_partitions(self, name: str, parts: list[Partition]) -> Dataset:
        """New partition files of a dataset this island owns, with its totals and coverage
        brought up to date; one ``dataset.append`` change."""
        from metacatalog.sky import moc_from_pixels

        self.put_partitions(name, parts, log=False)
        pixels = [(o, p) for o, p in self._conn.execute(
            "SELECT norder, npix FROM partitions WHERE dataset=? AND norder IS NOT NULL", (name,))]
        moc, frac = moc_from_pixels(pixels)
        rows, nbytes = self._conn.execute(
            "SELECT COALESCE(SUM(num_rows), 0), COALESCE(SUM(num_bytes), 0) FROM partitions WHERE dataset=?",
            (name,)).fetchone()
        self._conn.execute("UPDATE datasets SET num_rows=?, num_bytes=?, moc=?, sky_fraction=? WHERE name=?",
                           (rows, nbytes, moc, frac, name))
        self._log("dataset.append", name, {"partitions": [asdict(p) for p in parts], "num_rows": rows,
                                            "num_bytes": nbytes, "moc": moc, "sky_fraction": frac})
        return self._store.dataset(name)  # this thread's connection: sees the uncommitted rows

    def apply_or_refuse(self, change: Change, dataset: Dataset | None, refused: str = "") -> str:
        """Records a peer's change (already decided "apply", signed by its origin): applied, or,
        when it was found malformed (``refused``) or contradicts the catalog, recorded with the
        reason and not applied, so that the origin's later changes still follow it. Returns the
        reason it was refused ("" when applied)."""
        if not refused:
            self._conn.execute("SAVEPOINT apply_remote")
            try:
                self._apply(change, dataset)
                self._conn.execute("RELEASE apply_remote")
            except ArchipelError as exc:
                self._conn.execute("ROLLBACK TO apply_remote")
                self._conn.execute("RELEASE apply_remote")
                refused = str(exc) or type(exc).__name__
        self._record(change, refused)
        return refused

    def apply_remote(self, change: Change, dataset: Dataset | None) -> None:
        """Records a peer's change (already decided "apply") and what it says, atomically."""
        self._apply(change, dataset)
        self._record(change, "")

    def _apply(self, change: Change, dataset: Dataset | None) -> None:
        if change.op == "dataset.put":
            row = self._conn.execute("SELECT origin FROM datasets WHERE name=?", (change.key,)).fetchone()
            if row and row[0] != change.origin:
                raise AlreadyExists(f"dataset {change.key!r} belongs to {row[0]!r}, not {change.origin!r}")
            self._conn.execute("DELETE FROM partitions WHERE dataset=?", (change.key,))
            self._conn.execute("DELETE FROM datasets WHERE name=?", (change.key,))
            self._insert_dataset(dataset)
        elif change.op == "dataset.delete":
            self._conn.execute("DELETE FROM partitions WHERE dataset=? AND dataset IN"
                               " (SELECT name FROM datasets WHERE origin=?)", (change.key, change.origin))
            self._conn.execute("DELETE FROM replicas WHERE dataset=? AND dataset IN"
                               " (SELECT name FROM datasets WHERE origin=?)", (change.key, change.origin))
            self._conn.execute("DELETE FROM datasets WHERE name=? AND origin=?", (change.key, change.origin))
        elif change.op == "dataset.append":
            row = self._conn.execute("SELECT origin FROM datasets WHERE name=?", (change.key,)).fetchone()
            if row is None or row[0] != change.origin:
                raise AlreadyExists(f"an append to {change.key!r} came from {change.origin!r}, which does not own it")
            self.put_partitions(change.key, change.payload["parsed_partitions"], log=False)
            p = change.payload
            self._conn.execute("UPDATE datasets SET num_rows=?, num_bytes=?, moc=?, sky_fraction=? WHERE name=?",
                               (int(p["num_rows"]), int(p["num_bytes"]), str(p.get("moc", "")),
                                float(p.get("sky_fraction", 0.0)), change.key))
        elif change.op == "replica.put":
            self._conn.executemany("INSERT OR REPLACE INTO replicas VALUES (?, ?, ?, ?)",
                                   [(change.key, str(p), change.origin, change.ts) for p in change.payload["pids"]])
        elif change.op == "replica.delete":
            self._conn.executemany("DELETE FROM replicas WHERE dataset=? AND pid=? AND island=?",
                                   [(change.key, str(p), change.origin) for p in change.payload["pids"]])
        elif change.op == "island.put":
            self._upsert_island(change.origin, str(change.payload.get("http", "")),
                                str(change.payload.get("root", "")), change.ts)
        elif change.op == "dataset.access":
            p = change.payload
            self._conn.execute("UPDATE datasets SET owner=?, readers=?, public_after=? WHERE name=? AND origin=?",
                               (str(p["owner"]), json.dumps(list(p["readers"])), str(p["public_after"]), change.key,
                                change.origin))
        elif change.op == "token.put":
            self._insert_token(change.payload, change.ts)
        elif change.op == "token.revoke":
            self._conn.execute("INSERT OR IGNORE INTO revoked_tokens VALUES (?, ?, ?)",
                               (change.key, change.origin, change.ts))

    def _record(self, change: Change, refused: str) -> None:
        text = change.payload_json
        if not text:
            payload = {k: v for k, v in change.payload.items() if k != "parsed_partitions"}
            text = json.dumps(payload, default=str)
        self._conn.execute(
            "INSERT INTO changes (origin, seq, op, key, payload, ts, sig, refused) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (change.origin, change.seq, change.op, change.key, text, change.ts, change.signature, refused[:500]),
        )

    def _insert_token(self, record: dict[str, Any], ts: float) -> None:
        self._conn.execute("INSERT OR IGNORE INTO tokens VALUES (?, ?, ?, ?, ?)",
                           (str(record["id"]), str(record["issuer"]), str(record["user"]),
                            json.dumps(record, sort_keys=True), ts))

    def put_token(self, record: dict[str, Any]) -> int:
        """A token made here (its claims, never the token itself)."""
        self._insert_token(record, time.time())
        return self._log("token.put", str(record["id"]), record)

    def revoke_token(self, token_id: str) -> int:
        self._conn.execute("INSERT OR IGNORE INTO revoked_tokens VALUES (?, ?, ?)",
                           (token_id, self._store.island, time.time()))
        return self._log("token.revoke", token_id, {})

    def set_access(self, name: str, owner: str, readers: tuple[str, ...], public_after: str) -> int:
        """New access facts of a dataset this island owns."""
        self._conn.execute("UPDATE datasets SET owner=?, readers=?, public_after=? WHERE name=? AND origin=?",
                           (owner, json.dumps(list(readers)), public_after, name, self._store.island))
        return self._log("dataset.access", name, {"owner": owner, "readers": list(readers),
                                                   "public_after": public_after})

    def execute(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        """A statement on one of the island's own bookkeeping tables (no change logged); for
        the table modules of ``metacatalog`` only."""
        return self._conn.execute(sql, args)

    def executemany(self, sql: str, rows: Iterable[tuple]) -> sqlite3.Cursor:
        return self._conn.executemany(sql, rows)

    def _upsert_island(self, name: str, http: str, root: str, ts: float) -> None:
        self._conn.execute("INSERT INTO islands VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET"
                           " http=excluded.http, root=excluded.root, updated=excluded.updated",
                           (name, http, root, ts))

    def put_island(self, name: str, http: str, root: str) -> int:
        self._upsert_island(name, http, root, time.time())
        return self._log("island.put", name, {"http": http, "root": root})

    def put_replicas(self, dataset: str, pids: list[str], sizes: list[int], adlers: list[int]) -> None:
        """Replica files now held by this island, placed and verified: recorded here at once,
        told to peers by a later ``announce_replicas``."""
        now = time.time()
        island = self._store.island
        self._conn.executemany("INSERT OR REPLACE INTO replicas VALUES (?, ?, ?, ?)",
                               [(dataset, p, island, now) for p in pids])
        self._conn.executemany("INSERT OR REPLACE INTO local_files VALUES (?, ?, ?, ?, ?, ?)",
                               [(dataset, p, n, a, now, now) for p, n, a in zip(pids, sizes, adlers)])
        self._conn.executemany("INSERT OR IGNORE INTO unannounced VALUES (?, ?)", [(dataset, p) for p in pids])

    def announce_replicas(self) -> int:
        """One ``replica.put`` per dataset for the replicas recorded without announcement and
        still held (in changes of at most ANNOUNCE_BYTES of names); returns how many were told."""
        rows = self._conn.execute(
            "SELECT u.dataset, u.pid FROM unannounced u JOIN replicas r ON r.dataset = u.dataset AND r.pid = u.pid"
            " AND r.island = ? ORDER BY u.dataset, u.pid", (self._store.island,)).fetchall()
        self._conn.execute("DELETE FROM unannounced")
        budget = min(ANNOUNCE_BYTES, self._store.max_change_bytes // 2)
        chunk: list[str] = []
        size = 0
        for i, (dataset, pid) in enumerate(rows):
            chunk.append(pid)
            size += len(json.dumps(pid)) + 2
            last = i + 1 == len(rows) or rows[i + 1][0] != dataset
            if last or size >= budget:
                self._log("replica.put", dataset, {"pids": chunk})
                chunk, size = [], 0
        return len(rows)

    def delete_replicas(self, dataset: str, pids: list[str]) -> int:
        island = self._store.island
        self._conn.executemany("DELETE FROM replicas WHERE dataset=? AND pid=? AND island=?",
                               [(dataset, p, island) for p in pids])
        self._conn.executemany("DELETE FROM unannounced WHERE dataset=? AND pid=?", [(dataset, p) for p in pids])
        self._conn.executemany("DELETE FROM local_files WHERE dataset=? AND pid=?", [(dataset, p) for p in pids])
        self._conn.executemany("DELETE FROM transfers WHERE dataset=? AND pid=?", [(dataset, p) for p in pids])
        return self._log("replica.delete", dataset, {"pids": pids})

    def delete_dataset(self, name: str) -> int:
        if not self._conn.execute("SELECT 1 FROM datasets WHERE name=?", (name,)).fetchone():
            raise NotFound(f"unknown dataset {name!r}")
        self._conn.execute("DELETE FROM partitions WHERE dataset=?", (name,))
        self._conn.execute("DELETE FROM replicas WHERE dataset=?", (name,))
        self._conn.execute("DELETE FROM datasets WHERE name=?", (name,))
        return self._log("dataset.delete", name, {})
