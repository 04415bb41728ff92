"""Queries against a real island process with real Spark, checked against pyarrow truth."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import archipel
from islands import SHARED_HATS, wait_for
from skydata import cone_truth, shared_join_truth
from tables import assert_same_answer

ENGINES = ["arrow", "spark"]

CONES = [
    (315.0, -60.0, 0.5), (315.0, -60.0, 2.0), (315.0, -60.0, 10.0), (300.0, -45.0, 25.0),
    (0.0, 89.9, 0.3), (123.0, 89.5, 1.5), (0.0, 90.0, 2.0),            # north pole
    (200.0, -89.7, 0.5), (0.0, -90.0, 1.0),                              # south pole
    (0.05, 10.0, 0.4), (359.95, 10.0, 0.8), (360.0, 10.2, 1.2), (-0.3, 9.8, 0.6),  # across ra = 0/360
    (45.0, 0.0, 0.0), (10.0, 20.0, 179.0),
]


def ids_of(table: pa.Table, col: str = "id") -> set[int]:
    return set(table[col].to_pylist())


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("cone", CONES, ids=[f"{c[0]}_{c[1]}_{c[2]}" for c in CONES])
def test_cone_matches_truth(client, sky, engine, cone):
    ra0, dec0, r = cone
    got = client.sql(f"SELECT id, ra, dec FROM test.allsky WHERE cone(ra, dec, {ra0}, {dec0}, {r})",
                     engine=engine).read_all()
    assert ids_of(got) == cone_truth(sky[0], ra0, dec0, r)


@pytest.mark.parametrize("engine", ENGINES)
def test_adql_contains_matches_truth(client, sky, engine):
    got = client.sql("SELECT id FROM test.allsky "
                     "WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 0.1, 10.0, 0.7)) = 1",
                     engine=engine).read_all()
    assert ids_of(got) == cone_truth(sky[0], 0.1, 10.0, 0.7)


@pytest.mark.parametrize("engine", ENGINES)
def test_cone_on_shared_source_catalog(client, engine):
    truth = pq.read_table(SHARED_HATS / "small_sky_source" / "dataset")
    got = client.sql("SELECT source_id FROM sky.source WHERE cone(source_ra, source_dec, 320, -50, 3)",
                     engine=engine).read_all()
    assert ids_of(got, "source_id") == cone_truth(truth, 320, -50, 3, "source_ra", "source_dec")
    assert len(got) > 0


def test_pruning_reads_only_matching_pixels(client, sky):
    plan = client.explain("SELECT id FROM test.allsky WHERE cone(ra, dec, 0.0, 90.0, 1.0)")
    (d,) = plan.datasets
    assert 0 < d.partitions_read < d.partitions_total
    # every pixel that holds an answer row is read
    desc = client.describe("test.allsky")
    read = set(d.pixels)
    table = sky[0]
    truth = cone_truth(table, 0.0, 90.0, 1.0)
    from metacatalog.sky import healpix29

    pos = table.filter(pc.is_in(table["id"], pa.array(sorted(truth))))
    h = healpix29(pos["ra"].to_numpy(), pos["dec"].to_numpy())
    holding = {f"{p.order}/{p.pixel}" for p in desc.partitions
               if np.any((h >> (2 * (29 - p.order))) == p.pixel)}
    assert holding <= read


@pytest.mark.parametrize("engine", ENGINES)
def test_pruned_partitions_are_never_opened(island, tmp_path, engine):
    """A copy of small_sky_source with a far-away pixel file replaced by garbage: cones away
    from it still work (the file is never opened), a full scan fails on it."""
    copy = tmp_path / "source_copy"
    shutil.copytree(SHARED_HATS / "small_sky_source", copy)
    with island.client() as c:
        name = f"prune.source_{engine}"
        c.ingest(str(copy), name)
        far = copy / "dataset" / "Norder=0" / "Dir=0" / "Npix=4.parquet"
        far.write_bytes(b"this is not parquet")
        plan = c.explain(f"SELECT count(*) FROM {name} WHERE cone(source_ra, source_dec, 320, -50, 1)")
        assert "0/4" not in plan.datasets[0].pixels
        got = c.sql(f"SELECT source_id FROM {name} WHERE cone(source_ra, source_dec, 320, -50, 1)",
                    engine=engine).read_all()
        truth = pq.read_table(SHARED_HATS / "small_sky_source" / "dataset")
        assert ids_of(got, "source_id") == cone_truth(truth, 320, -50, 1, "source_ra", "source_dec")
        with pytest.raises(archipel.ArchipelError):
            c.sql(f"SELECT count(*) FROM {name}", engine=engine).read_all()
        assert c.info()["name"] == "alpha"


def test_full_scan_of_shared_catalog_equals_files(client):
    truth = pq.read_table(SHARED_HATS / "small_sky_o1_collection" / "small_sky_order1" / "dataset")
    got = client.sql("SELECT * FROM sky.order1").read_all()
    assert got.num_rows == truth.num_rows == 131
    cols = [c for c in got.column_names]
    assert got.sort_by("id").select(cols).equals(truth.select(cols).sort_by("id"))


@pytest.mark.parametrize("engine", ENGINES)
def test_join_across_catalogs_matches_pyarrow(client, engine):
    truth = shared_join_truth(SHARED_HATS)
    got = client.sql("SELECT s.object_id, count(s.source_id) AS n, avg(s.mag) AS mean_mag "
                     "FROM sky.source s JOIN sky.order1 o ON s.object_id = o.id "
                     "GROUP BY s.object_id ORDER BY s.object_id", engine=engine).read_all()
    assert got["object_id"].to_pylist() == truth["object_id"].to_pylist()
    assert got["n"].to_pylist() == truth["source_id_count"].to_pylist()
    np.testing.assert_allclose(got["mean_mag"].to_numpy(), truth["mag_mean"].to_numpy(), rtol=1e-12)


DIFFERENTIAL = [
    "SELECT * FROM test.allsky",
    "SELECT id, ra, dec FROM test.allsky WHERE cone(ra, dec, 0, 10, 1.5)",
    "SELECT id, mag FROM test.allsky WHERE mag < 15 AND band = 'g'",
    "SELECT id, mag_err FROM test.allsky WHERE mag_err IS NULL",
    "SELECT id, mag * 2 + 1 AS m2, upper(band) AS b FROM test.allsky WHERE flags IN (1, 3)",
    "SELECT count(*) FROM test.allsky",
    "SELECT band, count(*) AS n, min(mag) AS lo, max(mag) AS hi, avg(mag) AS mean FROM test.allsky GROUP BY band",
    "SELECT flags, sum(id) AS s, count(mag_err) AS c FROM test.allsky WHERE dec > 80 GROUP BY flags",
    "SELECT id FROM test.allsky WHERE cone(ra, dec, 0, 90, 2) ORDER BY mag DESC, id LIMIT 17",
    "SELECT DISTINCT band FROM test.allsky",
    "SELECT source_id, band, mag FROM sky.source WHERE cone(source_ra, source_dec, 315, -60, 4) AND mag > 15",
    "SELECT band, count(*) AS n FROM sky.source GROUP BY band HAVING count(*) > 2800",
    "SELECT id, ra FROM sky.order1 WHERE ra BETWEEN 300 AND 320 AND dec < -40",
    "SELECT CASE WHEN mag > 18 THEN 'faint' ELSE 'bright' END AS cls, count(*) AS n FROM test.allsky GROUP BY 1",
    "SELECT id, round(ra, 2) AS r, abs(dec) AS ad, sqrt(mag) AS sm FROM test.allsky WHERE id < 500",
    "SELECT * FROM sky.order1_margin_10arcs",
]


@pytest.mark.parametrize("query", DIFFERENTIAL)
def test_engines_agree(client, query):
    arrow = client.sql(query, engine="arrow")
    spark = client.sql(query, engine="spark")
    a, s = arrow.read_all(), spark.read_all()
    assert arrow.stats.engine == "arrow" and spark.stats.engine == "spark"
    assert_same_answer(a, s)


def test_auto_engine_choice(client):
    assert client.explain("SELECT id FROM test.allsky WHERE mag < 12").engine == "arrow"
    assert client.explain("SELECT count(*) FROM test.allsky").engine == "arrow"
    assert client.explain("SELECT a.id FROM test.allsky a JOIN sky.order1 b ON a.id = b.id").engine == "spark"
    assert client.explain("SELECT id, rank() OVER (ORDER BY mag) FROM test.allsky").engine == "spark"


def test_result_streams_in_many_bounded_messages(client, sky):
    result = client.sql("SELECT * FROM test.allsky")
    batches = list(result)
    assert result.stats.num_batches > 1 or len(batches) > 1
    got = pa.Table.from_batches(batches).sort_by("id")
    from metacatalog.sky import healpix29

    assert got["_healpix_29"].to_numpy().tolist() == healpix29(got["ra"].to_numpy(), got["dec"].to_numpy()).tolist()
    got = got.drop_columns(["_healpix_29"])
    assert got.equals(sky[0].sort_by("id").cast(got.schema))


@pytest.mark.parametrize("engine", ENGINES)
def test_a_row_larger_than_the_message_limit_gets_through(island, engine):
    big = "x" * (20 * 1024 * 1024)  # larger than gRPC's 16 MiB limit here
    table = pa.table({"id": [1, 2], "blob": [big, "small"]})
    with island.client() as c:
        name = f"test.hugerow_{engine}"
        c.publish(name, table)
        got = c.sql(f"SELECT id, blob FROM {name} ORDER BY id", engine=engine, timeout=120).read_all()
    assert got["blob"].to_pylist() == [big, "small"]


def test_compressed_results_are_identical(client):
    plain = client.sql("SELECT * FROM test.allsky").read_all()
    for codec in ("lz4", "zstd"):
        assert client.sql("SELECT * FROM test.allsky", compression=codec).read_all().equals(plain)


def test_row_limit(client):
    with pytest.raises(archipel.ResourceExhausted, match="row limit"):
        client.sql("SELECT * FROM test.allsky", max_rows=100).read_all()
    assert client.sql("SELECT * FROM test.allsky LIMIT 100", max_rows=100).read_all().num_rows == 100


# 900 M pairs with a SHA-512 each: minutes of work if nothing stops it, and Spark checks for
# cancellation at every row of ``a`` (30 k pairs), so a cancelled job stops promptly.
SLOW = ("SELECT count(*) FROM test.allsky a CROSS JOIN test.allsky b "
        "WHERE sha2(concat(a.band, b.band, a.id, b.id), 512) = 'never'")


def test_timeout_stops_the_spark_job(island):
    with island.client() as c:
        with pytest.raises(archipel.DeadlineExceeded):
            c.sql(SLOW, timeout=3).read_all()
        wait_for(lambda: c.info()["spark_active_jobs"] == 0 and c.info()["running_queries"] == 0)
        assert c.sql("SELECT count(*) AS n FROM sky.order1").read_all()["n"][0].as_py() == 131


def test_cancel_stops_the_spark_job(island):
    with island.client() as c:
        errors: list[BaseException] = []

        def run():
            try:
                c.sql(SLOW, query_id="slow-cancel-1").read_all()
            except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
                errors.append(exc)

        t = threading.Thread(target=run)
        t.start()
        wait_for(lambda: c.info()["spark_active_jobs"] > 0)
        assert c.cancel("slow-cancel-1") is True
        t.join(60)
        assert not t.is_alive()
        assert errors and isinstance(errors[0], archipel.Cancelled), errors
        wait_for(lambda: c.info()["spark_active_jobs"] == 0 and c.info()["running_queries"] == 0)
        assert c.cancel("no-such-query") is False


VANISHING_CLIENT = """
import sys, archipel
c = archipel.connect(sys.argv[1])
r = c.sql(sys.argv[2], engine=sys.argv[3])
print("started", flush=True)
for b in r:
    print("batch", flush=True)
    sys.stdin.readline()
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_client_vanishing_mid_stream(island, engine):
    query = "SELECT * FROM test.allsky" if engine == "arrow" else "SELECT a.* FROM test.allsky a JOIN test.allsky b ON a.id = b.id"
    proc = subprocess.Popen([sys.executable, "-c", VANISHING_CLIENT, island.address, query, engine],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    assert proc.stdout.readline().strip() == "batch"
    proc.kill()
    proc.wait()
    with island.client() as c:
        wait_for(lambda: c.info()["running_queries"] == 0 and c.info()["spark_active_jobs"] == 0)
        assert c.sql("SELECT count(*) AS n FROM test.allsky").read_all()["n"][0].as_py() == 30_000


def test_client_vanishing_while_spark_runs(island):
    proc = subprocess.Popen([sys.executable, "-c", VANISHING_CLIENT, island.address, SLOW, "spark"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    with island.client() as c:
        wait_for(lambda: c.info()["spark_active_jobs"] > 0)
        proc.kill()
        proc.wait()
        wait_for(lambda: c.info()["running_queries"] == 0 and c.info()["spark_active_jobs"] == 0)
