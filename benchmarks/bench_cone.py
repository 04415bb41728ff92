"""A cone search pruned to a few HEALPix pixels on the 10-million-row catalog, end to end
through the client, against the same query on a plain SparkSession reading the whole catalog
(no pruning). Latencies in ms; the client runs in this process, Spark in its own.

    .venv/bin/python benchmarks/bench_cone.py [--runs 50]
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

from common import DATASET, arguments, bench_island, median, report, run_python

SPARK_CONES = """
import json, os, sys, time
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
from pyspark.sql import SparkSession
spark = (SparkSession.builder.master("local[2]").config("spark.driver.memory", "4g")
         .config("spark.ui.enabled", "false").getOrCreate())
spark.read.parquet(sys.argv[1]).createOrReplaceTempView("big")
cones = json.loads(sys.argv[2])
times = []
for ra0, dec0, r in cones:
    t0 = time.perf_counter()
    spark.sql(f"SELECT * FROM big WHERE {sys.argv[3].format(ra0=ra0, dec0=dec0, r=r)}").toArrow()
    times.append(time.perf_counter() - t0)
print(json.dumps({"times": times}))
"""


def main() -> None:
    args = arguments(__doc__, runs=(50, "cones per engine"), radius=(0.5, "cone radius in degrees"))
    from federation.planner import cone_predicate_sql

    rnd = random.Random(1)
    cones = [(rnd.uniform(0, 360), rnd.uniform(-80, 80), args.radius) for _ in range(args.runs)]
    isl = bench_island()
    try:
        with isl.client() as c:
            c.sql(f"SELECT id FROM {DATASET} WHERE cone(ra, dec, 1, 1, {args.radius})").read_all()  # warm
            times, rows, pixels = [], [], []
            for ra0, dec0, r in cones:
                t0 = time.perf_counter()
                res = c.sql(f"SELECT * FROM {DATASET} WHERE cone(ra, dec, {ra0}, {dec0}, {r})")
                t = res.read_all()
                times.append(time.perf_counter() - t0)
                rows.append(t.num_rows)
                pixels.append(res.plan.datasets[0].partitions_read)
            total = res.plan.datasets[0].partitions_total
        folder = str(Path(isl.folder) / "data" / "datasets" / DATASET / "dataset")
        pred = cone_predicate_sql("ra", "dec", "{ra0}", "{dec0}", "{r}")
        spark_n = min(10, args.runs)
        import json

        spark = run_python(SPARK_CONES, folder, json.dumps(cones[:spark_n]), pred)["times"]
        ms = sorted(x * 1000 for x in times)
        p90 = ms[int(0.9 * (len(ms) - 1))]
        smed = median(spark[1:] or spark) * 1000
        report(f"Cone search ({time.strftime('%Y-%m-%d')}, `python benchmarks/bench_cone.py`)", [
            ("query", f"SELECT * ... WHERE cone(ra, dec, random, random, {args.radius}), {args.runs} cones"),
            ("partitions read per cone", f"{statistics.mean(pixels):.1f} of {total} on average"),
            ("rows per cone", f"{statistics.mean(rows):.0f} on average"),
            ("archipel client, median", f"{median(ms):.1f} ms"),
            ("archipel client, p90", f"{p90:.1f} ms"),
            ("plain Spark, no pruning, median (first query dropped)", f"{smed:.0f} ms"),
            ("speed-up", f"{smed / median(ms):.0f}x"),
            ("goal: median under 50 ms", "met" if median(ms) < 50 else "NOT met"),
        ])
    finally:
        isl.stop()


if __name__ == "__main__":
    main()
