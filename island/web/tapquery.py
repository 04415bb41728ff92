"""A TAP query, apart from HTTP: the request's parameters checked (REQUEST, LANG, QUERY, FORMAT,
MAXREC), the ADQL translated and run as the caller through the island's client (TAP_SCHEMA in
DuckDB here), and the result written in the format asked for."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pyarrow as pa

from archipel.errors import Cancelled, InvalidArgument
from federation.adql import translate
from island.web.api import columns_meta
from island.web.formats import ResultWriter
from island.web.tapschema import tap_schema_tables
from island.web.votable import ColumnMeta, table_to_votable

__all__ = ["TapResult", "run_tap_query", "check_request", "DEFAULT_MAXREC", "HARD_MAXREC", "XML", "VOTABLE", "param"]

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


@dataclass(frozen=True)
class TapResult:
    body: bytes
    content_type: str
    rows: int
    overflow: bool


def param(params: dict[str, str], name: str, default: str = "") -> str:
    for k, v in params.items():
        if k.upper() == name:
            return v
    return default


def _format(params: dict[str, str]) -> tuple[str, str, str]:
    raw = param(params, "RESPONSEFORMAT") or param(params, "FORMAT") or "votable"
    key = raw.strip().lower().replace(" ", "").replace('"', "")
    if key not in _FORMATS:
        raise InvalidArgument(f"RESPONSEFORMAT {raw[:60]!r} is not served: one of votable, votable/td, votable/b2, "
                              f"csv, parquet")
    return _FORMATS[key]


def _maxrec(params: dict[str, str]) -> int:
    raw = param(params, "MAXREC")
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
    request = param(params, "REQUEST", "doQuery")
    if request.lower() != "doquery":
        raise InvalidArgument(f"REQUEST={request[:40]!r} is not supported: use REQUEST=doQuery")
    lang = param(params, "LANG", "ADQL")
    if lang.upper() not in ("ADQL", "ADQL-2.0", "ADQL-2.1"):
        raise InvalidArgument(f"LANG={lang[:40]!r} is not supported: this service speaks ADQL")
    if param(params, "UPLOAD"):
        raise InvalidArgument("UPLOAD is not supported by this service")
    query = param(params, "QUERY")
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
