"""The catalog's record of subscriptions on this island: their filter and owner (JSON, read by
``federation.subscriptions``), mode, cursor, pinned position and last error. Owns the
``subscriptions`` table; a cursor moves with a quiet write that wakes no stream."""

from __future__ import annotations

from dataclasses import dataclass

from metacatalog import rule_records
from metacatalog.store import CatalogStore

__all__ = ["SubscriptionRow", "add", "rows", "row", "move_cursor", "ack", "set_pinned", "set_error", "delete",
           "drop_transient", "forget_transient"]

_COLUMNS = "name, spec, mode, cursor, pinned, durable, created, error"


@dataclass(frozen=True)
class SubscriptionRow:
    name: str
    spec: str  # JSON: the filter and its owner
    mode: str
    cursor: int
    pinned: int
    durable: bool
    created: float
    error: str = ""


def _row(r: tuple) -> SubscriptionRow:
    return SubscriptionRow(r[0], r[1], r[2], int(r[3]), int(r[4]), bool(r[5]), float(r[6]), r[7])


def add(store: CatalogStore, sub: SubscriptionRow) -> None:
    with store.transaction() as w:
        w.execute("INSERT INTO subscriptions (name, spec, mode, cursor, pinned, durable, created)"
                  " VALUES (?, ?, ?, ?, ?, ?, ?)",
                  (sub.name, sub.spec, sub.mode, sub.cursor, sub.pinned, int(sub.durable), sub.created))


def rows(store: CatalogStore, mode: str | None = None) -> list[SubscriptionRow]:
    sql = f"SELECT {_COLUMNS} FROM subscriptions"
    return [_row(r) for r in store.query(sql + (" WHERE mode=?" if mode else "") + " ORDER BY created",
                                         (mode,) if mode else ())]


def row(store: CatalogStore, name: str) -> SubscriptionRow | None:
    found = store.query(f"SELECT {_COLUMNS} FROM subscriptions WHERE name=?", (name,))
    return _row(found[0]) if found else None


def move_cursor(store: CatalogStore, name: str, cursor: int) -> None:
    """Sets the cursor (a resumed subscription asked to start elsewhere)."""
    store.write_quietly("UPDATE subscriptions SET cursor=? WHERE name=?", (cursor, name))


def ack(store: CatalogStore, name: str, cursor: int, now: float) -> None:
    """Moves the cursor forward to ``cursor``, never back."""
    store.write_quietly("UPDATE subscriptions SET cursor=?, last_ack=? WHERE name=? AND cursor<?",
                        (cursor, now, name, cursor))


def set_pinned(store: CatalogStore, name: str, pos: int, error: str = "") -> None:
    store.write_quietly("UPDATE subscriptions SET pinned=?, error=? WHERE name=? AND pinned<=?",
                        (pos, error, name, pos))


def set_error(store: CatalogStore, name: str, error: str) -> None:
    store.write_quietly("UPDATE subscriptions SET error=? WHERE name=?", (error[:1000], name))


def delete(store: CatalogStore, name: str, rule_prefix: str) -> None:
    """Drops the subscription and the rules (named ``rule_prefix``...) through which it pins."""
    with store.transaction() as w:
        rule_records.delete_prefixed(w, rule_prefix)
        w.execute("DELETE FROM subscriptions WHERE name=?", (name,))


def drop_transient(store: CatalogStore) -> int:
    """Subscriptions of streams that ended with the island (not durable); returns how many."""
    return store.write_quietly("DELETE FROM subscriptions WHERE durable=0")


def forget_transient(store: CatalogStore, name: str) -> None:
    store.write_quietly("DELETE FROM subscriptions WHERE name=? AND durable=0", (name,))
