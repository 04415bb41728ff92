"""IVOA TAP 1.1 at ``/tap`` (sync, async UWS jobs, VOSI tables, capabilities and
availability) and Simple Cone Search 1.03 at ``/scs/<dataset>``.

ADQL is translated to the island's SQL (federation.adql) and run as the caller through the
island's gRPC API, so a TAP query reaches data held anywhere in the archipelago with the
caller's rights. TAP_SCHEMA queries run here, in DuckDB, over tables built from the
metacatalog (island.web.tapschema), with DuckDB's file access switched off."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

from archipel.errors import ArchipelError, Cancelled, InvalidArgument, NotFound
from island.web.gateway import Gateway, add_routes, http_status
from island.web.tapquery import DEFAULT_MAXREC, HARD_MAXREC, VOTABLE, TapResult, check_request, param, run_tap_query
from island.web.uws import FINAL, Job, JobStore, iso, job_xml, jobs_xml
from island.web.vosi import availability_xml, capabilities_xml, table_xml, tables_xml
from island.web.votable import ColumnMeta, column_meta, error_votable, table_to_votable

__all__ = ["TapRoutes", "TapResult", "run_tap_query", "check_request", "DEFAULT_MAXREC", "HARD_MAXREC"]

logger = logging.getLogger(__name__)


def _base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def _params(request: web.Request) -> dict[str, str]:
    out = {k: v for k, v in request.query.items()}
    if request.method == "POST":
        if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            post = await request.post()
            for k, v in post.items():
                if not isinstance(v, str):
                    raise InvalidArgument(f"parameter {k!r} is a file: UPLOAD is not supported")
                out[k] = v
        elif request.can_read_body:
            raise InvalidArgument("TAP parameters come as a form (application/x-www-form-urlencoded)")
    return out


def _xml(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/xml", charset="utf-8")


class TapRoutes:
    def __init__(self, gw: Gateway, jobs_dir: Path) -> None:
        self.gw = gw
        self.jobs = JobStore(jobs_dir)
        self._running = threading.Semaphore(8)

    ROUTES = {
        "GET": {"/tap": "landing", "/tap/": "landing", "/tap/capabilities": "capabilities",
                "/tap/availability": "availability", "/tap/tables": "tables", "/tap/tables/{name}": "table",
                "/tap/async/{id}/results/result": "result", "/scs/{dataset}": "cone_search"},
        # UWS: GET reads, POST changes (DELETE too, as UWS clients send it)
        "*": {"/tap/sync": "sync", "/tap/async": "async_list", "/tap/async/{id}": "job",
              "/tap/async/{id}/{attr}": "job_attr"},
    }

    def add(self, app: web.Application) -> None:
        add_routes(app, self, self.ROUTES)

    def _client(self, request: web.Request):
        return self.gw.client(request.headers.get("Authorization"))

    async def landing(self, request: web.Request) -> web.Response:
        base = _base(request)
        return web.Response(text=f"Archipel TAP service: {base}/tap (sync, async, tables, capabilities, "
                                 f"availability). Point TOPCAT or pyvo at {base}/tap.\n")

    async def capabilities(self, request: web.Request) -> web.Response:
        return _xml(capabilities_xml(_base(request)))

    async def availability(self, request: web.Request) -> web.Response:
        try:
            info = await self.gw.run(self._client(request).info)
            return _xml(availability_xml(True, f"island {info['name']} serving {info['datasets']} datasets"))
        except ArchipelError as exc:
            if exc.code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
                return _xml(availability_xml(True, "the island is serving (this caller may not read its facts)"))
            return _xml(availability_xml(False, exc.message))

    async def tables(self, request: web.Request) -> web.Response:
        detail = request.query.get("detail", "max")
        if detail not in ("min", "max"):
            raise InvalidArgument("detail is min or max")
        return _xml(await self.gw.run(tables_xml, self._client(request), detail))

    async def table(self, request: web.Request) -> web.Response:
        return _xml(await self.gw.run(table_xml, self._client(request), request.match_info["name"]))

    async def sync(self, request: web.Request) -> web.Response:
        if request.method not in ("GET", "POST"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
        try:
            params = await _params(request)
            res = await self.gw.run(run_tap_query, self._client(request), params)
        except ArchipelError as exc:
            return web.Response(body=error_votable(exc.message), status=http_status(exc), content_type=VOTABLE)
        return web.Response(body=res.body, headers={"Content-Type": res.content_type})

    # -- async -------------------------------------------------------------------------------
    async def _owner(self, request: web.Request) -> tuple[Any, str, bool]:
        client = self._client(request)
        who = await self.gw.run(client.whoami)
        return client, ("anonymous" if who["anonymous"] else who["user"]), bool(who["admin"])

    async def async_list(self, request: web.Request) -> web.Response:
        client, owner, admin = await self._owner(request)
        base = f"{_base(request)}/tap/async"
        if request.method == "GET":
            phases = {p.upper() for p in request.query.getall("PHASE", [])}
            jobs = [j for j in self.jobs.jobs(owner, admin) if not phases or j.phase in phases]
            last = request.query.get("LAST")
            if last:
                try:
                    jobs = sorted(jobs, key=lambda j: -j.created)[: max(0, int(last))]
                except ValueError:
                    raise InvalidArgument("LAST is a whole number") from None
            return _xml(jobs_xml(jobs, base))
        if request.method != "POST":
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
        params = await _params(request)  # a job that cannot run fails when it runs, with the reason
        phase = param(params, "PHASE").upper()
        kept = {k.upper(): v for k, v in params.items() if k.upper() not in ("PHASE",)}
        job = self.jobs.create(owner, kept)
        if phase == "RUN":
            self._start(job, client)
        raise web.HTTPSeeOther(f"{base}/{job.id}")

    def _start(self, job: Job, client) -> None:
        if job.phase != "PENDING":
            raise InvalidArgument(f"job {job.id} is {job.phase}: only a PENDING job runs")
        abort = threading.Event()
        self.jobs.aborts[job.id] = abort
        self.jobs.update(job, phase="QUEUED")
        threading.Thread(target=self._execute, args=(job, client, abort), name=f"tap-{job.id}", daemon=True).start()

    def _execute(self, job: Job, client, abort: threading.Event) -> None:
        with self._running:
            if abort.is_set():
                return
            self.jobs.update(job, phase="EXECUTING", started=time.time())
            timer = threading.Timer(job.execution_duration, abort.set)
            timer.daemon = True
            timer.start()
            try:
                res = run_tap_query(client, job.parameters, abort, timeout=job.execution_duration)
                if abort.is_set():
                    raise Cancelled("the job was aborted")
                path = self.jobs.result_path(job)
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(res.body)
                tmp.replace(path)
                self.jobs.update(job, phase="COMPLETED", ended=time.time(), rows=res.rows, overflow=res.overflow,
                                 result_type=res.content_type)
            except Exception as exc:  # noqa: BLE001 - the job's error document says what happened
                if abort.is_set() and job.id not in [j.id for j in self.jobs.jobs(job.owner, True)]:
                    return  # deleted while running
                if abort.is_set():
                    reason = ("the job ran past its execution duration" if time.time() - (job.started or 0)
                              >= job.execution_duration else "aborted")
                    self.jobs.update(job, phase="ABORTED" if reason == "aborted" else "ERROR", ended=time.time(),
                                     error=reason)
                    if reason != "aborted":
                        self.jobs.error_path(job).write_bytes(error_votable(reason))
                    return
                message = exc.message if isinstance(exc, ArchipelError) else f"internal error: {exc}"
                if not isinstance(exc, ArchipelError):
                    logger.exception("TAP job %s failed", job.id)
                self.jobs.error_path(job).write_bytes(error_votable(message))
                self.jobs.update(job, phase="ERROR", ended=time.time(), error=message)
            finally:
                timer.cancel()
                self.jobs.aborts.pop(job.id, None)

    async def _wait(self, job: Job, request: web.Request) -> None:
        """UWS 1.1 blocking: ``WAIT=s`` returns when the phase leaves the one given (or now)."""
        raw = request.query.get("WAIT")
        if raw is None:
            return
        try:
            wait = min(float(raw), 60.0) if float(raw) >= 0 else 60.0
        except ValueError:
            raise InvalidArgument("WAIT is seconds") from None
        start_phase = request.query.get("PHASE", job.phase).upper()
        if job.phase != start_phase or job.phase in FINAL or job.phase not in ("PENDING", "QUEUED", "EXECUTING"):
            return
        end = time.monotonic() + wait
        import asyncio

        while time.monotonic() < end and job.phase == start_phase:
            await asyncio.sleep(0.05)

    async def job(self, request: web.Request) -> web.Response:
        client, owner, admin = await self._owner(request)
        job = self.jobs.get(request.match_info["id"], owner, admin)
        base = f"{_base(request)}/tap/async"
        if request.method == "GET":
            await self._wait(job, request)
            return _xml(job_xml(job, base))
        if request.method == "DELETE":
            self.jobs.delete(job)
            raise web.HTTPSeeOther(base)
        if request.method == "POST":
            params = await _params(request)
            action = param(params, "ACTION").upper()
            if action == "DELETE":
                self.jobs.delete(job)
                raise web.HTTPSeeOther(base)
            if action:
                raise InvalidArgument(f"ACTION={action[:20]!r}: the only action is DELETE")
            for k, v in params.items():
                self._set(job, k, v, client)
            raise web.HTTPSeeOther(f"{base}/{job.id}")
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST", "DELETE"])

    def _set(self, job: Job, key: str, value: str, client) -> None:
        k = key.upper()
        if k == "PHASE":
            v = value.upper()
            if v == "RUN":
                self._start(job, client)
            elif v == "ABORT":
                if job.phase in FINAL:
                    raise InvalidArgument(f"job {job.id} is {job.phase} already")
                ev = self.jobs.aborts.get(job.id)
                if ev is not None:
                    ev.set()
                self.jobs.update(job, phase="ABORTED", ended=time.time())
            else:
                raise InvalidArgument(f"PHASE={value[:20]!r}: RUN or ABORT")
        elif k == "EXECUTIONDURATION":
            self.jobs.set_duration(job, value)
        elif k == "DESTRUCTION":
            self.jobs.set_destruction(job, value)
        else:
            self.jobs.set_parameter(job, k, value)

    async def job_attr(self, request: web.Request) -> web.Response:
        client, owner, admin = await self._owner(request)
        job = self.jobs.get(request.match_info["id"], owner, admin)
        attr = request.match_info["attr"].lower()
        base = f"{_base(request)}/tap/async"
        plain = {"phase": lambda: job.phase, "quote": lambda: "", "executionduration": lambda: str(job.execution_duration),
                 "destruction": lambda: iso(job.destruction), "owner": lambda: job.owner, "runid": lambda: job.run_id}
        if request.method == "POST" and attr in ("phase", "executionduration", "destruction", "parameters"):
            params = await _params(request)
            for k, v in params.items():
                key = attr.upper() if attr != "parameters" else k
                self._set(job, key if attr != "parameters" else k, v, client)
            raise web.HTTPSeeOther(f"{base}/{job.id}")
        if request.method != "GET":
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
        if attr in plain:
            return web.Response(text=plain[attr](), content_type="text/plain")
        if attr == "parameters":
            xml = job_xml(job, base)
            start, end = xml.index("<uws:parameters>"), xml.index("</uws:parameters>") + len("</uws:parameters>")
            return _xml('<?xml version="1.0" encoding="UTF-8"?>\n' + xml[start:end].replace(
                "<uws:parameters>", '<uws:parameters xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0">', 1) + "\n")
        if attr == "results":
            xml = job_xml(job, base)
            start, end = xml.index("<uws:results>"), xml.index("</uws:results>") + len("</uws:results>")
            return _xml('<?xml version="1.0" encoding="UTF-8"?>\n' + xml[start:end].replace(
                "<uws:results>", '<uws:results xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0" '
                                 'xmlns:xlink="http://www.w3.org/1999/xlink">', 1) + "\n")
        if attr == "error":
            if job.phase != "ERROR":
                raise NotFound(f"job {job.id} is {job.phase}: it has no error")
            path = self.jobs.error_path(job)
            body = path.read_bytes() if path.is_file() else error_votable(job.error)
            return web.Response(body=body, content_type=VOTABLE)
        raise NotFound(f"a job has no {attr!r}")

    async def result(self, request: web.Request) -> web.StreamResponse:
        _, owner, admin = await self._owner(request)
        job = self.jobs.get(request.match_info["id"], owner, admin)
        if job.phase != "COMPLETED":
            raise NotFound(f"job {job.id} is {job.phase}: it has no result")
        return web.FileResponse(self.jobs.result_path(job), headers={"Content-Type": job.result_type})

    # -- Simple Cone Search ------------------------------------------------------------------
    async def cone_search(self, request: web.Request) -> web.Response:
        try:
            q = {k.upper(): v for k, v in request.query.items()}
            try:
                ra, dec, sr = float(q["RA"]), float(q["DEC"]), float(q["SR"])
            except KeyError as exc:
                raise InvalidArgument(f"cone search needs RA, DEC and SR (degrees); {exc.args[0]} is missing") from None
            except ValueError:
                raise InvalidArgument("RA, DEC and SR are numbers (degrees)") from None
            if not -90 <= dec <= 90 or sr < 0 or sr > 180 or ra != ra:
                raise InvalidArgument("DEC within [-90, 90], SR within [0, 180] degrees")
            client = self._client(request)
            name = request.match_info["dataset"]
            res = await self.gw.run(_cone_search, client, name, ra, dec, sr)
        except ArchipelError as exc:
            return web.Response(body=_scs_error(exc.message), content_type=VOTABLE)
        return web.Response(body=res, content_type=VOTABLE)


def _cone_search(client, name: str, ra: float, dec: float, sr: float) -> bytes:
    d = client.describe(name)
    if not d.ra_column:
        raise InvalidArgument(f"dataset {name!r} has no sky columns: cone search needs ra and dec")
    cols = ", ".join(f"`{f.name}`" for f in d.schema)
    sql = (f"SELECT {cols} FROM {d.name} WHERE cone(`{d.ra_column}`, `{d.dec_column}`, {ra!r}, {dec!r}, {sr!r})")
    table = client.sql(sql, direct=False).read_all()
    meta = column_meta(d.schema, d.ra_column, d.dec_column)
    for key in ("id", "source_id", "object_id", "objid", "obj_id"):
        match = next((f.name for f in d.schema if f.name.lower() == key), None)
        if match:
            meta[match] = ColumnMeta(meta[match].unit, meta[match].ucd or "meta.id;meta.main", meta[match].description)
            break
    return table_to_votable(table, meta)


def _scs_error(message: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<VOTABLE version="1.4" '
            'xmlns="http://www.ivoa.net/xml/VOTable/v1.3">\n'
            f' <INFO name="Error" value="{escape(message, {chr(34): "&quot;"})}"/>\n'
            ' <RESOURCE type="results">\n'
            f'  <INFO name="QUERY_STATUS" value="ERROR">{escape(message)}</INFO>\n </RESOURCE>\n</VOTABLE>\n').encode()
