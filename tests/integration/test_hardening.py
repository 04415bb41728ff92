"""What a hostile peer or a careless client could do, tried on real island processes: synced
records naming host paths, a peer's log that diverges, resource exhaustion (wide schemas,
huge changes, idle streams, stalled and fragmented publishes), queries beyond their budget,
corrupt partition files, and the smaller holes (a killed island's xrootd, files XRootD
should not serve, ingest errors, columns the engines cannot read). Each is refused with a
message, nothing outside the island's folders is read, written or deleted, and the island
keeps answering."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import zlib
from pathlib import Path

import pyarrow as pa
import pytest

import archipel
from archipel.arrowwire import serialize_schema
from archipel.v1 import island_pb2 as pb
from archipel.v1 import peer_pb2 as ppb
from fakepeer import FakePeer, serve_fake
from islands import SHARED_HATS, IslandProcess, archipelago, catalog, https_open, wait_for

NO_SPARK = "[spark]\nstart = false\n"


def _put(origin: str, name: str, paths: list[str]) -> str:
    schema = pa.schema([("x", pa.int64())])
    return json.dumps({"name": name, "origin": origin, "kind": "table", "root": "/", "num_rows": len(paths),
                       "num_bytes": 10 * len(paths), "arrow_schema": serialize_schema(schema).hex(),
                       "partitions": [{"path": p, "num_rows": 1, "num_bytes": 10, "adler32": 1} for p in paths]})


def _change(origin: str, seq: int, op: str, key: str, payload: str) -> ppb.CatalogChange:
    return ppb.CatalogChange(origin=origin, seq=seq, op=op, key=key, payload_json=payload, ts=time.time())


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture()
def pair(tmp_path):
    a = IslandProcess(tmp_path / "a", "ha", extra_config=NO_SPARK).start()
    b = IslandProcess(tmp_path / "b", "hb", extra_config=NO_SPARK + f'[federation]\npeers = ["{a.address}"]\n'
                      + "[replication]\nverify_seconds = 1\n").start()
    yield a, b
    for isl in (b, a):
        isl.stop()


# -- 1 and 2: synced records ------------------------------------------------------------------
def test_synced_records_with_host_paths_are_refused_and_the_log_goes_on(pair, tmp_path):
    a, b = pair
    passwd = _digest("/etc/passwd")
    evil = "mallory"
    changes = [
        _change(evil, 1, "dataset.put", "mallory.abs", _put(evil, "mallory.abs", ["/etc/passwd"])),
        _change(evil, 2, "dataset.put", "mallory.up", _put(evil, "mallory.up", ["../../../../etc/passwd"])),
        _change(evil, 3, "dataset.put", "mallory.dot", _put(evil, "mallory.dot", ["a/./../../b.parquet"])),
        _change(evil, 4, "dataset.put", "mallory.ok", _put(evil, "mallory.ok", ["part-0.parquet"])),
        _change(evil, 5, "replica.put", "mallory.ok", json.dumps({"pids": ["/etc/passwd"]})),
        _change(evil, 6, "dataset.append", "mallory.ok", json.dumps(
            {"partitions": [{"path": "/etc/passwd", "num_rows": 1, "num_bytes": 1, "adler32": 1}],
             "num_rows": 2, "num_bytes": 20})),
        _change(evil, 7, "dataset.put", "mallory.last", _put(evil, "mallory.last", ["Norder=0/Npix=1.parquet"])),
    ]
    fake = FakePeer(1, changes, name=evil)
    server = serve_fake(fake, tmp_path)
    try:
        with a.client() as ca:
            ca.add_peer(fake.address)
            # the refused records do not block the ones after them
            wait_for(lambda: {"mallory.ok", "mallory.last"} <= {d.name for d in ca.datasets()}, "the log went on")
            names = {d.name for d in ca.datasets()}
            assert not {"mallory.abs", "mallory.up", "mallory.dot"} & names
            assert [p.path for p in ca.describe("mallory.ok").partitions] == ["part-0.parquet"]
            peer = next(p for p in ca.peers() if p["address"] == fake.address)
            assert peer["state"] == "connected" and "refused change mallory:" in peer["error"], peer
        # nothing of the host is served under any of those names, at either island
        for isl in (a, b):
            for url in (f"{isl.http_url}/data/mallory.abs//etc/passwd", f"{isl.http_url}/data/mallory.ok//etc/passwd",
                        f"{isl.http_url}/data/mallory.up/../../../../etc/passwd"):
                with pytest.raises(urllib.error.HTTPError) as err:
                    https_open(url)
                assert err.value.code in (400, 404)
        # b follows a: it received the same records (relayed) and refused the same ones
        wait_for(lambda: catalog(a) == catalog(b), "b has a's catalog")
        assert "refused change mallory:1" in a.log.read_text() and "refused change mallory:1" in b.log.read_text()
    finally:
        server.stop(0)
    assert _digest("/etc/passwd") == passwd
    with a.client() as ca:
        assert ca.info()["name"] == "ha"


def test_a_peer_log_that_diverges_is_detected_and_shown(pair, tmp_path):
    a, _b = pair
    fake = FakePeer(1, [_change("trudy", 1, "dataset.put", "trudy.first", _put("trudy", "trudy.first", ["p.parquet"]))],
                    name="trudy", hold=0.5)
    server = serve_fake(fake, tmp_path)
    try:
        with a.client() as ca:
            ca.add_peer(fake.address)
            wait_for(lambda: "trudy.first" in {d.name for d in ca.datasets()}, "trudy's first change applied")
            # trudy restored an old backup: its change 1 is now another one, validly signed
            fake.changes = [_change("trudy", 1, "dataset.put", "trudy.other",
                                    _put("trudy", "trudy.other", ["q.parquet"]))]
            wait_for(lambda: any(p["state"] == "diverged" for p in ca.peers() if p["island"] == "trudy"),
                     "the divergence is shown")
            peer = next(p for p in ca.peers() if p["island"] == "trudy")
            assert "trudy:1" in peer["error"] and "trudy.other" in peer["error"], peer
            names = {d.name for d in ca.datasets()}
            assert "trudy.first" in names and "trudy.other" not in names
    finally:
        server.stop(0)


# -- 3: resource exhaustion -------------------------------------------------------------------
LIMITS = ("[limits]\nstreams = 6\nstreams_per_caller = 3\nmax_columns = 100\nmax_change_bytes = 30000\n"
          "publish_seconds = 4\npublish_message_bytes = 1048576\n")


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    isl = IslandProcess(tmp_path_factory.mktemp("limited"), "lim", extra_config=NO_SPARK + LIMITS).start()
    yield isl
    isl.stop()


def _staging_empty(isl: IslandProcess) -> bool:
    staging = isl.folder / "data" / ".staging"
    return not staging.exists() or not any(staging.iterdir())


def test_wide_schemas_and_huge_changes_are_refused_with_the_limit_named(limited):
    with limited.client() as c:
        before = {d.name for d in c.datasets()}
        wide = pa.table({f"c{i}": [1] for i in range(150)})
        with pytest.raises(archipel.ResourceExhausted, match=r"150 columns.*max_columns"):
            c.publish("wide.t", wide)
        long_names = pa.table({"x" * 200 + str(i): [1] for i in range(90)})
        with pytest.raises(archipel.ResourceExhausted, match="max_change_bytes"):
            c.publish("huge.t", long_names)
        with pytest.raises(archipel.InvalidArgument, match="duplicate column name"):
            c.publish("dup.t", pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["ra", "RA"]))
        assert {d.name for d in c.datasets()} == before
        assert _staging_empty(limited)
        c.publish("fine.t", pa.table({"x": [1, 2]}))
        assert c.sql("SELECT sum(x) AS s FROM fine.t").read_all()["s"].to_pylist() == [3]


def test_nanosecond_timestamps_are_stored_as_microseconds(limited):
    ts = pa.array([1_700_000_000_123_456_789, 1_700_000_001_000_000_000], pa.timestamp("ns"))
    with limited.client() as c:
        c.publish("ts.t", pa.table({"t": ts, "i": [1, 2]}))
        assert c.describe("ts.t").schema.field("t").type == pa.timestamp("us")
        got = c.sql("SELECT t FROM ts.t ORDER BY i").read_all()["t"].cast(pa.int64()).to_pylist()
        assert got == [1_700_000_000_123_456, 1_700_000_001_000_000]


def test_long_lived_streams_are_bounded_per_caller_and_island_and_short_calls_go_on(limited):
    u1, u2, u3 = (archipelago().token(u) for u in ("s1", "s2", "s3"))
    opened = []
    try:
        with limited.client(u1) as c1, limited.client(u2) as c2, limited.client(u3) as c3:
            for i in range(3):
                opened.append(c1.subscribe("*", name=f"s1-{i}"))
            wait_for(lambda: len([s for s in c1.subscriptions() if s.name.startswith("s1-")]) == 3, "3 streams")
            with pytest.raises(archipel.ResourceExhausted, match="streams_per_caller = 3"):
                c1.subscribe("*", name="s1-over")
            for i in range(3):
                opened.append(c2.subscribe("*", name=f"s2-{i}"))
            wait_for(lambda: len([s for s in c2.subscriptions() if s.name.startswith("s2-")]) == 3, "6 streams")
            with pytest.raises(archipel.ResourceExhausted, match=r"\[limits\] streams = 6"):
                c3.subscribe("*", name="s3-0")
            # short calls are served while every stream slot is held
            t0 = time.monotonic()
            assert c3.sql("SELECT 1 AS one FROM fine.t LIMIT 1").read_all().num_rows == 1
            assert "fine.t" in {d.name for d in c3.datasets()}
            print(f"a short query with every stream slot held: {1000 * (time.monotonic() - t0):.0f} ms")
    finally:
        for sub in opened:
            sub.close()


def _publish_messages(name: str, schema: pa.Schema, chunks, stall: threading.Event | None = None):
    yield pb.PublishRequest(header=pb.PublishHeader(dataset=name, mode="create"))
    yield pb.PublishRequest(arrow_schema=serialize_schema(schema))
    if stall is not None:
        stall.wait(30)
    for body, more in chunks:
        yield pb.PublishRequest(chunk=pb.ArrowChunk(body=body, more=more))


def test_a_stalled_publish_blocks_no_one_and_is_cut_when_its_time_is_up(limited):
    stall = threading.Event()
    outcome = {}

    def stalled() -> None:
        with limited.client() as c:
            try:
                c._stub.Publish(_publish_messages("stalled.t", pa.schema([("x", pa.int64())]), [], stall),
                                timeout=60)
                outcome["result"] = "published"
            except Exception as exc:  # grpc.RpcError
                outcome["result"] = f"{exc.code().name}"

    thread = threading.Thread(target=stalled)
    thread.start()
    try:
        wait_for(lambda: not _staging_empty(limited), "the stalled publish is staging", timeout=30)
        with limited.client() as c:  # other writers go on meanwhile
            c.publish("while.stalled", pa.table({"x": [1]}))
            c.delete("while.stalled")
        thread.join(30)
        assert outcome.get("result") == "CANCELLED", outcome  # cut after [limits] publish_seconds = 4
    finally:
        stall.set()
        thread.join(30)
    with limited.client() as c:
        assert "stalled.t" not in {d.name for d in c.datasets()}
    wait_for(lambda: _staging_empty(limited), "the stalled publish left nothing staged", timeout=10)


def test_fragments_past_the_message_limit_are_refused(limited):
    with limited.client() as c:
        chunks = [(b"\0" * (512 * 1024), True)] * 4 + [(b"", False)]
        with pytest.raises(Exception) as err:
            c._stub.Publish(_publish_messages("frag.t", pa.schema([("x", pa.int64())]), chunks), timeout=60)
        assert err.value.code().name == "RESOURCE_EXHAUSTED" and "publish_message_bytes" in err.value.details()
        assert "frag.t" not in {d.name for d in c.datasets()}
        assert c.info()["name"] == "lim"
    assert _staging_empty(limited)


# -- 4: work beyond its budget ----------------------------------------------------------------
@pytest.mark.parametrize("sql,match", [
    ("SELECT x FROM fine.t WHERE " + " OR ".join(f"cone(x, x, {i % 360}, 0, 1)" for i in range(2000)),
     "sky predicates"),
    ("SELECT " + "(" * 500 + "x" + ")" * 500 + " FROM fine.t", "nests parentheses"),
    ("SELECT repeat('x', 2000000000) AS big FROM fine.t", r"repeat\(\) with a count of 2000000000"),
    ("SELECT x FROM fine.t WHERE cone(x, x, 10, 10, 'NaN')", "not the string 'NaN'"),
    ("SELECT x FROM fine.t WHERE cone(x, x, 10, 10, 1e999)", "finite"),
])
def test_queries_beyond_their_budget_are_refused_with_a_message(limited, sql, match):
    with limited.client() as c:
        with pytest.raises(archipel.InvalidArgument, match=match):
            c.sql(sql).read_all()
        assert c.sql("SELECT sum(x) AS s FROM fine.t").read_all()["s"].to_pylist() == [3]


# -- 5: silent corruption ---------------------------------------------------------------------
def _flip(path: Path, n: int = 2000) -> bytes:
    good = path.read_bytes()
    bad = bytearray(good)
    mid = len(bad) // 2
    for i in range(mid, min(len(bad), mid + n)):
        bad[i] ^= 0x5A
    path.write_bytes(bytes(bad))
    return good


def test_corrupt_partitions_are_refused_and_fetched_again(pair):
    a, b = pair
    from skydata import sky_table

    table = sky_table().slice(0, 20000)
    with a.client() as ca:
        ca.publish("corrupt.sky", table, ra="ra", dec="dec")
        truth = ca.sql("SELECT count(*) AS n, max(ra) AS m FROM corrupt.sky", route="local").read_all().to_pylist()
        parts = {p.path: p for p in ca.describe("corrupt.sky").partitions}
    with b.client() as cb:
        wait_for(lambda: "corrupt.sky" in {d.name for d in cb.datasets()}, "b knows the dataset")
        assert cb.replicate("corrupt.sky").wait().state == "ok"
    victim = sorted(parts)[0]
    own = a.folder / "export" / "corrupt.sky" / victim
    good = _flip(own)
    with a.client() as ca:
        for engine in ("arrow", "auto"):
            with pytest.raises(archipel.DataLoss, match=rf"{victim} of corrupt.sky is corrupt on island ha"):
                ca.sql("SELECT count(*) AS n, max(ra) AS m FROM corrupt.sky", route="local", engine=engine).read_all()
        # fetched again from b's verified replica, then answered exactly
        wait_for(lambda: own.read_bytes() == good, "a's file is fetched again from b")
        assert ca.sql("SELECT count(*) AS n, max(ra) AS m FROM corrupt.sky",
                      route="local").read_all().to_pylist() == truth
    # a corrupt replica at b: refused, dropped, and copied again when next needed
    replica = b.folder / "data" / "replicas" / "corrupt.sky" / victim
    _flip(replica)
    with b.client() as cb:
        try:
            got = cb.sql("SELECT count(*) AS n, max(ra) AS m FROM corrupt.sky", route="local").read_all().to_pylist()
        except archipel.DataLoss as exc:  # the query found it first
            assert "replica was dropped" in str(exc)
        except archipel.FailedPrecondition as exc:  # the scheduled check dropped it just before,
            assert "is not held by island hb" in str(exc)  # and it is not copied again yet
        else:  # the scheduled check (verify_seconds = 1) found it first, and it was copied again
            assert got == truth
        wait_for(lambda: "is corrupt on island hb" in b.log.read_text(), "b reported the corrupt replica")
        assert cb.sql("SELECT count(*) AS n, max(ra) AS m FROM corrupt.sky").read_all().to_pylist() == truth
    assert zlib.adler32(own.read_bytes()) == parts[victim].adler32


# -- 6: the smaller holes ---------------------------------------------------------------------
def test_a_killed_islands_xrootd_is_reclaimed_listens_on_its_address_and_serves_partitions_only(tmp_path):
    if shutil.which("xrootd") is None:
        pytest.fail("xrootd is not installed (./dev test installs xrootd-server)")
    base = Path(tempfile.mkdtemp(prefix="archipel-hard-"))
    base.chmod(0o755)  # xrootd drops to its own user, which must reach the island's folders
    folder = base / "hats"
    shutil.copytree(SHARED_HATS / "small_sky_source", folder)
    (folder / "notes.txt").write_text("not a partition")
    x = IslandProcess(base / "x", "hx", extra_config=NO_SPARK + '[replication]\nxrootd = "on"\n').start()
    try:
        with x.client() as c:
            c.ingest(str(folder), "hole.source")
            root = c.info()["root_url"].rstrip("/")
            part = c.describe("hole.source").partitions[0].path
        pidfile = x.folder / "xrootd" / "island-xrootd.pid"
        old = int(pidfile.read_text())
        os.kill(x.proc.pid, signal.SIGKILL)  # the island only: its xrootd child stays on the port
        x.proc.wait()
        x._log.close()
        assert Path(f"/proc/{old}").exists()
        x.start()
        with x.client() as c:
            assert c.info()["root_url"].rstrip("/") == root
        port = int(root.rsplit(":", 1)[1])
        listening = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout.split()
        assert f"127.0.0.1:{port}" in listening, listening  # the island's address only, not every address
        assert not {f"0.0.0.0:{port}", f"*:{port}", f"[::]:{port}"} & set(listening), listening
        assert not Path(f"/proc/{old}").exists() or b"xrootd" not in Path(f"/proc/{old}/cmdline").read_bytes()
        env = {**x.xrootd_env(), "XRD_CONNECTIONRETRY": "1"}
        ok = subprocess.run(["xrdcp", "-f", f"{root}//hole.source/{part}", str(tmp_path / "part")],
                            capture_output=True, text=True, timeout=60, env=env)
        assert ok.returncode == 0, ok.stderr
        for other in ("notes.txt", "properties", "dataset/_metadata"):
            out = subprocess.run(["xrdcp", "-f", f"{root}//hole.source/{other}", str(tmp_path / "other")],
                                 capture_output=True, text=True, timeout=60, env=env)
            assert out.returncode != 0 and not (tmp_path / "other").exists(), other
    finally:
        x.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_ingest_errors_do_not_reveal_host_paths(tmp_path):
    allowed = tmp_path / "incoming"
    allowed.mkdir()
    y = IslandProcess(tmp_path / "y", "hy", extra_config=NO_SPARK + f'[ingest]\nallowed_roots = ["{allowed}"]\n').start()
    try:
        with y.client() as c:
            messages = []
            for path in ("/etc", "/no/such/folder"):
                with pytest.raises(archipel.PermissionDenied) as err:
                    c.ingest(path, "probe.t")
                messages.append(str(err.value).replace(path, "PATH"))
            assert messages[0] == messages[1]
            assert not {d.name for d in c.datasets()} & {"probe.t"}
    finally:
        y.stop()
