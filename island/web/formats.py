"""Query results as bytes, batch by batch: Arrow IPC stream, Parquet, CSV, JSON lines and
VOTable. Each writer turns RecordBatches into chunks to send as they come (VOTable, a
document with its size in it, is written once at the end)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import pyarrow as pa

from archipel.errors import InvalidArgument
from island.web.votable import ColumnMeta, table_to_votable

__all__ = ["FORMATS", "ResultWriter", "writer_for", "check_format"]

FORMATS = {
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
    "csv": "text/csv; charset=utf-8",
    "json": "application/x-ndjson",
    "votable": "application/x-votable+xml",
}
EXTENSIONS = {"arrow": "arrows", "parquet": "parquet", "csv": "csv", "json": "jsonl", "votable": "vot"}


def check_format(name: str | None) -> str:
    fmt = (name or "arrow").strip().lower()
    if fmt not in FORMATS:
        raise InvalidArgument(f"unknown format {name!r}: one of {', '.join(FORMATS)}")
    return fmt


class _Sink:
    """A file object collecting what a pyarrow writer writes, handed out by ``take``."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False
        self.pos = 0

    def write(self, data) -> int:
        b = bytes(data)
        self.parts.append(b)
        self.pos += len(b)
        return len(b)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def _json_value(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, bytes):
        return v.hex()
    return v


class ResultWriter:
    """``begin(schema)``, ``write(batch)`` for each batch and ``end()`` give the bytes of the
    result in one format, in order."""

    def __init__(self, fmt: str, meta: dict[str, ColumnMeta] | None = None,
                 votable_serialization: str = "binary2", overflow: Callable[[], bool] | None = None) -> None:
        self.fmt = check_format(fmt)
        self.content_type = FORMATS[self.fmt]
        self.meta = meta or {}
        self.serialization = votable_serialization
        self.overflow = overflow or (lambda: False)
        self._sink = _Sink()
        self._writer = None
        self._batches: list[pa.RecordBatch] = []
        self._schema: pa.Schema | None = None

    def begin(self, schema: pa.Schema) -> bytes:
        self._schema = schema
        if self.fmt == "arrow":
            self._writer = pa.ipc.new_stream(pa.PythonFile(self._sink, mode="w"), schema)
        elif self.fmt == "parquet":
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(pa.PythonFile(self._sink, mode="w"), schema, compression="zstd")
        elif self.fmt == "csv":
            import pyarrow.csv as pcsv

            self._writer = pcsv.CSVWriter(pa.PythonFile(self._sink, mode="w"), schema)
        return self._sink.take()

    def write(self, batch: pa.RecordBatch) -> bytes:
        if batch.num_rows == 0 and self.fmt != "arrow":
            return b""
        if self.fmt == "json":
            names = batch.schema.names
            cols = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
            lines = (json.dumps({n: _json_value(v) for n, v in zip(names, row)}, default=str, allow_nan=False)
                     for row in zip(*cols))
            return ("\n".join(lines) + "\n").encode()
        if self.fmt == "votable":
            self._batches.append(batch)
            return b""
        if self.fmt == "parquet":
            self._writer.write_batch(batch, row_group_size=max(1, batch.num_rows))
        else:
            self._writer.write_batch(batch)
        return self._sink.take()

    def end(self) -> bytes:
        if self.fmt == "votable":
            table = pa.Table.from_batches(self._batches, schema=self._schema)
            self._batches = []
            return table_to_votable(table, self.meta, overflow=self.overflow(), serialization=self.serialization)
        if self._writer is not None:
            self._writer.close()
        return self._sink.take()


def writer_for(fmt: str, **kw) -> ResultWriter:
    return ResultWriter(fmt, **kw)
