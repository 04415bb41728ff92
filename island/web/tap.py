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
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pyarrow as pa
from aiohttp import web

from archipel.errors import ArchipelError, Cancelled, InvalidArgument, NotFound
from federation.adql import translate
from island.web.api import columns_meta
from island.web.formats import ResultWriter
from island.web.gateway import Gateway, http_status
from island.web.tapschema import adql_name, schema_of, tap_schema_tables
from island.web.uws import FINAL, Job, JobStore, iso, job_xml, jobs_xml
from island.web.votable import ColumnMeta, column_meta, error_votable, table_to_votable, votable_type

__all__ = ["TapRoutes", "TapResult", "run_tap_query", "DEFAULT_MAXREC", "HARD_MAXREC"]

logger = logging.getLogger(__name__)

DEFAULT_MAXREC = 100_000
HARD_MAXREC = 5_000_000
XML = "text/xml; charset=utf-8"
VOTABLE = "application/x-votable+xml"
# RESPONSEFORMAT values: (writer format, VOTable serialization, content type)
_FORMATS = {
    "votable": ("votable", "binary2", VOTABLE), "application/x-votable+xml": ("votable", "binary2", VOTABLE),
    "text/xml": ("votable", "binary2", VOTABLE), "votable/b2": ("votable", "binary2", VOTABLE),
    "application/x-votable+xml;serialization=binary2": ("votable", "binary2", VOTABLE),
    "votable/td": ("votable", "tabledata", VOTABLE),
    "application/x-votable+xml;serialization=tabledata": ("votable", "tabledata", VOTABLE),
    "csv": ("csv", "", "text/csv; charset=utf-8"), "text/csv": ("csv", "", "text/csv; charset=utf-8"),
    "parquet": ("parquet", "", "application/vnd.apache.parquet"),
}
_GEO = ("POINT", "CIRCLE", "BOX", "POLYGON", "CONTAINS", "INTERSECTS", "DISTANCE")


@dataclass(frozen=True)
class TapResult:
    body: bytes
    content_type: str
    rows: int
    overflow: bool


def _param(params: dict[str, str], name: str, default: str = "") -> str:
    for k, v in params.items():
        if k.upper() == name:
            return v
    return default


def _format(params: dict[str, str]) -> tuple[str, str, str]:
    raw = _param(params, "RESPONSEFORMAT") or _param(params, "FORMAT") or "votable"
    key = raw.strip().lower().replace(" ", "").replace('"', "")
    if key not in _FORMATS:
        raise InvalidArgument(f"RESPONSEFORMAT {raw[:60]!r} is not served: one of votable, votable/td, votable/b2, "
                              f"csv, parquet")
    return _FORMATS[key]


def _maxrec(params: dict[str, str]) -> int:
    raw = _param(params, "MAXREC")
    if raw == "":
        return DEFAULT_MAXREC
    try:
        n = int(raw)
    except ValueError:
        raise InvalidArgument(f"MAXREC must be a whole number, not {raw[:40]!r}") from None
    if n < 0:
        raise InvalidArgument("MAXREC must not be negative")
    return min(n, HARD_MAXREC)


def check_request(params: dict[str, str]) -> str:
    """The ADQL query of a TAP request; InvalidArgument for a request this service does not run."""
    request = _param(params, "REQUEST", "doQuery")
    if request.lower() != "doquery":
        raise InvalidArgument(f"REQUEST={request[:40]!r} is not supported: use REQUEST=doQuery")
    lang = _param(params, "LANG", "ADQL")
    if lang.upper() not in ("ADQL", "ADQL-2.0", "ADQL-2.1"):
        raise InvalidArgument(f"LANG={lang[:40]!r} is not supported: this service speaks ADQL")
    if _param(params, "UPLOAD"):
        raise InvalidArgument("UPLOAD is not supported by this service")
    query = _param(params, "QUERY")
    if not query.strip():
        raise InvalidArgument("no QUERY given")
    _format(params)
    _maxrec(params)
    return query


def _tap_schema_query(client, sql: str, limit: int) -> pa.Table:
    import duckdb

    tables = tap_schema_tables(client.datasets())
    con = duckdb.connect(":memory:")
    try:
        con.execute("CREATE SCHEMA tap_schema")
        for name, table in tables.items():
            con.register(f"_ts_{name}", table)
            con.execute(f'CREATE VIEW tap_schema."{name}" AS SELECT * FROM "_ts_{name}"')
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        try:
            table = con.sql(sql).to_arrow_table()
            return table.slice(0, limit + 1)
        except duckdb.Error as exc:
            raise InvalidArgument(f"invalid TAP_SCHEMA query: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()


def run_tap_query(client, params: dict[str, str], abort: threading.Event | None = None,
                  timeout: float | None = None) -> TapResult:
    """Runs a TAP request's ADQL as the caller: the result document, at most MAXREC rows,
    marked OVERFLOW when there were more."""
    adql = check_request(params)
    fmt, serialization, ctype = _format(params)
    maxrec = _maxrec(params)
    q = translate(adql)
    if q.tap_schema:
        table = _tap_schema_query(client, q.duckdb_sql, maxrec)
        meta: dict[str, ColumnMeta] = {}
    else:
        result = client.sql(q.sql, "auto", timeout, direct=False)
        batches, rows = [], 0
        try:
            for batch in result:
                if abort is not None and abort.is_set():
                    raise Cancelled("the job was aborted")
                batches.append(batch)
                rows += batch.num_rows
                if rows > maxrec:
                    break
        finally:
            if result.stats is None:
                result.cancel()
        table = pa.Table.from_batches(batches, schema=result.schema)
        meta = columns_meta(client, q.sql)
    overflow = table.num_rows > maxrec
    table = table.slice(0, maxrec)
    if fmt == "votable":
        body = table_to_votable(table, meta, overflow=overflow, serialization=serialization)
    else:
        w = ResultWriter(fmt)
        body = w.begin(table.schema) + b"".join(w.write(b) for b in table.to_batches()) + w.end()
    return TapResult(body, ctype, table.num_rows, overflow)


# -- VOSI documents --------------------------------------------------------------------------
def capabilities_xml(base: str) -> str:
    feats = "".join(f"        <feature><form>{g}</form></feature>\n" for g in _GEO)
    fmts = [("ivo://ivoa.net/std/TAPRegExt#output-votable-binary2", f"{VOTABLE};serialization=BINARY2", "votable"),
            ("ivo://ivoa.net/std/TAPRegExt#output-votable-td", f"{VOTABLE};serialization=TABLEDATA", "votable/td"),
            ("", "text/csv", "csv"), ("", "application/vnd.apache.parquet", "parquet")]
    out_formats = "".join(
        f'    <outputFormat{f" ivo-id={chr(34)}{i}{chr(34)}" if i else ""}>\n      <mime>{escape(m)}</mime>\n'
        f"      <alias>{a}</alias>\n    </outputFormat>\n" for i, m, a in fmts)

    def vosi(kind: str, path: str) -> str:
        return (f'  <capability standardID="ivo://ivoa.net/std/VOSI#{kind}">\n'
                f'    <interface xsi:type="vs:ParamHTTP" role="std">\n'
                f'      <accessURL use="full">{escape(base)}/tap/{path}</accessURL>\n    </interface>\n'
                "  </capability>\n")

    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0"\n'
            '    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"\n'
            '    xmlns:vr="http://www.ivoa.net/xml/VOResource/v1.0"\n'
            '    xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1"\n'
            '    xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0">\n'
            '  <capability standardID="ivo://ivoa.net/std/TAP" xsi:type="tr:TableAccess">\n'
            '    <interface xsi:type="vs:ParamHTTP" role="std" version="1.1">\n'
            f'      <accessURL use="base">{escape(base)}/tap</accessURL>\n    </interface>\n'
            "    <language>\n      <name>ADQL</name>\n"
            '      <version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>\n'
            '      <version ivo-id="ivo://ivoa.net/std/ADQL#v2.1">2.1</version>\n'
            "      <description>ADQL translated to the island's SQL; geometry pruned by HEALPix</description>\n"
            '      <languageFeatures type="ivo://ivoa.net/std/TAPRegExt#features-adqlgeo">\n'
            f"{feats}      </languageFeatures>\n    </language>\n"
            f"{out_formats}"
            "    <retentionPeriod>\n      <default>604800</default>\n      <hard>604800</hard>\n"
            "    </retentionPeriod>\n"
            "    <executionDuration>\n      <default>3600</default>\n      <hard>86400</hard>\n"
            "    </executionDuration>\n"
            f'    <outputLimit>\n      <default unit="row">{DEFAULT_MAXREC}</default>\n'
            f'      <hard unit="row">{HARD_MAXREC}</hard>\n    </outputLimit>\n'
            "  </capability>\n"
            + vosi("capabilities", "capabilities") + vosi("availability", "availability") + vosi("tables", "tables")
            + "</vosi:capabilities>\n")


def _column_xml(f: pa.Field, meta: ColumnMeta, indexed: bool) -> str:
    datatype, arraysize, _ = votable_type(f.type)
    size = f' arraysize="{arraysize}"' if arraysize else ""
    parts = [f"        <name>{escape(adql_name(f.name))}</name>\n"]
    if meta.description:
        parts.append(f"        <description>{escape(meta.description)}</description>\n")
    if meta.unit:
        parts.append(f"        <unit>{escape(meta.unit)}</unit>\n")
    if meta.ucd:
        parts.append(f"        <ucd>{escape(meta.ucd)}</ucd>\n")
    parts.append(f'        <dataType xsi:type="vs:VOTableType"{size}>{datatype}</dataType>\n')
    if indexed:
        parts.append("        <flag>indexed</flag>\n")
    return "      <column>\n" + "".join(parts) + "      </column>\n"


def _foreign_keys(name: str) -> str:
    from island.web.tapschema import _KEYS

    return "".join(f"      <foreignKey>\n        <targetTable>TAP_SCHEMA.{t}</targetTable>\n"
                   f"        <fkColumn>\n          <fromColumn>{fc}</fromColumn>\n"
                   f"          <targetColumn>{tc}</targetColumn>\n        </fkColumn>\n      </foreignKey>\n"
                   for _, f, fc, t, tc in _KEYS if f"TAP_SCHEMA.{f}" == name)


def _table_xml(name: str, desc: str, schema: pa.Schema | None, ra: str = "", dec: str = "",
               indent: str = "    ") -> str:
    cols = ""
    if schema is not None:
        meta = column_meta(schema, ra, dec)
        cols = "".join(_column_xml(f, meta[f.name], f.name in (ra, dec)) for f in schema) + _foreign_keys(name)
    return (f'{indent}<table type="output">\n      <name>{escape(name)}</name>\n'
            f"      <description>{escape(desc)}</description>\n{cols}{indent}</table>\n")


def tables_xml(client, detail: str = "max") -> str:
    datasets = client.datasets()
    tables = tap_schema_tables(datasets)
    described = {r["table_name"]: r["description"] for r in tables["tables"].to_pylist()}
    schemas: dict[str, list[str]] = {}
    from island.web.tapschema import _TAP_COLUMNS  # the TAP_SCHEMA tables' own columns

    for name, cols in _TAP_COLUMNS.items():
        schemas.setdefault("TAP_SCHEMA", []).append(
            _table_xml(f"TAP_SCHEMA.{name}", described[f"TAP_SCHEMA.{name}"],
                       pa.schema(cols) if detail != "min" else None))
    for d in sorted(datasets, key=lambda d: d.name):
        schemas.setdefault(schema_of(d.name), []).append(
            _table_xml(d.name, described[d.name], d.schema if detail != "min" else None, d.ra_column, d.dec_column))
    body = "".join(f"  <schema>\n    <name>{escape(s)}</name>\n{''.join(ts)}  </schema>\n" for s, ts in schemas.items())
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<vosi:tableset xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0"\n'
            '    xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1"\n'
            '    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n' + body + "</vosi:tableset>\n")


def table_xml(client, name: str) -> str:
    from island.web.tapschema import _TAP_COLUMNS

    if name.lower().startswith("tap_schema."):
        short = name.split(".", 1)[1].lower()
        if short not in _TAP_COLUMNS:
            raise NotFound(f"no table {name!r}")
        inner = _table_xml(f"TAP_SCHEMA.{short}", "", pa.schema(_TAP_COLUMNS[short]), indent="")
    else:
        d = client.describe(name)
        inner = _table_xml(d.name, f"Archipel dataset {d.name}", d.schema, d.ra_column, d.dec_column, indent="")
    inner = inner.replace('<table type="output">', '<vosi:table xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" '
                          'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
                          'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" type="output">', 1)
    inner = inner[: inner.rfind("</table>")] + "</vosi:table>\n"
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + inner


def availability_xml(up: bool, note: str) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">\n'
            f"  <vosi:available>{'true' if up else 'false'}</vosi:available>\n"
            f"  <vosi:note>{escape(note)}</vosi:note>\n</vosi:availability>\n")


# -- routes --------------------------------------------------------------------------------
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

    def add(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/tap", self.landing)
        r.add_get("/tap/", self.landing)
        r.add_route("*", "/tap/sync", self.sync)
        r.add_get("/tap/capabilities", self.capabilities)
        r.add_get("/tap/availability", self.availability)
        r.add_get("/tap/tables", self.tables)
        r.add_get("/tap/tables/{name}", self.table)
        r.add_route("*", "/tap/async", self.async_list)
        r.add_route("*", "/tap/async/{id}", self.job)
        r.add_route("*", "/tap/async/{id}/{attr}", self.job_attr)
        r.add_get("/tap/async/{id}/results/result", self.result)
        r.add_get("/scs/{dataset}", self.cone_search)

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
        phase = _param(params, "PHASE").upper()
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
            action = _param(params, "ACTION").upper()
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
