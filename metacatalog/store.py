"""The metacatalog store: SQLite in WAL mode, one file per island.

Every write goes through ``transaction()`` and appends to the change log, numbered by a
per-origin sequence, in the same SQLite transaction as the records it describes: a reader
never sees a record without its change, nor half of a multi-dataset ingest.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from archipel.errors import NotFound
from metacatalog.changelog import ChangeLog
from metacatalog.model import Dataset, Partition
from metacatalog.schema import SCHEMA_VERSION, init_schema
from metacatalog.writer import Writer

__all__ = ["CatalogStore", "SCHEMA_VERSION"]


_STATS_CHARS = 16 << 20  # the text of the decoded partition statistics kept (their dicts take 3-4 times more)


class CatalogStore(ChangeLog):
    """The island's metacatalog. Thread-safe: one connection per thread, writes serialized."""

    def __init__(self, path: str | Path, island: str, signer=None, max_change_bytes: int = 12 * 1024**2) -> None:
        self.path = Path(path)
        self.island = island
        # A change travels to followers in one message: a larger one is refused when written.
        self.max_change_bytes = max_change_bytes
        # Signs this island's own changes (the island's key): followers accept a change of an
        # origin only with that origin's signature, whoever relays it.
        self.signer = signer
        self._local = threading.local()
        self._write_lock = threading.Lock()
        # Notified after every commit; WatchCatalog streams wait on it (no polling interval).
        self.changed = threading.Condition()
        self.generation = 0  # commits so far, under ``changed``
        # Partitions' column statistics, decoded once per distinct text: every query looks its
        # datasets up, and decoding each partition's JSON was a fifth of a small query's time.
        # The dicts are shared between the Partitions read: never changed in place.
        self._stats: dict[str, dict] = {}
        self._stats_chars = 0
        self._init_schema()

    # -- connections ---------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    def _init_schema(self) -> None:
        init_schema(self._conn(), self.path, self.island)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def transaction(self) -> Iterator[Writer]:
        """A write transaction: everything inside commits together or not at all."""
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield Writer(self, conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        with self.changed:
            self.generation += 1
            self.changed.notify_all()

    def bump(self) -> None:
        """Wakes everything waiting on ``changed``: another process (a Celery worker) committed."""
        with self.changed:
            self.generation += 1
            self.changed.notify_all()

    def wait_changed(self, generation: int, timeout: float | None) -> int:
        """Blocks until a commit after ``generation`` (or the timeout); returns the generation."""
        with self.changed:
            self.changed.wait_for(lambda: self.generation != generation, timeout)
            return self.generation

    # -- reads ---------------------------------------------------------------------------
    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Rows of a read-only statement (the replication layer's views of its own tables)."""
        return self._conn().execute(sql, args).fetchall()

    def meta(self, key: str, default: str = "") -> str:
        row = self._conn().execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self._write_lock:
            self._conn().execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def islands(self) -> dict[str, tuple[str, str]]:
        """Every known island's data URLs: name -> (http base, root base)."""
        return {n: (h, r) for n, h, r in self._conn().execute("SELECT name, http, root FROM islands")}

    def local_files(self, dataset: str | None = None) -> dict[tuple[str, str], int]:
        """This island's replica files: (dataset, pid) -> bytes."""
        sql, args = "SELECT dataset, pid, num_bytes FROM local_files", ()
        if dataset is not None:
            sql, args = sql + " WHERE dataset=?", (dataset,)
        return {(d, p): int(n) for d, p, n in self._conn().execute(sql, args)}

    def local_file_uses(self) -> list[tuple[tuple[str, str], int, float]]:
        """((dataset, pid), bytes, last access) of this island's replica files."""
        return [((d, p), int(n), float(a)) for d, p, n, a in self._conn().execute(
            "SELECT dataset, pid, num_bytes, last_access FROM local_files")]

    def has_partition(self, dataset: str, pid: str) -> bool:
        """Whether the catalog names ``pid`` a partition of ``dataset``."""
        return self._conn().execute("SELECT 1 FROM partitions WHERE dataset=? AND pid=?",
                                    (dataset, pid)).fetchone() is not None

    def valid_replicas(self, dataset: str) -> set[str]:
        """Pids of ``dataset`` held here whose file is the partition the catalog describes now
        (a dataset replaced at its origin makes older copies stale)."""
        return {p for (p,) in self._conn().execute(
            "SELECT f.pid FROM local_files f JOIN partitions p ON p.dataset = f.dataset AND p.pid = f.pid"
            " AND p.adler32 = f.adler32 AND p.num_bytes = f.num_bytes WHERE f.dataset=?", (dataset,))}

    def unannounced(self) -> int:
        """Replica files recorded here that peers have not been told of yet."""
        return int(self._conn().execute("SELECT count(*) FROM unannounced").fetchone()[0])

    def stale_replicas(self) -> list[tuple[str, str]]:
        """Replica files held here that no partition of the catalog matches any more."""
        return [(d, p) for d, p in self._conn().execute(
            "SELECT f.dataset, f.pid FROM local_files f LEFT JOIN partitions p ON p.dataset = f.dataset"
            " AND p.pid = f.pid AND p.adler32 = f.adler32 AND p.num_bytes = f.num_bytes WHERE p.pid IS NULL")]

    def touch(self, dataset: str, pids: Iterable[str]) -> None:
        """Marks replica files as just used (least-recently-used eviction)."""
        now = time.time()
        with self._write_lock:
            self._conn().executemany("UPDATE local_files SET last_access=? WHERE dataset=? AND pid=?",
                                     [(now, dataset, p) for p in pids])

    def write_quietly(self, sql: str, args: tuple = ()) -> int:
        """One statement on this island's own bookkeeping (a subscription's cursor), committed at
        once, waking no one; returns the rows changed."""
        with self._write_lock:
            return self._conn().execute(sql, args).rowcount

    def peers(self) -> list[tuple[str, str]]:
        return [(a, i) for a, i in self._conn().execute("SELECT address, island FROM peers ORDER BY added")]

    def remove_peer(self, address: str, island: str) -> None:
        """Stops following a peer: introductions do not bring it back until it is added again."""
        with self._write_lock:
            conn = self._conn()
            conn.execute("DELETE FROM peers WHERE address=?", (address,))
            conn.execute("INSERT OR REPLACE INTO forgotten_peers VALUES (?, ?, ?)", (address, island, time.time()))

    def forgotten_peers(self) -> tuple[set[str], set[str]]:
        """Addresses and island names of removed peers."""
        rows = self._conn().execute("SELECT address, island FROM forgotten_peers").fetchall()
        return {a for a, _ in rows}, {i for _, i in rows if i}

    def add_peer(self, address: str, island: str = "", explicit: bool = False) -> None:
        with self._write_lock:
            if explicit:
                self._conn().execute("DELETE FROM forgotten_peers WHERE address=? OR (island=? AND island != '')",
                                     (address, island))
            self._conn().execute(
                "INSERT INTO peers VALUES (?, ?, ?) ON CONFLICT(address) DO UPDATE SET"
                " island = CASE WHEN excluded.island != '' THEN excluded.island ELSE peers.island END",
                (address, island, time.time()),
            )

    # -- identity records ----------------------------------------------------------------
    def token_revoked(self, token_id: str) -> bool:
        return self._conn().execute("SELECT 1 FROM revoked_tokens WHERE id=?", (token_id,)).fetchone() is not None

    def tokens(self) -> list[dict[str, Any]]:
        """Every token record of the archipelago known here, with its revocation."""
        out = []
        for record, by, ts in self._conn().execute(
                "SELECT t.record, r.by, r.ts FROM tokens t LEFT JOIN revoked_tokens r ON r.id = t.id"
                " ORDER BY t.created"):
            rec = json.loads(record)
            rec["revoked_by"], rec["revoked_at"] = by or "", float(ts or 0)
            out.append(rec)
        return out

    def has_token(self, token_id: str) -> bool:
        return self._conn().execute("SELECT 1 FROM tokens WHERE id=?", (token_id,)).fetchone() is not None

    def island_cert(self, island: str) -> bytes:
        row = self._conn().execute("SELECT cert FROM island_certs WHERE island=?", (island,)).fetchone()
        return bytes(row[0]) if row else b""

    def keep_island_cert(self, island: str, cert_der: bytes) -> None:
        """An island's certificate, verified by the caller against the CA (relayed changes carry it)."""
        if self.island_cert(island) == cert_der:
            return
        with self._write_lock:
            self._conn().execute("INSERT OR REPLACE INTO island_certs VALUES (?, ?)", (island, cert_der))

    def dataset_names(self, pattern: str = "") -> list[str]:
        names = [r[0] for r in self._conn().execute("SELECT name FROM datasets ORDER BY name")]
        return [n for n in names if not pattern or fnmatchcase(n, pattern)]

    def has_dataset(self, name: str) -> bool:
        return self._conn().execute("SELECT 1 FROM datasets WHERE name=?", (name,)).fetchone() is not None

    def dataset(self, name: str, with_partitions: bool = True) -> Dataset:
        conn = self._conn()
        row = conn.execute(
            "SELECT name, origin, kind, root, arrow_schema, num_rows, num_bytes, ra_column, dec_column,"
            " hats_properties, moc, sky_fraction, created, owner, readers, public_after FROM datasets WHERE name=?",
            (name,),
        ).fetchone()
        if row is None:
            raise NotFound(f"unknown dataset {name!r}")
        parts: tuple[Partition, ...] = ()
        if with_partitions:
            parts = tuple(
                Partition(
                    path=p[0], num_rows=p[1], num_bytes=p[2], adler32=p[3], order=p[4], pixel=p[5],
                    stats=self._decoded_stats(p[6]),
                )
                for p in conn.execute(
                    "SELECT path, num_rows, num_bytes, adler32, norder, npix, stats FROM partitions"
                    " WHERE dataset=? ORDER BY norder, npix, path",
                    (name,),
                )
            )
        return Dataset(
            name=row[0], origin=row[1], kind=row[2], root=row[3], arrow_schema=bytes(row[4]),
            num_rows=row[5], num_bytes=row[6], ra_column=row[7], dec_column=row[8],
            hats_properties=json.loads(row[9]), moc=row[10], sky_fraction=row[11], created=row[12],
            partitions=parts, owner=row[13], readers=tuple(json.loads(row[14])), public_after=row[15],
        )

    def _decoded_stats(self, text: str) -> dict:
        stats = self._stats.get(text)
        if stats is None:
            if self._stats_chars + len(text) > _STATS_CHARS:
                self._stats, self._stats_chars = {}, 0
            stats = self._stats[text] = json.loads(text)
            self._stats_chars += len(text)
        return stats

    def datasets(self, pattern: str = "", with_partitions: bool = False) -> list[Dataset]:
        return [self.dataset(n, with_partitions) for n in self.dataset_names(pattern)]

    def max_order(self, dataset: str) -> int | None:
        """The deepest HEALPix order of a dataset's partitions (None: not partitioned on the sky)."""
        row = self._conn().execute("SELECT MAX(norder) FROM partitions WHERE dataset=?", (dataset,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def partition_counts(self) -> dict[str, int]:
        return dict(self._conn().execute("SELECT dataset, COUNT(*) FROM partitions GROUP BY dataset").fetchall())

    def replica_islands(self, dataset: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for pid, island in self._conn().execute(
            "SELECT pid, island FROM replicas WHERE dataset=? ORDER BY island", (dataset,)
        ):
            out.setdefault(pid, []).append(island)
        return out
