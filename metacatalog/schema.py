"""The catalog's tables: their layout, its version, and the upgrades of older catalogs (made
in place when an island opens its catalog). Only ``metacatalog`` reads or writes them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from archipel.errors import FailedPrecondition

__all__ = ["SCHEMA_VERSION", "init_schema"]

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
-- Replica files recorded here that peers have not been told of yet: the island's replication
-- pass announces them together (Writer.announce_replicas), so the files of a rule landing one
-- after the other make a few changes for the archipelago to sync, not one each.
CREATE TABLE IF NOT EXISTS unannounced (
    dataset TEXT NOT NULL,
    pid TEXT NOT NULL,
    PRIMARY KEY (dataset, pid)
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


def init_schema(conn: sqlite3.Connection, path: Path, island: str) -> None:
    """Creates the tables of a new catalog, or upgrades an older one in place; refuses a
    catalog of a newer version or of another island."""
    conn.executescript(_SCHEMA)
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if row is None:
        conn.executescript(_CHANGES)
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('island', ?)", (island,))
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
            f"catalog {path} has schema version {row[0]}, this island needs {SCHEMA_VERSION}"
        )
    owner = conn.execute("SELECT value FROM meta WHERE key='island'").fetchone()
    if owner and owner[0] != island:
        raise FailedPrecondition(f"catalog {path} belongs to island {owner[0]!r}, not {island!r}")
