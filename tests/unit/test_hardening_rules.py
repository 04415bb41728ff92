"""The pure rules behind issue 15's hardening: partition paths, synced records, the planning
budget, stream shares, the columns a dataset may have, the refused-change record."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pyarrow as pa
import pytest

from archipel.arrowwire import MessageTooLarge, decode_chunks
from archipel.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted
from archipel.names import check_partition_path
from federation import planner
from federation.sync import change_from_wire
from island.shares import FairShares
from island.storage.columns import check_registered_schema, conform_batch, publishable_schema
from metacatalog.model import Change, Dataset, Partition
from metacatalog.store import CatalogStore
from replication.layout import replica_path


@pytest.mark.parametrize("path", ["part-0.parquet", "dataset/Norder=1/Dir=0/Npix=44.parquet", "a b/c.parquet"])
def test_relative_normalised_paths_pass(path):
    assert check_partition_path(path) == path


@pytest.mark.parametrize("path,why", [
    ("", "empty"), ("/etc/shadow", "absolute"), ("../x", r"\.\."), ("a/../../x", r"\.\."),
    ("a/./b", "normalised"), ("a//b", "normalised"), ("a/", "normalised"), ("a\\b", "backslash"),
    ("a\0b", "NUL"), ("a\nb", "control"), ("x" * 2000, "longer"),
])
def test_hostile_paths_are_refused_saying_why(path, why):
    with pytest.raises(InvalidArgument, match=why):
        check_partition_path(path)


def test_replica_paths_stay_in_the_replica_folder(tmp_path):
    assert replica_path(tmp_path, "a.b", "x/y.parquet") == tmp_path / "a.b" / "x/y.parquet"
    (tmp_path / "a.b").mkdir()
    (tmp_path / "a.b" / "link").symlink_to("/etc")
    with pytest.raises(InvalidArgument, match="outside"):
        replica_path(tmp_path, "a.b", "link/passwd")
    with pytest.raises(InvalidArgument):
        replica_path(tmp_path, "../x", "y")


def _put(paths: list[str]) -> str:
    return json.dumps({"name": "m.t", "origin": "m", "kind": "table", "root": "/", "arrow_schema": "00",
                       "num_rows": 1, "num_bytes": 1,
                       "partitions": [{"path": p, "num_rows": 1, "num_bytes": 1, "adler32": 1} for p in paths]})


@pytest.mark.parametrize("op,payload", [
    ("dataset.put", _put(["/etc/shadow"])),
    ("dataset.put", _put(["ok.parquet", "../../x"])),
    ("replica.put", json.dumps({"pids": ["/etc/shadow"]})),
    ("replica.delete", json.dumps({"pids": ["a/../../b"]})),
    ("replica.put", json.dumps({"pids": []})),
    ("dataset.append", json.dumps({"partitions": [{"path": "/x", "num_rows": 1, "num_bytes": 1, "adler32": 1}],
                                   "num_rows": 1, "num_bytes": 1})),
])
def test_synced_records_naming_host_paths_are_refused(op, payload):
    with pytest.raises(InvalidArgument):
        change_from_wire("m", 1, op, "m.t", payload, 0.0)


def test_a_good_record_passes():
    change = change_from_wire("m", 1, "dataset.put", "m.t", _put(["a/b.parquet"]), 0.0)
    assert change.op == "dataset.put"


def test_a_refused_change_moves_the_cursor_but_is_not_applied_nor_given_to_subscriptions(tmp_path):
    store = CatalogStore(tmp_path / "c.sqlite", "here")
    bad = Change("m", 1, "dataset.put", "m.t", {}, 0.0, b"sig", "{not json")
    with store.transaction() as tx:
        assert tx.apply_or_refuse(bad, None, "malformed") == "malformed"
    ds = Dataset(name="m.u", origin="other", kind="table", root="/", arrow_schema=b"", num_rows=0, num_bytes=0)
    clash = Change("m", 2, "dataset.append", "m.u", {"parsed_partitions": [], "num_rows": 1, "num_bytes": 1},
                   0.0, b"sig", "{}")
    with store.transaction() as tx:
        tx.put_dataset(ds)
        assert "does not own it" in tx.apply_or_refuse(clash, None)
    assert store.sequence("m") == 2
    assert [(o, q, r[:9]) for o, q, _, _, r in store.refused_changes()] == [("m", 2, "an append"), ("m", 1, "malformed")]
    found, _ = store.changes_since(0, ("dataset.put", "dataset.append"))
    assert [c.origin for _, c in found] == ["here"]  # the island's own put only
    assert [c.seq for c in store.changes("m")] == [1, 2]  # relayed, for followers to decide


def test_a_change_over_the_size_limit_is_refused_when_written(tmp_path):
    store = CatalogStore(tmp_path / "c.sqlite", "here", max_change_bytes=2000)
    parts = tuple(Partition(path=f"p{i}.parquet", num_rows=1, num_bytes=1, adler32=1) for i in range(100))
    ds = Dataset(name="h.t", origin="here", kind="table", root="/", arrow_schema=b"", num_rows=1, num_bytes=1,
                 partitions=parts)
    with pytest.raises(ResourceExhausted, match="max_change_bytes"):
        with store.transaction() as tx:
            tx.put_dataset(ds)
    assert not store.has_dataset("h.t") and store.sequence() == 0


@pytest.mark.parametrize("sql,error,match", [
    ("SELECT x FROM t WHERE " + " OR ".join(f"cone(ra, dec, {i}, 0, 1)" for i in range(65)), InvalidArgument,
     "65 sky predicates"),
    ("SELECT " + "(" * 65 + "x" + ")" * 65 + " FROM t", InvalidArgument, "nests"),
    ("SELECT '" + "(" * 500 + "' AS s FROM t", NotImplementedError, ""),  # parentheses in a string count not
    ("SELECT lpad('x', 5000000, 'y') FROM t", InvalidArgument, r"pad\(\) with a count of 5000000"),
    ("SELECT x FROM t WHERE cone(ra, dec, 'NaN', 0, 1)", InvalidArgument, "string"),
    ("SELECT x FROM t " + " " * (300 * 1024), InvalidArgument, "characters"),
])
def test_the_planning_budget(sql, error, match):
    ds = Dataset(name="t", origin="i", kind="table", root="/", arrow_schema=b"", num_rows=0, num_bytes=0)
    if error is NotImplementedError:
        assert planner.plan_query(sql, lambda name: ds).tables
        return
    with pytest.raises(error, match=match):
        planner.plan_query(sql, lambda name: ds)


def test_planning_time_is_bounded():
    ds = Dataset(name="t", origin="i", kind="table", root="/", arrow_schema=b"", num_rows=0, num_bytes=0)
    with pytest.raises(DeadlineExceeded, match="planning the query took more than"):
        planner.plan_query("SELECT x FROM t WHERE cone(ra, dec, 1, 0, 1) OR cone(ra, dec, 2, 0, 1)",
                           lambda name: ds, budget_seconds=-1)


def test_stream_shares_per_caller_and_island():
    shares = FairShares()
    limits = SimpleNamespace(streams=3, streams_per_caller=2)
    held = [shares.take_stream("u", limits), shares.take_stream("u", limits)]
    with pytest.raises(ResourceExhausted, match="streams_per_caller = 2"):
        shares.take_stream("u", limits)
    held.append(shares.take_stream("v", limits))
    with pytest.raises(ResourceExhausted, match=r"\[limits\] streams = 3"):
        shares.take_stream("w", limits)
    held[0]()
    held[0]()  # released twice: counted once
    held.append(shares.take_stream("w", limits))
    with pytest.raises(ResourceExhausted):
        shares.take_stream("x", limits)


def test_columns_a_dataset_may_have():
    with pytest.raises(ResourceExhausted, match="max_columns"):
        publishable_schema(pa.schema([(f"c{i}", pa.int8()) for i in range(11)]), 10)
    with pytest.raises(InvalidArgument, match="duplicate column name 'RA'"):
        publishable_schema(pa.schema([("ra", pa.int8()), ("RA", pa.int8())]), 0)
    stored = publishable_schema(pa.schema([("t", pa.timestamp("ns", tz="UTC"))]), 0)
    assert stored.field("t").type == pa.timestamp("us", tz="UTC")
    batch = pa.record_batch([pa.array([1_500], pa.timestamp("ns", tz="UTC"))], names=["t"])
    assert conform_batch(batch, stored).column(0).cast(pa.int64()).to_pylist() == [1]
    with pytest.raises(InvalidArgument, match="timestamp"):
        check_registered_schema(pa.schema([("t", pa.timestamp("ns"))]), 0, "x.parquet")


def test_fragments_are_bounded():
    schema = pa.schema([("x", pa.int64())])
    with pytest.raises(MessageTooLarge):
        list(decode_chunks([(b"\0" * 600, True), (b"\0" * 600, True), (b"", False)], schema, max_message=1000))
