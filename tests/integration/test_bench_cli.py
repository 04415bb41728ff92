"""``archipel bench`` against a real archipelago of two islands: the report names the machine
and the archipelago, times every case (a routed cone and a replication because the dataset is
held by the other island), and leaves nothing behind."""

from __future__ import annotations

import json

import pytest

from islands import cli, peered_pair, wait_for

pytestmark = pytest.mark.integration


def test_bench_reports_every_case_and_cleans_up(tmp_path):
    b1, b2 = peered_pair(tmp_path, ("b1", "b2"), "bench.source")
    try:
        out = tmp_path / "report.json"
        cli("bench", "--island", b2.address, "--dataset", "bench.source", "--cones", "5", "--radius", "1",
            "--format", "json", "-o", str(out), "--quiet")
        report = json.loads(out.read_text())
        assert report["machine"]["cpus"] >= 1 and report["machine"]["pyarrow"]
        assert report["archipelago"]["island"] == "b2" and report["archipelago"]["islands"] == 2
        results = {r["case"]: r for r in report["results"]}
        for case in ("cone median", "scan rate", "routed cone median", "replication", "subscription latency"):
            assert case in results, (case, report)
            assert results[case]["value"] > 0, results[case]
        assert "17161 rows" in results["scan rate"]["detail"]
        assert set(results) | set(report["skipped"]) >= {"join"}
        md = cli("bench", "--island", b2.address, "--dataset", "bench.source", "--cones", "2", "--quiet")
        assert "| cone median |" in md.stdout and "archipelago via b2" in md.stdout
        with b2.client() as c:
            assert c.rules() == []  # the run's rule is deleted
            wait_for(lambda: not any(d.name.startswith("bench.sub_") for d in c.datasets()),
                     "the run's published table is gone everywhere")
        bad = cli("bench", "--island", b2.address, "--dataset", "bench.nope", check=False)
        assert bad.returncode != 0 and "bench.nope" in bad.stderr
        bad = cli("bench", "--island", b2.address, "--radius", "-1", check=False)
        assert bad.returncode != 0 and "--radius" in bad.stderr
    finally:
        for isl in (b2, b1):
            assert isl.stop() == 0
