"""Shared set-up of the benchmarks: a 10-million-row sky catalog (about 760 MB as Arrow) ingested
into a benchmark island, and helpers to time things in separate processes.

Data and the island live in benchmarks/data/ (ignored by git) and are reused between runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from islands import IslandProcess  # noqa: E402

DATA = HERE / "data"
ROWS = 10_000_000
DATASET = "bench.big"


def make_input(rows: int = ROWS, files: int = 10) -> Path:
    folder = DATA / f"input-{rows}"
    if (folder / "_done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(42)
    per = rows // files
    for i in range(files):
        n = per
        ra = rng.uniform(0, 360, n)
        dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
        cols = {"id": np.arange(i * per, i * per + n, dtype=np.int64), "ra": ra, "dec": dec}
        for band in "ugrizy":
            cols[f"mag_{band}"] = rng.normal(20, 1.5, n)
        cols["flags"] = rng.integers(0, 16, n).astype(np.int32)
        pq.write_table(pa.table(cols), folder / f"part-{i:02d}.parquet")
    (folder / "_done").touch()
    return folder


def bench_ca() -> Path:
    """The benchmark archipelago's CA, kept in benchmarks/data/ca so that islands made by
    different runs (the loaded benchmark island, entry islands) trust each other."""
    from federation.pki import create_ca

    ca = DATA / "ca"
    if not (ca / "ca.pem").exists():
        DATA.mkdir(parents=True, exist_ok=True)
        create_ca(ca, "benchmarks")
    return ca


def bench_member(folder: Path, name: str, extra_config: str = "") -> IslandProcess:
    """An island of the benchmark archipelago in ``folder`` (made again when an earlier run made
    it under another CA)."""
    import shutil

    ca = bench_ca()
    if (folder / "ca.pem").exists() and (folder / "ca.pem").read_bytes() != (ca / "ca.pem").read_bytes():
        shutil.rmtree(folder)
    return IslandProcess(folder, name, extra_config=extra_config, ca_dir=ca)


def entry_island(holder: IslandProcess) -> IslandProcess:
    """Island ``entry`` following ``holder`` (no Spark), started, once it lists the benchmark
    dataset."""
    entry = bench_member(DATA / "island-entry", "entry",
                         extra_config=f'[spark]\nstart = false\n[federation]\npeers = ["{holder.address}"]\n')
    entry.start()
    deadline = time.monotonic() + 60
    with entry.client() as c:
        while DATASET not in {d.name for d in c.datasets()}:
            if time.monotonic() > deadline:
                entry.stop()
                raise AssertionError("the catalog did not reach the entry island")
            time.sleep(0.05)
    return entry


@contextlib.contextmanager
def bench_pair():
    """(holder, entry): the loaded benchmark island and an entry island following it, both
    stopped when the block ends."""
    holder = bench_island()
    try:
        entry = entry_island(holder)
        try:
            yield holder, entry
        finally:
            entry.stop()
    finally:
        holder.stop()


def bench_island(extra_config: str = "") -> IslandProcess:
    """The benchmark island (created and loaded on first use), started with warm Spark."""
    DATA.mkdir(parents=True, exist_ok=True)
    isl = bench_member(DATA / "island", "bench", extra_config=extra_config)
    try:
        isl.start(wait_spark=True)
        import os

        # The benchmark's reader processes reach the island as its admin.
        os.environ.update({"ARCHIPEL_CA": str(isl.ca), "ARCHIPEL_TOKEN": isl.admin_token})
        with isl.client() as c:
            names = {d.name for d in c.datasets()}
            if DATASET not in names:
                t0 = time.perf_counter()
                c.ingest(str(make_input()), DATASET)
                print(f"# ingested {DATASET} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    except BaseException:
        isl.kill()
        raise
    return isl


# Script pieces run by run_python in a fresh interpreter (the benchmarks' own processes).

# A timing loop: ``timed(run, repeat)`` warms ``run`` once (as warm sessions are), then times
# it ``repeat`` times.
TIMED = """
import time
def timed(run, repeat):
    run()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return times
"""

# A plain SparkSession on the island's master (local[2]) and memory: the baseline of Spark.
PLAIN_SPARK = TIMED + """
import os
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
spark = (SparkSession.builder.master("local[2]").config("spark.driver.memory", "2g")
         .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "8").getOrCreate())
"""

# A gRPC query reader: ADDRESS MODE(tls|plain) SQL REPEAT DATASET; the connection and its
# handshake are paid before timing; prints the times, the result's bytes and rows.
SQL_READER = """
import json, sys, time
from archipel.client import Client
address, mode, sql, repeat = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = Client(address, timeout=None, plaintext=(mode == "plain"))
c.sql("SELECT 1 AS x FROM %s LIMIT 1" % sys.argv[5]).read_all()
times, nbytes, rows = [], 0, 0
for _ in range(repeat):
    t0 = time.perf_counter()
    t = c.sql(sql).read_all()
    times.append(time.perf_counter() - t0)
    nbytes, rows = t.nbytes, t.num_rows
print(json.dumps({"seconds": times, "bytes": nbytes, "rows": rows}))
"""


def run_python(code: str, *args: str, timeout: float = 1800) -> dict:
    """Runs code in a fresh interpreter; its last stdout line is JSON."""
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark process failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def arguments(doc: str, **options: tuple) -> argparse.Namespace:
    """The command line of a benchmark: ``--NAME`` for each option NAME=(default, help), typed
    as its default (a list default takes several values, False is a flag)."""
    parser = argparse.ArgumentParser(description=doc)
    for name, (default, text) in options.items():
        flag = "--" + name.replace("_", "-")
        if default is False:
            parser.add_argument(flag, action="store_true", help=text)
        elif isinstance(default, list):
            parser.add_argument(flag, type=type(default[0]), nargs="+", default=default, help=text)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=text)
    return parser.parse_args()


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def report(title: str, rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    text = "\n".join([f"## {title}", "", "| measure | value |", "| --- | --- |"]
                     + [f"| {k.ljust(width)} | {v} |" for k, v in rows])
    print(text)
    return text
