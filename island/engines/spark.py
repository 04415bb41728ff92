"""The Spark engine: one warm SparkSession per island, started in the background.

Each query gets its own ``newSession()`` (its own temp views and SQL settings over the shared
SparkContext), reads exactly the planner's partition files as temp views, and runs in a job
group named by the query id so that Cancel, a timeout or a vanished client stops its jobs.
The result is spooled through Parquet in the island's spool folder and streamed from there:
bounded memory however large the result, in the result's order (part files are written in
partition order).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq

from archipel.arrowwire import read_schema
from archipel.errors import ArchipelError, Cancelled, FailedPrecondition, InvalidArgument, Internal
from federation.planner import QueryPlan
from island.config import SparkSection
from island.engines.base import Execution, normalize_batch, normalize_schema, scan_paths

__all__ = ["SparkEngine"]

logger = logging.getLogger(__name__)

BATCH_ROWS = 65_536


class SparkEngine:
    name = "spark"

    def __init__(self, cfg: SparkSection, spool_dir: Path, app_name: str = "archipel",
                 host: str = "127.0.0.1", connect_port: int | None = None) -> None:
        """``host``: the island's address, where a cluster's executors reach the driver.
        ``connect_port``: run Spark Connect inside the JVM on 127.0.0.1 at this port (0: a free
        one; None: no Connect), behind a secret only this process knows (the island's session
        proxy is its only client)."""
        self.cfg = cfg
        self.connect_port = 0
        self.connect_secret = ""
        if connect_port is not None:
            import secrets

            self.connect_port = connect_port or _free_port()
            self.connect_secret = secrets.token_urlsafe(32)
        self.host = host if host not in ("", "0.0.0.0", "::") else os.environ.get("SPARK_LOCAL_IP", "127.0.0.1")
        self.spool_dir = spool_dir
        self.app_name = app_name
        self.session = None
        self.error = ""
        self.ready = threading.Event()
        self._failed = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------
    def _settings(self) -> list[tuple[str, str]]:
        return [
            ("spark.master", self.cfg.master),
            ("spark.app.name", self.app_name),
            ("spark.driver.memory", self.cfg.driver_memory),
            ("spark.executor.memory", self.cfg.executor_memory),
            ("spark.driver.host", self.host),
            ("spark.driver.bindAddress", self.host),
            ("spark.ui.enabled", "false"),
            ("spark.ui.showConsoleProgress", "false"),
            ("spark.sql.session.timeZone", "UTC"),
            ("spark.sql.shuffle.partitions", "8"),
            ("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS"),
            ("spark.sql.sources.partitionColumnTypeInference.enabled", "false"),
            # Each user's jobs run in a pool of their own, shared fairly: one user's heavy job
            # does not stall another's small query.
            ("spark.scheduler.mode", "FAIR"),
            # Python UDFs run in the island's own interpreter (pyarrow and pandas are there).
            ("spark.pyspark.python", sys.executable),
            *self.cfg.conf.items(),
            *self._connect_settings(),
        ]

    def _connect_settings(self) -> list[tuple[str, str]]:
        if not self.connect_port:
            return []
        return [("spark.plugins", "org.apache.spark.sql.connect.SparkConnectPlugin"),
                ("spark.connect.grpc.binding.address", "127.0.0.1"),
                ("spark.connect.grpc.binding.port", str(self.connect_port)),
                ("spark.connect.grpc.maxInboundMessageSize", str(256 * 1024 * 1024)),
                # Sessions end when the island says so ([sessions] idle_seconds), not before.
                ("spark.connect.session.manager.defaultSessionTimeout", "7d")]

    def start(self) -> None:
        """Launches the Spark JVM now, then builds the session in a background thread.

        The JVM is launched synchronously, before the island's gRPC server runs: pyspark
        starts it with a real fork (``preexec_fn``), which races gRPC's own threads if done
        while the server is serving (seen here as the gateway exiting at once).
        """
        if self._thread is not None:
            return
        t0 = time.monotonic()
        try:
            os.environ.setdefault("SPARK_LOCAL_IP", self.host)
            from pyspark import SparkConf, SparkContext

            self._conf = SparkConf().setAll(self._settings())
            # The Connect secret reaches the JVM through its environment, not its configuration
            # (which sessions could read), and no other child of the island inherits it.
            if self.connect_secret:
                os.environ["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = self.connect_secret
            # Spark Connect's Python workers take the interpreter from the JVM's environment.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            try:
                SparkContext._ensure_initialized(conf=self._conf)
            finally:
                os.environ.pop("SPARK_CONNECT_AUTHENTICATE_TOKEN", None)
        except Exception as exc:
            self.error = f"Spark failed to start on {self.cfg.master}: {exc}"
            logger.error("%s", self.error)
            self._failed.set()
            return
        logger.info("Spark JVM launched in %.1f s", time.monotonic() - t0)
        self._thread = threading.Thread(target=self._create, name="spark-start", daemon=True)
        self._thread.start()

    def _create(self) -> None:
        t0 = time.monotonic()
        try:
            from pyspark.sql import SparkSession

            self.session = SparkSession.builder.config(conf=self._conf).getOrCreate()
            self.session.sparkContext.setLogLevel("ERROR")
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            # Warm up the reader and the planner once, so the first user query pays less.
            self.session.range(1).count()
            logger.info("Spark ready (%s) in %.1f s", self.cfg.master, time.monotonic() - t0)
            self.ready.set()
        except Exception as exc:  # reported by GetInfo and by every query that needs Spark
            self.error = f"Spark failed to start on {self.cfg.master}: {exc}"
            logger.error("%s", self.error)
            self._failed.set()

    def stop(self, timeout: float = 15.0) -> None:
        """Stops the session, then the JVM it runs in, within ``timeout`` seconds even if a job
        is stuck in a loop that never checks for cancellation."""
        if self.session is None:
            return
        from pyspark import SparkContext

        proc = getattr(SparkContext._gateway, "proc", None)
        stopper = threading.Thread(target=self._stop_session, daemon=True)
        stopper.start()
        stopper.join(timeout)
        if stopper.is_alive():
            logger.warning("Spark did not stop within %.0f s; killing its JVM", timeout)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except Exception:
                proc.kill()
        self.session = None

    def _stop_session(self) -> None:
        try:
            self.session.stop()
        except Exception:  # the JVM may already be gone at shutdown
            logger.debug("Spark stop failed", exc_info=True)

    def active_jobs(self) -> int:
        if self.session is None or not self.ready.is_set():
            return 0
        try:
            return len(self.session.sparkContext.statusTracker().getActiveJobsIds())
        except Exception:
            return 0

    def storage_bytes(self) -> int:
        """Bytes of cached data Spark holds in memory now."""
        if self.session is None or not self.ready.is_set():
            return 0
        try:
            return sum(int(i.memSize()) for i in self.session.sparkContext._jsc.sc().getRDDStorageInfo())
        except Exception:
            return 0

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.is_set():
            if self._failed.is_set():
                raise FailedPrecondition(self.error)
            if self._thread is None:
                raise FailedPrecondition("Spark is not started on this island ([spark] start = false)")
            if time.monotonic() > deadline:
                raise FailedPrecondition("Spark is still starting on this island; try again shortly")
            self.ready.wait(0.1)

    # -- queries ------------------------------------------------------------------------
    def execute(self, plan: QueryPlan, query_id: str, on_cancel: Callable[[Callable[[], None]], None],
                timeout: float, pool: str = "") -> Execution:
        """Runs ``plan`` in Spark, its jobs in the job group ``query_id`` and the FAIR pool
        ``pool`` (the caller's). A cancel stops the group's running jobs and keeps stopping the
        ones it starts later (a query's later stages and broadcasts are jobs of their own,
        submitted after a cancel that found nothing to stop) until the query returns."""
        self.wait_ready(timeout)
        session = self.session.newSession()
        sc = session.sparkContext
        out = self.spool_dir / query_id
        cancelled = threading.Event()
        running = threading.Event()
        running.set()

        def cancel_group() -> None:
            try:
                sc.cancelJobGroup(query_id)
            except Exception:  # the context may be stopping
                logger.debug("cancelJobGroup failed", exc_info=True)

        def keep_cancelling() -> None:
            while running.is_set():
                cancel_group()
                time.sleep(0.25)

        def cancel() -> None:
            cancelled.set()
            cancel_group()
            threading.Thread(target=keep_cancelling, name=f"cancel-{query_id}", daemon=True).start()

        on_cancel(cancel)
        try:
            sc.setJobGroup(query_id, plan.sql[:200], interruptOnCancel=True)
            sc.setLocalProperty("spark.scheduler.pool", _pool_name(pool))
            for scan in plan.tables:
                paths = scan_paths(scan)
                if paths:
                    df = session.read.parquet(*paths)
                else:  # everything pruned, or an empty dataset: an empty view with its columns
                    df = session.createDataFrame(read_schema(scan.dataset.arrow_schema).empty_table())
                df.createOrReplaceTempView(scan.view)
            result = session.sql(plan.spark_sql)
            result.write.mode("overwrite").parquet(str(out))
        except ArchipelError:
            raise
        except Exception as exc:
            shutil.rmtree(out, ignore_errors=True)
            if cancelled.is_set():
                raise Cancelled(f"query {query_id} was cancelled") from None
            raise _spark_error(exc) from None
        finally:
            running.clear()
            try:
                sc.setLocalProperty("spark.jobGroup.id", None)
                sc.setLocalProperty("spark.scheduler.pool", None)
            except Exception:
                pass

        files = sorted(out.glob("part-*.parquet"))
        if files:
            schema = normalize_schema(pq.read_schema(files[0]))
        else:
            from pyspark.sql.pandas.types import to_arrow_schema

            schema = normalize_schema(to_arrow_schema(result.schema))

        def batches():
            try:
                for f in files:
                    if cancelled.is_set():
                        return
                    for batch in pq.ParquetFile(f).iter_batches(BATCH_ROWS):
                        if batch.num_rows:
                            yield normalize_batch(batch, schema)
            finally:
                shutil.rmtree(out, ignore_errors=True)

        return Execution(schema=schema, batches=batches(), close=lambda: shutil.rmtree(out, ignore_errors=True))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pool_name(user: str) -> str:
    """A FAIR scheduler pool per user (names made safe; "default" for none)."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in user)[:64]
    return f"user-{safe}" if safe else "default"


def _spark_error(exc: Exception) -> ArchipelError:
    text = str(exc)
    first = next((line for line in text.splitlines() if line.strip()), text)
    try:
        from pyspark.errors import AnalysisException, ParseException

        if isinstance(exc, (AnalysisException, ParseException)):
            return InvalidArgument(f"query failed: {first[:500]}")
    except ImportError:
        pass
    if "cancelled" in text.lower():
        return Cancelled(f"query was cancelled: {first[:300]}")
    logger.error("Spark query failed: %s", text[:2000])
    return Internal(f"Spark query failed: {first[:500]}")
