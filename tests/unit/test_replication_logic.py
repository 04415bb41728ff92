"""The pure parts of replication: sources, eviction, coverage, lazy-replication policy, and the
catalog's transfer records (a real SQLite store, no servers)."""

from __future__ import annotations

import pytest

from archipel.errors import InvalidArgument
from federation.lazy import estimate_result_bytes, localize
from federation.planner import QueryPlan, TableScan
from federation.rules import Region, covered
from federation.sync import change_from_wire
from metacatalog.model import Dataset, Partition
from metacatalog.sky import parse_moc, partitions_in_moc
from metacatalog.store import CatalogStore
from metacatalog import transfers
from replication import cache
from replication.mover import order_sources, partition_url


def _part(order: int, pixel: int, nbytes: int = 100) -> Partition:
    return Partition(path=f"dataset/Norder={order}/Dir=0/Npix={pixel}.parquet", num_rows=10, num_bytes=nbytes,
                     adler32=pixel + 1, order=order, pixel=pixel)


def _sky(origin: str = "a", parts=None) -> Dataset:
    parts = parts if parts is not None else [_part(0, i) for i in range(12)]
    return Dataset(name="s.cat", origin=origin, kind="catalog", root="/data/s", arrow_schema=b"", num_rows=120,
                   num_bytes=sum(p.num_bytes for p in parts), ra_column="ra", dec_column="dec",
                   partitions=tuple(parts))


def test_sources_best_first():
    urls = {"a": ("http://a/data", "root://a:1/"), "b": ("http://b/data", ""), "c": ("http://c/data", "root://c:1/")}
    got = order_sources(["c", "a", "b", "me"], "a", urls, ["root", "http"], down=set(), here="me")
    assert got == [("a", "root://a:1/"), ("a", "http://a/data"), ("b", "http://b/data"),
                   ("c", "root://c:1/"), ("c", "http://c/data")]
    got = order_sources(["c", "a"], "a", urls, ["http"], down={"a"}, here="me")
    assert got == [("c", "http://c/data"), ("a", "http://a/data")]  # a down: tried last
    assert partition_url("root://h:1/", "s.cat", "d/x.parquet") == "root://h:1//s.cat/d/x.parquet"
    assert partition_url("http://h:2/data", "s.cat", "d/N=1 x.parquet") == "http://h:2/data/s.cat/d/N%3D1%20x.parquet"


def test_eviction_is_lru_and_spares_pinned_and_in_use_files():
    files = [(("d", "p1"), 40, 1.0), (("d", "p2"), 40, 2.0), (("d", "p3"), 40, 3.0), (("d", "p4"), 40, 4.0)]
    assert cache.choose_evictions(files, set(), quota=200) == []
    assert cache.choose_evictions(files, set(), quota=100) == [("d", "p1"), ("d", "p2")]
    assert cache.choose_evictions(files, {("d", "p1")}, quota=100) == [("d", "p2"), ("d", "p3")]
    assert cache.choose_evictions(files, {("d", "p1")}, quota=100, keep={("d", "p2")}) == [("d", "p3"), ("d", "p4")]
    # everything pinned: nothing evicted even over the quota
    pins = {k for k, _, _ in files}
    assert cache.choose_evictions(files, pins, quota=10) == []


def test_coverage_of_cones_and_mocs():
    ds = _sky()
    assert len(covered(ds, Region())) == 12
    north = covered(ds, Region.make(cone=(0, 90, 1)))
    assert {p.pixel for p in north} == {0, 1, 2, 3}  # the four order-0 cells meeting at the pole
    assert {p.pixel for p in covered(ds, Region.make(moc="0/5 1/40"))} == {5, 10}
    with pytest.raises(InvalidArgument, match="negative"):
        Region.make(cone=(0, 0, -1))
    with pytest.raises(InvalidArgument, match="not both"):
        Region.make(cone=(0, 0, 1), moc="0/1")
    plain = Dataset(name="t.t", origin="a", kind="table", root="/", arrow_schema=b"", num_rows=0, num_bytes=0,
                    partitions=(Partition("f.parquet", 1, 1, 1),))
    with pytest.raises(InvalidArgument, match="not partitioned on the sky"):
        covered(plain, Region.make(cone=(0, 0, 1)))
    moc = parse_moc("2/0-3")
    assert partitions_in_moc([(0, 0), (1, 0), (1, 1), (2, 4), (3, 15), (3, 16)], moc) == [
        True, True, False, False, True, False]
    region = Region.make(cone=(10, 20, 3))
    assert Region.from_json(region.to_json()) == region


def _plan(ds: Dataset, sql: str = "SELECT * FROM s.cat", parts=None) -> QueryPlan:
    scan = TableScan(view="v0", dataset=ds, partitions=list(parts if parts is not None else ds.partitions))
    return QueryPlan(sql=sql, tables=[scan], engine="arrow", engine_reason="", spark_sql="", duckdb_sql="")


def test_lazy_policy():
    ds = _sky("b", [_part(0, i, nbytes=100_000) for i in range(12)])
    scan_plan = _plan(ds, parts=ds.partitions[:2])
    root = lambda d: f"/replicas/{d}"  # noqa: E731
    # replicas held here are read here, whatever the route
    loc = localize(scan_plan, "a", "auto", lambda d: {p.pid for p in ds.partitions}, root, 0)
    assert loc.plan.tables[0].dataset.origin == "a" and loc.plan.tables[0].dataset.root == "/replicas/s.cat"
    assert loc.to_copy == []
    # replicate copies what is missing
    loc = localize(scan_plan, "a", "replicate", lambda d: {ds.partitions[0].pid}, root, 0)
    assert [p.pid for p in loc.to_copy[0][1]] == [ds.partitions[1].pid]
    # auto: a scan's result outweighs its partitions; a count does not
    loc = localize(scan_plan, "a", "auto", lambda d: set(), root, 10**6)
    assert loc.to_copy and loc.plan.tables[0].dataset.origin == "a"
    count = _plan(ds, "SELECT count(*) FROM s.cat", ds.partitions[:2])
    loc = localize(count, "a", "auto", lambda d: set(), root, 10**6)
    assert not loc.to_copy and loc.plan.tables[0].dataset.origin == "b"
    assert estimate_result_bytes(count) == 1024
    assert estimate_result_bytes(_plan(ds, "SELECT * FROM s.cat LIMIT 1")) < estimate_result_bytes(_plan(ds))
    # auto with copying off, or over the cap, leaves it to the router
    assert not localize(scan_plan, "a", "auto", lambda d: set(), root, 0).to_copy
    assert not localize(scan_plan, "a", "auto", lambda d: set(), root, 10).to_copy
    assert not localize(scan_plan, "a", "remote", lambda d: set(), root, 10**6).to_copy


def test_transfer_records_copy_once_and_survive_a_dead_worker(tmp_path):
    store = CatalogStore(tmp_path / "c.sqlite", "me")
    ds = _sky("b")
    with store.transaction() as w:
        w.apply_remote(change_from_wire("b", 1, "dataset.put", ds.name, _payload(ds), 0.0), ds)
    pids = [p.pid for p in ds.partitions[:3]]
    assert transfers.request(store, ds.name, pids) == pids
    assert transfers.request(store, ds.name, pids) == []  # in flight: no second message
    assert transfers.claim(store, ds.name, pids[0], "w1@me")
    assert not transfers.claim(store, ds.name, pids[0], "w2@me")  # held by a live lease
    assert transfers.release_worker(store, "w1@me") == 1  # w1 died
    assert transfers.claim(store, ds.name, pids[0], "w2@me")
    p0 = ds.partitions[0]
    transfers.complete(store, ds.name, pids[0], p0.num_bytes, p0.adler32, "b")
    assert store.valid_replicas(ds.name) == {pids[0]}
    assert store.changes() == [] and store.unannounced() == 1  # told to peers later
    with store.transaction() as w:
        assert w.announce_replicas() == 1
    assert (store.changes()[-1].op, store.changes()[-1].payload) == ("replica.put", {"pids": [pids[0]]})
    assert store.unannounced() == 0
    transfers.fail(store, ds.name, pids[1], "w2@me", "b: cannot open", 3)
    assert transfers.states(store, ds.name)[pids[1]].state == "failed"
    assert transfers.request(store, ds.name, [pids[1]]) == [pids[1]]  # asked again: sent again
    assert transfers.report_error(store, "b", "unreachable") and not transfers.report_error(store, "b", "unreachable")
    # the partition changes at the origin: the replica is stale, not valid
    changed = Partition(p0.path, p0.num_rows, p0.num_bytes, p0.adler32 + 7, p0.order, p0.pixel)
    ds2 = Dataset(**{**ds.__dict__, "partitions": (changed, *ds.partitions[1:])})
    with store.transaction() as w:
        w.apply_remote(change_from_wire("b", 2, "dataset.put", ds.name, _payload(ds2), 0.0), ds2)
    assert store.valid_replicas(ds.name) == set() and store.stale_replicas() == [(ds.name, pids[0])]


def test_replicas_landed_together_are_announced_in_few_changes(tmp_path):
    """A rule's files land one by one; peers are told of them in one replica.put per dataset
    (several when the names would make a change too large), never of one dropped meanwhile."""
    store = CatalogStore(tmp_path / "c.sqlite", "me", max_change_bytes=4000)
    sky, other = _sky("b"), _sky("b", [_part(3, i) for i in range(4)])
    other = Dataset(**{**other.__dict__, "name": "b.other"})
    with store.transaction() as w:
        w.apply_remote(change_from_wire("b", 1, "dataset.put", sky.name, _payload(sky), 0.0), sky)
        w.apply_remote(change_from_wire("b", 2, "dataset.put", other.name, _payload(other), 0.0), other)
    # names JSON escapes (\u00e9) take more room in a change than their length says
    many = [Partition(f"Norder=9/Dir=0/Npix={i}-{'é' * 12}.parquet", 1, 1, 1, 9, i) for i in range(120)]
    before = len(store.changes())
    for p in [*sky.partitions, *other.partitions]:
        ds = sky.name if p in sky.partitions else other.name
        transfers.request(store, ds, [p.pid])
        transfers.complete(store, ds, p.pid, p.num_bytes, p.adler32, "b")
    with store.transaction() as w:  # replica names of a third dataset, more than fit in one change
        w.put_replicas("b.many", [p.pid for p in many], [1] * len(many), [1] * len(many))
        w.delete_replicas(sky.name, [sky.partitions[0].pid])  # evicted before it was announced
    assert len(store.changes()) == before + 1  # the eviction only
    with store.transaction() as w:
        told = w.announce_replicas()
    assert told == len(sky.partitions) - 1 + len(other.partitions) + len(many)
    new = [c for c in store.changes()[before + 1:]]
    assert all(c.op == "replica.put" for c in new)
    by_dataset: dict[str, list[str]] = {}
    for c in new:
        by_dataset.setdefault(c.key, []).extend(c.payload["pids"])
    assert sorted(by_dataset[sky.name]) == sorted(p.pid for p in sky.partitions[1:])
    assert sorted(by_dataset[other.name]) == sorted(p.pid for p in other.partitions)
    assert sorted(by_dataset["b.many"]) == sorted(p.pid for p in many)
    assert [c.key for c in new].count(sky.name) == 1 and [c.key for c in new].count(other.name) == 1
    assert [c.key for c in new].count("b.many") > 1  # 120 names over 2000 bytes: split
    assert all(len(c.payload_json) <= store.max_change_bytes for c in new)
    assert store.unannounced() == 0
    with store.transaction() as w:
        assert w.announce_replicas() == 0  # nothing twice


def _payload(ds: Dataset) -> str:
    import json
    from dataclasses import asdict

    d = asdict(ds)
    d["arrow_schema"] = ds.arrow_schema.hex()
    return json.dumps(d)


def test_peer_changes_of_replicas_and_islands_are_checked():
    ok = change_from_wire("b", 3, "replica.put", "s.cat", '{"pids": ["dataset/x.parquet"]}', 0.0)
    assert ok.payload["pids"] == ["dataset/x.parquet"]
    for payload in ('{"pids": ["../../etc/passwd"]}', '{"pids": "x"}', '{"pids": ["/abs"]}', "{}"):
        with pytest.raises(InvalidArgument):
            change_from_wire("b", 3, "replica.put", "s.cat", payload, 0.0)
    assert change_from_wire("b", 1, "island.put", "b", '{"http": "http://h:1/data", "root": ""}', 0.0)
    with pytest.raises(InvalidArgument, match="not its own"):
        change_from_wire("b", 1, "island.put", "c", '{"http": "http://h:1/data"}', 0.0)
    with pytest.raises(InvalidArgument, match="malformed"):
        change_from_wire("b", 1, "island.put", "b", '{"http": "file:///etc/passwd"}', 0.0)


def test_may_copy_from_the_shape_alone():
    from federation.lazy import may_copy
    from federation.planner import query_shape

    orders = {"s.cat": 2, "t.t": None}.get
    assert not may_copy(query_shape("SELECT count(*) FROM s.cat"), orders)
    assert not may_copy(query_shape("SELECT * FROM s.cat WHERE cone(ra, dec, 10, 20, 0.5)"), orders)
    assert may_copy(query_shape("SELECT * FROM s.cat WHERE cone(ra, dec, 10, 20, 30)"), orders)
    assert may_copy(query_shape("SELECT * FROM s.cat"), orders)
    assert may_copy(query_shape("SELECT * FROM t.t WHERE cone(ra, dec, 10, 20, 0.5)"), orders)
    shape = query_shape("WITH x AS (SELECT * FROM s.cat) SELECT * FROM x JOIN t.t ON x.id = t.id")
    assert shape.names == {"s.cat", "t.t"} and not shape.aggregate and shape.smallest_cone is None
    assert query_shape("SELECT * FROM") is None


def test_appends_from_peers_are_checked_and_applied(tmp_path):
    import json

    store = CatalogStore(tmp_path / "c.sqlite", "me")
    ds = _sky("b", [_part(0, 1)])
    with store.transaction() as w:
        w.apply_remote(change_from_wire("b", 1, "dataset.put", ds.name, _payload(ds), 0.0), ds)
    new = {"path": "dataset/Norder=0/Dir=0/Npix=1/append-x.parquet", "num_rows": 5, "num_bytes": 50,
           "adler32": 9, "order": 0, "pixel": 1, "stats": {}}
    payload = json.dumps({"partitions": [new], "num_rows": 15, "num_bytes": 150, "moc": "0/1", "sky_fraction": 0.08})
    change = change_from_wire("b", 2, "dataset.append", ds.name, payload, 0.0)
    with store.transaction() as w:
        w.apply_remote(change, None)
    got = store.dataset(ds.name)
    assert got.num_rows == 15 and len(got.partitions) == 2
    assert "parsed_partitions" not in store.changes("b")[-1].payload  # stored as received
    for bad in ('{"partitions": [], "num_rows": 1, "num_bytes": 1}',
                '{"partitions": [{"path": "../../x", "num_rows": 1, "num_bytes": 1, "adler32": 1}], '
                '"num_rows": 1, "num_bytes": 1}', '{"num_rows": 1}'):
        with pytest.raises(InvalidArgument):
            change_from_wire("b", 3, "dataset.append", ds.name, bad, 0.0)
    # an append from an island that does not own the dataset is refused
    forged = change_from_wire("c", 1, "dataset.append", ds.name, payload, 0.0)
    with pytest.raises(Exception, match="does not own"):
        with store.transaction() as w:
            w.apply_remote(forged, None)
    assert store.dataset(ds.name).num_rows == 15


def _request(tmp_path, files: int, protocols: list[str]):
    """A catalog knowing island "there", a dataset of ``files`` partitions it holds, and the
    mover of island "here" on a real on-disk Celery queue."""
    from replication.celery_app import make_app
    from replication.mover import Mover

    store = CatalogStore(tmp_path / "catalog.sqlite", "here")
    with store.transaction() as w:
        w.put_island("there", "https://127.0.0.1:1", "root://127.0.0.1:2")
    parts = tuple(Partition(path=f"Norder=1/Dir=0/Npix={i}.parquet", num_rows=1, num_bytes=10 + i, adler32=i,
                            order=1, pixel=i) for i in range(files))
    ds = Dataset(name="sky.obj", origin="there", kind="catalog", root="/", arrow_schema=b"", num_rows=files,
                 num_bytes=sum(p.num_bytes for p in parts), ra_column="ra", dec_column="dec", partitions=parts)
    return store, ds, parts, Mover(store, make_app("", tmp_path / "queue", "here"), "here", tmp_path / "data",
                                   protocols)


def _queued_jobs(folder) -> list[tuple[str, list[dict]]]:
    """(task name, its jobs) of every message in an on-disk Celery queue, oldest first."""
    import base64
    import json

    out = []
    for m in sorted(folder.glob("*.msg"), key=lambda p: p.stat().st_mtime_ns):
        msg = json.loads(m.read_text())
        arg = json.loads(base64.b64decode(msg["body"]))[0][0]
        out.append((msg["headers"]["task"], arg if isinstance(arg, list) else [arg]))
    return out


def test_a_requests_jobs_all_reach_the_queue_the_first_one_first(tmp_path):
    """The mover sends a request's first job at once and the others from its sending thread,
    several files to a message (at least two messages per copy thread): after stop() every
    job is in the (real, on-disk) Celery queue, each partition once, the first alone and
    without a lead to wait for and the others naming it; asked again, nothing is sent."""
    from replication.celery_app import COPY_BATCH_TASK, COPY_TASK

    store, ds, parts, mover = _request(tmp_path, 20, ["root", "http"])
    mover.warm_up()
    assert sorted(mover.want(ds, parts)) == sorted(p.pid for p in parts)
    mover.stop()
    messages = _queued_jobs(tmp_path / "queue")
    assert messages[0][0] == COPY_TASK and len(messages[0][1]) == 1
    # 19 files for 4 copy threads: 3 to a message, 7 messages
    assert [(task, len(batch)) for task, batch in messages[1:]] == [(COPY_BATCH_TASK, 3)] * 6 + [(COPY_BATCH_TASK, 1)]
    jobs = [job for _, batch in messages for job in batch]
    assert sorted(j["pid"] for j in jobs) == sorted(p.pid for p in parts)
    lead = [j for j in jobs if not j["after"]]
    assert [j["pid"] for j in lead] == [parts[0].pid]
    assert all(j["after"] == parts[0].pid for j in jobs if j is not lead[0])
    assert lead[0]["sources"] == [["there", partition_url("root://127.0.0.1:2", "sky.obj", parts[0].pid)],
                                  ["there", partition_url("https://127.0.0.1:1", "sky.obj", parts[0].pid)]]
    assert mover.want(ds, parts) == []  # pending already: no second message
    mover.stop()
    assert len(_queued_jobs(tmp_path / "queue")) == 8


def test_a_job_waits_for_its_lead_copying_in_the_same_process_on_its_event(tmp_path, monkeypatch):
    """The request's first file copies in this worker process: the others wait on its event and
    go as soon as it is set, though the catalog still says 'copying' (asking it would have kept
    them waiting for the whole lead time, set here far beyond the test's patience)."""
    import threading

    from replication import worker

    store = CatalogStore(tmp_path / "catalog.sqlite", "here")
    transfers.request(store, "sky.obj", ["lead", "next"])
    assert transfers.claim(store, "sky.obj", "lead", "w1")
    monkeypatch.setattr(worker, "LEAD_SECONDS", 3600.0)
    done = threading.Event()
    monkeypatch.setitem(worker._copying, ("sky.obj", "lead"), done)
    waiter = threading.Thread(target=worker._let_lead_go, args=(store, "sky.obj", "lead"), daemon=True)
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # the lead is still copying
    done.set()
    waiter.join(30)
    assert not waiter.is_alive()
    assert transfers.states(store, "sky.obj", ["lead"])["lead"].state == "copying"
    # A lead that is not copied here, and done: the catalog says so.
    monkeypatch.delitem(worker._copying, ("sky.obj", "lead"))
    transfers.complete(store, "sky.obj", "lead", 1, 1, "there")
    worker._let_lead_go(store, "sky.obj", "lead")


def test_a_requests_other_jobs_are_sent_once_its_first_file_is_copied(tmp_path, monkeypatch):
    """The first replica has the machine to itself: the island sends a request's other jobs
    when its first file is copied (told by the catalog's commit), not while it copies."""
    import threading

    from replication import mover as mover_module

    monkeypatch.setattr(mover_module, "LEAD_SECONDS", 3600.0)
    store, ds, parts, mover = _request(tmp_path, 12, ["root"])
    queued = lambda: sum(len(batch) for _, batch in _queued_jobs(tmp_path / "queue"))  # noqa: E731
    assert len(mover.want(ds, parts)) == 12
    assert transfers.claim(store, "sky.obj", parts[0].pid, "w1")
    threading.Event().wait(0.3)
    assert queued() == 1  # the first file is copying: the others wait
    transfers.complete(store, "sky.obj", parts[0].pid, 10, 0, "there")
    for _ in range(1000):
        if queued() == 12:
            break
        threading.Event().wait(0.01)
    assert queued() == 12
    mover.stop()


def test_a_batch_copies_each_file_and_skips_those_done_and_a_malformed_batch_is_refused(tmp_path, monkeypatch):
    """COPY_BATCH_TASK: each job of the batch claimed and copied on its own, in order, so a
    batch sent again after a crash skips the files done; anything but a list of jobs is refused
    with what it was, before any file is touched."""
    import os
    import zlib

    from replication import worker

    store, ds, parts, mover = _request(tmp_path, 3, ["http"])
    with store.transaction() as w:
        w.put_dataset(ds)
    monkeypatch.setattr(worker, "_store", store)
    jobs = []
    for p in parts[:2]:  # placed before a crash, not yet recorded: recorded, nothing copied
        body = os.urandom(p.num_bytes)
        final = tmp_path / "data" / "replicas" / ds.name / p.path
        final.parent.mkdir(parents=True, exist_ok=True)
        final.write_bytes(body)
        jobs.append({"dataset": ds.name, "pid": p.pid, "final": str(final), "size": len(body),
                     "adler32": zlib.adler32(body), "sources": [["there", "https://127.0.0.1:1/none"]]})
    transfers.request(store, ds.name, [p.pid for p in parts[:2]])
    assert worker.copy_partitions(jobs) == "done (already in place); done (already in place)"
    states = transfers.states(store, ds.name, [p.pid for p in parts])
    assert [states[p.pid].state for p in parts[:2]] == ["done", "done"] and parts[2].pid not in states
    assert {pid for d, pid in store.local_files() if d == ds.name} == {p.pid for p in parts[:2]}
    assert worker.copy_partitions(jobs) == "; ".join(["skipped: done or in flight elsewhere"] * 2)
    for bad in ({"dataset": ds.name}, "jobs", [jobs[0], 7]):
        with pytest.raises(TypeError, match="a batch of copy jobs is a list of objects"):
            worker.copy_partitions(bad)
    mover.stop()


def test_the_warm_up_reads_one_in_flight_window_once_and_then_only_opens(monkeypatch):
    """A worker's warm-up opens a file of each root:// island; the first time in the process it
    also reads IN_FLIGHT_BYTES of it (the memory copies receive into, touched once), never more."""
    from replication import worker
    from replication.transfer import IN_FLIGHT_BYTES

    opened: list[str] = []
    read: list[int] = []

    class Stream:
        def __init__(self, url: str) -> None:
            opened.append(url)

        def read(self, n: int) -> bytes:
            read.append(n)
            return bytes(n)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            opened.append("closed")

    monkeypatch.setattr(worker, "open_url", lambda url, timeout: Stream(url))
    worker._warm_read("root://127.0.0.1:1//sky.obj/f.parquet", first=True)
    assert sum(read) == IN_FLIGHT_BYTES and opened == ["root://127.0.0.1:1//sky.obj/f.parquet", "closed"]
    worker._warm_read("root://127.0.0.1:1//sky.obj/f.parquet", first=False)
    assert sum(read) == IN_FLIGHT_BYTES and opened[2:] == ["root://127.0.0.1:1//sky.obj/f.parquet", "closed"]
