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
    "MessageTooLarge",
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


def slices(batch: pa.RecordBatch, chunk_bytes: int) -> Iterator[pa.RecordBatch]:
    """The batch cut into slices of about ``chunk_bytes`` (whole rows; a row never split)."""
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
        for piece in slices(batch, chunk_bytes):
            buf = memoryview(_serialize(piece, options))
            n = len(buf)
            if n <= chunk_bytes:
                yield buf, False, piece.num_rows
                continue
            for start in range(0, n, chunk_bytes):
                last = start + chunk_bytes >= n
                yield buf[start : start + chunk_bytes], not last, piece.num_rows if last else 0


class MessageTooLarge(ValueError):
    """A fragmented Arrow message grew past the receiver's limit."""


def decode_chunks(chunks: Iterable[tuple[bytes, bool]], schema: pa.Schema,
                  max_message: int = 0) -> Iterator[pa.RecordBatch]:
    """Reassembles fragments and yields record batches (zero-copy for unfragmented ones). A
    message reassembled from more than ``max_message`` bytes of fragments (0: no limit) is
    refused with ValueError before it is held whole."""
    pending: list[bytes] = []
    held = 0
    for body, more in chunks:
        if more:
            pending.append(body)
            held += len(body)
            if max_message and held > max_message:
                raise MessageTooLarge(f"an Arrow message fragmented over more than {max_message} bytes")
            continue
        held = 0
        if pending:
            pending.append(body)
            body = b"".join(pending)
            pending = []
        yield pa.ipc.read_record_batch(pa.py_buffer(body), schema)
    if pending:
        raise ValueError("Arrow stream ended inside a fragmented message")


# -- chunk messages without protobuf copies ------------------------------------------------
# A chunk message is ``{field}: ArrowChunk {body = 1, more = 2}`` inside QueryResponse (field 2)
# or PublishRequest (field 3). Building its wire bytes directly costs one copy of the body
# instead of three (bytes(), the protobuf field, SerializeToString), and reading it back yields
# a view into the received message (no copy at all). The bytes are exactly what protobuf
# itself produces for the same message, so any protobuf reader understands them.

QUERY_CHUNK_FIELD = 2
PUBLISH_CHUNK_FIELD = 3


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            return value, i
        shift += 7


def chunk_message(body: memoryview | bytes, more: bool, field: int = QUERY_CHUNK_FIELD) -> bytes:
    """Wire bytes of a message whose field ``field`` is ArrowChunk(body, more)."""
    head = b"\x0a" + _varint(len(body)) if len(body) else b""
    tail = b"\x10\x01" if more else b""
    return b"".join((bytes([(field << 3) | 2]), _varint(len(head) + len(body) + len(tail)), head, body, tail))


class RawChunk:
    """An ArrowChunk read straight from the wire: ``body`` is a view into the message."""

    __slots__ = ("body", "more")

    def __init__(self, body: memoryview, more: bool) -> None:
        self.body = body
        self.more = more


def parse_chunk_message(data: bytes, field: int = QUERY_CHUNK_FIELD) -> RawChunk | None:
    """The chunk of a message that holds only field ``field`` = ArrowChunk, else None."""
    if not data or data[0] != (field << 3) | 2:
        return None
    try:
        n, i = _read_varint(data, 1)
        if i + n != len(data):
            return None
        if i < len(data) and data[i] == 0x0A:
            blen, j = _read_varint(data, i + 1)
        else:
            blen, j = 0, i
        end = j + blen
        rest = data[end:]
        if rest not in (b"", b"\x10\x01", b"\x10\x00"):
            return None
        return RawChunk(memoryview(data)[j:end], rest == b"\x10\x01")
    except (ValueError, IndexError):
        return None


def passthrough(serialize):
    """A serializer that sends pre-encoded ``bytes`` as they are and messages via ``serialize``."""

    def _serialize(message) -> bytes:
        return message if isinstance(message, bytes) else serialize(message)

    return _serialize


def chunk_or(parse, field: int = QUERY_CHUNK_FIELD):
    """A deserializer that reads chunk messages without copies and anything else with ``parse``."""

    def _parse(data: bytes):
        return parse_chunk_message(data, field) or parse(data)

    return _parse
