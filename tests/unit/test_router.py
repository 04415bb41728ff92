import pytest

from archipel.errors import FailedPrecondition, InvalidArgument
from federation.planner import QueryPlan, TableScan
from federation.router import MAX_HOPS, place
from metacatalog.model import Dataset


def plan_on(*origins):
    tables = [TableScan(view=f"v{i}", dataset=Dataset(name=f"d.t{i}", origin=o, kind="table", root="/",
                                                        arrow_schema=b"", num_rows=0, num_bytes=0), partitions=[])
              for i, o in enumerate(origins)]
    return QueryPlan(sql="", tables=tables, engine="arrow", engine_reason="", spark_sql="", duckdb_sql="")


def test_local_pushdown_gather():
    assert place(plan_on("a"), "a", "auto", []).kind == "local"
    p = place(plan_on("b", "b"), "a", "auto", [])
    assert p.kind == "pushdown" and p.island == "b"
    assert place(plan_on("b"), "a", "remote", []).island == "b"
    g = place(plan_on("a", "b", "c"), "a", "auto", [])
    assert g.kind == "gather" and g.remote == ("b", "c")


def test_refusals():
    with pytest.raises(FailedPrecondition, match="route='local'"):
        place(plan_on("b"), "a", "local", [])
    with pytest.raises(FailedPrecondition, match="routing loop"):
        place(plan_on("b"), "a", "auto", ["a"])
    with pytest.raises(FailedPrecondition, match="hop limit"):
        place(plan_on("c"), "a", "auto", [f"x{i}" for i in range(MAX_HOPS)])
    with pytest.raises(FailedPrecondition, match="one island"):
        place(plan_on("b", "c"), "a", "remote", [])
    with pytest.raises(InvalidArgument):
        place(plan_on("a"), "a", "sideways", [])


def test_failover_to_an_island_holding_replicas_when_the_origin_is_down():
    plan = plan_on("b")
    held = {"b", "c", "d"}
    p = place(plan, "a", "auto", [], holders=lambda scan: held, down={"b"})
    assert p.kind == "pushdown" and p.island == "c" and "b is down" in p.reason
    # nobody else holds it all: the origin is still named (and its unavailability reported)
    assert place(plan, "a", "auto", [], holders=lambda scan: {"b"}, down={"b"}).island == "b"
    # islands down themselves are not chosen
    assert place(plan, "a", "auto", [], holders=lambda scan: {"b", "c"}, down={"b", "c"}).island == "b"


@pytest.mark.parametrize("route,origins,path,down,copy,replicas,expected", [
    ("auto", {"b"}, [], set(), False, False, "b"),          # all on one other island: sent whole
    ("remote", {"b"}, [], set(), True, True, "b"),          # 'remote' never copies
    ("local", {"b"}, [], set(), False, False, ""),          # 'local' plans here (and refuses)
    ("replicate", {"b"}, [], set(), False, False, ""),
    ("auto", {"b"}, [], set(), True, False, ""),            # copying may pay: the plan decides
    ("auto", {"b"}, [], set(), False, True, ""),            # replicas here may answer it
    ("auto", {"b", "c"}, [], set(), False, False, ""),      # spread out: gathered here
    ("auto", {"a"}, [], set(), False, False, ""),           # held here
    ("auto", None, [], set(), False, False, ""),            # unreadable: planning says why
    ("auto", set(), [], set(), False, False, ""),
    ("auto", {"b"}, [], {"b"}, False, False, ""),           # down: replicas elsewhere may take it
    ("auto", {"b"}, ["x", "a"], set(), False, False, ""),   # a loop: planning reports it
    ("auto", {"b"}, ["x"] * 7, set(), False, False, ""),    # the hop limit
])
def test_pushdown_target(route, origins, path, down, copy, replicas, expected):
    from federation.router import pushdown_target

    assert pushdown_target(route, origins, "a", path, down, copy_may_pay=copy, replicas_here=replicas) == expected
