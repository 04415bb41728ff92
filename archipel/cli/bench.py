"""``archipel bench``: a fixed suite of use cases timed against any archipelago, through the
island the client is connected to, with a report that names the machine and the archipelago so
that sites can compare theirs.

The cases: a small cone (median of many), a whole-dataset scan (rows and bytes a second), a
join, a query routed to the dataset's origin when that is another island, a replication of the
dataset's partitions in a cone to the connected island (a rule made for the run, then deleted)
and the latency of a subscription (a table published and the time until its event arrives;
the table is deleted after). Nothing is left behind but what the island logs."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from archipel.errors import ArchipelError, InvalidArgument

__all__ = ["add_commands", "run_suite", "BenchResult"]


@dataclass
class BenchResult:
    case: str
    value: float
    unit: str
    detail: str = ""
    runs: int = 1


@dataclass
class Report:
    started: str
    machine: dict[str, Any]
    archipelago: dict[str, Any]
    dataset: str
    results: list[BenchResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def markdown(self) -> str:
        m, a = self.machine, self.archipelago
        lines = [f"# archipel bench, {self.started}", "",
                 f"- machine: {m['cpus']} CPUs, {m['memory_gib']} GiB, {m['platform']}, Python {m['python']}, "
                 f"pyarrow {m['pyarrow']}, grpcio {m['grpcio']}",
                 f"- archipelago via {a['island']} ({a['version']}): {a['islands']} islands "
                 f"({', '.join(a['island_names'])}), {a['datasets']} datasets; Spark ready: {a['spark_ready']}",
                 f"- dataset: {self.dataset}", "", "| case | value | detail |", "| --- | --- | --- |"]
        for r in self.results:
            lines.append(f"| {r.case} | {r.value:.4g} {r.unit} | {r.detail} |")
        for case, why in self.skipped.items():
            lines.append(f"| {case} | skipped | {why} |")
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def _machine() -> dict[str, Any]:
    import grpc
    import pyarrow

    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        pages = 0
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "memory_gib": round(pages / 2**30, 1),
            "python": platform.python_version(), "pyarrow": pyarrow.__version__, "grpcio": grpc.__version__,
            "host": platform.node()}


def _pick_dataset(client, wanted: str | None):
    if wanted:
        d = client.describe(wanted)
        if not d.ra_column:
            raise InvalidArgument(f"{wanted} has no sky columns: bench needs a HATS catalog")
        return d
    sky = [d for d in client.datasets() if d.ra_column and d.num_rows > 0]
    if not sky:
        raise InvalidArgument("the archipelago has no sky dataset to benchmark: ingest one or pass --dataset")
    return client.describe(max(sky, key=lambda d: d.num_rows).name)


def _centre(client, d) -> tuple[float, float]:
    """A point of the dataset: its first row's position (so the cone has rows)."""
    row = client.sql(f"SELECT `{d.ra_column}` AS ra, `{d.dec_column}` AS dec FROM {d.name} LIMIT 1").read_all()
    if row.num_rows == 0 or row["ra"][0].as_py() is None:
        raise InvalidArgument(f"{d.name} has no row with a position to centre the cones on")
    return float(row["ra"][0].as_py()), float(row["dec"][0].as_py())


def run_suite(client, dataset: str | None = None, cones: int = 30, radius: float = 0.5,
              say=lambda msg: None) -> Report:
    info = client.info()
    islands = {p["island"] for p in client.peers()} | {info["name"]}
    d = _pick_dataset(client, dataset)
    report = Report(time.strftime("%Y-%m-%d %H:%M:%S %Z"), _machine(),
                    {"island": info["name"], "version": info["version"], "islands": len(islands),
                     "island_names": sorted(islands), "datasets": info["datasets"], "spark_ready": info["spark_ready"]},
                    d.name)
    ra, dec = _centre(client, d)
    cone_sql = f"SELECT * FROM {d.name} WHERE cone({d.ra_column}, {d.dec_column}, {ra!r}, {dec!r}, {radius!r})"

    # Replication first: the cones below may copy partitions here themselves (route auto).
    if d.origin != info["name"]:
        say(f"replication: the cone's partitions copied from {d.origin} to {info['name']}")
        t0 = time.perf_counter()
        rule = client.replicate(d.name, to=info["name"], cone=(ra, dec, radius)).wait()
        seconds = time.perf_counter() - t0
        try:
            if rule.state != "ok":
                report.skipped["replication"] = f"the rule ended {rule.state}: {'; '.join(rule.errors)[:200]}"
            else:
                report.results.append(BenchResult("replication", rule.bytes_done / seconds / 1e6, "MB/s",
                                                  f"{rule.files_done} files, {rule.bytes_done} bytes in {seconds:.2f} s"))
        finally:
            client.delete_rule(rule.id)
    else:
        report.skipped["replication"] = f"{d.name} is held by {info['name']} itself: connect to another island"

    say(f"cone: {cones} x {radius} degrees at ({ra:.3f}, {dec:.3f}) on {d.name}")
    client.sql(cone_sql).read_all()  # connection, planning and caches warmed
    times, rows = [], 0
    for _ in range(cones):
        t0 = time.perf_counter()
        rows = client.sql(cone_sql).read_all().num_rows
        times.append(time.perf_counter() - t0)
    report.results.append(BenchResult("cone median", statistics.median(times) * 1000, "ms",
                                      f"{radius} deg, {rows} rows, p90 {sorted(times)[int(0.9 * (len(times) - 1))] * 1000:.1f} ms",
                                      cones))

    say(f"scan: SELECT * FROM {d.name}")
    t0 = time.perf_counter()
    table = client.sql(f"SELECT * FROM {d.name}").read_all()
    seconds = time.perf_counter() - t0
    report.results.append(BenchResult("scan rate", table.num_rows / seconds / 1e6, "M rows/s",
                                      f"{table.num_rows} rows, {table.nbytes / seconds / 1e9:.3f} GB/s"))

    say("join: the cone's rows against the dataset itself")
    key = next((f.name for f in d.schema if f.name.lower() in ("id", "source_id", "object_id", "objid")),
               d.schema[0].name)
    join_sql = (f"SELECT count(*) AS n FROM ({cone_sql}) a JOIN {d.name} b ON a.`{key}` = b.`{key}`")
    try:
        t0 = time.perf_counter()
        n = client.sql(join_sql).read_all()["n"][0].as_py()
        report.results.append(BenchResult("join", (time.perf_counter() - t0) * 1000, "ms", f"{n} pairs on {key}"))
    except ArchipelError as exc:
        report.skipped["join"] = exc.message[:200]

    if d.origin != info["name"]:
        say(f"routed: the cone answered through {info['name']} from {d.origin}")
        times = []
        for _ in range(max(3, cones // 3)):
            t0 = time.perf_counter()
            client.sql(cone_sql, route="remote").read_all()
            times.append(time.perf_counter() - t0)
        report.results.append(BenchResult("routed cone median", statistics.median(times) * 1000, "ms",
                                          f"held by {d.origin}, asked at {info['name']}", len(times)))
    else:
        report.skipped["routed cone median"] = (f"{d.name} is held by {info['name']} itself: connect to another "
                                                f"island to route")

    say("subscription: a table published, the time until its event arrives")
    name = f"bench.sub_{uuid.uuid4().hex[:10]}"
    import pyarrow as pa

    got: list[tuple[float, Any]] = []
    sub = client.subscribe(name, mode="events")

    def read() -> None:
        for event in sub:
            got.append((time.time(), event))
            return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        client.publish(name, pa.table({"id": list(range(100)), "ra": [ra] * 100, "dec": [dec] * 100}),
                       ra="ra", dec="dec")
        reader.join(60)
        if got:
            arrived, event = got[0]
            report.results.append(BenchResult("subscription latency", max(0.0, arrived - event.timestamp) * 1000,
                                              "ms", f"commit at {event.island} to the event here (same clock)"))
        else:
            report.skipped["subscription latency"] = "no event within 60 s"
    finally:
        sub.stop(grace=1.0)
        try:
            client.delete(name)
        except ArchipelError:
            pass
    return report


def cmd_bench(args: argparse.Namespace) -> int:
    from archipel.client import connect

    if args.cones < 1 or args.cones > 10000:
        raise InvalidArgument("--cones is 1 to 10000")
    if not 0 < args.radius <= 30:
        raise InvalidArgument("--radius is more than 0 and at most 30 degrees")
    with connect(args.island, timeout=None, token=getattr(args, "token", None), ca=getattr(args, "ca", None)) as c:
        report = run_suite(c, args.dataset, args.cones, args.radius,
                           say=(lambda m: print(f"# {m}", file=sys.stderr)) if not args.quiet else (lambda m: None))
    text = report.to_json() if args.format == "json" else report.markdown()
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("bench", help="time a fixed suite of use cases against the archipelago (a comparable report)",
                       parents=[common])
    p.add_argument("--dataset", help="the sky dataset to use (default: the largest)")
    p.add_argument("--cones", type=int, default=30, help="cones timed for the median (default 30)")
    p.add_argument("--radius", type=float, default=0.5, help="cone radius in degrees (default 0.5)")
    p.add_argument("--format", choices=["markdown", "json"], default="markdown")
    p.add_argument("-o", "--output", help="write the report to this file")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_bench)
