"""CLI: Spark sessions, tables kept in memory and batch jobs.

    archipel sessions [kill ID]
    archipel cache-table DATASET [--cone RA,DEC,RADIUS] [--drop] | cache-table --list
    archipel submit FILE.py [--arg A ...] [--dataset NAME ...] [--detach]
    archipel jobs [logs ID [--follow] | cancel ID]
"""

from __future__ import annotations

import argparse
import sys
import time

from archipel.cli.output import client_of as _client, print_rows
from archipel.errors import InvalidArgument

__all__ = ["add_commands"]




def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def cmd_sessions(args: argparse.Namespace) -> int:
    from archipel.cli.output import human_bytes

    with _client(args) as c:
        if args.action == "kill":
            if not args.id:
                raise InvalidArgument("sessions kill needs a session ID (see `archipel sessions`)")
            s = c.kill_session(args.id, island=args.on)
            print(f"killed session {s['id']} of {s['user']} on {s['island']} "
                  f"({s['operations']} operations, {human_bytes(s['memory_bytes'])} freed)")
            return 0
        sessions = c.sessions(island=args.on)
    if not sessions:
        print("no sessions")
        return 0
    now = time.time()
    print_rows(["id", "user", "island", "age", "idle", "jobs", "running", "memory", "datasets"],
                [[s["id"], s["user"], s["island"], _age(now - s["created"]), _age(s["idle_seconds"]),
                  str(s["operations"]), str(s["running"]), human_bytes(s["memory_bytes"]), ",".join(s["datasets"])]
                 for s in sessions])
    return 0


def _cone(text: str | None) -> tuple[float, float, float] | None:
    if not text:
        return None
    try:
        ra, dec, radius = (float(x) for x in text.split(","))
    except ValueError:
        raise InvalidArgument(f"--cone takes RA,DEC,RADIUS in degrees, not {text!r}") from None
    return ra, dec, radius


def cmd_cache_table(args: argparse.Namespace) -> int:
    from archipel.cli.output import human_bytes

    with _client(args) as c:
        if args.list or not args.dataset:
            tables = c.cached_tables(island=args.on)
            if not tables:
                print("no tables kept in memory")
                return 0
            now = time.time()
            print_rows(["dataset", "island", "cone", "files", "memory", "age", "last used"],
                        [[t["dataset"], t["island"], t["cone"] or "all", str(t["files"]),
                          human_bytes(t["memory_bytes"]), _age(now - t["created"]), _age(now - t["last_used"])]
                         for t in tables])
            return 0
        if args.drop:
            t = c.drop_cached_table(args.dataset, island=args.on)
            print(f"dropped {t['dataset']} from memory on {t['island']}")
            return 0
        t = c.cache_table(args.dataset, cone=_cone(args.cone), island=args.on)
    print(f"{t['dataset']} ({t['cone'] or 'all'}: {t['files']} files) kept in memory on {t['island']}: "
          f"{human_bytes(t['memory_bytes'])}")
    return 0


def _job_line(j) -> list[str]:
    now = time.time()
    took = (j.info["finished"] or now) - j.info["started"] if j.info["started"] else 0.0
    return [j.id, j.info["user"], j.island, j.state, j.info["filename"], _age(now - j.info["submitted"]),
            _age(took) if j.info["started"] else "-", ",".join(j.published), j.reason]


def _follow(job) -> int:
    out = sys.stdout.buffer
    for data in job.logs(follow=True):
        out.write(data)
        out.flush()
    print(f"job {job.id} {job.state}" + (f": {job.reason}" if job.reason else ""), file=sys.stderr)
    if job.published:
        print(f"published: {', '.join(job.published)}", file=sys.stderr)
    return 0 if job.state == "succeeded" else (job.exit_code if job.exit_code > 0 else 1)


def cmd_submit(args: argparse.Namespace) -> int:
    if not args.file.endswith(".py"):
        raise InvalidArgument(f"submit takes a PySpark script FILE.py, not {args.file!r}")
    with _client(args) as c:
        job = c.submit(args.file, args=args.arg or [], datasets=args.dataset or [], island=args.on)
        if args.detach:
            print(job.id)
            return 0
        print(f"job {job.id} submitted to {job.island}", file=sys.stderr)
        return _follow(job)


def cmd_jobs(args: argparse.Namespace) -> int:
    with _client(args) as c:
        if args.action in ("logs", "cancel"):
            if not args.id:
                raise InvalidArgument(f"jobs {args.action} needs a job ID (see `archipel jobs`)")
            job = c.job(args.id, island=args.on)
            if args.action == "cancel":
                job.cancel()
                print(f"job {job.id}: {job.state}" + (f" ({job.reason})" if job.reason else ""))
                return 0
            if args.follow:
                return _follow(job)
            out = sys.stdout.buffer
            for data in job.logs():
                out.write(data)
            out.flush()
            return 0
        jobs = c.jobs(island=args.on)
    if not jobs:
        print("no jobs")
        return 0
    print_rows(["id", "user", "island", "state", "script", "age", "ran", "published", "reason"],
                [_job_line(j) for j in jobs])
    return 0


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    on = argparse.ArgumentParser(add_help=False)
    on.add_argument("--on", metavar="ISLAND", default=None,
                    help="the island (by name) that runs it, reached through the island connected to")

    p = sub.add_parser("sessions", help="list the Spark sessions of an island, or kill one", parents=[common, on])
    p.add_argument("action", nargs="?", choices=["list", "kill"], default="list")
    p.add_argument("id", nargs="?", metavar="ID")
    p.set_defaults(func=cmd_sessions)

    p = sub.add_parser("cache-table", help="keep a dataset (or a cone of it) in Spark's memory for every session",
                       parents=[common, on])
    p.add_argument("dataset", nargs="?", metavar="DATASET")
    p.add_argument("--cone", metavar="RA,DEC,RADIUS", help="only the partitions this cone touches (degrees)")
    p.add_argument("--drop", action="store_true", help="drop the dataset from memory instead")
    p.add_argument("--list", action="store_true", help="list the tables kept in memory")
    p.set_defaults(func=cmd_cache_table)

    p = sub.add_parser("submit", help="run a PySpark script as a batch job where its datasets are",
                       parents=[common, on])
    p.add_argument("file", metavar="FILE.py")
    p.add_argument("--arg", action="append", metavar="ARG", help="an argument of the script (repeat for more)")
    p.add_argument("--dataset", action="append", metavar="NAME",
                   help="a dataset the job reads: it runs at the island holding them (repeat for more)")
    p.add_argument("--detach", action="store_true", help="print the job's id and return at once")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("jobs", help="list batch jobs, show a job's output or cancel it", parents=[common, on])
    p.add_argument("action", nargs="?", choices=["list", "logs", "cancel"], default="list")
    p.add_argument("id", nargs="?", metavar="ID")
    p.add_argument("--follow", "-f", action="store_true", help="with logs: until the job ends")
    p.set_defaults(func=cmd_jobs)
