"""Replication throughput: a 1 GiB dataset in 64 partition files copied by a rule from island
SRC to island DST through the Celery workers, over root:// and over http://, adler32 verified
in the same pass; against the raw rate of the same bytes in the same run: a plain pyxrootd read
loop, xrdcp (XRD_CPUSEPGWRTRD=0), curl, and cp as the ceiling. Each rule is also paired with
the same copy by xrdcp or curl just before it, plain and, for rules that fsync, with the files
synced (the same durability): the median of those ratios is reported beside the best-of ones.
Also the time to a rule's first verified replica, twice: from a new client (its TLS
connection to the island included) and from the rule's call on a connected client (``info()``
answered first). Each rule runs on a fresh destination island, with the embedded transport
and with a Redis broker (when redis-server is installed), best of --runs.

    .venv/bin/python benchmarks/bench_replication.py [--files 64] [--file-mb 16] [--runs 3] [--no-fsync]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from common import DATA, arguments, run_python

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


def start_redis() -> tuple[subprocess.Popen, int]:
    from islands import free_port

    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    import socket

    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return proc, port
        except OSError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)


def member(folder: Path, name: str, src: IslandProcess, extra: str) -> IslandProcess:
    """A destination island following ``src``, started, once it lists the dataset."""
    isl = IslandProcess(folder, name, extra_config="[spark]\nstart = false\n"
                        f'[federation]\npeers = ["{src.address}"]\n' + extra).start()
    while not isl.client().datasets("bench.files"):
        time.sleep(0.05)
    # its copy workers up: a rule's first replica is not the time a Celery worker takes to start
    deadline = time.monotonic() + 60
    while not all("ready." in log.read_text(errors="replace") for log in (isl.folder / "logs").glob("w*.log")) \
            or not list((isl.folder / "logs").glob("w*.log")):
        assert time.monotonic() < deadline, "the island's copy workers did not start"
        time.sleep(0.05)
    return isl


def recycle_page_cache(folder: Path, nbytes: int) -> None:
    """Writes and deletes ``nbytes`` of scratch in ``folder`` before each timed copy, so every
    copy writes into page-cache memory the guest has used before. On the virtual machines
    measured here memory the guest touches for the first time costs a host fault per page: a
    first write of fresh files ran at 0.7 GB/s, the same write again at 6-7 GB/s. Without
    this the copy measured first (or into a new island's folder) pays it and the others not."""
    block = b"\0" * (8 << 20)
    scratch = folder / ".recycle"
    with open(scratch, "wb") as f:
        for _ in range(max(1, nbytes // len(block))):
            f.write(block)
    scratch.unlink()
    os.sync()


def timed(cmd: list[str], env: dict | None = None, sync: bool = False) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    if sync:
        os.sync()
    return time.perf_counter() - t0


def main() -> None:
    args = arguments(__doc__,
                     files=(64, "files replicated"),
                     file_mb=(16, "MiB per file"),
                     runs=(3, "runs per protocol"),
                     no_fsync=(False, "also rules that do not fsync each copy"))
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
    dst: dict[str, IslandProcess] = {}
    me = None
    try:
        with src.client() as c:
            c.ingest(str(folder), "bench.files")
            ds = c.describe("bench.files")
            info = c.info()
        size = sum(p.num_bytes for p in ds.partitions)
        print(f"# {len(ds.partitions)} files, {size / 2**30:.2f} GiB; 2 cores, loopback; "
              f"{time.strftime('%Y-%m-%d')}", flush=True)
        variants = [("root", "fsync", ""), ("http", "fsync", "")]
        if shutil.which("redis-server"):
            variants += [("root", "fsync", "redis"), ("http", "fsync", "redis")]
        if args.no_fsync:
            variants += [("root", "nofsync", ""), ("http", "nofsync", "")]
        files = [folder / p.path for p in ds.partitions]
        root_urls = [f"{info['root_url'].rstrip('/')}//bench.files/{p.path}" for p in ds.partitions]
        http_urls = [f"{info['data_url']}/bench.files/{p.path}" for p in ds.partitions]  # curl from the fastest server
        results: dict[str, float] = {}
        for f in files:  # every reader starts from the page cache
            f.read_bytes()
        with tempfile.TemporaryDirectory(dir=DATA) as tmp:
            out = Path(tmp)
            # The baselines read as the destination island does: its certificate (GSI for
            # root://, TLS client certificate for https://), so they pay the same security.
            me = member(base / "baseline-reader", "reader", src, "")
            env = {**me.xrootd_env(), "XRD_CPUSEPGWRTRD": "0"}
            os.environ.update({k: v for k, v in me.xrootd_env().items() if k.startswith(("X509", "XrdSec"))})
            curl = ["curl", "-s", "--fail", "--cacert", str(me.ca), "--cert", str(me.folder / "island.pem"), "--key",
                    str(me.folder / "island-key.pem"), "--parallel", "--parallel-max", "4"]
            for i, u in enumerate(http_urls):
                curl += [u, "-o", str(out / f"{i}")]

            xrdcp = ["xrdcp", "-f", "-s", "--parallel", "4", *root_urls, str(out)]

            def pyxrootd() -> float:
                r = run_python(PYXROOTD, ",".join(root_urls), str(out))
                return r["seconds"]

            baselines = {
                "cp": lambda: timed(["cp", *map(str, files), str(out)]),
                "cp+sync": lambda: timed(["cp", *map(str, files), str(out)], sync=True),
                "xrdcp": lambda: timed(xrdcp, env=env),
                "pyxrootd": pyxrootd,
                "curl": lambda: timed(curl),
                # the same copies made durable as a rule makes them (fsync): the files synced
                "xrdcp+sync": lambda: timed(xrdcp, env=env, sync=True),
                "curl+sync": lambda: timed(curl, sync=True),
            }

            def baseline(name: str) -> float:
                """One timed copy by baseline ``name`` into an empty folder, page cache recycled."""
                shutil.rmtree(out)
                out.mkdir()
                recycle_page_cache(DATA, size)
                return baselines[name]()

            for name in baselines:  # best of 3: the machine is shared and noisy
                results[name] = size / min(baseline(name) for _ in range(3))

            def replicate(key: str, proto: str, durable: str, broker: str, run: int) -> tuple[float, float, float]:
                """A rule on a fresh destination island: its rate, and the time to its first replica
                from a new client and from the rule's call."""
                if broker and not redis:
                    redis.append(start_redis())
                extra = f"fsync = {'true' if durable == 'fsync' else 'false'}\n"
                if broker:
                    extra += f'broker = "redis://127.0.0.1:{redis[0][1]}/{len(dst) % 16}"\n'
                isl = member(base / f"dst-{key}-{run}", f"dst{len(dst)}", src,
                             f"[replication]\ncache_bytes = {4 * size}\n" + extra)
                dst[f"{key}-{run}"] = isl
                try:
                    recycle_page_cache(DATA, size)
                    with isl.client() as c:
                        t0 = time.perf_counter()
                        c.info()  # the client's TLS connection to its island: timed apart
                        t1 = time.perf_counter()
                        first = None
                        for r in c.replicate("bench.files", protocol=proto):
                            if first is None and r.files_done:
                                first = time.perf_counter() - t0
                        total = time.perf_counter() - t0
                        assert r.state == "ok", r
                    os.sync()
                finally:
                    isl.stop()
                    shutil.rmtree(isl.folder, ignore_errors=True)
                return size / total, first or total, (first or total) - (t1 - t0)

            redis: list[tuple[subprocess.Popen, int]] = []
            paired: dict[str, list[dict[str, float]]] = {}
            try:
                for run in range(args.runs):  # a fresh destination island for each rule
                    for proto, durable, broker in variants:
                        key = f"{proto}-{durable}" + (f"-{broker}" if broker else "")
                        # The same copy by the baseline just before the rule, plain and with the
                        # rule's durability (the written files synced): ratios of pairs, which
                        # the machine's drift between runs moves less than best-of ratios.
                        peer = "xrdcp" if proto == "root" else "curl"
                        pair = {peer: size / baseline(peer)}
                        if durable == "fsync":
                            pair[f"{peer}+sync"] = size / baseline(f"{peer}+sync")
                        shutil.rmtree(out)
                        out.mkdir()
                        rate, first, rule = replicate(key, proto, durable, broker, run)
                        paired.setdefault(key, []).append({name: rate / r for name, r in pair.items()})
                        print(f"run {run + 1} {key}: {rate / 1e9:.2f} GB/s, first replica {rule * 1000:.0f} ms; "
                              + ", ".join(f"{rate / r:.2f} of {name} ({r / 1e9:.2f} GB/s)" for name, r in pair.items()),
                              flush=True)
                        results[f"archipel-{key}"] = max(results.get(f"archipel-{key}", 0.0), rate)
                        results[f"first-{key}"] = min(results.get(f"first-{key}", float("inf")), first)
                        results[f"rule-{key}"] = min(results.get(f"rule-{key}", float("inf")), rule)
            finally:
                for proc, _ in redis:
                    proc.kill()
                    proc.wait()
        report(results, paired, variants, args.runs)
    finally:
        for isl in (*dst.values(), src):
            isl.stop()
        if me is not None:
            me.stop()


def report(results: dict[str, float], paired: dict[str, list[dict[str, float]]], variants: list, runs: int) -> None:
    keys = [f"{p}-{d}" + (f"-{b}" if b else "") for p, d, b in variants]
    gb = 1e9
    for name in ("cp", "cp+sync", "xrdcp", "xrdcp+sync", "pyxrootd", "curl", "curl+sync"):
        print(f"{name:28} {results[name] / gb:6.2f} GB/s")
    print(f"# best of {runs} runs each; then the median of the rule's ratios to the same copy by the baseline "
          "just before it (paired), plain and synced")
    for key in keys:
        proto = key.split("-")[0]
        rate = results[f"archipel-{key}"]
        if proto == "root":
            vs = (f"{rate / results['pyxrootd']:.2f} of pyxrootd, {rate / results['xrdcp']:.2f} of xrdcp, "
                  f"{rate / results['cp']:.2f} of cp")
        else:
            vs = f"{rate / results['curl']:.2f} of curl, {rate / results['cp']:.2f} of cp"
        pairs = paired[key]
        medians = ", ".join(f"{statistics.median(p[name] for p in pairs):.2f} of {name}" for name in pairs[0])
        print(f"archipel rule {key:20} {rate / gb:6.2f} GB/s  ({vs}; paired: {medians})")
    print("new client to first verified replica: " + ", ".join(
        f"{key} {results['first-' + key] * 1000:.0f} ms" for key in keys))
    print("rule (connected client) to first verified replica: " + ", ".join(
        f"{key} {results['rule-' + key] * 1000:.0f} ms" for key in keys))


if __name__ == "__main__":
    main()
