"""``/api/v1``: the archipelago as JSON and Arrow over HTTP, for browsers and scripts.

Each handler reads its parameters, calls the island's gRPC API as the caller (see gateway)
and writes the answer; results stream batch by batch in the format asked for."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import web

from archipel.errors import ArchipelError, InvalidArgument
from archipel.types import ROUTE_VALUES, DatasetInfo
from island.web.formats import EXTENSIONS, ResultWriter, check_format
from island.web.gateway import Gateway, add_routes
from island.web.votable import column_meta

__all__ = ["ApiRoutes", "dataset_json", "stream_result"]

logger = logging.getLogger(__name__)

OPENAPI = Path(__file__).with_name("openapi.json")
MAX_SQL = 1_000_000


def _float(v: float) -> float | None:
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


def dataset_json(d: DatasetInfo, partitions: bool = False) -> dict[str, Any]:
    meta = column_meta(d.schema, d.ra_column, d.dec_column)
    out = {
        "name": d.name, "origin": d.origin, "kind": d.kind, "num_rows": d.num_rows, "num_bytes": d.num_bytes,
        "num_partitions": d.num_partitions, "ra_column": d.ra_column, "dec_column": d.dec_column,
        "sky_fraction": d.sky_fraction, "moc": d.moc, "created": d.created, "owner": d.owner,
        "readers": list(d.readers), "public_after": d.public_after, "hats_properties": d.hats_properties,
        "hats_urls": list(d.hats_urls),
        "schema": [{"name": f.name, "type": str(f.type), "nullable": f.nullable, "unit": meta[f.name].unit,
                    "ucd": meta[f.name].ucd, "description": meta[f.name].description} for f in d.schema],
    }
    if partitions:
        islands: dict[str, int] = {}
        for p in d.partitions:
            for i in p.islands:
                islands[i] = islands.get(i, 0) + 1
        out["held_by"] = islands  # island -> partitions it holds (the origin holds them all)
        out["partitions"] = [{"path": p.path, "num_rows": p.num_rows, "num_bytes": p.num_bytes, "order": p.order,
                              "pixel": p.pixel, "islands": p.islands} for p in d.partitions]
    return out


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(data, default=str, allow_nan=False).encode(), status=status,
                        content_type="application/json")


async def params_of(request: web.Request) -> dict[str, Any]:
    """Query-string parameters, with a JSON (or form) body's on top for POST."""
    out: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        ctype = request.content_type
        if ctype == "application/json":
            try:
                body = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InvalidArgument(f"the body is not JSON: {exc}") from None
            if not isinstance(body, dict):
                raise InvalidArgument("the JSON body must be an object, like {\"sql\": \"SELECT ...\"}")
            out.update(body)
        elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            out.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        else:
            text = await request.text()
            if text.strip():
                out.setdefault("sql", text)
    return out


def _int(params: dict[str, Any], key: str, default: int = 0, high: int = 2**62) -> int:
    value = params.get(key, default)
    if value in (None, ""):
        return default
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{key} must be a whole number, not {str(value)[:40]!r}") from None
    if not 0 <= n <= high:
        raise InvalidArgument(f"{key} must be between 0 and {high}")
    return n


def _str(params: dict[str, Any], key: str, default: str = "", max_len: int = 4096) -> str:
    value = params.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise InvalidArgument(f"{key} must be a string")
    if len(value) > max_len:
        raise InvalidArgument(f"{key} is longer than {max_len} characters")
    return value


async def stream_result(request: web.Request, gw: Gateway, client, sql: str, *, route: str = "auto",
                        fmt: str = "arrow", limit: int = 0, max_rows: int = 0, filename: str = "result",
                        writer: ResultWriter | None = None, timeout: float | None = None) -> web.StreamResponse:
    """Runs ``sql`` as the caller and streams its result. Errors before the first byte are
    JSON with their status; after it, the stream is cut (a JSON lines result ends with an
    ``{"error": ...}`` line) so that no reader takes a partial result for a whole one."""
    writer = writer or ResultWriter(fmt)
    result = await gw.run(client.sql, sql, route, timeout, max_rows=max_rows, query_id=uuid.uuid4().hex)
    resp = web.StreamResponse(headers={
        "Content-Type": writer.content_type, "X-Archipel-Query-Id": result.query_id,
        "Content-Disposition": f'inline; filename="{filename}.{EXTENSIONS[writer.fmt]}"'})
    done = False
    try:
        await resp.prepare(request)
        await resp.write(writer.begin(result.schema))
        it = iter(result)
        rows = 0
        while True:
            batch = await gw.run(next, it, None)
            if batch is None:
                break
            if limit and rows + batch.num_rows >= limit:
                batch = batch.slice(0, limit - rows)
                rows = limit
                await resp.write(writer.write(batch))
                break
            rows += batch.num_rows
            await resp.write(writer.write(batch))
        await resp.write(writer.end())
        await resp.write_eof()
        done = True
        return resp
    except ArchipelError as exc:
        logger.info("query %s failed mid-stream: %s", result.query_id, exc)
        if writer.fmt == "json":
            try:
                await resp.write(json.dumps({"error": {"code": exc.code, "message": exc.message}}).encode() + b"\n")
            except (ConnectionError, RuntimeError):
                pass
        if request.transport is not None:
            request.transport.close()  # no final chunk: the reader sees a cut stream
        return resp
    except (ConnectionError, asyncio.CancelledError):
        raise
    finally:
        if not done:
            await gw.run(result.cancel)


def columns_meta(client, sql: str) -> dict:
    """Units, UCDs and descriptions of the columns of the datasets ``sql`` reads (by name)."""
    from federation.planner import referenced_datasets

    out: dict = {}
    for name in sorted(referenced_datasets(sql) or ()):
        try:
            d = client.describe(name)
        except ArchipelError:
            continue  # the query's own error says why
        for col, m in column_meta(d.schema, d.ra_column, d.dec_column).items():
            out.setdefault(col, m)
    return out


class ApiRoutes:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    ROUTES = {
        "GET": {f"/api/v1/{path}": handler for path, handler in [
            ("openapi.json", "openapi"), ("island", "island"), ("whoami", "whoami"), ("datasets", "datasets"),
            ("datasets/{name}", "describe"), ("datasets/{name}/coverage", "coverage"), ("subscribe", "subscribe"),
            ("subscriptions", "subscriptions"), ("peers", "peers"), ("rules", "rules"), ("cache", "cache")]},
        "*": {"/api/v1/query": "query", "/api/v1/explain": "explain"},  # GET or POST
    }

    def add(self, app: web.Application) -> None:
        add_routes(app, self, self.ROUTES)

    def _client(self, request: web.Request):
        return self.gw.client(request.headers.get("Authorization"))

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=OPENAPI.read_bytes(), content_type="application/json")

    async def island(self, request: web.Request) -> web.Response:
        info = await self.gw.run(self._client(request).info)
        return json_response(info)

    async def whoami(self, request: web.Request) -> web.Response:
        return json_response(await self.gw.run(self._client(request).whoami))

    async def datasets(self, request: web.Request) -> web.Response:
        pattern = _str(dict(request.query), "pattern", max_len=256)
        found = await self.gw.run(self._client(request).datasets, pattern)
        return json_response({"datasets": [dataset_json(d) for d in found]})

    async def describe(self, request: web.Request) -> web.Response:
        d = await self.gw.run(self._client(request).describe, request.match_info["name"])
        return json_response(dataset_json(d, partitions=request.query.get("partitions", "1") != "0"))

    async def coverage(self, request: web.Request) -> web.Response:
        from metacatalog.sky import moc_outline

        d = await self.gw.run(self._client(request).describe, request.match_info["name"])
        cells = await self.gw.run(moc_outline, d.moc, _int(dict(request.query), "max_cells", 3072, 20000))
        return json_response({"dataset": d.name, "moc": d.moc, "sky_fraction": d.sky_fraction, "cells": cells})

    async def query(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "POST"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
        p = await params_of(request)
        sql = _str(p, "sql", max_len=MAX_SQL)
        if not sql.strip():
            raise InvalidArgument("no SQL: pass sql=SELECT ... (query string) or {\"sql\": ...} (JSON body)")
        route = _str(p, "route", "auto", 32) or "auto"
        if route not in ROUTE_VALUES:
            raise InvalidArgument(f"route must be one of {', '.join(ROUTE_VALUES)}, not {route!r}")
        fmt = check_format(_str(p, "format", "arrow", 32))
        timeout = float(_int(p, "timeout", 0, 86400)) or None
        client = self._client(request)
        writer = None
        if fmt == "votable":  # units, UCDs and descriptions of the columns the datasets have
            writer = ResultWriter(fmt, meta=await self.gw.run(columns_meta, client, sql))
        return await stream_result(request, self.gw, client, sql, route=route, fmt=fmt, limit=_int(p, "limit"),
                                   max_rows=_int(p, "max_rows"), timeout=timeout, writer=writer)

    async def explain(self, request: web.Request) -> web.Response:
        p = await params_of(request)
        sql = _str(p, "sql", max_len=MAX_SQL)
        route = _str(p, "route", "auto", 32) or "auto"
        plan = await self.gw.run(self._client(request).explain, sql, route)
        return json_response(asdict(plan) | {"text": str(plan)})

    async def subscriptions(self, request: web.Request) -> web.Response:
        subs = await self.gw.run(self._client(request).subscriptions)
        return json_response({"subscriptions": [asdict(s) for s in subs]})

    async def peers(self, request: web.Request) -> web.Response:
        return json_response({"peers": await self.gw.run(self._client(request).peers)})

    async def rules(self, request: web.Request) -> web.Response:
        rules = await self.gw.run(self._client(request).rules)
        return json_response({"rules": [asdict(r) for r in rules]})

    async def cache(self, request: web.Request) -> web.Response:
        c = await self.gw.run(self._client(request).cache)
        return json_response(asdict(c))

    async def subscribe(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events of a subscription: ``event: started`` then one ``event: event``
        (events mode) or ``event: rows`` (rows mode, the rows as JSON records) per item, each
        with its cursor as ``id``. Reconnecting with ``Last-Event-ID`` (or ``start_at``)
        resumes after it; a ``name`` makes the cursor durable at the island."""
        q = dict(request.query)
        pattern = (_str(q, "dataset", max_len=256) or _str(q, "pattern", max_len=256)
                   or _str(q, "dataset_pattern", max_len=256))
        if not pattern:
            raise InvalidArgument("subscribe needs dataset=PATTERN (a dataset name or glob)")
        cone = None
        if not q.get("cone") and any(q.get(k) for k in ("ra", "dec", "radius")):
            q["cone"] = ",".join(_str(q, k, max_len=30) for k in ("ra", "dec", "radius"))
        if q.get("cone"):
            try:
                cone = tuple(float(x) for x in _str(q, "cone", max_len=100).split(","))
            except ValueError:
                raise InvalidArgument("cone is ra,dec,radius in degrees") from None
            if len(cone) != 3:
                raise InvalidArgument("cone is ra,dec,radius in degrees")
        columns = [c for c in _str(q, "columns", max_len=4096).split(",") if c.strip()] or None
        mode = _str(q, "mode", "events", 16) or "events"
        if mode not in ("events", "rows"):
            raise InvalidArgument("mode over HTTP is 'events' or 'rows'")
        start = request.headers.get("Last-Event-ID") or _str(q, "start_at", "latest", 32) or "latest"
        name = _str(q, "name", max_len=128) or None
        where = _str(q, "where", max_len=65536) or None
        client = self._client(request)
        sub = await self.gw.run(client.subscribe, pattern, where, cone=cone, columns=columns, mode=mode,
                                start_at=start, name=name, reconnect=0)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        pending: asyncio.Future | None = None
        try:
            await resp.prepare(request)
            await resp.write(_sse("started", asdict(sub.info)))
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(self.gw.run(next, sub, None))
                done, _ = await asyncio.wait({pending}, timeout=15.0)
                if not done:
                    await resp.write(b": keep-alive\n\n")  # finds a client that went away
                    continue
                item, pending = pending.result(), None
                if item is None:
                    break
                await resp.write(_sse(*_item_json(item)))
            return resp
        except ArchipelError as exc:
            try:
                await resp.write(_sse("error", {"code": exc.code, "message": exc.message}))
            except (ConnectionError, RuntimeError):
                pass
            return resp
        finally:
            sub.stop(grace=1.0)
            if pending is not None:
                pending.cancel()


def _item_json(item) -> tuple[str, dict[str, Any], int]:
    from archipel.subscription import RowBatch

    if isinstance(item, RowBatch):
        ev = item.event
        rows = item.batch.to_pylist()
        return "rows", {"cursor": ev.cursor, "dataset": ev.dataset, "island": ev.island, "op": ev.op,
                        "rows": [{k: (_float(v) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
                        "timestamp": ev.timestamp}, ev.cursor
    return "event", asdict(item), item.cursor


def _sse(event: str, data: dict[str, Any], ident: int | None = None) -> bytes:
    text = json.dumps(data, default=str)
    head = f"id: {ident}\n" if ident is not None else ""
    return f"{head}event: {event}\ndata: {text}\n\n".encode()
