"""Ingest and publish on a real island: HATS as it is, Parquet partitioned into valid HATS,
plain tables, all-or-nothing transactions, and hostile input that loses nothing."""

from __future__ import annotations


import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import archipel
from islands import SHARED_HATS

HOSTILE_NAMES = ["", "../etc", "a/b", "a\\b", "x'; DROP TABLE datasets; --", "a..b", ".a", "a.", "1abc",
                 "a.b.c.d", "a b", "gaia\x00dr3", "ü.x", "`a`", "a" * 300]


def test_shared_collection_registered_with_margins_and_index(client):
    names = {d.name: d for d in client.datasets()}
    assert names["sky.order1"].kind == "catalog" and names["sky.order1"].num_rows == 131
    assert names["sky.order1"].num_partitions == 4
    assert names["sky.order1_margin"].kind == "margin" and names["sky.order1_margin"].num_rows == 47
    assert names["sky.order1_margin_10arcs"].num_rows == 0
    assert names["sky.order1_id_index"].kind == "index" and names["sky.order1_id_index"].num_rows == 131
    assert names["sky.source"].kind == "source" and names["sky.source"].num_rows == 17161
    assert names["sky.source"].num_partitions == 14


def test_describe_reads_metadata_not_data(client):
    d = client.describe("sky.order1")
    assert d.schema.names == ["_healpix_29", "id", "ra", "dec", "ra_error", "dec_error"]
    assert d.ra_column == "ra" and d.dec_column == "dec"
    assert {(p.order, p.pixel) for p in d.partitions} == {(1, 44), (1, 45), (1, 46), (1, 47)}
    assert d.moc.split()[0] == "0/11" and d.sky_fraction == pytest.approx(4 / 48)  # 1/44-47 merge into 0/11
    truth = pq.read_table(SHARED_HATS / "small_sky_o1_collection" / "small_sky_order1" / "dataset"
                          / "Norder=1" / "Dir=0" / "Npix=44.parquet")
    p44 = next(p for p in d.partitions if p.pixel == 44)
    assert p44.num_rows == truth.num_rows
    assert p44.stats["ra"] == [pytest.approx(min(truth["ra"].to_pylist())), pytest.approx(max(truth["ra"].to_pylist()))]
    assert p44.islands == ["alpha"] and p44.adler32 > 0
    assert d.hats_properties["hats_col_ra"] == "ra"
    with pytest.raises(archipel.NotFound):
        client.describe("sky.nothing_here")


def test_partitioned_parquet_is_valid_hats(client, island, sky):
    from hats.io.validation import is_valid_catalog

    d = client.describe("test.allsky")
    assert d.kind == "catalog" and d.num_rows == sky[0].num_rows
    root = island.folder / "data" / "datasets" / "test.allsky"
    assert is_valid_catalog(root, strict=True, verbose=False)
    orders = {p.order for p in d.partitions}
    assert len(orders) > 1, "adaptive partitioning should give several orders"
    assert all(p.num_rows <= 1500 for p in d.partitions)
    for p in d.partitions:
        t = pq.read_table(root / p.path)
        h = t["_healpix_29"].to_numpy()
        assert np.all((h >> (2 * (29 - p.order))) == p.pixel)
        assert np.all(np.diff(h) >= 0), "rows are sorted by _healpix_29"


def test_plain_table_without_sky_columns(island, tmp_path):
    t = pa.table({"run": [1, 2, 3], "night": ["a", "b", "c"], "seeing": [0.7, 0.9, 1.1]})
    pq.write_table(t, tmp_path / "runs.parquet")
    with island.client() as c:
        (d,) = c.ingest(str(tmp_path / "runs.parquet"), "obs.runs")
        assert d.kind == "table" and d.ra_column == "" and d.num_rows == 3
        got = c.sql("SELECT * FROM obs.runs ORDER BY run").read_all()
        assert got.equals(t)


def test_ingest_with_explicit_sky_columns(island, tmp_path, sky):
    t = sky[0].rename_columns(["oid", "alpha", "delta", "m", "me", "b", "f"]).slice(0, 2000)
    pq.write_table(t, tmp_path / "odd.parquet")
    with island.client() as c:
        (d,) = c.ingest(str(tmp_path / "odd.parquet"), "test.odd_names", ra="alpha", dec="delta")
        assert d.ra_column == "alpha" and d.kind == "catalog"
        got = c.sql("SELECT count(*) AS n FROM test.odd_names WHERE cone(alpha, delta, 0, 90, 5)").read_all()
        from skydata import angular_distance

        truth = int((angular_distance(t["alpha"].to_numpy(), t["delta"].to_numpy(), 0, 90) <= np.radians(5)).sum())
        assert got["n"][0].as_py() == truth


def _snapshot(island, client) -> tuple:
    data = island.folder / "data"
    files = sorted(str(p.relative_to(data)) for p in data.rglob("*") if p.is_file())
    return client.info()["catalog_sequence"], [d.name for d in client.datasets()], files


def test_ingest_is_all_or_nothing(island, tmp_path, sky):
    good = tmp_path / "good.parquet"
    pq.write_table(sky[0].slice(0, 500), good)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 but not really a parquet file")
    with island.client() as c:
        before = _snapshot(island, c)
        with pytest.raises(archipel.InvalidArgument, match="not a readable Parquet"):
            c.ingest_many([(str(good), "tx.good", None, None), (str(bad), "tx.bad", None, None)])
        assert _snapshot(island, c) == before
        # an existing name as the second item: still nothing of the first
        with pytest.raises(archipel.AlreadyExists):
            c.ingest_many([(str(good), "tx.good", None, None), (str(good), "sky.order1", None, None)])
        assert _snapshot(island, c) == before
        seq = before[0]
        c.ingest_many([(str(good), "tx.one", None, None), (str(good), "tx.two", None, None)])
        after = c.info()["catalog_sequence"]
        assert after == seq + 2
        assert {"tx.one", "tx.two"} <= {d.name for d in c.datasets("tx.*")}


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_dataset_names_are_refused(island, tmp_path, name):
    f = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": [1]}), f)
    with island.client() as c:
        before = _snapshot(island, c)
        with pytest.raises(archipel.InvalidArgument):
            c.ingest(str(f), name)
        with pytest.raises(archipel.InvalidArgument):
            c.publish(name, pa.table({"x": [1]}))
        with pytest.raises(archipel.InvalidArgument):
            c.describe(name)
        assert _snapshot(island, c) == before


def test_hostile_names_refused_by_the_island_itself(island):
    """Bypassing the client's own check: the island refuses on its side too."""
    from archipel.v1 import island_pb2 as pb

    with island.client() as c:
        for name in ("../../etc/passwd", "a/b", "x'--"):
            with pytest.raises(archipel.InvalidArgument):
                c._unary("DescribeDataset", pb.DescribeDatasetRequest(name=name))
            with pytest.raises(archipel.InvalidArgument):
                c._unary("Ingest", pb.IngestRequest(items=[pb.IngestItem(path="/tmp", dataset=name)]))


def _all_refused(island, cases: list[tuple[str, str, str, dict]]) -> None:
    """Each ingest (PATH, DATASET, MESSAGE, KEYWORDS) is refused with an InvalidArgument saying
    MESSAGE, and the island's catalog is as it was."""
    with island.client() as c:
        before = _snapshot(island, c)
        for path, name, message, kw in cases:
            with pytest.raises(archipel.InvalidArgument, match=message or None):
                c.ingest(path, name, **kw)
        assert _snapshot(island, c) == before


def test_bad_paths_and_files(island, tmp_path):
    (tmp_path / "notparquet.parquet").write_text("hello, I am text")
    (tmp_path / "empty").mkdir()
    _all_refused(island, [(str(tmp_path / "notparquet.parquet"), "bad.text", "not a readable Parquet", {}),
                          (str(tmp_path / "missing"), "bad.missing", "does not exist", {}),
                          (str(tmp_path / "empty"), "bad.empty", "no .parquet", {}),
                          ("", "bad.empty_path", "", {})])


def test_bad_sky_values_refused(island, tmp_path):
    t = pa.table({"ra": [10.0, None, 30.0], "dec": [1.0, 2.0, 3.0]})
    pq.write_table(t, tmp_path / "nulls.parquet")
    t2 = pa.table({"ra": [10.0, 20.0], "dec": [1.0, 95.0]})
    pq.write_table(t2, tmp_path / "dec.parquet")
    _all_refused(island, [(str(tmp_path / "nulls.parquet"), "bad.nulls", "null|NaN", {}),
                          (str(tmp_path / "dec.parquet"), "bad.dec", "outside", {}),
                          (str(tmp_path / "dec.parquet"), "bad.cols", "not in the data", {"ra": "nope", "dec": "dec"})])


def test_publish_sky_catalog_and_query_it_back(island, sky):
    t = sky[0].slice(0, 5000)
    with island.client() as c:
        d = c.publish("pub.sky", t)
        assert d.kind == "catalog" and d.num_rows == 5000 and d.origin == "alpha"
        got = c.sql("SELECT id, ra, dec, mag, band FROM pub.sky").read_all().sort_by("id")
        assert got.equals(t.select(["id", "ra", "dec", "mag", "band"]))
        with pytest.raises(archipel.AlreadyExists):
            c.publish("pub.sky", t)
        assert c.describe("pub.sky").num_rows == 5000
        # pandas DataFrames are accepted too
        d2 = c.publish("pub.frame", t.slice(0, 10).to_pandas())
        assert d2.num_rows == 10


def test_publish_malformed_streams_are_refused(island):
    from archipel.v1 import island_pb2 as pb

    with island.client() as c:
        before = _snapshot(island, c)
        cases = [
            [],
            [pb.PublishRequest(arrow_schema=b"junk")],
            [pb.PublishRequest(header=pb.PublishHeader(dataset="pub.bad")), pb.PublishRequest(arrow_schema=b"junk")],
            [pb.PublishRequest(header=pb.PublishHeader(dataset="pub.bad")),
             pb.PublishRequest(arrow_schema=pa.schema([("x", pa.int64())]).serialize().to_pybytes()),
             pb.PublishRequest(chunk=pb.ArrowChunk(body=b"\x00" * 100))],
            [pb.PublishRequest(header=pb.PublishHeader(dataset="pub.bad", mode="upsert"))],
            [pb.PublishRequest(header=pb.PublishHeader(dataset="pub.bad")),
             pb.PublishRequest(arrow_schema=pa.schema([("x", pa.int64())]).serialize().to_pybytes())],
        ]
        for messages in cases:
            with pytest.raises(archipel.InvalidArgument):
                try:
                    c._stub.Publish(iter(messages), timeout=30)
                except Exception as exc:
                    from archipel.types import rpc_error

                    raise rpc_error(exc, c.address) from None
        assert _snapshot(island, c) == before


def test_dataset_names_complete_in_ipython(island):
    """IPython completes ``client["<TAB>`` from ``_ipython_key_completions_``; the list follows
    the catalog (refreshed after a publish)."""
    with island.client() as c:
        names = c._ipython_key_completions_()
        assert {"sky.order1", "sky.source", "test.allsky"} <= set(names)
        assert c["sky.order1"].num_rows == 131
        c.publish("complete.me", {"x": [1]})
        assert "complete.me" in c._ipython_key_completions_()
