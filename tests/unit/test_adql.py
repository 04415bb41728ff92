"""ADQL to the island's SQL: TOP, the geometry functions, and refusals with a message. The
predicates are run by DuckDB over random points and compared with direct spherical tests."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp

from archipel.errors import InvalidArgument
from federation.adql import translate
from federation.planner import cone_predicate_sql

RNG = np.random.default_rng(3)
N = 20000
POINTS = pa.table({"id": np.arange(N), "ra": RNG.uniform(0, 360, N), "dec": np.degrees(np.arcsin(RNG.uniform(-1, 1, N)))})


def _run(adql: str) -> set[int]:
    """The ids the translated query selects, with cone() expanded as the planner does."""
    sql = translate(adql).sql

    def expand(node):
        if isinstance(node, exp.Anonymous) and node.name.lower() == "cone":
            return sqlglot.parse_one(cone_predicate_sql(*(a.sql(dialect="spark") for a in node.expressions)),
                                     read="spark")
        return node

    tree = sqlglot.parse_one(sql, read="spark").transform(expand)
    con = duckdb.connect()
    con.register("pts", POINTS)
    text = tree.sql(dialect="duckdb").replace("s.pts", "pts")
    return set(con.sql(text).to_arrow_table()["id"].to_pylist())


def _vec(ra, dec):
    r, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], -1)


def _sep(ra0, dec0):
    return np.degrees(np.arccos(np.clip(_vec(POINTS["ra"].to_numpy(), POINTS["dec"].to_numpy()) @ _vec(ra0, dec0),
                                        -1, 1)))


def test_top_becomes_limit_and_tables_are_named():
    q = translate("SELECT TOP 5 id FROM gaia.source ORDER BY id")
    assert q.top == 5 and q.tables == ("gaia.source",) and q.sql.endswith("LIMIT 5") and not q.tap_schema
    q = translate('SELECT "dec" FROM TAP_SCHEMA.columns')
    assert q.tap_schema and q.duckdb_sql


@pytest.mark.parametrize("ra0,dec0,r", [(10, 20, 5), (359, -89, 3), (180, 0, 40)])
def test_contains_circle_is_an_exact_cone(ra0, dec0, r):
    got = _run(f"SELECT id FROM s.pts WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra0}, {dec0}, {r})) = 1")
    assert got == set(np.nonzero(_sep(ra0, dec0) <= r)[0].tolist())
    assert "cone(" in translate(f"SELECT id FROM s.pts WHERE 1 = CONTAINS(POINT(ra, dec), CIRCLE({ra0}, {dec0}, {r}))"
                                ).sql.lower()
    outside = _run(f"SELECT id FROM s.pts WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra0}, {dec0}, {r})) = 0")
    assert outside == set(range(N)) - got


@pytest.mark.parametrize("ra0,dec0,w,h", [(100, 10, 40, 20), (2, -30, 10, 10), (200, 80, 60, 15)])
def test_box_is_a_range_of_coordinates(ra0, dec0, w, h):
    got = _run(f"SELECT id FROM s.pts WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), BOX('ICRS', {ra0}, {dec0}, {w}, {h}))")
    ra, dec = POINTS["ra"].to_numpy(), POINTS["dec"].to_numpy()
    dra = np.abs((ra - ra0 + 540) % 360 - 180)
    truth = set(np.nonzero((dra <= w / 2) & (np.abs(dec - dec0) <= h / 2))[0].tolist())
    assert got == truth and truth


@pytest.mark.parametrize("verts", [[(10, -10), (40, -5), (20, 20)], [(350, 0), (10, 0), (10, 15), (350, 15)],
                                   [(0, 60), (90, 60), (180, 60), (270, 60)]])
def test_polygon_has_great_circle_edges(verts):
    text = ", ".join(f"{a}, {d}" for a, d in verts)
    got = _run(f"SELECT id FROM s.pts WHERE CONTAINS(POINT('ICRS', ra, dec), POLYGON('ICRS', {text})) = 1")
    p = _vec(POINTS["ra"].to_numpy(), POINTS["dec"].to_numpy())
    v = [_vec(a, d) for a, d in verts]
    centre = sum(v)
    inside = np.ones(N, bool)
    for i in range(len(v)):
        n = np.cross(v[i], v[(i + 1) % len(v)])
        side = np.sign(n @ centre)
        inside &= np.sign(p @ n) == side
    truth = set(np.nonzero(inside)[0].tolist())
    assert got == truth and truth


def test_distance_in_select_and_as_a_pruned_cone():
    q = translate("SELECT id, DISTANCE(POINT('ICRS', ra, dec), POINT('ICRS', 30, 40)) AS d FROM s.pts "
                  "WHERE DISTANCE(POINT('ICRS', ra, dec), POINT('ICRS', 30, 40)) < 10")
    assert "cone(ra, dec, 30.0, 40.0, 10.0)" in q.sql.lower()
    assert _run(q.adql) == set(np.nonzero(_sep(30, 40) <= 10)[0].tolist())
    assert _run("SELECT id FROM s.pts WHERE DISTANCE(ra, dec, 30, 40) > 170") == set(
        np.nonzero(_sep(30, 40) > 170)[0].tolist())


@pytest.mark.parametrize("adql,message", [
    ("", "empty"),
    ("SELECT FROM WHERE", "invalid ADQL"),
    ("SELECT 1; SELECT 2", "exactly one"),
    ("DELETE FROM a.b", "SELECT"),
    ("SELECT POINT('ICRS', ra, dec) FROM a.b", "POINT is supported only"),
    ("SELECT * FROM a.b WHERE CONTAINS(POINT('GALACTIC', l, b), CIRCLE('GALACTIC', 1, 2, 3)) = 1", "ICRS only"),
    ("SELECT * FROM a.b WHERE CONTAINS(POINT(ra, dec), CIRCLE(ra, dec, 3)) = 1", "literal numbers"),
    ("SELECT * FROM a.b WHERE CONTAINS(POINT(ra, dec), CIRCLE(1, 95, 3)) = 1", "[-90, 90]"),
    ("SELECT * FROM a.b WHERE CONTAINS(POINT(ra, dec), POLYGON(1, 2, 3, 4)) = 1", "3 to"),
    ("SELECT * FROM a.b WHERE CONTAINS(POINT(ra, dec), POLYGON(0, 0, 120, 0, 240, 0)) = 1", "centre"),
    ("SELECT * FROM a.b WHERE INTERSECTS(CIRCLE(1, 2, 3), CIRCLE(1, 2, 4)) = 1", "POINT on one side"),
    ("SELECT * FROM a.b, TAP_SCHEMA.tables", "not both"),
    ("SELECT TOP -1 * FROM a.b", "invalid ADQL"),
    ("SELECT * FROM a.b WHERE " + "x = 1 AND " * 200_000 + "1 = 1", "at most 262144 are planned"),
])
def test_bad_adql_says_what_is_wrong(adql, message):
    with pytest.raises(InvalidArgument, match=message.replace("[", r"\[").replace("]", r"\]")):
        translate(adql)
