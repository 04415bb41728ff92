"""Replication throughput: a 1 GiB dataset in 64 partition files copied by a rule from island
SRC to island DST through the Celery workers, over root:// and over http://, adler32 verified
in the same pass; against the raw rate of the same bytes in the same run: a plain pyxrootd read
loop, xrdcp (XRD_CPUSEPGWRTRD=0), curl, and cp as the ceiling. Also the time from a rule's
creation to its first verified replica.

    .venv/bin/python benchmarks/bench_replication.py [--files 64] [--file-mb 16]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from common import DATA, run_python

from islands import IslandProcess

PYXROOTD = """
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
from XRootD import client
from XRootD.client.flags import OpenFlags
urls, out = sys.argv[1].split(","), sys.argv[2]

def copy(item):
    i, url = item
    f = client.File()
    st, _ = f.open(url, OpenFlags.READ)
    assert st.ok, st.message
    off = 0
    with open(f"{out}/{i}", "wb") as w:
        while True:
            st, data = f.read(off, 8 << 20)
            assert st.ok, st.message
            if not data:
                break
            w.write(data); off += len(data)
    f.close()
    return off

t0 = time.perf_counter()
with ThreadPoolExecutor(4) as pool:  # the parallelism of an island's worker
    total = sum(pool.map(copy, enumerate(urls)))
print(json.dumps({"bytes": total, "seconds": time.perf_counter() - t0}))
"""


def make_files(folder: Path, files: int, file_mb: int) -> Path:
    if (folder / "_done").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    rows = file_mb * 1024 * 1024 // 80
    for i in range(files):
        t = pa.table({f"x{j}": rng.normal(size=rows) for j in range(10)})
        pq.write_table(t, folder / f"part-{i:03d}.parquet", compression="none")
    (folder / "_done").touch()
    return folder


def timed(cmd: list[str], env: dict | None = None, sync: bool = False) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    if sync:
        os.sync()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--file-mb", type=int, default=16)
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    os.chmod(DATA, 0o755)
    folder = make_files(DATA / f"repl-input-{args.files}x{args.file_mb}", args.files, args.file_mb)
    for p in [folder, *folder.parents]:
        if not p.stat().st_mode & 0o001:
            sys.exit(f"{p} is not searchable by other users: xrootd (which drops to its own user) cannot serve it")
    base = DATA / "repl-islands"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir()
    os.chmod(base, 0o755)
    common = "[spark]\nstart = false\n"
    src = IslandProcess(base / "src", "src", extra_config=common).start()
    dst = {}
    try:
        with src.client() as c:
            c.ingest(str(folder), "bench.files")
            ds = c.describe("bench.files")
            info = c.info()
        size = sum(p.num_bytes for p in ds.partitions)
        print(f"# {len(ds.partitions)} files, {size / 2**30:.2f} GiB; 2 cores, loopback; "
              f"{time.strftime('%Y-%m-%d')}", flush=True)
        for proto in ("root", "http"):
            for durable in (True, False):
                key = f"{proto}-{'fsync' if durable else 'nofsync'}"
                dst[key] = IslandProcess(base / f"dst-{key}", f"dst{proto}{int(durable)}", extra_config=common +
                                         f'[federation]\npeers = ["{src.address}"]\n'
                                         f"[replication]\ncache_bytes = {4 * size}\n"
                                         f"fsync = {'true' if durable else 'false'}\n").start()
        for isl in dst.values():
            while not isl.client().datasets("bench.files"):
                time.sleep(0.1)
        files = [folder / p.path for p in ds.partitions]
        root_urls = [f"{info['root_url'].rstrip('/')}//bench.files/{p.path}" for p in ds.partitions]
        http_urls = [f"{info['http_url']}/bench.files/{p.path}" for p in ds.partitions]
        results: dict[str, float] = {}
        for f in files:  # every reader starts from the page cache
            f.read_bytes()
        with tempfile.TemporaryDirectory(dir=DATA) as tmp:
            out = Path(tmp)
            # The baselines read as the destination island does: its certificate (GSI for
            # root://, TLS client certificate for https://), so they pay the same security.
            me = next(iter(dst.values()))
            env = {**me.xrootd_env(), "XRD_CPUSEPGWRTRD": "0"}
            os.environ.update({k: v for k, v in me.xrootd_env().items() if k.startswith(("X509", "XrdSec"))})
            curl = ["curl", "-s", "--fail", "--cacert", str(me.ca), "--cert", str(me.folder / "island.pem"), "--key",
                    str(me.folder / "island-key.pem"), "--parallel", "--parallel-max", "4"]
            for i, u in enumerate(http_urls):
                curl += [u, "-o", str(out / f"{i}")]

            def pyxrootd() -> float:
                r = run_python(PYXROOTD, ",".join(root_urls), str(out))
                return r["seconds"]

            baselines = {
                "cp": lambda: timed(["cp", *map(str, files), str(out)]),
                "cp+sync": lambda: timed(["cp", *map(str, files), str(out)], sync=True),
                "xrdcp": lambda: timed(["xrdcp", "-f", "-s", "--parallel", "4", *root_urls, str(out)], env=env),
                "pyxrootd": pyxrootd,
                "curl": lambda: timed(curl),
            }
            for name, run in baselines.items():  # best of 3: the machine is shared and noisy
                best = float("inf")
                for _ in range(3):
                    shutil.rmtree(out)
                    out.mkdir()
                    os.sync()
                    best = min(best, run())
                results[name] = size / best
            os.sync()
        for key, isl in dst.items():
            proto = key.split("-")[0]
            with isl.client() as c:
                t0 = time.perf_counter()
                first = None
                for r in c.replicate("bench.files", protocol=proto):
                    if first is None and r.files_done:
                        first = time.perf_counter() - t0
                total = time.perf_counter() - t0
                assert r.state == "ok", r
            os.sync()
            results[f"archipel-{key}"] = size / total
            results[f"first-{key}"] = first or total
        gb = 1e9
        for name in ("cp", "cp+sync", "xrdcp", "pyxrootd", "curl"):
            print(f"{name:28} {results[name] / gb:6.2f} GB/s")
        for key in dst:
            proto = key.split("-")[0]
            rate = results[f"archipel-{key}"]
            if proto == "root":
                vs = (f"{rate / results['pyxrootd']:.2f} of pyxrootd, {rate / results['xrdcp']:.2f} of xrdcp, "
                      f"{rate / results['cp']:.2f} of cp")
            else:
                vs = f"{rate / results['curl']:.2f} of curl, {rate / results['cp']:.2f} of cp"
            print(f"archipel rule {key:14} {rate / gb:6.2f} GB/s  ({vs})")
        print("rule to first verified replica: " + ", ".join(
            f"{key} {results['first-' + key] * 1000:.0f} ms" for key in dst))
    finally:
        for isl in (*dst.values(), src):
            isl.stop()


if __name__ == "__main__":
    main()
