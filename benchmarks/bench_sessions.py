"""Spark sessions through the island against a plain SparkSession: the same DataFrame queries
(an aggregation, a self-join) on the same files and the same local[2] master, and the time to
open a session on a warm island (Livy takes tens of seconds to start one).

Ratio = session time / plain time (goal < 1.2); open time goal < 1 s.

    .venv/bin/python benchmarks/bench_sessions.py [--runs 3]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from common import DATASET, PLAIN_SPARK, TIMED, arguments, bench_island, median, report, run_python

# The same DataFrame code in both; ``t`` is the table.
QUERIES = {
    "aggregation": ("t.groupBy(F.floor('ra').alias('r'), F.floor('dec').alias('d'))"
                    ".agg(F.count('*').alias('n'), F.avg('mag_g').alias('g'), F.stddev('mag_r').alias('s'))"
                    ".toArrow()"),
    "self-join": ("t.alias('a').join(t.alias('b').where('flags < 4'), 'id')"
                  ".agg(F.count('*').alias('n'), F.avg(F.col('a.mag_g') - F.col('b.mag_r')).alias('c')).toArrow()"),
}

SESSION = TIMED + """
import json, sys
import archipel
from pyspark.sql.connect import functions as F  # the island's venv has classic pyspark too
c = archipel.connect(sys.argv[1], timeout=None)
opens = []
for _ in range(5):
    t0 = time.perf_counter()
    s = c.spark(datasets=[sys.argv[2]])
    s.range(1).count()
    opens.append(time.perf_counter() - t0)
    s.stop()
spark = c.spark(datasets=[sys.argv[2]])
t = spark.table(sys.argv[2])
out = {"open": opens}
for name, code in json.loads(sys.argv[3]).items():
    out[name] = timed(lambda: eval(code), int(sys.argv[4]))
spark.stop()
print(json.dumps(out))
"""

PLAIN = PLAIN_SPARK + """
import glob, json, sys
t = spark.read.parquet(*sorted(glob.glob(os.path.join(sys.argv[1], "**", "*.parquet"), recursive=True)))
print(json.dumps({name: timed(lambda: eval(code), int(sys.argv[3])) for name, code in json.loads(sys.argv[2]).items()}))
"""


def main() -> None:
    args = arguments(__doc__, runs=(3, "timed runs per query"))
    isl = bench_island()
    try:
        ours = run_python(SESSION, isl.address, DATASET, json.dumps(QUERIES), str(args.runs))
        isl.stop()  # the plain session gets the machine to itself, as the island had
        folder = str(Path(isl.folder) / "data" / "datasets" / DATASET / "dataset")
        plain = run_python(PLAIN, folder, json.dumps(QUERIES), str(args.runs))
        rows = [("open a session + first action, median of 5", f"{median(ours['open']) * 1000:.0f} ms"),
                ("open a session, slowest of 5", f"{max(ours['open']) * 1000:.0f} ms")]
        for name in QUERIES:
            a, b = median(ours[name]), median(plain[name])
            rows += [(f"{name}: session", f"{a:.2f} s"), (f"{name}: plain SparkSession", f"{b:.2f} s"),
                     (f"{name}: ratio (goal < 1.2)", f"{a / b:.2f}")]
        report(f"Spark sessions ({time.strftime('%Y-%m-%d')}, `python benchmarks/bench_sessions.py "
               f"--runs {args.runs}`)", rows)
    finally:
        isl.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
