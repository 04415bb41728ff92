"""The archipelago without installing anything, tried on real islands with clients nobody here
wrote: curl on every API route and format, pyvo (sync and async TAP, TAP_SCHEMA, tables, cone
search), STILTS taplint, lsdb over HTTP, and the web page in Debian's headless chromium.

Island wa holds the data; wb follows it and holds none, so every query at wb reaches wa
through the federation. Truth rows are computed here from the tables published."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from archipel.errors import ArchipelError
from islands import SHARED_HATS, IslandProcess, archipelago, wait_for

pytestmark = pytest.mark.integration

CONFIG = "[spark]\nstart = false\n[security]\nanonymous = \"read-public\"\n[ingest]\npartition_rows = 700\n"
# Screenshots and the taplint report, kept after the run (CI may collect the folder).
ARTIFACTS = Path(os.environ.get("ARCHIPEL_TEST_ARTIFACTS", Path(tempfile.gettempdir()) / "archipel-test-artifacts")) / "web"
FORMATS = ("arrow", "parquet", "csv", "json", "votable")


def _stars(n: int, seed: int, start: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    fields = [pa.field("id", pa.int64()), pa.field("ra", pa.float64(), metadata={"unit": "deg"}),
              pa.field("dec", pa.float64(), metadata={"unit": "deg"}),
              pa.field("mag", pa.float32(), metadata={"unit": "mag", "ucd": "phot.mag;em.opt.V",
                                                      "description": "V magnitude"}),
              pa.field("name", pa.string())]
    return pa.table([pa.array(np.arange(start, start + n), pa.int64()), pa.array(ra), pa.array(dec),
                     pa.array(rng.uniform(5, 20, n).astype(np.float32)),
                     pa.array([f"star-{i}" for i in range(start, start + n)])], schema=pa.schema(fields))


def _sep(ra1, dec1, ra2, dec2):
    r1, d1, r2, d2 = map(np.radians, (ra1, dec1, ra2, dec2))
    h = np.sin((d1 - d2) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((r1 - r2) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.minimum(1.0, h))))


def _in_cone(t: pa.Table, ra0, dec0, r) -> set[int]:
    sep = _sep(t["ra"].to_numpy(), t["dec"].to_numpy(), ra0, dec0)
    return set(np.asarray(t["id"])[sep <= r].tolist())


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    wa = IslandProcess(root / "wa", "wa", extra_config=CONFIG).start()
    wb = IslandProcess(root / "wb", "wb", extra_config=CONFIG + f'[federation]\npeers = ["{wa.address}"]\n'
                       "[limits]\nsubscriptions = 2\n").start()
    arch = archipelago()
    tokens = {"alice": arch.token("alice"), "bob": arch.token("bob")}
    stars = _stars(3000, 7)
    with wa.client() as c:
        c.publish("web.stars", stars, ra="ra", dec="dec")
        c.ingest(str(SHARED_HATS / "small_sky_source"), "web.sky_source")
    with wa.client(tokens["alice"]) as c:
        c.publish("web.private", _stars(200, 8, 100_000), ra="ra", dec="dec", readers="user:alice")
    with wb.client() as c:
        wait_for(lambda: {"web.stars", "web.sky_source", "web.private"} <= {d.name for d in c.datasets()},
                 "the catalog reached wb")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield {"wa": wa, "wb": wb, "tokens": tokens, "stars": stars, "root": root}
    for isl in (wb, wa):
        assert isl.stop() == 0, isl.log.read_text()[-3000:]


def _curl(url: str, token: str | None = None, *args: str) -> tuple[int, bytes, dict[str, str]]:
    """curl as a user would run it: (status, body, headers)."""
    token = archipelago().admin_token if token is None else token
    with tempfile.NamedTemporaryFile() as head:
        cmd = ["curl", "-sS", "--cacert", str(archipelago().ca_pem), "-D", head.name, "-o", "-", *args, url]
        if token:
            cmd[1:1] = ["-H", f"Authorization: Bearer {token}"]
        out = subprocess.run(cmd, capture_output=True, timeout=120)
        assert out.returncode in (0, 28), out.stderr.decode()  # 28: --max-time ended a stream
        lines = Path(head.name).read_text().splitlines()
    last = max(i for i, line in enumerate(lines) if line.startswith("HTTP/"))  # after any 100 Continue
    status = int(lines[last].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[last + 1:] if ":" in line)}
    return status, out.stdout, headers


def _error(body: bytes) -> str:
    return json.loads(body)["error"]["message"]


def _serving(*islands: IslandProcess) -> None:
    for isl in islands:
        status, body, _ = _curl(f"{isl.http_url}/api/v1/island")
        assert status == 200 and json.loads(body)["name"] == isl.name


# -- the JSON/Arrow API --------------------------------------------------------------------
def test_openapi_names_every_route(web):
    status, body, headers = _curl(f"{web['wb'].http_url}/api/v1/openapi.json")
    assert status == 200 and headers["content-type"].startswith("application/json")
    doc = json.loads(body)
    assert doc["openapi"].startswith("3.")
    for route in ("/api/v1/datasets", "/api/v1/datasets/{name}", "/api/v1/query", "/api/v1/subscribe", "/tap",
                  "/scs/{dataset}", "/hats/{dataset}/{path}"):
        assert route in doc["paths"], route


def test_datasets_and_describe_at_an_island_holding_nothing(web):
    wa, wb, tokens = web["wa"], web["wb"], web["tokens"]
    status, body, _ = _curl(f"{wb.http_url}/api/v1/datasets", tokens["bob"])
    assert status == 200
    names = {d["name"] for d in json.loads(body)["datasets"]}
    assert {"web.stars", "web.sky_source"} <= names and "web.private" not in names  # bob may not read it
    status, body, _ = _curl(f"{wb.http_url}/api/v1/datasets?pattern=web.s*", tokens["alice"])
    assert {d["name"] for d in json.loads(body)["datasets"]} == {"web.stars", "web.sky_source"}
    status, body, _ = _curl(f"{wb.http_url}/api/v1/datasets/web.stars")
    d = json.loads(body)
    with wb.client() as c:
        truth = c.describe("web.stars")
    assert (d["num_rows"], d["origin"], d["moc"], d["num_partitions"]) == (3000, "wa", truth.moc, truth.num_partitions)
    mag = next(f for f in d["schema"] if f["name"] == "mag")
    assert (mag["unit"], mag["ucd"], mag["description"]) == ("mag", "phot.mag;em.opt.V", "V magnitude")
    assert d["held_by"] == {"wa": truth.num_partitions}
    assert d["hats_urls"] == [f"{wa.http_url}/hats/web.stars"] == list(truth.hats_urls)
    status, body, _ = _curl(f"{wb.http_url}/api/v1/datasets/web.stars/coverage")
    assert status == 200 and len(json.loads(body)["cells"]) > 0
    status, body, _ = _curl(f"{wb.http_url}/api/v1/datasets/web.private", tokens["bob"])
    assert status == 403 and "web.private" in _error(body)
    status, body, _ = _curl(f"{wb.http_url}/api/v1/datasets/web.private", tokens["alice"])
    assert status == 200 and json.loads(body)["num_rows"] == 200


def _read(fmt: str, body: bytes) -> pa.Table:
    if fmt == "arrow":
        return pa.ipc.open_stream(body).read_all()
    if fmt == "parquet":
        return pq.read_table(pa.BufferReader(body))
    if fmt == "csv":
        return pacsv.read_csv(pa.BufferReader(body))
    if fmt == "json":
        return pa.Table.from_pylist([json.loads(line) for line in body.decode().splitlines() if line])
    from astropy.io.votable import parse_single_table

    t = parse_single_table(io.BytesIO(body)).to_table()
    return pa.table({c: np.asarray(t[c]).tolist() for c in t.colnames})


def test_query_in_every_format_equals_the_grpc_result(web):
    wb = web["wb"]
    sql = "SELECT id, ra, dec, mag, name FROM web.stars WHERE cone(ra, dec, 40, 20, 30) ORDER BY id"
    with wb.client() as c:
        truth = c.sql(sql).read_all()
    assert set(truth["id"].to_pylist()) == _in_cone(web["stars"], 40, 20, 30) and truth.num_rows > 50
    from urllib.parse import quote

    for fmt in FORMATS:
        status, body, headers = _curl(f"{wb.http_url}/api/v1/query?sql={quote(sql)}&format={fmt}")
        assert status == 200, body[:300]
        got = _read(fmt, body)
        if fmt in ("arrow", "parquet"):
            assert got.equals(truth), fmt
        else:
            assert got["id"].to_pylist() == truth["id"].to_pylist(), fmt
            assert np.allclose(got["ra"].to_numpy(), truth["ra"].to_numpy()), fmt
            assert got["name"].to_pylist() == truth["name"].to_pylist(), fmt
        assert headers["content-type"].split(";")[0] in ("application/vnd.apache.arrow.stream",
                                                          "application/vnd.apache.parquet", "text/csv",
                                                          "application/x-ndjson", "application/x-votable+xml")
        # POST with a JSON body gives the same bytes' table
        status, body, _ = _curl(f"{wb.http_url}/api/v1/query", None, "-H", "Content-Type: application/json",
                                "--data-binary", json.dumps({"sql": sql, "route": "auto", "format": fmt}))
        assert status == 200 and _read(fmt, body)["id"].to_pylist() == truth["id"].to_pylist(), fmt
    status, body, _ = _curl(f"{wb.http_url}/api/v1/query?sql={quote(sql)}&format=votable")
    assert b'unit="mag"' in body and b'ucd="phot.mag;em.opt.V"' in body and b'ucd="pos.eq.ra;meta.main"' in body
    status, body, _ = _curl(f"{wb.http_url}/api/v1/query?sql={quote(sql)}&format=json&limit=7")
    assert [json.loads(x)["id"] for x in body.decode().splitlines()] == truth["id"].to_pylist()[:7]
    status, body, _ = _curl(f"{wb.http_url}/api/v1/explain?sql={quote(sql)}")
    assert status == 200 and "cone" in json.loads(body)["text"]


def test_api_errors_say_what_was_wrong_with_the_grpc_messages(web):
    wb, tokens = web["wb"], web["tokens"]
    from urllib.parse import quote

    base = f"{wb.http_url}/api/v1/query"
    cases = ["SELEC nothing", "SELECT * FROM web.nope", "DROP TABLE web.stars",
             "SELECT * FROM parquet.`/etc/passwd`"]
    with wb.client() as c:
        for sql in cases:
            try:
                c.sql(sql).read_all()
                raise AssertionError(f"{sql} ran")
            except ArchipelError as exc:
                want = exc
            status, body, _ = _curl(f"{base}?sql={quote(sql)}&format=json")
            assert status == {"INVALID_ARGUMENT": 400, "NOT_FOUND": 404, "PERMISSION_DENIED": 403}[want.code], sql
            assert _error(body) == want.message, sql
    status, body, _ = _curl(f"{base}?sql=SELECT%201&format=xlsx")
    assert status == 400 and "unknown format" in _error(body)
    status, body, _ = _curl(f"{base}?sql=SELECT%20*%20FROM%20web.private&format=json", tokens["bob"])
    assert status == 403 and "web.private" in _error(body)
    status, body, headers = _curl(f"{base}?sql=SELECT%20*%20FROM%20web.stars", "not-a-token")
    assert status == 401 and "token" in _error(body).lower()
    status, body, _ = _curl(f"{base}?sql=x", "arch1.AAAA.BBBB")
    assert status == 401
    status, body, _ = _curl(base, None, "-H", "Content-Type: application/json", "--data-binary", "{not json")
    assert status == 400 and "JSON" in _error(body)
    status, body, _ = _curl(base, None, "-H", "Content-Type: application/json", "--data-binary", '["sql"]')
    assert status == 400
    status, body, _ = _curl(f"{base}?sql=SELECT%201&route=sideways")
    assert status == 400 and "route" in _error(body)
    status, body, _ = _curl(f"{base}?sql=SELECT%201&limit=-3")
    assert status == 400 and "limit" in _error(body)
    big = tempfile.NamedTemporaryFile(delete=False)
    big.write(b"{\"sql\": \"" + b"x" * (6 * 1024 * 1024) + b"\"}")
    big.close()
    status, body, _ = _curl(base, None, "-H", "Content-Type: application/json", "--data-binary", f"@{big.name}")
    os.unlink(big.name)
    assert status == 413 and "larger than" in _error(body)
    status, body, _ = _curl(f"{wb.http_url}/api/v1/nothing-here")
    assert status == 404 and "no route" in _error(body)
    status, body, _ = _curl(base, None, "-X", "DELETE")
    assert status == 405
    status, body, _ = _curl(f"{base}?sql=SELECT%20*%20FROM%20web.stars%20a%20CROSS%20JOIN%20web.stars%20b")
    assert status == 503 and "Spark is not started" in _error(body)  # the island's state, not the caller's fault
    _serving(wb, web["wa"])


def test_a_client_that_vanishes_mid_stream_leaves_the_island_serving(web):
    wb = web["wb"]
    with web["wa"].client() as c:
        c.publish("web.big", _stars(300_000, 9), ra="ra", dec="dec")  # about 25 MB of JSON lines
    with wb.client() as c:
        wait_for(lambda: "web.big" in {d.name for d in c.datasets()}, "web.big reached wb")
    port = wb.http_port
    ctx = ssl.create_default_context(cafile=str(archipelago().ca_pem))
    request = (f"GET /api/v1/query?sql=SELECT%20*%20FROM%20web.big&format=json "
               f"HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {archipelago().admin_token}\r\n\r\n")
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port)) as raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(request.encode())
            got = s.recv(65536)
            assert got.startswith(b"HTTP/1.1 200"), got[:200]
        # the connection is gone; the query is cancelled at the island
    with wb.client() as c:
        wait_for(lambda: c.info()["running_queries"] == 0, "the abandoned queries were cancelled", 60)
    _serving(wb, web["wa"])


def test_hostile_paths_are_refused(web):
    wa = web["wa"]
    for path in ("/hats/web.stars/../../archipel.toml", "/hats/web.stars/dataset/..%2F..%2Farchipel.toml",
                 "/hats/..%2Fcatalog.db/x", "/data/web.stars/..%2F..%2Farchipel.toml", "/hats/web.stars/%00",
                 "/static/../archipel.toml", "/hats/web.stars/dataset/Norder=1/Dir=0/Npix=99999.parquet",
                 "/hats/web%2Fstars/hats.properties"):
        status, body, _ = _curl(wa.http_url + path, None, "--path-as-is")
        assert status in (400, 403, 404), (path, status)
        assert b"[island]" not in body and b"SQLite" not in body, path
    _serving(wa)


# -- subscriptions over Server-Sent Events -------------------------------------------------
def _sse_events(url: str, token: str, want: int, headers: dict[str, str] | None = None,
                timeout: float = 60) -> list[tuple[str, str, dict]]:
    """(id, event, data) of the first ``want`` items (after 'started') of an SSE stream."""
    import requests

    s = requests.Session()
    s.trust_env = False
    s.verify = str(archipelago().ca_pem)
    out: list[tuple[str, str, dict]] = []
    with s.get(url, headers={"Authorization": f"Bearer {token}", **(headers or {})}, stream=True,
               timeout=timeout) as resp:
        if resp.status_code != 200:
            return [("", "http-error", {"status": resp.status_code, "body": resp.text[:300]})]
        ident = event = ""
        for line in resp.iter_lines(decode_unicode=True):
            if line.startswith("id: "):
                ident = line[4:]
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                if event != "started":
                    out.append((ident, event, json.loads(line[6:])))
                    if len(out) >= want:
                        return out
                ident = event = ""
    return out


def test_subscribe_streams_new_data_and_resumes_by_cursor(web):
    wa, wb = web["wa"], web["wb"]
    token = archipelago().admin_token
    with wa.client() as c:
        c.publish("live.a", _stars(100, 1), ra="ra", dec="dec")
    url = f"{wb.http_url}/api/v1/subscribe?dataset=live.*&name=sse-test&mode=events"
    got: list = []
    t = threading.Thread(target=lambda: got.extend(_sse_events(url, token, 2)), daemon=True)
    t.start()
    with wb.client() as c:
        wait_for(lambda: any(x.name == "sse-test" and x.connected for x in c.subscriptions()), "the SSE stream is open")
    with wa.client() as c:
        c.append("live.a", _stars(10, 2, 1000))
        c.publish("live.b", _stars(20, 3, 2000), ra="ra", dec="dec")
    t.join(60)
    assert [(e, d["dataset"], d["rows"]) for _, e, d in got] == [("event", "live.a", 10), ("event", "live.b", 20)]
    first_cursor = got[0][0]
    assert int(got[1][0]) > int(first_cursor)
    # resuming after the first cursor gives the second item again, and only it
    again = _sse_events(url, token, 1, headers={"Last-Event-ID": first_cursor})
    assert [(d["dataset"], d["rows"]) for _, _, d in again] == [("live.b", 20)]
    with wb.client() as c:  # the streams closed above end at the island ([limits] subscriptions = 2 here)
        wait_for(lambda: not any(x.connected for x in c.subscriptions()), "the SSE streams ended at the island")
    rows_url = f"{wb.http_url}/api/v1/subscribe?dataset=live.a&mode=rows&columns=id,mag&where=mag%20%3C%2010"
    got = []
    t = threading.Thread(target=lambda: got.extend(_sse_events(rows_url, token, 1)), daemon=True)
    t.start()
    with wb.client() as c:
        wait_for(lambda: any(x.mode == "rows" and x.connected for x in c.subscriptions()), "the SSE stream is open")
    extra = _stars(50, 4, 5000)
    with wa.client() as c:
        c.append("live.a", extra)
    t.join(60)
    truth = sorted(i for i, m in zip(extra["id"].to_pylist(), extra["mag"].to_pylist()) if m < 10)
    assert got and sorted(r["id"] for r in got[0][2]["rows"]) == truth
    status, body, _ = _curl(f"{wb.http_url}/api/v1/subscribe?mode=events")
    assert status == 400 and "dataset" in _error(body)
    status, body, _ = _curl(f"{wb.http_url}/api/v1/subscribe?dataset=live.*&where=DROP%20TABLE%20x")
    assert status in (400, 403)


def test_a_per_user_limit_is_429_with_its_name(web):
    import requests

    wb, alice = web["wb"], web["tokens"]["alice"]
    s = requests.Session()
    s.trust_env = False
    s.verify = str(archipelago().ca_pem)
    url = f"{wb.http_url}/api/v1/subscribe?dataset=limit.*"
    held = [s.get(url, headers={"Authorization": f"Bearer {alice}"}, stream=True, timeout=30) for _ in range(2)]
    try:
        assert [r.status_code for r in held] == [200, 200]
        status, body, _ = _curl(url, alice, "--max-time", "20")
        assert status == 429 and "subscriptions" in _error(body), body[:300]
        status, body, _ = _curl(f"{wb.http_url}/api/v1/subscribe?dataset=limit.*", web["tokens"]["bob"],
                                "--max-time", "3")
        assert status == 200  # bob's share is his own (the stream runs until curl gives up)
    finally:
        for r in held:
            r.close()
    with wb.client() as c:
        wait_for(lambda: not any(x.connected for x in c.subscriptions()), "the streams ended at the island", 60)


# -- IVOA: TAP with pyvo, taplint, cone search ---------------------------------------------
@pytest.fixture()
def vo_session(monkeypatch):
    import requests

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(archipelago().ca_pem))
    s = requests.Session()
    s.verify = str(archipelago().ca_pem)
    s.headers["Authorization"] = f"Bearer {archipelago().admin_token}"
    return s


def test_pyvo_sync_and_async_reach_data_held_elsewhere(web, vo_session):
    import pyvo

    tap = pyvo.dal.TAPService(f"{web['wb'].http_url}/tap", session=vo_session)
    stars = web["stars"]
    adql = ("SELECT TOP 100000 id, ra, dec, mag FROM web.stars "
            "WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 200, -30, 25)) = 1")
    got = tap.run_sync(adql).to_table()
    assert set(np.asarray(got["id"]).tolist()) == _in_cone(stars, 200, -30, 25)
    assert str(got["mag"].unit) == "mag" and got["ra"].unit == "deg"
    job = tap.submit_job("SELECT count(*) AS n FROM web.sky_source")
    job.run()
    job.wait(phases=["COMPLETED", "ERROR", "ABORTED"], timeout=120)
    assert job.phase == "COMPLETED", job.phase
    assert int(job.fetch_result().to_table()["n"][0]) == 17161
    job.delete()
    bad = tap.submit_job("SELECT nothing FROM web.nope")
    bad.run()
    bad.wait(phases=["COMPLETED", "ERROR", "ABORTED"], timeout=60)
    assert bad.phase == "ERROR"
    with pytest.raises(pyvo.dal.DALQueryError, match="web.nope"):
        bad.raise_if_error()
    bad.delete()
    # MAXREC cuts the result and says so
    res = tap.run_sync("SELECT id FROM web.stars", maxrec=10)
    assert len(res) == 10 and res.query_status == "OVERFLOW"


def test_adql_geometry_equals_the_truth(web, vo_session):
    import pyvo

    tap = pyvo.dal.TAPService(f"{web['wb'].http_url}/tap", session=vo_session)
    stars = web["stars"]
    ra, dec, ids = stars["ra"].to_numpy(), stars["dec"].to_numpy(), np.asarray(stars["id"])
    got = tap.run_sync("SELECT id FROM web.stars WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
                       "BOX('ICRS', 100, 10, 40, 20))").to_table()
    dra = np.abs((ra - 100 + 540) % 360 - 180)
    assert set(np.asarray(got["id"]).tolist()) == set(ids[(dra <= 20) & (np.abs(dec - 10) <= 10)].tolist())
    got = tap.run_sync("SELECT id, DISTANCE(POINT('ICRS', ra, dec), POINT('ICRS', 300, 45)) AS d FROM web.stars "
                       "WHERE DISTANCE(POINT('ICRS', ra, dec), POINT('ICRS', 300, 45)) < 12").to_table()
    sep = _sep(ra, dec, 300, 45)
    assert set(np.asarray(got["id"]).tolist()) == set(ids[sep < 12].tolist())
    assert np.allclose(sorted(np.asarray(got["d"])), sorted(sep[sep < 12]))
    # a triangle with great-circle edges, tested against a direct spherical test
    tri = [(10.0, -10.0), (40.0, -5.0), (20.0, 20.0)]
    got = tap.run_sync("SELECT id FROM web.stars WHERE CONTAINS(POINT('ICRS', ra, dec), POLYGON('ICRS', "
                       + ", ".join(f"{a}, {d}" for a, d in tri) + ")) = 1").to_table()
    vec = lambda a, d: np.stack([np.cos(np.radians(d)) * np.cos(np.radians(a)),  # noqa: E731
                                 np.cos(np.radians(d)) * np.sin(np.radians(a)), np.sin(np.radians(d))], -1)
    p = vec(ra, dec)
    v = [vec(*t) for t in tri]
    sign = np.sign(np.dot(np.cross(v[0], v[1]), v[2]))
    inside = np.all([np.sign(p @ np.cross(v[i], v[(i + 1) % 3])) == sign for i in range(3)], axis=0)
    assert set(np.asarray(got["id"]).tolist()) == set(ids[inside].tolist()) and inside.sum() > 5
    with pytest.raises(pyvo.dal.DALQueryError, match="POINT"):
        tap.run_sync("SELECT POINT('ICRS', ra, dec) FROM web.stars")
    with pytest.raises(pyvo.dal.DALQueryError, match="ADQL"):
        tap.run_sync("SELECT FROM WHERE")


def test_pyvo_tap_schema_tables_and_cone_search(web, vo_session):
    import pyvo

    wb = web["wb"]
    tap = pyvo.dal.TAPService(f"{wb.http_url}/tap", session=vo_session)
    names = {t.name for t in tap.tables}
    assert {"web.stars", "web.sky_source", "web.private", "TAP_SCHEMA.columns"} <= names
    cols = tap.run_sync("SELECT column_name, datatype, unit, ucd FROM TAP_SCHEMA.columns "
                        "WHERE table_name = 'web.stars' ORDER BY column_index").to_table()
    names = [str(x) for x in cols["column_name"]]
    assert [n for n in names if n != '"_healpix_29"'] == ["id", "ra", '"dec"', "mag", "name"]  # quoted as ADQL needs
    mag = names.index("mag")
    assert str(cols["unit"][mag]) == "mag" and str(cols["ucd"][mag]) == "phot.mag;em.opt.V"
    tables = tap.run_sync("SELECT table_name FROM TAP_SCHEMA.tables WHERE schema_name = 'web'").to_table()
    with wb.client() as c:
        assert {str(x) for x in tables["table_name"]} == {d.name for d in c.datasets("web.*")}
    with pytest.raises(pyvo.dal.DALQueryError):
        tap.run_sync("SELECT * FROM TAP_SCHEMA.tables WHERE x IN (SELECT * FROM read_text('/etc/passwd'))")
    # bob does not see alice's table
    bob = type(vo_session)()
    bob.verify = vo_session.verify
    bob.headers["Authorization"] = f"Bearer {web['tokens']['bob']}"
    names = {t.name for t in pyvo.dal.TAPService(f"{wb.http_url}/tap", session=bob).tables}
    assert "web.private" not in names and "web.stars" in names
    scs = pyvo.dal.SCSService(f"{wb.http_url}/scs/web.stars", session=vo_session)
    res = scs.search((120, 30), 15)
    assert set(np.asarray(res.to_table()["id"]).tolist()) == _in_cone(web["stars"], 120, 30, 15)
    for query in ("RA=1&DEC=95&SR=1", "RA=x&DEC=1&SR=1", "RA=1&DEC=1", "RA=1&DEC=1&SR=-2"):
        resp = vo_session.get(f"{wb.http_url}/scs/web.stars?{query}")
        assert b'<INFO name="Error"' in resp.content, query  # SCS's error document
    resp = vo_session.get(f"{wb.http_url}/scs/web.nope?RA=1&DEC=1&SR=1")
    assert b'<INFO name="Error"' in resp.content and b"web.nope" in resp.content


def test_taplint_reports_no_errors(web, tmp_path):
    trust = tmp_path / "trust.jks"
    subprocess.run(["keytool", "-importcert", "-noprompt", "-alias", "archipel", "-file", str(archipelago().ca_pem),
                    "-keystore", str(trust), "-storepass", "changeit"], check=True, capture_output=True, timeout=120)
    out = subprocess.run(["stilts", f"-Djavax.net.ssl.trustStore={trust}", "-Djavax.net.ssl.trustStorePassword=changeit",
                          "taplint", f"tapurl={web['wb'].http_url}/tap", "report=EW"],
                         capture_output=True, text=True, timeout=600)
    (ARTIFACTS / "taplint.txt").write_text(out.stdout + out.stderr)
    assert "Totals: Errors: 0;" in out.stdout, out.stdout[-4000:]
    assert "Section QAS" in out.stdout and "Section TMS" in out.stdout  # it ran the query and schema stages


# -- HATS over HTTP for lsdb ---------------------------------------------------------------
LSDB_SCRIPT = """
import json, sys
from upath import UPath
import lsdb
url, token, ra, dec, r = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:6])
cat = lsdb.open_catalog(UPath(url, headers={"Authorization": "Bearer " + token}))
found = cat.cone_search(ra, dec, r * 3600).compute()
print(json.dumps({"ids": sorted(int(i) for i in found["id"]), "rows": len(cat.compute())}))
"""


def _lsdb(url: str, ra: float, dec: float, r: float) -> dict:
    env = {**os.environ, "SSL_CERT_FILE": str(archipelago().ca_pem)}
    out = subprocess.run([sys.executable, "-c", LSDB_SCRIPT, url, archipelago().admin_token, str(ra), str(dec), str(r)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_lsdb_reads_a_dataset_over_http_with_a_cone_equal_to_the_truth(web):
    wa, wb = web["wa"], web["wb"]
    with wb.client() as c:
        url = c.describe("web.stars").hats_urls[0]
    got = _lsdb(url, 150, 0, 20)
    assert got["ids"] == sorted(_in_cone(web["stars"], 150, 0, 20)) and got["rows"] == 3000
    # appended rows make pixels of several files, served as one file each
    more = _stars(1000, 11, 50_000)
    with wa.client() as c:
        c.publish("web.grown", web["stars"], ra="ra", dec="dec")
        c.append("web.grown", more)
    both = pa.concat_tables([web["stars"], more])
    status, body, _ = _curl(f"{wa.http_url}/hats/web.grown/hats.properties")
    assert status == 200 and b"hats_nrows=4000" in body
    got = _lsdb(f"{wa.http_url}/hats/web.grown", 150, 0, 20)
    assert got["ids"] == sorted(_in_cone(both, 150, 0, 20)) and got["rows"] == 4000
    # an island holding none of it says where it is held
    with wb.client() as c:
        wait_for(lambda: c.describe("web.grown").num_rows == 4000, "web.grown reached wb")
    status, body, _ = _curl(f"{wb.http_url}/hats/web.grown/hats.properties")
    assert status == 404 and f"{wa.http_url}/hats/web.grown" in _error(body)
    # a complete replica is a HATS catalog too, at the island holding it
    with wb.client() as c:
        c.replicate("web.stars", to="wb").wait()
        urls = c.describe("web.stars").hats_urls
    assert urls[0] == f"{wb.http_url}/hats/web.stars" and f"{wa.http_url}/hats/web.stars" in urls
    got = _lsdb(urls[0], 150, 0, 20)
    assert got["ids"] == sorted(_in_cone(web["stars"], 150, 0, 20)) and got["rows"] == 3000
    status, body, headers = _curl(f"{wa.http_url}/hats/web.stars/partition_info.csv", None, "-r", "0-5")
    assert status == 206 and body == b"Norder" and headers["content-range"].startswith("bytes 0-5/")
    status, body, _ = _curl(f"{wa.http_url}/hats/web.private/hats.properties", web["tokens"]["bob"])
    assert status == 403


# -- the web page in a real browser --------------------------------------------------------
def test_web_page_in_headless_chromium(web):
    from playwright.sync_api import sync_playwright

    wa, wb = web["wa"], web["wb"]
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing (./dev installs it)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 900})
            page = ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{wb.http_url}/")
            page.fill("#token", archipelago().admin_token)
            page.click("#login button")
            page.wait_for_selector("#datasets[data-caller='tester'] tbody tr[data-name='web.private']")
            listed = page.eval_on_selector_all("#datasets tbody tr", "rows => rows.map(r => r.dataset.name)")
            assert {"web.stars", "web.sky_source", "web.private"} <= set(listed)
            page.click("#datasets a:text-is('web.stars')")
            page.wait_for_function("Number(document.querySelector('#skymap').dataset.cells) > 0")
            page.wait_for_selector("#schema tbody tr")
            assert "phot.mag;em.opt.V" in page.inner_text("#schema")
            page.screenshot(path=str(ARTIFACTS / "datasets.png"))
            page.click("nav button[data-tab=query]")
            page.fill("#sql", "SELECT id, ra, dec FROM web.stars WHERE cone(ra, dec, 40, 20, 30) ORDER BY id")
            page.click("#run")
            page.wait_for_selector("#results tbody tr")
            truth = sorted(_in_cone(web["stars"], 40, 20, 30))
            first = page.eval_on_selector_all("#results tbody tr td:first-child", "tds => tds.map(t => t.textContent)")
            assert [int(x) for x in first] == truth[:50]
            assert f"of {len(truth)}" in page.inner_text("#page")
            page.click("#next")
            second = page.eval_on_selector_all("#results tbody tr td:first-child", "tds => tds.map(t => t.textContent)")
            assert [int(x) for x in second] == truth[50:100]
            page.wait_for_function("document.querySelector('#querymap').dataset.cones === '1'")
            page.screenshot(path=str(ARTIFACTS / "query.png"), full_page=True)
            with page.expect_download() as dl:
                page.click("#downloads button[data-format=parquet]")
            got = pq.read_table(dl.value.path())
            assert got["id"].to_pylist() == truth
            page.fill("#sql", "SELECT * FROM web.nope")
            page.click("#run")
            page.wait_for_selector("#error:not([hidden])")
            assert "web.nope" in page.inner_text("#error")
            page.click("nav button[data-tab=live]")
            page.fill("#sub-pattern", "page.*")
            page.click("#sub-start")
            page.wait_for_function("document.querySelector('#sub-status').textContent.includes('subscribed')")
            with wa.client() as c:
                c.publish("page.fresh", _stars(42, 5), ra="ra", dec="dec")
            page.wait_for_selector("#sub-events li[data-dataset='page.fresh']", timeout=60_000)
            assert "42 rows" in page.inner_text("#sub-events")
            page.screenshot(path=str(ARTIFACTS / "live.png"))
            page.click("#sub-stop")
            page.click("nav button[data-tab=island]")
            page.wait_for_selector("#peers tbody tr")
            assert "wa" in page.inner_text("#peers")
            page.screenshot(path=str(ARTIFACTS / "island.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    for shot in ("datasets", "query", "live", "island"):
        assert (ARTIFACTS / f"{shot}.png").stat().st_size > 10_000
    _serving(wa, wb)


def test_an_island_without_anonymous_reads_refuses_http_callers_without_a_token(tmp_path):
    isl = IslandProcess(tmp_path / "closed", "closed", extra_config="[spark]\nstart = false\n").start()
    try:
        for path in ("/api/v1/datasets", "/api/v1/query?sql=SELECT%201", "/tap/tables", "/hats/x.y/hats.properties"):
            status, body, headers = _curl(isl.http_url + path, "")
            assert status == 401, (path, status, body[:200])
        status, body, _ = _curl(isl.http_url + "/api/v1/datasets")
        assert status == 200
    finally:
        assert isl.stop() == 0
