"""The catalog's entities as plain data: datasets, their partitions and replicas."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Partition", "Dataset", "Replica", "Change", "SKY_KINDS"]

# HATS kinds (partitioned by HEALPix) and the plain-table kinds.
SKY_KINDS = frozenset({"catalog", "source", "object", "margin"})


@dataclass(frozen=True)
class Partition:
    """One file of a dataset: a HEALPix pixel of a HATS catalog, or a file of a plain table."""

    path: str  # relative to the dataset root
    num_rows: int
    num_bytes: int
    adler32: int
    order: int | None = None
    pixel: int | None = None
    stats: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def pid(self) -> str:
        """Stable id of the partition within its dataset."""
        return self.path

    @property
    def has_pixel(self) -> bool:
        return self.order is not None and self.pixel is not None


@dataclass(frozen=True)
class Dataset:
    name: str
    origin: str
    kind: str
    root: str  # absolute folder the partition paths are relative to
    arrow_schema: bytes
    num_rows: int
    num_bytes: int
    ra_column: str = ""
    dec_column: str = ""
    hats_properties: dict[str, str] = field(default_factory=dict)
    moc: str = ""
    sky_fraction: float = 0.0
    created: str = ""
    partitions: tuple[Partition, ...] = ()
    # Access facts, authored by the origin with the rest of the record (see metacatalog.access).
    owner: str = ""
    readers: tuple[str, ...] = ("public",)
    public_after: str = ""

    @property
    def access(self):
        from metacatalog.access import Access

        return Access(self.owner, tuple(self.readers), self.public_after)

    @property
    def is_sky(self) -> bool:
        return bool(self.ra_column and self.dec_column) and any(p.has_pixel for p in self.partitions)


@dataclass(frozen=True)
class Replica:
    dataset: str
    pid: str
    island: str


@dataclass(frozen=True)
class Change:
    """One entry of an island's append-only change log."""

    origin: str
    seq: int
    op: str  # "dataset.put", "dataset.delete", "replica.put", "replica.delete"
    key: str
    payload: dict[str, Any]
    ts: float
    signature: bytes = b""  # the origin island's signature of ``signed_bytes``
    payload_json: str = ""  # the payload as its origin wrote it (what the signature covers)

    def signed_bytes(self) -> bytes:
        import json

        return json.dumps([self.origin, self.seq, self.op, self.key, self.payload_json, self.ts]).encode()
