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
