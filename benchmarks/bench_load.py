"""A bounded load test of one island (issue 15): 200 idle subscription streams held open, then
50 clients (5 processes of 10 threads) running small queries for 60 s, while a probe measures
the latency of a small query and of a catalog listing. The baseline is the same probe on the
same island with nothing else running, measured first in the same run.

    cd benchmarks && ../.venv/bin/python bench_load.py [--clients 50] [--seconds 60] [--streams 200]

Reports the probe's latency under load against its baseline, the clients' throughput and
latency, errors, and the island's resident memory before and after.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from common import arguments  # noqa: E402
from islands import IslandProcess, archipelago  # noqa: E402
from skydata import sky_table  # noqa: E402

SMALL = "SELECT id, ra, dec FROM load.sky WHERE cone(ra, dec, {ra}, 10, 2)"


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _quantiles(values: list[float]) -> tuple[float, float]:
    values = sorted(values)
    if not values:
        return float("nan"), float("nan")
    return statistics.median(values), values[min(len(values) - 1, int(0.99 * len(values)))]


def probe(address: str, token: str, ca: str, seconds: float) -> dict[str, list[float]]:
    import archipel

    out: dict[str, list[float]] = {"query": [], "datasets": []}
    with archipel.connect(address, token=token, ca=ca) as c:
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            t0 = time.monotonic()
            c.sql(SMALL.format(ra=(i * 37) % 360)).read_all()
            out["query"].append(time.monotonic() - t0)
            t0 = time.monotonic()
            c.datasets()
            out["datasets"].append(time.monotonic() - t0)
            i += 1
    return out


def _client_process(address: str, token: str, ca: str, threads: int, seconds: float, queue) -> None:
    import archipel

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def run(k: int) -> None:
        with archipel.connect(address, token=token, ca=ca) as c:
            end = time.monotonic() + seconds
            i = k
            while time.monotonic() < end:
                t0 = time.monotonic()
                try:
                    c.sql(SMALL.format(ra=(i * 53) % 360)).read_all()
                    with lock:
                        latencies.append(time.monotonic() - t0)
                except Exception as exc:
                    with lock:
                        errors.append(f"{type(exc).__name__}: {str(exc)[:100]}")
                i += threads

    pool = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    queue.put((latencies, errors))


def main() -> None:
    args = arguments(__doc__.splitlines()[0],
                     clients=(50, "busy clients"),
                     seconds=(60.0, "how long they stay busy"),
                     streams=(200, "idle subscription streams held open"),
                     baseline_seconds=(10.0, "probe time alone"))
    folder = Path(tempfile.mkdtemp(prefix="archipel-load-"))
    isl = IslandProcess(folder / "island", "load", extra_config="[spark]\nstart = false\n").start()
    try:
        address, ca = isl.address, str(isl.ca)
        arch = archipelago()
        with isl.client() as c:
            c.publish("load.sky", sky_table(200_000), ra="ra", dec="dec")
        reader = arch.token("reader")
        probe(address, reader, ca, 2.0)  # warm
        rss0 = _rss_mib(isl.proc.pid)
        base = probe(address, reader, ca, args.baseline_seconds)

        # 200 idle streams: subscriptions of 10 users (20 each, under streams_per_caller = 32)
        import archipel

        holders = []
        subs = []
        for u in range(10):
            cl = archipel.connect(address, token=arch.token(f"idle{u}"), ca=ca)
            holders.append(cl)
            for k in range(args.streams // 10):
                subs.append(cl.subscribe("load.*", name=f"idle{u}-{k}"))
        streams_open = len(subs)
        idle = probe(address, reader, ca, args.baseline_seconds)  # the 200 streams open, nothing else

        procs = max(1, args.clients // 10)
        per = args.clients // procs
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        workers = [ctx.Process(target=_client_process, args=(address, arch.token(f"load{p}"), ca, per,
                                                             args.seconds, queue)) for p in range(procs)]
        t0 = time.monotonic()
        for w in workers:
            w.start()
        time.sleep(min(5.0, args.seconds / 4))  # the clients are all running
        loaded = probe(address, reader, ca, max(1.0, args.seconds - 10))
        results = [queue.get(timeout=args.seconds + 120) for _ in workers]
        for w in workers:
            w.join()
        elapsed = time.monotonic() - t0
        rss1 = _rss_mib(isl.proc.pid)
        for s in subs:
            s.close()
        for cl in holders:
            cl.close()
        lat = [x for r in results for x in r[0]]
        errors = [e for r in results for e in r[1]]
        bq50, bq99 = _quantiles(base["query"])
        lq50, lq99 = _quantiles(loaded["query"])
        iq50, iq99 = _quantiles(idle["query"])
        id50, id99 = _quantiles(idle["datasets"])
        bd50, bd99 = _quantiles(base["datasets"])
        ld50, ld99 = _quantiles(loaded["datasets"])
        c50, c99 = _quantiles(lat)
        print(f"## Load test, {time.strftime('%Y-%m-%d')}: {args.clients} clients for {args.seconds:g} s, "
              f"{streams_open} idle subscription streams, one island (Spark off, Arrow path)\n")
        print(f"| measure | baseline (alone) | with {streams_open} idle streams | ratio | "
              f"+ {args.clients} busy clients | ratio |")
        print("| --- | --- | --- | --- | --- | --- |")
        print(f"| probe: small cone query, p50 / p99 | {1e3 * bq50:.1f} / {1e3 * bq99:.1f} ms | "
              f"{1e3 * iq50:.1f} / {1e3 * iq99:.1f} ms | {iq50 / bq50:.2f}x / {iq99 / bq99:.2f}x | "
              f"{1e3 * lq50:.1f} / {1e3 * lq99:.1f} ms | {lq50 / bq50:.1f}x / {lq99 / bq99:.1f}x |")
        print(f"| probe: datasets(), p50 / p99 | {1e3 * bd50:.1f} / {1e3 * bd99:.1f} ms | "
              f"{1e3 * id50:.1f} / {1e3 * id99:.1f} ms | {id50 / bd50:.2f}x / {id99 / bd99:.2f}x | "
              f"{1e3 * ld50:.1f} / {1e3 * ld99:.1f} ms | {ld50 / bd50:.1f}x / {ld99 / bd99:.1f}x |")
        print(f"\nclients: {len(lat)} queries in {elapsed:.0f} s ({len(lat) / elapsed:.0f}/s), p50 {1e3 * c50:.0f} ms, "
              f"p99 {1e3 * c99:.0f} ms, {len(errors)} errors{': ' + errors[0] if errors else ''}")
        print(f"island memory (RSS): {rss0:.0f} MiB before, {rss1:.0f} MiB after")
    finally:
        isl.stop()


if __name__ == "__main__":
    main()
