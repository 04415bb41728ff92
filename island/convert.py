"""Domain records to wire messages, at the servicer edge only."""

from __future__ import annotations

import json

from archipel.v1 import island_pb2 as pb
from federation.planner import QueryPlan
from federation.router import Placement
from metacatalog.model import SKY_KINDS, Dataset

__all__ = ["dataset_to_pb", "plan_to_pb", "ROUTES", "ENGINES"]

ROUTES = {pb.ROUTE_AUTO: "auto", pb.ROUTE_LOCAL: "local", pb.ROUTE_REMOTE: "remote", pb.ROUTE_REPLICATE: "replicate"}
ENGINES = {pb.ENGINE_AUTO: "auto", pb.ENGINE_ARROW: "arrow", pb.ENGINE_SPARK: "spark"}


def hats_urls(ds: Dataset, here: str, replicas: dict[str, list[str]], data_urls: dict[str, tuple[str, str]]
              ) -> list[str]:
    """The ``/hats/<dataset>`` URLs of the islands holding every partition of a sky dataset
    (this island first when it is one of them)."""
    if ds.kind not in SKY_KINDS or not ds.partitions:
        return []
    holders = set.intersection(*[{ds.origin, *replicas.get(p.pid, [])} for p in ds.partitions])
    out = []
    for island in sorted(holders, key=lambda i: (i != here, i != ds.origin, i)):
        http = (data_urls.get(island) or ("", ""))[0]
        if http.endswith("/data"):
            out.append(f"{http[:-len('/data')]}/hats/{ds.name}")
    return out


def dataset_to_pb(ds: Dataset, island: str, num_partitions: int | None = None,
                  replicas: dict[str, list[str]] | None = None,
                  data_urls: dict[str, tuple[str, str]] | None = None) -> pb.Dataset:
    """``data_urls`` (the islands' HTTP bases) with the partitions and ``replicas``: where the
    dataset reads as HATS over HTTP."""
    replicas = replicas or {}
    msg = pb.Dataset(
        name=ds.name, origin=ds.origin, kind=ds.kind, arrow_schema=ds.arrow_schema,
        num_rows=ds.num_rows, num_bytes=ds.num_bytes, ra_column=ds.ra_column, dec_column=ds.dec_column,
        hats_properties=ds.hats_properties, moc=ds.moc, sky_fraction=ds.sky_fraction,
        num_partitions=num_partitions if num_partitions is not None else len(ds.partitions),
        created=ds.created, owner=ds.owner, readers=list(ds.readers), public_after=ds.public_after,
    )
    if data_urls is not None:
        msg.hats_urls.extend(hats_urls(ds, island, replicas, data_urls))
    for p in ds.partitions:
        msg.partitions.append(pb.Partition(
            has_pixel=p.has_pixel, order=p.order or 0, pixel=p.pixel or 0, path=p.path,
            num_rows=p.num_rows, num_bytes=p.num_bytes, adler32=p.adler32,
            stats_json=json.dumps(p.stats, default=str),
            islands=[ds.origin, *[i for i in replicas.get(p.pid, []) if i != ds.origin]],
        ))
    return msg


def _placement(ds_origin: str, island: str, placement: Placement | None, bytes_read: int) -> str:
    if placement is None or placement.kind == "local" or ds_origin == island:
        return "local"
    if placement.kind == "pushdown":
        return f"remote:{ds_origin} (the query runs there; its result streams back through {island})"
    return f"fetch:{ds_origin} (up to {bytes_read} bytes of pruned rows move to {island}, joined here)"


def plan_to_pb(plan: QueryPlan, route: str, island: str, placement: Placement | None = None,
               notes: dict[str, str] | None = None) -> pb.QueryPlan:
    """The plan as sent; ``notes`` override the placement text of datasets (by view)."""
    notes = notes or {}
    engine = plan.engine
    reason = plan.engine_reason
    if placement is not None and placement.kind == "pushdown":
        engine, reason = f"remote:{placement.island}", placement.reason
    elif placement is not None:
        reason = f"{placement.reason}; {reason}"
    msg = pb.QueryPlan(engine=engine, engine_reason=reason, rewritten_sql=plan.spark_sql, route=route)
    for scan in plan.tables:
        ds = scan.dataset
        msg.datasets.append(pb.DatasetPlan(
            dataset=ds.name, kind=ds.kind, islands=[ds.origin],
            partitions_total=len(ds.partitions), partitions_read=len(scan.partitions),
            bytes_read=scan.bytes_read,
            pixels=[f"{p.order}/{p.pixel}" for p in scan.partitions if p.has_pixel],
            pruning=scan.pruning,
            placement=notes.get(scan.view) or _placement(ds.origin, island, placement, scan.bytes_read),
        ))
    return msg
