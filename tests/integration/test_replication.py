"""Replication between three real islands (separate processes): each serves HTTP and runs a
real xrootd child; A and B use the embedded Celery transport, C a real redis-server. Transfers
run in Celery worker processes (root:// through XRootD's client, http:// through the standard library)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from pathlib import Path

import cdshealpix
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from astropy import units as u

import archipel
from archipel.errors import ArchipelError, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from metacatalog import transfers
from metacatalog.store import CatalogStore
from islands import ROOT, SHARED_HATS, IslandProcess, cli, free_port, https_open
from islands import wait_for as _wait_for
from skydata import angular_distance

pytestmark = pytest.mark.integration

CONE = (315.0, -60.0, 4.0)  # inside small_sky_order1's coverage, a few of its pixels
BIG_ROWS = 120_000


def _big_table() -> pa.Table:
    rng = np.random.default_rng(11)
    n = BIG_ROWS
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    cols = {"id": np.arange(n, dtype=np.int64), "ra": ra, "dec": dec}
    for i in range(6):
        cols[f"f{i}"] = rng.normal(size=n)  # incompressible: partitions of a few MB
    return pa.table(cols)


@pytest.fixture(scope="module")
def redis_url():
    assert shutil.which("redis-server"), "redis-server is not installed (./dev test installs it)"
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    for _ in range(100):
        try:
            import socket

            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def base():
    # xrootd drops to its own user, which must be able to reach the islands' folders.
    folder = Path(tempfile.mkdtemp(prefix="archipel-repl-"))
    folder.chmod(0o755)
    # The sample catalog is copied here too: xrootd's user must reach every file it serves,
    # wherever the repository (and ../shared) happens to be cloned.
    shutil.copytree(SHARED_HATS / "small_sky_o1_collection", folder / "hats" / "small_sky_o1_collection")
    yield folder
    if not os.environ.get("ARCHIPEL_KEEP_TEST_DIRS"):
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def trio(base, redis_url):
    assert shutil.which("xrootd"), "xrootd is not installed (./dev test installs xrootd-server)"
    common = "[spark]\nstart = false\n[ingest]\npartition_rows = 30000\n"
    a = IslandProcess(base / "a", "a", extra_config=common)
    a.start()
    b = IslandProcess(base / "b", "b", extra_config=common + "[federation]\npeers = [\"%s\"]\n"
                      "[replication]\nbandwidth_bytes = 150000\n" % a.address)
    c = IslandProcess(base / "c", "c", extra_config=common + "[federation]\npeers = [\"%s\"]\n"
                      "[replication]\nbroker = \"%s\"\ncache_bytes = 4000000\n" % (a.address, redis_url))
    b.start()
    c.start()
    with a.client() as ca:
        ca.ingest(str(base / "hats" / "small_sky_o1_collection"), "sky.order1")
        ca.publish("test.big", _big_table(), ra="ra", dec="dec")
    for isl in (b, c):
        _wait_for(lambda isl=isl: len(isl.client().datasets("test.big")) == 1, f"{isl.name} sees test.big")
        _wait_for(lambda isl=isl: "a" in _urls(isl), f"{isl.name} knows a's data URLs")
    yield a, b, c
    for isl in (c, b, a):
        code = isl.stop()
        assert code == 0, isl.log.read_text()[-3000:]


def _catalog(isl: IslandProcess) -> CatalogStore:
    """The island's catalog, read through the store (as the island's own parts read it)."""
    return CatalogStore(isl.folder / "catalog.sqlite", isl.name)


def _urls(isl: IslandProcess) -> dict[str, tuple[str, str]]:
    return _catalog(isl).islands()


def _replica_files(isl: IslandProcess, dataset: str) -> dict[str, Path]:
    root = isl.folder / "data" / "replicas" / dataset
    # Copies in flight are hidden ``.NAME.TOKEN.part`` files: not replicas (and gone any moment).
    return {str(p.relative_to(root)): p for p in root.rglob("*")
            if p.is_file() and not p.name.startswith(".")} if root.is_dir() else {}


def _adler(path: Path) -> int:
    return zlib.adler32(path.read_bytes())


def _partitions(client, dataset: str):
    return {p.path: p for p in client.describe(dataset).partitions}


def _cone_truth_pixels(parts, cone) -> set[str]:
    """Partitions whose HEALPix cell meets the cone, by cdshealpix at each partition's order."""
    ra, dec, r = cone
    out = set()
    for path, p in parts.items():
        ipix, _, _ = cdshealpix.nested.cone_search(ra * u.deg, dec * u.deg, r * u.deg, depth=p.order, flat=True)
        if p.pixel in set(int(x) for x in ipix):
            out.add(path)
    return out


def _worker_pid(isl: IslandProcess) -> int:
    with isl.client() as c:
        workers = c.info()["workers"]
    assert workers, "the island runs no Celery worker"
    return int(workers[0].split("=")[1])


# -- serving ---------------------------------------------------------------------------------
def test_every_island_serves_http_and_root_and_the_catalog_records_them(trio):
    a, b, c = trio
    for isl in trio:
        info = isl.client().info()
        assert info["http_url"].startswith("https://127.0.0.1:")
        assert info["root_url"].startswith("root://127.0.0.1:"), "xrootd is not serving"
        for other in trio:  # every island's catalog knows every island's URLs
            _wait_for(lambda: _urls(other).get(isl.name) == (info["http_url"], info["root_url"]),
                      f"{other.name} records {isl.name}'s URLs")


def test_http_serves_ranges_of_catalog_partitions_only(trio, base):
    a, _, _ = trio
    info = a.client().info()
    part = next(iter(_partitions(a.client(), "sky.order1").values()))
    local = base / "hats" / "small_sky_o1_collection" / "small_sky_order1" / part.path
    url = f"{info['http_url']}/sky.order1/{part.path}"
    with https_open(url, headers={"Range": "bytes=4-99"}) as resp:
        assert resp.status == 206
        assert resp.read() == local.read_bytes()[4:100]
    for bad in ("sky.order1/../../../etc/passwd", "sky.order1/properties", "nope.x/a.parquet",
                "sky.order1/%2e%2e/%2e%2e/catalog.sqlite"):
        with pytest.raises(urllib.error.HTTPError) as err:
            https_open(f"{info['http_url']}/{bad}")
        assert err.value.code in (403, 404), bad
    assert a.client().info()["name"] == "a"


def test_xrootd_reports_the_catalog_adler32(trio):
    a, _, _ = trio
    info = a.client().info()
    for path, p in list(_partitions(a.client(), "test.big").items())[:3]:
        out = subprocess.run(["xrdfs", info["root_url"].rstrip("/"), "query", "checksum", f"/test.big/{path}"],
                             capture_output=True, text=True, timeout=30, env=a.xrootd_env())
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["adler32", f"{p.adler32:08x}"]


def test_xrootd_serves_islands_of_the_archipelago_only(trio, tmp_path):
    from federation.pki import create_ca, issue_island

    a, _, _ = trio
    url = a.client().info()["root_url"].rstrip("/")
    path = next(iter(_partitions(a.client(), "test.big")))
    anonymous = {k: v for k, v in os.environ.items() if not k.startswith(("X509", "XrdSec"))}
    create_ca(tmp_path / "other-ca")
    issue_island(tmp_path / "other-ca", tmp_path / "evil", "evil", "127.0.0.1")
    foreign = {**a.xrootd_env(), "X509_USER_CERT": str(tmp_path / "evil" / "island.pem"),
               "X509_USER_KEY": str(tmp_path / "evil" / "island-key.pem")}
    for env in (anonymous, foreign):
        out = subprocess.run(["xrdcp", "-f", f"{url}//test.big/{path}", str(tmp_path / "stolen")],
                             capture_output=True, text=True, timeout=60, env={**env, "XRD_CONNECTIONRETRY": "1"})
        assert out.returncode != 0 and "Auth failed" in out.stderr, out.stderr
        assert not (tmp_path / "stolen").exists()
    out = subprocess.run(["xrdcp", "-f", f"{url}//test.big/{path}", str(tmp_path / "fetched")], capture_output=True,
                         text=True, timeout=60, env=a.xrootd_env())
    assert out.returncode == 0, out.stderr


_READ_AHEAD = """
import sys, zlib
from replication.transfer import XrootdStream
url, blocks = sys.argv[1], [int(b) for b in sys.argv[2].split(",")]
for block in blocks:
    with XrootdStream(url) as src:
        data, parts = b"", 0
        while chunk := src.read(block):
            data += chunk
            parts += 1
    print(block, parts, len(data), zlib.adler32(data))
"""


def test_root_reads_one_block_ahead_and_return_the_file_exactly(trio):
    """The workers' root:// reader keeps the next block in flight while a block is used: for
    blocks that divide the file, that do not, and larger than it, the bytes are the file's."""
    a, _, _ = trio
    url = a.client().info()["root_url"].rstrip("/")
    path, part = next(iter(_partitions(a.client(), "test.big").items()))
    size = part.num_bytes
    blocks = [size, size // 4, size // 3 + 1, 4096, 2 * size]
    out = subprocess.run([sys.executable, "-c", _READ_AHEAD, f"{url}//test.big/{path}", ",".join(map(str, blocks))],
                         capture_output=True, text=True, timeout=120, env={**a.xrootd_env(), "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    got = [tuple(map(int, line.split())) for line in out.stdout.split("\n") if line.strip()]
    assert got == [(b, -(-size // b), size, part.adler32) for b in blocks]


# -- rules -----------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol,target", [("root", "b"), ("http", "c")])
def test_cone_rule_copies_exactly_the_pixels_covering_the_cone(trio, protocol, target):
    a, b, c = trio
    dest = {"b": b, "c": c}[target]
    parts = _partitions(a.client(), "sky.order1")
    truth = _cone_truth_pixels(parts, CONE)
    assert 0 < len(truth) < len(parts)
    # Asked at A, carried out by the target (the rule lives there); the CLI follows the job.
    out = cli("replicate", "sky.order1", "--to", target, "--cone", ",".join(map(str, CONE)),
              "--protocol", protocol, env={"ARCHIPEL_ISLAND": a.address})
    assert "ok:" in out.stdout, out.stdout
    held = _replica_files(dest, "sky.order1")
    assert set(held) == truth
    for path, f in held.items():
        assert _adler(f) == parts[path].adler32
    sources = {t.source for t in transfers.states(_catalog(dest), "sky.order1").values()}
    assert sources == {"a"}
    rules = [r for r in dest.client().rules() if r.dataset == "sky.order1" and r.protocol == protocol]
    assert rules and rules[-1].state == "ok" and rules[-1].files_done == len(truth)
    assert rules[-1].bytes_done == sum(parts[p].num_bytes for p in truth)
    # The replica is announced by catalog sync: A lists the target as holding those partitions.
    _wait_for(lambda: all(target in a.client().describe("sky.order1").partitions[i].islands
                          for i, p in enumerate(a.client().describe("sky.order1").partitions) if p.path in truth),
              f"A sees {target}'s replicas")
    listed = cli("rules", env={"ARCHIPEL_ISLAND": dest.address}).stdout
    assert "sky.order1" in listed and "ok" in listed


def test_job_progress_streams_files_and_bytes(trio):
    a, b, _ = trio
    parts = _partitions(a.client(), "test.big")
    with a.client() as ca:
        job = ca.replicate("test.big", "b", moc=b"0/0-11")  # the whole sky, by MOC
        seen = list(job)
    assert seen[-1].state == "ok"
    assert seen[-1].files_done == seen[-1].files_total == len(parts)
    assert seen[-1].bytes_done == sum(p.num_bytes for p in parts.values())
    assert len(seen) >= 3, "progress did not stream"
    done = [s.bytes_done for s in seen]
    assert done == sorted(done)
    for path, f in _replica_files(b, "test.big").items():
        assert _adler(f) == parts[path].adler32


def test_rules_are_refused_with_a_message_and_nothing_changes(trio):
    a, b, c = trio
    before = [r.id for r in c.client().rules()]
    cases = [
        (dict(dataset="bad name;"), InvalidArgument, "name"),
        (dict(dataset="nope.x"), NotFound, "nope.x"),
        (dict(dataset="sky.order1", cone=(315, -60, -1)), InvalidArgument, "negative"),
        (dict(dataset="sky.order1", cone=(315, 99, 1)), InvalidArgument, "dec"),
        (dict(dataset="sky.order1", moc=b"not a moc at all"), InvalidArgument, "MOC"),
        (dict(dataset="sky.order1", moc=b"\x00\x01SIMPLE"), InvalidArgument, "MOC"),
        (dict(dataset="sky.order1", lifetime=-5), InvalidArgument, "lifetime"),
        (dict(dataset="sky.order1", protocol="ftp"), InvalidArgument, "protocol"),
        (dict(dataset="sky.order1", cone=(0, 0, 1)), InvalidArgument, "covers no partition"),
    ]
    with c.client() as cc:
        for kwargs, exc, words in cases:
            with pytest.raises(exc, match=words):
                cc.replicate(**kwargs)
        with pytest.raises(FailedPrecondition, match="holds all of it"):
            a.client().replicate("sky.order1")
        with pytest.raises(ArchipelError, match="not known"):
            cc.replicate("sky.order1", "atlantis")
        with pytest.raises(NotFound, match="no rule"):
            cc.delete_rule("000000000000")
        assert [r.id for r in cc.rules()] == before
        assert cc.info()["name"] == "c"
    bad = cli("replicate", "sky.order1", "--cone", "1,2", env={"ARCHIPEL_ISLAND": c.address}, check=False)
    assert bad.returncode != 0 and "RA,DEC,RADIUS" in bad.stderr
    bad = cli("replicate", "sky.order1", "--moc", "/nonexistent.fits", env={"ARCHIPEL_ISLAND": c.address},
              check=False)
    assert bad.returncode != 0 and "cannot read the MOC" in bad.stderr


def test_deleting_a_rule_unpins_its_replicas(trio):
    a, _, c = trio
    part = sorted(_partitions(a.client(), "test.big").values(), key=lambda p: p.path)[-1]
    with c.client() as cc:
        before = cc.cache()
        rule = cc.replicate("test.big", moc=f"{part.order}/{part.pixel}".encode(), lifetime=3600).wait()
        assert rule.state == "ok" and rule.expires > 0
        pinned = cc.cache()
        assert pinned.pinned_bytes == before.pinned_bytes + part.num_bytes
    env = {"ARCHIPEL_ISLAND": c.address}
    listed = cli("rules", env=env).stdout
    assert rule.id in listed and "expires" in listed
    out = cli("rules", "delete", rule.id, env=env)
    assert "evictable" in out.stdout
    with c.client() as cc:
        after = cc.cache()
        assert rule.id not in [r.id for r in cc.rules()]
    assert after.pinned_bytes == before.pinned_bytes
    assert part.path in _replica_files(c, "test.big")  # still here, as cache
    shown = cli("cache", env=env).stdout
    assert "pinned by rules" in shown and "test.big" in shown
    bad = cli("rules", "delete", env=env, check=False)
    assert bad.returncode != 0 and "needs a rule ID" in bad.stderr


def test_quota_too_small_for_a_pinned_rule_evicts_nothing(trio):
    a, _, c = trio
    with c.client() as cc:
        pinned_before = {k: v for k, v in _replica_files(c, "sky.order1").items()}
        usage = cc.cache()
        with pytest.raises(ResourceExhausted, match="quota"):
            cc.replicate("test.big")  # ~20 MB, the quota is 12 MB
        after = cc.cache()
    assert after.pinned_bytes == usage.pinned_bytes and after.used_bytes == usage.used_bytes
    assert set(_replica_files(c, "sky.order1")) == set(pinned_before)
    assert not any(r.dataset == "test.big" for r in c.client().rules())


# -- lazy replication and the cache ----------------------------------------------------------
def test_lazy_replication_copies_only_the_needed_pixels_once(trio):
    a, _, c = trio
    sql = "SELECT id, ra, dec FROM test.big WHERE cone(ra, dec, 120, 30, 2) ORDER BY id"
    parts = _partitions(a.client(), "test.big")
    with c.client() as cc:
        plan = cc.explain(sql, route="replicate")
        needed = {p for p in parts if f"{parts[p].order}/{parts[p].pixel}" in plan.datasets[0].pixels}
        assert "replicate:a" in plan.datasets[0].placement
        first = cc.sql(sql, route="replicate").read_all()
        held = set(_replica_files(c, "test.big"))
        assert needed <= held and len(held) < len(parts)
        copied = len(transfers.states(_catalog(c), "test.big"))
        second = cc.sql(sql, route="replicate").read_all()
        assert len(transfers.states(_catalog(c), "test.big")) == copied
        again = cc.explain(sql, route="auto")
    assert "local replica" in again.datasets[0].placement, again
    truth = a.client().sql(sql, route="local").read_all()
    assert first.equals(truth) and second.equals(truth)
    t = _big_table()
    d = angular_distance(t["ra"].to_numpy(), t["dec"].to_numpy(), 120, 30)
    assert first.num_rows == int((d <= np.radians(2)).sum()) > 0


def _done_count(isl: IslandProcess) -> int:
    return sum(p.read_text().count("'done from") for p in (isl.folder / "logs").glob("*.log"))


def test_concurrent_queries_copy_a_partition_once(trio):
    import concurrent.futures as cf

    a, _, c = trio
    sql = "SELECT count(*) AS n FROM test.big WHERE cone(ra, dec, 200, -20, 1.5)"
    with c.client() as cc:
        need = cc.explain(sql, route="replicate").datasets[0].partitions_read
    before = _done_count(c)

    def run(_):
        with archipel.connect(c.address) as cx:
            return cx.sql(sql, route="replicate").read_all()["n"][0].as_py()

    with cf.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(run, range(6)))
    assert len(set(results)) == 1 and results[0] > 0
    _wait_for(lambda: _done_count(c) - before >= need, "the worker logs show the copies")
    # No second copy comes later: a marker query elsewhere in the sky is replicated after them
    # (the worker's queue is first in, first out), and the count is theirs plus its own.
    held = set(_replica_files(c, "test.big"))
    with c.client() as cc:
        cc.sql("SELECT count(*) AS n FROM test.big WHERE cone(ra, dec, 20, 40, 1.5)", route="replicate").read_all()
    marker = len(set(_replica_files(c, "test.big")) - held)
    assert marker > 0, "the marker query copied nothing: it proves nothing"
    _wait_for(lambda: _done_count(c) - before >= need + marker, "the worker logs show the marker's copies")
    assert _done_count(c) - before == need + marker


def test_cached_replicas_are_evicted_lru_but_pinned_ones_stay(trio):
    a, _, c = trio
    pinned = set(_replica_files(c, "sky.order1"))
    assert pinned
    with c.client() as cc:
        quota = cc.cache().quota_bytes
        for ra0 in range(0, 360, 45):  # many cones: more bytes than the quota
            cc.sql(f"SELECT count(*) FROM test.big WHERE cone(ra, dec, {ra0}, 0, 3)", route="replicate").read_all()
        _wait_for(lambda: cc.cache().used_bytes <= quota, "the cache fits its quota")
        usage = cc.cache()
        # the pinned region still answers here, from C's own replicas
        n = cc.sql(f"SELECT count(*) AS n FROM sky.order1 WHERE cone(ra, dec, {CONE[0]}, {CONE[1]}, {CONE[2]})",
                   route="local").read_all()["n"][0].as_py()
        assert n > 0
    assert set(_replica_files(c, "sky.order1")) == pinned
    assert usage.pinned_bytes > 0 and usage.used_bytes <= quota and usage.cached_bytes > 0
    # files on disk are exactly the ones the catalog records
    recorded = {p for _, p in _catalog(c).local_files("test.big")}
    assert recorded == set(_replica_files(c, "test.big"))


def test_auto_copies_partitions_when_cheaper_than_the_result(trio):
    a, _, c = trio
    with c.client() as cc:
        scan = cc.explain("SELECT * FROM sky.order1")  # the result outweighs the partitions
        assert scan.datasets[0].placement.startswith("replicate:a"), scan
        agg = cc.explain("SELECT count(*) FROM test.big")
        assert agg.engine == "remote:a", agg  # a count moves fewer bytes than its partitions
        grouped = cc.explain("SELECT CAST(ra AS INT) AS r, count(*) FROM test.big GROUP BY CAST(ra AS INT)")
        assert grouped.engine == "remote:a", grouped
        cone = cc.explain("SELECT * FROM test.big WHERE cone(ra, dec, 60, 10, 0.5)")
        assert cone.engine == "remote:a", cone  # a small cone's rows are a sliver of its pixel
        whole = cc.explain("SELECT * FROM test.big")  # more than C's cache quota: never copied
        assert whole.engine == "remote:a", whole
        rows = cc.sql("SELECT * FROM sky.order1 ORDER BY id").read_all()
    assert rows.num_rows == 131
    assert set(_replica_files(c, "sky.order1")) == set(_partitions(a.client(), "sky.order1"))


def test_partitions_that_appear_under_a_rule_are_replicated(trio):
    a, b, _ = trio
    whole = _big_table().select(["id", "ra", "dec"])
    small = whole.filter(pc.greater(whole["dec"], 60)).slice(0, 2_000)  # a few pixels round the pole
    with a.client() as ca:
        ca.publish("test.growing", small, ra="ra", dec="dec")
    _wait_for(lambda: len(b.client().datasets("test.growing")) == 1, "B sees test.growing")
    with b.client() as cb:
        rule = cb.replicate("test.growing").wait()
        assert rule.state == "ok"
    first = {k: _adler(v) for k, v in _replica_files(b, "test.growing").items()}
    # The dataset is remade at its origin with many more rows: new partitions, changed files.
    with a.client() as ca:
        ca.delete("test.growing")
        ca.publish("test.growing", _big_table().slice(0, 90_000).select(["id", "ra", "dec"]), ra="ra", dec="dec")
    parts = _partitions(a.client(), "test.growing")
    assert len(parts) > len(first)
    _wait_for(lambda: {k: _adler(v) for k, v in _replica_files(b, "test.growing").items()}
              == {k: p.adler32 for k, p in parts.items()}, "B holds the new partitions", timeout=120)
    with b.client() as cb:
        _wait_for(lambda: next(r for r in cb.rules() if r.id == rule.id).state == "ok", "the rule is ok")
        got = cb.sql("SELECT count(*) AS n FROM test.growing", route="local").read_all()["n"][0].as_py()
    assert got == 90_000


# -- faults ----------------------------------------------------------------------------------
def _copying_bytes(isl: IslandProcess, dataset: str) -> int:
    return max([t.bytes_done for t in transfers.states(_catalog(isl), dataset).values() if t.state == "copying"],
               default=0)


def test_worker_killed_mid_transfer_leaves_no_partial_file_and_the_job_completes(trio):
    a, b, _ = trio
    with a.client() as ca:
        ca.publish("test.big2", _big_table().slice(0, 60_000), ra="ra", dec="dec")
    _wait_for(lambda: len(b.client().datasets("test.big2")) == 1, "B sees test.big2")
    parts = _partitions(a.client(), "test.big2")
    with b.client() as cb:
        rule_id = cb.replicate("test.big2", detach=True).rule_id
        # B's transfers are throttled ([replication] bandwidth_bytes): the kill lands mid-file.
        _wait_for(lambda: _copying_bytes(b, "test.big2") > 0, "a transfer is under way", timeout=60)
        pid = _worker_pid(b)
        os.kill(pid, signal.SIGKILL)
        visible = {k for k in _replica_files(b, "test.big2") if not Path(k).name.startswith(".")}
        assert visible < set(parts)
        for path in visible:  # whatever is visible under a partition's name is whole and verified
            assert _adler(_replica_files(b, "test.big2")[path]) == parts[path].adler32
        _wait_for(lambda: b.client().info()["workers"] not in ([], [f"w1@b={pid}"]), "the island restarted its worker",
                  timeout=60)
        _wait_for(lambda: next(r for r in cb.rules() if r.id == rule_id).state == "ok", "the rule completes",
                  timeout=240)
    files = _replica_files(b, "test.big2")
    assert set(files) == set(parts), "a partial file was left behind"
    for path, f in files.items():
        assert _adler(f) == parts[path].adler32


def _all_of_big_on_b(trio) -> dict:
    """test.big's partitions, once B holds every one of them (whichever tests ran before)."""
    a, b, _ = trio
    parts = _partitions(a.client(), "test.big")
    if set(_replica_files(b, "test.big")) != set(parts):
        with a.client() as ca:
            assert ca.replicate("test.big", "b", moc=b"0/0-11").wait().state == "ok"
    assert set(_replica_files(b, "test.big")) == set(parts)
    return parts


def test_corrupt_source_is_detected_reported_and_another_source_used(trio):
    a, b, c = trio
    parts = _all_of_big_on_b(trio)
    held_c = set(_replica_files(c, "test.big"))
    victim = sorted(set(parts) - held_c)[0]
    p = parts[victim]
    origin_file = Path(a.client().describe("test.big").root if hasattr(a.client().describe("test.big"), "root")
                       else "") / victim
    origin_file = a.folder / "export" / "test.big" / victim
    good = origin_file.read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    origin_file.write_bytes(bytes(bad))
    try:
        with c.client() as cc:
            rule = cc.replicate("test.big", moc=f"{p.order}/{p.pixel}".encode()).wait()
            assert rule.state == "ok" and rule.files_done == 1
            errors = cc.cache().errors
        assert any(e.startswith("a: checksum mismatch of " + victim) for e in errors), errors
        assert _adler(_replica_files(c, "test.big")[victim]) == p.adler32
        assert transfers.states(_catalog(c), "test.big")[victim].source == "b"
    finally:
        origin_file.write_bytes(good)


def test_source_down_another_replica_is_used_offline_queries_go_on(trio):
    a, b, c = trio
    parts = _all_of_big_on_b(trio)
    truth = a.client().sql(f"SELECT id FROM sky.order1 WHERE cone(ra, dec, {CONE[0]}, {CONE[1]}, 3) ORDER BY id",
                           route="local").read_all()
    with a.client() as ca:  # a dataset no other island holds any of
        ca.publish("test.only_a", _big_table().slice(0, 1000).select(["id", "ra", "dec"]), ra="ra", dec="dec")
    _wait_for(lambda: len(c.client().datasets("test.only_a")) == 1, "C sees test.only_a")
    a.kill()
    try:
        _wait_for(lambda: any(p["island"] == "a" and p["state"] == "down" for p in c.client().peers()),
                  "C sees A down")
        # Failover: the origin is down, B holds replicas of every partition: the query runs there.
        with c.client() as cc:
            sql = "SELECT count(*) AS n FROM test.big"
            assert cc.explain(sql).engine == "remote:b"
            assert cc.sql(sql).read_all()["n"][0].as_py() == BIG_ROWS
        # A partition held by B (and not by C): copied from B.
        held_c = set(_replica_files(c, "test.big"))
        victim = sorted(set(parts) - held_c)[0]
        p = parts[victim]
        with c.client() as cc:
            rule = cc.replicate("test.big", moc=f"{p.order}/{p.pixel}".encode()).wait()
        assert rule.state == "ok"
        assert transfers.states(_catalog(c), "test.big")[victim].source == "b"
        # A partition only A holds: a clear error, naming the source.
        q = next(iter(_partitions(c.client(), "test.only_a").values()))
        with c.client() as cc:
            stuck = cc.replicate("test.only_a", moc=f"{q.order}/{q.pixel}".encode()).wait()
        assert stuck.state == "stuck" and stuck.files_failed == 1
        assert "a: cannot open" in " ".join(stuck.errors), stuck.errors
        # Offline: B answers queries over the region it holds, with every other island down.
        c.stop()
        try:
            with b.client() as cb:
                got = cb.sql(f"SELECT id FROM sky.order1 WHERE cone(ra, dec, {CONE[0]}, {CONE[1]}, 3) ORDER BY id"
                             ).read_all()
                assert got.equals(truth)
                # beyond what B holds: a clear error naming the island that is down
                # (A and C are both down now; C stops in a fraction of a second, so B may not
                # have seen it go and try it first: either is named)
                with pytest.raises(ArchipelError, match=r"island (a|c)\b"):
                    cb.sql("SELECT count(*) FROM sky.order1").read_all()
                assert cb.info()["name"] == "b"
        finally:
            c.start()
    finally:
        a.start()
