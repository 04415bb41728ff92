"""Arrow IPC over gRPC messages: encapsulated record batches cut into bounded chunks.

The header of a stream carries the IPC-serialized schema; each record batch is serialized as
one encapsulated IPC message and sent in fragments of at most ``chunk_bytes``, so no gRPC
message exceeds the limit however wide a row is. Batches are first sliced so that most fit
in one fragment (about 64 k rows a message streamed fastest here).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "serialize_schema",
    "read_schema",
    "encode_batches",
    "decode_chunks",
    "dense_schema",
    "to_dense",
]

DEFAULT_CHUNK_BYTES = 3 * 1024 * 1024
# gRPC message limit used on both sides: the chunk size plus room for framing.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def serialize_schema(schema: pa.Schema) -> bytes:
    return schema.serialize().to_pybytes()


def read_schema(data: bytes) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(data))


def dense_schema(schema: pa.Schema) -> pa.Schema:
    """The schema with dictionary columns replaced by their value type (batches travel alone,
    without dictionary messages)."""
    fields = [
        f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema
    ]
    return pa.schema(fields, metadata=schema.metadata)


def to_dense(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    if batch.schema.equals(schema):
        return batch
    return pa.RecordBatch.from_arrays(
        [col.cast(f.type) if not col.type.equals(f.type) else col for col, f in zip(batch.columns, schema)],
        schema=schema,
    )


def _slices(batch: pa.RecordBatch, chunk_bytes: int) -> Iterator[pa.RecordBatch]:
    size = batch.nbytes
    if size <= chunk_bytes or batch.num_rows <= 1:
        yield batch
        return
    per_row = max(1, size // max(1, batch.num_rows))
    rows = max(1, chunk_bytes // per_row)
    for start in range(0, batch.num_rows, rows):
        yield batch.slice(start, rows)


def _serialize(batch: pa.RecordBatch, options: pa.ipc.IpcWriteOptions | None) -> pa.Buffer:
    """One encapsulated IPC record-batch message, with body compression when asked."""
    if options is None:
        return batch.serialize()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema, options=options) as writer:
        writer.write_batch(batch)
    messages = pa.ipc.MessageReader.open_stream(sink.getvalue())
    messages.read_next_message()  # the schema
    return messages.read_next_message().serialize()


def encode_batches(
    batches: Iterable[pa.RecordBatch],
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    compression: str | None = None,
) -> Iterator[tuple[memoryview, bool, int]]:
    """Yields (fragment, more, rows) for each fragment of each batch; rows is the row count of
    the batch the fragment ends (0 on a fragment with more=True)."""
    options = pa.ipc.IpcWriteOptions(compression=compression) if compression else None
    for batch in batches:
        for piece in _slices(batch, chunk_bytes):
            buf = memoryview(_serialize(piece, options))
            n = len(buf)
            if n <= chunk_bytes:
                yield buf, False, piece.num_rows
                continue
            for start in range(0, n, chunk_bytes):
                last = start + chunk_bytes >= n
                yield buf[start : start + chunk_bytes], not last, piece.num_rows if last else 0


def decode_chunks(chunks: Iterable[tuple[bytes, bool]], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Reassembles fragments and yields record batches (zero-copy for unfragmented ones)."""
    pending: list[bytes] = []
    for body, more in chunks:
        if more:
            pending.append(body)
            continue
        if pending:
            pending.append(body)
            body = b"".join(pending)
            pending = []
        yield pa.ipc.read_record_batch(pa.py_buffer(body), schema)
    if pending:
        raise ValueError("Arrow stream ended inside a fragmented message")
