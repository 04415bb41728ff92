"""Subscription latency: from ``publish(mode="append")`` returning at island B to the matching
rows in the hands of a subscriber connected to island A (rows mode, a predicate and a cone), over
many small appends; events mode alongside. The baseline, measured in the same run: asking A for
the same rows with a query right after the append returns (a pull that finds them at once, the
best a poller can do with no interval at all), and the append call itself.

    .venv/bin/python benchmarks/bench_subscribe.py [--appends 200] [--rows 100] [--gap 0.05]
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from common import arguments, report

from islands import IslandProcess

DATASET = "bench.alerts"
WHERE = "mag < 19.5"
CONE = (180.0, 0.0, 60.0)


def rows(i: int, n: int) -> pa.Table:
    """Append ``i``: ids i*1_000_000..., most rows inside CONE and brighter than 19.5."""
    rng = np.random.default_rng(i)
    return pa.table({"id": np.arange(i * 1_000_000, i * 1_000_000 + n, dtype=np.int64),
                     "ra": rng.uniform(150, 210, n), "dec": rng.uniform(-30, 30, n),
                     "mag": rng.normal(18, 1, n), "flux": rng.normal(size=n)})


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs), q)) * 1000


def main() -> None:
    args = arguments(__doc__,
                     appends=(200, "appends published"),
                     rows=(100, "rows per append"),
                     gap=(0.05, "seconds between two appends"))
    base = Path(tempfile.mkdtemp(prefix="archipel-bench-subs-"))
    common = "[spark]\nstart = false\n"
    a = IslandProcess(base / "a", "a", extra_config=common)
    b = IslandProcess(base / "b", "b", extra_config=common + f'[federation]\npeers = ["{a.address}"]\n')
    try:
        a.start()
        b.start()
        with a.client() as ca, b.client() as cb, a.client() as cq:
            cb.publish(DATASET, rows(0, 1000), ra="ra", dec="dec")
            while not ca.datasets(DATASET):
                time.sleep(0.05)
            returned: dict[int, float] = {}
            got_rows: dict[int, float] = {}
            got_event: dict[int, float] = {}
            subs = [ca.subscribe(DATASET, where=WHERE, cone=CONE, columns=["id", "mag"], mode="rows"),
                    ca.subscribe(DATASET)]

            since_commit: dict[str, list[float]] = {"rows": [], "events": []}

            def follow(sub, seen: dict[int, float], key, kind: str) -> None:
                try:
                    for item in sub:
                        now = time.time()
                        seen.setdefault(key(item), now)
                        since_commit[kind].append(now - (item.event if kind == "rows" else item).timestamp)
                except Exception as exc:  # the end of the run
                    print(f"# {kind} subscription ended: {exc}")

            threads = [
                threading.Thread(target=follow, args=(subs[0], got_rows,
                                                      lambda it: int(it.column("id")[0].as_py()) // 1_000_000, "rows"),
                                 daemon=True),
                threading.Thread(target=follow, args=(subs[1], got_event, lambda ev: ev.cursor, "events"),
                                 daemon=True),
            ]
            for t in threads:
                t.start()
            call, pull = [], []
            for i in range(1, args.appends + 1):
                t0 = time.time()
                cb.publish(DATASET, rows(i, args.rows), mode="append")
                returned[i] = time.time()
                call.append(returned[i] - t0)
                time.sleep(args.gap / 2)
                # The pull baseline: the same rows asked of A once the append returned.
                q0 = time.time()
                deadline = q0 + 10
                while True:
                    n = cq.sql(f"SELECT id, mag FROM {DATASET} WHERE id >= {i * 1_000_000} AND "
                               f"id < {(i + 1) * 1_000_000} AND {WHERE} AND cone(ra, dec, {CONE[0]}, {CONE[1]}, "
                               f"{CONE[2]})", route="remote").read_all().num_rows
                    if n or time.time() > deadline:
                        break
                pull.append(time.time() - q0)
                time.sleep(args.gap / 2)
            deadline = time.time() + 30
            while len(got_rows) < args.appends and time.time() < deadline:
                time.sleep(0.05)
            for s in subs:
                s.stop()
            for t in threads:
                t.join(10)
            lat = [got_rows[i] - returned[i] for i in returned if i in got_rows]
            ev_lat = since_commit["events"]
            lost = args.appends - len(lat)
            report(f"Subscription latency, {args.appends} appends of {args.rows} rows, B -> subscriber at A", [
                ("rows mode: append returned -> rows in hand, median", f"{pct(lat, 50):.1f} ms"),
                ("rows mode: p90 / p99 / max", f"{pct(lat, 90):.1f} / {pct(lat, 99):.1f} / {max(lat) * 1000:.1f} ms"),
                ("rows mode: commit at B -> rows in hand, median / p99",
                 f"{pct(since_commit['rows'], 50):.1f} / {pct(since_commit['rows'], 99):.1f} ms"),
                ("events mode: commit at B -> event in hand, median / p99",
                 f"{pct(ev_lat, 50):.1f} / {pct(ev_lat, 99):.1f} ms"),
                ("appends whose rows never arrived", str(lost)),
                ("baseline: a query at A for the same rows (routed to B), median / p99",
                 f"{pct(pull, 50):.1f} / {pct(pull, 99):.1f} ms"),
                ("baseline: the append call at B, median", f"{pct(call, 50):.1f} ms"),
                ("ratio: subscription median / query median", f"{pct(lat, 50) / pct(pull, 50):.2f}"),
            ])
    finally:
        b.stop()
        a.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
