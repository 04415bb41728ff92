"""What the client asks of Spark near the data: sessions (Spark Connect through the island),
tables kept in Spark's memory, and batch jobs (Livy's batches). Mixed into ``archipel.Client``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from archipel._rpc import translated
from archipel.errors import InvalidArgument
from archipel.v1 import island_pb2 as pb

__all__ = ["SparkCalls"]


class SparkCalls:
    """Needs the client's ``_unary``, ``_stub``, ``address``, ``timeout``, ``_token`` and ``_ca``."""

    def spark(self, datasets: list[str] | tuple[str, ...] | None = None, island: str | None = None) -> Any:
        """A ``pyspark.sql.SparkSession`` (Spark Connect) on the island holding ``datasets`` (or
        on ``island``), reached through the island connected to. Every dataset you may read is a
        table under its own name: ``spark.table("gaia.source")``, ``spark.sql("SELECT ...")``.
        Needs ``pip install 'archipel[spark]'``; ``spark.stop()`` ends it."""
        from archipel.channel import credentials
        from archipel.spark import open_session

        if isinstance(datasets, str):
            datasets = [datasets]
        info = self._unary("OpenSession", pb.OpenSessionRequest(datasets=list(datasets or []), island=island or ""),
                           timeout=max(self.timeout or 0, 120))
        return open_session(self.address, credentials(self._token, self._ca), info)

    def sessions(self, island: str | None = None) -> list[dict[str, Any]]:
        """The Spark sessions on an island (yours; every one for admins): id, user, island,
        created, idle_seconds, operations, running, memory_bytes, datasets."""
        from archipel.spark import message_dict

        resp = self._unary("ListSessions", pb.ListSessionsRequest(island=island or ""))
        return [message_dict(s) for s in resp.sessions]

    def kill_session(self, session_id: str, island: str | None = None) -> dict[str, Any]:
        """Ends a session now: its running work interrupted, its cached data freed."""
        from archipel.spark import message_dict

        return message_dict(self._unary("KillSession", pb.KillSessionRequest(id=session_id, island=island or "")))

    def cache_table(self, dataset: str, cone: tuple[float, float, float] | None = None,
                    island: str | None = None) -> dict[str, Any]:
        """Keeps ``dataset`` (the partitions covering ``cone``, else all) in Spark's memory on an
        island, for every session that may read it (admins)."""
        from archipel.spark import message_dict

        text = ",".join(repr(float(x)) for x in cone) if cone is not None else ""
        return message_dict(self._unary("CacheTable", pb.CacheTableRequest(dataset=dataset, cone=text,
                                                                           island=island or ""),
                                        timeout=max(self.timeout or 0, 600)))

    def cached_tables(self, island: str | None = None) -> list[dict[str, Any]]:
        from archipel.spark import message_dict

        resp = self._unary("ListCachedTables", pb.ListCachedTablesRequest(island=island or ""))
        return [message_dict(t) for t in resp.tables]

    def drop_cached_table(self, dataset: str, island: str | None = None) -> dict[str, Any]:
        from archipel.spark import message_dict

        return message_dict(self._unary("DropCachedTable", pb.CacheTableRequest(dataset=dataset, island=island or "")))

    def submit(self, path_or_code: str | os.PathLike, args: list[str] | tuple[str, ...] = (),
               datasets: list[str] | tuple[str, ...] = (), island: str | None = None) -> Any:
        """Runs a PySpark script (a file's path, or its source) as a batch job at the island
        holding ``datasets`` (or ``island``). The script finds ``spark`` (a session like
        ``client.spark()``), ``client`` and ``publish(name, table)`` ready; ``sys.argv`` holds
        ``args``. Returns an ``archipel.spark.Job``."""
        from archipel.spark import Job

        text, filename = _script(path_or_code)
        info = self._unary("SubmitJob", pb.SubmitJobRequest(code=text, filename=filename, args=[str(a) for a in args],
                                                            datasets=list(datasets), island=island or ""))
        return Job(self, info)

    def jobs(self, island: str | None = None) -> list[Any]:
        """The batch jobs on an island (yours; every one for admins)."""
        from archipel.spark import Job

        return [Job(self, j) for j in self._unary("ListJobs", pb.ListJobsRequest(island=island or "")).jobs]

    def job(self, job_id: str, island: str | None = None) -> Any:
        from archipel.spark import Job

        return Job(self, self._job_call("GetJob", job_id, island))

    def cancel_job(self, job_id: str, island: str | None = None) -> Any:
        from archipel.spark import Job

        return Job(self, self._job_call("CancelJob", job_id, island))

    def _job_call(self, method: str, job_id: str, island: str | None) -> Any:
        return self._unary(method, pb.JobRequest(id=job_id, island=island or ""))

    def _job_logs(self, job_id: str, island: str | None, follow: bool, offset: int = 0):
        stream = self._stub.JobLogs(pb.JobLogsRequest(id=job_id, island=island or "", follow=follow, offset=offset),
                                    timeout=None if follow else self.timeout)
        try:
            with translated(self.address):
                yield from stream
        finally:
            stream.cancel()


def _script(path_or_code: str | os.PathLike) -> tuple[str, str]:
    """(source, file name) of a script given by path or as source text."""
    text = os.fspath(path_or_code)
    if "\n" not in text and len(text) < 4096 and text.endswith(".py"):
        try:
            return Path(text).read_text(encoding="utf-8"), Path(text).name
        except OSError as exc:
            raise InvalidArgument(f"cannot read the script {text}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise InvalidArgument(f"{text} is not a UTF-8 text file") from None
    return text, "job.py"
