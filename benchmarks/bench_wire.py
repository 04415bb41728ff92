"""Data at wire speed (issue 14): each Archipel path against its baseline, alternated in one
run, every reader in its own process (never pyarrow.flight and grpcio in one process).

1. Whole-catalog read (``SELECT *``, 10 M rows) by the Python client, direct path (the client
   decodes the partition files itself: on the island's host through the descriptors the island
   hands over, ``island.shortcircuit``; over the network from the island's data port over
   HTTPS, ``local_reads=False``) and the stream path, against ``pyarrow.flight`` ``do_get`` of the same table held in memory by a
   Flight server in another process, over plaintext gRPC (the issue's baseline) and over TLS
   (the same security as the island's).
2. The same read sent to a second island that follows the first (route remote): the entry
   island names the holder's files, the client fetches them from the holder; against the read
   sent straight to the holder.
3. A 10-degree cone (hundreds of thousands of rows) through the client, against
   ``pyarrow.dataset`` in the reader's own process over the same partition files (the cone's
   pixels), with the same ``_healpix_29`` range filter and the exact cone test; both run the
   cone once before the timed run.

Rates are Arrow bytes of the result per second, best of ``--runs``. The whole-catalog readers,
Flight's included (both servers up for the whole loop), take turns, each round in another
order: the first in a round read slower than the others here (0.64-0.78 GB/s for the reader
that always came first, against 0.99-1.01 for the same read routed, later in the round).

    .venv/bin/python benchmarks/bench_wire.py [--runs 3]
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

from common import DATASET, ROOT, arguments, bench_pair, report, run_python

CLIENT_READ = """
import json, sys, time, archipel
c = archipel.connect(sys.argv[1], timeout=None)
mode, route = sys.argv[3], sys.argv[4]  # mode: local (short-circuit), network (data port) or stream
kw = {"direct": mode != "stream", "local_reads": mode == "local", "route": route}
c.sql("SELECT id FROM bench.big LIMIT 1", **kw).read_all()  # channel and TLS session up
if len(sys.argv) > 5:  # warm: the same query once first (page cache, connections, memory)
    c.sql(sys.argv[2], **kw).read_all()
t0 = time.perf_counter()
r = c.sql(sys.argv[2], **kw)
t = r.read_all()
dt = time.perf_counter() - t0
assert r.path == ("stream" if mode == "stream" else "direct"), r.path
assert r.local_files == (len(r.files) if mode == "local" else 0), (mode, r.local_files)
print(json.dumps({"seconds": dt, "bytes": t.nbytes, "rows": t.num_rows, "files": len(r.files)}))
"""

FLIGHT_SERVER = """
import sys, pyarrow as pa, pyarrow.dataset as ds, pyarrow.flight as fl
table = ds.dataset(sys.argv[1], format="parquet").to_table()
table = pa.Table.from_batches(table.combine_chunks().to_batches(max_chunksize=65536))
class Server(fl.FlightServerBase):
    def do_get(self, context, ticket):
        return fl.RecordBatchStream(table)
tls = []
if len(sys.argv) > 3:
    tls = [fl.CertKeyPair(open(sys.argv[3], "rb").read(), open(sys.argv[4], "rb").read())]
scheme = "grpc+tls" if tls else "grpc"
s = Server(f"{scheme}://127.0.0.1:{sys.argv[2]}", tls_certificates=tls)
print("ready", flush=True)
s.serve()
"""

FLIGHT_READ = """
import json, sys, time, pyarrow.flight as fl
if len(sys.argv) > 2:
    c = fl.connect(f"grpc+tls://127.0.0.1:{sys.argv[1]}", tls_root_certs=open(sys.argv[2], "rb").read())
else:
    c = fl.connect(f"grpc://127.0.0.1:{sys.argv[1]}")
t0 = time.perf_counter()
t = c.do_get(fl.Ticket(b"all")).read_all()
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "bytes": t.nbytes, "rows": t.num_rows}))
"""

CONE_PYARROW = """
import json, sys, time
sys.path.insert(0, sys.argv[5])
import pyarrow.compute as pc, pyarrow.dataset as pds
from archipel.direct import cone_mask
from metacatalog.sky import Cone, healpix29_ranges
paths = sys.argv[1].split(",")
ra0, dec0, r = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])

def run():
    h = pds.field("_healpix_29")
    ranges = healpix29_ranges(Cone(ra0, dec0, r))
    expr = None
    for lo, hi in ranges:
        e = (h >= lo) & (h <= hi)
        expr = e if expr is None else expr | e
    t = pds.dataset(paths, format="parquet").to_table(filter=expr)
    return t.filter(cone_mask(t["ra"], t["dec"], ra0, dec0, r))

run()  # warm, like the client's read: page cache, imports, memory
t0 = time.perf_counter()
t = run()
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "bytes": t.nbytes, "rows": t.num_rows}))
"""


def best(results: list[dict]) -> float:
    return max(r["bytes"] / r["seconds"] for r in results) / 1e9


@contextlib.contextmanager
def flight(folder: str, tls: tuple[str, str, str] | None):
    """A Flight server holding the catalog in memory, in a process of its own; yields a
    function that times one ``do_get`` of it from another process."""
    from islands import free_port

    port = free_port()
    extra = [tls[1], tls[2]] if tls else []
    server = subprocess.Popen([sys.executable, "-c", FLIGHT_SERVER, folder, str(port), *extra],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        yield lambda: run_python(FLIGHT_READ, str(port), *([tls[0]] if tls else []))
    finally:
        server.kill()
        server.wait()


def main() -> None:
    args = arguments(__doc__, runs=(3, "reads per path"), radius=([10.0, 20.0], "cone radii in degrees"))
    with bench_pair() as (b, a):
        with b.client() as cb:
            d = cb.describe(DATASET)
        folder = str(Path(b.folder) / "data" / "datasets" / DATASET / "dataset")
        sql = f"SELECT * FROM {DATASET}"
        tls = (str(b.ca), str(b.folder / "island.pem"), str(b.folder / "island-key.pem"))
        with flight(folder, None) as fl_read, flight(folder, tls) as fl_tls_read:
            readers = {
                "local": lambda: run_python(CLIENT_READ, b.address, sql, "local", "auto"),
                "direct": lambda: run_python(CLIENT_READ, b.address, sql, "network", "auto"),
                "routed_local": lambda: run_python(CLIENT_READ, a.address, sql, "local", "remote"),
                "routed": lambda: run_python(CLIENT_READ, a.address, sql, "network", "remote"),
                "stream": lambda: run_python(CLIENT_READ, b.address, sql, "stream", "auto"),
                "fl_plain": fl_read,
                "fl_tls": fl_tls_read,
            }
            reads: dict[str, list[dict]] = {name: [] for name in readers}
            names = list(readers)
            for i in range(args.runs):  # alternated, each round in another order: every reader
                for name in names[i:] + names[:i]:  # sees the same machine, in every position
                    reads[name].append(readers[name]())
        local, direct, stream = reads["local"], reads["direct"], reads["stream"]
        routed_local, routed, fl_plain, fl_tls = reads["routed_local"], reads["routed"], reads["fl_plain"], reads["fl_tls"]

        from metacatalog.sky import Cone, partitions_in_cone

        cones = {}
        for r in args.radius:
            ra0, dec0 = 120.0, 30.0
            keep = partitions_in_cone([(p.order, p.pixel) for p in d.partitions], Cone(ra0, dec0, r))
            paths = ",".join(str(Path(folder).parent / p.path) for p, k in zip(d.partitions, keep) if k)
            cone_sql = f"SELECT * FROM {DATASET} WHERE cone(ra, dec, {ra0}, {dec0}, {r})"
            ours, network, streamed, base = [], [], [], []
            for _ in range(args.runs):
                ours.append(run_python(CLIENT_READ, b.address, cone_sql, "local", "auto", "warm"))
                network.append(run_python(CLIENT_READ, b.address, cone_sql, "network", "auto", "warm"))
                streamed.append(run_python(CLIENT_READ, b.address, cone_sql, "stream", "auto", "warm"))
                base.append(run_python(CONE_PYARROW, paths, str(ra0), str(dec0), str(r), str(ROOT)))
            assert ours[0]["rows"] == network[0]["rows"] == base[0]["rows"] == streamed[0]["rows"], \
                (ours[0], network[0], base[0], streamed[0])
            cones[r] = (ours, network, streamed, base)
        gb = direct[0]["bytes"] / 1e9
        r_local, r_direct, r_stream = best(local), best(direct), best(stream)
        r_routed_local, r_routed = best(routed_local), best(routed)
        r_fl, r_fl_tls = best(fl_plain), best(fl_tls)
        rows = [
            ("catalog", f"{DATASET}: {d.num_rows} rows, {gb:.2f} GB as Arrow, {d.num_partitions} partitions"),
            ("client, direct, same host (short-circuit: descriptors)", f"{r_local:.2f} GB/s"),
            ("client, direct, over the network (data port, TLS)", f"{r_direct:.2f} GB/s ({direct[0]['files']} files)"),
            ("client, stream path", f"{r_stream:.2f} GB/s"),
            ("pyarrow.flight do_get, plaintext, separate process", f"{r_fl:.2f} GB/s"),
            ("pyarrow.flight do_get, TLS, separate process", f"{r_fl_tls:.2f} GB/s"),
            ("**same host / Flight plaintext (goal >= 1.0, at least 0.8)**", f"**{r_local / r_fl:.2f}**"),
            ("**network / Flight plaintext (goal >= 1.0, at least 0.8)**", f"**{r_direct / r_fl:.2f}**"),
            ("network / Flight TLS", f"{r_direct / r_fl_tls:.2f}"),
            ("stream / Flight plaintext (before)", f"{r_stream / r_fl:.2f}"),
            ("routed through a second island: same host / network", f"{r_routed_local:.2f} / {r_routed:.2f} GB/s"),
            ("**routed / straight (goal >= 0.9): same host / network**",
             f"**{r_routed_local / r_local:.2f} / {r_routed / r_direct:.2f}**"),
        ]
        for r, (ours, network, streamed, base) in cones.items():
            ms = {k: min(x["seconds"] for x in v) * 1000
                  for k, v in (("l", ours), ("d", network), ("s", streamed), ("b", base))}
            rows += [
                (f"cone {r:g} deg, rows out", f"{ours[0]['rows']} ({ours[0]['bytes'] / 1e6:.0f} MB as Arrow, "
                                             f"{ours[0]['files']} files)"),
                (f"cone {r:g} deg: same host / network / stream / pyarrow.dataset (best)",
                 f"{ms['l']:.0f} / {ms['d']:.0f} / {ms['s']:.0f} / {ms['b']:.0f} ms"),
                (f"**cone {r:g} deg: pyarrow.dataset time / client time (goal >= 0.7)**",
                 f"**same host {ms['b'] / ms['l']:.2f}**, network {ms['b'] / ms['d']:.2f}, "
                 f"stream {ms['b'] / ms['s']:.2f}"),
            ]
        report(f"Data at wire speed ({time.strftime('%Y-%m-%d')}, `python benchmarks/bench_wire.py "
               f"--runs {args.runs}`)", rows)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
