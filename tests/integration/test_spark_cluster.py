"""An island whose Spark is a real standalone cluster: a master and a worker started from the
pyspark package itself, as separate processes on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from islands import SHARED_HATS, IslandProcess, free_port, wait_for_log


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([str(_spark_home() / "bin" / "spark-class"), *args], stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spark-cluster")
    env = {**os.environ, "SPARK_HOME": str(_spark_home()), "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_WORKER_DIR": str(tmp / "work"), "SPARK_LOG_DIR": str(tmp)}
    port = free_port()
    master = _start(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                     "--webui-port", str(free_port())], tmp / "master.log", env)
    procs = [master]
    try:
        wait_for_log(tmp / "master.log", "I have been elected leader", master)
        url = f"spark://127.0.0.1:{port}"
        worker = _start(["org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1", "--cores", "2",
                         "--memory", "2g", "--webui-port", str(free_port())], tmp / "worker.log", env)
        procs.append(worker)
        wait_for_log(tmp / "worker.log", "Successfully registered with master", worker)
        yield url, tmp / "work"
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(30)


def test_island_runs_spark_queries_on_a_standalone_cluster(cluster, tmp_path):
    url, workdir = cluster
    isl = IslandProcess(tmp_path / "c", "clustered",
                        extra_config=f'[spark]\nmaster = "{url}"\nexecutor_memory = "768m"\n')
    isl.start(wait_spark=True)
    try:
        with isl.client() as c:
            assert c.info()["spark_master"] == url
            c.ingest(str(SHARED_HATS / "small_sky_o1_collection"), "sky.order1")
            c.ingest(str(SHARED_HATS / "small_sky_source"), "sky.source")
            result = c.sql("SELECT o.id, count(*) AS n FROM sky.order1 o JOIN sky.source s ON s.object_id = o.id "
                           "GROUP BY o.id ORDER BY o.id")
            got = result.read_all()
            assert result.stats.engine == "spark"
        sources = pq.read_table(SHARED_HATS / "small_sky_source" / "dataset")
        objects = pq.read_table(SHARED_HATS / "small_sky_o1_collection" / "small_sky_order1" / "dataset")
        truth = (sources.join(objects.select(["id"]), keys="object_id", right_keys="id")
                 .group_by("object_id").aggregate([("source_id", "count")]).sort_by("object_id"))
        assert got["id"].to_pylist() == truth["object_id"].to_pylist()
        assert got["n"].to_pylist() == truth["source_id_count"].to_pylist()
        # the work ran in the cluster's executors, not in a local driver
        apps = list(workdir.glob("app-*"))
        assert apps and any((a / "0" / "stderr").exists() for a in apps)
        # a Spark session through the island runs on the same cluster, a Python UDF included
        from pyspark.sql.connect import functions as F
        from pyspark.sql.connect.functions import udf
        from pyspark.sql.types import LongType

        with isl.client() as c:
            spark = c.spark(datasets=["sky.order1", "sky.source"])
            try:
                parity = udf(lambda i: i % 2, LongType())
                o, src = spark.table("sky.order1"), spark.table("sky.source")
                rows = (src.join(o, src.object_id == o.id).groupBy(parity(o.id).alias("p"))
                        .agg(F.count("*").alias("n")).orderBy("p").collect())
                assert spark.conf.get("spark.master") == url
            finally:
                spark.stop()
        ids = sources.join(objects.select(["id"]), keys="object_id", right_keys="id")["object_id"].to_pylist()
        assert [(r["p"], r["n"]) for r in rows] == sorted({p: sum(1 for i in ids if i % 2 == p)
                                                           for p in {i % 2 for i in ids}}.items())
    finally:
        assert isl.stop() == 0
