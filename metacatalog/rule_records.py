"""The catalog's record of replication rules: a rule (what it keeps, for whom, until when) and
the partitions it pins. The rule engine (``federation.rules``) decides; this module owns the
``rules`` and ``rule_partitions`` tables."""

from __future__ import annotations

import time
from dataclasses import dataclass

from metacatalog.store import CatalogStore

__all__ = ["RuleRow", "add", "pin", "delete", "delete_prefixed", "rows", "pids", "pinned",
           "owner_pinned_bytes", "owner_pids"]


@dataclass(frozen=True)
class RuleRow:
    id: str
    dataset: str
    region: str  # JSON, read by federation.rules.Region
    protocol: str
    created: float
    expires: float  # 0: never
    owner: str = ""


def add(store: CatalogStore, rule: RuleRow, pids: list[str], if_absent: bool = False) -> None:
    """Records ``rule`` and the partitions it pins, in one transaction (``if_absent``: a rule
    of that id already there is kept, the pins added to it)."""
    verb = "INSERT OR IGNORE" if if_absent else "INSERT"
    with store.transaction() as w:
        w.execute(f"{verb} INTO rules (id, dataset, region, protocol, created, expires, owner)"
                  " VALUES (?, ?, ?, ?, ?, ?, ?)",
                  (rule.id, rule.dataset, rule.region, rule.protocol, rule.created, rule.expires, rule.owner))
        w.executemany(f"{verb} INTO rule_partitions VALUES (?, ?, ?)", [(rule.id, rule.dataset, p) for p in pids])


def pin(store: CatalogStore, rule_id: str, dataset: str, pids: list[str]) -> None:
    """Adds partitions to what a rule pins."""
    with store.transaction() as w:
        w.executemany("INSERT OR IGNORE INTO rule_partitions VALUES (?, ?, ?)", [(rule_id, dataset, p) for p in pids])


def delete(store: CatalogStore, rule_id: str) -> None:
    with store.transaction() as w:
        w.execute("DELETE FROM rule_partitions WHERE rule=?", (rule_id,))
        w.execute("DELETE FROM rules WHERE id=?", (rule_id,))


def delete_prefixed(w, prefix: str) -> None:
    """Inside a transaction ``w``: drops every rule whose id starts with ``prefix``."""
    w.execute("DELETE FROM rule_partitions WHERE rule IN (SELECT id FROM rules WHERE id LIKE ?)", (prefix + "%",))
    w.execute("DELETE FROM rules WHERE id LIKE ?", (prefix + "%",))


def rows(store: CatalogStore, rule_id: str | None = None) -> list[RuleRow]:
    sql, args = "SELECT id, dataset, region, protocol, created, expires, owner FROM rules", ()
    if rule_id is not None:
        sql, args = sql + " WHERE id=?", (rule_id,)
    return [RuleRow(*r) for r in store.query(sql + " ORDER BY created", args)]


def pids(store: CatalogStore, rule_id: str) -> set[str]:
    """The partitions a rule pins."""
    return {r[0] for r in store.query("SELECT pid FROM rule_partitions WHERE rule=?", (rule_id,))}


def pinned(store: CatalogStore, now: float | None = None) -> set[tuple[str, str]]:
    """(dataset, pid) of the partitions an unexpired rule keeps on this island."""
    now = time.time() if now is None else now
    return {(d, p) for d, p in store.query(
        "SELECT rp.dataset, rp.pid FROM rule_partitions rp JOIN rules r ON r.id = rp.rule"
        " WHERE r.expires = 0 OR r.expires > ?", (now,))}


def owner_pinned_bytes(store: CatalogStore, owner: str) -> int:
    """Bytes of the partitions ``owner``'s rules pin (held or still to copy)."""
    found = store.query(
        "SELECT COALESCE(SUM(p.num_bytes), 0) FROM (SELECT DISTINCT rp.dataset, rp.pid FROM rule_partitions rp"
        " JOIN rules r ON r.id = rp.rule WHERE r.owner=?) x JOIN partitions p ON p.dataset = x.dataset"
        " AND p.pid = x.pid", (owner,))
    return int(found[0][0])


def owner_pids(store: CatalogStore, owner: str, dataset: str) -> set[str]:
    """The partitions of ``dataset`` that ``owner``'s rules pin."""
    return {p for (p,) in store.query(
        "SELECT rp.pid FROM rule_partitions rp JOIN rules r ON r.id = rp.rule WHERE r.owner=? AND rp.dataset=?",
        (owner, dataset))}
