"""The answer of a query, as the synchronous client reads it: a stream of Arrow record batches
from the island, or the partition files a direct read fetches (``archipel.direct``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from archipel._rpc import QueryHeader, query_part, stats_of, translated
from archipel.arrowwire import decode_chunks
from archipel.direct import DirectReader, FileUnreachable
from archipel.errors import Internal, InvalidArgument
from archipel.types import QueryStats

__all__ = ["QueryResult"]


class QueryResult:
    """The answer of ``Client.sql``: iterate it for RecordBatches as they arrive, or read it whole.

    The stream starts at the call; ``schema``, ``plan`` and ``query_id`` are known once the
    header has arrived, ``stats`` once the last batch has. ``path`` says how the rows come:
    ``"stream"`` (through the island's query stream) or ``"direct"`` (the island named the
    partition files and this client fetches and decodes them, ``archipel.direct``).
    """

    def __init__(self, call: Any, address: str, *, token: str = "", ca_pem: bytes | None = None,
                 timeout: float | None = None, restream: Any = None, local_reads: bool = True) -> None:
        self._call = call
        self._address = address
        self._responses = iter(call)
        self.stats: QueryStats | None = None
        self._consumed = False
        self._direct: DirectReader | None = None
        self._restream = restream  # () -> QueryResult streamed, when a direct read cannot be fetched
        self._fallback: QueryResult | None = None
        with translated(address):
            header = QueryHeader(next(self._responses, None))
        self.query_id: str = header.query_id
        self.schema: pa.Schema = header.schema
        self.plan = header.plan
        self.path = "stream"
        if header.direct is not None:
            self.path = "direct"
            for _ in self._chunks():  # the trailer: the island's part is done
                pass
            self.stats = None
            self._direct = DirectReader(header.direct, self.schema, token, ca_pem, timeout, local_reads=local_reads)

    @property
    def files(self) -> list[tuple[str, str]]:
        """(island, URL) of each partition file a direct read fetches; [] for a stream."""
        if self._direct is None:
            return []
        return [(f.island, f.url) for f in self._direct.spec.files]

    @property
    def local_files(self) -> int:
        """How many files of a direct read were read on this host through the descriptors the
        island handed over (short-circuit reads), not over the network; 0 for a stream."""
        return self._direct.files_local if self._direct is not None and self.path == "direct" else 0

    @property
    def mapped_files(self) -> int:
        """How many of the ``local_files`` were mapped into memory rather than copied (the
        island's own copies of its files; files registered where their owner keeps them are
        copied)."""
        return self._direct.files_mapped if self._direct is not None and self.path == "direct" else 0

    def _chunks(self) -> Iterator[tuple[bytes, bool]]:
        with translated(self._address):
            for msg in self._responses:
                kind, payload, more = query_part(msg)
                if kind == "chunk":
                    yield payload, more
                elif kind == "trailer":
                    self.stats = stats_of(payload)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        if self._consumed:
            raise InvalidArgument("this query result was already read")
        self._consumed = True
        if self._direct is not None:
            yield from self._direct_batches(self._direct)
            return
        yield from decode_chunks(self._chunks(), self.schema)
        if self.stats is None:
            raise Internal("the query stream ended without its trailer")

    def _direct_batches(self, reader: DirectReader) -> Iterator[pa.RecordBatch]:
        started = False
        try:
            for batch in reader:
                started = True
                yield batch
        except FileUnreachable:
            if started or self._restream is None:
                raise
            # A file's island cannot be reached from here (or the file went): the island streams it.
            self.path = "stream"
            self._fallback = self._restream()
            yield from self._fallback
            self.stats = self._fallback.stats
            return
        self.stats = QueryStats(reader.num_rows, reader.num_bytes, reader.num_batches,
                                time.monotonic() - reader.started, self.plan.engine)

    def read_all(self) -> pa.Table:
        return pa.Table.from_batches(list(self), schema=self.schema)

    def to_pandas(self, **kwargs: Any):
        return self.read_all().to_pandas(**kwargs)

    def cancel(self) -> None:
        """Stops the query at the island (and its Spark jobs), or the files' fetching."""
        if self._direct is not None:
            self._direct.cancel()
        if self._fallback is not None:
            self._fallback.cancel()
        self._call.cancel()

    close = cancel

    def __enter__(self) -> QueryResult:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.stats is None:
            self.cancel()
