"""The island's Celery worker processes: started with the island, watched by one thread each
(blocked in ``wait()``, no polling), restarted when one dies, with its unfinished jobs handed
back and sent again, and stopped with the island."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["WorkerPool"]

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class WorkerPool:
    island: str
    count: int  # worker processes
    concurrency: int  # transfers per process (threads)
    env: dict[str, str]
    log_dir: Path
    on_death: Callable[[str], None]  # called with the name of a worker that died
    # Whether a worker is copying now: at stop, a busy one is given time to finish (Celery's warm
    # shutdown), an idle one is not waited for (its loop only sees the signal after a 2 s poll).
    busy: Callable[[str], bool] = lambda name: True
    procs: dict[str, subprocess.Popen] = field(default_factory=dict, init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def names(self) -> list[str]:
        return [f"w{i}@{self.island}" for i in range(1, self.count + 1)]

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in self.names():
            self._spawn(name)

    def _spawn(self, name: str) -> None:
        cmd = [sys.executable, "-m", "celery", "-A", "replication.worker", "worker", "--pool", "threads",
               "--concurrency", str(self.concurrency), "--hostname", name, "--loglevel", "INFO",
               "--without-heartbeat", "--without-gossip", "--without-mingle"]
        env = {**os.environ, **self.env}
        log = open(self.log_dir / f"{name.split('@')[0]}.log", "ab")
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # in the island's process group: a killed island takes them along
        log.close()
        with self._lock:
            self.procs[name] = proc
        threading.Thread(target=self._watch, args=(name, proc), name=f"watch-{name}", daemon=True).start()
        logger.info("Celery worker %s started (pid %d)", name, proc.pid)

    def _watch(self, name: str, proc: subprocess.Popen) -> None:
        rc = proc.wait()
        if self._stopping.is_set():
            return
        logger.warning("Celery worker %s (pid %d) exited with %s: restarting it", name, proc.pid, rc)
        time.sleep(0.5)  # a worker that dies at once must not spin
        if self._stopping.is_set():
            return
        self._spawn(name)
        try:
            self.on_death(name)
        except Exception:
            logger.exception("handing back the jobs of %s failed", name)

    def pids(self) -> dict[str, int]:
        with self._lock:
            return {n: p.pid for n, p in self.procs.items() if p.poll() is None}

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            procs = list(self.procs.items())
        for _, p in procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 10
        for name, p in procs:
            while p.poll() is None and time.monotonic() < deadline:
                if not self._busy(name):
                    break  # nothing to finish: its claims and queued jobs are taken up again at the next start
                time.sleep(0.05)
            if p.poll() is None:
                p.kill()
            p.wait(5)

    def _busy(self, name: str) -> bool:
        try:
            return self.busy(name)
        except Exception:  # noqa: BLE001 - when in doubt, let it finish
            return True
