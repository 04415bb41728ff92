"""Facts about one Parquet file, read from its footer and bytes: rows, size, adler32, stats."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from archipel.errors import InvalidArgument
from metacatalog.checksum import file_adler32
from metacatalog.model import Partition

__all__ = ["parquet_partition", "read_parquet_schema"]


def read_parquet_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidArgument(f"{path} is not a readable Parquet file: {exc}") from None


def _plain(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    if isinstance(v, bytes):
        return None
    return str(v)


def _column_stats(meta: pq.FileMetaData) -> dict[str, list[Any]]:
    stats: dict[str, list[Any]] = {}
    for rg in range(meta.num_row_groups):
        group = meta.row_group(rg)
        for c in range(group.num_columns):
            col = group.column(c)
            name = col.path_in_schema
            s = col.statistics
            if s is None or not s.has_min_max:
                stats[name] = [None, None]
                continue
            lo, hi = _plain(s.min), _plain(s.max)
            if name in stats:
                old = stats[name]
                if old[0] is None or lo is None or old[1] is None or hi is None:
                    stats[name] = [None, None]
                    continue
                try:
                    stats[name] = [min(old[0], lo), max(old[1], hi)]
                except TypeError:
                    stats[name] = [None, None]
            else:
                stats[name] = [lo, hi]
    return {k: v for k, v in stats.items() if v != [None, None]}


def parquet_partition(path: Path, root: Path, order: int | None = None, pixel: int | None = None) -> Partition:
    """The catalog record of one Parquet file; raises InvalidArgument if it is not Parquet."""
    try:
        meta = pq.read_metadata(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidArgument(f"{path} is not a readable Parquet file: {exc}") from None
    return Partition(
        path=str(path.relative_to(root)),
        num_rows=meta.num_rows,
        num_bytes=path.stat().st_size,
        adler32=file_adler32(path)[0],
        order=order,
        pixel=pixel,
        stats=_column_stats(meta),
    )
