"""The catalog's adler32: one implementation (ISA-L's), equal to zlib's on any input."""

from __future__ import annotations

import os
import random
import zlib

from metacatalog import checksum


def test_isal_computes_it():
    assert checksum._adler32.__module__.startswith("isal"), "isal is an island dependency: pip install isal"


def test_equal_to_zlib_in_one_pass_and_in_pieces(tmp_path):
    rng = random.Random(7)
    for n in (0, 1, 5551, 5552, 65536, 3 * 2**20 + 17):
        data = os.urandom(n)
        assert checksum.adler32(data) == zlib.adler32(data)
        cut = rng.randrange(n + 1)
        assert checksum.adler32(memoryview(data)[cut:], checksum.adler32(data[:cut])) == zlib.adler32(data)
        path = tmp_path / f"f{n}"
        path.write_bytes(data)
        assert checksum.file_adler32(path) == (zlib.adler32(data), n)
    worst = b"\xff" * (9 << 20)  # the sums' largest values, past a 4 MiB block
    (tmp_path / "ff").write_bytes(worst)
    assert checksum.file_adler32(tmp_path / "ff") == (zlib.adler32(worst), len(worst))
