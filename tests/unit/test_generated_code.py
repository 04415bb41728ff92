import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_wire_modules_are_fresh():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_client_package_imports_no_island_parts():
    code = ("import sys, archipel, archipel.aio, archipel.cli.main; "
            "bad = [m for m in ('pyspark', 'duckdb', 'sqlglot', 'island', 'federation', 'celery', 'pyarrow.flight') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
