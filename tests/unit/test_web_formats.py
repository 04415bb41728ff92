"""Result writers (every format read back by its own reader), VOTable marks, TAP_SCHEMA
names, UWS job records and the HTTP status of each error code."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from archipel.errors import InvalidArgument, NotFound, PermissionDenied, error_for_code
from island.web.formats import FORMATS, ResultWriter, check_format
from island.web.gateway import STATUS, bearer_token, http_status
from island.web.tapschema import adql_name, tap_schema_tables
from island.web.uws import JobStore, job_xml, jobs_xml, parse_iso
from island.web.votable import ColumnMeta, column_meta, table_to_votable

TABLE = pa.table({"id": pa.array([1, 2, None], pa.int64()), "x": [1.5, None, -2.0], "s": ["a", None, "é"],
                  "b": [True, False, None]})


def _write(fmt: str, table: pa.Table, chunk: int = 2, **kw) -> bytes:
    w = ResultWriter(fmt, **kw)
    out = w.begin(table.schema)
    for b in table.to_batches(max_chunksize=chunk):
        out += w.write(b)
    return out + w.end()


def test_every_format_reads_back():
    assert pa.ipc.open_stream(_write("arrow", TABLE)).read_all().equals(TABLE)
    assert pq.read_table(pa.BufferReader(_write("parquet", TABLE))).equals(TABLE)
    csv = pacsv.read_csv(pa.BufferReader(_write("csv", TABLE)))
    assert csv["id"].to_pylist() == [1, 2, None] and csv["s"].to_pylist() == ["a", "", "é"]  # CSV has no null string
    lines = [json.loads(x) for x in _write("json", TABLE).decode().splitlines()]
    assert lines == TABLE.to_pylist()
    from astropy.io.votable import parse_single_table

    t = parse_single_table(io.BytesIO(_write("votable", TABLE))).to_table()
    assert list(t["s"].filled("")) == ["a", "", "é"] and bool(t["id"].mask[2])
    empty = TABLE.slice(0, 0)
    assert pa.ipc.open_stream(_write("arrow", empty)).read_all().schema == TABLE.schema


def test_json_has_no_nan_and_unknown_formats_are_refused():
    t = pa.table({"x": [float("nan"), float("inf"), 1.0]})
    assert [json.loads(x)["x"] for x in _write("json", t).decode().splitlines()] == [None, None, 1.0]
    with pytest.raises(InvalidArgument, match="unknown format 'xlsx'"):
        check_format("xlsx")
    assert set(FORMATS) == {"arrow", "parquet", "csv", "json", "votable"}


def test_votable_has_units_ucds_and_marks_overflow_after_the_table():
    schema = pa.schema([pa.field("ra", pa.float64()), pa.field("dec", pa.float64()),
                        pa.field("m", pa.float32(), metadata={"unit": "mag", "ucd": "phot.mag"})])
    meta = column_meta(schema, "ra", "dec")
    assert meta["ra"] == ColumnMeta("deg", "pos.eq.ra;meta.main") and meta["m"].unit == "mag"
    t = pa.table([[1.0], [2.0], pa.array([3.0], pa.float32())], schema=schema)
    doc = table_to_votable(t, meta, overflow=True, serialization="tabledata").decode()
    assert 'ucd="pos.eq.dec;meta.main"' in doc and 'unit="mag"' in doc and "<TABLEDATA>" in doc
    assert doc.index('value="OVERFLOW"') > doc.index("</TABLE>") > doc.index('value="OK"')
    assert "OVERFLOW" not in table_to_votable(t, meta).decode()


def test_tap_schema_names_and_self_description():
    assert adql_name("ra") == "ra" and adql_name("dec") == '"dec"' and adql_name("_healpix_29") == '"_healpix_29"'
    assert adql_name('we"ird') == '"we""ird"'
    tables = tap_schema_tables([])
    names = set(tables["tables"]["table_name"].to_pylist())
    assert names == {f"TAP_SCHEMA.{t}" for t in ("schemas", "tables", "columns", "keys", "key_columns")}
    keys = tables["keys"].to_pylist()
    assert {k["from_table"] for k in keys} == {"TAP_SCHEMA.tables", "TAP_SCHEMA.columns", "TAP_SCHEMA.keys",
                                               "TAP_SCHEMA.key_columns"}


def test_every_error_code_has_a_fitting_status():
    want = {"INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404,
            "RESOURCE_EXHAUSTED": 429, "UNAVAILABLE": 503, "FAILED_PRECONDITION": 503}
    for code, status in want.items():
        assert http_status(error_for_code(code, "x")) == status
    assert set(want) <= set(STATUS)
    assert bearer_token(None) == "" and bearer_token("Bearer abc") == "abc"
    for bad in ("Basic abc", "Bearer", "Bearer a b", "Bearer \x01"):
        with pytest.raises(Exception, match="Bearer|malformed"):
            bearer_token(bad)


def test_uws_jobs_are_owned_kept_and_recovered(tmp_path):
    store = JobStore(tmp_path / "jobs")
    job = store.create("alice", {"QUERY": "SELECT 1", "LANG": "ADQL"})
    assert store.get(job.id, "alice").phase == "PENDING"
    with pytest.raises(NotFound):
        store.get(job.id, "bob")  # another's job is not revealed
    assert store.get(job.id, "bob", admin=True) is job
    store.update(job, phase="EXECUTING")
    again = JobStore(tmp_path / "jobs")  # the island restarted mid-job
    recovered = again.get(job.id, "alice")
    assert recovered.phase == "ERROR" and "stopped" in recovered.error
    xml = job_xml(recovered, "https://h/tap/async")
    assert "<uws:phase>ERROR</uws:phase>" in xml and "<uws:errorSummary" in xml
    assert 'id="' + job.id + '"' in jobs_xml(again.jobs("alice"), "https://h/tap/async")
    with pytest.raises(InvalidArgument, match="PENDING"):
        again.set_parameter(recovered, "QUERY", "SELECT 2")
    with pytest.raises(InvalidArgument, match="ISO 8601"):
        parse_iso("tomorrow")
    (tmp_path / "jobs" / "broken").mkdir()
    (tmp_path / "jobs" / "broken" / "job.json").write_text("{half")
    JobStore(tmp_path / "jobs")
    assert not (tmp_path / "jobs" / "broken").exists()  # a half-written record is dropped
    again.delete(recovered)
    assert not (tmp_path / "jobs" / job.id).exists()
    with pytest.raises(PermissionDenied):
        big = JobStore(tmp_path / "many")
        for _ in range(1001):
            big.create("eve", {"QUERY": "x"})
