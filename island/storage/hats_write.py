"""Partitioning plain Parquet with sky columns into a HATS catalog.

Three streaming passes, memory bounded by one partition: (1) count rows per HEALPix pixel at
``max_order`` from the ra/dec columns only; (2) split pixels top-down until each partition
holds at most ``partition_rows`` rows and spill each batch's rows to its partition's spill
file; (3) sort each partition by ``_healpix_29`` into ``dataset/Norder=/Dir=/Npix=.parquet``.
The metadata files (``partition_info.csv``, ``hats.properties``, ``_metadata``) are written by
the ``hats`` package itself, and the result is checked with its ``is_valid_catalog``.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pyarrow.parquet as pq

from archipel.errors import InvalidArgument
from island.storage.pixels import pixel_file
from metacatalog.sky import healpix29

__all__ = ["write_hats_catalog", "plan_partitions", "HEALPIX_COLUMN"]

logger = logging.getLogger(__name__)

HEALPIX_COLUMN = "_healpix_29"
_BATCH_ROWS = 262_144
# Row groups of a partition file: files are sorted by _healpix_29, so a cone's range filter
# skips most of them (a 0.5 deg cone read 9 ms instead of 34 ms of a 200 k-row pixel here).
ROW_GROUP_ROWS = 32_768


def parquet_options(schema: pa.Schema) -> dict:
    """Per-column encodings of the partition files. Measured noisy doubles compress by nothing
    and dictionary-encode badly: on a 10 M-row catalog here, plain uncompressed floats made
    files smaller than dictionary + snappy (99-105 vs 121 MB) and decoded twice as fast
    (3.7 vs 1.8 GB/s a thread). Other columns keep dictionary pages and snappy."""
    floats = [f.name for f in schema if pa.types.is_floating(f.type)]
    others = [f.name for f in schema if f.name not in floats]
    return {
        "use_dictionary": others,
        "compression": {**{n: "none" for n in floats}, **{n: "snappy" for n in others}},
        "row_group_size": ROW_GROUP_ROWS,
    }


def plan_partitions(counts: np.ndarray, max_order: int, threshold: int) -> list[tuple[int, int]]:
    """(order, pixel) partitions from row counts per pixel at ``max_order``: a pixel is split
    into its four children while it holds more than ``threshold`` rows."""
    by_order = [counts.reshape(-1, 4 ** (max_order - k)).sum(axis=1) for k in range(max_order + 1)]
    out: list[tuple[int, int]] = []
    stack = [(0, p) for p in range(11, -1, -1)]
    while stack:
        order, pixel = stack.pop()
        n = by_order[order][pixel]
        if n == 0:
            continue
        if n <= threshold or order == max_order:
            out.append((order, pixel))
        else:
            stack.extend((order + 1, 4 * pixel + c) for c in range(3, -1, -1))
    return sorted(out)


def _open_input(files: list[Path], schema: pa.Schema) -> pds.Dataset:
    try:
        return pds.dataset([str(f) for f in files], format="parquet", schema=schema)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidArgument(f"cannot read the input as Parquet: {exc}") from None


def _batches(data: pds.Dataset, columns: list[str]):
    try:
        yield from data.to_batches(columns=columns, batch_size=_BATCH_ROWS)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidArgument(f"cannot read the input as Parquet: {exc}") from None


def _radec(batch: pa.RecordBatch, ra: str, dec: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        r = batch.column(ra).cast(pa.float64()).to_numpy(zero_copy_only=False)
        d = batch.column(dec).cast(pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid as exc:
        raise InvalidArgument(f"sky columns {ra!r}/{dec!r}: {exc}") from None
    return r, d


def write_hats_catalog(
    files: list[Path],
    schema: pa.Schema,
    out: Path,
    name: str,
    ra: str,
    dec: str,
    *,
    partition_rows: int,
    max_order: int,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Writes a HATS catalog of the input files into the empty folder ``out``."""
    from hats.catalog import PartitionInfo, TableProperties
    from hats.io import write_parquet_metadata
    from hats.io.validation import is_valid_catalog
    from hats.pixel_math import HealpixPixel

    say = progress or (lambda _msg: None)
    data = _open_input(files, schema)
    shift = 2 * (29 - max_order)

    # Pass 1: counts per pixel at max_order.
    counts = np.zeros(12 * 4**max_order, dtype=np.int64)
    total = 0
    for batch in _batches(data, [ra, dec]):
        h = healpix29(*_radec(batch, ra, dec))
        counts += np.bincount(h >> shift, minlength=counts.size)
        total += batch.num_rows
    if total == 0:
        raise InvalidArgument("the input has no rows; a sky catalog needs at least one")
    pixels = plan_partitions(counts, max_order, partition_rows)
    say(f"{total} rows into {len(pixels)} HEALPix partitions")
    owner = np.full(counts.size, -1, dtype=np.int32)
    for i, (order, pixel) in enumerate(pixels):
        span = 4 ** (max_order - order)
        owner[pixel * span : (pixel + 1) * span] = i

    # Pass 2: spill rows to one file per partition.
    columns = [c for c in schema.names if c != HEALPIX_COLUMN]
    out_schema = pa.schema([pa.field(HEALPIX_COLUMN, pa.int64())] + [schema.field(c) for c in columns],
                           metadata=schema.metadata)
    spill = out / "_spill"
    spill.mkdir(parents=True)
    writers: dict[int, pq.ParquetWriter] = {}
    try:
        for batch in _batches(data, columns):
            h = healpix29(*_radec(batch, ra, dec))
            part = owner[h >> shift]
            table = pa.Table.from_batches([batch]).add_column(0, HEALPIX_COLUMN, pa.array(h, pa.int64()))
            order_idx = np.argsort(part, kind="stable")
            table = table.take(order_idx)
            sorted_part = part[order_idx]
            bounds = np.flatnonzero(np.diff(sorted_part)) + 1
            starts = np.concatenate([[0], bounds])
            ends = np.concatenate([bounds, [len(sorted_part)]])
            for s, e in zip(starts, ends):
                i = int(sorted_part[s])
                if i not in writers:
                    writers[i] = pq.ParquetWriter(spill / f"{i}.parquet", out_schema)
                writers[i].write_table(table.slice(s, e - s).cast(out_schema))
    finally:
        for w in writers.values():
            w.close()

    # Pass 3: one sorted file per pixel.
    for i, (order, pixel) in enumerate(pixels):
        table = pq.read_table(spill / f"{i}.parquet")
        table = table.take(pc.sort_indices(table, [(HEALPIX_COLUMN, "ascending")]))
        path = pixel_file(out, order, pixel)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, **parquet_options(table.schema))
        say(f"partition {i + 1}/{len(pixels)}: order {order} pixel {pixel}, {table.num_rows} rows")
    shutil.rmtree(spill)

    healpix = [HealpixPixel(o, p) for o, p in pixels]
    PartitionInfo.from_healpix(healpix).write_to_file(out / "partition_info.csv")
    write_parquet_metadata(out)
    props = TableProperties(
        catalog_name=name,
        catalog_type="object",
        total_rows=total,
        ra_column=ra,
        dec_column=dec,
        healpix_column=HEALPIX_COLUMN,
        healpix_order=29,
        hats_max_rows=partition_rows,
        npix_suffix=".parquet",
    )
    props = props.copy_and_update(
        hats_builder="archipel", hats_creation_date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M%Z")
    )
    props.to_properties_file(out)
    if not is_valid_catalog(out, strict=True, verbose=False):
        raise InvalidArgument(f"the HATS catalog written at {out} is not valid for hats.is_valid_catalog")
