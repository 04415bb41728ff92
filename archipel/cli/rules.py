"""Replication commands: replicate (a rule, with its progress), rules, cache."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from archipel.cli.output import act_or_list, client_of as _client
from archipel.errors import InvalidArgument


def _parse_cone(text: str) -> tuple[float, float, float]:
    parts = text.split(",")
    try:
        ra, dec, r = (float(x) for x in parts)
    except ValueError:
        raise InvalidArgument(f"--cone must be RA,DEC,RADIUS in degrees, e.g. 315,-60,5; not {text!r}") from None
    return ra, dec, r


def _bar(done: int, total: int, width: int = 24) -> str:
    filled = int(width * done / total) if total else width
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _rule_row(r) -> list[str]:
    from archipel.cli.output import human_bytes

    return [r.id, r.dataset, r.island, r.state, f"{r.files_done}/{r.files_total}",
            f"{human_bytes(r.bytes_done)}/{human_bytes(r.bytes_total)}",
            r.region + (f"  expires {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r.expires))}" if r.expires else "")]


def _region(args: argparse.Namespace) -> tuple[tuple[float, float, float] | None, bytes | None]:
    """The --cone or --moc of a command: (cone, MOC file bytes)."""
    if args.cone and args.moc:
        raise InvalidArgument("give --cone or --moc, not both")
    cone = _parse_cone(args.cone) if args.cone else None
    moc = None
    if args.moc:
        try:
            moc = Path(args.moc).read_bytes()
        except OSError as exc:
            raise InvalidArgument(f"cannot read the MOC file {args.moc}: {exc.strerror}") from None
    return cone, moc


def cmd_replicate(args: argparse.Namespace) -> int:
    from archipel.cli.output import Progress, human_bytes

    cone, moc = _region(args)
    with _client(args) as c:
        job = c.replicate(args.dataset, args.to, cone=cone, moc=moc, lifetime=args.lifetime,
                          protocol=args.protocol, detach=args.detach)
        print(f"rule {job.rule_id} on {job.rule.island}: {job.rule.dataset} {job.rule.region}, "
              f"{job.rule.files_total} files, {human_bytes(job.rule.bytes_total)}", flush=True)
        with Progress("replicating") as progress:
            for r in job:
                progress.detail = (f"{_bar(r.bytes_done, r.bytes_total)} {r.files_done}/{r.files_total} files, "
                                   f"{human_bytes(r.bytes_done)}/{human_bytes(r.bytes_total)}")
        r = job.rule
    print(f"{r.state}: {r.files_done}/{r.files_total} files, {human_bytes(r.bytes_done)} in {job.elapsed:.2f} s")
    for e in r.errors:
        print(f"  {e}")
    if r.state == "stuck":
        print(f"error: rule {r.id} is stuck: {r.files_failed} files could not be copied", file=sys.stderr)
        return 1
    return 0


RULE_ACTIONS = {"delete": (
    "delete_rule", "id", "rules delete needs a rule ID (see `archipel rules`)",
    lambda r: f"deleted rule {r.id} ({r.dataset} {r.region}); its replicas are now evictable cache")}


def cmd_rules(args: argparse.Namespace) -> int:
    return act_or_list(args, RULE_ACTIONS, lambda c: c.rules(), "no rules",
                       ["id", "dataset", "island", "state", "files", "bytes", "region"],
                       _rule_row, lambda r: [f"rule {r.id}: {e}" for e in r.errors])


def cmd_cache(args: argparse.Namespace) -> int:
    from archipel.cli.output import human_bytes

    with _client(args) as c:
        u = c.cache()
    pct = 100 * u.used_bytes / u.quota_bytes if u.quota_bytes else 0
    print(f"island {u.island}: {human_bytes(u.used_bytes)} of {human_bytes(u.quota_bytes)} ({pct:.1f}%) in {u.files} files")
    print(f"  pinned by rules: {human_bytes(u.pinned_bytes)} in {u.pinned_files} files")
    print(f"  cached for queries (evicted least recently used): {human_bytes(u.cached_bytes)}")
    for name, (files, nbytes) in u.datasets.items():
        print(f"  {name:32} {files:>6} files {human_bytes(nbytes):>10}")
    for e in u.errors:
        print(f"  error: {e}")
    return 0


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("replicate", help="keep a dataset (or a sky region of it) on an island", parents=[common])
    p.add_argument("dataset")
    p.add_argument("--to", metavar="ISLAND", default="", help="island to hold the copies (name or HOST:PORT; "
                   "default: the island talked to)")
    p.add_argument("--cone", metavar="RA,DEC,R", help="only the partitions covering this cone (degrees)")
    p.add_argument("--moc", metavar="FILE", help="only the partitions covering this MOC (FITS, JSON or ASCII)")
    p.add_argument("--lifetime", type=float, default=0, metavar="SECONDS", help="the rule expires after this")
    p.add_argument("--protocol", choices=["root", "http"], help="force root:// or http:// transfers")
    p.add_argument("--detach", action="store_true", help="return once the rule exists")
    p.set_defaults(func=cmd_replicate)

    p = sub.add_parser("rules", help="list replication rules, or delete one", parents=[common])
    p.add_argument("action", nargs="?", choices=["list", "delete"], default="list")
    p.add_argument("id", nargs="?", metavar="ID")
    p.set_defaults(func=cmd_rules)

    p = sub.add_parser("cache", help="the island's replica cache: quota and usage", parents=[common])
    p.set_defaults(func=cmd_cache)
