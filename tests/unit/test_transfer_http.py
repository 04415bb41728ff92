"""The workers' HTTP reads (``replication.transfer``): kept connections, the web face's redirect to
a data port remembered and tried first, the warm-up, and the fallbacks when a remembered port
or a kept connection is gone. Real servers on 127.0.0.1 (the standard library's), plain HTTP."""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from replication.transfer import HttpPool, HttpStream, SourceFailed, warm_http

FILES = {"/data/sky.obj/Norder=1/Dir=0/Npix=3.parquet": os.urandom(300_000),
         "/data/sky.obj/Norder=1/Dir=0/Npix=4.parquet": os.urandom(1000)}


class _Server:
    """A server on 127.0.0.1 counting its connections and requests: the web face (redirects
    every file to ``to``) or the data port (serves FILES)."""

    def __init__(self, to: str = "", close_after_each: bool = False, cut_at: int = 0) -> None:
        outer = self
        self.connections = 0
        self.requests: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                outer.connections += 1
                super().setup()

            def do_GET(self) -> None:  # noqa: N802 - the standard library's name
                outer.requests.append(self.path)
                if outer.to:
                    self.send_response(307)
                    self.send_header("Location", outer.to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                from urllib.parse import unquote

                body = FILES.get(unquote(self.path))
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                if close_after_each:
                    self.send_header("Connection", "close")
                self.end_headers()
                if cut_at:  # the connection drops after cut_at bytes of the body
                    self.wfile.write(body[:cut_at])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.to = to
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    data = _Server()
    face = _Server(to=data.url)
    yield face, data
    face.stop()
    data.stop()


def _accepted(server: _Server, n: int) -> None:
    for _ in range(500):
        if server.connections >= n:
            break
        threading.Event().wait(0.01)
    assert server.connections == n


def _read(url: str, pool: HttpPool) -> bytes:
    with HttpStream(url, 5, pool) as s:
        out = b""
        while block := s.read(64 << 10):
            out += block
        return out


def test_the_redirect_is_remembered_and_the_connection_kept(servers):
    face, data = servers
    pool = HttpPool()
    paths = list(FILES)
    quoted = [p.replace("=", "%3D") for p in paths]  # as the mover writes them (quote)
    assert _read(face.url + quoted[0], pool) == FILES[paths[0]]
    assert len(face.requests) == 1 and len(data.requests) == 1
    for _ in range(3):
        for q, p in zip(quoted, paths):
            assert _read(face.url + q, pool) == FILES[p]
    assert len(face.requests) == 1  # straight to the data port after the first redirect
    assert len(data.requests) == 7 and data.connections == 1 and face.connections == 1
    # Another island's web face is not taken for this one.
    assert pool.redirected("http://127.0.0.1:1/data/sky.obj/x") == ""


def test_a_remembered_port_that_is_gone_falls_back_to_the_web_face(servers):
    face, data = servers
    pool = HttpPool()
    path = next(iter(FILES))
    assert _read(face.url + path, pool) == FILES[path]
    data.stop()
    moved = _Server()  # the data port is now elsewhere: the web face says so
    face.to = moved.url
    try:
        pool.drop_idle(older_than=-1)
        assert _read(face.url + path, pool) == FILES[path]
        assert len(face.requests) == 2 and moved.requests == [path]
        assert pool.redirected(face.url + path) == moved.url + path
    finally:
        moved.stop()


def test_missing_files_are_an_error_not_a_fallback_loop(servers):
    face, data = servers
    pool = HttpPool()
    path = next(iter(FILES))
    _read(face.url + path, pool)
    with pytest.raises(SourceFailed, match="HTTP 404"):
        _read(face.url + "/data/sky.obj/Norder=1/Dir=0/Npix=99.parquet", pool)
    assert _read(face.url + path, pool) == FILES[path]  # the pool still serves


def test_the_warm_up_opens_both_connections_and_downloads_nothing(servers):
    face, data = servers
    pool = HttpPool()
    path = next(iter(FILES))
    assert warm_http(face.url + path, pool=pool)
    _accepted(data, 1)  # the server counts a connection when its thread takes it
    assert len(face.requests) == 1 and data.requests == []
    assert warm_http(face.url + path, pool=pool)  # ready already: nothing more is asked
    assert len(face.requests) == 1 and data.connections == 1
    assert _read(face.url + path, pool) == FILES[path]
    assert len(face.requests) == 1 and data.requests == [path] and data.connections == 1


def test_the_warm_up_of_a_server_without_redirect_or_down(servers):
    face, data = servers
    pool = HttpPool()
    path = next(iter(FILES))
    assert not warm_http(data.url + path, pool=pool)  # files served there: nothing to learn
    assert not warm_http("http://127.0.0.1:1" + path, pool=pool, timeout=1)  # nobody listens
    assert pool.redirected(data.url + path) == ""


def test_kept_connections_the_server_closed_are_replaced():
    data = _Server(close_after_each=True)
    try:
        pool = HttpPool()
        for path, body in list(FILES.items()) * 2:
            assert _read(data.url + path, pool) == body
        assert data.connections == 4 and pool.idle("http", data.url.split("//")[1]) == 0
    finally:
        data.stop()


@pytest.mark.parametrize("url,target", [
    ("http://a:1/data/ds/f.parquet", "http://b:2/other.parquet"),          # not the same file
    ("http://a:1/data/ds/f.parquet", "https://b:2/data/ds/f.parquet"),     # another scheme
    ("http://a:1/data/ds/f.parquet?x=1", "http://b:2/data/ds/f.parquet"),  # a query
    ("http://a:1/data/ds/f.parquet", "ftp://b:2/data/ds/f.parquet"),
])
def test_odd_redirects_are_not_remembered(url, target):
    pool = HttpPool()
    pool.learn_redirect(url, target)
    assert pool.redirected(url) == ""


def test_a_redirect_maps_the_differing_prefix_only():
    pool = HttpPool()
    pool.learn_redirect("http://a:1/web/data/ds/Norder%3D1/f.parquet", "http://b:2/bulk/data/ds/Norder=1/f.parquet")
    assert pool.redirected("http://a:1/web/data/other/g.parquet") == "http://b:2/bulk/data/other/g.parquet"
    assert pool.redirected("http://a:1/webx/data/other/g.parquet") == ""
    pool.forget_redirect("http://a:1/web/data/other/g.parquet")
    assert pool.redirected("http://a:1/web/data/other/g.parquet") == ""


@pytest.mark.parametrize("fsync", [True, False])
def test_a_verified_copy_through_the_pool(servers, tmp_path, fsync):
    """copy_verified over the web face's redirect, in blocks that do not divide the file, with
    the disk's writeback started block by block (fsync) or not: the exact file, or nothing."""
    import zlib

    from replication import transfer
    from replication.transfer import ChecksumMismatch, copy_verified

    face, _ = servers
    path, body = next(iter(FILES.items()))
    out = tmp_path / "copy.part"
    n = copy_verified(face.url + path, out, len(body), zlib.adler32(body), block_bytes=70_000, fsync=fsync)
    assert n == len(body) and out.read_bytes() == body
    with pytest.raises(ChecksumMismatch):
        copy_verified(face.url + path, tmp_path / "bad.part", len(body), zlib.adler32(body) ^ 1, fsync=fsync)
    assert not (tmp_path / "bad.part").exists()
    transfer.start_writeback(-1, 0, 10)  # a bad descriptor: fsync reports real failures, not this


BIG = "/data/sky.obj/Norder=1/Dir=0/Npix=3.parquet"  # 300 000 bytes


def test_a_stream_left_after_its_first_block_stops_and_keeps_no_half_read_connection(servers):
    """The stream's reader thread, a block ahead of the caller, ends when the caller leaves;
    the connection, not read to its end, is closed rather than kept for the next file."""
    _, data = servers
    pool = HttpPool()
    with HttpStream(data.url + BIG, 5, pool) as s:
        assert s.read(10_000) == FILES[BIG][:10_000]
    assert not [t for t in threading.enumerate() if t.name == "http-read-ahead"]
    assert pool.idle("http", data.url.split("//")[1]) == 0
    assert _read(data.url + BIG, pool) == FILES[BIG]
    assert pool.idle("http", data.url.split("//")[1]) == 1  # read to its end: kept


def test_a_connection_cut_mid_file_is_an_error_of_the_read_in_order(tmp_path):
    """The blocks received before the cut come first, then the error; a verified copy of it
    fails as a source failure and leaves nothing."""
    import zlib

    from replication.transfer import copy_verified

    data = _Server(cut_at=100_000)
    try:
        pool = HttpPool()
        with HttpStream(data.url + BIG, 5, pool) as s:
            got = b""
            with pytest.raises(Exception, match="closed 200000 bytes before the end"):
                while block := s.read(30_000):
                    got += block
            assert got == FILES[BIG][:len(got)] and len(got) >= 90_000
        body = FILES[BIG]
        with pytest.raises(SourceFailed, match="failed after"):
            copy_verified(data.url + BIG, tmp_path / "cut.part", len(body), zlib.adler32(body), block_bytes=30_000)
        assert not (tmp_path / "cut.part").exists()
    finally:
        data.stop()
