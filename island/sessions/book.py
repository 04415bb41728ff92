"""The sessions open on this island: whose each is, when it was last used, what it runs.

A session is opened by its first Spark Connect call (its id chosen by the client, a UUID) and
belongs to the caller of that call from then on; it ends when the client releases it, when it
is killed (``archipel sessions kill ID``) or after ``[sessions] idle_seconds`` without a call.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

from archipel.errors import InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from metacatalog.access import Caller

__all__ = ["Session", "SessionBook"]


@dataclass
class Session:
    id: str
    user: str
    created: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    operations: int = 0  # ExecutePlan calls (Spark jobs are counted by Spark itself)
    running: int = 0
    views: dict[str, tuple] = field(default_factory=dict)  # dataset -> the files its view reads
    persisted: int = 0  # DataFrames cached through the session (named archipel_p_<tag>_<n>)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def tag(self) -> str:
        return self.id.replace("-", "")[:12]

    def idle_seconds(self, now: float | None = None) -> float:
        return 0.0 if self.running else (now or time.time()) - self.last_used


def check_session_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument(f"session_id must be a UUID, not {str(value)[:60]!r}") from None


class SessionBook:
    def __init__(self, max_per_user: int = 0) -> None:
        self.max_per_user = max_per_user
        self._sessions: dict[str, Session] = {}
        self._ended: dict[str, float] = {}  # killed or expired ids: not reopened by a late call
        self._lock = threading.Lock()

    def use(self, caller: Caller, session_id: str) -> Session:
        """The caller's session ``session_id``, opened now if new."""
        sid = check_session_id(session_id)
        user = caller.name
        with self._lock:
            s = self._sessions.get(sid)
            if s is None:
                if sid in self._ended:
                    raise NotFound(f"session {sid} has ended (killed or idle too long): open a new one")
                mine = sum(1 for x in self._sessions.values() if x.user == user)
                if self.max_per_user and mine >= self.max_per_user:
                    raise ResourceExhausted(f"{user} already has {mine} sessions open on this island (the limit, "
                                            f"[sessions] max_per_user); stop one (spark.stop() or "
                                            f"`archipel sessions kill ID`)")
                s = self._sessions[sid] = Session(sid, user)
            elif s.user != user:
                raise PermissionDenied(f"session {sid} belongs to another user")
            s.last_used = time.time()
            return s

    def get(self, session_id: str) -> Session | None:
        with self._lock:
            return self._sessions.get(session_id)

    def end(self, session_id: str) -> Session | None:
        with self._lock:
            s = self._sessions.pop(session_id, None)
            if s is not None:
                self._ended[session_id] = time.time()
                if len(self._ended) > 10_000:  # the oldest tombstones go
                    for k in sorted(self._ended, key=self._ended.get)[:5_000]:
                        del self._ended[k]
            return s

    def ended(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._ended

    def sessions(self, caller: Caller | None = None) -> list[Session]:
        with self._lock:
            out = list(self._sessions.values())
        if caller is not None and not caller.admin:
            out = [s for s in out if s.user == caller.name]
        return sorted(out, key=lambda s: s.created)

    def idle(self, idle_seconds: float, now: float | None = None) -> list[Session]:
        now = now or time.time()
        return [s for s in self.sessions() if s.idle_seconds(now) > idle_seconds]
