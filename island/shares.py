"""Fair shares: what each user holds now on this island (queries, subscription streams), and
the refusal that names the limit when a user would hold more than ``[limits]`` allows."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from archipel.errors import ResourceExhausted

__all__ = ["FairShares"]


class FairShares:
    def __init__(self) -> None:
        self._held: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def take(self, user: str, what: str, limit: int, label: str) -> Callable[[], None]:
        """Holds one ``what`` for ``user`` (``limit`` 0: no limit); returns its release, which
        may be called more than once. RESOURCE_EXHAUSTED names ``[limits] what = limit``."""
        key = (user, what)
        with self._lock:
            if limit and self._held[key] >= limit:
                raise ResourceExhausted(f"{user} has {self._held[key]} {label} open: [limits] {what} = {limit}")
            self._held[key] += 1
        released = threading.Event()

        def release() -> None:
            with self._lock:
                if released.is_set():
                    return
                released.set()
                self._held[key] -= 1
                if not self._held[key]:
                    del self._held[key]
        return release

    def take_stream(self, who: str, limits) -> Callable[[], None]:
        """Holds one long-lived stream (a subscription, a peer's catalog stream) for ``who`` (a
        user, or ``island NAME``): at most ``[limits] streams`` on the island, which has threads
        for them beside the short calls' workers, and ``streams_per_caller`` for one caller."""
        island = self.take("this island", "streams", limits.streams, "long-lived streams")
        try:
            mine = self.take(who, "streams_per_caller", limits.streams_per_caller, "long-lived streams")
        except BaseException:
            island()
            raise

        def release() -> None:
            mine()
            island()
        return release

    def held(self, user: str, what: str) -> int:
        with self._lock:
            return self._held[(user, what)]
