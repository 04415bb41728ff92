"""Appending rows to a HATS catalog without touching the files readers use: each HEALPix
partition that receives rows gets a new file in its pixel's folder
(``Norder=o/Dir=d/Npix=p/append-<token>.parquet``), and rows outside every partition go to new
partitions at the catalog's deepest order, which overlap no existing one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from archipel.errors import InvalidArgument
from island.storage.hats_write import HEALPIX_COLUMN, parquet_options
from island.storage.pixels import pixel_relpath
from metacatalog.model import Dataset
from metacatalog.sky import healpix29

__all__ = ["conform", "write_sky_append", "write_table_append"]


def conform(table: pa.Table, ds: Dataset) -> pa.Table:
    """The rows cast to the dataset's schema (its HEALPix column computed, not taken)."""
    target = pa.ipc.read_schema(pa.py_buffer(ds.arrow_schema))
    wanted = [f for f in target if f.name != HEALPIX_COLUMN]
    missing = [f.name for f in wanted if f.name not in table.column_names]
    extra = [c for c in table.column_names if c not in target.names]
    if missing or extra:
        raise InvalidArgument(f"append to {ds.name}: the rows must have exactly its columns; missing "
                              f"{missing or 'none'}, unknown {extra or 'none'}")
    try:
        cols = [table[f.name].cast(f.type) for f in wanted]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidArgument(f"append to {ds.name}: a column does not fit its type: {exc}") from None
    return pa.Table.from_arrays(cols, schema=pa.schema(wanted))


def write_sky_append(table: pa.Table, ds: Dataset, out: Path, token: str) -> list[tuple[str, int, int]]:
    """Writes the rows under ``out`` (mirroring the dataset's layout); returns the new files as
    (path relative to ``out``, order, pixel)."""
    ra = table[ds.ra_column].to_numpy(zero_copy_only=False)
    dec = table[ds.dec_column].to_numpy(zero_copy_only=False)
    h = healpix29(ra, dec)  # refuses NaN or out-of-range positions
    cells = sorted((p.pixel << 2 * (29 - p.order), (p.pixel + 1) << 2 * (29 - p.order), p.order, p.pixel)
                   for p in ds.partitions if p.has_pixel)
    if not cells:
        raise InvalidArgument(f"{ds.name} has no HEALPix partitions to append to")
    starts = np.array([c[0] for c in cells], dtype=np.uint64)
    ends = np.array([c[1] for c in cells], dtype=np.uint64)
    hu = h.astype(np.uint64)
    idx = np.searchsorted(starts, hu, side="right") - 1
    inside = (idx >= 0) & (hu < ends[np.clip(idx, 0, None)])
    deepest = max(c[2] for c in cells)
    target_order = np.where(inside, np.array([c[2] for c in cells])[np.clip(idx, 0, None)], deepest)
    target_pixel = np.where(inside, np.array([c[3] for c in cells], dtype=np.int64)[np.clip(idx, 0, None)],
                            (h >> (2 * (29 - deepest))).astype(np.int64))
    table = table.add_column(0, HEALPIX_COLUMN, pa.array(h, pa.int64()))
    keys = target_order.astype(np.int64) * (1 << 40) + target_pixel
    out_files = []
    for key in np.unique(keys):
        order, pixel = int(key >> 40), int(key & ((1 << 40) - 1))
        rows = table.filter(pa.array(keys == key))
        rows = rows.take(pc.sort_indices(rows, [(HEALPIX_COLUMN, "ascending")]))
        rel = Path(pixel_relpath(order, pixel, "/")) / f"append-{token}.parquet"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(rows, out / rel, **parquet_options(rows.schema))
        out_files.append((str(rel), order, pixel))
    return out_files


def write_table_append(table: pa.Table, out: Path, token: str) -> list[tuple[str, None, None]]:
    rel = Path("dataset") / f"part-append-{token}.parquet"
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / rel, **parquet_options(table.schema))
    return [(str(rel), None, None)]
