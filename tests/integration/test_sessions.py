"""Spark sessions and batch jobs, end to end: real islands (alpha from the shared fixture and
beta, its peer, each with its warm Spark), the Spark Connect client in a virtualenv of its own
(the client and pyspark-client only, no Java), users with and without the compute right."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import archipel
from islands import SHARED_HATS, IslandProcess, archipelago, cli, source_copy, wait_for

pytestmark = pytest.mark.integration

OBJECTS = SHARED_HATS / "small_sky_o1_collection" / "small_sky_order1" / "dataset"
SOURCES = SHARED_HATS / "small_sky_source" / "dataset"


@pytest.fixture(scope="module")
def beta(island, tmp_path_factory):
    """Island beta, peered with alpha, holding beta.stars (which alpha does not hold)."""
    b = IslandProcess(tmp_path_factory.mktemp("beta"), "beta",
                      extra_config=f'[federation]\npeers = ["{island.address}"]\n'
                                   "[sessions]\nidle_seconds = 600\n").start(wait_spark=True)
    with b.client() as c:
        stars = pa.table({"id": pa.array(range(1000), pa.int64()),
                          "ra": pa.array([(i * 0.37) % 360 for i in range(1000)]),
                          "dec": pa.array([((i * 0.11) % 170) - 85 for i in range(1000)]),
                          "mag": pa.array([10 + (i % 70) / 10 for i in range(1000)])})
        c.publish("beta.stars", stars)
    with island.client() as c:
        wait_for(lambda: "beta.stars" in [d.name for d in c.datasets()], "alpha lists beta.stars")
    yield b
    assert b.stop() == 0, b.log.read_text()[-3000:]


@pytest.fixture(scope="module")
def users():
    a = archipelago()
    return {"ana": a.token("ana", rights=("compute",)), "bo": a.token("bo"), "cy": a.token("cy", rights=("compute",))}


@pytest.fixture(scope="module")
def spark_venv(tmp_path_factory) -> Path:
    """A virtualenv with only the client and its spark extra (pyspark-client: no JVM)."""
    env_dir = tmp_path_factory.mktemp("spark-client") / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    source = source_copy(tmp_path_factory.mktemp("spark-client-src") / "archipel")
    proc = subprocess.run([str(py), "-m", "pip", "install", "-q", f"{source}[spark]"], capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return py


NOTEBOOK = r'''
import json, sys
for mod in ("duckdb", "celery", "py4j", "sqlglot"):
    try:
        __import__(mod)
    except ImportError:
        continue
    raise SystemExit(f"{mod} should not be importable beside the client and pyspark-client")
import pyspark, os
assert not os.path.isdir(os.path.join(os.path.dirname(pyspark.__file__), "jars")), "a JVM Spark is installed"
import archipel
from pyspark.sql import functions as F
from pyspark.sql.connect.functions import udf
from pyspark.sql.types import LongType

c = archipel.connect(sys.argv[1])
spark = c.spark(datasets=["sky.order1", "sky.source"])
bucket = udf(lambda ra: int(ra * 7) % 5, LongType())
o = spark.table("sky.order1")
s = spark.table("sky.source")
df = (s.join(o, s.object_id == o.id).withColumn("bucket", bucket(o.ra))
      .groupBy("bucket").agg(F.count("*").alias("n"), F.round(F.sum("source_ra"), 6).alias("sum_ra"))
      .orderBy("bucket"))
rows = [r.asDict() for r in df.collect()]
via_sql = spark.sql("SELECT count(*) AS n FROM sky.source s JOIN sky.order1 o ON s.object_id = o.id WHERE o.dec < -30").collect()[0]["n"]
print(json.dumps({"rows": rows, "sql": via_sql, "where": spark.archipel["island"]}))
spark.stop()
'''


def _truth() -> tuple[list[dict], int]:
    objects = pq.read_table(OBJECTS).select(["id", "ra", "dec"])
    sources = pq.read_table(SOURCES).select(["object_id", "source_ra"])
    joined = sources.join(objects, keys="object_id", right_keys="id")
    buckets: dict[int, list] = {}
    for ra, sra in zip(joined["ra"].to_pylist(), joined["source_ra"].to_pylist()):
        b = int(ra * 7) % 5
        n, s = buckets.get(b, (0, 0.0))
        buckets[b] = (n + 1, s + sra)
    rows = [{"bucket": b, "n": n, "sum_ra": round(s, 6)} for b, (n, s) in sorted(buckets.items())]
    south = pc.sum(pc.less(joined["dec"], -30)).as_py()
    return rows, south


def test_a_notebook_without_java_runs_a_join_a_udf_and_an_aggregation(island, spark_venv, users, tmp_path):
    script = tmp_path / "notebook.py"
    script.write_text(NOTEBOOK)
    env = {**os.environ, "ARCHIPEL_TOKEN": users["ana"], "ARCHIPEL_CA": str(island.ca)}
    env.pop("PYTHONPATH", None)
    run = subprocess.run([str(spark_venv), str(script), island.address], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    rows, south = _truth()
    assert got["where"] == "alpha"
    assert [r["bucket"] for r in got["rows"]] == [r["bucket"] for r in rows]
    assert [r["n"] for r in got["rows"]] == [r["n"] for r in rows]
    assert [r["sum_ra"] for r in got["rows"]] == pytest.approx([r["sum_ra"] for r in rows], rel=1e-9)
    assert got["sql"] == south > 0


def test_a_session_opened_at_alpha_for_betas_data_runs_at_beta(island, beta, users):
    with island.client(users["ana"]) as c:
        spark = c.spark(datasets=["beta.stars"])
        try:
            assert spark.archipel["island"] == "beta" and "beta" in spark.archipel["reason"]
            got = spark.sql("SELECT count(*) AS n, round(sum(mag), 3) AS m FROM beta.stars WHERE dec > 0").collect()[0]
            assert [s["island"] for s in c.sessions(island="beta")] == ["beta"]
            assert c.sessions() == []  # nothing runs at alpha
        finally:
            spark.stop()
        with beta.client(users["ana"]) as cb:
            assert cb.sessions() == []  # released at beta
    with beta.client() as cb:
        truth = cb.sql("SELECT count(*) AS n, round(sum(mag), 3) AS m FROM beta.stars WHERE dec > 0").read_all()
    assert (got["n"], got["m"]) == (truth["n"][0].as_py(), pytest.approx(truth["m"][0].as_py()))
    # a session kept at alpha reads beta's data too: its partitions are copied here first
    with island.client(users["ana"]) as c:
        spark = c.spark(datasets=["beta.stars"], island="alpha")
        try:
            assert spark.archipel["island"] == "alpha"
            here = spark.sql("SELECT count(*) AS n FROM beta.stars WHERE dec > 0").collect()[0]["n"]
        finally:
            spark.stop()
    assert here == got["n"]


def test_two_users_sessions_do_not_see_each_others_views_or_sessions(island, users):
    with island.client(users["ana"]) as ca, island.client(users["cy"]) as cc:
        sa, sc = ca.spark(), cc.spark()
        try:
            sa.table("sky.order1").where("dec < -40").createOrReplaceTempView("mine")
            assert sa.table("mine").count() > 0
            with pytest.raises(Exception, match="(?i)mine|not found|cannot be found"):
                sc.table("mine").count()
            assert [s["user"] for s in ca.sessions()] == ["ana"]
            # cy cannot act on ana's session, even knowing its id
            with pytest.raises(archipel.NotFound):
                cc.kill_session(sa.archipel["id"])
            from archipel.spark import open_session
            from archipel.channel import credentials
            from archipel.v1 import island_pb2 as pb

            stolen = pb.SessionInfo(id=sa.archipel["id"], island="alpha", user="cy")
            hijack = open_session(island.address, credentials(users["cy"], str(island.ca)), stolen)
            with pytest.raises(Exception, match="belongs to another user"):
                hijack.range(1).count()
            assert sa.table("mine").count() > 0  # ana's session is untouched
        finally:
            sa.stop()
            sc.stop()


def test_a_killed_session_frees_its_memory_and_ends(island, users):
    with island.client(users["ana"]) as c, island.client() as admin:
        base = admin.info()["spark_storage_bytes"]
        spark = c.spark()
        df = spark.table("test.allsky").where("dec > 0")
        df.cache()
        n = df.count()
        assert n > 0
        sid = spark.archipel["id"]
        mine = next(s for s in c.sessions() if s["id"] == sid)
        assert mine["memory_bytes"] > 0 and mine["operations"] >= 1
        assert admin.info()["spark_storage_bytes"] >= base + mine["memory_bytes"]
        out = subprocess.run([sys.executable, "-m", "archipel.cli.main", "sessions", "--island", island.address,
                              "--token", island.admin_token, "--ca", str(island.ca)], capture_output=True, text=True)
        assert out.returncode == 0 and sid in out.stdout and "ana" in out.stdout, out.stderr
        killed = subprocess.run([sys.executable, "-m", "archipel.cli.main", "sessions", "kill", sid, "--island",
                                 island.address, "--token", users["ana"], "--ca", str(island.ca)],
                                capture_output=True, text=True)
        assert killed.returncode == 0 and "killed session" in killed.stdout, killed.stderr
        assert all(s["id"] != sid for s in c.sessions())
        wait_for(lambda: admin.info()["spark_storage_bytes"] <= base, "the session's cache is freed")
        with pytest.raises(Exception, match="ended"):
            spark.range(1).count()
        spark.stop()  # the notebook's own end of a killed session: quiet


ESCAPES = [
    ("spark.read.parquet('/etc').count()", "by path"),
    ("spark.read.format('csv').load('/etc/passwd').count()", "by path"),
    ("spark.sql('SELECT * FROM parquet.`/etc`').collect()", "by path"),
    ("spark.table('parquet.`/etc`').count()", "by path"),
    ("spark.range(3).write.parquet('/tmp/escape')", "writing"),
    ("spark.range(3).write.saveAsTable('t')", "writ"),
    ("spark.sql('CREATE TABLE t (x INT)').collect()", "temporary view"),
    ("spark.sql('DROP TABLE IF EXISTS t').collect()", "only queries"),
    ("spark.sql('INSERT INTO t VALUES (1)').collect()", "only queries"),
    ("spark.sql(\"SET spark.sql.warehouse.dir=/tmp\").collect()", "only queries"),
    ("spark.conf.set('spark.master', 'local')", "not allowed"),
    ("spark.conf.set('spark.sql.catalog.evil', 'x')", "not allowed"),
    ("spark.conf.getAll", "spark.sql"),
    ("spark.sql(\"SELECT reflect('java.lang.System', 'exit', 1)\").collect()", "reflect"),
    ("spark.range(1).selectExpr(\"java_method('java.lang.System', 'getenv', 'HOME')\").collect()", "java_method"),
    ("spark.range(1).createGlobalTempView('shared')", "global"),
    ("spark.catalog.clearCache()", "shared"),
    ("spark.table('global_temp.x').count()", "no dataset"),
    ("spark.table('sky.order1').inputFiles()", "file paths"),
    ("spark.sql('SELECT 1; SELECT 2').collect()", "one SQL statement"),
]


def test_every_escape_is_refused_with_a_message_and_the_island_keeps_serving(island, users):
    with island.client(users["ana"]) as c:
        spark = c.spark()
        try:
            for code, message in ESCAPES:
                with pytest.raises(Exception) as info:
                    r = eval(code, {"spark": spark})
                    if callable(r):
                        r()
                assert message.lower() in str(info.value).lower(), (code, str(info.value)[:500])
            assert not Path("/tmp/escape").exists()
            assert spark.table("sky.order1").count() == pq.read_table(OBJECTS).num_rows
        finally:
            spark.stop()
        assert c.sql("SELECT count(*) AS n FROM sky.order1").read_all()["n"][0].as_py() == 131


def test_python_udfs_need_the_compute_right(island, users):
    from pyspark.sql.connect.functions import udf
    from pyspark.sql.types import DoubleType

    with island.client(users["bo"]) as c:
        spark = c.spark()
        try:
            assert spark.table("sky.order1").count() == 131  # bo reads, as queries do
            double = udf(lambda x: x * 2, DoubleType())
            with pytest.raises(Exception, match="compute"):
                spark.table("sky.order1").select(double("ra")).collect()
            with pytest.raises(Exception, match="compute"):
                spark.table("sky.order1").mapInArrow(lambda it: it, "id long").collect()
        finally:
            spark.stop()
    with pytest.raises(archipel.PermissionDenied, match="compute"):
        with island.client(users["bo"]) as c:
            c.submit("print(1)\n")


def test_sessions_see_only_datasets_their_user_may_read(island, users):
    with island.client() as admin:
        admin.publish("secret.ana", pa.table({"id": [1, 2, 3], "ra": [1.0, 2.0, 3.0], "dec": [0.0, 0.0, 0.0]}),
                      readers=["user:ana"])
    with island.client(users["ana"]) as ca, island.client(users["bo"]) as cb:
        sa, sb = ca.spark(), cb.spark()
        try:
            assert sa.table("secret.ana").count() == 3
            with pytest.raises(Exception, match="(?i)permission|may not read|not allowed|cannot read"):
                sb.table("secret.ana").count()
            with pytest.raises(Exception, match="(?i)permission|may not read|not allowed|cannot read"):
                sb.sql("SELECT * FROM secret.ana").collect()
        finally:
            sa.stop()
            sb.stop()


def test_cache_table_is_shared_by_sessions_and_dropped(island, users):
    with island.client() as admin, island.client(users["ana"]) as c:
        before = c.spark()
        truth = before.sql("SELECT count(*) AS n, round(sum(ra), 4) AS s FROM test.allsky WHERE dec < 0").collect()[0]
        before.stop()
        out = cli("cache-table", "test.allsky", "--cone", "30,-20,25", "--island", island.address,
                  "--token", island.admin_token, "--ca", str(island.ca))
        assert "kept in memory on alpha" in out.stdout
        tables = admin.cached_tables()
        assert [t["dataset"] for t in tables] == ["test.allsky"] and tables[0]["memory_bytes"] > 0
        assert 0 < tables[0]["files"] < len(admin.describe("test.allsky").partitions)
        spark = c.spark()
        try:
            got = spark.sql("SELECT count(*) AS n, round(sum(ra), 4) AS s FROM test.allsky WHERE dec < 0").collect()[0]
            assert (got["n"], got["s"]) == (truth["n"], truth["s"])
            plan = spark.sql("SELECT count(*) FROM test.allsky")._explain_string() if hasattr(
                spark.sql("SELECT 1"), "_explain_string") else None
            if plan is not None:
                assert "InMemory" in plan
        finally:
            spark.stop()
        with pytest.raises(archipel.PermissionDenied):
            c.cache_table("test.allsky")  # admins decide what the island keeps in memory
        listed = cli("cache-table", "--list", "--island", island.address, "--token", island.admin_token,
                     "--ca", str(island.ca))
        assert "test.allsky" in listed.stdout
        admin.drop_cached_table("test.allsky")
        assert admin.cached_tables() == []
        bad = cli("cache-table", "test.allsky", "--cone", "1,2", "--island", island.address,
                  "--token", island.admin_token, "--ca", str(island.ca), check=False)
        assert bad.returncode == 1 and "RA,DEC,RADIUS" in bad.stderr


JOB = r'''
import sys, time
n = int(sys.argv[1])
df = spark.table("beta.stars").where(f"mag > {n}")
print("rows", df.count(), flush=True)
publish(sys.argv[2], df.select("id", "ra", "dec", "mag"))
time.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 0)
print("done", flush=True)
'''


def test_a_batch_job_publishes_a_dataset_that_another_island_lists(island, beta, users, tmp_path):
    script = tmp_path / "bright.py"
    script.write_text(JOB)
    env = {**os.environ, "ARCHIPEL_TOKEN": users["ana"], "ARCHIPEL_CA": str(island.ca)}
    run = subprocess.run([sys.executable, "-m", "archipel.cli.main", "submit", str(script), "--arg", "15",
                          "--arg", "ana.bright", "--dataset", "beta.stars", "--island", island.address],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "rows " in run.stdout and "done" in run.stdout and "published ana.bright" in run.stdout
    assert "submitted to beta" in run.stderr and "succeeded" in run.stderr
    with island.client(users["ana"]) as c:
        wait_for(lambda: "ana.bright" in [d.name for d in c.datasets()], "alpha lists the job's dataset")
        info = c.describe("ana.bright")
        assert info.origin == "beta"
        with beta.client() as cb:
            truth = cb.sql("SELECT count(*) AS n FROM beta.stars WHERE mag > 15").read_all()["n"][0].as_py()
        assert c.sql("SELECT count(*) AS n FROM ana.bright").read_all()["n"][0].as_py() == truth
        jobs = c.jobs(island="beta")
        assert jobs[-1].state == "succeeded" and jobs[-1].published == ["ana.bright"]
        # the job ran as the unprivileged user, not as the island's
        with beta.client(users["cy"]) as other:
            assert other.jobs() == []  # cy sees none of ana's jobs


SLOW = ("import time, os, sys\nprint('uid', os.getuid(), flush=True)\nprint('start', flush=True)\n"
        "time.sleep(float(sys.argv[1]))\nprint('end', flush=True)\n")


def _wait_printed(job, text: bytes, island: IslandProcess, timeout: float = 120) -> None:
    """Waits until the running ``job`` prints ``text``; a job that ends first fails the test at
    once, with its log, state and the island's log."""
    def printed() -> bool:
        if text in b"".join(job.logs()):
            return True
        assert job.refresh().state in ("queued", "running"), _job_story(job, island)
        return False

    wait_for(printed, f"job {job.id} printed {text!r}", timeout, interval=0.2, detail=lambda: _job_story(job, island))


def _job_story(job, island: IslandProcess) -> str:
    logs = b"".join(job.logs()).decode(errors="replace")
    return (f"job {job.id}: {job.refresh().state} {job.reason!r}\n--- its log ---\n{logs[-3000:]}"
            f"\n--- the island's log ---\n{island.log.read_text(errors='replace')[-4000:]}")


def test_a_job_survives_its_client_going_away(island, users, tmp_path):
    script = tmp_path / "slow.py"
    script.write_text(SLOW)
    env = {**os.environ, "ARCHIPEL_TOKEN": users["ana"], "ARCHIPEL_CA": str(island.ca)}
    cmd = [sys.executable, "-m", "archipel.cli.main", "submit", str(script), "--arg", "5", "--island", island.address]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    with island.client(users["ana"]) as c:
        wait_for(lambda: any(j.state == "running" and j.info["filename"] == "slow.py" for j in c.jobs()),
                 "the job runs", timeout=120)
        job = next(j for j in c.jobs() if j.state == "running" and j.info["filename"] == "slow.py")
        _wait_printed(job, b"start", island)
        os.killpg(proc.pid, signal.SIGKILL)  # the client goes away
        proc.wait()
        job.wait(timeout=120)
        assert job.state == "succeeded", job.info
        text = b"".join(job.logs()).decode()
        assert "end" in text and "uid 0" not in text  # run as the unprivileged user, not as root
        logs = cli("jobs", "logs", job.id, "--island", island.address, "--token", users["ana"], "--ca", str(island.ca))
        assert "start" in logs.stdout and "end" in logs.stdout
        listed = cli("jobs", "--island", island.address, "--token", users["ana"], "--ca", str(island.ca))
        assert job.id in listed.stdout and "succeeded" in listed.stdout


def test_an_island_restart_fails_the_running_job_with_the_reason_and_runs_the_queued(tmp_path, users):
    g = IslandProcess(tmp_path / "gamma", "gamma",
                      extra_config="[jobs]\nconcurrent = 1\nper_user = 3\n[sessions]\nidle_seconds = 3\n")
    g.start(wait_spark=True)
    script = tmp_path / "slow.py"
    script.write_text(SLOW)
    try:
        with g.client(users["ana"]) as c:
            running = c.submit(str(script), args=["120"])
            queued = c.submit(str(script), args=["0"])
            wait_for(lambda: c.job(running.id).state == "running", "the first job runs", timeout=120)
            assert c.job(queued.id).state == "queued"
            _wait_printed(c.job(running.id), b"start", g)
            pid = json.loads((g.folder / "jobs" / running.id / "job.json").read_text())["pid"]
        g.kill()  # kill -9: the job's process is left behind
        g.start(wait_spark=True)
        with g.client(users["ana"]) as c:
            r = c.job(running.id)
            assert r.state == "failed" and "restarted while the job ran" in r.reason
            wait_for(lambda: not Path(f"/proc/{pid}").exists(), "the left-over job process is stopped")
            q = c.job(queued.id).wait(timeout=180)
            assert q.state == "succeeded", q.info
            assert "start" in b"".join(c.job(running.id).logs()).decode()  # its output is kept
            cancelled = c.submit(str(script), args=["120"])
            wait_for(lambda: c.job(cancelled.id).state == "running", "the third job runs", timeout=120)
            out = cli("jobs", "cancel", cancelled.id, "--island", g.address, "--token", users["ana"], "--ca", str(g.ca))
            assert "cancelled" in out.stdout
            wait_for(lambda: c.job(cancelled.id).info["finished"] > 0, "the cancelled job ended")
            assert c.job(cancelled.id).state == "cancelled"
            # an idle session ends after [sessions] idle_seconds
            spark = c.spark()
            assert spark.range(3).count() == 3
            sid = spark.archipel["id"]
            wait_for(lambda: all(s["id"] != sid for s in c.sessions()), "the idle session ended", timeout=60)
            with pytest.raises(Exception, match="ended"):
                spark.range(1).count()
            spark.stop()
    finally:
        assert g.stop() == 0, g.log.read_text()[-3000:]


def test_malformed_session_and_job_requests_get_clear_errors(island, users):
    refused = [  # (the call, the error, what its message says)
        (lambda c: c.kill_session("not-a-uuid"), archipel.InvalidArgument, "UUID"),
        (lambda c: c.kill_session("6f1c1c1e-8a51-4c3f-9d1e-3f4f5a6b7c8d"), archipel.NotFound, "no session"),
        (lambda c: c.job("nope"), archipel.NotFound, None),
        (lambda c: c.submit("   \n"), archipel.InvalidArgument, "empty"),
        (lambda c: c.submit("print(1)\x00\n"), archipel.InvalidArgument, "NUL"),
        (lambda c: c.spark(datasets=["no such name!"]), archipel.InvalidArgument, None),
        (lambda c: c.spark(datasets=["no.such"]), archipel.NotFound, None),
        (lambda c: c.spark(island="atlantis"), archipel.InvalidArgument, "no island named"),
        (lambda c: c.submit("/nonexistent/job.py"), archipel.InvalidArgument, "cannot read the script"),
    ]
    with island.client(users["ana"]) as c:
        for call, error, message in refused:
            with pytest.raises(error, match=message):
                call(c)
    with island.client(archipelago().token("nobody-in-particular")) as c:
        assert c.sessions() == [] and c.jobs() == []
    bad = cli("submit", "notes.txt", "--island", island.address, "--token", users["ana"], "--ca", str(island.ca),
              check=False)
    assert bad.returncode == 1 and "FILE.py" in bad.stderr
    with island.client() as admin:
        assert admin.info()["spark_ready"]
