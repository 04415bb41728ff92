"""Queries routed between three island processes: pushed down whole to the island holding
the data, joined across islands, refused where the route forbids, and failing over nothing
silently when an island is down."""

from __future__ import annotations

import threading

import pytest

import archipel
from archipel.v1 import island_pb2 as pb
from islands import SHARED_HATS, IslandProcess, wait_for
from skydata import cone_truth, shared_join_truth
from tables import assert_same_answer

NO_SPARK = "[spark]\nstart = false\n"
# These islands route without copying partitions (route='auto' never replicates here), so
# push-down and gather are what is tested; test_replication covers auto replication.
NO_AUTO_COPY = "[replication]\nauto_max_bytes = 0\n"


@pytest.fixture(scope="module")
def archipelago(tmp_path_factory, sky):
    tmp = tmp_path_factory.mktemp("routing")
    a = IslandProcess(tmp / "a", "ra", extra_config=NO_AUTO_COPY)  # with Spark, for joins
    a.start()
    b = IslandProcess(tmp / "b", "rb", extra_config=NO_SPARK + NO_AUTO_COPY +
                      f'[federation]\npeers = ["{a.address}"]\n').start()
    c = IslandProcess(tmp / "c", "rc", extra_config=NO_SPARK + NO_AUTO_COPY +
                      f'[federation]\npeers = ["{a.address}"]\n').start()
    with b.client() as cb, c.client() as cc:
        cb.ingest(str(SHARED_HATS / "small_sky_o1_collection"), "b.objects")
        cc.ingest(str(SHARED_HATS / "small_sky_source"), "c.sources")
        cc.ingest(str(sky[1]), "c.allsky")
    with a.client() as ca:
        wait_for(lambda: {"b.objects", "c.sources", "c.allsky"} <= {d.name for d in ca.datasets()})
        wait_for(lambda: ca.info()["spark_ready"], timeout=240)
    yield a, b, c
    for isl in (a, b, c):
        isl.stop()


QUERIES = [
    "SELECT source_id, mag, band FROM c.sources WHERE cone(source_ra, source_dec, 320, -50, 3)",
    "SELECT band, count(*) AS n, avg(mag) AS m FROM c.sources GROUP BY band",
    "SELECT * FROM b.objects",
    "SELECT id FROM c.allsky WHERE cone(ra, dec, 0, 90, 2) ORDER BY id",
]


@pytest.mark.parametrize("sql", QUERIES)
def test_query_at_any_island_equals_the_owner(archipelago, sql):
    a, b, c = archipelago
    owner = b if "b.objects" in sql else c
    with owner.client() as co:
        truth = co.sql(sql).read_all()
    for isl in (a, b, c):
        with isl.client() as cl:
            assert_same_answer(cl.sql(sql).read_all(), truth)
    with a.client() as ca:
        plan = ca.explain(sql)
        assert plan.engine == f"remote:{owner.name}"
        assert all(d.placement.startswith(f"remote:{owner.name}") for d in plan.datasets)


def test_cone_at_a_remote_island_matches_truth(archipelago, sky):
    a = archipelago[0]
    with a.client() as ca:
        got = ca.sql("SELECT id FROM c.allsky WHERE cone(ra, dec, 0.1, 10, 0.7)").read_all()
    assert set(got["id"].to_pylist()) == cone_truth(sky[0], 0.1, 10, 0.7)


@pytest.mark.parametrize("engine", ["auto", "arrow"])
def test_cross_island_join_matches_pyarrow(archipelago, engine):
    a, b, c = archipelago
    truth = shared_join_truth(SHARED_HATS)
    sql = ("SELECT o.id, count(s.source_id) AS n FROM b.objects o JOIN c.sources s ON s.object_id = o.id "
           "GROUP BY o.id ORDER BY o.id")
    for isl in (a, b, c):  # whichever island is asked, whatever the plan
        if engine == "auto" and isl is not a:
            continue  # b and c run without Spark; the Arrow path joins there
        with isl.client() as cl:
            got = cl.sql(sql, engine=engine if isl is a else "arrow").read_all()
        assert got["id"].to_pylist() == truth["object_id"].to_pylist()
        assert got["n"].to_pylist() == truth["source_id_count"].to_pylist()
    with a.client() as ca:
        plan = ca.explain(sql)
        assert {d.placement.split(" ")[0] for d in plan.datasets} == {"fetch:rb", "fetch:rc"}


def test_routes_refused_where_they_cannot_hold(archipelago):
    a = archipelago[0]
    with a.client() as ca:
        with pytest.raises(archipel.FailedPrecondition, match="route='local'"):
            ca.sql("SELECT * FROM c.sources", route="local").read_all()
        with pytest.raises(archipel.FailedPrecondition, match="one island"):
            ca.sql("SELECT * FROM b.objects o JOIN c.sources s ON s.object_id = o.id", route="remote").read_all()
        # a query that claims to have passed through this island already is a loop
        request = pb.QueryRequest(sql="SELECT * FROM c.sources", route_path=["ra"], query_id="loop-1")
        with pytest.raises(archipel.FailedPrecondition, match="routing loop"):
            archipel.client.QueryResult(ca._query(request, timeout=30), ca.address)
        request = pb.QueryRequest(sql="SELECT * FROM c.sources", route_path=["x", "y"], query_id="hops-1")
        with pytest.raises(archipel.FailedPrecondition, match="hop limit"):
            archipel.client.QueryResult(ca._query(request, timeout=30), ca.address)


SLOW = ("SELECT count(*) FROM c.allsky x CROSS JOIN c.allsky y "
        "WHERE sha256(concat(x.band, y.band, CAST(x.id AS STRING), CAST(y.id AS STRING))) = 'never'")


def test_cancel_at_the_entry_island_stops_the_remote_work(archipelago):
    a, b, c = archipelago
    errors: list[BaseException] = []
    with a.client() as ca, c.client() as cc:
        def run():
            try:
                ca.sql(SLOW, engine="arrow", query_id="routed-slow").read_all()
            except BaseException as exc:  # noqa: BLE001 - checked below
                errors.append(exc)

        t = threading.Thread(target=run)
        t.start()
        wait_for(lambda: cc.info()["running_queries"] > 0)
        assert ca.cancel("routed-slow")
        t.join(60)
        assert errors and isinstance(errors[0], archipel.Cancelled), errors
        wait_for(lambda: cc.info()["running_queries"] == 0 and ca.info()["running_queries"] == 0)


def test_an_island_down_is_named_and_followed_again_when_back(archipelago):
    a, b, c = archipelago
    c.kill()
    try:
        with a.client() as ca:
            with pytest.raises(archipel.Unavailable, match="rc"):
                ca.sql("SELECT count(*) FROM c.sources").read_all()
            assert ca.sql("SELECT count(*) AS n FROM b.objects").read_all()["n"][0].as_py() == 131
    finally:
        c.start()
    with a.client() as ca, c.client() as cc:
        cc.publish("c.after", {"x": [1, 2]})
        wait_for(lambda: "c.after" in {d.name for d in ca.datasets()})
        assert ca.sql("SELECT count(*) AS n FROM c.after").read_all()["n"][0].as_py() == 2
        wait_for(lambda: any(p["island"] == "rc" and p["state"] == "connected" for p in ca.peers()))


def test_the_entry_islands_limits_travel_with_a_pushed_down_query(archipelago, tmp_path):
    a = archipelago[0]
    strict = IslandProcess(tmp_path / "strict", "strict", env={"ARCHIPEL_QUERY_MAX_ROWS": "10"},
                           extra_config=NO_SPARK + f'[federation]\npeers = ["{a.address}"]\n').start()
    try:
        with strict.client() as cs:
            wait_for(lambda: "c.allsky" in {d.name for d in cs.datasets()})
            with pytest.raises(archipel.ResourceExhausted, match="row limit of 10"):
                cs.sql("SELECT id FROM c.allsky").read_all()
            assert cs.sql("SELECT id FROM c.allsky LIMIT 10").read_all().num_rows == 10
    finally:
        strict.stop()
