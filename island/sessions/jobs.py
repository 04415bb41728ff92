"""Batch jobs (what Livy calls batches): a PySpark script run by the island as a child process
under an unprivileged user, with a token of the caller's own identity, its output kept.

A job's state lives in ``DIR/jobs/ID/job.json`` (written whole, then renamed), beside its
script and its output, so that jobs survive an island restart: queued jobs run after it, and
a job that was running is reported failed with the reason (its process, if any is left, is
stopped) rather than lost. Finished jobs are removed after ``[jobs] keep_days``.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from archipel.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from metacatalog.access import Caller

__all__ = ["Job", "JobBook", "STATES"]

logger = logging.getLogger(__name__)

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")
MAX_CODE_BYTES = 1024 * 1024
MAX_ARGS = 256


@dataclass
class Job:
    id: str
    user: str
    island: str
    filename: str
    args: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    state: str = "queued"
    reason: str = ""
    exit_code: int = 0
    submitted: float = field(default_factory=time.time)
    started: float = 0.0
    finished: float = 0.0
    pid: int = 0
    published: list[str] = field(default_factory=list)
    # The caller's identity, for the job's token (never shown).
    groups: list[str] = field(default_factory=list)
    rights: list[str] = field(default_factory=list)
    admin: bool = False

    def public(self) -> dict:
        d = asdict(self)
        for k in ("groups", "rights", "admin", "pid"):
            d.pop(k)
        return d


class JobBook:
    def __init__(self, root: Path, here: str, cfg, address: str, ca_path: Path, mint) -> None:
        """``mint(job) -> token``: a token of the job's user; ``address``: the island's client
        port, which the job's session and client call."""
        self.root = root
        self.here = here
        self.cfg = cfg  # JobsSection
        self.address = address
        self.ca_path = ca_path
        self.mint = mint
        self._jobs: dict[str, Job] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self._work: dict[str, Path] = {}  # job -> its folder in the temp folder
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.root.mkdir(parents=True, exist_ok=True)
        self._load()

    # -- state on disk ---------------------------------------------------------------------
    def _dir(self, job_id: str) -> Path:
        return self.root / job_id

    def _save(self, job: Job) -> None:
        d = self._dir(job.id)
        tmp = d / "job.json.tmp"
        tmp.write_text(json.dumps(asdict(job)), encoding="utf-8")
        os.replace(tmp, d / "job.json")

    def _load(self) -> None:
        now = time.time()
        for d in sorted(self.root.iterdir()):
            f = d / "job.json"
            if not f.is_file():
                shutil.rmtree(d, ignore_errors=True)  # a submission that did not finish writing
                continue
            try:
                job = Job(**json.loads(f.read_text(encoding="utf-8")))
            except (ValueError, TypeError) as exc:
                logger.warning("job state %s unreadable (%s): left aside", f, exc)
                continue
            if job.state in FINISHED and now - job.finished > self.cfg.keep_days * 86400:
                shutil.rmtree(d, ignore_errors=True)
                continue
            if job.state == "running":
                self._stop_leftover(job)
                job.state, job.finished = "failed", now
                job.reason = (f"the island restarted while the job ran (it had started at "
                              f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(job.started))} UTC); submit it again")
                self._save(job)
            self._jobs[job.id] = job

    @staticmethod
    def _stop_leftover(job: Job) -> None:
        """A job process left by an island that died: stopped, if it is that job's."""
        if not job.pid:
            return
        try:
            cmdline = Path(f"/proc/{job.pid}/cmdline").read_bytes()
        except OSError:
            return
        if job.id.encode() not in cmdline:
            return
        try:
            os.killpg(job.pid, signal.SIGKILL)
        except OSError:
            pass

    # -- the API ------------------------------------------------------------------------------
    def submit(self, caller: Caller, code: str, filename: str, args: list[str], datasets: list[str]) -> Job:
        if caller.anonymous:
            raise PermissionDenied("batch jobs need a token")
        if not caller.has("compute"):
            raise PermissionDenied("a batch job runs your code on the island and needs the 'compute' right (an admin "
                                   "gives it: archipel tokens create --user NAME --right compute)")
        if not code.strip():
            raise InvalidArgument("the job's script is empty")
        if len(code.encode()) > MAX_CODE_BYTES:
            raise InvalidArgument(f"the job's script is over {MAX_CODE_BYTES} bytes: send a small driver script "
                                  f"and publish the data it needs as datasets")
        if "\x00" in code:
            raise InvalidArgument("the job's script holds a NUL byte: not a Python script")
        if len(args) > MAX_ARGS or any(len(a) > 4096 or "\x00" in a for a in args):
            raise InvalidArgument(f"at most {MAX_ARGS} arguments of at most 4096 characters, without NUL bytes")
        name = Path(filename or "job.py").name[:200] or "job.py"
        with self._lock:
            mine = [j for j in self._jobs.values() if j.user == caller.name and j.state in ("queued", "running")]
            if self.cfg.per_user and len(mine) >= self.cfg.per_user:
                raise ResourceExhausted(f"{caller.name} already has {len(mine)} jobs queued or running on this island "
                                        f"(the limit, [jobs] per_user); wait for one or cancel it")
            job = Job(id=uuid.uuid4().hex[:16], user=caller.name, island=self.here, filename=name, args=list(args),
                      datasets=list(datasets), groups=sorted(caller.groups), rights=sorted(caller.rights),
                      admin=caller.admin)
            d = self._dir(job.id)
            d.mkdir()
            (d / "script.py").write_text(code, encoding="utf-8")
            (d / "output.log").touch()
            self._save(job)
            self._jobs[job.id] = job
        self._wake.set()
        return job

    def jobs(self, caller: Caller) -> list[Job]:
        with self._lock:
            out = list(self._jobs.values())
        if not caller.admin:
            out = [j for j in out if j.user == caller.name]
        return sorted(out, key=lambda j: j.submitted)

    def get(self, caller: Caller, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or (not caller.admin and job.user != caller.name):
            raise NotFound(f"no job {job_id[:40]!r} of yours on island {self.here}")
        return job

    def log_path(self, job: Job) -> Path:
        return self._dir(job.id) / "output.log"

    def cancel(self, caller: Caller, job_id: str) -> Job:
        job = self.get(caller, job_id)
        with self._lock:
            if job.state == "queued":
                job.state, job.finished, job.reason = "cancelled", time.time(), f"cancelled by {caller.name}"
                self._save(job)
                return job
            proc = self._procs.get(job.id)
            if job.state != "running" or proc is None:
                return job
            job.reason = f"cancelled by {caller.name}"
            job.state = "cancelled"
        self._terminate(proc)
        return job

    # -- running -------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            procs = list(self._procs.items())
        for job_id, proc in procs:
            self._terminate(proc, grace=5)
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            self._reap()
            with self._lock:
                running = sum(1 for j in self._jobs.values() if j.state == "running")
                queued = sorted((j for j in self._jobs.values() if j.state == "queued"), key=lambda j: j.submitted)
            for job in queued[:max(0, self.cfg.concurrent - running)]:
                if self._stop.is_set():
                    return
                self._launch(job)

    def _reap(self) -> None:
        now = time.time()
        with self._lock:
            procs = list(self._procs.items())
        for job_id, proc in procs:
            job = self._jobs[job_id]
            code = proc.poll()
            if code is None:
                if now - job.started > self.cfg.max_seconds:
                    job.reason = f"the job ran past [jobs] max_seconds = {self.cfg.max_seconds:g}"
                    job.state = "failed"
                    self._terminate(proc)
                continue
            with self._lock:
                self._procs.pop(job_id, None)
                job.exit_code = code
                job.finished = now
                if job.state == "running":
                    job.state = "succeeded" if code == 0 else "failed"
                    if code != 0 and not job.reason:
                        job.reason = (f"the script exited with status {code}" if code > 0
                                      else f"the script was killed by signal {-code}")
                job.published = self._published(job)
                job.pid = 0
                self._save(job)

    def _published(self, job: Job) -> list[str]:
        work = self._work.pop(job.id, None)
        if work is None:
            return []
        try:
            names = sorted({n for n in (work / "published.txt").read_text(encoding="utf-8").split() if n})[:1000]
        except OSError:
            names = []
        shutil.rmtree(work, ignore_errors=True)
        return names

    def _launch(self, job: Job) -> None:
        """Starts the job: its own folder in the temp folder (the only place it may write), its
        output appended to DIR/jobs/ID/output.log through a descriptor the island opened."""
        d = self._dir(job.id)
        work = Path(tempfile.mkdtemp(prefix=f"archipel-job-{job.id}-"))
        log = open(d / "output.log", "ab", buffering=0)  # noqa: SIM115 - the child writes to it
        try:
            shutil.copyfile(d / "script.py", work / job.filename)
            shutil.copyfile(self.ca_path, work / "ca.pem")
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "LANG": "C.UTF-8",
                "PYTHONUNBUFFERED": "1", "ARCHIPEL_ISLAND": self.address, "ARCHIPEL_CA": str(work / "ca.pem"),
                "ARCHIPEL_TOKEN": self.mint(job), "ARCHIPEL_JOB_ID": job.id, "ARCHIPEL_JOB_ISLAND": self.here,
                "ARCHIPEL_JOB_DATASETS": ",".join(job.datasets), "ARCHIPEL_JOB_DIR": str(work),
                "TMPDIR": str(work),
                # A crash of the interpreter (a native library's) leaves every thread's Python
                # stack in the job's log, not an empty log and a signal number.
                "PYTHONFAULTHANDLER": "1",
                "GRPC_ENABLE_FORK_SUPPORT": "false",  # see archipel/__init__.py
            }
            if os.environ.get("JAVA_HOME"):
                env["JAVA_HOME"] = os.environ["JAVA_HOME"]
            cmd = [sys.executable, "-m", "archipel.job", str(work / job.filename), *job.args]
            if self.cfg.memory_bytes and shutil.which("prlimit"):
                cmd = ["prlimit", f"--as={self.cfg.memory_bytes}", "--", *cmd]
            user = self._user(work)
            proc = subprocess.Popen(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True, close_fds=True, **user)
        except Exception as exc:  # noqa: BLE001 - the job fails with the reason, the island goes on
            with self._lock:
                job.state, job.finished, job.reason = "failed", time.time(), f"the job could not start: {exc}"
                self._save(job)
            log.close()
            shutil.rmtree(work, ignore_errors=True)
            return
        log.close()
        with self._lock:
            job.state, job.started, job.pid = "running", time.time(), proc.pid
            self._procs[job.id] = proc
            self._work[job.id] = work
            self._save(job)

    def _user(self, work: Path) -> dict:
        """Run as [jobs] user when the island runs as root (the job's folder made its own)."""
        if os.geteuid() != 0:
            return {}
        try:
            pw = pwd.getpwnam(self.cfg.user)
        except KeyError:
            raise FailedPrecondition(f"[jobs] user {self.cfg.user!r} does not exist on this host") from None
        if pw.pw_uid == 0:
            raise FailedPrecondition("[jobs] user must not be root")
        for p in [work, *work.iterdir()]:
            os.chown(p, pw.pw_uid, pw.pw_gid)
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    @staticmethod
    def _terminate(proc: subprocess.Popen, grace: float = 10.0) -> None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except OSError:
            return

        def kill_later():
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
        threading.Thread(target=kill_later, daemon=True).start()
