"""Appending rows at a dataset's origin: new partition files (readers' files untouched), one
catalog change that peers apply, rules on other islands picking up the new partitions."""

from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import archipel
from islands import SHARED_HATS, IslandProcess, cli, wait_for

pytestmark = pytest.mark.integration

NO_SPARK = "[spark]\nstart = false\n[ingest]\npartition_rows = 4000\n"


def _rows(n: int, seed: int, north: bool = False) -> pa.Table:
    rng = np.random.default_rng(seed)
    dec = rng.uniform(62, 89, n) if north else np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    return pa.table({"id": np.arange(seed * 100_000, seed * 100_000 + n, dtype=np.int64),
                     "ra": rng.uniform(0, 360, n), "dec": dec, "mag": rng.normal(18, 1, n)})


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("append")
    a = IslandProcess(tmp / "a", "pa", extra_config=NO_SPARK).start()
    b = IslandProcess(tmp / "b", "pb", extra_config=NO_SPARK + f'[federation]\npeers = ["{a.address}"]\n').start()
    yield a, b
    b.stop()
    a.stop()


def _files(client, name):
    d = client.describe(name)
    return {p.path: (p.adler32, p.num_rows) for p in d.partitions}


def test_append_adds_files_peers_apply_it_and_rules_follow(pair, tmp_path):
    a, b = pair
    first = _rows(9_000, 1, north=True)
    with a.client() as ca:
        ca.publish("t.grow", first, ra="ra", dec="dec")
        before = _files(ca, "t.grow")
        on_disk = {p: zlib.adler32((a.folder / "data" / "datasets" / "t.grow" / p).read_bytes()) for p in before}
    wait_for(lambda: b.client().datasets("t.grow"))
    with b.client() as cb:
        assert cb.replicate("t.grow").wait().state == "ok"
    more = _rows(6_000, 2)  # all over the sky: into existing pixels and new ones
    with a.client() as ca:
        d = ca.publish("t.grow", more, mode="append")
        assert d.num_rows == 15_000
        after = _files(ca, "t.grow")
        # readers' files are untouched; new ones were added
        assert {p: after[p] for p in before} == before
        for p, adler in on_disk.items():
            assert zlib.adler32((a.folder / "data" / "datasets" / "t.grow" / p).read_bytes()) == adler
        new = set(after) - set(before)
        assert new and all("/append-" in p for p in new)
        assert sum(after[p][1] for p in new) == 6_000
        got = ca.sql("SELECT id FROM t.grow ORDER BY id").read_all()["id"].to_pylist()
        assert got == sorted(first["id"].to_pylist() + more["id"].to_pylist())
        cone = ca.sql("SELECT count(*) AS n FROM t.grow WHERE cone(ra, dec, 120, 70, 5)").read_all()["n"][0].as_py()
    # B applies the append (one change) and its rule copies the new partitions
    wait_for(lambda: b.client().describe("t.grow").num_rows == 15_000)
    assert _files(b.client(), "t.grow") == after
    wait_for(lambda: all(r.state == "ok" and r.files_total == len(after) for r in b.client().rules()
                      if r.dataset == "t.grow"), timeout=120)
    with b.client() as cb:
        assert cb.sql("SELECT count(*) AS n FROM t.grow", route="local").read_all()["n"][0].as_py() == 15_000
        assert cb.sql("SELECT count(*) AS n FROM t.grow WHERE cone(ra, dec, 120, 70, 5)",
                      route="local").read_all()["n"][0].as_py() == cone
    # the CLI appends a file
    path = tmp_path / "more.parquet"
    pq.write_table(_rows(500, 3), path)
    out = cli("append", "t.grow", str(path), env={"ARCHIPEL_ISLAND": a.address})
    assert "appended 500 rows" in out.stdout
    wait_for(lambda: b.client().describe("t.grow").num_rows == 15_500)


def test_bad_appends_are_refused_and_change_nothing(pair, tmp_path):
    a, b = pair
    with a.client() as ca:
        ca.publish("t.fixed", _rows(1_000, 4), ra="ra", dec="dec")
        ca.ingest(str(SHARED_HATS / "small_sky_source"), "t.inplace")
        snapshot = (_files(ca, "t.fixed"), ca.describe("t.fixed").num_rows, ca.info()["catalog_sequence"])
        good = _rows(10, 5)
        cases = [
            ("nope.x", good, archipel.NotFound, "unknown dataset"),
            ("t.fixed", good.drop(["mag"]), archipel.InvalidArgument, "missing"),
            ("t.fixed", good.append_column("extra", pa.array(range(10))), archipel.InvalidArgument, "unknown"),
            ("t.fixed", good.set_column(3, "mag", pa.array(["x"] * 10)), archipel.InvalidArgument, "type"),
            ("t.fixed", good.set_column(2, "dec", pc.add(good["dec"], 200.0)), archipel.InvalidArgument, "dec"),
            ("t.fixed", good.slice(0, 0), archipel.InvalidArgument, "no rows"),
            ("t.inplace", good, archipel.FailedPrecondition, "in place"),
        ]
        for name, table, exc, words in cases:
            with pytest.raises(exc, match=words):
                ca.publish(name, table, mode="append")
        with pytest.raises(archipel.InvalidArgument, match="mode"):
            ca.publish("t.fixed", good, mode="upsert")
        assert (_files(ca, "t.fixed"), ca.describe("t.fixed").num_rows, ca.info()["catalog_sequence"]) == snapshot
    wait_for(lambda: b.client().datasets("t.fixed"))
    with b.client() as cb, pytest.raises(archipel.FailedPrecondition, match="held by island pa"):
        cb.publish("t.fixed", good, mode="append")
    bad = cli("append", "t.fixed", str(tmp_path / "missing.parquet"), env={"ARCHIPEL_ISLAND": a.address},
              check=False)
    assert bad.returncode != 0 and "does not exist" in bad.stderr
    assert a.client().info()["name"] == "pa"
