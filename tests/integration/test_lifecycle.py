"""Island processes: config errors at start, clean stop on SIGTERM and SIGINT with nothing left."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

import archipel
from islands import IslandProcess, cli, peered_pair

BAD_CONFIGS = [
    ("[island]\nname = 'x'\nport = 'many'\n", "expected int"),
    ("[island\nname = 'x'\n", "not valid TOML"),
    ("[island]\nname = 'x'\ncolour = 'blue'\n", "unknown key 'colour'"),
    ("[islands]\nname = 'x'\n", "unknown section [islands]"),
    ("[island]\nname = '../x'\n", "not a valid island name"),
    ("[island]\nname = 'x'\nport = 70000\n", "not a valid TCP port"),
    ("[island]\nname = 'x'\n[query]\ntimeout_seconds = -1\n", "timeout_seconds must be positive"),
    ("\x00\x01binary", "not valid TOML"),
]


@pytest.mark.parametrize("text,message", BAD_CONFIGS)
def test_malformed_config_is_refused_with_its_reason(tmp_path, text, message):
    (tmp_path / "archipel.toml").write_text(text)
    proc = cli("island", "serve", str(tmp_path), check=False, timeout=60)
    assert proc.returncode == 1
    assert message in proc.stderr and proc.stderr.startswith("error: "), proc.stderr
    assert not (tmp_path / "catalog.sqlite").exists()


def test_missing_config(tmp_path):
    proc = cli("island", "serve", str(tmp_path / "nope"), check=False)
    assert proc.returncode == 1 and "archipel island init" in proc.stderr


def test_init_refuses_to_overwrite_and_bad_names(tmp_path):
    cli("island", "init", str(tmp_path / "a"), "--name", "a")
    proc = cli("island", "init", str(tmp_path / "a"), "--name", "a", check=False)
    assert proc.returncode == 1 and "already exists" in proc.stderr
    proc = cli("island", "init", str(tmp_path / "b"), "--name", "b/../c", check=False)
    assert proc.returncode == 1 and "not a valid island name" in proc.stderr


def test_port_in_use_is_reported(tmp_path):
    a = IslandProcess(tmp_path / "a", "a", extra_config="[spark]\nstart = false\n").start()
    try:
        (tmp_path / "b").mkdir()
        cli("island", "init", str(tmp_path / "b"), "--name", "b", "--port", str(a.port))
        proc = cli("island", "serve", str(tmp_path / "b"), check=False, timeout=60)
        assert proc.returncode == 1 and "cannot listen" in proc.stderr
    finally:
        assert a.stop() == 0


def test_env_overrides_config(tmp_path):
    isl = IslandProcess(tmp_path / "e", "e", extra_config="[spark]\nstart = false\n",
                        env={"ARCHIPEL_QUERY_MAX_ROWS": "2"}).start()
    try:
        with isl.client() as c:
            c.publish("env.t", {"x": [1, 2, 3]})
            with pytest.raises(archipel.ResourceExhausted, match="row limit of 2"):
                c.sql("SELECT * FROM env.t").read_all()
            with pytest.raises(archipel.FailedPrecondition, match="not started"):
                c.sql("SELECT * FROM env.t", engine="spark").read_all()
    finally:
        assert isl.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_leaves_no_process_behind(tmp_path, sig):
    isl = IslandProcess(tmp_path / "s", "s").start(wait_spark=True)
    pgid = isl.proc.pid
    java = subprocess.run(["pgrep", "-g", str(pgid), "java"], capture_output=True, text=True).stdout.split()
    assert java, "the island's Spark JVM should run in its process group"
    assert isl.stop(sig) == 0
    deadline = time.monotonic() + 15  # a JVM helper may take a moment to exit
    with pytest.raises(ProcessLookupError):
        while time.monotonic() < deadline:
            os.killpg(pgid, 0)
            time.sleep(0.2)
        left = subprocess.run(["ps", "-o", "pid,args", "-g", str(pgid)], capture_output=True, text=True).stdout
        pytest.fail(f"processes left in the island's group:\n{left}")


def test_catalog_survives_restart(tmp_path):
    isl = IslandProcess(tmp_path / "r", "r", extra_config="[spark]\nstart = false\n").start()
    with isl.client() as c:
        c.publish("keep.me", {"ra": [1.0, 2.0], "dec": [3.0, 4.0]})
        seq = c.info()["catalog_sequence"]
    assert isl.stop() == 0
    isl.start()
    try:
        with isl.client() as c:
            assert [d.name for d in c.datasets()] == ["keep.me"]
            assert c.info()["catalog_sequence"] == seq
            assert c.sql("SELECT count(*) AS n FROM keep.me").read_all()["n"][0].as_py() == 2
    finally:
        assert isl.stop() == 0


def test_islands_workers_and_the_cli_write_nothing_where_they_are_started(tmp_path):
    """State lives under the island folders: the folder the processes start in stays empty
    through ingest, a replication by Celery workers (Kombu's file transport) and CLI calls."""
    work = tmp_path / "cwd"
    work.mkdir()
    a, b = peered_pair(tmp_path, ("a", "b"), "clean.source", cwd=work)
    try:
        with b.client() as c:
            rule = c.replicate("clean.source", to="b").wait()
            assert rule.state == "ok", rule
        import sys

        out = subprocess.run([sys.executable, "-m", "archipel.cli.main", "datasets", "--island", b.address],
                             cwd=work, capture_output=True, text=True, timeout=120, env={**os.environ})
        assert out.returncode == 0 and "clean.source" in out.stdout, out.stderr
    finally:
        for isl in (b, a):
            assert isl.stop() == 0
    assert sorted(p.name for p in work.iterdir()) == []
