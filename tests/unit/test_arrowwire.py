import pyarrow as pa
import pytest

from archipel.arrowwire import decode_chunks, dense_schema, encode_batches, to_dense


@pytest.mark.parametrize("compression", [None, "lz4", "zstd"])
def test_roundtrip_with_bounded_fragments(compression):
    t = pa.table({"i": list(range(50_000)), "s": [f"row {i}" * 3 for i in range(50_000)]})
    frags = list(encode_batches(t.to_batches(), chunk_bytes=32_768, compression=compression))
    assert all(len(f) <= 32_768 for f, _, _ in frags)
    assert sum(rows for _, _, rows in frags) == t.num_rows
    back = pa.Table.from_batches(decode_chunks(((bytes(f), m) for f, m, _ in frags), t.schema))
    assert back.equals(t)


def test_single_row_larger_than_a_chunk_is_fragmented():
    t = pa.table({"blob": ["x" * 1_000_000]})
    frags = list(encode_batches(t.to_batches(), chunk_bytes=65_536))
    assert len(frags) > 10 and all(more for _, more, _ in frags[:-1]) and not frags[-1][1]
    back = pa.Table.from_batches(decode_chunks(((bytes(f), m) for f, m, _ in frags), t.schema))
    assert back.equals(t)


def test_truncated_stream_is_an_error():
    t = pa.table({"blob": ["x" * 200_000]})
    frags = [(bytes(f), m) for f, m, _ in encode_batches(t.to_batches(), chunk_bytes=65_536)][:-1]
    with pytest.raises(ValueError, match="inside a fragmented message"):
        list(decode_chunks(frags, t.schema))


def test_dictionary_columns_travel_dense():
    t = pa.table({"d": pa.array(["a", "b", "a"]).dictionary_encode()})
    schema = dense_schema(t.schema)
    assert schema.field("d").type == pa.string()
    assert to_dense(t.to_batches()[0], schema).column(0).to_pylist() == ["a", "b", "a"]
