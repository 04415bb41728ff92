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
from dataclasses import asdict
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from archipel.errors import AlreadyExists, ArchipelError, FailedPrecondition, NotFound, ResourceExhausted
from metacatalog.model import Change, Dataset, Partition

__all__ = ["CatalogStore", "SCHEMA_VERSION"]

SCHEMA_VERSION = 5
# Version 1 lacked the replication tables, version 2 the subscriptions and the changes' local
# position, version 3 the access facts, tokens and signatures; all upgrade in place on open.
_UPGRADABLE = {1, 2, 3, 4}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT PRIMARY KEY,
    origin TEXT NOT NULL,
    kind TEXT NOT NULL,
    root TEXT NOT NULL,
    arrow_schema BLOB NOT NULL,
    num_rows INTEGER NOT NULL,
    num_bytes INTEGER NOT NULL,
    ra_column TEXT NOT NULL DEFAULT '',
    dec_column TEXT NOT NULL DEFAULT '',
    hats_properties TEXT NOT NULL DEFAULT '{}',
    moc TEXT NOT NULL DEFAULT '',
    sky_fraction REAL NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    readers TEXT NOT NULL DEFAULT '["public"]',
    public_after TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS partitions (
    dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
    pid TEXT NOT NULL,
    norder INTEGER,
    npix INTEGER,
    path TEXT NOT NULL,
    num_rows INTEGER NOT NULL,
    num_bytes INTEGER NOT NULL,
    adler32 INTEGER NOT NULL,
    stats TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (dataset, pid)
);
CREATE INDEX IF NOT EXISTS partitions_pixel ON partitions(dataset, norder, npix);
CREATE TABLE IF NOT EXISTS replicas (
    dataset TEXT NOT NULL,
    pid TEXT NOT NULL,
    island TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (dataset, pid, island)
);
CREATE TABLE IF NOT EXISTS peers (
    address TEXT PRIMARY KEY,
    island TEXT NOT NULL DEFAULT '',
    added REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS forgotten_peers (
    address TEXT PRIMARY KEY,
    island TEXT NOT NULL DEFAULT '',
    removed REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS islands (
    name TEXT PRIMARY KEY,
    http TEXT NOT NULL DEFAULT '',
    root TEXT NOT NULL DEFAULT '',
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS local_files (
    dataset TEXT NOT NULL,
    pid TEXT NOT NULL,
    num_bytes INTEGER NOT NULL,
    adler32 INTEGER NOT NULL,
    created REAL NOT NULL,
    last_access REAL NOT NULL,
    PRIMARY KEY (dataset, pid)
);
CREATE TABLE IF NOT EXISTS rules (
    id TEXT PRIMARY KEY,
    dataset TEXT NOT NULL,
    region TEXT NOT NULL DEFAULT '{}',
    protocol TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    expires REAL NOT NULL DEFAULT 0,
    owner TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS rule_partitions (
    rule TEXT NOT NULL REFERENCES rules(id) ON DELETE CASCADE,
    dataset TEXT NOT NULL,
    pid TEXT NOT NULL,
    PRIMARY KEY (rule, pid)
);
CREATE INDEX IF NOT EXISTS rule_partitions_pid ON rule_partitions(dataset, pid);
CREATE TABLE IF NOT EXISTS transfers (
    dataset TEXT NOT NULL,
    pid TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_by TEXT NOT NULL DEFAULT '',
    lease_until REAL NOT NULL DEFAULT 0,
    source TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    bytes_done INTEGER NOT NULL DEFAULT 0,
    requested REAL NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (dataset, pid)
);
CREATE TABLE IF NOT EXISTS transfer_errors (
    source TEXT NOT NULL,
    message TEXT NOT NULL,
    count INTEGER NOT NULL,
    first REAL NOT NULL,
    last REAL NOT NULL,
    PRIMARY KEY (source, message)
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    issuer TEXT NOT NULL,
    user TEXT NOT NULL,
    record TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS revoked_tokens (
    id TEXT PRIMARY KEY,
    by TEXT NOT NULL,
    ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS island_certs (
    island TEXT PRIMARY KEY,
    cert BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS subscriptions (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    mode TEXT NOT NULL,
    cursor INTEGER NOT NULL DEFAULT 0,
    pinned INTEGER NOT NULL DEFAULT 0,
    durable INTEGER NOT NULL DEFAULT 1,
    created REAL NOT NULL,
    last_ack REAL NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT ''
);
"""

# ``pos`` numbers every change in the order this island committed it (its own and its peers'):
# the cursor of subscriptions. Rows are never deleted, so a position is never reused.
_CHANGES = """
CREATE TABLE IF NOT EXISTS changes (
    pos INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    seq INTEGER NOT NULL,
    op TEXT NOT NULL,
    key TEXT NOT NULL,
    payload TEXT NOT NULL,
    ts REAL NOT NULL,
    sig BLOB NOT NULL DEFAULT x'',
    refused TEXT NOT NULL DEFAULT '',  -- why a peer's change was recorded but not applied
    UNIQUE (origin, seq)
);
"""

_CHANGES_V2_UPGRADE = """
ALTER TABLE changes RENAME TO changes_v2;
""" + _CHANGES + """
INSERT INTO changes (origin, seq, op, key, payload, ts)
    SELECT origin, seq, op, key, payload, ts FROM changes_v2 ORDER BY rowid;
DROP TABLE changes_v2;
"""

_V3_DATASETS = """
ALTER TABLE datasets ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE datasets ADD COLUMN readers TEXT NOT NULL DEFAULT '["public"]';
ALTER TABLE datasets ADD COLUMN public_after TEXT NOT NULL DEFAULT '';
"""


def _loads(text: str) -> dict[str, Any]:
    """A recorded payload; {} for a refused change whose payload was not even JSON."""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _dataset_payload(ds: Dataset) -> dict[str, Any]:
    d = asdict(ds)
    d["arrow_schema"] = ds.arrow_schema.hex()
    d["partitions"] = [asdict(p) for p in ds.partitions]
    return d


class CatalogStore:
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
        conn = self._conn()
        conn.executescript(_SCHEMA)
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            conn.executescript(_CHANGES)
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('island', ?)", (self.island,))
        elif int(row[0]) in _UPGRADABLE:
            columns = {r[1] for r in conn.execute("PRAGMA table_info(changes)")}
            script = _CHANGES if not columns else _CHANGES_V2_UPGRADE if "pos" not in columns else ""
            ds_columns = {r[1] for r in conn.execute("PRAGMA table_info(datasets)")}
            if "owner" not in ds_columns:
                script += _V3_DATASETS
            if "owner" not in {r[1] for r in conn.execute("PRAGMA table_info(rules)")}:
                script += "ALTER TABLE rules ADD COLUMN owner TEXT NOT NULL DEFAULT '';"
            if columns and "pos" in columns and "sig" not in columns:
                script += "ALTER TABLE changes ADD COLUMN sig BLOB NOT NULL DEFAULT x'';"
            if columns and "pos" in columns and "refused" not in columns:
                script += "ALTER TABLE changes ADD COLUMN refused TEXT NOT NULL DEFAULT '';"
            conn.executescript("BEGIN IMMEDIATE;" + script
                               + f"UPDATE meta SET value='{SCHEMA_VERSION}' WHERE key='schema_version'; COMMIT;")
        elif int(row[0]) != SCHEMA_VERSION:
            raise FailedPrecondition(
                f"catalog {self.path} has schema version {row[0]}, this island needs {SCHEMA_VERSION}"
            )
        owner = conn.execute("SELECT value FROM meta WHERE key='island'").fetchone()
        if owner and owner[0] != self.island:
            raise FailedPrecondition(f"catalog {self.path} belongs to island {owner[0]!r}, not {self.island!r}")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def transaction(self) -> Iterator[_Writer]:
        """A write transaction: everything inside commits together or not at all."""
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield _Writer(self, conn)
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

    def sequence(self, origin: str | None = None) -> int:
        row = self._conn().execute(
            "SELECT COALESCE(MAX(seq), 0) FROM changes WHERE origin=?", (origin or self.island,)
        ).fetchone()
        return int(row[0])

    def cursors(self) -> dict[str, int]:
        """Last sequence recorded per origin island (this island's own included)."""
        return {o: int(s) for o, s in self._conn().execute("SELECT origin, MAX(seq) FROM changes GROUP BY origin")}

    def changes_after(self, cursors: dict[str, int], skip_origin: str = "", limit: int = 1000) -> list[Change]:
        """Changes of every origin after the given cursors, in sequence order per origin."""
        out: list[Change] = []
        for origin in sorted(self.cursors()):
            if origin == skip_origin:
                continue
            out.extend(self.changes(origin, cursors.get(origin, 0), limit))
        return out

    def position(self) -> int:
        """The position of the last change committed here (0: none yet)."""
        return int(self._conn().execute("SELECT COALESCE(MAX(pos), 0) FROM changes").fetchone()[0])

    def changes_since(self, pos: int, ops: tuple[str, ...], limit: int = 1000) -> tuple[list[tuple[int, Change]], int]:
        """Changes with one of ``ops`` committed here after position ``pos``, oldest first, and
        the position scanned up to (past changes of other kinds, so a cursor can move on)."""
        conn = self._conn()
        marks = ",".join("?" * len(ops))
        rows = conn.execute(
            f"SELECT pos, origin, seq, op, key, payload, ts FROM changes WHERE pos>? AND op IN ({marks})"
            " AND refused='' ORDER BY pos LIMIT ?", (pos, *ops, limit)).fetchall()
        found = [(int(r[0]), Change(r[1], r[2], r[3], r[4], json.loads(r[5]), r[6])) for r in rows]
        scanned = found[-1][0] if len(found) == limit else self.position()
        return found, max(scanned, pos)

    def change_times_since(self, pos: int, ops: tuple[str, ...]) -> list[tuple[str, float]]:
        """(key, time) of the changes of ``ops`` after position ``pos`` (payloads not read)."""
        marks = ",".join("?" * len(ops))
        return [(k, float(t)) for k, t in self._conn().execute(
            f"SELECT key, ts FROM changes WHERE pos>? AND op IN ({marks}) AND refused=''", (pos, *ops))]

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

    def changes(self, origin: str | None = None, after: int = 0, limit: int = 10_000) -> list[Change]:
        rows = self._conn().execute(
            "SELECT origin, seq, op, key, payload, ts, sig FROM changes WHERE origin=? AND seq>? ORDER BY seq LIMIT ?",
            (origin or self.island, after, limit),
        ).fetchall()
        return [Change(r[0], r[1], r[2], r[3], _loads(r[4]), r[5], bytes(r[6]), r[4]) for r in rows]

    def recorded_change(self, origin: str, seq: int) -> tuple[str, str, str, bytes] | None:
        """(op, key, payload as written, signature) of the change ``origin:seq`` recorded here."""
        row = self._conn().execute("SELECT op, key, payload, sig FROM changes WHERE origin=? AND seq=?",
                                   (origin, seq)).fetchone()
        return None if row is None else (row[0], row[1], row[2], bytes(row[3]))

    def refused_changes(self, limit: int = 100) -> list[tuple[str, int, str, str, str]]:
        """(origin, seq, op, key, reason) of peers' changes recorded but not applied, newest first."""
        return [(o, int(q), op, k, r) for o, q, op, k, r in self._conn().execute(
            "SELECT origin, seq, op, key, refused FROM changes WHERE refused != '' ORDER BY pos DESC LIMIT ?",
            (limit,))]

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

    def sign_own_changes(self) -> int:
        """Signs this island's changes written before it signed them (an upgraded catalog)."""
        if self.signer is None:
            return 0
        rows = self._conn().execute("SELECT pos, origin, seq, op, key, payload, ts FROM changes"
                                    " WHERE origin=? AND length(sig)=0", (self.island,)).fetchall()
        with self._write_lock:
            self._conn().executemany("UPDATE changes SET sig=? WHERE pos=?", [
                (self.signer(Change(r[1], r[2], r[3], r[4], {}, r[6], b"", r[5]).signed_bytes()), r[0]) for r in rows])
        return len(rows)

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
                    stats=json.loads(p[6]),
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


class _Writer:  # noqa: D101 - see CatalogStore.transaction
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

    def put_replicas(self, dataset: str, pids: list[str], sizes: list[int], adlers: list[int]) -> int:
        """Replica files now held by this island, placed and verified."""
        now = time.time()
        island = self._store.island
        self._conn.executemany("INSERT OR REPLACE INTO replicas VALUES (?, ?, ?, ?)",
                               [(dataset, p, island, now) for p in pids])
        self._conn.executemany("INSERT OR REPLACE INTO local_files VALUES (?, ?, ?, ?, ?, ?)",
                               [(dataset, p, n, a, now, now) for p, n, a in zip(pids, sizes, adlers)])
        return self._log("replica.put", dataset, {"pids": pids})

    def delete_replicas(self, dataset: str, pids: list[str]) -> int:
        island = self._store.island
        self._conn.executemany("DELETE FROM replicas WHERE dataset=? AND pid=? AND island=?",
                               [(dataset, p, island) for p in pids])
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
