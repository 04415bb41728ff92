"""Direct reads: a plain read (columns, cones and a limit over one dataset) answered with the
partition files the client fetches itself from an island's data port, instead of rows pushed
through this island's Python.

For each file the island picks the row groups that can hold rows of the cones (their
``_healpix_29`` statistics against the cones' pixel ranges, the same conservative test the
stream path's readers apply) and the byte spans of the chosen columns in them, so the client
fetches no more than the island's own readers would read. The exact cone test, the limit and
the result limits are applied by the client (``archipel.direct``); the rows are the stream's.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq

from archipel.arrowwire import read_schema
from archipel.direct import chunk_span

from archipel.v1 import island_pb2 as pb
from federation.planner import DirectScan, TableScan
from island.engines.base import normalize_schema
from metacatalog.sky import healpix29_inner_ranges, healpix29_ranges

__all__ = ["FooterCache", "DirectFileSpec", "row_groups_for", "byte_spans", "direct_read", "direct_schema",
           "file_url"]

# A file whose chosen bytes are most of it is fetched whole, in one request.
WHOLE_FRACTION = 0.7
# Spans closer than this are fetched as one (a request costs more than the bytes between).
MERGE_GAP = 256 * 1024


class FooterCache:
    """Parquet footers of the files read, by (path, size, mtime): a file rewritten in place
    (never done by the island, but cheap to allow) is read again."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, int, int], pq.FileMetaData] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str) -> tuple[pq.FileMetaData, int]:
        st = os.stat(path)
        key = (path, st.st_size, st.st_mtime_ns)
        with self._lock:
            meta = self._items.get(key)
            if meta is not None:
                self._items.move_to_end(key)
                return meta, st.st_size
        meta = pq.read_metadata(path)
        with self._lock:
            self._items[key] = meta
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return meta, st.st_size


def _leaf_indices(meta: pq.FileMetaData, columns: list[str]) -> list[int]:
    """The leaf column chunks of top-level ``columns`` (all columns when empty)."""
    if not columns:
        return list(range(meta.num_columns))
    wanted = set(columns)
    rg = meta.row_group(0) if meta.num_row_groups else None
    if rg is None:
        return []
    return [j for j in range(rg.num_columns) if rg.column(j).path_in_schema.split(".")[0] in wanted]


def row_groups_for(meta: pq.FileMetaData, healpix_column: str, ranges: list[tuple[int, int]] | None) -> list[int]:
    """The row groups whose ``healpix_column`` statistics overlap one of ``ranges`` (all of
    them when ``ranges`` is None, or when a row group has no statistics to judge by)."""
    out = []
    index = None
    if ranges is not None and meta.num_row_groups:
        first = meta.row_group(0)
        index = next((j for j in range(first.num_columns) if first.column(j).path_in_schema == healpix_column), None)
    for i in range(meta.num_row_groups):
        if ranges is None or index is None:
            out.append(i)
            continue
        stats = meta.row_group(i).column(index).statistics
        if stats is None or not stats.has_min_max:
            out.append(i)
            continue
        lo, hi = stats.min, stats.max
        if any(a <= hi and lo <= b for a, b in ranges):
            out.append(i)
    return out


def byte_spans(meta: pq.FileMetaData, size: int, row_groups: list[int], leaves: list[int]) -> list[tuple[int, int]]:
    """[start, end) spans holding the chosen column chunks and the footer, merged; [] when the
    file is best fetched whole."""
    spans = []
    for i in row_groups:
        rg = meta.row_group(i)
        for j in leaves:
            spans.append(chunk_span(rg.column(j)))
    footer = size - 8 - meta.serialized_size
    spans.append((max(0, footer), size))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1] + MERGE_GAP:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    if sum(b - a for a, b in merged) >= WHOLE_FRACTION * size:
        return []
    return merged


@dataclass
class DirectFileSpec:
    url: str
    island: str
    path: str  # where the island reads its footer


def direct_read(scan: TableScan, direct: DirectScan, files: list[DirectFileSpec], footers: FooterCache,
                max_rows: int, max_bytes: int) -> pb.DirectRead | None:
    """The files, row groups and spans of a direct read; None when the stream must answer
    (the result could pass a row or byte limit, which the stream enforces exactly)."""
    ds = scan.dataset
    columns = [c for c, _ in direct.columns]
    names = [n for _, n in direct.columns]
    healpix = ds.hats_properties.get("hats_col_healpix", "_healpix_29")
    ranges = None
    if direct.cones and ds.hats_properties.get("hats_col_healpix_order", "29") == "29":
        for cone in direct.cones:
            r = healpix29_ranges(cone)
            if not r:  # a cone too large to be worth ranges (half the sky or more): no pruning by it
                continue
            ranges = r if ranges is None else [(max(a, c), min(b, d)) for a, b in ranges for c, d in r
                                               if max(a, c) <= min(b, d)]
    # The columns whose bytes the client fetches: the chosen ones, and with cones what their
    # tests read (ra, dec, and the HEALPix index the ranges apply to; the client decodes these).
    tested = [ds.ra_column, ds.dec_column] + ([healpix] if ranges is not None else [])
    needed = list(dict.fromkeys(columns + (tested if direct.cones and columns else [])))
    out = pb.DirectRead(columns=columns, names=names, ra_column=ds.ra_column, dec_column=ds.dec_column,
                        cones=[pb.DirectCone(ra=c.ra, dec=c.dec, radius=c.radius) for c in direct.cones],
                        has_limit=direct.limit is not None, limit=direct.limit or 0,
                        max_rows=max_rows, max_bytes=max_bytes)
    if ranges is not None:
        out.healpix_column = healpix
        out.healpix_ranges.extend(x for span in ranges for x in span)
        if len(direct.cones) == 1:  # rows well inside the one cone skip its distance test
            out.healpix_inner_ranges.extend(x for span in healpix29_inner_ranges(direct.cones[0]) for x in span)
    rows_left = direct.limit if direct.limit is not None and not direct.cones else None
    upper_rows = upper_bytes = 0
    for spec in files:
        if rows_left == 0:
            break
        meta, size = footers.get(spec.path)
        groups = row_groups_for(meta, healpix, ranges)
        if rows_left is not None:  # a limit without a filter: the first row groups suffice
            kept, n = [], 0
            for i in groups:
                if n >= rows_left:
                    break
                kept.append(i)
                n += meta.row_group(i).num_rows
            groups = kept
        if not groups:
            continue
        leaves = _leaf_indices(meta, needed)
        rows = sum(meta.row_group(i).num_rows for i in groups)
        upper_rows += rows
        upper_bytes += sum(meta.row_group(i).column(j).total_uncompressed_size for i in groups for j in leaves)
        if rows_left is not None:
            rows_left = max(0, rows_left - rows)
        spans = byte_spans(meta, size, groups, leaves)
        out.files.append(pb.DirectFile(url=spec.url, size=size, row_groups=groups, num_rows=rows, island=spec.island,
                                       spans=[x for span in spans for x in span]))
    if direct.limit is not None:
        upper_rows = min(upper_rows, direct.limit)
    if (max_rows and upper_rows > max_rows) or (max_bytes and upper_bytes > max_bytes):
        return None
    return out


def direct_schema(scan: TableScan, direct: DirectScan) -> pa.Schema:
    """The result's schema: the chosen columns of the dataset, renamed, in the types both
    engines give."""
    schema = read_schema(scan.dataset.arrow_schema)
    if not direct.columns:
        return normalize_schema(schema)
    return normalize_schema(pa.schema([schema.field(c).with_name(n) for c, n in direct.columns]))


def file_url(base: str, dataset: str, pid: str) -> str:
    return f"{base}/{quote(dataset, safe='')}/{quote(pid, safe='/=')}"
