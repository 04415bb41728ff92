"""Direct reads: the planner's choice, the island's row-group and byte-span selection, the
data port's Range parsing, and the client's cone test against DuckDB's."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from archipel.direct import cone_mask
from federation.planner import cone_predicate_sql, plan_query
from island.dataplane import parse_range
from island.direct import FooterCache, byte_spans, row_groups_for
from metacatalog.sky import Cone, healpix29, healpix29_inner_ranges, healpix29_ranges


def _lookup():
    from archipel.arrowwire import serialize_schema
    from archipel.errors import NotFound
    from metacatalog.model import Dataset, Partition

    schema = pa.schema([("id", pa.int64()), ("ra", pa.float64()), ("dec", pa.float64()), ("mag", pa.float64()),
                        ("_healpix_29", pa.int64())])
    parts = tuple(Partition(path=f"p{i}", num_rows=1, num_bytes=10, adler32=0, order=1, pixel=i) for i in range(48))
    sky = Dataset(name="test.allsky", origin="a", kind="catalog", root="/", arrow_schema=serialize_schema(schema),
                  num_rows=48, num_bytes=480, ra_column="ra", dec_column="dec", partitions=parts)

    def lookup(name):
        if name != "test.allsky":
            raise NotFound(name)
        return sky
    return lookup


def test_parse_range_forms_and_refusals():
    assert parse_range(None, 100) is None
    assert parse_range("bytes=0-9", 100) == (0, 10)
    assert parse_range("bytes=90-", 100) == (90, 100)
    assert parse_range("bytes=-10", 100) == (90, 100)
    assert parse_range("bytes=-1000", 100) == (0, 100)
    assert parse_range("bytes=95-1000", 100) == (95, 100)
    for bad in ("bytes=100-", "bytes=5-2", "bytes=-0", "bytes=-", "items=0-1", "bytes=0-1,5-6", "bytes=a-b", ""):
        with pytest.raises(ValueError):
            parse_range(bad, 100)


def _sky_file(tmp_path, n=40_000, group=4_000):
    rng = np.random.default_rng(3)
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    h = healpix29(ra, dec)
    order = np.argsort(h)
    table = pa.table({"id": np.arange(n)[order], "ra": ra[order], "dec": dec[order], "_healpix_29": h[order],
                      "mag": rng.normal(18, 2, n)[order]})
    path = tmp_path / "f.parquet"
    pq.write_table(table, path, row_group_size=group, compression="zstd")
    return table, path


def test_row_groups_for_a_cone_hold_every_row_of_the_cone(tmp_path):
    table, path = _sky_file(tmp_path)
    meta = pq.read_metadata(path)
    cone = Cone(40.0, 20.0, 5.0)
    groups = row_groups_for(meta, "_healpix_29", healpix29_ranges(cone))
    assert 0 < len(groups) < meta.num_row_groups
    kept = pq.ParquetFile(path).read_row_groups(groups)
    inside = lambda t: set(t.filter(cone_mask(t["ra"], t["dec"], 40.0, 20.0, 5.0))["id"].to_pylist())  # noqa: E731
    assert inside(kept) == inside(table) and inside(table)
    assert row_groups_for(meta, "_healpix_29", None) == list(range(meta.num_row_groups))
    assert row_groups_for(meta, "no_such_column", healpix29_ranges(cone)) == list(range(meta.num_row_groups))


def test_byte_spans_cover_the_chosen_chunks_and_decode(tmp_path):
    table, path = _sky_file(tmp_path)
    meta = pq.read_metadata(path)
    size = path.stat().st_size
    data = path.read_bytes()
    groups = [1, 5]
    leaves = [0, 4]  # id, mag
    spans = byte_spans(meta, size, groups, leaves)
    assert spans and sum(b - a for a, b in spans) < 0.7 * size
    assert spans[-1][1] == size  # the footer
    sparse = bytearray(size)
    for a, b in spans:
        sparse[a:b] = data[a:b]
    got = pq.ParquetFile(pa.BufferReader(pa.py_buffer(bytes(sparse)))).read_row_groups(groups, columns=["id", "mag"])
    assert got.equals(pq.ParquetFile(path).read_row_groups(groups, columns=["id", "mag"]))
    assert byte_spans(meta, size, list(range(meta.num_row_groups)), list(range(5))) == []  # whole file


def test_footer_cache_reads_a_rewritten_file_again(tmp_path):
    cache = FooterCache(capacity=2)
    table, path = _sky_file(tmp_path, n=8000, group=1000)
    assert cache.get(str(path))[0].num_row_groups == 8
    pq.write_table(table.slice(0, 3000), path, row_group_size=1000)
    assert cache.get(str(path))[0].num_row_groups == 3


@pytest.mark.parametrize("cone", [(40.0, 20.0, 5.0), (0.0, 89.9, 0.3), (359.9, -10.0, 2.0), (10.0, 0.0, 179.0),
                                  (200.0, -89.7, 0.5), (45.0, 0.0, 0.0)])
def test_cone_mask_is_duckdbs_cone_row_for_row(cone):
    import duckdb

    rng = np.random.default_rng(11)
    n = 200_000
    ra0, dec0, r = cone
    # points spread over the sky, and points crowded at the cone's edge
    ra = np.concatenate([rng.uniform(0, 360, n), ra0 + rng.normal(0, r + 1e-9, n) / max(np.cos(np.radians(dec0)), 1e-3)])
    dec = np.clip(np.concatenate([np.degrees(np.arcsin(rng.uniform(-1, 1, n))), dec0 + rng.normal(0, r + 1e-9, n)]),
                  -90, 90)
    t = pa.table({"ra": ra, "dec": dec})
    ours = cone_mask(t["ra"], t["dec"], ra0, dec0, r).to_numpy(zero_copy_only=False)
    con = duckdb.connect()
    con.register("t", t)
    theirs = con.sql(f"SELECT {cone_predicate_sql('ra', 'dec', repr(ra0), repr(dec0), repr(r))} AS k FROM t"
                     ).to_arrow_table()["k"].to_numpy(zero_copy_only=False)
    assert (ours == theirs).all()
    assert ours.any() or r == 0.0


def test_planner_marks_plain_reads_direct_only():
    lookup = _lookup()
    direct = {
        "SELECT * FROM test.allsky": ([], 0, None),
        "SELECT id, ra AS x FROM test.allsky LIMIT 5": ([("id", "id"), ("ra", "x")], 0, 5),
        "SELECT id FROM test.allsky WHERE cone(ra, dec, 10, 20, 1)": ([("id", "id")], 1, None),
        "SELECT * FROM test.allsky WHERE cone(ra, dec, 10, 20, 1) AND cone(ra, dec, 10.5, 20, 1)": ([], 2, None),
        "SELECT id FROM test.allsky WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 1, 2, 3)) = 1":
            ([("id", "id")], 1, None),
    }
    for sql, (columns, cones, limit) in direct.items():
        plan = plan_query(sql, lookup, engine="auto")
        assert plan.direct is not None, sql
        assert plan.direct.columns == columns and len(plan.direct.cones) == cones and plan.direct.limit == limit, sql
    streamed = [
        "SELECT id FROM test.allsky WHERE mag < 12",
        "SELECT id FROM test.allsky WHERE cone(ra, dec, 10, 20, 1) AND mag < 12",
        "SELECT id FROM test.allsky WHERE cone(ra, dec, 10, 20, 1) OR mag < 12",
        "SELECT id, ra + 1 FROM test.allsky",
        "SELECT count(*) FROM test.allsky",
        "SELECT id FROM test.allsky ORDER BY id",
        "SELECT DISTINCT id FROM test.allsky",
        "SELECT id FROM test.allsky LIMIT 5 OFFSET 2",
        "SELECT id FROM test.allsky WHERE cone(dec, ra, 10, 20, 1)",
        "SELECT a.id FROM test.allsky a JOIN test.allsky b ON a.id = b.id",
        "SELECT id FROM (SELECT * FROM test.allsky)",
    ]
    for sql in streamed:
        assert plan_query(sql, lookup, engine="auto").direct is None, sql
    assert plan_query("SELECT * FROM test.allsky", lookup, engine="spark").direct is None


def test_healpix_range_test_is_betweens_row_for_row():
    """The client's HEALPix prefilter keeps exactly the rows the stream path's
    ``col BETWEEN lo AND hi OR ...`` keeps, nulls and out-of-range values included."""
    from archipel.direct import DirectReader
    from archipel.errors import Internal
    from archipel.v1 import island_pb2 as pb

    ranges = healpix29_ranges(Cone(120.0, 30.0, 10.0))
    inner = healpix29_inner_ranges(Cone(120.0, 30.0, 10.0))
    spec = pb.DirectRead(healpix_column="_healpix_29", healpix_ranges=[x for r in ranges for x in r],
                         healpix_inner_ranges=[x for r in inner for x in r])
    reader = DirectReader(spec, pa.schema([]), "", None)
    rng = np.random.default_rng(5)
    lo, hi = ranges[0][0], ranges[-1][1]
    values = np.concatenate([rng.integers(lo - 2**50, hi + 2**50, 20_000), [lo, hi, lo - 1, hi + 1, -5]])
    for r in ranges + inner[::7]:
        values = np.concatenate([values, [r[0] - 1, r[0], r[1], r[1] + 1]])
    column = pa.chunked_array([pa.array(values[:100]), pa.array(list(values[100:]) + [None], type=pa.int64())])
    want = [v is not None and any(a <= v <= b for a, b in ranges) for v in column.to_pylist()]
    want_inside = [v is not None and any(a <= v <= b for a, b in inner) for v in column.to_pylist()]
    keep, inside = reader._in_ranges(column)
    assert keep.tolist() == want and 0 < sum(want) < len(want)
    assert inside.tolist() == want_inside and 0 < sum(want_inside) < sum(want)
    ordered = np.sort(values[values >= 0])  # as HATS files hold their rows: each range is one run of them
    keep, inside = reader._in_ranges(pa.chunked_array([ordered[:5000], ordered[5000:]]))
    assert keep.tolist() == [any(a <= v <= b for a, b in ranges) for v in ordered.tolist()]
    assert inside.tolist() == [any(a <= v <= b for a, b in inner) for v in ordered.tolist()] and inside.any()
    for field in ("healpix_ranges", "healpix_inner_ranges"):
        for bad in ([5], [9, 3], [1, 10, 5, 20]):  # odd, lo > hi, overlapping
            with pytest.raises(Internal, match="HEALPix (inner )?ranges"):
                DirectReader(pb.DirectRead(healpix_column="h", **{field: bad}), pa.schema([]), "", None
                             )._in_ranges(column)
    with pytest.raises(Internal, match="not a HEALPix index"):
        reader._in_ranges(pa.chunked_array([pa.array(["a"])]))


def test_inner_ranges_skip_the_distance_test_without_changing_a_row():
    """Rows in the inner ranges skip the exact distance; the rows kept are still those of the
    HEALPix ranges and the distance test, row for row, positions without a value (null, NaN) in
    an inner cell included."""
    from archipel.direct import DirectReader
    from archipel.v1 import island_pb2 as pb

    ra0, dec0, r = 120.0, 30.0, 10.0
    ranges, inner = healpix29_ranges(Cone(ra0, dec0, r)), healpix29_inner_ranges(Cone(ra0, dec0, r))
    spec = pb.DirectRead(cones=[pb.DirectCone(ra=ra0, dec=dec0, radius=r)], ra_column="ra", dec_column="dec",
                         healpix_column="_healpix_29", healpix_ranges=[x for p in ranges for x in p],
                         healpix_inner_ranges=[x for p in inner for x in p])
    rng = np.random.default_rng(3)
    n = 100_000
    ra = np.concatenate([ra0 + rng.uniform(-13, 13, n), ra0 + rng.normal(0, 0.02, 100) + r / np.cos(np.radians(dec0))])
    dec = np.concatenate([dec0 + rng.uniform(-12, 12, n), dec0 + rng.normal(0, 0.02, 100)])
    h = healpix29(ra, dec)
    ra_col = pa.array(ra, mask=np.arange(len(ra)) % 997 == 0)  # null positions, in every kind of cell
    dec = dec.copy()
    dec[::1009] = np.nan
    table = pa.table({"ra": ra_col, "dec": dec, "_healpix_29": h})
    reader = DirectReader(spec, table.schema, "", None)
    got = reader._in_cones(table, "_healpix_29")
    in_ranges = np.zeros(len(h), dtype=bool)
    for a, b in ranges:
        in_ranges |= (h >= a) & (h <= b)
    want = in_ranges & pc.fill_null(cone_mask(table["ra"], table["dec"], ra0, dec0, r), False).to_numpy()
    assert got.to_pylist() == want.tolist()
    _keep, inside = reader._in_ranges(table["_healpix_29"])
    assert inside.mean() > 0.5 and 1000 < want.sum() < len(want)  # most rows skipped the distance test
    no_inner = DirectReader(pb.DirectRead(cones=spec.cones, ra_column="ra", dec_column="dec"), table.schema, "", None)
    assert no_inner._in_cones(table, "").to_pylist() == pc.fill_null(
        cone_mask(table["ra"], table["dec"], ra0, dec0, r), False).to_pylist()


def test_the_client_never_decodes_bytes_the_island_did_not_name(tmp_path):
    """A column chunk outside the byte spans of a direct read is an error, not a decode of
    whatever the reused buffer held there; within them the rows are the file's."""
    import os

    from archipel.direct import DirectReader
    from archipel.errors import Internal
    from archipel.v1 import island_pb2 as pb

    table = pa.table({"a": np.arange(40_000), "b": np.arange(40_000) * 2.0, "c": np.arange(40_000) % 7})
    path = tmp_path / "part.parquet"
    pq.write_table(table, path, row_group_size=10_000)
    meta, size = pq.read_metadata(path), path.stat().st_size
    schema = table.schema.remove(2)

    def spans_of(columns):  # the chunks of these columns in row groups 1 and 2, and the footer
        out = []
        for i in (1, 2):
            for j in range(meta.num_columns):
                col = meta.row_group(i).column(j)
                if col.path_in_schema in columns:
                    start = min(x for x in (col.data_page_offset, col.dictionary_page_offset) if x)
                    out.append((start, start + col.total_compressed_size))
        out.append((size - 8 - meta.serialized_size, size))
        return [x for span in sorted(out) for x in span]

    for named, ok in ((["a"], False), (["a", "b"], True)):
        f = pb.DirectFile(url="file:part", size=size, row_groups=[1, 2], spans=spans_of(named))
        assert f.spans  # a part of the file, not all of it
        reader = DirectReader(pb.DirectRead(files=[f], columns=["a", "b"], names=["a", "b"]), schema, "", None)
        reader._fds = {0: os.open(path, os.O_RDONLY)}
        try:
            if ok:
                assert reader._read_file(0, f).equals(table.select(["a", "b"]).slice(10_000, 20_000))
            else:
                with pytest.raises(Internal, match="column b of row group 1 lies outside the byte spans"):
                    reader._read_file(0, f)
        finally:
            os.close(reader._fds[0])
