"""Starting real islands as separate processes on 127.0.0.1 for the integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import archipel
from archipel.errors import ArchipelError

ROOT = Path(__file__).resolve().parent.parent
# Small real HATS catalogs from the hats project's test suite (BSD-3, samples/hats/LICENSE).
SHARED_HATS = Path(os.environ.get("ARCHIPEL_SAMPLE_DATA", ROOT / "samples" / "hats"))


_HANDED_OUT: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(span: int = 1) -> int:
    """A free port on 127.0.0.1 (the first of ``span`` free ports in a row) that this test run
    has not handed out before.

    It is taken below the kernel's ephemeral range: the ports a process binds with port 0
    (Spark's JVM, xrootd, clients' own ends) come from that range, and could take a port
    handed out here before the island that was given it binds it."""
    import random

    low, _ = _ephemeral_range()
    top = max(low, 12000) - span
    while True:
        port = random.randrange(10000, top)
        block = range(port, port + span)
        if not _HANDED_OUT.intersection(block) and all(_bindable(p) for p in block):
            _HANDED_OUT.update(block)
            return port


def cli(*args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 300,
        input: str | None = None) -> subprocess.CompletedProcess:
    """Runs the archipel CLI in its own process."""
    proc = subprocess.run([sys.executable, "-m", "archipel.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"archipel {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def source_copy(dest: Path) -> Path:
    """A copy of the repository's working tree (without .git, the virtualenv or build output) to
    ``pip install`` from: a build writes its build/ and egg-info beside the sources, which must
    not be the repository's."""
    import shutil

    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".archipel-local", "data"))
    return dest


class TestArchipelago:
    """A CA of the test session's own (every island of the suite joins it), and tokens signed
    by a certificate it issued, as any island of the archipelago would sign them."""

    def __init__(self, folder: Path) -> None:
        from federation.pki import create_ca, issue_island, load_credentials

        self.folder = folder
        self.ca_dir = folder / "ca"
        create_ca(self.ca_dir, "tests")
        self.ca_pem = self.ca_dir / "ca.pem"
        issue_island(self.ca_dir, folder / "issuer", "tests", "127.0.0.1")
        self._creds = load_credentials(folder / "issuer", "tests")
        self.admin_token = self.token("tester", admin=True)

    def token(self, user: str, groups: tuple[str, ...] = (), rights: tuple[str, ...] = (), admin: bool = False,
              expires_in: float = 0.0, now: float | None = None) -> str:
        from island.security.tokens import mint

        return mint(self._creds, user, groups, rights, admin, expires_in, now=now)[0]


_ARCHIPELAGO: TestArchipelago | None = None


def https_open(url: str, token: str | None = None, headers: dict[str, str] | None = None, timeout: float = 30):
    """``urlopen`` of an island's HTTPS URL, trusting the test CA, as the holder of ``token``
    (the session's admin token by default; "" for none)."""
    import ssl
    import urllib.request

    token = archipelago().admin_token if token is None else token
    ctx = ssl.create_default_context(cafile=str(archipelago().ca_pem))
    req = urllib.request.Request(url, headers={**(headers or {}), **({"Authorization": f"Bearer {token}"}
                                                                     if token else {})})
    return urllib.request.urlopen(req, context=ctx, timeout=timeout)


def archipelago() -> TestArchipelago:
    """The session's archipelago (made on first use, in a temporary folder)."""
    global _ARCHIPELAGO
    if _ARCHIPELAGO is None:
        import tempfile

        _ARCHIPELAGO = TestArchipelago(Path(tempfile.mkdtemp(prefix="archipel-tests-ca-")))
    return _ARCHIPELAGO


def wait_for(cond, what: str = "the condition", timeout: float = 60.0, interval: float = 0.05,
             detail: Callable[[], str] | None = None) -> float:
    """Waits until ``cond()`` is true (an ArchipelError counts as not yet); returns the seconds
    it took. The one wait of the tests: a condition polled, never a fixed sleep. On a timeout,
    ``detail()`` (the logs that explain it, say) is added to the failure's message."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        try:
            if cond():
                return time.monotonic() - started
        except ArchipelError:
            pass
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting until {what}" + (f"\n{detail()}" if detail else ""))
        time.sleep(interval)


def wait_for_log(log: Path, text: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Waits until ``text`` appears in the log of ``proc``, which must stay alive meanwhile."""
    def seen() -> bool:
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        return text in log.read_text(errors="replace")

    wait_for(seen, f"{text!r} is in {log}", timeout, interval=0.3)


class IslandProcess:
    """One island: ``archipel island init`` then ``archipel island serve`` in a child process."""

    def __init__(self, folder: Path, name: str, extra_config: str = "", env: dict[str, str] | None = None,
                 ca_dir: Path | None = None, cwd: Path | None = None, host: str = "127.0.0.1",
                 netns: str | None = None) -> None:
        self.folder = folder
        self.host = host
        self.netns = netns  # a network namespace (tests/netns.py) the island runs in
        self.cwd = cwd  # the folder the island's process starts in (the test's own by default)
        self.name = name
        self.env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.log = folder / "island.log"
        if (folder / "archipel.toml").exists():  # an island made earlier: keep its port
            from island.config import load_config

            cfg = load_config(folder, environ={})
            self.port, self.peer_port, self.http_port = cfg.island.port, cfg.island.peer_port, cfg.island.http_port
            self.data_port = cfg.island.data_port
        else:
            self.port, self.peer_port, self.http_port = free_port(), free_port(), free_port()
            self.data_port = free_port()
            ca = ca_dir if ca_dir is not None else archipelago().ca_dir
            cli("island", "init", str(folder), "--name", name, "--port", str(self.port), "--peer-port",
                str(self.peer_port), "--http-port", str(self.http_port), "--data-port", str(self.data_port), "--ca", str(ca), "--host", host)
            if extra_config:
                cfg = folder / "archipel.toml"
                cfg.write_text(_merge_config(cfg.read_text(), extra_config))
        self.address = f"{host}:{self.port}"
        self.http_url = f"https://{host}:{self.http_port}"  # the web face: page, API, TAP, HATS
        self.data_url = f"https://{host}:{self.data_port}/data" if self.data_port else ""  # partition files
        self.peer_address = f"{host}:{self.peer_port}"
        self.ca = folder / "ca.pem"
        self.admin_token = (folder / "admin.token").read_text().strip()

    def start(self, wait_spark: bool = False, timeout: float = 180) -> IslandProcess:
        self._log = open(self.log, "ab")
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "archipel.cli.main", "island", "serve", str(self.folder)],
            stdout=self._log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True, cwd=self.cwd,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"island {self.name} exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with archipel.connect(self.address, timeout=2, token=self.admin_token, ca=self.ca) as c:
                    info = c.info()
                if not wait_spark or info["spark_ready"]:
                    return self
                if info["spark_error"]:
                    raise AssertionError(info["spark_error"])
            except ArchipelError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"island {self.name} not ready in {timeout} s:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def xrootd_env(self) -> dict[str, str]:
        """The environment in which XRootD's tools (xrdfs, xrdcp) call as this island (GSI)."""
        return {**os.environ, "X509_CERT_DIR": str(self.folder / "certs"),
                "X509_USER_CERT": str(self.folder / "island.pem"), "X509_USER_KEY": str(self.folder / "island-key.pem"),
                "XrdSecGSICREATEPROXY": "0", "XrdSecGSISRVNAMES": "*", "XrdSecPROTOCOL": "gsi"}

    def client(self, token: str | None = None) -> archipel.Client:
        """A client of this island, as its admin unless another ``token`` is given."""
        return archipel.connect(self.address, token=self.admin_token if token is None else token, ca=self.ca)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(f"island {self.name} did not stop within {timeout} s of {sig}")
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self._log.close()


def catalog(island: IslandProcess) -> dict:
    """The full catalog as an island lists it: every dataset with its partitions."""
    with island.client() as c:
        out = {}
        for d in c.datasets():
            full = c.describe(d.name)
            out[d.name] = (full.origin, full.kind, full.num_rows, full.schema.to_string(),
                           tuple((p.path, p.order, p.pixel, p.num_rows, p.adler32) for p in full.partitions))
        return out


def _merge_config(base: str, extra: str) -> str:
    """Applies ``[section] key = value`` lines of ``extra`` over the written config."""
    import tomllib

    from island.config import toml_value

    updates = tomllib.loads(extra)
    out, section = [], None
    seen: set[tuple[str, str]] = set()
    for line in base.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1]
        elif "=" in stripped and section in updates:
            key = stripped.split("=", 1)[0].strip()
            if key in updates[section]:
                line = f"{key} = {toml_value(updates[section][key])}"
                seen.add((section, key))
        out.append(line)
    text = "\n".join(out) + "\n"
    for sec, values in updates.items():
        rest = {k: v for k, v in values.items() if (sec, k) not in seen}
        if rest:
            text += f"\n[{sec}]\n" if f"[{sec}]" not in text else ""
            text += "".join(f"{k} = {toml_value(v)}\n" for k, v in rest.items())
    return text



def peered_pair(base: Path, names: tuple[str, str], dataset: str, cwd: Path | None = None
                ) -> tuple[IslandProcess, IslandProcess]:
    """Two islands without Spark, the second following the first, which holds ``dataset`` (the
    shared small_sky_source catalog); returned once the second lists it."""
    no_spark = "[spark]\nstart = false\n"
    first = IslandProcess(base / names[0], names[0], extra_config=no_spark, cwd=cwd).start()
    try:
        second = IslandProcess(base / names[1], names[1], cwd=cwd,
                               extra_config=f'{no_spark}[federation]\npeers = ["{first.address}"]\n').start()
    except BaseException:
        first.kill()
        raise
    with first.client() as c:
        c.ingest(str(SHARED_HATS / "small_sky_source"), dataset)
    with second.client() as c:
        wait_for(lambda: dataset in {d.name for d in c.datasets()}, f"the catalog reached {names[1]}")
    return first, second
