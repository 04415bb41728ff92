import pytest

from archipel.errors import InvalidArgument, NotFound, PermissionDenied
from federation.planner import plan_query
from metacatalog.model import Dataset, Partition

PARTS = tuple(Partition(path=f"p{i}", num_rows=1, num_bytes=10, adler32=0, order=1, pixel=i) for i in range(48))
SKY = Dataset(name="sky.obj", origin="a", kind="catalog", root="/", arrow_schema=b"", num_rows=48,
              num_bytes=480, ra_column="ra", dec_column="dec", partitions=PARTS)
TABLE = Dataset(name="obs.runs", origin="a", kind="table", root="/", arrow_schema=b"", num_rows=1, num_bytes=1,
                partitions=(Partition(path="r", num_rows=1, num_bytes=1, adler32=0),))


def lookup(name):
    return {"sky.obj": SKY, "obs.runs": TABLE}.get(name) or (_ for _ in ()).throw(NotFound(name))


def test_cone_prunes_and_rewrites():
    plan = plan_query("SELECT ra FROM sky.obj WHERE cone(ra, dec, 315, -60, 5) AND ra > 1", lookup)
    (scan,) = plan.tables
    assert 0 < len(scan.partitions) < 48 and scan.cones
    assert "cone" not in plan.duckdb_sql.lower() and "ASIN" in plan.spark_sql
    assert "sky.obj" not in plan.spark_sql and scan.view in plan.spark_sql


def test_adql_contains_equals_one_prunes():
    plan = plan_query("SELECT * FROM sky.obj o WHERE CONTAINS(POINT('ICRS', o.ra, o.dec), "
                      "CIRCLE('ICRS', 0, 90, 1)) = 1", lookup)
    assert len(plan.tables[0].partitions) == 4  # the four order-1 pixels around the north pole


def test_cone_under_or_does_not_prune():
    plan = plan_query("SELECT * FROM sky.obj WHERE cone(ra, dec, 0, 90, 1) OR ra > 3", lookup)
    assert len(plan.tables[0].partitions) == 48


def test_cone_on_other_columns_does_not_prune():
    plan = plan_query("SELECT * FROM sky.obj WHERE cone(ra + 1, dec, 0, 90, 1)", lookup)
    assert len(plan.tables[0].partitions) == 48


def test_join_prunes_the_qualified_side_only():
    plan = plan_query("SELECT * FROM sky.obj a JOIN sky.obj b ON a.ra = b.ra WHERE cone(b.ra, b.dec, 0, 90, 1)",
                      lookup)
    assert [len(t.partitions) for t in plan.tables] == [48, 4] and plan.engine == "spark"


def test_cte_names_are_not_datasets():
    plan = plan_query("WITH c AS (SELECT * FROM sky.obj) SELECT count(*) FROM c", lookup)
    assert len(plan.tables) == 1


def test_engine_choice():
    assert plan_query("SELECT * FROM obs.runs", lookup).engine == "arrow"
    assert plan_query("SELECT count(*) FROM sky.obj", lookup, arrow_max_aggregate_bytes=10).engine == "spark"
    assert plan_query("SELECT * FROM sky.obj", lookup, engine="spark").engine == "spark"
    with pytest.raises(InvalidArgument):
        plan_query("SELECT * FROM sky.obj", lookup, engine="duck")


@pytest.mark.parametrize("sql", ["SELECT * FROM parquet.`/etc`", "DROP TABLE sky.obj", "SET a=1", "ADD JAR x",
                                 "SELECT reflect('a', 'b') FROM sky.obj", "SELECT * FROM range(3)",
                                 "SELECT TRANSFORM(ra) USING 'sh' FROM sky.obj", "INSERT INTO sky.obj SELECT 1"])
def test_refused(sql):
    with pytest.raises(PermissionDenied):
        plan_query(sql, lookup)


def test_unknown_and_invalid():
    with pytest.raises(NotFound):
        plan_query("SELECT * FROM no.such", lookup)
    with pytest.raises(InvalidArgument):
        plan_query("SELEC 1", lookup)
    with pytest.raises(InvalidArgument, match="negative"):
        plan_query("SELECT * FROM sky.obj WHERE cone(ra, dec, 1, 1, -1)", lookup)


def test_pure_projection_is_recognised():
    import pyarrow as pa

    schema = pa.schema([("ra", pa.float64()), ("dec", pa.float64()), ("id", pa.int64())]).serialize().to_pybytes()
    ds = Dataset(name="t.t", origin="a", kind="table", root="/", arrow_schema=schema, num_rows=1, num_bytes=1,
                 partitions=(Partition(path="r", num_rows=1, num_bytes=1, adler32=0),))
    look = {"t.t": ds}.__getitem__
    assert plan_query("SELECT * FROM t.t", look).projection == []
    p = plan_query("SELECT id, ra AS alpha FROM t.t LIMIT 5", look)
    assert p.projection == [("id", "id"), ("ra", "alpha")] and p.limit == 5
    for sql in ("SELECT id FROM t.t WHERE id > 1", "SELECT id + 1 FROM t.t", "SELECT ID FROM t.t",
                "SELECT DISTINCT id FROM t.t", "SELECT id FROM t.t ORDER BY id", "WITH c AS (SELECT * FROM t.t) SELECT * FROM c"):
        assert plan_query(sql, look).projection is None, sql


def test_a_kept_plan_is_reused_only_while_its_datasets_are_unchanged():
    from dataclasses import replace

    import federation.planner as planner

    sql = "SELECT * FROM sky.obj WHERE cone(ra, dec, 315, -60, 5)"
    asked = []
    current = {"sky.obj": SKY}

    def counting(name):
        asked.append(name)
        if name not in current:
            raise NotFound(name)
        return current[name]

    first = plan_query(sql, counting)
    first.tables[0].partitions.clear()  # the caller's copy: the kept plan is not changed by it
    second = plan_query(sql, counting)
    assert asked == ["sky.obj", "sky.obj"]  # every reuse looks the dataset up (rights, audit)
    (a,), (b,) = first.tables, second.tables
    assert a.view != b.view and b.view in second.spark_sql and a.view not in second.spark_sql
    assert second.spark_sql.replace(b.view, a.view) == first.spark_sql
    assert 0 < len(b.partitions) < 48 and planner._VIEW_SLOT not in second.duckdb_sql

    # the dataset changed (a partition more): planned again, the new partition can match
    new = Partition(path="new", num_rows=1, num_bytes=10, adler32=0, order=1, pixel=b.partitions[0].pixel)
    current["sky.obj"] = replace(SKY, partitions=SKY.partitions + (new,))
    third = plan_query(sql, counting)
    assert "new" in {p.path for p in third.tables[0].partitions}

    # a caller who may not read it is refused on a reuse as when planning
    def refusing(name):
        raise PermissionDenied(f"no right to read {name}")
    with pytest.raises(PermissionDenied, match="no right"):
        plan_query(sql, refusing)
    current.clear()  # the dataset is gone
    with pytest.raises(NotFound, match="unknown dataset 'sky.obj'"):
        plan_query(sql, counting)


def test_a_query_holding_the_view_slot_is_planned_as_written():
    import federation.planner as planner

    sql = f"SELECT *, '{planner._VIEW_SLOT}_0' AS s FROM sky.obj"
    for _ in range(2):
        plan = plan_query(sql, lookup)
        assert f"'{planner._VIEW_SLOT}_0'" in plan.spark_sql and plan.tables[0].view not in (f"{planner._VIEW_SLOT}_0",)
