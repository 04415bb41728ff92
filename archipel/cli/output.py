"""What the CLI prints and writes: readable tables, result files, progress on stderr."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa

from archipel.errors import InvalidArgument

__all__ = ["format_table", "write_result", "Progress", "human_bytes", "OUTPUT_FORMATS"]

OUTPUT_FORMATS = {".parquet": "parquet", ".csv": "csv", ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow"}


def client_of(args):
    """The client of a command: ``--island``, ``--token`` and ``--ca`` (or their environment
    variables)."""
    from archipel.client import connect

    return connect(args.island, token=getattr(args, "token", None), ca=getattr(args, "ca", None))


def print_rows(header: list[str], rows: list[list[str]]) -> None:
    """The one table printer of the commands: columns as wide as their widest cell."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def needed(value, message: str):
    """``value``, or InvalidArgument(``message``) when an action's argument is missing."""
    if not value:
        from archipel.errors import InvalidArgument

        raise InvalidArgument(message)
    return value


def act(client, args, actions: dict) -> int | None:
    """Runs ``args.action`` when it is one of ``actions``, ACTION -> (client method, the argument
    it needs, the message when that is missing, what to print of the result); None otherwise
    (the command lists instead)."""
    spec = actions.get(args.action)
    if spec is None:
        return None
    method, field, missing, say = spec
    print(say(getattr(client, method)(needed(getattr(args, field), missing))))
    return 0


def act_or_list(args, actions: dict, listing, *shown) -> int:
    """A command with actions on the items it lists (``peers add``, ``rules delete``...): runs
    ``args.action`` (see ``act``), or prints ``listing(client)`` with ``print_listing(items,
    *shown)``."""
    with client_of(args) as c:
        done = act(c, args, actions)
        if done is not None:
            return done
        items = listing(c)
    return print_listing(items, *shown)


def print_listing(items: list, nothing: str, header: list[str], row, notes=None) -> int:
    """A command's listing: ``nothing`` when empty, else one table (``row(item)`` per item),
    then each item's ``notes(item)`` lines (errors, say). Returns the exit status, 0."""
    if not items:
        print(nothing)
        return 0
    print_rows(header, [row(x) for x in items])
    for x in items:
        for line in (notes(x) if notes else ()):
            print(line)
    return 0


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _cell(v: object, width: int = 40) -> str:
    if v is None:
        return "NULL"
    s = f"{v:.10g}" if isinstance(v, float) else str(v)
    return s if len(s) <= width else s[: width - 1] + "…"


def format_table(table: pa.Table, max_rows: int = 50) -> str:
    """A plain-text table of the first rows, with the row count."""
    names = table.column_names
    shown = table.slice(0, max_rows).to_pylist()
    rows = [[_cell(r[n]) for n in names] for r in shown]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    line = "  ".join(n.ljust(w) for n, w in zip(names, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) if _is_num(c) else c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    more = table.num_rows - len(rows)
    out.append(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''}"
               + (f", first {len(rows)} shown; use -o FILE for all" if more > 0 else "") + ")")
    return "\n".join(out)


def _is_num(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def write_result(batches: Iterable[pa.RecordBatch], schema: pa.Schema, path: str) -> int:
    """Streams batches to a Parquet, CSV or Arrow IPC file (by suffix), atomically; returns rows."""
    target = Path(path)
    fmt = OUTPUT_FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise InvalidArgument(f"-o {path}: unknown format; use a name ending in {', '.join(OUTPUT_FORMATS)}")
    if not target.parent.exists():
        raise InvalidArgument(f"-o {path}: folder {target.parent} does not exist")
    tmp = target.with_name(f".{target.name}.part-{os.getpid()}")
    rows = 0
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            with pq.ParquetWriter(tmp, schema) as w:
                for b in batches:
                    w.write_batch(b)
                    rows += b.num_rows
        elif fmt == "csv":
            import pyarrow.csv as pcsv

            with pcsv.CSVWriter(tmp, schema) as w:
                for b in batches:
                    w.write_batch(b)
                    rows += b.num_rows
        else:
            with pa.OSFile(str(tmp), "wb") as f, pa.ipc.new_file(f, schema) as w:
                for b in batches:
                    w.write_batch(b)
                    rows += b.num_rows
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return rows


class Progress:
    """A one-line status on stderr, redrawn while long work runs (only on a terminal)."""

    def __init__(self, label: str, enabled: bool | None = None) -> None:
        self.label = label
        self.detail = ""
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        spin = "|/-\\"
        i = 0
        while not self._stop.wait(0.2):
            elapsed = time.monotonic() - self._t0
            sys.stderr.write(f"\r{spin[i % 4]} {self.label} {self.detail} [{elapsed:.1f} s]\x1b[K")
            sys.stderr.flush()
            i += 1

    def __enter__(self) -> Progress:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.enabled:
            self._thread.join()
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
