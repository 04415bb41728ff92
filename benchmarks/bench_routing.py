"""Routing costs: a small query sent to island A and pushed down to B (which holds the data)
against the same query sent straight to B; a large result streamed through A against straight
from B; and how long a new dataset published at B takes to be listed at A.

    .venv/bin/python benchmarks/bench_routing.py [--runs 50]
"""

from __future__ import annotations

import random
import statistics
import sys
import time

from common import DATASET, arguments, bench_pair, report, run_python

READ = """
import json, sys, time, archipel
c = archipel.connect(sys.argv[1], timeout=None)
best = 0.0
for _ in range(int(sys.argv[3])):
    t0 = time.perf_counter()
    t = c.sql(sys.argv[2]).read_all()
    best = max(best, t.nbytes / (time.perf_counter() - t0))
print(json.dumps({"rate": best}))
"""


def main() -> None:
    args = arguments(__doc__, runs=(50, "queries per path"))
    with bench_pair() as (b, a):
        with a.client() as ca, b.client() as cb:
            rnd = random.Random(3)
            cones = [(rnd.uniform(0, 360), rnd.uniform(-80, 80)) for _ in range(args.runs)]
            direct, routed = [], []
            for i, (ra, dec) in enumerate(cones):  # interleaved, so both see the same machine load
                sql = f"SELECT id, ra, dec FROM {DATASET} WHERE cone(ra, dec, {ra}, {dec}, 0.2)"
                cb.sql(sql).read_all()  # the files of this cone are in the page cache for both
                pair = ((cb, direct), (ca, routed)) if i % 2 else ((ca, routed), (cb, direct))
                for client, out in pair:
                    t0 = time.perf_counter()
                    client.sql(sql).read_all()
                    out.append((time.perf_counter() - t0) * 1000)
            prop = []
            for i in range(10):
                name = f"bench.prop_{int(time.time() * 1000)}_{i}"
                cb.publish(name, {"x": [i]})
                t0 = time.perf_counter()
                while name not in {d.name for d in ca.datasets(name)}:
                    time.sleep(0.001)
                prop.append((time.perf_counter() - t0) * 1000)
        big = f"SELECT * FROM {DATASET}"
        rate_b = run_python(READ, b.address, big, "3")["rate"] / 1e9
        rate_a = run_python(READ, a.address, big, "3")["rate"] / 1e9
        md, mr = statistics.median(direct), statistics.median(routed)
        report(f"Routing ({time.strftime('%Y-%m-%d')}, `python benchmarks/bench_routing.py`)", [
            ("small query (0.2 deg cone), straight to B, median", f"{md:.1f} ms"),
            ("same query at A, pushed down to B, median", f"{mr:.1f} ms"),
            ("added by the hop, median (goal < 5 ms)", f"{mr - md:.1f} ms"),
            ("whole catalog straight from B", f"{rate_b:.2f} GB/s"),
            ("whole catalog through A", f"{rate_a:.2f} GB/s"),
            ("through A / straight (goal >= 0.8)", f"{rate_a / rate_b:.2f}"),
            ("new dataset at B listed at A, median of 10 (incl. listing)", f"{statistics.median(prop):.1f} ms"),
        ])


if __name__ == "__main__":
    sys.exit(main())
