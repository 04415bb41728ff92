import dataclasses
import threading

import pytest

import metacatalog.store as store_module
from archipel.errors import AlreadyExists, FailedPrecondition, NotFound
from metacatalog.model import Dataset, Partition
from metacatalog.store import CatalogStore


def ds(name: str, n: int = 2) -> Dataset:
    parts = tuple(Partition(path=f"p{i}.parquet", num_rows=10, num_bytes=100, adler32=i + 1, order=1, pixel=44 + i,
                            stats={"ra": [1.0, 2.0]}) for i in range(n))
    return Dataset(name=name, origin="a", kind="catalog", root="/r", arrow_schema=b"\x01", num_rows=10 * n,
                   num_bytes=100 * n, ra_column="ra", dec_column="dec", partitions=parts, created="now")


def test_put_read_and_change_log(tmp_path):
    store = CatalogStore(tmp_path / "c.sqlite", "a")
    with store.transaction() as tx:
        tx.put_dataset(ds("x.one"))
        tx.put_dataset(ds("x.two", 3))
    assert store.dataset_names() == ["x.one", "x.two"]
    assert store.dataset("x.two").partitions[2].pixel == 46
    assert store.dataset("x.two").partitions[0].stats == {"ra": [1.0, 2.0]}
    changes = store.changes()
    assert [(c.seq, c.op, c.key) for c in changes] == [(1, "dataset.put", "x.one"), (2, "dataset.put", "x.two")]
    assert changes[1].payload["partitions"][2]["pixel"] == 46
    with store.transaction() as tx:
        tx.delete_dataset("x.one")
    assert store.sequence() == 3 and store.changes(after=2)[0].op == "dataset.delete"
    with pytest.raises(NotFound):
        store.dataset("x.one")


def test_transaction_is_all_or_nothing(tmp_path):
    store = CatalogStore(tmp_path / "c.sqlite", "a")
    with store.transaction() as tx:
        tx.put_dataset(ds("x.one"))
    with pytest.raises(AlreadyExists):
        with store.transaction() as tx:
            tx.put_dataset(ds("x.new"))
            tx.put_dataset(ds("x.one"))
    assert store.dataset_names() == ["x.one"] and store.sequence() == 1


def test_schema_version_and_owner_checked(tmp_path):
    store = CatalogStore(tmp_path / "c.sqlite", "a")
    store._conn().execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(FailedPrecondition, match="schema version 99"):
        CatalogStore(tmp_path / "c.sqlite", "a")
    CatalogStore(tmp_path / "d.sqlite", "a")
    with pytest.raises(FailedPrecondition, match="belongs to island"):
        CatalogStore(tmp_path / "d.sqlite", "b")


def test_concurrent_writers_get_distinct_sequences(tmp_path):
    store = CatalogStore(tmp_path / "c.sqlite", "a")

    def write(i):
        with store.transaction() as tx:
            tx.put_dataset(ds(f"x.t{i}"))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [c.seq for c in store.changes()] == list(range(1, 17))


def test_partition_statistics_read_again_follow_every_change(tmp_path):
    """Statistics are decoded once per distinct text and shared; a partition rewritten with
    other statistics (here or by another connection) reads as rewritten."""
    import dataclasses

    store = CatalogStore(tmp_path / "c.sqlite", "a")
    with store.transaction() as tx:
        tx.put_dataset(ds("x.one"))
    first, again = store.dataset("x.one"), store.dataset("x.one")
    assert first == again and first.partitions[0].stats is again.partitions[0].stats
    def rewritten(stats: dict) -> Dataset:
        parts = (first.partitions[0], dataclasses.replace(first.partitions[1], stats=stats))
        return dataclasses.replace(first, partitions=parts)

    with store.transaction() as tx:
        tx.put_dataset(rewritten({"ra": [1.5, 9.0], "dec": [-3, 4]}), replace=True)
    assert store.dataset("x.one").partitions[1].stats == {"ra": [1.5, 9.0], "dec": [-3, 4]}
    assert store.dataset("x.one").partitions[0].stats == {"ra": [1.0, 2.0]}
    other = CatalogStore(tmp_path / "c.sqlite", "a")
    with other.transaction() as tx:
        tx.put_dataset(rewritten({"ra": [0, 1]}), replace=True)
    assert store.dataset("x.one").partitions[1].stats == {"ra": [0, 1]}


def test_partition_statistics_kept_are_bounded(tmp_path, monkeypatch):
    """Past its budget of text the store forgets the statistics it decoded, and reads them
    right again."""
    monkeypatch.setattr(store_module, "_STATS_CHARS", 60)
    store = CatalogStore(tmp_path / "c.sqlite", "a")
    with store.transaction() as tx:
        tx.put_dataset(ds("x.one", 3))
    for _ in range(3):
        assert [p.stats for p in store.dataset("x.one").partitions] == [{"ra": [1.0, 2.0]}] * 3
    many = dataclasses.replace(ds("x.two", 6), partitions=tuple(
        dataclasses.replace(p, stats={"ra": [float(i), 9.0]}) for i, p in enumerate(ds("x.two", 6).partitions)))
    with store.transaction() as tx:
        tx.put_dataset(many)
    for _ in range(2):
        assert [p.stats["ra"][0] for p in store.dataset("x.two").partitions] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        assert store._stats_chars <= 60 and len(store._stats) <= 3
