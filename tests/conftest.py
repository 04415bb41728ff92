from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


import os  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def test_archipelago():
    """Every island of the suite speaks TLS with certificates of one test CA; the CLI and the
    clients the tests start find the CA and an admin token in the environment."""
    from islands import archipelago

    arch = archipelago()
    old = {k: os.environ.get(k) for k in ("ARCHIPEL_CA", "ARCHIPEL_TOKEN")}
    os.environ["ARCHIPEL_CA"] = str(arch.ca_pem)
    os.environ["ARCHIPEL_TOKEN"] = arch.admin_token
    yield arch
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _tree_state() -> str | None:
    """``git status`` of the repository the tests run from (None outside a git checkout)."""
    import shutil
    import subprocess

    root = Path(__file__).resolve().parent.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        return None
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=root, capture_output=True,
                         text=True, timeout=60)
    return out.stdout if out.returncode == 0 else None


_TREE_AT_START: list[str | None] = []


def pytest_sessionstart(session):
    _TREE_AT_START.append(_tree_state())


def pytest_sessionfinish(session, exitstatus):
    """The suite writes nothing into the repository: a session that left files there fails."""
    before = _TREE_AT_START[0] if _TREE_AT_START else None
    after = _tree_state()
    if before is None or after is None or after == before:
        return
    new = sorted(set(after.splitlines()) - set(before.splitlines()))
    print("\nthe test session changed the working tree (state must live under island folders, the user's "
          "config folder or the temporary folder):\n  " + "\n  ".join(new), file=sys.stderr)
    session.exitstatus = 1
