"""The island's web face, mounted on its HTTP port beside ``/data``: ``/`` (the web page),
``/api/v1`` (JSON/Arrow), ``/tap`` and ``/scs`` (IVOA), ``/hats`` (HATS over HTTP).

One middleware turns every error into an answer that says what was wrong, in the form the
route's clients read (JSON for the API, a VOTable for TAP), with the status that fits; an
unexpected failure is logged and answered 500, and the island keeps serving."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from aiohttp import web

from archipel.errors import ArchipelError, InvalidArgument
from island.web.api import ApiRoutes
from island.web.gateway import Gateway, http_status
from island.web.hats import HatsView
from island.web.tap import TapRoutes
from island.web.votable import error_votable

__all__ = ["WebFace", "MAX_BODY_BYTES"]

logger = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
MAX_BODY_BYTES = 4 * 1024 * 1024
_FAMILIES = {"api", "tap", "scs", "hats", "data", "static", "metrics", "page"}


def _error_response(request: web.Request, status: int, code: str, message: str) -> web.Response:
    path = request.path
    if path.startswith("/tap") or path.startswith("/scs"):
        return web.Response(body=error_votable(message), status=status, content_type="application/x-votable+xml")
    body = json.dumps({"error": {"code": code, "status": status, "message": message}}).encode()
    return web.Response(body=body, status=status, content_type="application/json",
                        headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)


@web.middleware
async def errors(request: web.Request, handler):
    try:
        return await handler(request)
    except ArchipelError as exc:
        return _error_response(request, http_status(exc), exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 413:
            message = f"the request body is larger than {MAX_BODY_BYTES} bytes"
        else:
            message = exc.text or exc.reason
            if exc.status == 404 and (not exc.text or exc.text.startswith("404")):
                message = f"no route {request.method} {request.path[:200]} (see /api/v1/openapi.json)"
        return _error_response(request, exc.status, f"HTTP_{exc.status}", message.strip())
    except (ConnectionError, RuntimeError) as exc:
        if request.transport is None or request.transport.is_closing():
            raise  # the client went away
        logger.exception("HTTP %s %s failed", request.method, request.path)
        return _error_response(request, 500, "INTERNAL", f"internal error: {exc}")
    except Exception as exc:  # noqa: BLE001 - answered, logged, and the island goes on
        logger.exception("HTTP %s %s failed", request.method, request.path)
        return _error_response(request, 500, "INTERNAL", f"internal error: {type(exc).__name__}: {exc}")


class WebFace:
    """Adds the web routes to the island's HTTP application."""

    def __init__(self, gateway: Gateway, hats: HatsView, jobs_dir: Path, authorize, metrics=None,
                 gate=None) -> None:
        self.gw = gateway
        self.hats = hats
        self.metrics = metrics  # island.metrics.IslandMetrics
        self.gate = gate
        self.authorize = authorize  # (request, dataset) -> None, raising HTTP 401/403/404
        self.api = ApiRoutes(gateway)
        self.tap = TapRoutes(gateway, jobs_dir)

    def install(self, app: web.Application) -> None:
        if self.metrics is not None:
            app.middlewares.append(self._counted)
        app.middlewares.append(errors)
        self.api.add(app)
        self.tap.add(app)
        app.router.add_get("/hats/{dataset}", self.hats_root)
        app.router.add_get("/hats/{dataset}/{path:.*}", self.hats_file)
        app.router.add_get("/", self.page)
        if self.metrics is not None:
            app.router.add_get("/metrics", self.metrics_page)
        app.router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)

    @web.middleware
    async def _counted(self, request: web.Request, handler):
        family = request.path.strip("/").split("/", 1)[0] or "page"
        if family not in _FAMILIES:
            family = "other"
        status = 500
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self.metrics.http.labels(family, str(status)).inc()

    async def metrics_page(self, request: web.Request) -> web.Response:
        """Prometheus' text format, for an admin's token, a token with the ``metrics`` right,
        or an island of the archipelago (its certificate)."""
        from archipel.errors import PermissionDenied
        from island.metrics import CONTENT_TYPE

        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:
            self.gate.island_of_der(der)
        else:
            caller = self.gate.caller_from_header(request.headers.get("Authorization"))
            if not caller.has("metrics"):
                raise PermissionDenied(f"{caller.name} may not read the island's metrics: they need an admin's "
                                       f"token or the 'metrics' right (archipel tokens create --right metrics)")
        body = await self.gw.run(self.metrics.exposition)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def page(self, request: web.Request) -> web.Response:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def hats_root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently(f"/hats/{request.match_info['dataset']}/")

    async def hats_file(self, request: web.Request) -> web.StreamResponse:
        from archipel.names import check_dataset_name

        name = check_dataset_name(request.match_info["dataset"])
        path = request.match_info["path"]
        if ".." in path.split("/") or "\\" in path or "\x00" in path or len(path) > 512:
            raise InvalidArgument(f"malformed HATS path {path[:80]!r}")
        self.authorize(request, name)
        served = await self.gw.run(self.hats.serve, name, path)
        if served.path is not None:
            return web.FileResponse(served.path, chunk_size=1 << 20)
        return _bytes_response(request, served.data or b"", served.content_type)

    def close(self) -> None:
        self.gw.close()


def _bytes_response(request: web.Request, data: bytes, content_type: str) -> web.Response:
    """``data`` whole, or the one byte range asked for (206), as file servers answer."""
    rng = request.http_range
    headers = {"Accept-Ranges": "bytes", "Content-Type": content_type}
    if rng.start is None and rng.stop is None:
        return web.Response(body=data, headers=headers)
    start, stop, _ = rng.indices(len(data))
    if start >= len(data):
        return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
    headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
    return web.Response(body=data[start:stop], status=206, headers=headers)
