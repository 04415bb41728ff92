"""Lazy replication, the policy: which of a query's remote partitions to copy here before the
query runs locally. Partitions already held here as replicas are read here (so a laptop keeps
answering with every peer down); ``route='replicate'`` copies what is missing; ``auto`` copies it
when that moves fewer bytes than the result would."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import sqlglot
from sqlglot import exp

from federation.planner import QueryPlan, QueryShape, TableScan
from metacatalog.model import Partition

__all__ = ["Localization", "localize", "estimate_result_bytes"]

# Arrow in memory is bigger than the Parquet it came from (encoding, compression).
ARROW_EXPANSION = 2.0


@dataclass
class Localization:
    plan: QueryPlan
    to_copy: list[tuple[TableScan, list[Partition]]]  # original scans and what they lack here
    reason: str = ""
    original_tables: list[TableScan] = field(default_factory=list)  # the scans as planned


def _sky_share(scan: TableScan) -> float:
    """The share of a scan's partitions' sky that its cones cover (1 without cones)."""
    if not scan.cones or not scan.partitions or not all(p.has_pixel for p in scan.partitions):
        return 1.0
    area = sum(4 * math.pi / (12 * 4**p.order) for p in scan.partitions)
    cone = min(2 * math.pi * (1 - math.cos(math.radians(c.radius))) for c in scan.cones)
    return min(1.0, cone / area) if area else 1.0


def may_copy(shape: QueryShape, max_order: Callable[[str], int | None]) -> bool:
    """Whether ``auto`` might copy a query's partitions, from its shape alone (no planning): a
    copy pays only when the result is over half the bytes read, which an aggregate never is,
    nor a cone covering less than half of even the smallest pixel of the dataset (the bytes
    its pixels hold are at least that pixel's)."""
    if shape.aggregate:
        return False
    if shape.smallest_cone is None:
        return True
    cone = 2 * math.pi * (1 - math.cos(math.radians(min(shape.smallest_cone, 180.0))))
    for name in shape.names:
        order = max_order(name)
        if order is None or cone > 0.5 * 4 * math.pi / (12 * 4**order):
            return True
    return False


def estimate_result_bytes(plan: QueryPlan) -> int:
    """A rough size of the query's result: tiny for a global aggregate, bounded by a LIMIT,
    else the bytes the query reads (the share of them inside its cones), as Arrow."""
    scanned = int(sum(t.bytes_read * _sky_share(t) for t in plan.tables) * ARROW_EXPANSION)
    try:
        tree = sqlglot.parse_one(plan.sql, read="spark")
    except Exception:
        return scanned
    select = tree if isinstance(tree, exp.Select) else tree.find(exp.Select)
    if select is None:
        return scanned
    if any(e.find(exp.AggFunc) for e in select.expressions):
        # a global aggregate is a row; grouped ones are far smaller than what they read
        return 1024 if select.args.get("group") is None else max(1024, scanned // 100)
    limit = select.args.get("limit")
    if limit is not None and isinstance(limit.expression, exp.Literal):
        rows = sum(max(1, sum(p.num_rows for p in t.partitions)) for t in plan.tables)
        per_row = scanned / rows if rows else 0
        return min(scanned, int(int(limit.expression.this) * per_row))
    return scanned


def localize(plan: QueryPlan, here: str, route: str, held: Callable[[str], set[str]],
             replica_root: Callable[[str], str], auto_max_bytes: int) -> Localization:
    """The plan with remote tables read here where this island holds (or will copy) the
    partitions they need, and the copies to make first."""
    tables: list[TableScan] = []
    to_copy: list[tuple[TableScan, list[Partition]]] = []
    for scan in plan.tables:
        ds = scan.dataset
        if ds.origin == here:
            tables.append(scan)
            continue
        have = held(ds.name)
        missing = [p for p in scan.partitions if p.pid not in have]
        if missing and route != "replicate":
            tables.append(scan)
            continue
        if missing:
            to_copy.append((scan, missing))
        tables.append(replace(scan, dataset=replace(ds, origin=here, root=replica_root(ds.name))))
    local = replace(plan, tables=tables)
    original = list(plan.tables)
    if route == "replicate":
        return Localization(local, to_copy, "route='replicate': missing partitions are copied here first", original)
    if route != "auto" or auto_max_bytes <= 0:
        return Localization(local, [], "", original)
    # auto: every remote table lacking partitions is either copied or left to the router.
    candidates = [(s, [p for p in s.partitions if p.pid not in held(s.dataset.name)])
                  for s in plan.tables if s.dataset.origin != here]
    candidates = [(s, m) for s, m in candidates if m]
    if not candidates:
        return Localization(local, [], "every partition needed is held here", original)
    need = sum(p.num_bytes for _, m in candidates for p in m)
    result = estimate_result_bytes(plan)
    if need <= auto_max_bytes and need < result:
        copied = {s.view for s, _ in candidates}
        tables = [replace(s, dataset=replace(s.dataset, origin=here, root=replica_root(s.dataset.name)))
                  if s.view in copied else t for s, t in zip(plan.tables, local.tables)]
        return Localization(replace(plan, tables=tables), candidates,
                            f"auto: copying {need} bytes of partitions is less than the ~{result} byte result",
                            original)
    return Localization(local, [], f"auto: the ~{result} byte result moves less than {need} bytes of partitions",
                        original)
