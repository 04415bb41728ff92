"""The client alone: a fresh virtualenv with plain ``pip install .`` (no extras) queries a
running island, with no pyspark, Java-facing code, DuckDB or Celery present."""

from __future__ import annotations

import subprocess
import venv

from islands import source_copy

CLIENT_SCRIPT = """
import sys
for mod in ("pyspark", "duckdb", "sqlglot", "celery", "hats", "cdshealpix", "mocpy", "pandas"):
    try:
        __import__(mod)
    except ImportError:
        continue
    raise SystemExit(f"{mod} should not be importable in a client-only install")
import archipel
with archipel.connect(sys.argv[1]) as c:
    names = [d.name for d in c.datasets()]
    assert "sky.order1" in names, names
    t = c.sql("SELECT id, ra, dec FROM sky.order1 WHERE cone(ra, dec, 315, -45, 10) ORDER BY id").read_all()
    print(t.num_rows, t.column_names)
    try:
        c.sql("SELECT * FROM parquet.`/etc`").read_all()
    except archipel.PermissionDenied as exc:
        print("refused:", exc)
"""


def test_plain_pip_install_is_a_working_client(island, tmp_path):
    env_dir = tmp_path / "client-venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    proc = subprocess.run([str(py), "-m", "pip", "install", "-q", str(source_copy(tmp_path / "src"))], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = subprocess.run([str(py), "-c", CLIENT_SCRIPT, island.address], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    count, _, cols = run.stdout.partition(" ")
    with island.client() as c:
        truth = c.sql("SELECT id FROM sky.order1 WHERE cone(ra, dec, 315, -45, 10)").read_all().num_rows
    assert int(count) == truth > 0 and "'id', 'ra', 'dec'" in cols
    assert "refused: direct file reads are not allowed" in run.stdout
    cli = subprocess.run([str(env_dir / "bin" / "archipel"), "datasets", "--island", island.address],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0 and "sky.source" in cli.stdout, cli.stderr
    served = subprocess.run([str(env_dir / "bin" / "archipel"), "island", "serve", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert served.returncode == 1 and served.stderr.startswith("error: ")
