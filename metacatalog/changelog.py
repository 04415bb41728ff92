"""The catalog's change log, read side: each island's append-only log of its own changes and
of the peers' it applied, numbered per origin (``seq``) and in commit order here (``pos``, the
subscriptions' cursor). Writes go through ``metacatalog.writer`` inside a transaction."""

from __future__ import annotations

import json
from typing import Any

from metacatalog.model import Change

__all__ = ["ChangeLog"]


def _loads(text: str) -> dict[str, Any]:
    """A recorded payload; {} for a refused change whose payload was not even JSON."""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class ChangeLog:
    """Reads of the change log; mixed into ``CatalogStore`` (``self._conn()``, ``self.island``,
    ``self.signer``, ``self._write_lock``)."""

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
