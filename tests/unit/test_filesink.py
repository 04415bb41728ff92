"""A copy's bytes to disk (``replication.transfer.FileSink``): around the page cache in whole
aligned slices, the tail through it; the same file whatever the sizes of the pieces written."""

from __future__ import annotations

import os

import pytest

from replication.transfer import FileSink


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("size,piece", [
    (0, 1000), (1, 1000), (4096, 4096), (FileSink.SLICE, 1 << 20), (FileSink.SLICE + 1, 1 << 20),
    (2 * FileSink.SLICE + 12345, 3 * 1000 * 1000 + 7), (3 * 4096 + 5, 100), (5_000_000, FileSink.SLICE * 2),
])
def test_the_file_is_what_was_written(tmp_path, direct, size, piece):
    data = os.urandom(size)
    path = tmp_path / "f.part"
    with FileSink(path, direct=direct) as sink:
        for i in range(0, size, piece):
            sink.write(data[i:i + piece])
        sink.finish(fsync=True)
    assert path.read_bytes() == data
    if direct:
        assert sink.direct  # this filesystem (the temp folder's) takes direct I/O


def test_one_threads_buffer_serves_its_copies_one_after_the_other(tmp_path):
    a, b = os.urandom(FileSink.SLICE + 99), os.urandom(4097)
    for name, data in (("a", a), ("b", b), ("a2", a)):
        with FileSink(tmp_path / name) as sink:
            sink.write(data)
            sink.finish(fsync=False)
    assert (tmp_path / "a").read_bytes() == a == (tmp_path / "a2").read_bytes()
    assert (tmp_path / "b").read_bytes() == b


def test_a_filesystem_without_direct_io_gets_the_page_cache(tmp_path, monkeypatch):
    real = os.open

    def no_direct(path, flags, *args):
        if flags & os.O_DIRECT:
            raise OSError(22, "Invalid argument")
        return real(path, flags, *args)

    monkeypatch.setattr(os, "open", no_direct)
    data = os.urandom(FileSink.SLICE + 5)
    with FileSink(tmp_path / "f") as sink:
        sink.write(data)
        sink.finish(fsync=True)
    assert not sink.direct and (tmp_path / "f").read_bytes() == data


def test_staging_buffers_are_reused_and_warmed(tmp_path):
    from replication.transfer import StagingBuffers, staging

    pool = StagingBuffers()
    pool.warm(3)
    assert len(pool) == 3
    a = pool.take()
    assert len(pool) == 2 and len(a) == FileSink.SLICE
    pool.give(a)
    assert pool.take() is a
    before = len(staging)
    with FileSink(tmp_path / "f") as sink:  # a copy takes a buffer and gives it back
        sink.write(b"x" * 5000)
        sink.finish(fsync=False)
    assert len(staging) == max(before, 1) and (tmp_path / "f").read_bytes() == b"x" * 5000
