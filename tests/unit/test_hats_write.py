from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from archipel.errors import InvalidArgument
from island.storage.hats_write import plan_partitions, write_hats_catalog
from skydata import sky_table


def test_plan_partitions_splits_until_threshold():
    counts = np.zeros(12 * 4**3, dtype=np.int64)
    counts[5] = 100  # order 3 pixel 5 -> order 0 pixel 0
    counts[700] = 3
    parts = plan_partitions(counts, 3, threshold=10)
    assert (3, 5) in parts and (0, 700 >> 6) in parts and len(parts) == 2


def test_written_catalog_is_valid_hats(tmp_path):
    from hats.io.validation import is_valid_catalog

    t = sky_table(5000)
    pq.write_table(t, tmp_path / "in.parquet")
    out = tmp_path / "out"
    write_hats_catalog([tmp_path / "in.parquet"], t.schema, out, "x", "ra", "dec", partition_rows=400, max_order=6)
    assert is_valid_catalog(out, strict=True, verbose=False)
    back = pq.read_table(out / "dataset", columns=["id"])
    assert sorted(back["id"].to_pylist()) == list(range(5000))


def test_empty_input_is_refused(tmp_path):
    t = sky_table(10).slice(0, 0)
    pq.write_table(t, tmp_path / "in.parquet")
    with pytest.raises(InvalidArgument, match="no rows"):
        write_hats_catalog([tmp_path / "in.parquet"], t.schema, tmp_path / "o", "x", "ra", "dec",
                           partition_rows=10, max_order=3)


def test_pixel_paths_are_the_hats_librarys():
    from hats.io import paths
    from hats.pixel_math import HealpixPixel

    from island.storage.pixels import parse_pixel_relpath, pixel_file, pixel_relpath

    for order, pixel in [(0, 11), (1, 44), (7, 123_456), (10, 12_582_911)]:
        rel = pixel_relpath(order, pixel)
        assert str(pixel_file(Path("/cat"), order, pixel)) == str(paths.pixel_catalog_file(Path("/cat"),
                                                                                          HealpixPixel(order, pixel)))
        assert parse_pixel_relpath(rel) == (order, pixel)
    assert pixel_relpath(1, 44, "/") == "dataset/Norder=1/Dir=0/Npix=44/"
    assert parse_pixel_relpath("dataset/Norder=1/Dir=10000/Npix=44.parquet") is None  # the wrong Dir
    assert parse_pixel_relpath("../dataset/Norder=1/Dir=0/Npix=44.parquet") is None
