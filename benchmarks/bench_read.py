"""Reading a whole 10-million-row catalog through the Archipel client, against pyarrow.flight
do_get of the same table from a separate process (the C++ gRPC reference) and Spark Connect's
toArrow() of the same query. Every reader runs in its own process (never pyarrow.flight and
grpcio in one process); rates are Arrow bytes of the result per second.

    .venv/bin/python benchmarks/bench_read.py [--runs 3]
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench_wire import FLIGHT_READ, FLIGHT_SERVER
from common import DATASET, ROOT, arguments, bench_island, median, report, run_python
from islands import free_port

ARCHIPEL_READ = """
import json, sys, time, archipel
c = archipel.connect(sys.argv[1], timeout=None)
t0 = time.perf_counter()
t = c.sql(sys.argv[2]).read_all()
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "bytes": t.nbytes, "rows": t.num_rows}))
"""

PYARROW_SCAN = """
import json, sys, time, pyarrow.dataset as ds
t0 = time.perf_counter()
t = ds.dataset(sys.argv[1], format="parquet").to_table()
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "bytes": t.nbytes, "rows": t.num_rows}))
"""

CONNECT_READ = """
import json, sys, time
from pyspark.sql import SparkSession
spark = SparkSession.builder.remote(f"sc://127.0.0.1:{sys.argv[1]}").getOrCreate()
df = spark.read.parquet(sys.argv[2])
t0 = time.perf_counter()
t = df.toArrow()
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "bytes": t.nbytes, "rows": t.num_rows}))
"""


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server on port {port} did not start")
            time.sleep(0.5)


def rate(results: list[dict]) -> tuple[float, float]:
    best = min(r["seconds"] for r in results)
    return results[0]["bytes"] / best / 1e9, median([r["seconds"] for r in results])


def main() -> None:
    args = arguments(__doc__, runs=(3, "reads per path"), no_connect=(False, "skip Spark Connect"))
    isl = bench_island()
    rows = []
    try:
        with isl.client() as c:
            d = c.describe(DATASET)
        folder = str(Path(isl.folder) / "data" / "datasets" / DATASET / "dataset")
        sql = f"SELECT * FROM {DATASET}"
        ours = [run_python(ARCHIPEL_READ, isl.address, sql) for _ in range(args.runs)]
        ours_lz4 = None
        scan = [run_python(PYARROW_SCAN, folder) for _ in range(args.runs)]

        port = free_port()
        server = subprocess.Popen([sys.executable, "-c", FLIGHT_SERVER, folder, str(port)], stdout=subprocess.PIPE,
                                  text=True)
        try:
            assert server.stdout.readline().strip() == "ready"
            flight = [run_python(FLIGHT_READ, str(port)) for _ in range(args.runs)]
        finally:
            server.kill()
            server.wait()

        connect = None
        if not args.no_connect:
            import pyspark

            home = Path(pyspark.__file__).parent
            cport = free_port()
            env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1"}
            srv = subprocess.Popen([str(home / "bin" / "spark-submit"), "--class",
                                    "org.apache.spark.sql.connect.service.SparkConnectServer",
                                    "--master", "local[2]", "--driver-memory", "4g",
                                    "--conf", f"spark.connect.grpc.binding.port={cport}",
                                    "--conf", "spark.ui.enabled=false", "spark-internal"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                   start_new_session=True)
            try:
                wait_port(cport, srv)
                connect = [run_python(CONNECT_READ, str(cport), folder) for _ in range(args.runs)]
            except Exception as exc:  # reported, not hidden
                print(f"# Spark Connect baseline failed: {exc}", file=sys.stderr)
            finally:
                os.killpg(srv.pid, 15)
                srv.wait()
        del ours_lz4
        gb = ours[0]["bytes"] / 1e9
        r_ours, m_ours = rate(ours)
        r_flight, _ = rate(flight)
        r_scan, _ = rate(scan)
        rows = [("catalog", f"{DATASET}: {d.num_rows} rows, {gb:.2f} GB as Arrow, {d.num_partitions} partitions"),
                ("archipel client (best of runs)", f"{r_ours:.2f} GB/s"),
                ("pyarrow.flight do_get, separate process", f"{r_flight:.2f} GB/s"),
                ("pyarrow.dataset scan in process (no network)", f"{r_scan:.2f} GB/s"),
                ("ratio archipel / flight (goal >= 0.7)", f"{r_ours / r_flight:.2f}")]
        if connect:
            r_conn, _ = rate(connect)
            rows += [("Spark Connect toArrow()", f"{r_conn:.2f} GB/s"),
                     ("ratio archipel / Spark Connect", f"{r_ours / r_conn:.1f}")]
        report(f"Whole-catalog read ({time.strftime('%Y-%m-%d')}, `python benchmarks/bench_read.py`)", rows)
    finally:
        isl.stop()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
