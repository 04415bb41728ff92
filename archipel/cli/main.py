"""The ``archipel`` command line: islands, datasets, queries, ingest and publish, replication,
subscriptions, identity, benchmarks and Spark sessions; one module of commands each.

Every command exits 0 on success and non-zero with a one-line ``error: ...`` on failure.
"""

from __future__ import annotations

import argparse
import sys

from archipel.cli import bench, data, islands, rules, security, sessions, subscriptions
from archipel.errors import ArchipelError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--island", metavar="HOST:PORT", default=argparse.SUPPRESS,
                        help="island to talk to (default: $ARCHIPEL_ISLAND, else localhost:7770)")
    common.add_argument("--token", metavar="TOKEN", default=argparse.SUPPRESS,
                        help="the token to call with (default: $ARCHIPEL_TOKEN; none: anonymous)")
    common.add_argument("--ca", metavar="FILE", default=argparse.SUPPRESS,
                        help="the archipelago's ca.pem to check islands with (default: $ARCHIPEL_CA)")
    parser = argparse.ArgumentParser(prog="archipel", description="Archipel: a federated data mesh for astronomy.",
                                     parents=[common])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (islands, data, rules, subscriptions, security, bench, sessions):
        module.add_commands(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "island"):
        args.island = None
    try:
        return args.func(args)
    except ArchipelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())

