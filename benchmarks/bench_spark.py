"""A join and a heavy aggregation through the island (Spark engine, results streamed to the
client) against the same queries in a plain SparkSession (toArrow), on the same files and the
same local[2] master. Ratio = island time / plain time; the goal is under 1.2.

    .venv/bin/python benchmarks/bench_spark.py [--runs 3]
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from common import DATASET, PLAIN_SPARK, arguments, bench_island, median, report, run_python

QUERIES = {
    "heavy aggregation": ("SELECT floor(ra) AS r, floor(dec) AS d, count(*) AS n, avg(mag_g) AS g, "
                          "stddev(mag_r) AS sr, max(mag_i) AS mi FROM {t} GROUP BY floor(ra), floor(dec)"),
    "self-join on id": ("SELECT count(*) AS n, avg(a.mag_g - b.mag_r) AS c FROM {t} a JOIN {t} b "
                        "ON a.id = b.id WHERE b.flags < 4"),
}

PLAIN = PLAIN_SPARK + """
import json, sys
spark.read.parquet(sys.argv[1]).createOrReplaceTempView("big")
print(json.dumps({name: timed(lambda: spark.sql(q.format(t="big")).toArrow(), int(sys.argv[3]))
                  for name, q in json.loads(sys.argv[2]).items()}))
"""


def main() -> None:
    args = arguments(__doc__, runs=(3, "timed runs per query"))
    isl = bench_island()
    try:
        ours: dict[str, list[float]] = {}
        with isl.client() as c:
            for name, q in QUERIES.items():
                c.sql(q.format(t=DATASET), engine="spark", timeout=None).read_all()  # warm-up
                ours[name] = []
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    c.sql(q.format(t=DATASET), engine="spark", timeout=None).read_all()
                    ours[name].append(time.perf_counter() - t0)
        isl.stop()  # the plain session gets the machine to itself, as the island had
        folder = str(Path(isl.folder) / "data" / "datasets" / DATASET / "dataset")
        plain = run_python(PLAIN, folder, json.dumps(QUERIES), str(args.runs))
        rows = []
        for name in QUERIES:
            a, b = median(ours[name]), median(plain[name])
            rows += [(f"{name}: island", f"{a:.2f} s"), (f"{name}: plain SparkSession", f"{b:.2f} s"),
                     (f"{name}: ratio (goal < 1.2)", f"{a / b:.2f}")]
        report(f"Spark through the island ({time.strftime('%Y-%m-%d')}, `python benchmarks/bench_spark.py`)", rows)
    finally:
        isl.stop()


if __name__ == "__main__":
    main()
