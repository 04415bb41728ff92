"""Subscription commands: subscribe (events, rows or replicas as they come), subscriptions,
unsubscribe."""

from __future__ import annotations

import argparse
from pathlib import Path

from archipel.cli.rules import _region
from archipel.cli.output import act_or_list, client_of as _client
from archipel.errors import InvalidArgument


def _event_line(e) -> str:
    pixels = " ".join(f"{o}/{p}" for o, p in e.pixels[:8]) + (" ..." if len(e.pixels) > 8 else "")
    held = " replicated" if e.replicated else ""
    return f"{e.cursor:>8}  {e.dataset:24} {e.island:10} {e.op:6} {e.rows:>9} rows  pixels {pixels or '-'}{held}"


def cmd_subscribe(args: argparse.Namespace) -> int:
    import signal

    from archipel.cli.output import format_table

    if args.count is not None and args.count < 1:
        raise InvalidArgument(f"--count must be at least 1, not {args.count}")
    if args.idle_timeout is not None and args.idle_timeout <= 0:
        raise InvalidArgument(f"--idle-timeout must be positive, not {args.idle_timeout}")
    cone, moc = _region(args)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    out = Path(args.output) if args.output else None
    if out is not None:
        if args.mode != "rows":
            raise InvalidArgument("--output writes rows: use it with --mode rows")
        if out.exists() and not out.is_dir():
            raise InvalidArgument(f"--output {out} exists and is not a folder")
    with _client(args) as c:
        sub = c.subscribe(args.pattern, args.where, cone=cone, moc=moc, columns=columns, mode=args.mode,
                          start_at=args.start_at, name=args.name)
        # SIGTERM and Ctrl-C end the stream: what was printed is acknowledged, nothing more.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: sub.stop())
        info = sub.info
        print(f"subscription {info.name} on {info.island}: {info.mode} of {info.dataset_pattern} "
              f"{info.region}{' where ' + info.where if info.where else ''}, after cursor {info.cursor}", flush=True)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        items = 0
        idle = None

        def arm() -> None:  # the island ends the stream after this long without an item
            nonlocal idle
            if args.idle_timeout:
                import threading

                idle = threading.Timer(args.idle_timeout, sub.stop)
                idle.daemon = True
                idle.start()

        arm()
        try:
            for item in sub:
                if idle is not None:
                    idle.cancel()
                if args.mode == "rows":
                    if out is not None:
                        import pyarrow.parquet as pq

                        final = out / f"{item.dataset}-{item.cursor:012d}-{items:06d}.parquet"
                        tmp = final.with_name("." + final.name + ".part")
                        pq.write_table(item.to_table(), tmp)
                        tmp.replace(final)
                        print(f"{item.cursor:>8}  {item.dataset:24} {item.island:10} {item.num_rows:>9} rows -> {final}",
                              flush=True)
                    else:
                        print(f"{item.cursor:>8}  {item.dataset:24} {item.island:10} {item.num_rows:>9} rows", flush=True)
                        print(format_table(item.to_table(), args.show), flush=True)
                else:
                    print(_event_line(item), flush=True)
                items += 1
                sub.ack()  # printed or written: consumed
                if args.count is not None and items >= args.count:
                    break
                arm()
        except KeyboardInterrupt:
            pass
        finally:
            if idle is not None:
                idle.cancel()
            sub.close()
    return 0


def _subscription_row(s) -> list[str]:
    state = "connected" if s.connected else ("durable" if s.durable else "-")
    flt = s.region + (f" where {s.where}" if s.where else "") + (f" columns {','.join(s.columns)}" if s.columns else "")
    return [s.name, s.mode, s.dataset_pattern, str(s.cursor), str(s.lag_changes), f"{s.lag_seconds:.1f}", state, flt]


SUBSCRIPTION_ACTIONS = {"delete": (
    "delete_subscription", "name", "subscriptions delete needs a NAME (see `archipel subscriptions`)",
    lambda s: f"deleted subscription {s.name} ({s.mode} of {s.dataset_pattern})")}


def cmd_subscriptions(args: argparse.Namespace) -> int:
    return act_or_list(args, SUBSCRIPTION_ACTIONS, lambda c: c.subscriptions(), "no subscriptions",
                       ["name", "mode", "pattern", "cursor", "lag", "lag s", "state", "filter"], _subscription_row,
                       lambda s: [f"subscription {s.name}: error: {s.error}"] if s.error else [])


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("subscribe", help="follow new data of datasets as it appears anywhere in the archipelago",
                       parents=[common])
    p.add_argument("pattern", metavar="DATASET_PATTERN", help="a dataset name or fnmatch pattern (ztf_*)")
    p.add_argument("--where", metavar="SQL", help="only rows matching this SQL predicate")
    p.add_argument("--cone", metavar="RA,DEC,R", help="only data in this cone (degrees)")
    p.add_argument("--moc", metavar="FILE", help="only data in this MOC (FITS, JSON or ASCII)")
    p.add_argument("--columns", metavar="A,B,...", help="columns of the rows delivered (--mode rows)")
    p.add_argument("--mode", choices=["events", "rows", "replicate"], default="events",
                   help="events (default): what appeared; rows: the matching rows; replicate: keep it on the island")
    p.add_argument("--start-at", default="latest", metavar="latest|earliest|CURSOR",
                   help="where to start (a named subscription that exists resumes by default)")
    p.add_argument("--name", help="a durable subscription: resumes after the last item printed")
    p.add_argument("--output", metavar="DIR", help="write each batch of rows as a Parquet file in DIR")
    p.add_argument("--show", type=int, default=20, metavar="N", help="rows printed per batch (default 20)")
    p.add_argument("--count", type=int, metavar="N", help="stop after N items")
    p.add_argument("--idle-timeout", type=float, metavar="SECONDS", help="stop after this long with nothing new")
    p.set_defaults(func=cmd_subscribe)

    p = sub.add_parser("subscriptions", help="list the island's subscriptions with their lag, or delete one",
                       parents=[common])
    p.add_argument("action", nargs="?", choices=["list", "delete"], default="list")
    p.add_argument("name", nargs="?", metavar="NAME")
    p.set_defaults(func=cmd_subscriptions)

    p = sub.add_parser("unsubscribe", help="delete a named subscription (= subscriptions delete NAME)",
                       parents=[common])
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_subscriptions, action="delete")
