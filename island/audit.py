"""An island's audit log: one JSON line per call in ``DIR/audit.jsonl`` (who, what, on which
datasets, rows and bytes out, and the outcome), appended as calls end."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["AuditLog"]


class AuditLog:
    def __init__(self, path: Path, island: str, enabled: bool = True) -> None:
        self.path = path
        self.island = island
        self.enabled = enabled
        self._lock = threading.Lock()

    def record(self, call, outcome: str) -> None:
        if not self.enabled:
            return
        entry = {"ts": time.time(), "user": call.caller.name, "method": call.method,
                 "datasets": sorted(set(call.datasets)), "rows": int(call.rows), "bytes": int(call.bytes),
                 "outcome": outcome, "detail": call.detail[:300], "island": self.island}
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(line)

    def entries(self, user: str = "", since: float = 0.0, limit: int = 1000) -> list[dict[str, Any]]:
        """The newest ``limit`` entries after ``since``, of ``user`` when given, oldest first."""
        if not self.path.is_file():
            return []
        out: list[dict[str, Any]] = []
        with self._lock, open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if e.get("ts", 0) < since or (user and e.get("user") != user):
                    continue
                out.append(e)
        return out[-limit:] if limit else out
