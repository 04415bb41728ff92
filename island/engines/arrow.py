"""The Arrow path: scans, filters, cones and simple aggregates over one dataset, in process.

DuckDB executes the planner's SQL over pyarrow datasets of exactly the partition files the
planner chose, and streams record batches as it produces them. The connection has external
access disabled, so no SQL can read or write a file by itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pyarrow as pa
import pyarrow.dataset as pds

from archipel.arrowwire import read_schema
from archipel.errors import InvalidArgument
from federation.planner import QueryPlan
from island.engines.base import Execution, normalize_batch, normalize_schema, scan_paths

__all__ = ["ArrowEngine"]

logger = logging.getLogger(__name__)

BATCH_ROWS = 65_536


class ArrowEngine:
    name = "arrow"

    def __init__(self, threads: int = 2) -> None:
        self.threads = threads

    def execute(self, plan: QueryPlan, query_id: str, on_cancel: Callable[[Callable[[], None]], None],
                timeout: float) -> Execution:
        import duckdb

        con = duckdb.connect(config={"enable_external_access": False, "threads": self.threads})
        on_cancel(con.interrupt)
        for scan in plan.tables:
            schema = read_schema(scan.dataset.arrow_schema)
            paths = scan_paths(scan)
            source = pds.dataset(paths, schema=schema, format="parquet") if paths else schema.empty_table()
            con.register(scan.view, source)
        try:
            result = con.execute(plan.duckdb_sql)
            reader = result.to_arrow_reader(BATCH_ROWS)
        except duckdb.Error as exc:
            con.close()
            raise InvalidArgument(f"query failed: {str(exc).splitlines()[0]}") from None
        schema = normalize_schema(reader.schema)

        def batches():
            try:
                for batch in reader:
                    if batch.num_rows:
                        yield normalize_batch(batch, schema)
            except duckdb.InterruptException:
                return
            except duckdb.Error as exc:
                raise InvalidArgument(f"query failed: {str(exc).splitlines()[0]}") from None
            finally:
                con.close()

        return Execution(schema=schema, batches=batches(), close=con.close)
