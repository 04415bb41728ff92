"""A new user's first run: the repository cloned into an empty folder with nothing beside it,
then the README's run command (``./dev run``, which makes its own virtualenv there). The sample
datasets are listed, and every command it prints answers; the clone's tree stays clean."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from islands import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _run_command_of_readme() -> str:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    line = next(x for x in block.splitlines() if x.strip())
    return line.split("#", 1)[0].strip()


@pytest.mark.parametrize("islands", [3])
def test_a_fresh_clone_runs_the_readme_command_and_its_printed_queries_answer(tmp_path, islands):
    if not (ROOT / ".git").exists():
        pytest.fail("the first-run test needs the repository's git history to clone it")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=300)
    command = _run_command_of_readme()
    assert command == "./dev run", command
    port = free_port(span=10 * islands + 3)  # ./dev run takes PORT..PORT+2 for each island, 10 apart
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIPEL_")}
    env.update({"ARCHIPEL_HOME": str(home), "ARCHIPEL_PORT": str(port), "PYTHONDONTWRITEBYTECODE": "1"})
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", "-c", f"{command} --islands {islands}"], cwd=clone, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 900  # a virtualenv of its own is made first
        while "In another shell" not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-4000:]
            time.sleep(1)
        time.sleep(1)
        text = log.read_text(errors="replace")
        listed = set(re.findall(r"^(sample\.\S+)\s", text, re.M))
        assert {"sample.small_sky_order1", "sample.small_sky_source"} <= listed, text[-3000:]
        printed = [x.strip() for x in text.split("In another shell:", 1)[1].splitlines() if x.startswith("  ")]
        export, commands = printed[0], printed[1:]
        assert export.startswith("export ARCHIPEL_ISLAND=") and len(commands) >= 4 + (4 if islands >= 3 else 0)
        for cmd in commands:
            cmd = cmd.replace("/tmp/counts.parquet", str(tmp_path / "counts.parquet"))
            out = subprocess.run(["bash", "-c", f"{export} && {cmd}"], capture_output=True, text=True, timeout=300,
                                 env=env, cwd=tmp_path)
            assert out.returncode == 0, (cmd, out.stdout[-2000:], out.stderr[-2000:])
            assert out.stdout.strip(), cmd
            if "cone(ra, dec, 315, -60, 10)" in cmd and "query" in cmd:
                assert "(28 rows)" in out.stdout, out.stdout[-1000:]
            if re.search(r"count\(\*\)( AS n)? FROM sample\.small_sky_source", cmd, re.I):
                assert "17161" in out.stdout, out.stdout[-1000:]
            if "rules" in cmd:
                assert re.search(r"sample\.small_sky_order1\s+island3\s+ok", out.stdout), out.stdout
            if "subscriptions" in cmd:
                assert "demo" in out.stdout, out.stdout
        assert (tmp_path / "counts.parquet").stat().st_size > 0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone,
                            capture_output=True, text=True, check=True).stdout
    assert status == "", status  # nothing written into the clone but its ignored .venv
    leftover = subprocess.run(["pgrep", "-f", str(home)], capture_output=True, text=True).stdout
    assert not leftover.strip(), f"processes of the run left behind: {leftover}"
    shutil.rmtree(clone, ignore_errors=True)
