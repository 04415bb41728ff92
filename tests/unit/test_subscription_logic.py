"""Subscription logic over a real catalog store (no servers): matching changes after a
cursor, the filter's checks, durable cursors, and the catalog upgrade that numbers changes."""

import sqlite3
from dataclasses import replace

import pyarrow as pa
import pytest

from archipel.arrowwire import serialize_schema
from archipel.errors import AlreadyExists, InvalidArgument, NotFound
from federation.rules import Region
from federation.subscriptions import Filter, SubscriptionBook, check_where, parse_start, row_query
from metacatalog.model import Dataset, Partition
from metacatalog.sky import Cone, partitions_in_cone
from metacatalog.store import SCHEMA_VERSION, CatalogStore


SCHEMA = serialize_schema(pa.schema([("id", pa.int64()), ("ra", pa.float64()), ("dec", pa.float64()),
                                     ("mag", pa.float64())]))


def part(path: str, pixel: int, adler: int = 1, order: int = 2) -> Partition:
    return Partition(path=path, num_rows=10, num_bytes=100, adler32=adler, order=order, pixel=pixel)


def ds(name: str, parts: tuple[Partition, ...], origin: str = "b") -> Dataset:
    return Dataset(name=name, origin=origin, kind="catalog", root="/r", arrow_schema=SCHEMA,
                   num_rows=10 * len(parts), num_bytes=100 * len(parts), ra_column="ra", dec_column="dec",
                   partitions=parts, created="now")


@pytest.fixture
def book(tmp_path):
    store = CatalogStore(tmp_path / "c.sqlite", "a")
    return SubscriptionBook(store, "a")


def test_matches_follow_puts_and_appends_in_commit_order(book):
    store = book.store
    with store.transaction() as w:
        w.put_dataset(ds("ztf.alerts", (part("p0", 0), part("p1", 1))))
        w.put_dataset(ds("gaia.dr3", (part("g0", 0),)))
    with store.transaction() as w:
        w.append_partitions("ztf.alerts", [part("p1-append", 1, adler=7)])
    found, scanned = book.matches(Filter("ztf.*"), 0)
    assert [(m.op, [p.pid for p in m.partitions]) for m in found] == [("put", ["p0", "p1"]), ("append", ["p1-append"])]
    assert scanned == store.position() == 3
    positions = [m.pos for m in found]
    assert positions == sorted(positions)
    # After the first match's cursor only the append is left.
    assert [m.op for m in book.matches(Filter("ztf.*"), positions[0])[0]] == ["append"]
    assert book.matches(Filter("ztf.*"), scanned) == ([], scanned)
    assert [m.dataset.name for m in book.matches(Filter("*"), 0)[0]] == ["ztf.alerts", "gaia.dr3", "ztf.alerts"]


def test_replaced_or_deleted_data_is_matched_where_its_current_version_came(book):
    store = book.store
    with store.transaction() as w:
        w.put_dataset(ds("x.one", (part("p0", 0, adler=1), part("p1", 1, adler=1))))
    with store.transaction() as w:  # p1 replaced by another file, p0 unchanged
        w.put_dataset(ds("x.one", (part("p0", 0, adler=1), part("p1", 1, adler=2))), replace=True)
    found, _ = book.matches(Filter("x.one"), 0)
    assert [[p.pid for p in m.partitions] for m in found] == [["p0"], ["p0", "p1"]]
    assert found[1].partitions[1].adler32 == 2
    with store.transaction() as w:
        w.delete_dataset("x.one")
    assert book.matches(Filter("x.one"), 0)[0] == []


def test_region_keeps_the_partitions_covering_it(book):
    parts = tuple(part(f"p{i}", i, order=2) for i in range(0, 48, 3))
    with book.store.transaction() as w:
        w.put_dataset(ds("sky.cat", parts))
    cone = Cone(45.0, 20.0, 10.0)
    want = {p.pid for p, k in zip(parts, partitions_in_cone([(p.order, p.pixel) for p in parts], cone)) if k}
    found, _ = book.matches(Filter("sky.cat", region=Region(cone=cone)), 0)
    assert want and len(want) < len(parts)
    assert {p.pid for m in found for p in m.partitions} == want


def test_start_positions_and_unknown_cursors():
    assert parse_start("latest", 10, "a") is None
    assert parse_start("", 10, "a") is None
    assert parse_start("earliest", 10, "a") == 0
    assert parse_start("7", 10, "a") == 7
    with pytest.raises(InvalidArgument, match="unknown cursor 11"):
        parse_start("11", 10, "a")
    for bad in ("-1", "abc", "1e3", "9" * 30):
        with pytest.raises(InvalidArgument, match="start_at"):
            parse_start(bad, 10, "a")


def test_predicates_are_single_expressions():
    assert check_where("") == ""
    assert check_where("mag < 18 AND flag = 'ok'") == "mag < 18 AND flag = 'ok'"
    for bad, message in [("mag <", "invalid predicate"), ("SELECT 1", "not a query"),
                         ("mag < (SELECT max(mag) FROM other)", "not a query"), ("a; b", "one SQL expression"),
                         ("1=1) OR (1=1", "invalid predicate"), ("x" * 70_000, "longer")]:
        with pytest.raises(InvalidArgument, match=message):
            check_where(bad)


def test_row_query_quotes_names_and_adds_the_cone():
    d = ds("odd`name", ())
    f = Filter("odd*", "mag < 18", Region(cone=Cone(1.0, 2.0, 3.0)), ("id", "we`ird"))
    assert row_query(d, f) == ("SELECT `id`, `we``ird` FROM `odd``name` WHERE (mag < 18) AND "
                               "cone(`ra`, `dec`, 1.0, 2.0, 3.0)")
    assert Filter.from_json(f.to_json()) == f


def test_named_subscriptions_resume_and_cursors_only_move_forward(book):
    store = book.store
    with store.transaction() as w:
        w.put_dataset(ds("x.one", (part("p0", 0),)))
    f = book.make_filter("x.*", "mag < 18")
    sub = book.open("mine", f, "rows", "earliest")
    assert (sub.cursor, sub.durable) == (0, True)
    book.ack("mine", 1)
    book.ack("mine", 0)  # never back
    book.ack("mine", 99)  # never past the stream
    assert book.get("mine").cursor == 1
    assert book.open("mine", f, "rows").cursor == 1  # "latest" resumes
    assert book.open("mine", f, "rows", "0").cursor == 0  # an explicit cursor moves it
    with pytest.raises(AlreadyExists, match="another filter"):
        book.open("mine", replace(f, where="mag < 10"), "rows")
    with pytest.raises(InvalidArgument, match="invalid subscription name"):
        book.open("no spaces", f, "rows")
    tmp = book.open("", f, "events")
    assert not tmp.durable and tmp.name.startswith("tmp-")
    assert book.drop_transient() == 1
    assert [s.name for s in book.subscriptions()] == ["mine"]
    book.delete("mine")
    with pytest.raises(NotFound):
        book.get("mine")


def test_filters_are_checked_against_the_datasets_matching_now(book):
    with book.store.transaction() as w:
        w.put_dataset(replace(ds("flat.table", (Partition(path="f0", num_rows=1, num_bytes=1, adler32=1),)),
                              ra_column="", dec_column=""))
    with pytest.raises(InvalidArgument, match="not partitioned on the sky"):
        book.make_filter("flat.*", cone=(1, 2, 3))
    assert book.make_filter("not.yet.here").pattern == "not.yet.here"  # may come from a peer
    assert book.make_filter("later.*").pattern == "later.*"  # a pattern may wait for datasets to come
    with pytest.raises(InvalidArgument, match="pattern"):
        book.make_filter("../etc")
    with pytest.raises(InvalidArgument, match="mode"):
        book.make_filter("flat.*", mode="all")
    with pytest.raises(InvalidArgument, match="twice"):
        book.make_filter("later.*", columns=["a", "a"])


def test_v2_catalog_upgrades_numbering_changes_in_commit_order(tmp_path):
    path = tmp_path / "old.sqlite"
    store = CatalogStore(path, "a")
    with store.transaction() as w:
        w.put_dataset(ds("x.one", (part("p0", 0),)))
        w.put_dataset(ds("x.two", (part("q0", 0),)))
    store.close()
    with sqlite3.connect(path) as db:  # back to version 2's changes table, without positions
        db.executescript("""
            CREATE TABLE old AS SELECT origin, seq, op, key, payload, ts FROM changes ORDER BY pos;
            DROP TABLE changes;
            CREATE TABLE changes (origin TEXT NOT NULL, seq INTEGER NOT NULL, op TEXT NOT NULL, key TEXT NOT NULL,
                                  payload TEXT NOT NULL, ts REAL NOT NULL, PRIMARY KEY (origin, seq));
            INSERT INTO changes SELECT * FROM old; DROP TABLE old;
            DROP TABLE subscriptions;
            UPDATE meta SET value='2' WHERE key='schema_version';
        """)
    upgraded = CatalogStore(path, "a")
    assert upgraded.meta("schema_version") == str(SCHEMA_VERSION)
    assert upgraded.position() == 2
    found, _ = SubscriptionBook(upgraded, "a").matches(Filter("x.*"), 0)
    assert [(m.pos, m.dataset.name) for m in found] == [(1, "x.one"), (2, "x.two")]
    with upgraded.transaction() as w:
        w.append_partitions("x.one", [part("p0-append", 0, adler=5)])
    assert upgraded.position() == 3 and upgraded.sequence() == 3


def test_v3_catalog_upgrades_to_access_facts_and_signed_changes(tmp_path):
    path = tmp_path / "v3.sqlite"
    store = CatalogStore(path, "a")
    with store.transaction() as w:
        w.put_dataset(ds("x.one", (part("p0", 0),)))
    store.close()
    with sqlite3.connect(path) as db:  # back to version 3: no access facts, no signatures, no rule owners
        db.executescript("""
            ALTER TABLE datasets DROP COLUMN owner; ALTER TABLE datasets DROP COLUMN readers;
            ALTER TABLE datasets DROP COLUMN public_after; ALTER TABLE changes DROP COLUMN sig;
            ALTER TABLE rules DROP COLUMN owner;
            UPDATE meta SET value='3' WHERE key='schema_version';
        """)
    signed: list[bytes] = []
    upgraded = CatalogStore(path, "a", signer=lambda data: signed.append(data) or b"sig")
    assert upgraded.meta("schema_version") == str(SCHEMA_VERSION)
    one = upgraded.dataset("x.one")
    assert (one.owner, one.readers, one.public_after) == ("", ("public",), "")  # older data stays public
    assert upgraded.sign_own_changes() == 1 and len(signed) == 1
    assert [c.signature for c in upgraded.changes()] == [b"sig"]
    assert upgraded.sign_own_changes() == 0


def test_a_stream_cursor_moves_only_over_what_was_delivered_and_acknowledged():
    from federation.subscriptions import StreamCursor

    c = StreamCursor(acked=10, delivered=10)
    assert c.on_idle(15) == 15                      # nothing pending, nothing matched: moves on
    c.on_delivered(20)
    assert c.on_idle(25) is None                    # 20 delivered, not acknowledged: stays
    assert c.on_ack(99) == 20                       # an ack past what was delivered is cut to it
    assert c.on_ack(5) == 20                        # and never moves back
    assert c.on_idle(25) == 25
    c.on_delivered(30)
    c.on_delivered(28)                              # an older position does not lower it
    assert (c.acked, c.delivered) == (25, 30)
