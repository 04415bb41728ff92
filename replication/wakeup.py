"""A nudge between processes of one island: a Celery worker that committed to the catalog tells
the island, whose waiters (progress streams, catalog followers) then read the catalog again.
A Unix datagram socket in the island's folder: no network, no polling."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["WakeupListener", "poke"]

logger = logging.getLogger(__name__)


def poke(path: str | Path) -> None:
    """Wakes the island listening at ``path``; silent when it is not listening."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"!", str(path))
    except OSError:
        pass


class WakeupListener:
    """Calls ``on_wake`` for every datagram received at ``path``."""

    def __init__(self, path: str | Path, on_wake: Callable[[], None]) -> None:
        self.path = Path(path)
        self._on_wake = on_wake
        self.path.unlink(missing_ok=True)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.path))
        os.chmod(self.path, 0o600)
        self._thread = threading.Thread(target=self._run, name="wakeup", daemon=True)
        self._stopped = False

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                self._sock.recv(64)
            except OSError:
                return
            if self._stopped:
                return
            try:
                self._on_wake()
            except Exception:
                logger.exception("wake-up handler failed")

    def stop(self) -> None:
        self._stopped = True
        poke(self.path)
        self._thread.join(2)
        self._sock.close()
        self.path.unlink(missing_ok=True)
