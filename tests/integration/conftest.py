"""One real island (a separate process with its warm Spark) holding the shared HATS catalogs
and a synthetic all-sky catalog, shared by the integration tests of a session."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from islands import SHARED_HATS, IslandProcess
from skydata import sky_table

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def sky(tmp_path_factory) -> tuple:
    """The synthetic catalog as a table and as a Parquet file in two pieces."""
    table = sky_table()
    folder = tmp_path_factory.mktemp("sky-input")
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), folder / "a.parquet")
    pq.write_table(table.slice(half), folder / "b.parquet")
    return table, folder


@pytest.fixture(scope="session")
def island(tmp_path_factory, sky):
    """Island 'alpha' with sky.order1 (+ margins, index), sky.source and test.allsky."""
    assert SHARED_HATS.is_dir(), f"shared HATS data not found at {SHARED_HATS}"
    isl = IslandProcess(tmp_path_factory.mktemp("alpha"), "alpha",
                        extra_config="[ingest]\npartition_rows = 1500\n[query]\nchunk_bytes = 65536\n")
    isl.start(wait_spark=False)
    with isl.client() as c:
        c.ingest(str(SHARED_HATS / "small_sky_o1_collection"), "sky.order1")
        c.ingest(str(SHARED_HATS / "small_sky_source"), "sky.source")
        c.ingest(str(sky[1]), "test.allsky")
    _wait_spark(isl)
    yield isl
    code = isl.stop()
    assert code == 0, isl.log.read_text()[-3000:]


def _wait_spark(isl: IslandProcess, timeout: float = 240) -> None:
    import time

    deadline = time.monotonic() + timeout
    with isl.client() as c:
        while not c.info()["spark_ready"]:
            info = c.info()
            assert not info["spark_error"], info["spark_error"]
            assert time.monotonic() < deadline, "Spark did not start"
            time.sleep(0.2)


@pytest.fixture()
def client(island):
    with island.client() as c:
        yield c
