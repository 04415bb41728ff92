"""Fair shares on the session's island (real Spark, local[2]): one user's heavy Spark job does
not stall another user's small query (FAIR pools per user), and a heavy job cancelled or past
its time limit stops its Spark jobs, not only its gRPC stream."""

from __future__ import annotations

import threading

import pytest

from archipel.errors import ArchipelError, Cancelled, DeadlineExceeded
from islands import archipelago, wait_for

pytestmark = pytest.mark.integration

# About 7 G row pairs: a minute of work for two cores, in tasks of a few seconds (one per
# partition of test.allsky, at most 1500 rows x 30000 x 8). Spark never preempts a running
# task: their length bounds how long another user's query waits for a core.
HEAVY = ("SELECT count(*) FROM test.allsky a, test.allsky b, (SELECT ra FROM sky.order1 ORDER BY id LIMIT 8) c "
         "WHERE a.ra + b.ra + c.ra > -1")
SMALL = "SELECT object_id, count(*) AS n FROM sky.source GROUP BY object_id ORDER BY object_id"


def _no_spark_jobs(admin) -> bool:
    return admin.info()["spark_active_jobs"] == 0


def test_a_heavy_job_neither_stalls_another_user_nor_outlives_its_cancel(island):
    arch = archipelago()
    heavy, light = arch.token("heavy"), arch.token("light")
    outcome: dict = {}
    with island.client() as admin, island.client(heavy) as h:
        def run() -> None:
            try:
                outcome["table"] = h.sql(HEAVY, engine="spark", timeout=600, query_id="heavy-job").read_all()
            except ArchipelError as exc:
                outcome["error"] = exc

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        wait_for(lambda: admin.info()["spark_active_jobs"] >= 1, "the heavy job runs", timeout=60)
        with island.client(light) as cl:
            small = cl.sql(SMALL, engine="spark", timeout=300).read_all()
        assert worker.is_alive(), "the heavy job ended before the small query: the test showed nothing"
        truth = admin.sql(SMALL, engine="arrow").read_all()
        assert small.to_pydict() == truth.to_pydict()
        with island.client(light) as cl:
            assert cl.cancel("heavy-job") is False  # not light's query to cancel
        assert h.cancel("heavy-job") is True
        worker.join(60)
        assert not worker.is_alive() and isinstance(outcome.get("error"), Cancelled), outcome
        wait_for(lambda: _no_spark_jobs(admin), "the cancelled query's Spark jobs stopped", timeout=30)


def test_a_query_past_its_time_limit_stops_its_spark_jobs(island):
    heavy = archipelago().token("heavy")
    with island.client() as admin, island.client(heavy) as h:
        with pytest.raises(DeadlineExceeded, match="(?i)deadline|timeout"):
            h.sql(HEAVY, engine="spark", timeout=3).read_all()
        wait_for(lambda: _no_spark_jobs(admin), "the timed-out query's Spark jobs stopped", timeout=30)
        # the island's Spark is free again for a small query
        assert admin.sql(SMALL, engine="spark", timeout=120).read_all().num_rows > 0
