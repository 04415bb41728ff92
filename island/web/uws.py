"""UWS 1.1 jobs of the TAP service: their life (PENDING, QUEUED, EXECUTING, COMPLETED, ERROR,
ABORTED), their owner, and their files under the island's ``tap/jobs/<id>/``.

A job's record (``job.json``) is replaced atomically at each change; its result and error
documents are written beside it before its phase says they exist. A job that was executing
when the island stopped is in ERROR after the restart (the caller's token is never kept on
disk, so it cannot be run again)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from archipel.errors import InvalidArgument, NotFound, PermissionDenied

__all__ = ["Job", "JobStore", "PHASES", "iso", "parse_iso", "job_xml", "jobs_xml"]

PHASES = ("PENDING", "QUEUED", "EXECUTING", "COMPLETED", "ERROR", "ABORTED", "UNKNOWN", "HELD", "SUSPENDED",
          "ARCHIVED")
FINAL = ("COMPLETED", "ERROR", "ABORTED", "ARCHIVED")
UWS_NS = "http://www.ivoa.net/xml/UWS/v1.0"
MAX_JOBS_PER_OWNER = 1000
MAX_PARAMETERS_BYTES = 2_000_000


def iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(text: str) -> float:
    value = text.strip()
    try:
        if value.endswith("Z"):
            value = value[:-1] + "+00:00"
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(f"DESTRUCTION must be an ISO 8601 time like 2030-01-01T00:00:00Z, not "
                              f"{text[:40]!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


@dataclass
class Job:
    id: str
    owner: str  # the user the caller's token names ("anonymous" without one)
    parameters: dict[str, str]
    phase: str = "PENDING"
    created: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    execution_duration: int = 3600
    destruction: float = 0.0
    error: str = ""
    rows: int = 0
    overflow: bool = False
    result_type: str = "application/x-votable+xml"
    run_id: str = ""


class JobStore:
    """The jobs of one island's TAP service, in memory and on disk."""

    def __init__(self, root: Path, retention: float = 7 * 86400, max_duration: int = 86400) -> None:
        self.root = root
        self.retention = retention
        self.max_duration = max_duration
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.aborts: dict[str, threading.Event] = {}
        root.mkdir(parents=True, exist_ok=True)
        for folder in root.iterdir():
            try:
                job = Job(**json.loads((folder / "job.json").read_text()))
            except (OSError, ValueError, TypeError):
                shutil.rmtree(folder, ignore_errors=True)  # half-made before a crash
                continue
            if job.phase in ("QUEUED", "EXECUTING"):
                job.phase, job.ended = "ERROR", time.time()
                job.error = "the island stopped while the job ran; submit it again"
                self._write(job)
            self._jobs[job.id] = job

    # -- records -------------------------------------------------------------------------
    def folder(self, job_id: str) -> Path:
        return self.root / job_id

    def _write(self, job: Job) -> None:
        folder = self.folder(job.id)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / ".job.json.tmp"
        tmp.write_text(json.dumps(asdict(job)))
        os.replace(tmp, folder / "job.json")

    def create(self, owner: str, parameters: dict[str, str]) -> Job:
        if sum(len(k) + len(v) for k, v in parameters.items()) > MAX_PARAMETERS_BYTES:
            raise InvalidArgument("the job's parameters are larger than 2 MB")
        self.expire()
        with self._lock:
            if sum(1 for j in self._jobs.values() if j.owner == owner) >= MAX_JOBS_PER_OWNER:
                raise PermissionDenied(f"{owner} has {MAX_JOBS_PER_OWNER} jobs: delete some first")
            job = Job(id=secrets.token_hex(8), owner=owner, parameters=dict(parameters))
            job.destruction = job.created + self.retention
            job.run_id = parameters.get("RUNID", "")[:64]
            self._write(job)
            self._jobs[job.id] = job
            return job

    def get(self, job_id: str, owner: str, admin: bool = False) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or (job.owner != owner and not admin):
            raise NotFound(f"no job {job_id!r} of {owner} here")  # another's job is not revealed
        return job

    def jobs(self, owner: str, admin: bool = False) -> list[Job]:
        self.expire()
        with self._lock:
            return sorted((j for j in self._jobs.values() if admin or j.owner == owner), key=lambda j: j.created)

    def update(self, job: Job, **changes) -> Job:
        with self._lock:
            for k, v in changes.items():
                setattr(job, k, v)
            if job.id in self._jobs:
                self._write(job)
            return job

    def set_parameter(self, job: Job, name: str, value: str) -> Job:
        if job.phase != "PENDING":
            raise InvalidArgument(f"job {job.id} is {job.phase}: parameters change only while it is PENDING")
        params = dict(job.parameters)
        params[name] = value
        return self.update(job, parameters=params)

    def set_duration(self, job: Job, seconds: str) -> Job:
        try:
            n = int(seconds)
        except ValueError:
            raise InvalidArgument(f"EXECUTIONDURATION is whole seconds, not {seconds[:40]!r}") from None
        if job.phase != "PENDING":
            raise InvalidArgument(f"job {job.id} is {job.phase}: its duration changes only while it is PENDING")
        n = self.max_duration if n <= 0 else min(n, self.max_duration)
        return self.update(job, execution_duration=n)

    def set_destruction(self, job: Job, text: str) -> Job:
        when = parse_iso(text)
        return self.update(job, destruction=min(when, time.time() + self.retention))

    def delete(self, job: Job) -> None:
        ev = self.aborts.get(job.id)
        if ev is not None:
            ev.set()
        with self._lock:
            self._jobs.pop(job.id, None)
        shutil.rmtree(self.folder(job.id), ignore_errors=True)

    def expire(self) -> None:
        now = time.time()
        with self._lock:
            gone = [j for j in self._jobs.values() if j.destruction and j.destruction < now]
        for job in gone:
            self.delete(job)

    def result_path(self, job: Job) -> Path:
        return self.folder(job.id) / "result"

    def error_path(self, job: Job) -> Path:
        return self.folder(job.id) / "error.vot"


def _el(name: str, value: str | None) -> str:
    if value is None or value == "":
        return f'  <uws:{name} xsi:nil="true"/>\n'
    return f"  <uws:{name}>{escape(value)}</uws:{name}>\n"


def job_xml(job: Job, base: str) -> str:
    params = "".join(f"    <uws:parameter id={quoteattr(k.lower())}>{escape(v)}</uws:parameter>\n"
                     for k, v in sorted(job.parameters.items()))
    results = ""
    if job.phase == "COMPLETED":
        results = (f'    <uws:result id="result" xlink:type="simple" '
                   f'xlink:href={quoteattr(f"{base}/{job.id}/results/result")} mime-type={quoteattr(job.result_type)}/>\n')
    error = ""
    if job.phase == "ERROR":
        error = (f'  <uws:errorSummary type="fatal" hasDetail="true">\n'
                 f"    <uws:message>{escape(job.error)}</uws:message>\n  </uws:errorSummary>\n")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<uws:job xmlns:uws="{UWS_NS}" xmlns:xlink="http://www.w3.org/1999/xlink" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" version="1.1">\n'
            + _el("jobId", job.id) + (_el("runId", job.run_id) if job.run_id else "") + _el("ownerId", job.owner)
            + _el("phase", job.phase) + _el("quote", None) + _el("creationTime", iso(job.created))
            + _el("startTime", iso(job.started)) + _el("endTime", iso(job.ended))
            + _el("executionDuration", str(job.execution_duration)) + _el("destruction", iso(job.destruction))
            + f"  <uws:parameters>\n{params}  </uws:parameters>\n"
            + f"  <uws:results>\n{results}  </uws:results>\n" + error + "</uws:job>\n")


def jobs_xml(jobs: list[Job], base: str) -> str:
    refs = "".join(f'  <uws:jobref id={quoteattr(j.id)} xlink:href={quoteattr(f"{base}/{j.id}")}>\n'
                   f"    <uws:phase>{j.phase}</uws:phase>\n"
                   + (f"    <uws:runId>{escape(j.run_id)}</uws:runId>\n" if j.run_id else "")
                   + f"    <uws:ownerId>{escape(j.owner)}</uws:ownerId>\n"
                   f"    <uws:creationTime>{iso(j.created)}</uws:creationTime>\n  </uws:jobref>\n"
                   for j in jobs if j.phase != "ARCHIVED")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<uws:jobs xmlns:uws="{UWS_NS}" xmlns:xlink="http://www.w3.org/1999/xlink" version="1.1">\n'
            f"{refs}</uws:jobs>\n")
