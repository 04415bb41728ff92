"""Serving an island's partition files to other islands over HTTP (Range requests, through
aiohttp's file responses) from this process; XRootD is ``island.xrootd``.

Both serve the same tree, ``DIR/export/<dataset>/<partition path>``, in which each dataset is a
symlink to the folder holding its files here (its ingest root at its origin, the replica
folder elsewhere). HTTP serves only files the catalog names as partitions of a dataset held here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from pathlib import Path

from archipel.errors import (ArchipelError, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied,
                             Unauthenticated)
from archipel.names import check_dataset_name, check_partition_path
from metacatalog.store import CatalogStore

__all__ = ["HttpDataServer", "sync_exports", "free_port", "check_data_read", "partition_file"]

logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def sync_exports(store: CatalogStore, export: Path, replicas: Path, here: str) -> None:
    """Points ``export/<dataset>`` at the folder holding each dataset's files here."""
    export.mkdir(parents=True, exist_ok=True)
    wanted: dict[str, Path] = {}
    for ds in store.datasets():
        if ds.origin == here:
            wanted[ds.name] = Path(ds.root)
    for dataset, _ in store.local_files():
        wanted.setdefault(dataset, replicas / dataset)
    for entry in export.iterdir():
        if entry.name not in wanted and entry.is_symlink():
            entry.unlink()
    for name, target in wanted.items():
        link = export / name
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        tmp = export / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target, target_is_directory=True)
        os.replace(tmp, link)


def check_data_read(gate, store: CatalogStore, der: bytes | None, authorization: str | None, dataset: str) -> None:
    """Who may GET a partition file of ``dataset``: an island of the archipelago (its verified
    client certificate, ``der``), or the holder of a bearer token who may read the dataset.
    Raises Unauthenticated, PermissionDenied or NotFound."""
    from metacatalog.access import check_read

    if der:
        gate.island_of_der(der)
        return
    caller = gate.caller_from_header(authorization)
    check_read(caller, dataset, store.dataset(dataset, with_partitions=False).access)


def partition_file(store: CatalogStore, export: Path, dataset: str, pid: str) -> Path:
    """The file of a partition the catalog names and this island holds; NotFound otherwise."""
    try:
        check_dataset_name(dataset)
        check_partition_path(pid)
    except InvalidArgument:
        raise NotFound(f"no partition {pid[:200]!r} of {dataset[:100]!r} here") from None
    if not store.has_partition(dataset, pid):
        raise NotFound(f"no partition {pid!r} of {dataset!r} here")
    folder = (export / dataset).resolve()
    path = folder / pid
    if not path.parent.resolve().is_relative_to(folder) or not path.is_file():
        raise NotFound(f"partition {pid!r} of {dataset!r} is not held here")
    return path


class HttpDataServer:
    """GET/HEAD ``/data/<dataset>/<partition path>`` with Range support, in a thread of its own,
    over TLS when the island has a ``gate``: islands of the archipelago get in with their
    certificate, users with a bearer token of someone who may read the dataset."""

    def __init__(self, store: CatalogStore, export: Path, host: str, port: int, gate=None,
                 tls_files: tuple[Path, Path] | None = None) -> None:
        self.store = store
        self.face = None  # the web face (island.web.app.WebFace), mounted at start when set
        self.redirect_islands = ""  # the data port's base URL, where islands' fetches are sent
        self.gate = gate
        self.tls_files = tls_files  # the island's certificate and key
        self.export = export
        self.host = host
        self.port = port or free_port(host)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="http-data", daemon=True)

    @property
    def base_url(self) -> str:
        return f"{'https' if self.gate is not None else 'http'}://{self.host}:{self.port}/data"

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise FailedPrecondition(f"cannot serve HTTP on {self.host}:{self.port}: {self._error}")

    def _run(self) -> None:
        from aiohttp import web

        async def handle(request: web.Request) -> web.StreamResponse:
            dataset = request.match_info["dataset"]
            pid = request.match_info["pid"]
            island = False
            if self.gate is not None:
                island = self.authorize(request, dataset)
            try:
                path = partition_file(self.store, self.export, dataset, pid)
            except NotFound as exc:
                raise web.HTTPNotFound(text=f"{exc.message}\n") from None
            if island and self.redirect_islands:  # to the bulk data port (asyncio's TLS is slow)
                from urllib.parse import quote

                raise web.HTTPTemporaryRedirect(f"{self.redirect_islands}/{quote(dataset, safe='')}/"
                                                f"{quote(pid, safe='/=')}")
            return web.FileResponse(path, chunk_size=1 << 20)

        from island.web.app import MAX_BODY_BYTES

        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("GET", "/data/{dataset}/{pid:.+}", handle)
        if self.face is not None:
            self.face.install(app)
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        runner = web.AppRunner(app, access_log=None)
        try:
            self._loop.run_until_complete(runner.setup())
            ssl_context = self.gate.server_ssl(*map(str, self.tls_files)) if self.gate is not None else None
            site = web.TCPSite(runner, self.host, self.port, reuse_address=True, ssl_context=ssl_context)
            self._loop.run_until_complete(site.start())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(runner.cleanup())
            self._loop.close()

    def authorize(self, request, dataset: str) -> bool:
        """``check_data_read`` of the request (True when the caller is an island); 401/403
        with the reason otherwise."""
        from aiohttp import web

        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        try:
            check_data_read(self.gate, self.store, der, request.headers.get("Authorization"), dataset)
            return bool(der)
        except Unauthenticated as exc:
            raise web.HTTPUnauthorized(text=f"{exc}\n", headers={"WWW-Authenticate": "Bearer"}) from None
        except PermissionDenied as exc:
            raise web.HTTPForbidden(text=f"{exc}\n") from None
        except NotFound:
            raise web.HTTPNotFound(text=f"no dataset {dataset!r} here\n") from None
        except ArchipelError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if self.face is not None:
            self.face.close()
