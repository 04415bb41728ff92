"""The ``archipel`` command line: islands, datasets, queries, ingest and publish.

Every command exits 0 on success and non-zero with a one-line ``error: ...`` on failure.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from archipel.cli.security import add_access_flags, add_commands
from archipel.errors import ArchipelError, InvalidArgument

__all__ = ["main", "build_parser"]

# Top-level modules of the ``island`` extra: missing one means a client-only install.
ISLAND_DEPENDENCIES = {"pyspark", "duckdb", "sqlglot", "cdshealpix", "mocpy", "hats", "astropy", "numpy", "pandas", "cryptography"}


def _client(args: argparse.Namespace):
    from archipel.client import connect

    return connect(args.island, token=getattr(args, "token", None), ca=getattr(args, "ca", None))


def cmd_island_init(args: argparse.Namespace) -> int:
    from island.config import IslandConfig, IslandSection
    from island.founding import found_island

    cfg = IslandConfig(root=Path(args.dir).resolve())
    cfg.island = IslandSection(name=args.name, host=args.host, port=args.port, http_port=args.http_port,
                               peer_port=args.peer_port or 0, data_port=args.data_port)
    if args.spark_master:
        cfg.spark.master = args.spark_master
    if args.anonymous:
        cfg.security.anonymous = args.anonymous
    cfg.federation.peers = list(args.peer or [])
    done = found_island(cfg, args.ca)
    print(f"wrote {done.config}, the island's certificate (signed by {done.ca_dir / 'ca.pem'}) and {done.admin_token}")
    if done.new_ca:
        print(f"a new archipelago CA is in {done.ca_dir}: other islands join with --ca {done.ca_dir}")
    print(f"start it with: archipel island serve {args.dir}")
    print(f"then: export ARCHIPEL_ISLAND={cfg.address} ARCHIPEL_CA={cfg.root / 'ca.pem'} "
          f"ARCHIPEL_TOKEN=$(cat {done.admin_token})")
    return 0


def cmd_island_worker(args: argparse.Namespace) -> int:
    """Runs one of the island's Celery replication workers in this process (another host of a
    shared filesystem, a systemd unit of its own); with a Redis broker the island may start
    none itself (``[replication] workers = 0``)."""
    from island.config import load_config
    from island.replication import worker_environment

    cfg = load_config(args.dir)
    if args.concurrency is not None and not 1 <= args.concurrency <= 256:
        raise InvalidArgument("--concurrency is 1 to 256")
    env = {**os.environ, **worker_environment(cfg, secure=True)}
    name = args.name or f"worker-{os.uname().nodename}@{cfg.island.name}"
    cmd = [sys.executable, "-m", "celery", "-A", "replication.worker", "worker", "--pool", "threads",
           "--concurrency", str(args.concurrency or cfg.replication.concurrency), "--hostname", name,
           "--loglevel", args.log_level.upper(), "--without-heartbeat", "--without-gossip", "--without-mingle"]
    sys.stdout.flush()
    os.execvpe(cmd[0], cmd, env)
    return 0  # not reached


def cmd_island_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "sqlglot", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        from island.server import serve
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ISLAND_DEPENDENCIES:
            raise
        raise InvalidArgument(f"this install has no island parts ({exc}); pip install 'archipel[island]'") from None
    serve(args.dir)
    # Everything the island started is stopped; RPC threads still blocked in a dead JVM call
    # must not hold the process open.
    logging.shutdown()
    sys.stdout.flush()
    os._exit(0)


def cmd_peers(args: argparse.Namespace) -> int:
    with _client(args) as c:
        if args.action == "add":
            if not args.address:
                raise InvalidArgument("peers add needs HOST:PORT")
            p = c.add_peer(args.address)
            print(f"following {p['island']} at {p['address']} ({p['state']})")
            return 0
        if args.action == "remove":
            if not args.address:
                raise InvalidArgument("peers remove needs HOST:PORT or an island name")
            p = c.remove_peer(args.address)
            print(f"no longer following {p['island'] or '?'} at {p['address']}")
            return 0
        peers = c.peers()
    if not peers:
        print("no peers")
        return 0
    print(f"{'island':16} {'address':24} {'state':11} {'last seq':>9}  error")
    for p in peers:
        print(f"{p['island']:16} {p['address']:24} {p['state']:11} {p['last_seq']:>9}  {p['error']}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from archipel.cli.output import human_bytes

    with _client(args) as c:
        datasets = c.datasets(args.pattern or "")
    if not datasets:
        print("no datasets" + (f" match {args.pattern!r}" if args.pattern else ""))
        return 0
    width = max(len(d.name) for d in datasets)
    print(f"{'name'.ljust(width)}  {'kind':8} {'origin':10} {'rows':>12} {'size':>10} {'parts':>6}  sky")
    for d in datasets:
        sky = f"{d.sky_fraction * 100:.3g}% ({d.ra_column}, {d.dec_column})" if d.ra_column else "-"
        print(f"{d.name.ljust(width)}  {d.kind:8} {d.origin:10} {d.num_rows:>12} {human_bytes(d.num_bytes):>10}"
              f" {d.num_partitions:>6}  {sky}")
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    from archipel.cli.output import human_bytes

    with _client(args) as c:
        d = c.describe(args.name)
    print(f"dataset   {d.name}\nkind      {d.kind}\norigin    {d.origin}\ncreated   {d.created}")
    print(f"rows      {d.num_rows}\nsize      {human_bytes(d.num_bytes)} in {d.num_partitions} partitions")
    print(f"owner     {d.owner or '-'}\nreaders   {','.join(d.readers) or '(owner only)'}")
    if d.public_after:
        print(f"public    from {d.public_after}")
    if d.ra_column:
        print(f"sky       ra={d.ra_column} dec={d.dec_column}, {d.sky_fraction * 100:.4g}% of the sky")
        print(f"moc       {d.moc[:200]}{' ...' if len(d.moc) > 200 else ''}")
    for url in d.hats_urls:
        print(f"hats      {url}")
    print("schema")
    for f in d.schema:
        print(f"  {f.name}: {f.type}")
    if args.partitions:
        print("partitions")
        for p in d.partitions:
            where = f"order {p.order} pixel {p.pixel}" if p.order is not None else "-"
            print(f"  {p.path}  {where}  rows={p.num_rows} bytes={p.num_bytes} adler32={p.adler32:08x}")
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from archipel.cli.output import Progress, format_table, human_bytes, write_result

    with _client(args) as c, Progress("querying") as progress:
        result = c.sql(args.sql, route=args.route, timeout=args.timeout, engine=args.engine,
                       max_rows=args.max_rows)

        def counted():
            rows = nbytes = 0
            for b in result:
                rows += b.num_rows
                nbytes += b.nbytes
                progress.detail = f"{rows} rows, {human_bytes(nbytes)}"
                yield b

        if args.output:
            rows = write_result(counted(), result.schema, args.output)
            summary = f"wrote {rows} rows to {args.output}"
        else:
            import pyarrow as pa

            table = pa.Table.from_batches(list(counted()), schema=result.schema)
            summary = None
    if summary:
        print(summary)
    else:
        print(format_table(table, args.show))
    if args.verbose and result.stats:
        s = result.stats
        print(f"engine {s.engine}, {s.num_rows} rows, {human_bytes(s.num_bytes)}, {s.elapsed_seconds * 1000:.1f} ms",
              file=sys.stderr)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    with _client(args) as c:
        print(c.explain(args.sql, route=args.route, engine=args.engine))
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from archipel.cli.output import Progress

    path = str(Path(args.path).expanduser().resolve())
    with _client(args) as c, Progress(f"ingesting {args.path}"):
        datasets = c.ingest(path, args.dataset, args.ra, args.dec, readers=args.readers,
                            public_after=args.public_after)
    for d in datasets:
        print(f"ingested {d.name}: {d.kind}, {d.num_rows} rows in {d.num_partitions} partitions")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with _client(args) as c:
        files = c.delete(args.name)
    print(f"deleted {args.name}" + (" and its files" if files else " (its files were registered in place and stay)"))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from archipel.cli.output import Progress

    table = _read_local(args.path)
    with _client(args) as c, Progress(f"publishing {args.path}") as progress:
        progress.detail = f"{table.num_rows} rows"
        d = c.publish(args.dataset, table, ra=args.ra, dec=args.dec, readers=args.readers,
                      public_after=args.public_after)
    print(f"published {d.name}: {d.kind}, {d.num_rows} rows in {d.num_partitions} partitions on {d.origin}")
    return 0


def cmd_append(args: argparse.Namespace) -> int:
    from archipel.cli.output import Progress

    table = _read_local(args.path)
    with _client(args) as c, Progress(f"appending {args.path}") as progress:
        progress.detail = f"{table.num_rows} rows"
        before = c.describe(args.dataset).num_rows
        d = c.publish(args.dataset, table, mode="append")
        for reader in (args.readers or "").split(","):
            if reader.strip():
                d = c.grant(args.dataset, reader.strip())
        if args.public_after:
            d = c.set_public_after(args.dataset, args.public_after)
    print(f"appended {d.num_rows - before} rows to {d.name}: {d.num_rows} rows in {d.num_partitions} partitions")
    return 0


def _read_local(path: str):
    import pyarrow as pa

    p = Path(path)
    if not p.exists():
        raise InvalidArgument(f"{path} does not exist")
    try:
        if p.suffix.lower() == ".csv":
            import pyarrow.csv as pcsv

            return pcsv.read_csv(p)
        if p.suffix.lower() in (".arrow", ".feather", ".ipc"):
            import pyarrow.feather as feather

            return feather.read_table(p)
        import pyarrow.parquet as pq

        return pq.read_table(p)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidArgument(f"cannot read {path}: {exc}") from None


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


def _rule_line(r) -> str:
    from archipel.cli.output import human_bytes

    return (f"{r.id:12}  {r.dataset:24} {r.island:10} {r.state:11} {r.files_done:>5}/{r.files_total:<5} "
            f"{human_bytes(r.bytes_done):>10}/{human_bytes(r.bytes_total):<10} {r.region}"
            + (f"  expires {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r.expires))}" if r.expires else ""))


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


def cmd_rules(args: argparse.Namespace) -> int:
    with _client(args) as c:
        if args.action == "delete":
            if not args.id:
                raise InvalidArgument("rules delete needs a rule ID (see `archipel rules`)")
            r = c.delete_rule(args.id)
            print(f"deleted rule {r.id} ({r.dataset} {r.region}); its replicas are now evictable cache")
            return 0
        rules = c.rules()
    if not rules:
        print("no rules")
        return 0
    print(f"{'id':12}  {'dataset':24} {'island':10} {'state':11} {'files':>11} {'bytes':>21} region")
    for r in rules:
        print(_rule_line(r))
        for e in r.errors:
            print(f"    {e}")
    return 0


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


def cmd_subscriptions(args: argparse.Namespace) -> int:
    with _client(args) as c:
        if args.action == "delete":
            if not args.name:
                raise InvalidArgument("subscriptions delete needs a NAME (see `archipel subscriptions`)")
            s = c.delete_subscription(args.name)
            print(f"deleted subscription {s.name} ({s.mode} of {s.dataset_pattern})")
            return 0
        subs = c.subscriptions()
    if not subs:
        print("no subscriptions")
        return 0
    print(f"{'name':24} {'mode':9} {'pattern':20} {'cursor':>8} {'lag':>6} {'lag s':>8} {'state':9} filter")
    for s in subs:
        state = "connected" if s.connected else ("durable" if s.durable else "-")
        flt = s.region + (f" where {s.where}" if s.where else "") + (f" columns {','.join(s.columns)}" if s.columns else "")
        print(f"{s.name:24} {s.mode:9} {s.dataset_pattern:20} {s.cursor:>8} {s.lag_changes:>6} {s.lag_seconds:>8.1f} "
              f"{state:9} {flt}")
        if s.error:
            print(f"    error: {s.error}")
    return 0


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

    isl = sub.add_parser("island", help="create and run islands")
    isub = isl.add_subparsers(dest="island_command", required=True, metavar="ACTION")
    p = isub.add_parser("init", help="write DIR/archipel.toml for a new island")
    p.add_argument("dir")
    p.add_argument("--name", required=True, help="island name (letters, digits, _)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7770, help="gRPC port (default 7770)")
    p.add_argument("--http-port", type=int, default=0, help="web face port: page, HTTP API, TAP, HATS (0: any free port)")
    p.add_argument("--data-port", type=int, default=0, help="bulk data port: partition files over HTTPS (0: any free port)")
    p.add_argument("--spark-master", default="", help="Spark master URL (default local[2])")
    p.add_argument("--peer", action="append", metavar="HOST:PORT", help="island to join (repeatable)")
    p.add_argument("--peer-port", type=int, default=0, help="island-to-island (mutual TLS) port (default: port + 1)")
    p.add_argument("--ca", metavar="CA_DIR", help="the archipelago's CA (from `archipel certs init`); without it a "
                   "new CA is made in DIR/ca")
    p.add_argument("--anonymous", choices=["none", "read-public"], help="[security] anonymous (default none)")
    p.set_defaults(func=cmd_island_init)
    p = isub.add_parser("worker", help="run a Celery replication worker of the island in DIR (until SIGTERM)")
    p.add_argument("dir")
    p.add_argument("--concurrency", type=int, help="transfer threads (default: [replication] concurrency)")
    p.add_argument("--name", help="the worker's Celery name (default worker-HOST@ISLAND)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_island_worker)
    p = isub.add_parser("serve", help="run the island in DIR until SIGINT/SIGTERM")
    p.add_argument("dir")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_island_serve)

    p = sub.add_parser("peers", help="list the islands this one follows, add or remove one", parents=[common])
    p.add_argument("action", nargs="?", choices=["list", "add", "remove"], default="list")
    p.add_argument("address", nargs="?", metavar="HOST:PORT|ISLAND")
    p.set_defaults(func=cmd_peers)

    p = sub.add_parser("datasets", help="list the datasets of the archipelago", parents=[common])
    p.add_argument("pattern", nargs="?", help="glob on names, e.g. 'gaia*'")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("describe", help="schema, partitions and coverage of a dataset", parents=[common])
    p.add_argument("name")
    p.add_argument("--partitions", action="store_true", help="list every partition")
    p.set_defaults(func=cmd_describe)

    for name, func, helptext in (("query", cmd_query, "run read-only SQL and print or save the result"),
                                 ("explain", cmd_explain, "show the plan of a query without running it")):
        p = sub.add_parser(name, help=helptext, parents=[common])
        p.add_argument("sql")
        p.add_argument("--route", default="auto", choices=["auto", "local", "remote", "replicate"])
        p.add_argument("--engine", default="auto", choices=["auto", "arrow", "spark"])
        p.set_defaults(func=func)
        if name == "query":
            p.add_argument("-o", "--output", help="write all rows to FILE (.parquet, .csv or .arrow)")
            p.add_argument("--timeout", type=float, default=None, help="seconds before the query is stopped")
            p.add_argument("--max-rows", type=int, default=0, help="refuse results larger than this")
            p.add_argument("--show", type=int, default=50, help="rows to print on the terminal (default 50)")
            p.add_argument("-v", "--verbose", action="store_true", help="print engine and timing")

    p = sub.add_parser("ingest", help="register a HATS catalog or Parquet on the island's disk", parents=[common])
    p.add_argument("path")
    p.add_argument("--dataset", required=True, help="catalog name, e.g. gaia_dr3.source")
    p.add_argument("--ra", help="right ascension column (degrees)")
    p.add_argument("--dec", help="declination column (degrees)")
    add_access_flags(p)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("delete", help="remove a dataset at its origin island", parents=[common])
    p.add_argument("name")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("publish", help="send a local Parquet/CSV/Arrow file as a new dataset", parents=[common])
    p.add_argument("path")
    p.add_argument("--dataset", required=True)
    p.add_argument("--ra")
    p.add_argument("--dec")
    add_access_flags(p)
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("append", help="add the rows of a local Parquet/CSV/Arrow file to a dataset (at its origin)",
                       parents=[common])
    p.add_argument("dataset")
    p.add_argument("path")
    add_access_flags(p)
    p.set_defaults(func=cmd_append)

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
    add_commands(sub, common)
    from archipel.cli.bench import add_command as add_bench

    add_bench(sub, common)
    from archipel.cli.sessions import add_commands as add_session_commands

    add_session_commands(sub, common)
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
