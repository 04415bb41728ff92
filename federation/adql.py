"""ADQL 2.1 to the island's SQL: ``TOP`` to ``LIMIT``, and the geometry functions to
predicates the planner prunes by HEALPix.

- ``CONTAINS(POINT(ra, dec), CIRCLE(ra0, dec0, r)) = 1`` (and ``INTERSECTS`` with a point, and
  ``DISTANCE(POINT, POINT) < r``) become ``cone(ra, dec, ra0, dec0, r)``, the planner's own
  predicate: exact, and pruned to the partitions the cone touches.
- ``BOX(ra0, dec0, width, height)`` is the range of coordinates ``|dec - dec0| <= height/2``
  and ``|ra - ra0| <= width/2`` (ra taken modulo 360), as pgSphere-less TAP services read it,
  inside the cone around it (for pruning).
- ``POLYGON(ra1, dec1, ...)`` has great-circle edges: the point is projected with the
  polygon's vertices onto the plane tangent at their centre (a gnomonic projection maps great
  circles to straight lines) and tested there by crossings, inside the cone around it. A polygon
  must lie within 80 degrees of its centre.
- ``DISTANCE(POINT, POINT)`` (or its four-number form) is the haversine angle in degrees.

The coordinate system argument (``'ICRS'``, or none, as ADQL 2.1 allows) is accepted and
ignored: the archipelago's catalogs are ICRS. Anything else geometric is refused with a message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from archipel.errors import InvalidArgument
from federation.planner import parse_statements
from federation.planner import literal_number as _number

__all__ = ["AdqlQuery", "translate", "TAP_SCHEMA"]

TAP_SCHEMA = "tap_schema"
_GEOMETRY = {"point", "circle", "box", "polygon", "region", "centroid", "area", "coord1", "coord2", "coordsys"}
_MAX_POLYGON_VERTICES = 64


@dataclass(frozen=True)
class AdqlQuery:
    """An ADQL query in the island's SQL (Spark dialect) and in DuckDB's (for TAP_SCHEMA)."""

    adql: str
    sql: str
    duckdb_sql: str
    top: int | None  # the TOP n of the outer query
    tables: tuple[str, ...]  # the tables it reads, as written (lower case)
    tap_schema: bool  # it reads TAP_SCHEMA tables only


def _fname(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower()
    return ""


def _args(node: exp.Expression, kind: str) -> list[exp.Expression]:
    """The coordinate arguments of a POINT/CIRCLE/BOX/POLYGON, without the system string."""
    args = list(node.expressions)
    if args and isinstance(args[0], exp.Literal) and args[0].is_string:
        system = args[0].this.strip().upper()
        if system not in ("", "ICRS", "J2000", "UNKNOWN"):
            raise InvalidArgument(f"{kind.upper()}: coordinate system {args[0].this!r} is not supported (ICRS only)")
        args = args[1:]
    return args


def _point(node: exp.Expression) -> tuple[exp.Expression, exp.Expression]:
    if _fname(node) != "point":
        raise InvalidArgument(f"expected a POINT, got {node.sql(dialect='spark')[:80]}")
    args = _args(node, "point")
    if len(args) != 2:
        raise InvalidArgument("POINT takes ra and dec: POINT('ICRS', ra, dec)")
    return args[0], args[1]


def _literals(args: list[exp.Expression], kind: str) -> list[float]:
    values = [_number(a) for a in args]
    if any(v is None for v in values):
        raise InvalidArgument(f"{kind.upper()} takes literal numbers (degrees) here")
    return [float(v) for v in values]  # type: ignore[arg-type]


def _sql(node: exp.Expression) -> str:
    return node.sql(dialect="spark")


def _cone(ra: exp.Expression, dec: exp.Expression, ra0: float, dec0: float, r: float) -> str:
    return f"cone({_sql(ra)}, {_sql(dec)}, {ra0!r}, {dec0!r}, {r!r})"


def _unit(ra: float, dec: float) -> tuple[float, float, float]:
    a, d = math.radians(ra), math.radians(dec)
    return math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d)


def _separation(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    x1, y1, z1 = _unit(ra1, dec1)
    x2, y2, z2 = _unit(ra2, dec2)
    dot = max(-1.0, min(1.0, x1 * x2 + y1 * y2 + z1 * z2))
    return math.degrees(math.acos(dot))


def _box(ra: exp.Expression, dec: exp.Expression, values: list[float]) -> str:
    ra0, dec0, w, h = values
    if w < 0 or h < 0 or not -90 <= dec0 <= 90:
        raise InvalidArgument("BOX takes a centre (dec within [-90, 90]) and a non-negative width and height")
    dlo, dhi = dec0 - h / 2, dec0 + h / 2
    # The cone around it for pruning: the farthest of points along its edges, plus the
    # largest gap between two of them (the edges between are nearer than that).
    n = 64
    lo, hi = max(-90.0, dlo), min(90.0, dhi)
    edge = [(ra0 - w / 2 + w * i / n, d) for i in range(n + 1) for d in (lo, hi)]
    edge += [(a, lo + (hi - lo) * i / n) for i in range(n + 1) for a in (ra0 - w / 2, ra0 + w / 2)]
    step = max(w, hi - lo) / n
    r = 180.0 if w >= 360 else min(180.0, max(_separation(ra0, dec0, a, d) for a, d in edge) + step)
    dra = f"ABS(MOD(({_sql(ra)}) - ({ra0!r}) + 540.0, 360.0) - 180.0)"
    ra_test = "TRUE" if w >= 360 else f"{dra} <= {w / 2!r}"
    return (f"({_cone(ra, dec, ra0, dec0, min(r, 180.0))} AND ({_sql(dec)}) BETWEEN {dlo!r} AND {dhi!r}"
            f" AND {ra_test})")


def _polygon(ra: exp.Expression, dec: exp.Expression, values: list[float]) -> str:
    if len(values) % 2 or not 6 <= len(values) <= 2 * _MAX_POLYGON_VERTICES:
        raise InvalidArgument(f"POLYGON takes 3 to {_MAX_POLYGON_VERTICES} vertices (ra, dec pairs)")
    verts = list(zip(values[0::2], values[1::2]))
    if any(not -90 <= d <= 90 for _, d in verts):
        raise InvalidArgument("POLYGON vertices need dec within [-90, 90]")
    sx = sum(_unit(a, d)[0] for a, d in verts)
    sy = sum(_unit(a, d)[1] for a, d in verts)
    sz = sum(_unit(a, d)[2] for a, d in verts)
    norm = math.sqrt(sx * sx + sy * sy + sz * sz)
    if norm < 1e-9:
        raise InvalidArgument("POLYGON: its vertices have no centre on the sky")
    ra0 = math.degrees(math.atan2(sy, sx)) % 360.0
    dec0 = math.degrees(math.asin(max(-1.0, min(1.0, sz / norm))))
    radius = max(_separation(ra0, dec0, a, d) for a, d in verts)
    if radius > 80:
        raise InvalidArgument("POLYGON: every vertex must lie within 80 degrees of the polygon's centre")

    def tangent(a: float, d: float) -> tuple[float, float]:
        ar, dr, a0, d0 = map(math.radians, (a, d, ra0, dec0))
        cosc = math.sin(d0) * math.sin(dr) + math.cos(d0) * math.cos(dr) * math.cos(ar - a0)
        return (math.cos(dr) * math.sin(ar - a0) / cosc,
                (math.cos(d0) * math.sin(dr) - math.sin(d0) * math.cos(dr) * math.cos(ar - a0)) / cosc)

    pts = [tangent(a, d) for a, d in verts]
    s_ra, s_dec = _sql(ra), _sql(dec)
    a0, d0 = math.radians(ra0), math.radians(dec0)
    cosc = (f"({math.sin(d0)!r} * SIN(RADIANS({s_dec})) + {math.cos(d0)!r} * COS(RADIANS({s_dec}))"
            f" * COS(RADIANS({s_ra}) - {a0!r}))")
    x = f"(COS(RADIANS({s_dec})) * SIN(RADIANS({s_ra}) - {a0!r}) / {cosc})"
    y = (f"(({math.cos(d0)!r} * SIN(RADIANS({s_dec})) - {math.sin(d0)!r} * COS(RADIANS({s_dec}))"
         f" * COS(RADIANS({s_ra}) - {a0!r})) / {cosc})")
    crossings = []
    for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1]):
        if y1 == y2:
            continue  # a horizontal edge is never crossed by the horizontal ray
        slope = (x2 - x1) / (y2 - y1)
        crossings.append(f"CASE WHEN (({y1!r} > {y}) <> ({y2!r} > {y})) AND ({x} < {x1!r} + ({y} - {y1!r}) * {slope!r})"
                         f" THEN 1 ELSE 0 END")
    inside = f"(MOD({' + '.join(crossings) or '0'}, 2) = 1)"
    return f"({_cone(ra, dec, ra0, dec0, min(180.0, radius + 1e-9))} AND {cosc} > 0 AND {inside})"


def _region_test(point: exp.Expression, region: exp.Expression) -> str:
    """The SQL predicate: ``point`` lies in ``region`` (a CIRCLE, BOX or POLYGON of literals)."""
    ra, dec = _point(point)
    kind = _fname(region)
    if kind == "circle":
        args = _args(region, kind)
        if len(args) == 2 and _fname(args[0]) == "point":  # CIRCLE(POINT(...), r), ADQL 2.1
            args = [*_point(args[0]), args[1]]
        if len(args) != 3:
            raise InvalidArgument("CIRCLE takes ra, dec and a radius: CIRCLE('ICRS', ra, dec, radius_deg)")
        ra0, dec0, r = _literals(args, kind)
        if r < 0 or not -90 <= dec0 <= 90:
            raise InvalidArgument("CIRCLE takes dec within [-90, 90] and a non-negative radius")
        return _cone(ra, dec, ra0, dec0, r)
    if kind == "box":
        args = _args(region, kind)
        if len(args) != 4:
            raise InvalidArgument("BOX takes ra, dec, width and height: BOX('ICRS', ra, dec, width, height)")
        return _box(ra, dec, _literals(args, kind))
    if kind == "polygon":
        args = _args(region, kind)
        if args and all(_fname(a) == "point" for a in args):
            args = [c for a in args for c in _point(a)]
        return _polygon(ra, dec, _literals(args, kind))
    if kind == "point":
        raise InvalidArgument("CONTAINS(POINT, POINT) is not supported: use DISTANCE(POINT, POINT) < r")
    raise InvalidArgument(f"CONTAINS needs a CIRCLE, BOX or POLYGON as its second argument, "
                          f"got {_sql(region)[:80]}")


def _distance(node: exp.Expression) -> str:
    args = list(node.expressions)
    if len(args) == 2:
        (ra1, dec1), (ra2, dec2) = _point(args[0]), _point(args[1])
    elif len(args) == 4:
        ra1, dec1, ra2, dec2 = args
    else:
        raise InvalidArgument("DISTANCE takes two POINTs, or four numbers (ra1, dec1, ra2, dec2)")
    r1, d1, r2, d2 = map(_sql, (ra1, dec1, ra2, dec2))
    return (f"DEGREES(2 * ASIN(SQRT(LEAST(1.0, POWER(SIN(RADIANS(({d1}) - ({d2})) * 0.5), 2)"
            f" + COS(RADIANS({d1})) * COS(RADIANS({d2})) * POWER(SIN(RADIANS(({r1}) - ({r2})) * 0.5), 2)))))")


def _distance_cone(cmp: exp.Expression) -> str | None:
    """``DISTANCE(POINT(col, col), POINT(lit, lit)) < r`` as a cone (pruned), else None."""
    left, right = cmp.this, cmp.expression
    if isinstance(cmp, (exp.GT, exp.GTE)):
        left, right = right, left
    elif not isinstance(cmp, (exp.LT, exp.LTE)):
        return None
    r = _number(right)
    if _fname(left) != "distance" or r is None or len(left.expressions) != 2:
        return None
    pts = [_point(p) for p in left.expressions]
    for (ra, dec), (ra0, dec0) in (pts, pts[::-1]):
        c = [_number(ra0), _number(dec0)]
        if None not in c and isinstance(ra, exp.Column) and isinstance(dec, exp.Column) and -90 <= c[1] <= 90:
            return _cone(ra, dec, c[0], c[1], max(0.0, r))
    return None


def _rewrite(tree: exp.Expression) -> exp.Expression:
    def predicate(node: exp.Expression) -> exp.Expression | None:
        """CONTAINS/INTERSECTS compared with 1 or 0 as a boolean predicate."""
        if not isinstance(node, (exp.EQ, exp.NEQ)):
            return None
        for call, other in ((node.this, node.expression), (node.expression, node.this)):
            test = _geometry_test(call)
            value = _number(other)
            if test is not None and value in (0.0, 1.0):
                want = (value == 1.0) == isinstance(node, exp.EQ)
                return sqlglot.parse_one(test if want else f"NOT {test}", read="spark")
        return None

    def transform(node: exp.Expression) -> exp.Expression:
        if isinstance(node, (exp.EQ, exp.NEQ)):
            out = predicate(node)
            if out is not None:
                return exp.paren(out, copy=False)
        if isinstance(node, (exp.LT, exp.LTE, exp.GT, exp.GTE)):
            cone = _distance_cone(node)
            if cone is not None:
                return sqlglot.parse_one(cone, read="spark")
        test = _geometry_test(node)
        if test is not None:  # CONTAINS(...) used as a number
            return sqlglot.parse_one(f"CASE WHEN {test} THEN 1 ELSE 0 END", read="spark")
        if _fname(node) == "distance":
            return sqlglot.parse_one(_distance(node), read="spark")
        if _fname(node) in _GEOMETRY:
            raise InvalidArgument(f"{_fname(node).upper()} is supported only inside CONTAINS, INTERSECTS or "
                                  f"DISTANCE")
        return node

    return tree.transform(transform, copy=False)


def _geometry_test(node: exp.Expression) -> str | None:
    if isinstance(node, exp.Contains):
        return _region_test(node.this, node.expression)
    name = _fname(node)
    if name == "contains":
        args = list(node.expressions)
        if len(args) != 2:
            raise InvalidArgument("CONTAINS takes two geometries")
        return _region_test(*args)
    if name == "intersects":
        args = list(node.expressions)
        if len(args) != 2:
            raise InvalidArgument("INTERSECTS takes two geometries")
        a, b = args
        if _fname(a) == "point":
            return _region_test(a, b)
        if _fname(b) == "point":
            return _region_test(b, a)
        raise InvalidArgument("INTERSECTS is supported with a POINT on one side (regions of columns are not)")
    return None


def _table_name(t: exp.Table) -> str:
    return ".".join(p.name for p in t.parts).lower()


def translate(adql: str) -> AdqlQuery:
    """The island's SQL for one ADQL query; InvalidArgument says what is wrong with it."""
    if not isinstance(adql, str) or not adql.strip():
        raise InvalidArgument("empty ADQL query")
    statements = parse_statements(adql, "tsql", "ADQL")
    if len(statements) != 1:
        raise InvalidArgument(f"expected exactly one ADQL statement, got {len(statements)}")
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        raise InvalidArgument("ADQL queries are SELECT statements")
    top = None
    limit = tree.args.get("limit")
    if limit is not None:
        top = _number(limit.expression)
        if top is None or top < 0:
            raise InvalidArgument("TOP takes a non-negative whole number")
        top = int(top)
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    tables = tuple(_table_name(t) for t in tree.find_all(exp.Table) if _table_name(t) not in ctes)
    tap = [t.startswith(TAP_SCHEMA + ".") for t in tables]
    if any(tap) and not all(tap):
        raise InvalidArgument("a query reads TAP_SCHEMA tables or data tables, not both")
    try:
        tree = _rewrite(tree)
        sql = tree.sql(dialect="spark")
        duck = tree.sql(dialect="duckdb") if tap and all(tap) else ""
    except InvalidArgument:
        raise
    except Exception as exc:  # sqlglot cannot write it
        raise InvalidArgument(f"cannot translate the ADQL query: {exc}") from None
    return AdqlQuery(adql=adql, sql=sql, duckdb_sql=duck, top=top, tables=tables, tap_schema=bool(tap) and all(tap))
