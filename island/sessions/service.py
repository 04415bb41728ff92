"""An island's sessions, cached tables and batch jobs, put together and kept: the idle
sessions ended, everything stopped with the island."""

from __future__ import annotations

import logging
import threading
import uuid

from archipel.errors import NotFound, PermissionDenied
from archipel.v1 import island_pb2 as pb
from island.security import tokens
from island.sessions.book import SessionBook, check_session_id
from island.sessions.data import DatasetFilesFinder, TableCache
from island.sessions.jobs import JobBook
from island.sessions.proxy import ConnectProxy
from metacatalog.access import Caller

__all__ = ["Sessions"]

logger = logging.getLogger(__name__)


class Sessions:
    def __init__(self, cfg, store, spark, gate, archipelago, replication, audit) -> None:
        self.cfg = cfg
        here = cfg.island.name
        self.book = SessionBook(cfg.sessions.max_per_user)
        self.finder = DatasetFilesFinder(store, here, replication)
        self.cache = TableCache(spark, self.finder, cfg.sessions.cache_bytes)
        self.finder.cache = self.cache
        self.proxy = ConnectProxy(gate, store, here, self.finder, self.book, spark, archipelago, audit,
                                  cfg.query.timeout_seconds)
        host, _, port = cfg.address.rpartition(":")
        if host in ("0.0.0.0", "::", "[::]", ""):
            host = "127.0.0.1"

        def mint(job) -> str:
            token, _ = tokens.mint(gate.creds, job.user if not job.user.startswith("island:") else "island",
                                   job.groups, job.rights, job.admin, cfg.jobs.max_seconds + 600)
            return token

        self.jobs = JobBook(cfg.root / "jobs", here, cfg.jobs, f"{host}:{port}", cfg.security_path("ca"), mint)
        self.spark = spark
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def start(self) -> None:
        self.jobs.start()
        self._reaper = threading.Thread(target=self._reap, name="sessions-idle", daemon=True)
        self._reaper.start()

    def stop(self) -> None:
        self._stop.set()
        self.jobs.stop()
        self.proxy.close()

    def _reap(self) -> None:
        every = min(30.0, max(0.5, self.cfg.sessions.idle_seconds / 4))
        while not self._stop.wait(every):
            for s in self.book.idle(self.cfg.sessions.idle_seconds):
                logger.info("session %s of %s idle for %.0f s: ended", s.id, s.user, s.idle_seconds())
                try:
                    self.proxy.kill(s)
                except Exception:  # noqa: BLE001 - the next round tries again
                    logger.warning("ending idle session %s failed", s.id, exc_info=True)

    # -- use cases --------------------------------------------------------------------------
    def open(self, caller: Caller, datasets: list[str]) -> pb.SessionInfo:
        if caller.anonymous:
            raise PermissionDenied("Spark sessions need a token: anonymous callers only read through queries")
        self.spark.wait_ready(self.cfg.query.timeout_seconds)
        s = self.book.use(caller, str(uuid.uuid4()))
        return self._info(s, datasets)

    def _info(self, s, datasets=None) -> pb.SessionInfo:
        return pb.SessionInfo(id=s.id, user=s.user, island=self.cfg.island.name, created=s.created,
                              idle_seconds=s.idle_seconds(), operations=s.operations, running=s.running,
                              memory_bytes=self.proxy.memory_of(s), datasets=sorted(datasets or s.views))

    def infos(self, caller: Caller) -> list[pb.SessionInfo]:
        return [self._info(s) for s in self.book.sessions(caller)]

    def kill(self, caller: Caller, session_id: str) -> pb.SessionInfo:
        sid = check_session_id(session_id)
        s = self.book.get(sid)
        if s is None or (not caller.admin and s.user != caller.name):
            raise NotFound(f"no session {sid} of yours on island {self.cfg.island.name}")
        info = self._info(s)
        self.proxy.kill(s)
        return info
