"""Copying one file from a URL (``root://`` through XRootD's own client, ``http(s)://`` through
the standard library's), verifying adler32 in the same pass.

The bytes go to a temporary name next to their final place; only a file whose size and
checksum match the catalog is renamed into place (``os.replace``, atomic on one filesystem), so
no reader ever sees a partial or corrupt replica.
"""

from __future__ import annotations

import collections
import errno
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from archipel.errors import ArchipelError, DataLoss, Unavailable
from metacatalog.checksum import adler32 as adler32_of

__all__ = ["ChecksumMismatch", "SourceFailed", "copy_verified", "place", "open_url", "partial_name",
           "data_ssl_context", "DATA_TLS_ENV",
           "HttpPool", "http_pool", "warm_http"]

# The island's identity on the data plane, set by the island for itself and its workers: the
# archipelago's CA (to check the serving island) and the island's certificate and key (to be
# let in: islands read every file they replicate; users need a token).
DATA_TLS_ENV = ("ARCHIPEL_DATA_CA", "ARCHIPEL_DATA_CERT", "ARCHIPEL_DATA_KEY")

PARTIAL_SUFFIX = ".part"
IN_FLIGHT_BYTES = 16 << 20  # asked for ahead of the caller by a root:// read
# The read size of a copy: each block goes to the disk while the next ones are on the wire.
# With 2 MiB blocks rather than 8, http:// rules landed their first replica after 69-76 ms
# instead of 73-106, at the same throughput (the disk writes 1 MiB as fast as 8 here).
BLOCK_BYTES = 2 << 20


class SourceFailed(Unavailable):
    """A source could not deliver the file (unreachable, missing, cut off)."""


class ChecksumMismatch(SourceFailed, DataLoss):
    """A source delivered bytes whose size or adler32 differ from the catalog's."""

    code = "DATA_LOSS"


def fail_fast_xrootd() -> None:
    """XRootD's client retries a dead server for minutes by default; a source that is down must
    fail fast so the next source is tried. Read by the XRootD library when first loaded: call
    before anything imports it."""
    os.environ.setdefault("XRD_CONNECTIONWINDOW", "3")
    os.environ.setdefault("XRD_CONNECTIONRETRY", "1")
    os.environ.setdefault("XRD_REQUESTTIMEOUT", "30")
    os.environ.setdefault("XRD_STREAMTIMEOUT", "30")


def partial_name(final: Path, token: str) -> Path:
    """The temporary name a transfer writes to: hidden, in the final file's folder."""
    return final.with_name(f".{final.name}.{token}{PARTIAL_SUFFIX}")


_ssl_cache: dict[tuple[str, ...], object] = {}
# Kept connections unused this long are closed before the next warm-up: the servers close
# theirs after 60 s (the data port) or 75 s (the web face).
IDLE_KEEP_SECONDS = 45.0


def data_ssl_context():
    """The TLS context of data transfers (None when the island set no identity: plain HTTP)."""
    import ssl

    paths = tuple(os.environ.get(k, "") for k in DATA_TLS_ENV)
    if not all(paths):
        return None
    ctx = _ssl_cache.get(paths)
    if ctx is None:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=paths[0])
        ctx.load_cert_chain(paths[1], paths[2])
        _ssl_cache[paths] = ctx
    return ctx


def open_url(url: str, timeout: float = 30.0, block: int = BLOCK_BYTES):
    """A binary reader of ``url`` (``root://`` or ``http(s)://``), read in ``block``-byte reads."""
    if url.startswith("root://"):  # about 16 MiB in flight, whatever the block size
        return XrootdStream(url, timeout, depth=max(2, min(16, IN_FLIGHT_BYTES // max(1, block))))
    if url.startswith(("http://", "https://")):
        return HttpStream(url, timeout)
    raise SourceFailed(f"unsupported URL scheme in {url!r}")


class _Block:
    """One read in flight: XRootD's callback fills it from the client's own threads."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.status = None
        self.data = b""

    def __call__(self, status, response, hosts=None) -> None:
        self.status, self.data = status, response or b""
        self.done.set()


class XrootdStream:
    """A file read whole over ``root://`` with XRootD's own client (``pyxrootd``), with
    ``depth`` blocks in flight: while the caller checksums and writes a block, the next ones
    are on the wire (xrdcp keeps 4 chunks in flight). fsspec-xrootd wraps the same client in
    asyncio, which ran at 0.2-0.35 GB/s here against 0.8 for a plain read loop (and 0.9 for
    ``xrdcp``)."""

    def __init__(self, url: str, timeout: float = 30.0, depth: int = 2) -> None:
        from XRootD import client
        from XRootD.client.flags import OpenFlags

        self._timeout = max(1, int(timeout))
        self._depth = max(1, depth)
        self._file = client.File()
        self._next = 0  # offset of the next block asked for
        self._ahead: collections.deque[tuple[_Block, int, int]] = collections.deque()  # (block, offset, asked)
        self._ended = False
        status, _ = self._file.open(url, OpenFlags.READ, timeout=self._timeout)
        if not status.ok:
            raise SourceFailed(f"cannot open {url}: {status.message.strip()}")

    def _ask(self, n: int) -> None:
        block, offset = _Block(), self._next
        status = self._file.read(offset, n, timeout=self._timeout, callback=block)
        if not status.ok:
            raise OSError(status.message.strip())
        self._next += n
        self._ahead.append((block, offset, n))

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = 64 << 20
        if self._ended:
            return b""
        while len(self._ahead) < self._depth:
            self._ask(n)
        block, offset, asked = self._ahead.popleft()
        if not block.done.wait(self._timeout + 5):
            raise OSError(f"no answer within {self._timeout} s")
        if not block.status.ok:
            raise OSError(block.status.message.strip())
        data = block.data
        if len(data) < asked:  # the end (or a short read): the blocks asked after it are dropped
            self._ended = not data
            self._drain()
            self._next = offset + len(data)
        return data

    def _drain(self) -> None:
        """Waits for the reads in flight, dropping their bytes: a file is closed with none."""
        while self._ahead:
            self._ahead.popleft()[0].done.wait(self._timeout + 5)

    def close(self) -> None:
        self._drain()
        if self._file.is_open():
            self._file.close(timeout=self._timeout)

    def __enter__(self) -> XrootdStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HttpPool:
    """Kept-alive HTTP(S) connections of this process, by (scheme, host:port), lent to one
    thread at a time, and the data ports islands' web faces redirect to: after the first
    redirect from a web face, a worker asks its data port straight (one round trip less per
    file), and the warm-up can open those connections before the first rule."""

    def __init__(self, idle_per_server: int = 8) -> None:
        self._idle: dict[tuple[str, str], list] = {}  # (connection, when it was given back)
        self._lock = threading.Lock()
        self._redirects: dict[str, str] = {}  # a web face's URL prefix -> its data port's
        self.idle_per_server = idle_per_server

    def take(self, scheme: str, netloc: str, timeout: float):
        """An idle connection to ``netloc`` (possibly closed by the server meanwhile), or a new one."""
        import http.client

        stale = []
        with self._lock:
            idle = self._idle.get((scheme, netloc)) or []
            while idle:
                conn, since = idle.pop()
                if time.monotonic() - since > IDLE_KEEP_SECONDS:  # the server may have closed it
                    stale.append(conn)
                    continue
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                break
            else:
                conn = None
        for old in stale:
            old.close()
        if conn is not None:
            return conn
        host, _, port = netloc.rpartition(":")
        if scheme == "https":
            return http.client.HTTPSConnection(host, int(port), timeout=timeout, context=data_ssl_context(),
                                               blocksize=1 << 20)
        return http.client.HTTPConnection(host, int(port), timeout=timeout, blocksize=1 << 20)

    def give(self, scheme: str, netloc: str, conn) -> None:
        """Keeps ``conn`` for the next file, unless enough are kept already."""
        with self._lock:
            idle = self._idle.setdefault((scheme, netloc), [])
            if len(idle) < self.idle_per_server:
                idle.append((conn, time.monotonic()))
                return
        conn.close()

    def drop_idle(self, older_than: float) -> None:
        """Closes the kept connections unused for ``older_than`` seconds, which servers may have
        closed on their side meanwhile (the data port after 60 s, the web face after 75 s)."""
        limit, old = time.monotonic() - older_than, []
        with self._lock:
            for key, idle in self._idle.items():
                old += [c for c, t in idle if t < limit]
                idle[:] = [(c, t) for c, t in idle if t >= limit]
        for conn in old:
            conn.close()

    def idle(self, scheme: str, netloc: str) -> int:
        with self._lock:
            return len(self._idle.get((scheme, netloc), ()))

    def learn_redirect(self, url: str, target: str) -> None:
        """Remembers that ``url`` was sent to ``target``: the parts before the path they share
        (decoded) map one to the other. Nothing is learnt from a redirect to another path."""
        from urllib.parse import unquote, urlsplit

        a, b = urlsplit(url), urlsplit(target)
        if a.query or b.query or a.scheme != b.scheme or a.scheme not in ("http", "https"):
            return
        pa, pb = unquote(a.path), unquote(b.path)
        n = 0
        while n < min(len(pa), len(pb)) and pa[-1 - n] == pb[-1 - n]:
            n += 1
        shared = pa[len(pa) - n:]
        cut = shared.find("/", 1) if not shared.startswith("/") else 0
        if cut < 0 or not shared[cut:].count("/") >= 2:  # at least the dataset and the file in common
            return
        src = f"{a.scheme}://{a.netloc}{pa[:len(pa) - len(shared) + cut]}"
        dst = f"{b.scheme}://{b.netloc}{pb[:len(pb) - len(shared) + cut]}"
        if url.startswith(src) and src != dst:
            with self._lock:
                self._redirects[src] = dst

    def redirected(self, url: str) -> str:
        """Where ``url`` was sent last time ("" when no redirect is known)."""
        with self._lock:
            for src, dst in self._redirects.items():
                if url.startswith(src) and url[len(src):len(src) + 1] == "/":
                    return dst + url[len(src):]
        return ""

    def forget_redirect(self, url: str) -> None:
        with self._lock:
            for src in [s for s in self._redirects if url.startswith(s)]:
                del self._redirects[src]


http_pool = HttpPool()


class HttpStream:
    """A file read whole over HTTP(S) with the standard library's blocking client, on a
    connection kept by the process (no TLS handshake per file). fsspec's aiohttp path moved a
    third of this through asyncio's TLS layer here. An island's web face redirects islands to
    its data port; the redirect is remembered (``HttpPool``) and tried first next time.

    A thread of the stream receives (and decrypts) the next block while the caller checksums
    and writes the last one, as XRootD's client does for ``root://``; without it the
    connection idled during every block's write to the disk."""

    def __init__(self, url: str, timeout: float = 30.0, pool: HttpPool | None = None) -> None:
        self._pool = pool or http_pool
        self._conn = None
        self._timeout = timeout
        self._ahead: queue.Queue | None = None  # blocks (or the reader's exception) in order
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()
        known = self._pool.redirected(url)
        if known:
            try:
                self._open(known, timeout, redirects=0)
                return
            except (SourceFailed, OSError):  # the data port moved or refused: ask the web face again
                self._pool.forget_redirect(url)
        self._open(url, timeout, redirects=1)

    def _open(self, url: str, timeout: float, redirects: int) -> None:
        import http.client
        from urllib.parse import urljoin, urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or ":" not in parts.netloc:
            raise SourceFailed(f"{url}: not an http(s) URL with a port")
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        for attempt in (1, 2):  # a kept connection the server closed meanwhile: once more on a new one
            conn = self._pool.take(parts.scheme, parts.netloc, timeout)
            reused = conn.sock is not None
            try:
                conn.request("GET", path)
                self._resp = conn.getresponse()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                if attempt == 2 or not reused:
                    raise
            except BaseException:
                conn.close()
                raise
        self._conn, self._key = conn, (parts.scheme, parts.netloc)
        if self._resp.status in (301, 302, 303, 307, 308) and redirects > 0:  # the web face sends islands
            target = urljoin(url, self._resp.getheader("Location") or "")   # to its bulk data port
            self._resp.read()
            self.close()
            if not target.startswith(("http://", "https://")):
                raise SourceFailed(f"{url}: redirected to {target!r}")
            self._open(target, timeout, redirects - 1)
            self._pool.learn_redirect(url, target)
            return
        if self._resp.status != 200:
            text = self._resp.read(2000).decode(errors="replace").strip()
            self.close()
            raise SourceFailed(f"{url}: HTTP {self._resp.status} {text}")

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            return self._resp.read()
        if self._ahead is None:  # the first block: the reader starts, one block ahead of the caller
            self._ahead = queue.Queue(maxsize=1)
            self._reader = threading.Thread(target=self._read_ahead, args=(n,), name="http-read-ahead", daemon=True)
            self._reader.start()
        try:
            item = self._ahead.get(timeout=self._timeout + 5)
        except queue.Empty:
            raise OSError(f"no bytes within {self._timeout:.0f} s") from None
        if isinstance(item, BaseException):
            raise item
        return item

    def _read_ahead(self, n: int) -> None:
        while not self._stop.is_set():
            try:
                block = self._resp.read(n)
                if not block and self._resp.length:  # http.client returns b"" when cut short
                    raise OSError(f"the connection closed {self._resp.length} bytes before the end")
            except BaseException as exc:  # handed to the caller in order
                self._put(exc)
                return
            self._put(block)
            if not block:
                return

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._ahead.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        if self._conn is None:
            return
        if self._reader is not None:  # a stream left before its end: its reader stops within a block
            self._stop.set()
            self._reader.join(self._timeout + 5)
            if self._reader.is_alive():  # stuck in a read: the socket is closed under it
                self._conn.close()
                self._conn = None
                return
        conn, self._conn = self._conn, None
        spent = not self._resp.isclosed() and self._resp.length  # not read to the end
        self._resp.close()
        if spent or self._resp.will_close:
            conn.close()
        else:
            self._pool.give(*self._key, conn)

    def __enter__(self) -> HttpStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def warm_http(probe: str, timeout: float = 5.0, pool: HttpPool | None = None, renew_after: float = 20.0) -> bool:
    """Opens, TLS handshake included, a kept connection to the server of ``probe`` (the URL of
    a file on an island's web face) and, when the web face redirects islands to its data port,
    one to that port too (the redirect remembered): a rule's first file then pays for its bytes
    only. Nothing is downloaded. True when a kept connection to where files come from is ready.
    Connections unused for ``renew_after`` seconds are replaced, long before servers close them."""
    import http.client
    from urllib.parse import urljoin, urlsplit

    pool = pool or http_pool
    pool.drop_idle(older_than=renew_after)
    where = urlsplit(pool.redirected(probe) or probe)
    if pool.idle(where.scheme, where.netloc):
        return True
    parts = urlsplit(probe)
    conn = pool.take(parts.scheme, parts.netloc, timeout)
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        resp = conn.getresponse()
    except (OSError, http.client.HTTPException):
        conn.close()
        return False
    if resp.status not in (301, 302, 303, 307, 308):  # served here, or refused: nothing to learn
        resp.close()
        conn.close()
        return False
    target = urljoin(probe, resp.getheader("Location") or "")
    resp.read()
    if resp.will_close:
        conn.close()
    else:
        pool.give(parts.scheme, parts.netloc, conn)
    dest = urlsplit(target)
    if dest.scheme not in ("http", "https"):
        return False
    pool.learn_redirect(probe, target)
    data = pool.take(dest.scheme, dest.netloc, timeout)
    try:
        data.connect()
    except OSError:
        data.close()
        return False
    pool.give(dest.scheme, dest.netloc, data)
    return True


def copy_verified(url: str, tmp: Path, size: int, adler32: int, *, block_bytes: int = BLOCK_BYTES,
                  bandwidth: int = 0, on_progress: Callable[[int], None] | None = None,
                  timeout: float = 30.0, fsync: bool = True, direct: bool = True) -> int:
    """Copies ``url`` to ``tmp``, computing adler32 as the bytes pass; returns the byte count.
    ``direct``: written around the page cache where the filesystem allows (``FileSink``).

    Raises SourceFailed when the source cannot be read, ChecksumMismatch when what it sent is
    not the file the catalog describes. ``tmp`` is removed on any failure."""
    checksum = 1
    done = 0
    started = time.monotonic()
    if bandwidth:  # small blocks keep a throttled rate smooth
        block_bytes = max(4096, min(block_bytes, bandwidth // 10))
    try:
        try:
            src = open_url(url, timeout, block_bytes)
        except ArchipelError:
            raise
        except Exception as exc:
            raise SourceFailed(f"cannot open {url}: {_reason(exc)}") from None
        with src, FileSink(tmp, direct=direct, writeback=fsync) as out:
            while True:
                try:
                    block = src.read(block_bytes)
                except Exception as exc:
                    raise SourceFailed(f"reading {url} failed after {done} bytes: {_reason(exc)}") from None
                if not block:
                    break
                checksum = adler32_of(block, checksum)
                out.write(block)
                done += len(block)
                if done > size:
                    break
                if on_progress is not None:
                    on_progress(done)
                if bandwidth:
                    ahead = done / bandwidth - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
            out.finish(fsync)
        if done != size or checksum != adler32:
            raise ChecksumMismatch(
                f"{url}: got {done} bytes with adler32 {checksum:08x}, the catalog says {size} bytes "
                f"with adler32 {adler32:08x}")
        return done
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class StagingBuffers:
    """Page-aligned buffers of ``FileSink.SLICE`` bytes for direct writes, lent to one copy at
    a time and kept for the next: memory touched once (a fresh page costs a fault, and on a
    virtual machine a host fault too), which a worker can pay at start (``warm``)."""

    def __init__(self) -> None:
        self._free: list = []
        self._lock = threading.Lock()

    def take(self):
        with self._lock:
            if self._free:
                return self._free.pop()
        import mmap

        return mmap.mmap(-1, FileSink.SLICE)

    def give(self, buf) -> None:
        with self._lock:
            self._free.append(buf)

    def warm(self, count: int) -> None:
        """Makes ``count`` buffers ready, every page of them touched."""
        with self._lock:
            missing = max(0, count - len(self._free))
        import mmap

        made = []
        for _ in range(missing):
            buf = mmap.mmap(-1, FileSink.SLICE)
            buf.write(bytes(FileSink.SLICE))
            buf.seek(0)
            made.append(buf)
        with self._lock:
            self._free.extend(made)

    def __len__(self) -> int:
        with self._lock:
            return len(self._free)


staging = StagingBuffers()


class FileSink:
    """Where a copy's bytes go: with ``direct``, straight to the disk (``O_DIRECT``) from a
    reused page-aligned buffer (``staging``), in whole aligned slices; the tail that is not a
    whole slice, and filesystems that refuse ``O_DIRECT`` (tmpfs), through the page cache.

    Why: a replica is written once and read later, and the copy of written bytes into fresh
    page-cache memory was half of a worker's CPU time here (``copy_folio_from_iter_atomic``,
    ``perf``), more than receiving, checksumming and Python together; the disk's DMA reads
    the buffer instead. Without ``direct``, each block's writeback starts as it is written
    (``writeback``), so the final fsync has little left to wait for."""

    SLICE = 8 << 20  # the staging buffer's size (a multiple of any block size)
    EAGER = 1 << 20  # bytes held that are written at once (in whole 4 KiB blocks)

    def __init__(self, path: Path, direct: bool = True, writeback: bool = True) -> None:
        self.path = path
        self._writeback = writeback
        self._offset = 0  # bytes handed to the file so far
        self._held = 0  # bytes waiting in the staging buffer
        self._fd = -1
        self.direct = False
        if direct and hasattr(os, "O_DIRECT"):
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
                self.direct = True
            except OSError:  # EINVAL: this filesystem does not do direct I/O
                self._fd = -1
        if self._fd < 0:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        if self.direct:
            self._mmap = staging.take()
            self._buf = memoryview(self._mmap)

    def write(self, data) -> None:
        if not self.direct:
            self._write_all(memoryview(data))
            if self._writeback:
                start_writeback(self._fd, self._offset - len(data), len(data))
            return
        view = memoryview(data)
        while view:
            n = min(len(view), self.SLICE - self._held)
            self._buf[self._held:self._held + n] = view[:n]
            self._held += n
            view = view[n:]
            if self._held >= self.EAGER:  # to the disk now, while the next block is on the wire
                whole = self._held - self._held % 4096
                self._write_direct(self._buf[:whole])
                left = self._held - whole
                self._buf[:left] = self._buf[whole:self._held]
                self._held = left

    def _write_direct(self, view: memoryview) -> None:
        try:
            self._write_all(view)
        except OSError as exc:  # a device whose blocks are larger than 4 KiB: the page cache then
            if exc.errno != errno.EINVAL:
                raise
            self._buffered()
            self._write_all(view)

    def _buffered(self) -> None:
        import fcntl

        fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) & ~os.O_DIRECT)

    def _write_all(self, view: memoryview) -> None:
        while view:
            n = os.write(self._fd, view)
            self._offset += n
            view = view[n:]

    def finish(self, fsync: bool) -> None:
        """Writes what is held and, with ``fsync``, makes the file durable."""
        if self.direct and self._held:
            whole = self._held - self._held % 4096
            if whole:
                self._write_direct(self._buf[:whole])
            if self._held > whole:  # the tail: no longer a whole block, through the page cache
                self._buffered()
                self._write_all(self._buf[whole:self._held])
            self._held = 0
        if fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            if self.direct:
                self._buf.release()
                staging.give(self._mmap)

    def __enter__(self) -> FileSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_sync_file_range = None


def start_writeback(fd: int, offset: int, nbytes: int) -> None:
    """Starts writing ``nbytes`` at ``offset`` of ``fd`` to disk without waiting (Linux's
    ``sync_file_range(SYNC_FILE_RANGE_WRITE)``, which Python does not wrap), so a later fsync
    has little left to do. A no-op where the call is missing; durability still comes from fsync."""
    global _sync_file_range
    if _sync_file_range is None:
        try:
            import ctypes

            fn = ctypes.CDLL(None, use_errno=True).sync_file_range
            fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            _sync_file_range = fn
        except (OSError, AttributeError):
            _sync_file_range = False
    if _sync_file_range:
        _sync_file_range(fd, offset, nbytes, 2)  # SYNC_FILE_RANGE_WRITE


def place(tmp: Path, final: Path, fsync: bool = True) -> None:
    """Renames a verified file into place atomically."""
    os.replace(tmp, final)
    if not fsync:
        return
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__
