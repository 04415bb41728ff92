"""What an engine returns for one query."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from federation.planner import TableScan

__all__ = ["Execution", "scan_paths", "normalize_batch", "normalize_schema"]


@dataclass
class Execution:
    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    close: Callable[[], None] = field(default=lambda: None)


def scan_paths(scan: TableScan) -> list[str]:
    root = Path(scan.dataset.root)
    return [str(root / p.path) for p in scan.partitions]


def normalize_schema(schema: pa.Schema) -> pa.Schema:
    """Types both engines agree on: DuckDB's 128-bit integer sums become int64 like Spark's."""
    fields = []
    for f in schema:
        t = f.type
        if pa.types.is_decimal(t) and t.scale == 0 and t.precision == 38:
            t = pa.int64()
        elif pa.types.is_large_string(t):
            t = pa.string()
        elif pa.types.is_dictionary(t):
            t = t.value_type
        fields.append(f.with_type(t))
    return pa.schema(fields)


def normalize_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    if batch.schema.equals(schema, check_metadata=False):
        return batch
    return pa.RecordBatch.from_arrays(
        [c if c.type.equals(f.type) else c.cast(f.type) for c, f in zip(batch.columns, schema)], schema=schema
    )
