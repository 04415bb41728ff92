"""The Arrow path: scans, filters, cones and simple aggregates over one dataset, in process.

DuckDB executes the planner's SQL over views of exactly the partition files the planner chose,
with its own Parquet reader (twice the rate of scanning through a pyarrow dataset here), and
streams record batches as it produces them. One in-memory DuckDB database serves the island
(a new one costs 20-36 ms here, a cursor on it nothing): it may read only the folders of the
catalog's datasets (``allowed_directories``), with external access disabled and its
configuration locked, so no SQL can open, write or list any other file. When a dataset with a
new folder appears, a new database is made with the wider list.

A pure projection (``SELECT *`` or plain columns, optional LIMIT) needs no SQL engine at all and
streams from pyarrow's multi-threaded scanner.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pds

from archipel.arrowwire import read_schema
from archipel.errors import Cancelled, InvalidArgument
from federation.planner import QueryPlan
from island.engines.base import Execution, normalize_batch, normalize_schema, scan_paths

__all__ = ["ArrowEngine"]

logger = logging.getLogger(__name__)

BATCH_ROWS = 65_536


def _sql_list(items: list[str]) -> str:
    """A DuckDB list literal of strings, quotes doubled."""
    return "[" + ", ".join("'" + i.replace("'", "''") + "'" for i in items) + "]"


class ArrowEngine:
    name = "arrow"

    def __init__(self, threads: int = 2, memory_bytes: int = 0) -> None:
        self.threads = threads
        self.memory_bytes = memory_bytes
        self._db = None
        self._roots: set[str] = set()
        self._lock = threading.Lock()

    def execute(self, plan: QueryPlan, query_id: str, on_cancel: Callable[[Callable[[], None]], None],
                timeout: float, pool: str = "") -> Execution:
        if plan.projection is not None:
            return self._scan(plan, on_cancel)
        return self._sql(plan, on_cancel)

    def _scan(self, plan: QueryPlan, on_cancel: Callable[[Callable[[], None]], None]) -> Execution:
        """A pure projection: pyarrow's multi-threaded scanner, no SQL engine at all."""
        (scan,) = plan.tables
        schema = read_schema(scan.dataset.arrow_schema)
        columns = [c for c, _ in plan.projection] or schema.names
        names = [n for _, n in plan.projection] or schema.names
        out_schema = normalize_schema(pa.schema([schema.field(c).with_name(n) for c, n in zip(columns, names)]))
        paths = scan_paths(scan)
        stopped = threading.Event()
        on_cancel(stopped.set)

        def batches():
            if not paths or plan.limit == 0:
                return
            data = pds.dataset(paths, schema=schema, format="parquet")
            left = plan.limit
            for batch in data.to_batches(columns=columns, batch_size=BATCH_ROWS):
                if stopped.is_set():
                    return
                if left is not None:
                    batch = batch.slice(0, left)
                    left -= batch.num_rows
                if batch.num_rows:
                    yield normalize_batch(batch.rename_columns(names), out_schema)
                if left == 0:
                    return

        return Execution(schema=out_schema, batches=batches())

    def _database(self, roots: set[str]):
        import duckdb

        with self._lock:
            if self._db is None or not roots <= self._roots:
                allowed = self._roots | roots
                config = {"threads": self.threads}
                if self.memory_bytes:
                    config["memory_limit"] = f"{max(64, self.memory_bytes // 1024**2)}MB"
                db = duckdb.connect(config=config)
                db.execute(f"SET allowed_directories = {_sql_list(sorted(allowed))}")
                db.execute("SET enable_external_access = false")
                db.execute("SET lock_configuration = true")
                self._db, self._roots = db, allowed  # cursors of the old one finish on it
            return self._db

    def warm_up(self) -> None:
        """Pays the imports and the first database before the first query does."""
        self._database(set()).cursor().sql("SELECT 1").fetchall()

    def _sql(self, plan: QueryPlan, on_cancel: Callable[[Callable[[], None]], None]) -> Execution:
        import duckdb

        roots = {str(Path(scan.dataset.root)) for scan in plan.tables}
        con = self._database(roots).cursor()
        closed = threading.Event()

        def interrupt() -> None:
            # DuckDB's interrupt stops only the statement active at that instant, and a cancel
            # may come between statements or before the query starts: keep interrupting until
            # the cursor is closed.
            def loop() -> None:
                while not closed.is_set():
                    try:
                        con.interrupt()
                    except Exception:  # closed meanwhile
                        return
                    closed.wait(0.05)

            threading.Thread(target=loop, name="interrupt", daemon=True).start()

        def close() -> None:
            closed.set()
            con.close()

        on_cancel(interrupt)
        try:
            for scan in plan.tables:
                paths = scan_paths(scan)
                if paths:
                    con.execute(f'CREATE TEMP VIEW "{scan.view}" AS SELECT * FROM '
                                f"read_parquet({_sql_list(paths)}, hive_partitioning = false)")
                else:
                    con.register(scan.view, read_schema(scan.dataset.arrow_schema).empty_table())
            reader = con.sql(plan.duckdb_sql).to_arrow_reader(BATCH_ROWS)
        except duckdb.InterruptException:
            close()
            raise Cancelled("the query was cancelled") from None
        except duckdb.Error as exc:
            close()
            raise InvalidArgument(f"query failed: {str(exc).splitlines()[0]}") from None
        schema = normalize_schema(reader.schema)

        def batches():
            try:
                for batch in reader:
                    if batch.num_rows:
                        yield normalize_batch(batch, schema)
            except duckdb.InterruptException:
                raise Cancelled("the query was cancelled") from None
            except duckdb.Error as exc:
                raise InvalidArgument(f"query failed: {str(exc).splitlines()[0]}") from None
            finally:
                close()

        return Execution(schema=schema, batches=batches(), close=close)
