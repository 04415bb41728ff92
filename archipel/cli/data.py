"""Commands on datasets and queries: datasets, describe, query, explain, ingest, delete, publish,
append."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from archipel.cli.security import add_access_flags
from archipel.cli.output import client_of as _client
from archipel.errors import InvalidArgument


def cmd_datasets(args: argparse.Namespace) -> int:
    from archipel.cli.output import human_bytes, print_rows

    with _client(args) as c:
        datasets = c.datasets(args.pattern or "")
    if not datasets:
        print("no datasets" + (f" match {args.pattern!r}" if args.pattern else ""))
        return 0
    print_rows(["name", "kind", "origin", "rows", "size", "parts", "sky"],
               [[d.name, d.kind, d.origin, str(d.num_rows), human_bytes(d.num_bytes), str(d.num_partitions),
                 f"{d.sky_fraction * 100:.3g}% ({d.ra_column}, {d.dec_column})" if d.ra_column else "-"]
                for d in datasets])
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


def add_commands(sub, common: argparse.ArgumentParser) -> None:
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
