"""What a dataset's columns may be: rules applied when data comes in (publish, append, ingest),
so that every dataset in the catalog can be listed, synced and queried by both engines."""

from __future__ import annotations

import pyarrow as pa

from archipel.errors import InvalidArgument, ResourceExhausted

__all__ = ["publishable_schema", "conform_batch", "check_registered_schema"]


def _check_names(schema: pa.Schema, max_columns: int) -> None:
    if max_columns and len(schema) > max_columns:
        raise ResourceExhausted(f"the data has {len(schema)} columns; this island takes at most {max_columns} "
                                f"([limits] max_columns)")
    if len(schema) == 0:
        raise InvalidArgument("the data has no columns")
    seen: dict[str, str] = {}
    for name in schema.names:
        if not name or len(name) > 256 or "\0" in name:
            raise InvalidArgument(f"column name {name[:40]!r} is empty, longer than 256 characters or has a NUL")
        folded = name.lower()  # Spark resolves names case-insensitively: ra and RA collide
        if folded in seen:
            raise InvalidArgument(f"duplicate column name {name!r} (also {seen[folded]!r}): column names must be "
                                  f"unique, ignoring case")
        seen[folded] = name


def _readable_type(t: pa.DataType) -> pa.DataType:
    """Nanosecond timestamps, which Spark cannot read from Parquet, as microseconds."""
    if pa.types.is_timestamp(t) and t.unit == "ns":
        return pa.timestamp("us", tz=t.tz)
    return t


def publishable_schema(schema: pa.Schema, max_columns: int) -> pa.Schema:
    """The schema data of ``schema`` is stored with; refuses too many or duplicate columns
    (InvalidArgument, ResourceExhausted) and converts ``timestamp[ns]`` to ``timestamp[us]``."""
    _check_names(schema, max_columns)
    return pa.schema([f.with_type(_readable_type(f.type)) for f in schema], metadata=schema.metadata)


def conform_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` in the stored schema (timestamps truncated to microseconds)."""
    if batch.schema.equals(schema, check_metadata=False):
        return batch
    return pa.RecordBatch.from_arrays(
        [c if c.type.equals(f.type) else c.cast(f.type, safe=False) for c, f in zip(batch.columns, schema)],
        schema=schema)


def check_registered_schema(schema: pa.Schema, max_columns: int, where: str) -> None:
    """Files registered in place are not rewritten: their schema must be publishable as is."""
    _check_names(schema, max_columns)
    bad = [f.name for f in schema if not _readable_type(f.type).equals(f.type)]
    if bad:
        raise InvalidArgument(f"{where}: columns {bad[:5]} are timestamp[ns], which Spark cannot read; "
                              f"publish the data (it is converted) or rewrite it as timestamp[us]")
