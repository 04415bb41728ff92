"""Direct reads on the client: the partition files an island named (``QueryHeader.direct``)
fetched from the islands' data ports over HTTPS and decoded here, several at once. On the
island's own host the files' descriptors come from the island's short-circuit socket instead
(``island.shortcircuit``), and the bytes are read from the page cache without the network.

Each file's bytes (whole, or the spans of the row groups and columns chosen, footer included)
land in a reused buffer at their offsets, and pyarrow's C++ Parquet reader decodes the
chosen row groups from it; the exact cone test, the limit and the result limits are applied
here, so the rows are the ones the island would have streamed. The caller's bearer token goes
with every request: the island serving the file decides again who may read it.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import math
import mmap
import os
import secrets
import socket
import struct
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds

from archipel.errors import Cancelled, Internal, PermissionDenied, ResourceExhausted, Unauthenticated, Unavailable
from archipel.v1 import island_pb2 as pb

__all__ = ["DirectReader", "FileUnreachable", "cone_mask", "local_descriptors"]

logger = logging.getLogger(__name__)

READ_BYTES = 4 << 20
_PARQUET = pds.ParquetFileFormat()


def _range_pairs(flat, what: str) -> tuple:
    """The (lows, highs) NumPy arrays of flattened inclusive ranges the island named; Internal
    when they are not sorted, disjoint (lo, hi) pairs (a binary search needs them so)."""
    import numpy as np

    flat = np.array(flat, dtype=np.uint64)
    if len(flat) % 2 or np.any(flat[0::2] > flat[1::2]) or np.any(flat[2::2] <= flat[1:-1:2]):
        raise Internal(f"the island named HEALPix {what} that are not sorted (lo, hi) pairs")
    return flat[0::2], flat[1::2]


class FileUnreachable(Unavailable):
    """A file of a direct read could not be fetched (its island's data port unreachable, or
    the file gone since the plan): the query can be streamed instead."""


def cone_mask(ra: pa.Array, dec: pa.Array, ra0: float, dec0: float, radius: float) -> pa.Array:
    """Rows within ``radius`` degrees of (ra0, dec0): the haversine test of the SQL engines
    (``federation.planner.cone_predicate_sql``), operation for operation."""
    rad = math.pi / 180.0
    half_dec = pc.sin(pc.multiply(pc.multiply(pc.subtract(dec, dec0), rad), 0.5))
    half_ra = pc.sin(pc.multiply(pc.multiply(pc.subtract(ra, ra0), rad), 0.5))
    cos_both = pc.multiply(pc.cos(pc.multiply(dec, rad)), math.cos(dec0 * rad))
    s = pc.add(pc.power(half_dec, 2.0), pc.multiply(cos_both, pc.power(half_ra, 2.0)))
    s = pc.min_element_wise(s, 1.0)
    return pc.less_equal(pc.multiply(pc.asin(pc.sqrt(s)), 2.0), radius * rad)


def chunk_span(col) -> tuple[int, int]:
    """[start, end) of a Parquet column chunk in its file, its dictionary page included: the one
    rule by which the island names the bytes to fetch (``island.direct.byte_spans``) and the
    client checks it fetched them."""
    start = col.data_page_offset
    if col.has_dictionary_page and col.dictionary_page_offset is not None and 0 < col.dictionary_page_offset < start:
        start = col.dictionary_page_offset
    return start, start + col.total_compressed_size


def _check_fetched(meta, row_groups: list[int], columns: list[str], spans: list[tuple[int, int]], url: str) -> None:
    """Every column chunk the decode reads lies in the byte spans fetched: bytes the island did
    not name are never decoded (they would be zeros, or a reused buffer's leftovers)."""
    wanted = set(columns)
    for i in row_groups:
        rg = meta.row_group(i)
        for j in range(rg.num_columns):
            col = rg.column(j)
            if wanted and col.path_in_schema.split(".")[0] not in wanted:
                continue
            start, end = chunk_span(col)
            if not any(a <= start and end <= b for a, b in spans):
                raise Internal(f"{url}: column {col.path_in_schema} of row group {i} lies outside the byte spans "
                               "the island named")


def _conform(table: pa.Table, columns: list[str], schema: pa.Schema) -> pa.Table:
    """``columns`` of ``table`` (nulls for one a file lacks) as ``schema``'s fields."""
    arrays = []
    for name, field in zip(columns, schema):
        if name in table.column_names:
            col = table.column(name)
            arrays.append(col if col.type.equals(field.type) else col.cast(field.type))
        else:
            arrays.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


# Kept-alive connections, by island and CA, with the time each was given back. Islands close a
# connection idle for 60 s (island/dataplane.py); one kept longer than _IDLE_SECONDS is
# not reused, so a notebook that waited a while does not meet closed connections.
_IDLE: dict[tuple, list[tuple[http.client.HTTPConnection, float]]] = {}
_IDLE_PER_ISLAND = 8
_IDLE_SECONDS = 30.0
_IDLE_LOCK = threading.Lock()
_CONTEXTS: dict[bytes | None, ssl.SSLContext] = {}


def _context(ca_pem: bytes | None) -> ssl.SSLContext:
    with _IDLE_LOCK:
        ctx = _CONTEXTS.get(ca_pem)
        if ctx is None:
            ctx = _CONTEXTS[ca_pem] = ssl.create_default_context(cadata=ca_pem.decode() if ca_pem else None)
        return ctx


class _Connections:
    """The HTTPS connections a reader uses: taken from the process's kept-alive ones (no TLS
    handshake per query) and given back after a whole answer; ``close_all`` closes those in
    use, waking the threads blocked on them."""

    def __init__(self, ca_pem: bytes | None, timeout: float) -> None:
        self.ca_pem = ca_pem
        self.timeout = timeout
        self._active: set[http.client.HTTPConnection] = set()
        self._lock = threading.Lock()
        self.closed = False

    def checkout(self, scheme: str, netloc: str, fresh: bool = False) -> http.client.HTTPConnection:
        """A kept-alive connection to ``netloc`` not idle too long, or a new one (always new with
        ``fresh``)."""
        key = (scheme, netloc, self.ca_pem)
        conn = None
        stale: list[http.client.HTTPConnection] = []
        with _IDLE_LOCK:
            idle = _IDLE.get(key, [])
            now = time.monotonic()
            while idle and conn is None:
                kept, since = idle.pop()
                if fresh or now - since > _IDLE_SECONDS:
                    stale.append(kept)
                else:
                    conn = kept
            if fresh:
                stale.extend(c for c, _ in idle)
                idle.clear()
        for kept in stale:
            kept.close()
        if conn is None:
            host, _, port = netloc.rpartition(":")
            if scheme == "https":
                conn = http.client.HTTPSConnection(host, int(port), timeout=self.timeout,
                                                   context=_context(self.ca_pem), blocksize=1 << 20)
            else:
                conn = http.client.HTTPConnection(host, int(port), timeout=self.timeout, blocksize=1 << 20)
            conn.connect()
            # No Nagle: a request's last segment would wait for the server's delayed ACK.
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            conn.sock.settimeout(self.timeout)
        conn._archipel_key = key  # type: ignore[attr-defined]
        with self._lock:
            if self.closed:
                conn.close()
                raise Cancelled("the query was cancelled")
            self._active.add(conn)
        return conn

    def checkin(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._active.discard(conn)
        if conn.sock is None or self.closed:
            conn.close()
            return
        with _IDLE_LOCK:
            idle = _IDLE.setdefault(conn._archipel_key, [])  # type: ignore[attr-defined]
            if len(idle) < _IDLE_PER_ISLAND:
                idle.append((conn, time.monotonic()))
                return
        conn.close()

    def discard(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._active.discard(conn)
        conn.close()

    def close_all(self) -> None:
        with self._lock:
            self.closed = True
            conns, self._active = list(self._active), set()
        for conn in conns:
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            conn.close()


_LOCAL_BATCH = 200  # descriptors asked for at once (the island's MAX_FILES)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        data = sock.recv(n - len(out))
        if not data:
            raise ConnectionError("the island closed its short-circuit socket")
        out += data
    return out


def local_descriptors(local: pb.LocalRead, sizes: list[int], timeout: float = 10.0) -> dict[int, int]:
    """The open descriptors of a direct read's files (by index) from the island's short-circuit
    socket, when the island runs on this host (in this network namespace); {} when it does not,
    when it refuses, or when what answers cannot prove the read's key."""
    fds: dict[int, int] = {}
    if not local.socket or not hasattr(socket, "AF_UNIX") or not sizes:
        return fds
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError:
        return fds
    try:
        sock.settimeout(timeout)
        sock.connect("\0" + local.socket)
        for first in range(0, len(sizes), _LOCAL_BATCH):
            wanted = list(range(first, min(len(sizes), first + _LOCAL_BATCH)))
            nonce = secrets.token_bytes(32)
            sock.sendall(json.dumps({"grant": local.grant.hex(), "nonce": nonce.hex(), "files": wanted}).encode()
                         + b"\n")
            head, got, _flags, _addr = socket.recv_fds(sock, 4, len(wanted))
            try:
                if len(head) < 4:
                    head += _recv_exact(sock, 4 - len(head))
                (length,) = struct.unpack(">I", head)
                if length > 1 << 20:
                    raise ValueError(f"an answer of {length} bytes")
                answer = json.loads(_recv_exact(sock, length))
                if "error" in answer:
                    raise ValueError(answer["error"])
                expected = hmac.new(local.key, nonce, hashlib.sha256).hexdigest()
                if not hmac.compare_digest(str(answer.get("proof", "")), expected):
                    raise ValueError("the socket's answer does not prove the read's key: not the island")
                if len(got) != len(wanted):
                    raise ValueError(f"{len(got)} descriptors for {len(wanted)} files")
                for i, fd in zip(wanted, got):
                    if os.fstat(fd).st_size != sizes[i]:
                        raise ValueError(f"file {i} is not of the size the island described")
            except BaseException:
                for fd in got:
                    os.close(fd)
                raise
            fds.update(zip(wanted, got))
        return fds
    except (OSError, ValueError, TypeError) as exc:  # not on the island's host, or refused: the network
        if not isinstance(exc, (FileNotFoundError, ConnectionRefusedError)):
            logger.info("short-circuit read refused, reading over the network instead: %s", exc)
        for fd in fds.values():
            os.close(fd)
        return {}
    finally:
        sock.close()


_BUFFERS: list[bytearray] = []  # reused file buffers: fresh memory faults in at about 1 GB/s here
_BUFFER_BYTES = 512 << 20
_BUFFERS_LOCK = threading.Lock()


class DirectReader:
    """Iterates the record batches of a direct read, fetching ``workers`` files at once."""

    def __init__(self, spec: pb.DirectRead, schema: pa.Schema, token: str, ca_pem: bytes | None,
                 timeout: float | None = None, workers: int = 4, local_reads: bool = True) -> None:
        self.spec = spec
        self.schema = schema
        self.token = token
        self.local_reads = local_reads
        self._fds: dict[int, int] = {}  # file index -> descriptor, for short-circuit reads
        self._ranges: tuple | None = None  # HEALPix (lows, highs) of the ranges and inner ranges, checked once
        self.files_local = 0  # files read through descriptors, without the network
        self.files_mapped = 0  # of those, files mapped into memory
        self._conns = _Connections(ca_pem, timeout if timeout else 300.0)
        self.workers = max(1, workers)
        self._stop = threading.Event()
        self.num_rows = self.num_bytes = self.num_batches = 0
        self.bytes_fetched = 0
        self.started = time.monotonic()

    # -- fetching ---------------------------------------------------------------------------
    def _get(self, url: str, span: tuple[int, int] | None, view: memoryview) -> int:
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if span is not None:
            headers["Range"] = f"bytes={span[0]}-{span[1] - 1}"
        for attempt in (1, 2):  # a kept connection the server closed meanwhile: once more on a new one
            if self._stop.is_set():
                raise Cancelled("the query was cancelled")
            conn = None
            try:
                conn = self._conns.checkout(parts.scheme, parts.netloc, fresh=attempt == 2)
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                break
            except Cancelled:
                raise
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                if conn is not None:
                    self._conns.discard(conn)
                if self._stop.is_set():
                    raise Cancelled("the query was cancelled") from None
                if attempt == 2:
                    raise self._unreachable(url, exc) from None
            except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
                if conn is not None:
                    self._conns.discard(conn)
                if self._stop.is_set():
                    raise Cancelled("the query was cancelled") from None
                raise self._unreachable(url, exc) from None
        try:
            if resp.status not in (200, 206):
                text = resp.read(4096).decode(errors="replace").strip()
                if resp.status == 401:
                    raise Unauthenticated(f"the data port at {parts.netloc} refused the token: {text}")
                if resp.status == 403:
                    raise PermissionDenied(text)
                if resp.status == 404:
                    raise FileUnreachable(f"{url}: {text} (the file went since the query was planned)")
                raise Unavailable(f"{url}: HTTP {resp.status}: {text}")
            want = len(view)
            length = resp.getheader("Content-Length")
            if length is None or int(length) != want or (span is not None and resp.status != 206):
                raise Internal(f"{url} answered {resp.status} with {length} bytes where {want} were asked")
            got = 0
            try:
                while got < want:
                    if self._stop.is_set():
                        raise Cancelled("the query was cancelled")
                    n = resp.readinto(view[got:got + READ_BYTES])
                    if not n:
                        break
                    got += n
            except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as exc:
                if self._stop.is_set():
                    raise Cancelled("the query was cancelled") from None
                raise self._unreachable(url, exc) from None
            if got != want:
                raise Unavailable(f"{url}: the connection closed after {got} of {want} bytes")
        except BaseException:
            self._conns.discard(conn)
            raise
        if resp.isclosed() and not resp.will_close:
            self._conns.checkin(conn)
        else:
            self._conns.discard(conn)
        return got

    def _pread(self, i: int, f: pb.DirectFile, offset: int, view: memoryview) -> int:
        """Reads a span of file ``i`` through its descriptor (a short-circuit read)."""
        fd, got, want = self._fds[i], 0, len(view)
        while got < want:
            if self._stop.is_set():
                raise Cancelled("the query was cancelled")
            n = os.preadv(fd, [view[got:got + READ_BYTES]], offset + got)
            if n <= 0:
                raise Internal(f"{f.url} is shorter than the {f.size} bytes the island described")
            got += n
        return got

    @staticmethod
    def _unreachable(url: str, exc: BaseException) -> FileUnreachable:
        parts = urlsplit(url)
        return FileUnreachable(f"cannot fetch {url} from the data port at {parts.netloc}: {exc}")

    @staticmethod
    def _buffer(size: int) -> bytearray:
        """A buffer of at least ``size`` bytes, reused from file to file and query to query:
        fresh memory costs a page fault per 4 KiB (about 1 s per GB on the machines measured),
        as much as the transfer itself. The decoded tables never point into it."""
        with _BUFFERS_LOCK:
            fits = [b for b in _BUFFERS if len(b) >= size]
            if fits:
                buf = min(fits, key=len)
                _BUFFERS.remove(buf)
                return buf
        return bytearray(max(size, 1))

    @staticmethod
    def _give_back(buf: bytearray) -> None:
        with _BUFFERS_LOCK:
            _BUFFERS.append(buf)
            _BUFFERS.sort(key=len, reverse=True)
            while sum(len(b) for b in _BUFFERS) > _BUFFER_BYTES:
                _BUFFERS.pop(0)

    def _read_file(self, i: int, f: pb.DirectFile) -> pa.Table:
        size = f.size
        spans = list(zip(f.spans[::2], f.spans[1::2])) or [(0, size)]
        for a, b in spans:
            if not 0 <= a < b <= size:
                raise Internal(f"the island named a byte span {a}-{b} outside {f.url}'s {size} bytes")
        local = i in self._fds
        mapped = self._map(i, f, spans) if local and self.spec.local.mappable else None
        if mapped is not None:
            return self._decode(f, mapped, spans)
        buf = self._buffer(size)
        view = memoryview(buf)[:size]
        try:
            for a, b in spans:
                if local:
                    self.bytes_fetched += self._pread(i, f, a, view[a:b])
                else:
                    self.bytes_fetched += self._get(f.url, (a, b) if f.spans else None, view[a:b])
            if local:
                self.files_local += 1
            return self._decode(f, pa.py_buffer(buf), spans)
        finally:
            view.release()
            self._give_back(buf)

    def _map(self, i: int, f: pb.DirectFile, spans: list[tuple[int, int]]) -> pa.Buffer | None:
        """The file, mapped into memory read-only: the decode reads the page cache itself,
        without the copy a ``pread`` makes (a third of a same-host read's time). Only files the
        island says it never changes in place: a mapped file cut short under its reader would
        kill the process (SIGBUS), where a ``pread`` fails. None where mapping fails."""
        if self._stop.is_set():
            raise Cancelled("the query was cancelled")
        fd = self._fds[i]
        if os.fstat(fd).st_size < f.size:
            raise Internal(f"{f.url} is shorter than the {f.size} bytes the island described")
        try:
            mapped = mmap.mmap(fd, f.size, prot=mmap.PROT_READ)
        except (OSError, ValueError):  # an empty file, or a filesystem that cannot map
            return None
        self.bytes_fetched += sum(b - a for a, b in spans)
        self.files_local += 1
        self.files_mapped += 1
        return pa.py_buffer(mapped)

    def _decode(self, f: pb.DirectFile, data: pa.Buffer, spans: list[tuple[int, int]]) -> pa.Table:
        """The rows of file ``f`` (its bytes in ``data``) the read keeps. The decoded table
        never points into ``data``: reused buffers are given back, mappings dropped."""
        size = f.size
        spec = self.spec
        columns = list(spec.columns)
        healpix = spec.healpix_column if spec.cones else ""
        needed = list(dict.fromkeys(columns + ([spec.ra_column, spec.dec_column, healpix] if spec.cones and columns
                                               else [])))
        try:
            frag = _PARQUET.make_fragment(pa.BufferReader(data.slice(0, size)), row_groups=list(f.row_groups))
            present = set(frag.physical_schema.names)
            if f.spans:
                _check_fetched(frag.metadata, list(f.row_groups), [c for c in needed if c in present], spans, f.url)
            # Files are decoded in parallel already: one thread each, unless there are fewer files
            # than workers. The system allocator: pyarrow's default (mimalloc) faults fresh pages
            # in at a third of its rate here.
            table = frag.to_table(columns=[c for c in needed if c in present] if needed else None,
                                  use_threads=len(self.spec.files) < self.workers,
                                  memory_pool=pa.system_memory_pool())
        except (pa.ArrowException, OSError) as exc:
            raise Internal(f"{f.url} is not the Parquet file the island described: {exc}") from None
        finally:
            del data
        if spec.cones and table.num_rows:
            table = table.filter(self._in_cones(table, healpix if healpix in table.column_names else ""))
        return _conform(table, columns or self.schema.names, self.schema)

    def _in_cones(self, table: pa.Table, healpix: str) -> pa.Array:
        """Rows inside every cone: the HEALPix range test, then the exact distance for the rows
        that pass it and lie in no inner range (most rows of a wide cone lie in one)."""
        import numpy as np  # only for cones: a plain import of the client stays light

        spec = self.spec
        ra, dec = table.column(spec.ra_column), table.column(spec.dec_column)
        if healpix:
            keep, inside = self._in_ranges(table.column(healpix))
            if inside.any():  # a position the distance test would drop (null, NaN) is never inside
                inside &= pc.fill_null(pc.and_(pc.is_finite(ra), pc.is_finite(dec)), False).to_numpy()
            tested = np.flatnonzero(keep & ~inside)
            if len(tested) < table.num_rows:
                ra, dec = ra.take(tested), dec.take(tested)
        else:
            keep = inside = None
        hit = None
        for cone in spec.cones:
            m = pc.fill_null(cone_mask(ra, dec, cone.ra, cone.dec, cone.radius), False)
            hit = m if hit is None else pc.and_(hit, m)
        if keep is None:
            return hit
        mask = inside.copy()
        mask[tested] = hit.to_numpy(zero_copy_only=False)
        return pa.array(mask)

    def _in_ranges(self, values: pa.ChunkedArray) -> tuple:
        """Two masks of the rows (NumPy): whose HEALPix index is inside one of the read's ranges
        (the conservative test the stream path's SQL applies too, a binary search per row), and
        whose index is inside one of its inner ranges (inside the cone by geometry)."""
        import numpy as np

        if self._ranges is None:
            self._ranges = (_range_pairs(self.spec.healpix_ranges, "ranges"),
                            _range_pairs(self.spec.healpix_inner_ranges, "inner ranges"))
        if not pa.types.is_integer(values.type):
            raise Internal(f"the column {self.spec.healpix_column} is not a HEALPix index ({values.type})")
        valid = None
        if values.null_count:  # a row without an index cannot be placed: the SQL's BETWEEN drops it too
            valid = pc.is_valid(values).to_numpy(zero_copy_only=False)
            values = values.fill_null(0)
        h = values.to_numpy()
        h = h.view(np.uint64) if h.dtype == np.int64 else h.astype(np.uint64)
        ordered = len(h) > 1 and bool((h[1:] >= h[:-1]).all())
        masks = []
        for lows, highs in self._ranges:
            if ordered:  # rows sorted by their index (as HATS writes them): each range is one run of rows
                m = np.zeros(len(h), dtype=bool)
                for a, b in zip(np.searchsorted(h, lows, side="left").tolist(),
                                np.searchsorted(h, highs, side="right").tolist()):
                    m[a:b] = True
            else:
                at = np.searchsorted(lows, h, side="right") - 1
                m = (at >= 0) & (h <= highs[np.maximum(at, 0)]) if len(lows) else np.zeros(len(h), dtype=bool)
            masks.append(m if valid is None else m & valid)
        keep, inside = masks
        return keep, inside & keep

    # -- the result -------------------------------------------------------------------------
    def __iter__(self) -> Iterator[pa.RecordBatch]:
        spec = self.spec
        left = spec.limit if spec.has_limit else None
        files = list(spec.files)
        if self.local_reads and spec.HasField("local"):
            self._fds = local_descriptors(spec.local, [f.size for f in files])
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="direct")
        pending: list[Future] = []
        try:
            nxt = 0
            while nxt < len(files) or pending:
                while nxt < len(files) and len(pending) < self.workers:
                    pending.append(pool.submit(self._read_file, nxt, files[nxt]))
                    nxt += 1
                try:
                    table = pending.pop(0).result()
                except Exception:
                    if self._stop.is_set():  # whatever a cut connection raised: the cancel is the cause
                        raise Cancelled("the query was cancelled") from None
                    raise
                if self._stop.is_set():
                    raise Cancelled("the query was cancelled")
                if left is not None:
                    table = table.slice(0, left)
                    left -= table.num_rows
                self._check_limits(table)
                for batch in table.to_batches():
                    if batch.num_rows:
                        self.num_batches += 1
                        yield batch
                if left == 0:
                    return
        finally:
            self._stop.set()
            for fut in pending:
                fut.cancel()
            self._conns.close_all()
            pool.shutdown(wait=True, cancel_futures=True)
            fds, self._fds = self._fds, {}
            for fd in fds.values():
                os.close(fd)

    def _check_limits(self, table: pa.Table) -> None:
        self.num_rows += table.num_rows
        self.num_bytes += table.nbytes
        spec = self.spec
        if spec.max_rows and self.num_rows > spec.max_rows:
            raise ResourceExhausted(f"result exceeds the row limit of {spec.max_rows} (set [query] max_rows or "
                                    "add LIMIT)")
        if spec.max_bytes and self.num_bytes > spec.max_bytes:
            raise ResourceExhausted(f"result exceeds the byte limit of {spec.max_bytes} (the tightest of the "
                                    "client's max_bytes, [query] max_bytes and [limits] result_bytes)")

    def cancel(self) -> None:
        """Stops fetching: blocked reads are woken by closing their connections."""
        self._stop.set()
        self._conns.close_all()
