"""Serving an island's partition files over XRootD (``root://``): an ``xrootd`` child exporting
one link per catalog partition (nothing else of an ingested folder), with GSI security that
admits only islands of the archipelago, reclaimed when a killed island left it running."""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Iterable
from pathlib import Path

from archipel.errors import FailedPrecondition, InvalidArgument
from archipel.names import check_partition_path
from island.dataserve import free_port
from metacatalog.store import CatalogStore

__all__ = ["XrootdServer", "sync_partition_links", "update_replica_links", "ca_hash_dir", "xrootd_client_env"]

logger = logging.getLogger(__name__)


def sync_partition_links(store: CatalogStore, links: Path, replicas: Path, here: str) -> int:
    """Makes ``links/<dataset>/<partition path>`` a symbolic link to each partition file held
    here (own datasets and replicas), and nothing else: the tree XRootD exports, so that it
    serves catalog partitions only, never other files of an ingested folder. Returns the
    number of links made or removed."""
    from replication.layout import replica_path

    wanted: dict[Path, Path] = {}
    for ds in store.datasets(with_partitions=True):
        if ds.origin != here:
            continue
        for p in ds.partitions:
            try:
                check_partition_path(p.path)
            except InvalidArgument:
                continue
            wanted[links / ds.name / p.path] = Path(ds.root) / p.path
    for dataset, pid in store.local_files():
        try:
            wanted[links / dataset / pid] = replica_path(replicas, dataset, pid)
        except InvalidArgument:
            continue
    links.mkdir(parents=True, exist_ok=True)
    changed = 0
    for entry in list(links.rglob("*")):
        if entry.is_symlink() and entry not in wanted:
            entry.unlink()
            changed += 1
    for link, target in wanted.items():
        changed += _link(link, target)
    for folder in sorted((d for d in links.rglob("*") if d.is_dir() and not d.is_symlink()),
                         key=lambda d: len(d.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    return changed


def _link(link: Path, target: Path) -> int:
    """Makes ``link`` point at ``target`` (atomically replacing what was there); 1 if it changed."""
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return 0
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)
    return 1


def update_replica_links(links: Path, replicas: Path, added: Iterable[tuple[str, str]],
                         removed: Iterable[tuple[str, str]]) -> int:
    """The links of the replica files recorded or dropped since the last pass (``(dataset,
    pid)``), without walking the tree or reading every dataset: a rule's 64 files landing cost
    64 links, not 64 passes over every file held (``sync_partition_links`` is the full pass, at
    start and when this island's own datasets change). Returns the links made or removed."""
    from replication.layout import replica_path

    changed = 0
    for dataset, pid in removed:
        try:
            replica_path(replicas, dataset, pid)  # the names checked before a path is made of them
        except InvalidArgument:
            continue
        link = links / dataset / pid
        if link.is_symlink():
            link.unlink()
            changed += 1
    for dataset, pid in added:
        try:
            target = replica_path(replicas, dataset, pid)
        except InvalidArgument:
            continue
        changed += _link(links / dataset / pid, target)
    return changed


def ca_hash_dir(ca_pem: Path, folder: Path) -> Path:
    """A folder holding the CA certificate under its OpenSSL subject hash (``<hash>.0``), the
    layout X.509 tools (XRootD's GSI) look CAs up in."""
    out = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(ca_pem)], capture_output=True, text=True,
                         timeout=30)
    if out.returncode != 0:
        raise FailedPrecondition(f"openssl cannot read {ca_pem}: {out.stderr.strip()}")
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca_pem, folder / f"{out.stdout.strip()}.0")
    return folder


def xrootd_client_env(root: Path, ca: Path, cert: Path, key: Path) -> dict[str, str]:
    """The environment in which XRootD clients (the island's and its workers') authenticate
    with the island's certificate (GSI, no proxy) and accept servers the CA signed."""
    return {"X509_CERT_DIR": str(ca_hash_dir(ca, root / "certs")), "X509_USER_CERT": str(cert),
            "X509_USER_KEY": str(key), "X509_USER_PROXY": str(root / "certs" / "no-proxy.pem"),
            "XrdSecGSICREATEPROXY": "0", "XrdSecGSISRVNAMES": "*", "XrdSecPROTOCOL": "gsi"}


class XrootdServer:
    """An ``xrootd`` child exporting the island's export tree read-only, adler32 enabled. With
    the island's credentials it admits only islands of the archipelago: XRootD's GSI security
    plugin checks the caller's X.509 certificate against the archipelago's CA."""

    def __init__(self, root: Path, export: Path, host: str, port: int, user: str, name: str,
                 credentials: tuple[Path, Path, Path] | None = None) -> None:
        self.credentials = credentials
        self.dir = root / "xrootd"
        self.export = export
        self.host = host
        self.port = port or free_port(host)
        self.user = user
        self.name = name
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("xrootd") is not None

    @property
    def base_url(self) -> str:
        return f"root://{self.host}:{self.port}/"

    def _readable_by_user(self) -> str:
        """Why the xrootd user cannot read the export tree, or ""."""
        try:
            pw = pwd.getpwnam(self.user)
        except KeyError:
            return f"user {self.user!r} does not exist"
        for folder in [self.export, *self.export.parents]:
            st = folder.stat()
            if st.st_uid == pw.pw_uid:
                continue
            if not st.st_mode & 0o001 and not (st.st_gid == pw.pw_gid and st.st_mode & 0o010):
                return f"{folder} is not searchable by user {self.user!r} (mode {oct(st.st_mode & 0o777)})"
        return ""

    def start(self) -> None:
        why = self._readable_by_user()
        if why:
            raise FailedPrecondition(f"xrootd drops to user {self.user!r}, which cannot reach the data: {why}")
        admin = self.dir / "admin"
        admin.mkdir(parents=True, exist_ok=True)
        pw = pwd.getpwnam(self.user)
        for p in (self.dir, admin):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        security = self._security(pw)
        cfg = self.dir / "xrootd.cfg"
        cfg.write_text("\n".join([
            "# written by the island at each start; edits are lost",
            f"xrd.port {self.port}",
            "xrd.network nodnr",
            "all.export / r/o",
            f"oss.localroot {self.export}",
            "xrootd.chksum adler32",
            f"all.adminpath {admin}",
            f"all.pidpath {admin}",
            *security,
        ]) + "\n")
        self.reclaim(self.dir)
        log = open(self.dir / "xrootd.log", "ab")
        cmd = ["xrootd", "-c", str(cfg), "-n", self.name, "-I", "v4"]
        if os.geteuid() == 0:
            cmd += ["-R", self.user]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=self._environment())  # the island's process group
        log.close()
        (self.dir / "island-xrootd.pid").write_text(str(self.proc.pid))
        self._wait_listening()

    def _environment(self) -> dict[str, str]:
        """xrootd's environment: with the bind shim (``island/xrootd_bind.c``) preloaded, its
        listener binds the island's address, not every address of the host."""
        env = dict(os.environ)
        try:
            address = socket.gethostbyname(self.host)
        except OSError:
            address = ""
        shim = self._bind_shim() if address and address != "0.0.0.0" else None
        if shim is None:
            logger.warning("xrootd listens on every address of the host (no C compiler to build its bind shim)")
            return env
        env["LD_PRELOAD"] = " ".join(x for x in (str(shim), env.get("LD_PRELOAD", "")) if x)
        env["ARCHIPEL_BIND_ADDRESS"] = address
        return env

    def _bind_shim(self) -> Path | None:
        """The bind shim, built once into the island's ``xrootd/`` folder with the C compiler;
        None when there is none or the build fails (logged)."""
        source = Path(__file__).with_name("xrootd_bind.c")
        built = self.dir / "bind.so"
        if built.is_file() and built.stat().st_mtime >= source.stat().st_mtime:
            return built
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            return None
        tmp = self.dir / ".bind.so.tmp"
        proc = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(tmp), str(source), "-ldl"],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            logger.warning("building xrootd's bind shim failed: %s", proc.stderr[-500:])
            tmp.unlink(missing_ok=True)
            return None
        os.replace(tmp, built)
        return built

    @staticmethod
    def reclaim(folder: Path) -> None:
        """Ends an xrootd left by an island killed without its stop (``kill -9``): it still
        holds the port. Only a process whose command line names this island's xrootd
        configuration (in ``folder``, the island's ``xrootd/``) is ended."""
        import signal
        import time

        cfg = folder / "xrootd.cfg"
        pidfile = folder / "island-xrootd.pid"
        try:
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if str(cfg).encode() not in cmdline or not any(Path(a.decode(errors="replace")).name == "xrootd"
                                                       for a in cmdline[:1]):
            return
        logger.warning("ending xrootd %d left by an earlier run of this island (it holds the island's port)", pid)
        try:
            os.kill(pid, signal.SIGTERM)
            end = time.monotonic() + 5
            while time.monotonic() < end and Path(f"/proc/{pid}").exists():
                time.sleep(0.05)
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
                time.sleep(0.2)
        except ProcessLookupError:
            pass
        pidfile.unlink(missing_ok=True)

    def _security(self, pw) -> list[str]:
        """GSI directives: the CA (by hash), and the island's certificate and key copied for the
        xrootd user (which must own its key, mode 0400)."""
        if self.credentials is None:
            return []
        from cryptography.hazmat.primitives import serialization

        ca, cert, key = self.credentials
        gsi = self.dir / "gsi"
        shutil.rmtree(gsi, ignore_errors=True)
        certdir = ca_hash_dir(ca, gsi / "certs")
        shutil.copyfile(cert, gsi / "cert.pem")
        private = serialization.load_pem_private_key(key.read_bytes(), password=None)
        fd = os.open(gsi / "key.pem", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
        with os.fdopen(fd, "wb") as f:
            f.write(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                          serialization.NoEncryption()))
        for p in (gsi, certdir, *certdir.iterdir(), gsi / "cert.pem", gsi / "key.pem"):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        return ["xrootd.seclib libXrdSec.so",
                f"sec.protocol gsi -certdir:{certdir} -cert:{gsi / 'cert.pem'} -key:{gsi / 'key.pem'} -crl:0 "
                f"-gmapopt:10 -dlgpxy:0",
                "sec.protbind * only gsi"]

    def _wait_listening(self, timeout: float = 20.0) -> None:
        import time

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                tail = (self.dir / "xrootd.log").read_text(errors="replace")[-800:]
                raise FailedPrecondition(f"xrootd exited with {self.proc.returncode}: {tail}")
            with socket.socket() as s:
                if s.connect_ex((self.host, self.port)) == 0:
                    return
            time.sleep(0.05)
        raise FailedPrecondition(f"xrootd did not listen on port {self.port} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
