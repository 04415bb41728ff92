"""What the HTTP face costs beside the gRPC client, on one island (Arrow path, the 10 M-row
catalog), alternated in one run, each reader in its own process:

- a whole-catalog read as an Arrow IPC stream over HTTPS (``/api/v1/query?format=arrow``, read
  by pyarrow) against the gRPC client's ``sql().read_all()``, with ``curl`` of the same URL to
  /dev/null as the floor of the HTTP path;
- a small cone's median through TAP (``/tap/sync``, ADQL ``CONTAINS(POINT, CIRCLE)``, VOTable
  parsed by astropy) against the same cone through the gRPC client.

    .venv/bin/python benchmarks/bench_web.py [--runs 3] [--small 40]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.parse

from common import DATA, DATASET, SQL_READER, arguments, make_input, median, report, run_python
from islands import IslandProcess

HTTP_READER = """
import http.client, json, os, ssl, sys, time, urllib.parse
import pyarrow as pa
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=os.environ["ARCHIPEL_CA"])
conn = http.client.HTTPSConnection(host, port, context=ctx)
hdr = {"Authorization": "Bearer " + os.environ["ARCHIPEL_TOKEN"]}
t0 = time.perf_counter()
conn.request("GET", path, headers=hdr)
resp = conn.getresponse()
assert resp.status == 200, resp.read()[:500]
t = pa.ipc.open_stream(resp).read_all()
print(json.dumps({"seconds": [time.perf_counter() - t0], "bytes": t.nbytes, "rows": t.num_rows}))
"""

TAP_READER = """
import http.client, io, json, os, ssl, sys, time, urllib.parse
from astropy.io.votable import parse_single_table
host, port, adql, repeat = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
ctx = ssl.create_default_context(cafile=os.environ["ARCHIPEL_CA"])
conn = http.client.HTTPSConnection(host, port, context=ctx)
hdr = {"Authorization": "Bearer " + os.environ["ARCHIPEL_TOKEN"], "Content-Type": "application/x-www-form-urlencoded"}
body = urllib.parse.urlencode({"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": adql})
def once():
    conn.request("POST", "/tap/sync", body=body, headers=hdr)
    resp = conn.getresponse()
    data = resp.read()
    assert resp.status == 200, data[:500]
    return len(parse_single_table(io.BytesIO(data)).array)
once()  # connection and handshake paid
times = []
for _ in range(repeat):
    t0 = time.perf_counter()
    rows = once()
    times.append(time.perf_counter() - t0)
print(json.dumps({"seconds": times, "rows": rows}))
"""

WHOLE = f"SELECT * FROM {DATASET}"
CONE_SQL = f"SELECT id, ra, dec FROM {DATASET} WHERE cone(ra, dec, 40, 20, 0.2)"
CONE_ADQL = (f"SELECT id, ra, dec FROM {DATASET} WHERE CONTAINS(POINT('ICRS', ra, dec), "
             f"CIRCLE('ICRS', 40, 20, 0.2)) = 1")


def _curl_rate(url: str) -> float:
    out = subprocess.run(["curl", "-sS", "--cacert", os.environ["ARCHIPEL_CA"], "-H",
                          f"Authorization: Bearer {os.environ['ARCHIPEL_TOKEN']}", "-o", "/dev/null", "-w",
                          "%{size_download} %{time_total}", url], capture_output=True, text=True, timeout=1800,
                         check=True)
    size, seconds = out.stdout.split()
    return float(size) / float(seconds)


def main() -> None:
    args = arguments(__doc__, runs=(3, "whole-catalog reads per path"), small=(40, "cones per path and round"))
    DATA.mkdir(parents=True, exist_ok=True)
    folder = DATA / "island-web"
    isl = IslandProcess(folder, "benchweb", extra_config="[spark]\nstart = false\n")
    isl.start()
    try:
        os.environ.update({"ARCHIPEL_CA": str(isl.ca), "ARCHIPEL_TOKEN": isl.admin_token})
        with isl.client() as c:
            if DATASET not in {d.name for d in c.datasets()}:
                c.ingest(str(make_input()), DATASET)
        host, port = "127.0.0.1", str(isl.http_port)
        path = "/api/v1/query?" + urllib.parse.urlencode({"sql": WHOLE, "format": "arrow"})
        whole = {"grpc": [], "http": []}
        curl = 0.0
        nbytes = rows = 0
        for _ in range(args.runs):  # alternated: drifts of the machine fall on both
            r = run_python(SQL_READER, isl.address, "tls", WHOLE, "1", DATASET)
            whole["grpc"] += r["seconds"]
            nbytes, rows = r["bytes"], r["rows"]
            h = run_python(HTTP_READER, host, port, path)
            assert h["rows"] == rows, (h, r)
            whole["http"] += h["seconds"]
            curl = max(curl, _curl_rate(f"https://{host}:{port}{path}"))
        cones = {"grpc": [], "tap": []}
        for _ in range(3):
            g = run_python(SQL_READER, isl.address, "tls", CONE_SQL, str(args.small), DATASET)
            t = run_python(TAP_READER, host, port, CONE_ADQL, str(args.small))
            assert g["rows"] == t["rows"], (g["rows"], t["rows"])
            cones["grpc"] += g["seconds"]
            cones["tap"] += t["seconds"]
            cone_rows = t["rows"]
    finally:
        isl.stop()
    w_grpc, w_http = nbytes / min(whole["grpc"]) / 1e9, nbytes / min(whole["http"]) / 1e9
    c_grpc, c_tap = median(cones["grpc"]) * 1000, median(cones["tap"]) * 1000
    report(f"HTTP face against the gRPC client ({time.strftime('%Y-%m-%d')})", [
        ("whole-catalog read, gRPC client", f"{w_grpc:.2f} GB/s ({nbytes / 1e9:.2f} GB, {rows} rows, best of {args.runs})"),
        ("whole-catalog read, Arrow over HTTPS (pyarrow)", f"{w_http:.2f} GB/s"),
        ("ratio HTTP / gRPC", f"{w_http / w_grpc:.2f}"),
        ("curl of the same Arrow stream to /dev/null (HTTP floor, wire bytes)", f"{curl / 1e9:.2f} GB/s"),
        (f"0.2-degree cone ({cone_rows} rows) median, gRPC client", f"{c_grpc:.2f} ms"),
        ("same cone through TAP sync (ADQL, VOTable parsed)", f"{c_tap:.2f} ms"),
        ("ratio TAP / gRPC", f"{c_tap / c_grpc:.2f}"),
    ])


if __name__ == "__main__":
    sys.exit(main())
