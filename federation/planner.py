"""The query planner: confines user SQL, resolves catalog names, prunes HEALPix partitions
from sky predicates, and picks the engine. Pure logic over the catalog; no Spark, no gRPC.

User SQL is Spark SQL. Only one read-only query over catalog datasets is accepted: no DDL, DML,
``SET``, ``ADD JAR``, function registration, script transforms, Java reflection, table-valued
functions or direct file reads (``parquet.`/etc```). Every dataset reference is rewritten to a
per-query view over exactly the partition files that can match, so engines never see a path
the planner did not choose.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from archipel.errors import DeadlineExceeded, InvalidArgument, NotFound, PermissionDenied
from metacatalog.model import Dataset, Partition
from metacatalog.sky import Cone, healpix29_ranges, partitions_in_cone

__all__ = ["TableScan", "DirectScan", "QueryPlan", "plan_query", "referenced_datasets", "cone_predicate_sql",
           "literal_number", "check_sql_budget", "parse_statements", "ENGINES"]

ENGINES = ("arrow", "spark")

_DENIED_NODES: tuple[type[exp.Expression], ...] = (
    exp.DDL, exp.DML, exp.Command, exp.Set, exp.Cache, exp.Uncache, exp.Use, exp.Describe,
    exp.Pragma, exp.Copy, exp.LoadData, exp.Transaction, exp.Commit, exp.Rollback, exp.Alter,
    exp.Drop, exp.Create, exp.Insert, exp.Delete, exp.Update, exp.Merge, exp.QueryTransform,
    exp.Refresh, exp.Grant, exp.Analyze, exp.Show, exp.Kill,
)
# Functions that reach outside the query: Java reflection, file names, configuration.
_DENIED_FUNCTIONS = frozenset({
    "reflect", "java_method", "try_reflect", "input_file_name", "input_file_block_start",
    "input_file_block_length", "read_files", "read_parquet", "read_csv", "read_json",
    "read_csv_auto", "read_text", "read_blob", "getenv", "current_setting", "set_config",
    "url_decode_file", "spark_read",
})
_FILE_SOURCES = frozenset({"parquet", "json", "csv", "orc", "text", "avro", "binaryfile", "delta",
                           "jdbc", "hive", "iceberg", "xml", "file"})
_WRITE_KEYWORDS = re.compile(
    r"^\s*(SET|RESET|ADD|CREATE|DROP|ALTER|INSERT|DELETE|UPDATE|MERGE|TRUNCATE|CACHE|UNCACHE|REFRESH|LOAD"
    r"|USE|GRANT|REVOKE|MSCK|ANALYZE|REPAIR|INSTALL|ATTACH|DETACH|COPY|EXPORT|IMPORT|PRAGMA|CALL|LIST)\b",
    re.IGNORECASE,
)


@dataclass
class TableScan:
    """One reference to a dataset in the query, with the partitions it reads."""

    view: str
    dataset: Dataset
    partitions: list[Partition]
    cones: list[Cone] = field(default_factory=list)

    @property
    def bytes_read(self) -> int:
        return sum(p.num_bytes for p in self.partitions)

    @property
    def pruning(self) -> str:
        total = len(self.dataset.partitions)
        if not self.cones:
            if self.dataset.is_sky:
                return "no sky predicate on this dataset's ra/dec columns: all partitions read"
            return "not a sky dataset: all partitions read"
        desc = " and ".join(f"cone({c.ra:g}, {c.dec:g}, r={c.radius:g} deg)" for c in self.cones)
        return f"{desc}: {len(self.partitions)} of {total} HEALPix partitions can match"


@dataclass
class DirectScan:
    """A query the client can answer from the partition files themselves: some columns of one
    dataset (``columns``: (column, output name) pairs, [] for all), the rows inside every cone
    of ``cones`` (on the dataset's ra/dec columns), at most ``limit`` of them."""

    columns: list[tuple[str, str]]
    cones: list[Cone]
    limit: int | None


@dataclass
class QueryPlan:
    sql: str
    tables: list[TableScan]
    engine: str
    engine_reason: str
    spark_sql: str
    duckdb_sql: str
    # Set for a pure projection of one dataset (SELECT * or plain columns, optional LIMIT, no
    # filter): (column, output name) pairs, or [] for all columns. Such a query is a plain scan.
    projection: list[tuple[str, str]] | None = None
    limit: int | None = None
    # Set when the query is a projection, cones and a limit over one dataset: a plain read of
    # its files (federation.direct and island.direct hand them to the client).
    direct: DirectScan | None = None

    @property
    def bytes_read(self) -> int:
        return sum(t.bytes_read for t in self.tables)


def literal_number(node: exp.Expression) -> float | None:
    """The value of a numeric literal (signs and parentheses allowed), else None."""
    neg = False
    while isinstance(node, (exp.Neg, exp.Paren)):
        if isinstance(node, exp.Neg):
            neg = not neg
        node = node.this
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            value = float(node.this)
        except ValueError:
            return None
        return -value if neg else value
    return None


_literal_number = literal_number


def cone_predicate_sql(ra: str, dec: str, ra0: str, dec0: str, radius: str) -> str:
    """Exact angular-distance test (haversine) in plain SQL both engines run natively."""
    return (
        f"(2 * ASIN(SQRT(LEAST(1.0, POWER(SIN(RADIANS(({dec}) - ({dec0})) * 0.5), 2)"
        f" + COS(RADIANS({dec})) * COS(RADIANS({dec0}))"
        f" * POWER(SIN(RADIANS(({ra}) - ({ra0})) * 0.5), 2)))) <= RADIANS({radius}))"
    )


def _cone_args(node: exp.Expression) -> list[exp.Expression] | None:
    """(ra, dec, ra0, dec0, r) of a cone(...) call or an ADQL CONTAINS(POINT, CIRCLE)."""
    if isinstance(node, exp.Anonymous) and node.name.lower() == "cone":
        if len(node.expressions) != 5:
            raise InvalidArgument("cone() takes 5 arguments: cone(ra, dec, ra0, dec0, radius_deg)")
        return list(node.expressions)
    if isinstance(node, exp.Contains):
        point, circle = node.this, node.expression
        ok = (
            isinstance(point, exp.Anonymous) and point.name.lower() == "point" and len(point.expressions) == 3
            and isinstance(circle, exp.Anonymous) and circle.name.lower() == "circle"
            and len(circle.expressions) == 4
        )
        if not ok:
            raise InvalidArgument(
                "CONTAINS takes POINT('ICRS', ra, dec) and CIRCLE('ICRS', ra0, dec0, radius_deg)"
            )
        return [*point.expressions[1:], *circle.expressions[1:]]
    return None


def _check_cone_literals(args: list[exp.Expression]) -> Cone | None:
    for a in args:
        if isinstance(a, exp.Literal) and a.is_string:
            raise InvalidArgument(f"cone arguments are numbers or columns, not the string {a.sql()[:40]}")
    ra0, dec0, r = (_literal_number(a) for a in args[2:])
    if None in (ra0, dec0, r):
        return None
    return Cone(ra0, dec0, r)  # raises InvalidArgument on a negative radius or |dec| > 90


def _rewrite_sky(tree: exp.Expression, budget: _Budget | None = None
                 ) -> list[tuple[exp.Expression, list[exp.Expression]]]:
    """Replaces sky predicates by native expressions; returns (predicate, args) of each."""
    found: list[tuple[exp.Expression, list[exp.Expression]]] = []
    count = sum(1 for node in tree.find_all(exp.Anonymous, exp.Contains) if _cone_args(node) is not None)
    if count > MAX_SKY_PREDICATES:
        raise InvalidArgument(f"the query has {count} sky predicates (cone, CONTAINS); at most "
                              f"{MAX_SKY_PREDICATES} are planned: use a MOC (subscribe --moc) or a join")

    def to_native(node: exp.Expression) -> exp.Expression:
        args = _cone_args(node)
        if args is None:
            return node
        _check_cone_literals(args)
        text = cone_predicate_sql(*(a.sql(dialect="spark") for a in args))
        pred = sqlglot.parse_one(text, read="spark")
        if isinstance(node, exp.Contains):
            parent = node.parent
            other = None
            if isinstance(parent, exp.EQ):
                other = parent.expression if parent.this is node else parent.this
            if other is not None and _literal_number(other) == 1.0:
                parent.replace(pred)
                found.append((pred, args))
                return node  # detached now; the parent replacement is what counts
            pred = exp.Case(ifs=[exp.If(this=pred, true=exp.Literal.number(1))], default=exp.Literal.number(0))
        found.append((pred, args))
        return pred

    for node in list(tree.find_all(exp.Anonymous, exp.Contains)):
        if budget is not None:
            budget.check()
        if node.parent is None and node is not tree:
            continue
        replacement = to_native(node)
        if replacement is not node:
            node.replace(replacement)
    return found


def _conjuncts(where: exp.Expression | None, keep: set[int]) -> list[exp.Expression]:
    """The top-level AND terms of a WHERE; nodes whose id is in ``keep`` are not unwrapped."""
    if where is None:
        return []
    node = where.this if isinstance(where, exp.Where) else where
    out, stack = [], [node]
    while stack:
        n = stack.pop()
        if id(n) in keep:
            out.append(n)
        elif isinstance(n, exp.Paren):
            stack.append(n.this)
        elif isinstance(n, exp.And):
            stack.extend([n.this, n.expression])
        else:
            out.append(n)
    return out


def _healpix_ranges_sql(ds: Dataset, cone: Cone, qual: str) -> str:
    """A conservative ``_healpix_29`` range test for rows in the cone: partition files are sorted
    by that column, so readers skip row groups by their min/max statistics. Empty when the
    dataset has no such column."""
    column = ds.hats_properties.get("hats_col_healpix", "_healpix_29")
    if ds.hats_properties.get("hats_col_healpix_order", "29") != "29" or not ds.partitions:
        return ""
    if column not in ds.partitions[0].stats or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", column):
        return ""
    ranges = healpix29_ranges(cone)
    if not ranges:
        return ""
    ref = f"{qual}.{column}" if qual else column
    return "(" + " OR ".join(f"{ref} BETWEEN {lo} AND {hi}" for lo, hi in ranges) + ")"


def _dataset_name(table: exp.Table) -> str:
    parts = [p.name for p in table.parts]
    return ".".join(parts)


@dataclass(frozen=True)
class QueryShape:
    """What a parse alone tells of a query: the datasets it names, whether its result is an
    aggregate, and the radius of its smallest literal cone (None without one)."""

    names: set[str]
    aggregate: bool
    smallest_cone: float | None


def query_shape(sql: str) -> QueryShape | None:
    """The shape of a query from one parse; None when it cannot be parsed or names something
    other than datasets (full planning then says why)."""
    try:
        statements = parse_statements(sql)
    except InvalidArgument:
        return None
    if len(statements) != 1:
        return None
    tree = statements[0]
    try:
        return _shape(tree)
    except RecursionError:
        return None


def _shape(tree: exp.Expression) -> QueryShape | None:
    names = _names(tree)
    if names is None:
        return None
    select = tree if isinstance(tree, exp.Select) else tree.find(exp.Select)
    aggregate = select is not None and any(e.find(exp.AggFunc) for e in select.expressions)
    radii = []
    for node in tree.walk():
        try:
            args = _cone_args(node)
        except InvalidArgument:
            return None
        if args is not None:
            r = _literal_number(args[4])
            if r is not None:
                radii.append(r)
    return QueryShape(names, aggregate, min(radii) if radii else None)


def referenced_datasets(sql: str) -> set[str] | None:
    """The catalog names a query reads (CTE names left out), from a parse alone; None when the
    query cannot be parsed (full planning then reports why)."""
    shape = query_shape(sql)
    return shape.names if shape is not None else None


def _names(tree: exp.Expression) -> set[str] | None:
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    names = set()
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            return None
        name = _dataset_name(table)
        if not (len(table.parts) == 1 and name.lower() in ctes):
            names.add(name)
    return names


# A query's planning budget: what one query may ask of the planner (and, for functions that
# build strings or arrays from a count, of the engines' memory) before any data is read.
MAX_SQL_CHARS = 256 * 1024
MAX_NESTING = 64
MAX_SKY_PREDICATES = 64
MAX_EXPANSION = 1_000_000
PLANNING_SECONDS = 5.0
_EXPANDING = {"repeat", "pad", "lpad", "rpad", "space", "array_repeat"}


class _Budget:
    """The time a plan may take; the passes check it between steps."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise DeadlineExceeded(f"planning the query took more than {self.seconds:g} s; simplify it "
                                   f"(fewer sky predicates or joins)")


def _nesting(sql: str) -> int:
    """The deepest parenthesis nesting of ``sql`` outside string literals and quoted names."""
    depth = deepest = 0
    quote = ""
    for ch in sql:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"`":
            quote = ch
        elif ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth -= 1
    return deepest


def check_sql_budget(sql: str) -> None:
    """Refuses query text too long or nested too deeply to plan (InvalidArgument)."""
    if len(sql) > MAX_SQL_CHARS:
        raise InvalidArgument(f"query text is {len(sql)} characters; at most {MAX_SQL_CHARS} are planned")
    if _nesting(sql) > MAX_NESTING:
        raise InvalidArgument(f"the query nests parentheses more than {MAX_NESTING} deep")


def parse_statements(text: str, dialect: str = "spark", what: str = "SQL") -> list[exp.Expression]:
    """The statements of ``text`` within the planning budget; InvalidArgument names ``what``
    could not be read (SQL, ADQL, a predicate) and why."""
    check_sql_budget(text)
    try:
        return [s for s in sqlglot.parse(text, read=dialect) if s is not None]
    except (ParseError, TokenError) as exc:
        raise InvalidArgument(f"invalid {what}: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise InvalidArgument(f"the {what} is nested too deeply") from None


def _check_expansions(tree: exp.Expression) -> None:
    """Functions that make a value from a count (repeat('x', 2000000000)) get a literal count
    of at most MAX_EXPANSION: one such call could otherwise take the island's memory."""
    for node in tree.find_all(exp.Func):
        fname = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
        if fname not in _EXPANDING:
            continue
        args = [node.this, *node.expressions] if not isinstance(node, exp.Anonymous) else list(node.expressions)
        args += [v for k, v in node.args.items() if k not in ("this", "expressions") and isinstance(v, exp.Expression)]
        for arg in args:
            value = literal_number(arg) if isinstance(arg, exp.Expression) else None
            if value is not None and value > MAX_EXPANSION:
                raise InvalidArgument(f"{fname}() with a count of {value:.0f}: at most {MAX_EXPANSION} "
                                      f"(a query's memory budget)")


def plan_query(
    sql: str,
    lookup: Callable[[str], Dataset],
    *,
    engine: str = "auto",
    arrow_max_aggregate_bytes: int = 2 * 1024**3,
    view_prefix: str | None = None,
    budget_seconds: float = PLANNING_SECONDS,
) -> QueryPlan:
    """Plans one user query. ``lookup(name)`` returns a Dataset or raises NotFound. Planning
    has a budget: the text's size and nesting, the number of sky predicates, literal counts
    of functions that build values, and ``budget_seconds`` of time (DeadlineExceeded)."""
    if not isinstance(sql, str) or not sql.strip():
        raise InvalidArgument("empty query")
    check_sql_budget(sql)
    key = (sql, engine, arrow_max_aggregate_bytes)
    memo = view_prefix is None and _VIEW_SLOT not in sql
    if memo:
        plan = _PLANS.reuse(key, lookup)
        if plan is not None:
            return plan
    names: list[str] = []

    def recorded(name: str) -> Dataset:
        names.append(name)
        return lookup(name)
    try:
        plan = _plan(sql, recorded, engine, arrow_max_aggregate_bytes, _VIEW_SLOT if memo else view_prefix,
                     _Budget(budget_seconds))
    except RecursionError:
        raise InvalidArgument("the query is nested too deeply to plan") from None
    if not memo:
        return plan
    _PLANS.keep(key, plan, names)
    return _PlanMemo.instance(plan, [t.dataset for t in plan.tables])


# Plans are kept by query text and reused while the datasets they read are unchanged: parsing
# and rewriting with sqlglot is most of a small query's planning (milliseconds, as much as a
# 10-degree cone's read). A kept plan's views are named with this slot, replaced on each reuse
# by a fresh prefix; a query whose text holds the slot is never kept.
_VIEW_SLOT = f"q{uuid.uuid4().hex[:12]}"


class _PlanMemo:
    """The last ``size`` plans, by (sql, engine, aggregate limit), with the names the planner
    looked up. A reuse looks the same names up again, in the same order (so access rights and
    the audit see every query as before) and takes the kept plan only if every dataset is
    equal, partitions and statistics included, to the one it was planned with."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._plans: OrderedDict[tuple, tuple[QueryPlan, list[str], list[Dataset]]] = OrderedDict()
        self._lock = threading.Lock()

    def keep(self, key: tuple, plan: QueryPlan, names: list[str]) -> None:
        seen = {t.dataset.name: t.dataset for t in plan.tables}
        if any(n not in seen for n in names):  # a name that resolved to no scan: not worth reasoning about
            return
        with self._lock:
            self._plans[key] = (plan, names, [seen[n] for n in names])
            self._plans.move_to_end(key)
            while len(self._plans) > self.size:
                self._plans.popitem(last=False)

    def reuse(self, key: tuple, lookup: Callable[[str], Dataset]) -> QueryPlan | None:
        with self._lock:
            found = self._plans.get(key)
            if found is not None:
                self._plans.move_to_end(key)
        if found is None:
            return None
        plan, names, datasets = found
        fresh = {}
        for name, kept in zip(names, datasets):
            try:
                ds = lookup(name)
            except NotFound:
                raise NotFound(f"unknown dataset {name!r} (see `archipel datasets`)") from None
            if ds != kept:
                return None
            fresh[name] = ds
        return self.instance(plan, [fresh[t.dataset.name] for t in plan.tables])

    @staticmethod
    def instance(plan: QueryPlan, datasets: list[Dataset]) -> QueryPlan:
        """A copy of a kept plan the caller may change, its views named afresh."""
        prefix = f"q{uuid.uuid4().hex[:12]}"

        def named(text: str) -> str:
            return text.replace(_VIEW_SLOT, prefix)
        tables = [TableScan(view=named(t.view), dataset=ds, partitions=list(t.partitions), cones=list(t.cones))
                  for t, ds in zip(plan.tables, datasets)]
        direct = plan.direct and DirectScan(list(plan.direct.columns), list(plan.direct.cones), plan.direct.limit)
        return replace(plan, tables=tables, spark_sql=named(plan.spark_sql), duckdb_sql=named(plan.duckdb_sql),
                       projection=None if plan.projection is None else list(plan.projection), direct=direct)


_PLANS = _PlanMemo()


def _plan(sql: str, lookup: Callable[[str], Dataset], engine: str, arrow_max_aggregate_bytes: int,
          view_prefix: str | None, budget: _Budget) -> QueryPlan:
    """The passes of planning, in order: read-only check, sky predicates rewritten, tables
    resolved to catalog datasets, partitions pruned by cones, computed columns named, engine
    chosen."""
    tree = _read_only_query(sql)
    _check_expansions(tree)
    sky_preds = _rewrite_sky(tree, budget)
    scans, scan_of_table = _resolve_tables(tree, lookup, view_prefix or f"q{uuid.uuid4().hex[:12]}")
    applied, top_conjuncts = _prune_by_cones(tree, sky_preds, scan_of_table, budget)
    _name_computed_columns(tree)
    engine, reason = _choose_engine(tree, scans, engine, arrow_max_aggregate_bytes)
    spark_sql = tree.sql(dialect="spark")
    try:
        duckdb_sql = tree.sql(dialect="duckdb")
    except Exception as exc:  # sqlglot cannot express it in DuckDB: Spark only
        duckdb_sql = ""
        if engine == "arrow":
            engine, reason = "spark", f"not expressible on the Arrow path ({exc})"
    projection, limit = _pure_projection(tree, scans)
    direct = None
    if engine == "arrow" and all(id(c) in applied for c in top_conjuncts):
        columns, direct_limit = _pure_projection(tree, scans, where_ok=True)
        if columns is not None:
            direct = DirectScan(columns, list(scans[0].cones), direct_limit)
    return QueryPlan(sql=sql, tables=scans, engine=engine, engine_reason=reason,
                     spark_sql=spark_sql, duckdb_sql=duckdb_sql, projection=projection, limit=limit, direct=direct)


def _read_only_query(sql: str) -> exp.Expression:
    """The one SELECT statement of ``sql``; PermissionDenied for writes, settings, functions
    that read files or the environment."""
    first = _WRITE_KEYWORDS.match(sql)
    if first:
        raise PermissionDenied(f"only read-only SELECT queries are allowed; {first.group(1).upper()} is refused")
    statements = parse_statements(sql)
    if len(statements) != 1:
        raise InvalidArgument(f"expected exactly one statement, got {len(statements)}")
    tree = statements[0]
    for node in tree.walk():
        if isinstance(node, _DENIED_NODES):
            kind = str(node.this).upper() if isinstance(node, exp.Command) else node.key.upper()
            raise PermissionDenied(f"only read-only SELECT queries are allowed; {kind} is refused")
        if isinstance(node, exp.Func):
            fname = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
            if fname in _DENIED_FUNCTIONS:
                raise PermissionDenied(f"function {fname}() is not allowed in Archipel queries")
    if not isinstance(tree, exp.Query):
        raise InvalidArgument(f"invalid SQL: expected a SELECT query, got {sql.strip()[:60]!r}")
    return tree


def _resolve_tables(tree: exp.Expression, lookup: Callable[[str], Dataset], prefix: str
                    ) -> tuple[list[TableScan], dict[int, TableScan]]:
    """Replaces each catalog table by a view named ``prefix_i``; returns the scans, and the
    scan of each new table node (by id)."""
    cte_names = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    scans: list[TableScan] = []
    scan_of_table: dict[int, TableScan] = {}
    for i, table in enumerate(list(tree.find_all(exp.Table))):
        if not isinstance(table.this, exp.Identifier):
            raise PermissionDenied(
                f"table-valued functions are not allowed: {table.this.sql(dialect='spark')}"
            )
        name = _dataset_name(table)
        if len(table.parts) == 1 and name.lower() in cte_names:
            continue
        if len(table.parts) >= 2 and table.parts[0].name.lower() in _FILE_SOURCES and (
            "/" in table.name or "." in table.name or ":" in table.name
        ):
            raise PermissionDenied(f"direct file reads are not allowed ({table.sql(dialect='spark')}); "
                                   "query catalog datasets by name")
        try:
            ds = lookup(name)
        except NotFound:
            raise NotFound(f"unknown dataset {name!r} (see `archipel datasets`)") from None
        view = f"{prefix}_{i}"
        alias = table.alias or table.name
        new = exp.Table(this=exp.to_identifier(view), alias=exp.TableAlias(this=exp.to_identifier(alias)))
        table.replace(new)
        scan = TableScan(view=view, dataset=ds, partitions=list(ds.partitions))
        scans.append(scan)
        scan_of_table[id(new)] = scan
    if not scans:
        raise InvalidArgument("the query reads no dataset; name a catalog dataset in FROM")
    return scans, scan_of_table


def _prune_by_cones(tree: exp.Expression, sky_preds: list[tuple[exp.Expression, list[exp.Expression]]],
                    scan_of_table: dict[int, TableScan], budget: _Budget) -> tuple[set[int], list[exp.Expression]]:
    """A cone conjunct in a SELECT's WHERE on one table's own ra/dec columns prunes that scan's
    partitions and adds its HEALPix ranges; returns the conjuncts applied (by id) and the top
    SELECT's conjuncts."""
    pred_ids = {id(p): args for p, args in sky_preds}
    top_conjuncts = _conjuncts(tree.args.get("where"), set(pred_ids)) if isinstance(tree, exp.Select) else []
    applied: set[int] = set()
    for select in tree.find_all(exp.Select):
        sources: dict[str, TableScan] = {}
        for t in select.find_all(exp.Table):
            if t.parent_select is select and id(t) in scan_of_table:
                sources[t.alias_or_name.lower()] = scan_of_table[id(t)]
        if not sources:
            continue
        for conj in _conjuncts(select.args.get("where"), set(pred_ids)):
            args = pred_ids.get(id(conj))
            found = _cone_on_scan(args, sources) if args is not None else None
            if found is None:
                continue
            scan, qual, cone = found
            budget.check()
            scan.cones.append(cone)
            applied.add(id(conj))
            keep = partitions_in_cone([(p.order, p.pixel) for p in scan.partitions], cone)
            scan.partitions = [p for p, k in zip(scan.partitions, keep) if k]
            ranges_sql = _healpix_ranges_sql(scan.dataset, cone, qual)
            if ranges_sql:
                select.where(sqlglot.parse_one(ranges_sql, read="spark"), append=True, copy=False)
    return applied, top_conjuncts


def _cone_on_scan(args: list[exp.Expression], sources: dict[str, TableScan]
                  ) -> tuple[TableScan, str, Cone] | None:
    """(scan, qualifier, cone) when a sky predicate's arguments are one sky table's own ra/dec
    columns and literal numbers; else None."""
    ra, dec = args[0], args[1]
    if not (isinstance(ra, exp.Column) and isinstance(dec, exp.Column)):
        return None
    quals = {ra.table.lower(), dec.table.lower()}
    if len(quals) != 1:
        return None
    qual = quals.pop()
    scan = sources.get(qual) if qual else (next(iter(sources.values())) if len(sources) == 1 else None)
    if scan is None or not scan.dataset.is_sky:
        return None
    if (ra.name.lower(), dec.name.lower()) != (scan.dataset.ra_column.lower(), scan.dataset.dec_column.lower()):
        return None
    cone = _check_cone_literals(args)
    return None if cone is None else (scan, qual, cone)


def _name_computed_columns(tree: exp.Expression) -> None:
    """Names unaliased computed columns the same way in both engines."""
    for select in tree.find_all(exp.Select):
        for j, proj in enumerate(select.expressions):
            if not isinstance(proj, (exp.Column, exp.Star, exp.Alias)):
                text = proj.sql(dialect="spark")
                select.expressions[j] = exp.alias_(proj.copy(), text[:128], quoted=True)
                select.expressions[j].parent = select


def _pure_projection(tree: exp.Expression, scans: list[TableScan],
                     where_ok: bool = False) -> tuple[list[tuple[str, str]] | None, int | None]:
    """(columns, limit) when the query only picks columns of one dataset, else (None, None).
    ``where_ok``: its WHERE (checked by the caller) does not count."""
    if not isinstance(tree, exp.Select) or len(scans) != 1:
        return None, None
    if any(tree.args.get(k) for k in ("group", "having", "order", "distinct", "joins", "laterals",
                                       "qualify", "offset")) or (tree.args.get("where") and not where_ok):
        return None, None
    if tree.find(exp.With, exp.Subquery, exp.Join, exp.Window) is not None:
        return None, None
    if not all(isinstance(p, (exp.Star, exp.Column)) or (isinstance(p, exp.Alias) and isinstance(p.this, exp.Column))
               for p in tree.expressions):
        return None, None
    limit = None
    if tree.args.get("limit") is not None:
        value = _literal_number(tree.args["limit"].expression)
        if value is None or value < 0 or value != int(value):
            return None, None
        limit = int(value)
    if len(tree.expressions) == 1 and isinstance(tree.expressions[0], exp.Star):
        return [], limit
    from archipel.arrowwire import read_schema

    names = set(read_schema(scans[0].dataset.arrow_schema).names)
    out: list[tuple[str, str]] = []
    for proj in tree.expressions:
        inner, alias = (proj.this, proj.alias) if isinstance(proj, exp.Alias) else (proj, None)
        if not isinstance(inner, exp.Column) or inner.name not in names:
            return None, None
        out.append((inner.name, alias or inner.name))
    return out, limit


def _choose_engine(tree: exp.Expression, scans: list[TableScan], wanted: str, max_agg_bytes: int) -> tuple[str, str]:
    if wanted not in ("auto", *ENGINES):
        raise InvalidArgument(f"unknown engine {wanted!r}; use auto, arrow or spark")
    if wanted != "auto":
        return wanted, f"engine {wanted} requested"
    if len(scans) > 1:
        return "spark", f"{len(scans)} dataset references (join or union): Spark"
    if tree.find(exp.Window):
        return "spark", "window function: Spark"
    if tree.find(exp.Join) or tree.find(exp.Lateral) or tree.find(exp.Explode):
        return "spark", "join or lateral view: Spark"
    aggregate = tree.find(exp.AggFunc) is not None or tree.find(exp.Group) is not None
    nbytes = scans[0].bytes_read
    if aggregate and nbytes > max_agg_bytes:
        return "spark", f"aggregate over {nbytes} bytes (> {max_agg_bytes}): Spark"
    what = "aggregate" if aggregate else "scan/filter"
    return "arrow", f"{what} over one dataset ({nbytes} bytes): Arrow path in process"

