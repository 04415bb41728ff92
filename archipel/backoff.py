"""The one backoff policy of Archipel: waits that double from a first delay up to a cap, and
start again from the first after a success. Peer links, workers, subscriptions (island and
client side) and repairs all wait this way."""

from __future__ import annotations

__all__ = ["Backoff"]


class Backoff:
    """``next()`` gives the wait before the next attempt; ``reset()`` after a success."""

    def __init__(self, first: float, cap: float) -> None:
        if not 0 < first <= cap:
            raise ValueError(f"a backoff needs 0 < first ({first}) <= cap ({cap})")
        self.first = first
        self.cap = cap
        self._delay = first

    def next(self) -> float:
        delay = self._delay
        self._delay = min(self.cap, self._delay * 2)
        return delay

    def reset(self, first: float | None = None) -> None:
        """Starts again from the first delay (or from ``first``, once)."""
        self._delay = self.first if first is None else min(first, self.cap)
