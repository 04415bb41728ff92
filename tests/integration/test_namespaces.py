"""Islands on separate hosts: each island, a Celery worker and a Spark worker in network
namespaces of their own (veth pairs on a bridge, addresses the test makes, tests/netns.py),
not on one loopback address. Catalog sync, routed queries, replication and subscriptions run
across them, and a link is cut in the middle of each and restored: the caller gets a clear
error or the work completes, and every island's catalog is the same afterwards, with no record
lost or doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from archipel.errors import ArchipelError
from islands import SHARED_HATS, IslandProcess, free_port, wait_for, wait_for_log
from netns import Sites, available

pytestmark = pytest.mark.integration

NO_SPARK = "[spark]\nstart = false\n"


@pytest.fixture(scope="module")
def sites():
    why = available()
    if why:
        pytest.fail(f"the namespace tests cannot run: {why}")
    s = Sites(["a", "b", "w"]).create()
    yield s
    s.destroy()


def _table(n: int, seed: int, start: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"id": np.arange(start, start + n), "ra": rng.uniform(0, 360, n),
                     "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))), "flux": rng.normal(0, 1, n),
                     "pad": rng.normal(0, 1, n)})


def _catalog(client) -> list[tuple]:
    """Every dataset with its partitions, as the island's catalog has them."""
    out = []
    for d in sorted(client.datasets(), key=lambda d: d.name):
        full = client.describe(d.name)
        out.append((d.name, d.origin, d.num_rows, d.readers,
                    tuple(sorted((p.path, p.num_rows, p.adler32) for p in full.partitions))))
    return out


def _same_catalogs(*islands: IslandProcess, timeout: float = 60) -> list[tuple]:
    clients = [i.client() for i in islands]
    try:
        wait_for(lambda: len({tuple(_catalog(c)) for c in clients}) == 1, "every island has the same catalog",
                 timeout)
        return _catalog(clients[0])
    finally:
        for c in clients:
            c.close()


def test_sync_routing_replication_and_subscriptions_survive_cut_links(sites, tmp_path):
    ha, hb = sites.addresses["a"], sites.addresses["b"]
    a = IslandProcess(tmp_path / "a", "a", host=ha, netns=sites.ns("a"),
                      extra_config=NO_SPARK + "[ingest]\npartition_rows = 40000\n").start()
    b = IslandProcess(tmp_path / "b", "b", host=hb, netns=sites.ns("b"),
                      extra_config=NO_SPARK + f'[federation]\npeers = ["{a.address}"]\n'
                      "[replication]\nretries = 30\nbandwidth_bytes = 1500000\n").start()
    try:
        with a.client() as ca:
            ca.publish("far.first", _table(1000, 1), ra="ra", dec="dec")
        _same_catalogs(a, b)

        # -- catalog sync with b's link down: the changes arrive once it is back -------------
        sites.cut("b")
        with a.client() as ca:
            ca.publish("far.second", _table(2000, 2), ra="ra", dec="dec")
            ca.append("far.first", _table(500, 3, 10_000))
            ca.ingest(str(SHARED_HATS / "small_sky_source"), "far.sky")
        time.sleep(3)
        sites.restore("b")
        catalog = _same_catalogs(a, b, timeout=120)
        names = [c[0] for c in catalog]
        assert names == sorted(set(names)) and {"far.first", "far.second", "far.sky"} <= set(names)
        assert dict((c[0], c[2]) for c in catalog)["far.first"] == 1500  # the append applied once

        # -- a routed query while the data's island is cut off: a clear error, then the truth ---
        truth = pa.concat_tables([_table(1000, 1), _table(500, 3, 10_000)])
        sites.cut("a")
        with b.client() as cb:
            with pytest.raises(ArchipelError) as err:
                cb.sql("SELECT count(*) AS n FROM far.first", route="remote", timeout=30).read_all()
            assert err.value.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"), err.value
            assert "island a" in err.value.message, err.value.message  # says which island failed
        sites.restore("a")
        with b.client() as cb:
            wait_for(lambda: cb.sql("SELECT count(*) AS n FROM far.first", route="remote", timeout=30)
                     .read_all()["n"][0].as_py() == truth.num_rows, "the routed query answers again", 90)
            got = cb.sql("SELECT id FROM far.first ORDER BY id", route="remote").read_all()
            assert got["id"].to_pylist() == sorted(truth["id"].to_pylist())

        # -- a replication cut in the middle: it completes once the link is back --------------
        with a.client() as ca:
            big = _table(400_000, 4)  # about 16 MB in 10 partitions; b copies at 1.5 MB/s a file
            ca.publish("far.big", big, ra="ra", dec="dec")
        with b.client() as cb:
            wait_for(lambda: "far.big" in {d.name for d in cb.datasets()}, "far.big reached b")
            parts = cb.describe("far.big").partitions
            job = cb.replicate("far.big", to="b", detach=True)
            rule = job.wait()
            wait_for(lambda: any(r.bytes_done > 0 for r in cb.rules() if r.id == rule.id), "bytes moving", 60)
            sites.cut("a")
            time.sleep(4)
            moving = next(r for r in cb.rules() if r.id == rule.id)
            assert moving.files_done < len(parts), "the cut came after the copy (nothing to test)"
            sites.restore("a")
            wait_for(lambda: next(r for r in cb.rules() if r.id == rule.id).state in ("ok", "stuck"),
                     "the rule ended", 240)
            done = next(r for r in cb.rules() if r.id == rule.id)
            assert done.state == "ok", done  # retries carried it over the cut
            assert done.files_done == len(parts) and done.bytes_done == sum(p.num_bytes for p in parts)
            local = cb.sql("SELECT count(*) AS n, sum(id) AS s FROM far.big", route="local").read_all()
            assert (local["n"][0].as_py(), local["s"][0].as_py()) == (big.num_rows, int(np.sum(big["id"])))

        _same_catalogs(a, b, timeout=120)

        # -- a subscription whose island is cut off: the client resumes, each item once -------
        with b.client() as cb:
            sub = cb.subscribe("live.*", name="across", reconnect=120)
            got: list = []
            reader = threading.Thread(target=_take, args=(sub, 2, got), daemon=True)
            reader.start()
            with a.client() as ca:
                ca.publish("live.one", _table(10, 5), ra="ra", dec="dec")
                wait_for(lambda: len(got) >= 1, "the first event", 90)
                sites.cut("b")
                ca.publish("live.two", _table(20, 6), ra="ra", dec="dec")
                time.sleep(3)
                sites.restore("b")
            reader.join(150)
            sub.close()
            assert [(e.dataset, e.rows) for e in got] == [("live.one", 10), ("live.two", 20)]
        _same_catalogs(a, b, timeout=120)
    finally:
        for isl in (b, a):
            if isl.proc is not None and isl.proc.poll() is None:
                assert isl.stop() == 0, isl.log.read_text()[-3000:]


def _take(sub, n: int, out: list) -> None:
    """Appends the first ``n`` items of ``sub`` to ``out`` as they come."""
    for item in sub:
        out.append(item)
        if len(out) >= n:
            return


def test_a_celery_worker_in_its_own_namespace_replicates_over_a_cut_link(sites, tmp_path):
    """Island b keeps its transfer queue in Redis (in b's namespace); its only worker runs in
    namespace w and reaches Redis and a's data server over the bridge."""
    ha, hb = sites.addresses["a"], sites.addresses["b"]
    redis_port = free_port()
    secret = os.urandom(12).hex()  # Redis answers other hosts only with a password
    redis = subprocess.Popen([*sites.exec_prefix("b"), "redis-server", "--bind", hb, "--port", str(redis_port),
                              "--requirepass", secret, "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                             stdout=open(tmp_path / "redis.log", "wb"), stderr=subprocess.STDOUT)
    broker = f"redis://:{secret}@{hb}:{redis_port}/0"
    a = IslandProcess(tmp_path / "a", "wa", host=ha, netns=sites.ns("a"),
                      extra_config=NO_SPARK + "[ingest]\npartition_rows = 40000\n").start()
    b = IslandProcess(tmp_path / "b", "wb", host=hb, netns=sites.ns("b"),
                      extra_config=NO_SPARK + f'[federation]\npeers = ["{a.address}"]\n'
                      f'[replication]\nbroker = "{broker}"\nworkers = 0\nretries = 30\nbandwidth_bytes = 1500000\n'
                      ).start()
    worker = None
    try:
        worker = subprocess.Popen([*sites.exec_prefix("w"), sys.executable, "-m", "archipel.cli.main", "island",
                                   "worker", str(b.folder), "--concurrency", "2", "--name", "remote@w"],
                                  stdout=open(tmp_path / "worker.log", "wb"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        with a.client() as ca:
            big = _table(300_000, 7)
            ca.publish("far.worked", big, ra="ra", dec="dec")
        with b.client() as cb:
            wait_for(lambda: "far.worked" in {d.name for d in cb.datasets()}, "far.worked reached wb")
            parts = cb.describe("far.worked").partitions
            rule = cb.replicate("far.worked", to="wb", detach=True).wait()
            wait_for(lambda: any(r.bytes_done > 0 for r in cb.rules() if r.id == rule.id),
                     "the worker in namespace w moves bytes", 90)
            sites.cut("w")
            time.sleep(4)
            sites.restore("w")
            wait_for(lambda: next(r for r in cb.rules() if r.id == rule.id).state in ("ok", "stuck"),
                     "the rule ended", 300)
            done = next(r for r in cb.rules() if r.id == rule.id)
            assert done.state == "ok" and done.files_done == len(parts), (done, (tmp_path / "worker.log").read_text()[-3000:])
            local = cb.sql("SELECT count(*) AS n FROM far.worked", route="local").read_all()
            assert local["n"][0].as_py() == big.num_rows
        assert "remote@w" in (tmp_path / "worker.log").read_text()
        _same_catalogs(a, b)
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(30)
        for isl in (b, a):
            if isl.proc is not None and isl.proc.poll() is None:
                assert isl.stop() == 0, isl.log.read_text()[-3000:]
        redis.terminate()
        redis.wait(10)


def test_spark_on_a_standalone_cluster_whose_worker_is_in_another_namespace(sites, tmp_path):
    """An island whose Spark is a real standalone cluster (a master and a worker started from the
    pyspark package itself, as separate processes), the worker on another host: queries and a
    Spark session with a Python UDF run in its executors."""
    import pyspark

    home = Path(pyspark.__file__).parent
    ha, hw = sites.addresses["a"], sites.addresses["w"]
    port = free_port()

    def spark(site: str, host: str, args: list[str], log: str) -> subprocess.Popen:
        env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": host, "SPARK_WORKER_DIR": str(tmp_path / "work"),
               "SPARK_LOG_DIR": str(tmp_path)}
        return subprocess.Popen([*sites.exec_prefix(site), str(home / "bin" / "spark-class"), *args],
                                stdout=open(tmp_path / log, "wb"), stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)

    def wait_log(log: str, text: str, proc, timeout: float = 180) -> None:
        wait_for_log(tmp_path / log, text, proc, timeout)

    procs = []
    isl = None
    try:
        master = spark("a", ha, ["org.apache.spark.deploy.master.Master", "--host", ha, "--port", str(port),
                                 "--webui-port", str(free_port())], "master.log")
        procs.append(master)
        wait_log("master.log", "I have been elected leader", master)
        url = f"spark://{ha}:{port}"
        worker = spark("w", hw, ["org.apache.spark.deploy.worker.Worker", url, "--host", hw, "--cores", "2",
                                 "--memory", "2g", "--webui-port", str(free_port())], "worker.log")
        procs.append(worker)
        wait_log("worker.log", "Successfully registered with master", worker)
        isl = IslandProcess(tmp_path / "s", "sparky", host=ha, netns=sites.ns("a"),
                            env={"SPARK_LOCAL_IP": ha},
                            extra_config=f'[spark]\nmaster = "{url}"\nexecutor_memory = "768m"\n')
        isl.start(wait_spark=True)
        with isl.client() as c:
            assert c.info()["spark_master"] == url
            c.ingest(str(SHARED_HATS / "small_sky_o1_collection"), "sky.order1")
            c.ingest(str(SHARED_HATS / "small_sky_source"), "sky.source")
            result = c.sql("SELECT o.id, count(*) AS n FROM sky.order1 o JOIN sky.source s ON s.object_id = o.id "
                           "GROUP BY o.id ORDER BY o.id", engine="spark")
            got = result.read_all()
            assert result.stats.engine == "spark"
        import pyarrow.parquet as pq

        sources = pq.read_table(SHARED_HATS / "small_sky_source" / "dataset")
        objects = pq.read_table(SHARED_HATS / "small_sky_o1_collection" / "small_sky_order1" / "dataset")
        joined = sources.join(objects.select(["id"]), keys="object_id", right_keys="id")
        truth = joined.group_by("object_id").aggregate([("source_id", "count")]).sort_by("object_id")
        assert got["id"].to_pylist() == truth["object_id"].to_pylist()
        assert got["n"].to_pylist() == truth["source_id_count"].to_pylist()
        # a Spark session through the island runs on the same cluster, a Python UDF included
        from pyspark.sql.connect import functions as F
        from pyspark.sql.connect.functions import udf
        from pyspark.sql.types import LongType

        with isl.client() as c:
            session = c.spark(datasets=["sky.order1", "sky.source"])
            try:
                parity = udf(lambda i: i % 2, LongType())
                o, src = session.table("sky.order1"), session.table("sky.source")
                rows = (src.join(o, src.object_id == o.id).groupBy(parity(o.id).alias("p"))
                        .agg(F.count("*").alias("n")).orderBy("p").collect())
                assert session.conf.get("spark.master") == url
            finally:
                session.stop()
        ids = joined["object_id"].to_pylist()
        assert [(r["p"], r["n"]) for r in rows] == [(p, sum(1 for i in ids if i % 2 == p))
                                                    for p in sorted({i % 2 for i in ids})]
        # the executors ran in namespace w, on the worker's host (their own folders there)
        log = (tmp_path / "worker.log").read_text()
        assert "Asked to launch executor" in log and f"spark://Worker@{hw}:" in log
        apps = list((tmp_path / "work").glob("app-*"))
        assert apps and any((a / "0" / "stderr").exists() for a in apps)
    finally:
        if isl is not None and isl.proc is not None and isl.proc.poll() is None:
            isl.stop()
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(30)
