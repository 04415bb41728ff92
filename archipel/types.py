"""What the client returns: plain Python and Arrow types, never protobuf messages."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import grpc
import pyarrow as pa

from archipel.arrowwire import read_schema
from archipel.errors import ArchipelError, InvalidArgument, Unavailable, error_for_code
from archipel.v1 import island_pb2 as pb

__all__ = ["PartitionInfo", "DatasetInfo", "DatasetPlan", "QueryPlan", "QueryStats", "default_address",
           "ROUTE_VALUES", "ENGINE_VALUES", "query_request", "rpc_error", "DEFAULT_PORT", "TokenInfo",
           "parse_duration"]

DEFAULT_PORT = 7770
ROUTE_VALUES = {"auto": pb.ROUTE_AUTO, "local": pb.ROUTE_LOCAL, "remote": pb.ROUTE_REMOTE,
                "replicate": pb.ROUTE_REPLICATE}
ENGINE_VALUES = {"auto": pb.ENGINE_AUTO, "arrow": pb.ENGINE_ARROW, "spark": pb.ENGINE_SPARK}


def default_address(addr: str | None = None) -> str:
    """The island to reach: the argument, else $ARCHIPEL_ISLAND, else localhost:7770."""
    addr = addr or os.environ.get("ARCHIPEL_ISLAND") or f"localhost:{DEFAULT_PORT}"
    if ":" not in addr:
        addr = f"{addr}:{DEFAULT_PORT}"
    return addr


@dataclass(frozen=True)
class PartitionInfo:
    path: str
    num_rows: int
    num_bytes: int
    adler32: int
    order: int | None
    pixel: int | None
    stats: dict[str, list[Any]]
    islands: list[str]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    origin: str
    kind: str
    schema: pa.Schema
    num_rows: int
    num_bytes: int
    num_partitions: int
    ra_column: str
    dec_column: str
    moc: str
    sky_fraction: float
    hats_properties: dict[str, str]
    created: str
    partitions: list[PartitionInfo] = field(default_factory=list)
    owner: str = ""
    readers: tuple[str, ...] = ("public",)
    public_after: str = ""
    hats_urls: tuple[str, ...] = ()  # where it reads as HATS over HTTP (lsdb.open_catalog)

    @classmethod
    def from_pb(cls, m: pb.Dataset) -> DatasetInfo:
        return cls(
            name=m.name, origin=m.origin, kind=m.kind, schema=read_schema(m.arrow_schema),
            num_rows=m.num_rows, num_bytes=m.num_bytes, num_partitions=m.num_partitions,
            ra_column=m.ra_column, dec_column=m.dec_column, moc=m.moc, sky_fraction=m.sky_fraction,
            hats_properties=dict(m.hats_properties), created=m.created,
            partitions=[
                PartitionInfo(path=p.path, num_rows=p.num_rows, num_bytes=p.num_bytes, adler32=p.adler32,
                              order=p.order if p.has_pixel else None, pixel=p.pixel if p.has_pixel else None,
                              stats=json.loads(p.stats_json or "{}"), islands=list(p.islands))
                for p in m.partitions
            ],
            owner=m.owner, readers=tuple(m.readers), public_after=m.public_after, hats_urls=tuple(m.hats_urls),
        )


@dataclass(frozen=True)
class DatasetPlan:
    dataset: str
    kind: str
    islands: list[str]
    partitions_total: int
    partitions_read: int
    bytes_read: int
    pixels: list[str]
    pruning: str
    placement: str


@dataclass(frozen=True)
class QueryPlan:
    engine: str
    engine_reason: str
    route: str
    rewritten_sql: str
    datasets: list[DatasetPlan]

    @classmethod
    def from_pb(cls, m: pb.QueryPlan) -> QueryPlan:
        return cls(engine=m.engine, engine_reason=m.engine_reason, route=m.route, rewritten_sql=m.rewritten_sql,
                   datasets=[DatasetPlan(d.dataset, d.kind, list(d.islands), d.partitions_total,
                                         d.partitions_read, d.bytes_read, list(d.pixels), d.pruning, d.placement)
                             for d in m.datasets])

    def __str__(self) -> str:
        lines = [f"engine: {self.engine} ({self.engine_reason})", f"route: {self.route}"]
        for d in self.datasets:
            lines.append(f"dataset {d.dataset} [{d.kind}] on {', '.join(d.islands)} -> {d.placement}")
            lines.append(f"  reads {d.partitions_read}/{d.partitions_total} partitions, {d.bytes_read} bytes")
            lines.append(f"  {d.pruning}")
            if d.pixels:
                shown = ", ".join(d.pixels[:20]) + (" ..." if len(d.pixels) > 20 else "")
                lines.append(f"  pixels: {shown}")
        lines.append(f"sql: {self.rewritten_sql}")
        return "\n".join(lines)


@dataclass(frozen=True)
class QueryStats:
    num_rows: int
    num_bytes: int
    num_batches: int
    elapsed_seconds: float
    engine: str


def query_request(sql: str, route: str, engine: str, max_rows: int, max_bytes: int, query_id: str,
                  compression: str) -> pb.QueryRequest:
    if not isinstance(sql, str):
        raise InvalidArgument("query must be a string of SQL")
    if route not in ROUTE_VALUES:
        raise InvalidArgument(f"route must be one of {', '.join(ROUTE_VALUES)}, not {route!r}")
    if engine not in ENGINE_VALUES:
        raise InvalidArgument(f"engine must be one of {', '.join(ENGINE_VALUES)}, not {engine!r}")
    if max_rows < 0 or max_bytes < 0:
        raise InvalidArgument("max_rows and max_bytes must not be negative")
    return pb.QueryRequest(sql=sql, route=ROUTE_VALUES[route], engine=ENGINE_VALUES[engine], max_rows=max_rows,
                           max_bytes=max_bytes, query_id=query_id, compression=compression or "")


def rpc_error(exc: grpc.RpcError, address: str) -> ArchipelError:
    """The Archipel exception for a failed call, keeping the server's message."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    name = code.name if code is not None else "UNKNOWN"
    if name == "UNAVAILABLE":
        hint = ""
        if "handshake" in (details or "").lower() or "certificate" in (details or "").lower():
            hint = (" (TLS failed: is ca=, --ca or $ARCHIPEL_CA the ca.pem of this island's archipelago, and the "
                    "address the one its certificate names?)")
        return Unavailable(f"island {address} is unavailable: {details}{hint}")
    if name == "CANCELLED" and not details:
        details = "the call was cancelled"
    return error_for_code(name, details or name)


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: float | int | str | None) -> float:
    """Seconds from 3600, "90s", "30m", "12h", "30d" or "2w"; None or 0: never."""
    if value is None or value == "" or value == 0:
        return 0.0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise InvalidArgument("a duration must not be negative")
        return float(value)
    text = str(value).strip().lower()
    number, unit = text.rstrip("smhdw"), text[len(text.rstrip("smhdw")):]
    if not number.isdigit() or unit not in _DURATION_UNITS:
        raise InvalidArgument(f"duration {value!r} is not like 3600, 30m, 12h or 30d")
    return float(int(number) * _DURATION_UNITS[unit])


@dataclass(frozen=True)
class TokenInfo:
    """A token's record (``token`` holds the token itself only when just created)."""

    id: str
    user: str
    groups: tuple[str, ...]
    rights: tuple[str, ...]
    admin: bool
    issued: float
    expires: float  # 0: never
    issuer: str
    revoked_by: str = ""
    revoked_at: float = 0.0
    token: str = field(default="", repr=False)

    @classmethod
    def from_pb(cls, m: pb.TokenInfo) -> TokenInfo:
        return cls(m.id, m.user, tuple(m.groups), tuple(m.rights), m.admin, m.issued, m.expires, m.issuer,
                   m.revoked_by, m.revoked_at, m.token)


@dataclass(frozen=True)
class RuleInfo:
    """A replication rule on an island, with the state of its copies."""

    id: str
    dataset: str
    island: str
    region: str
    protocol: str
    created: float
    expires: float  # 0: never
    state: str  # "replicating", "ok", "stuck", "expired"
    files_total: int
    files_done: int
    files_failed: int
    bytes_total: int
    bytes_done: int
    errors: tuple[str, ...]

    owner: str = ""

    @classmethod
    def from_pb(cls, m: Any) -> RuleInfo:
        return cls(id=m.id, dataset=m.dataset, island=m.island, region=m.region, protocol=m.protocol,
                   created=m.created, expires=m.expires, state=m.state, files_total=m.files_total,
                   files_done=m.files_done, files_failed=m.files_failed, bytes_total=m.bytes_total,
                   bytes_done=m.bytes_done, errors=tuple(m.errors), owner=m.owner)


@dataclass(frozen=True)
class CacheInfo:
    island: str
    quota_bytes: int
    used_bytes: int
    pinned_bytes: int
    cached_bytes: int
    files: int
    pinned_files: int
    datasets: dict[str, tuple[int, int]]  # dataset -> (files, bytes)
    errors: tuple[str, ...]
