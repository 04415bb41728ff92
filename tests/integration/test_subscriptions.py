"""Subscriptions across three real islands (separate processes): a subscriber at A receives
what appears at B and C, in order, exactly once per cursor; durable names survive a
disconnect and a restart of A; replicate mode leaves A holding exactly the matching partitions;
bad input is refused before any stream starts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from archipel.errors import AlreadyExists, ArchipelError, InvalidArgument, NotFound
from islands import ROOT, SHARED_HATS, IslandProcess, cli, wait_for
from metacatalog import rule_records
from metacatalog.sky import Cone, partitions_in_cone
from metacatalog.store import CatalogStore
from skydata import angular_distance

pytestmark = pytest.mark.integration

CONE = (40.0, 20.0, 15.0)
WHERE = "mag < 18.0"
SKY_CONE = (315.0, -60.0, 4.0)  # a few pixels of the sample catalog small_sky_order1


def batch(n: int, seed: int) -> pa.Table:
    """Rows around CONE, about half inside it, half of them brighter than 18."""
    rng = np.random.default_rng(seed)
    return pa.table({
        "id": np.arange(seed * 100_000, seed * 100_000 + n, dtype=np.int64),
        "ra": rng.uniform(0, 80, n),
        "dec": rng.uniform(-10, 50, n),
        "mag": rng.normal(18, 1, n),
        "flux": rng.normal(size=n),
    })


def truth(t: pa.Table, cone=CONE) -> set[int]:
    d = angular_distance(t["ra"].to_numpy(), t["dec"].to_numpy(), cone[0], cone[1])
    keep = (d <= np.radians(cone[2])) & (t["mag"].to_numpy() < 18.0)
    return set(t["id"].to_numpy()[keep].tolist())


class Collector:
    """Iterates a subscription in a thread, keeping every item."""

    def __init__(self, sub) -> None:
        self.sub = sub
        self.items: list = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for item in self.sub:
                self.items.append(item)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def ids(self) -> list[int]:
        return [i for item in self.items for i in item.column("id").to_pylist()]

    def wait_ids(self, want: set[int], timeout: float = 60.0) -> None:
        wait_for(lambda: self.error is not None or set(self.ids()) >= want, f"{len(want)} rows arrived", timeout)
        assert self.error is None, self.error

    def settle(self, *appends: tuple, seed: int) -> set[int]:
        """Shows that nothing more is on its way, without a sleep: one more matching batch is
        appended at each (client, dataset); once its rows arrived, everything its origin
        committed before has been delivered (in order). Returns the marker rows' ids, which the
        caller leaves out of its comparison."""
        markers: set[int] = set()
        for k, (client, dataset) in enumerate(appends):
            t = batch(400, seed + k)
            client.publish(dataset, t, mode="append")
            markers |= truth(t)
        assert markers
        self.wait_ids(markers)
        return markers


@pytest.fixture(scope="module")
def base():
    folder = Path(tempfile.mkdtemp(prefix="archipel-subs-"))
    folder.chmod(0o755)  # xrootd's user serves the islands' files
    shutil.copytree(SHARED_HATS / "small_sky_o1_collection", folder / "hats" / "small_sky_o1_collection")
    yield folder
    if not os.environ.get("ARCHIPEL_KEEP_TEST_DIRS"):
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def trio(base):
    common = "[spark]\nstart = false\n[ingest]\npartition_rows = 2000\n"
    a = IslandProcess(base / "a", "a", extra_config=common).start()
    peers = f'[federation]\npeers = ["{a.address}"]\n'
    b = IslandProcess(base / "b", "b", extra_config=common + peers).start()
    c = IslandProcess(base / "c", "c", extra_config=common + peers).start()
    with b.client() as cb:
        cb.publish("alerts.b", batch(3000, 1), ra="ra", dec="dec")
        cb.ingest(str(base / "hats" / "small_sky_o1_collection"), "sky.order1")
    with c.client() as cc:
        cc.publish("alerts.c", batch(3000, 2), ra="ra", dec="dec")
    with a.client() as ca:
        wait_for(lambda: len(ca.datasets("alerts.*")) == 2 and ca.datasets("sky.order1"), "A sees every dataset")
    yield a, b, c
    for isl in (c, b, a):
        assert isl.stop() == 0, isl.log.read_text()[-3000:]


def test_rows_from_two_islands_arrive_in_order_exactly_once(trio):
    a, b, c = trio
    with a.client() as ca, b.client() as cb, c.client() as cc:
        sub = ca.subscribe("alerts.*", where=WHERE, cone=CONE, columns=["id", "mag"], mode="rows")
        got = Collector(sub)
        appended: dict[str, list[set[int]]] = {"b": [], "c": []}
        for i in range(3):
            for name, client in (("b", cb), ("c", cc)):
                t = batch(400, 10 + 2 * i + (name == "c"))
                client.publish(f"alerts.{name}", t, mode="append")
                appended[name].append(truth(t))
        want = set().union(*appended["b"], *appended["c"])
        got.wait_ids(want)
        markers = got.settle((cb, "alerts.b"), (cc, "alerts.c"), seed=200)  # anything extra came before these
        sub.close()
    ids = [i for i in got.ids() if i not in markers]
    assert len(ids) == len(set(ids)), "a row was delivered twice"
    assert set(ids) == want, "rows outside the predicate or cone, or missing ones"
    for item in got.items:
        assert item.schema.names == ["id", "mag"]
        assert pc.all(pc.less(item.column("mag"), 18.0)).as_py()
    cursors = [item.cursor for item in got.items]
    assert cursors == sorted(cursors), "cursors out of order"
    # Each append is one cursor, and each island's appends arrive in the order they were made.
    per_cursor: dict[int, set[int]] = {}
    for item in got.items:
        per_cursor.setdefault(item.cursor, set()).update(item.column("id").to_pylist())
    for name in ("b", "c"):
        seen = [cur for cur, ids_ in sorted(per_cursor.items()) if ids_ & set().union(*appended[name])]
        order = [next(k for k, s in enumerate(appended[name]) if per_cursor[cur] <= s) for cur in seen]
        assert order == sorted(order) and len(order) == len(set(order)) == 3
    assert {item.island for item in got.items} == {"b", "c"}


def test_events_say_what_appeared_where(trio):
    a, b, _ = trio
    with a.client() as ca, b.client() as cb:
        sub = ca.subscribe("alerts.b", cone=CONE)  # events: pixels and rows inside the cone
        got = Collector(sub)
        t = batch(500, 30)
        cb.publish("alerts.b", t, mode="append")
        wait_for(lambda: got.items, "an event")
        sub.close()
        ev = got.items[0]
        d = angular_distance(t["ra"].to_numpy(), t["dec"].to_numpy(), CONE[0], CONE[1])
        assert (ev.dataset, ev.island, ev.op) == ("alerts.b", "b", "append")
        assert ev.rows == int((d <= np.radians(CONE[2])).sum())
        desc = ca.describe("alerts.b")
        new = {p.path: (p.order, p.pixel) for p in desc.partitions if p.path in ev.partitions}
        assert set(ev.pixels) == set(new.values()) and len(new) == len(ev.partitions)
        assert all(p.split("/")[-1].startswith("append-") for p in ev.partitions)


def test_durable_subscription_gets_all_three_appends_after_a_disconnect(trio):
    a, b, _ = trio
    with a.client() as ca, b.client() as cb:
        sub = ca.subscribe("alerts.b", where=WHERE, cone=CONE, mode="rows", name="offline")
        got = Collector(sub)
        first = batch(300, 40)
        cb.publish("alerts.b", first, mode="append")
        got.wait_ids(truth(first))
        sub.close()  # acknowledges what was consumed
        info = {s.name: s for s in ca.subscriptions()}["offline"]
        assert not info.connected and info.durable and info.lag_changes == 0
        missed = [batch(300, 41 + i) for i in range(3)]
        for t in missed:
            cb.publish("alerts.b", t, mode="append")
        wait_for(lambda: {s.name: s for s in ca.subscriptions()}["offline"].lag_changes == 3, "A sees the appends")
        assert {s.name: s for s in ca.subscriptions()}["offline"].lag_seconds > 0
        with pytest.raises(AlreadyExists, match="another filter"):
            ca.subscribe("alerts.b", where="mag < 10", cone=CONE, mode="rows", name="offline")
        again = ca.subscribe("alerts.b", where=WHERE, cone=CONE, mode="rows", name="offline")
        got2 = Collector(again)
        want = set().union(*(truth(t) for t in missed))
        got2.wait_ids(want)
        markers = got2.settle((cb, "alerts.b"), seed=210)
        again.close()
        ids = [i for i in got2.ids() if i not in markers]
        assert sorted(ids) == sorted(want), "missed rows lost, or the acknowledged append delivered again"
        assert {s.name: s for s in ca.subscriptions()}["offline"].lag_changes == 0
        ca.delete_subscription("offline")
        assert "offline" not in {s.name for s in ca.subscriptions()}
        with pytest.raises(NotFound):
            ca.delete_subscription("offline")


def test_subscriber_island_restarted_mid_stream_resumes(trio):
    a, b, _ = trio
    with b.client() as cb:
        ca = a.client()
        sub = ca.subscribe("alerts.b", mode="events", name="survivor", reconnect=120)
        got = Collector(sub)
        cb.publish("alerts.b", batch(200, 50), mode="append")
        wait_for(lambda: len(got.items) == 1, "the first event")
        assert a.stop() == 0
        cb.publish("alerts.b", batch(200, 51), mode="append")  # while A is down
        a.start()
        cb.publish("alerts.b", batch(200, 52), mode="append")
        wait_for(lambda: len(got.items) >= 3, "the events from before and after the restart", timeout=120)
        cb.publish("alerts.b", batch(7, 53), mode="append")  # a marker: anything repeated comes before it
        wait_for(lambda: any(e.rows == 7 for e in got.items), "the marker event")
        sub.close()
        assert got.error is None, got.error
        rows = [e.rows for e in got.items]
        assert rows == [200, 200, 200, 7], rows
        cursors = [e.cursor for e in got.items]
        assert cursors == sorted(set(cursors))
        ca.delete_subscription("survivor")
        ca.close()


def test_replicate_mode_holds_exactly_the_matching_partitions(trio):
    a, _, c = trio
    with a.client() as ca, c.client() as cc:
        before_c = {p.path for p in ca.describe("alerts.c").partitions}
        sub = ca.subscribe("sky.order1", cone=SKY_CONE, mode="replicate", start_at="earliest", name="keep-sky")
        got = Collector(sub)
        desc = ca.describe("sky.order1")
        cone = Cone(*SKY_CONE)
        pixels = [(p.order, p.pixel) for p in desc.partitions]
        expected = {p.path for p, k in zip(desc.partitions, partitions_in_cone(pixels, cone)) if k}
        assert 0 < len(expected) < len(desc.partitions)
        root = a.folder / "data" / "replicas" / "sky.order1"

        def held() -> set[str]:
            return {str(p.relative_to(root)) for p in root.rglob("*.parquet")} if root.is_dir() else set()

        wait_for(lambda: held() == expected, "A holds the partitions covering the cone")
        wait_for(lambda: {p for e in got.items for p in e.partitions} == expected, "events for them")
        assert all(e.replicated for e in got.items)
        # From "latest": only what appears from now on, and only under the cone.
        sub2 = ca.subscribe("alerts.c", cone=CONE, mode="replicate", name="keep-new")
        got2 = Collector(sub2)
        t = batch(400, 80)
        cc.publish("alerts.c", t, mode="append")
        wait_for(lambda: len(ca.describe("alerts.c").partitions) > len(before_c), "A sees the append")
        new = [p for p in ca.describe("alerts.c").partitions if p.path not in before_c]
        keep = partitions_in_cone([(p.order, p.pixel) for p in new], Cone(*CONE))
        expected_c = {p.path for p, k in zip(new, keep) if k}
        assert expected_c
        root_c = a.folder / "data" / "replicas" / "alerts.c"
        wait_for(lambda: {str(p.relative_to(root_c)) for p in root_c.rglob("*.parquet")} == expected_c,
                 "A holds the new partitions under the cone, and nothing else of alerts.c")
        wait_for(lambda: {p for e in got2.items for p in e.partitions} == expected_c, "events for them")
        assert ca.cache().pinned_files == len(expected) + len(expected_c)
        sub2.close()
        ca.delete_subscription("keep-new")
        sub.close()
        ca.delete_subscription("keep-sky")
        assert not [r for r in ca.rules() if "keep-sky" in r.region]
        assert ca.cache().pinned_files == 0  # the replicas stay, as evictable cache


def test_bad_subscriptions_are_refused_before_any_stream(trio):
    a, _, _ = trio
    with a.client() as ca:
        before = ca.subscriptions()
        cases = [
            (dict(where="mag >"), "invalid predicate"),
            (dict(where="nosuch > 1"), "nosuch"),
            (dict(where="1=1) UNION SELECT * FROM alerts.c --"), "invalid predicate"),
            (dict(where="(SELECT 1) = 1"), "not a query"),
            (dict(where="mag < 'abc' + 1"), "predicate failed"),
            (dict(columns=["nope"]), "unknown column 'nope'"),
            (dict(columns=["id", "id"]), "twice"),
            (dict(cone=(10, 10, -1)), "negative"),
            (dict(cone=(10, 99, 1)), "dec"),
            (dict(moc=b"garbage"), "MOC"),
            (dict(start_at="99999999"), "unknown cursor"),
            (dict(start_at="-3"), "start_at"),
            (dict(name="bad name!"), "invalid subscription name"),
        ]
        for kwargs, message in cases:
            with pytest.raises(ArchipelError, match=message):
                ca.subscribe("alerts.*", **kwargs)
        with pytest.raises(InvalidArgument, match="mode"):
            ca.subscribe("alerts.*", mode="everything")
        with pytest.raises(InvalidArgument, match="pattern"):
            ca.subscribe("alerts/../*")
        # A raw stream whose first request is an acknowledgement, not a subscription.
        from archipel.v1 import island_pb2 as pb

        stream = ca._stub.Subscribe(iter([pb.SubscribeRequest(ack=5)]))
        with pytest.raises(Exception, match="first request"):
            next(stream)
        # Acknowledging what was never delivered moves the cursor nowhere past the stream.
        sub = ca.subscribe("alerts.*", name="hostile-ack")
        sub._requests.put(pb.SubscribeRequest(ack=10**15))
        sub.close()
        info = {s.name: s for s in ca.subscriptions()}["hostile-ack"]
        assert info.cursor <= info.position
        ca.delete_subscription("hostile-ack")
        for bad in ("", "x" * 500):
            with pytest.raises(InvalidArgument, match="subscription name"):
                ca.delete_subscription(bad)
        assert ca.subscriptions() == before
        assert ca.datasets("alerts.*")  # still serving


def test_cli_subscribe_writes_parquet_and_lists_subscriptions(trio, tmp_path):
    a, b, _ = trio
    out = tmp_path / "rows"
    proc = subprocess.Popen(
        [sys.executable, "-m", "archipel.cli.main", "--island", a.address, "subscribe", "alerts.b",
         "--where", WHERE, "--cone", ",".join(map(str, CONE)), "--columns", "id,mag", "--mode", "rows",
         "--name", "cli-sub", "--output", str(out), "--count", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        assert line.startswith("subscription cli-sub on a"), line + proc.stderr.read()
        tables = [batch(300, 60), batch(300, 61)]
        with b.client() as cb:
            for t in tables:
                cb.publish("alerts.b", t, mode="append")
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    files = sorted(out.glob("*.parquet"))
    assert len(files) == 2 and not list(out.glob(".*"))
    ids = [i for f in files for i in pq.read_table(f)["id"].to_pylist()]
    assert sorted(ids) == sorted(truth(tables[0]) | truth(tables[1]))
    listing = cli("--island", a.address, "subscriptions").stdout
    assert "cli-sub" in listing and "rows" in listing
    bad = cli("--island", a.address, "subscribe", "alerts.b", "--cone", "1,2,-3", check=False)
    assert bad.returncode == 1 and "negative" in bad.stderr
    bad = cli("--island", a.address, "subscribe", "alerts.b", "--where", "mag >>", check=False)
    assert bad.returncode == 1 and "predicate" in bad.stderr
    bad = cli("--island", a.address, "subscriptions", "delete", "nope", check=False)
    assert bad.returncode == 1 and "no subscription" in bad.stderr
    done = cli("--island", a.address, "subscriptions", "delete", "cli-sub")
    assert "deleted subscription cli-sub" in done.stdout
    assert "cli-sub" not in cli("--island", a.address, "subscriptions").stdout


def test_cli_events_printed_and_sigterm_acknowledges(trio):
    a, b, _ = trio
    proc = subprocess.Popen(
        [sys.executable, "-m", "archipel.cli.main", "--island", a.address, "subscribe", "alerts.*", "--name", "ev"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline().startswith("subscription ev")
        with b.client() as cb:
            cb.publish("alerts.b", batch(100, 70), mode="append")
        line = proc.stdout.readline()
        assert "alerts.b" in line and "append" in line and " 100 rows" in line, line
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        proc.kill()
    assert proc.returncode == 0, proc.stderr.read()
    with a.client() as ca:
        info = {s.name: s for s in ca.subscriptions()}["ev"]
        assert info.lag_changes == 0 and not info.connected
        ca.delete_subscription("ev")


def test_rows_wait_for_an_origin_that_is_down_and_come_when_it_returns(trio):
    a, b, _ = trio
    with a.client() as ca:
        probe = ca.subscribe("alerts.b")
        start = probe.info.position
        probe.close()
        with b.client() as cb:
            before = len(ca.describe("alerts.b").partitions)
            t = batch(300, 90)
            cb.publish("alerts.b", t, mode="append")
        wait_for(lambda: len(ca.describe("alerts.b").partitions) > before, "A sees the append")
        assert b.stop() == 0
        try:
            sub = ca.subscribe("alerts.b", where=WHERE, cone=CONE, mode="rows", start_at=str(start),
                               name="patient")
            got = Collector(sub)
            wait_for(lambda: "b" in {s.name: s for s in ca.subscriptions()}["patient"].error,
                     "the subscription reports the origin it cannot read")
            assert not got.items and got.error is None  # nothing skipped, nothing failed
        finally:
            b.start()
        got.wait_ids(truth(t))
        sub.close()
        assert sorted(got.ids()) == sorted(truth(t))
        wait_for(lambda: not {s.name: s for s in ca.subscriptions()}["patient"].error, "the error cleared")
        ca.delete_subscription("patient")


def test_asyncio_client_subscribes_too(trio):
    import asyncio

    import archipel.aio

    a, b, _ = trio
    t = batch(300, 95)

    async def main() -> tuple[list[int], int]:
        async with archipel.aio.connect(a.address) as c:
            with pytest.raises(InvalidArgument, match="negative"):
                await c.subscribe("alerts.b", cone=(1, 2, -3))
            sub = await c.subscribe("alerts.b", where=WHERE, cone=CONE, columns=["id"], mode="rows", name="aio")
            with b.client() as cb:
                await asyncio.to_thread(cb.publish, "alerts.b", t, mode="append")
            ids: list[int] = []
            async for item in sub:
                ids.extend(item.column("id").to_pylist())
                if set(ids) >= truth(t):
                    break
            await sub.close()
            cursor = sub.cursor
            await asyncio.to_thread(lambda: a.client().delete_subscription("aio"))
            return ids, cursor

    ids, cursor = asyncio.run(asyncio.wait_for(main(), 60))
    assert sorted(ids) == sorted(truth(t)) and cursor > 0


def test_a_dataset_published_after_subscribing_arrives_whole(trio):
    a, b, _ = trio
    t = batch(500, 99)
    with a.client() as ca, b.client() as cb:
        sub = ca.subscribe("late.arrival", mode="rows", columns=["id"], name="late")  # not in any catalog yet
        got = Collector(sub)
        cb.publish("late.arrival", t, ra="ra", dec="dec")
        got.wait_ids(set(t["id"].to_pylist()))
        sub.close()
        assert sorted(got.ids()) == t["id"].to_pylist()
        assert {(i.dataset, i.island, i.event.op) for i in got.items} == {("late.arrival", "b", "put")}
    assert "deleted subscription late" in cli("--island", a.address, "unsubscribe", "late").stdout


def test_replicate_mode_with_a_predicate_pins_the_partitions_holding_matching_rows(trio):
    a, b, _ = trio
    with a.client() as ca:
        desc = ca.describe("alerts.b")
        root = b.folder / "data" / "datasets" / "alerts.b"
        brightest = {p.path: pc.min(pq.read_table(root / p.path, columns=["mag"])["mag"]).as_py()
                     for p in desc.partitions}
        low = sorted(brightest.values())
        cut = (low[0] + low[1]) / 2  # some partitions hold rows brighter than this, others none
        expected = {path for path, m in brightest.items() if m < cut}
        assert 0 < len(expected) < len(desc.partitions)
        sub = ca.subscribe("alerts.b", where=f"mag < {cut!r}", mode="replicate", start_at="earliest", name="bright")

        def pinned() -> set[str]:
            store = CatalogStore(a.folder / "catalog.sqlite", a.name)
            return {pid for r in rule_records.rows(store) if json.loads(r.region).get("subscription") == "bright"
                    for pid in rule_records.pids(store, r.id)}

        wait_for(lambda: pinned() == expected, "A pins exactly the partitions with matching rows")
        held = a.folder / "data" / "replicas" / "alerts.b"
        wait_for(lambda: all((held / p).is_file() for p in expected), "A holds them")
        sub.close()
        ca.delete_subscription("bright")
        assert not pinned()
