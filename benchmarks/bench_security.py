"""What TLS and token checks cost: the same island, the same data and the same queries, over its
TLS client port (with a bearer token, verified at every call) and over a plaintext benchmark port
(``[security] benchmark_plaintext_port``: no TLS, no token), alternated in one run. Readers run
in their own processes. Also the cost of one token verification, in process.

    .venv/bin/python benchmarks/bench_security.py [--runs 3] [--small 60]
"""

from __future__ import annotations

import argparse
import sys
import time

from common import DATA, DATASET, make_input, median, report, run_python
from islands import IslandProcess, free_port

READER = """
import json, sys, time, archipel
from archipel.client import Client
address, mode, sql, repeat = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = Client(address, timeout=None, plaintext=(mode == "plain"))
c.sql("SELECT 1 AS x FROM %s LIMIT 1" % sys.argv[5]).read_all()  # connection and handshake paid
times, nbytes = [], 0
for _ in range(repeat):
    t0 = time.perf_counter()
    t = c.sql(sql).read_all()
    times.append(time.perf_counter() - t0)
    nbytes = t.nbytes
print(json.dumps({"seconds": times, "bytes": nbytes}))
"""

SMALL = f"SELECT id, ra, dec FROM {DATASET} WHERE cone(ra, dec, 40, 20, 0.2)"
WHOLE = f"SELECT * FROM {DATASET}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3, help="whole-catalog reads per mode")
    ap.add_argument("--small", type=int, default=60, help="small queries per mode and round")
    args = ap.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    folder = DATA / "island-security"
    plain_port = free_port()
    isl = IslandProcess(folder, "benchsec", extra_config="[spark]\nstart = false\n"
                        f"[security]\nbenchmark_plaintext_port = {plain_port}\n")
    if (folder / "archipel.toml").exists():
        from island.config import load_config

        plain_port = load_config(folder, environ={}).security.benchmark_plaintext_port
    isl.start()
    try:
        with isl.client() as c:
            if DATASET not in {d.name for d in c.datasets()}:
                c.ingest(str(make_input()), DATASET)
        import os

        os.environ.update({"ARCHIPEL_CA": str(isl.ca), "ARCHIPEL_TOKEN": isl.admin_token})
        plain = f"127.0.0.1:{plain_port}"
        small = {"tls": [], "plain": []}
        whole = {"tls": [], "plain": []}
        for _ in range(3):  # alternated rounds: drifts of the machine fall on both
            for mode, address in (("tls", isl.address), ("plain", plain)):
                small[mode] += run_python(READER, address, mode, SMALL, str(args.small), DATASET)["seconds"]
        nbytes = 0
        for _ in range(args.runs):
            for mode, address in (("tls", isl.address), ("plain", plain)):
                r = run_python(READER, address, mode, WHOLE, "1", DATASET)
                whole[mode] += r["seconds"]
                nbytes = r["bytes"]
    finally:
        isl.stop()
    verify_us = _token_verify_us(folder)
    s_tls, s_plain = median(small["tls"]) * 1000, median(small["plain"]) * 1000
    w_tls, w_plain = nbytes / min(whole["tls"]) / 1e9, nbytes / min(whole["plain"]) / 1e9
    report(f"TLS and tokens against plaintext ({time.strftime('%Y-%m-%d')})", [
        ("small query median, TLS + token", f"{s_tls:.2f} ms"),
        ("small query median, plaintext", f"{s_plain:.2f} ms"),
        ("small query overhead", f"{(s_tls / s_plain - 1) * 100:+.1f} %"),
        ("whole-catalog read, TLS + token", f"{w_tls:.2f} GB/s ({nbytes / 1e9:.2f} GB, best of {args.runs})"),
        ("whole-catalog read, plaintext", f"{w_plain:.2f} GB/s"),
        ("whole-catalog ratio TLS / plaintext", f"{w_tls / w_plain:.2f}"),
        ("one token verification (cached certificate)", f"{verify_us:.0f} us"),
    ])


def _token_verify_us(folder) -> float:
    from federation.pki import load_credentials
    from island.security import tokens

    creds = load_credentials(folder, "benchsec")
    token, _ = tokens.mint(creds, "bench")
    tokens.verify(creds, token, lambda _id: False)
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        tokens.verify(creds, token, lambda _id: False)
    return (time.perf_counter() - t0) / n * 1e6


if __name__ == "__main__":
    sys.exit(main())
