"""Monitoring, tried with a real Prometheus server (Debian's ``prometheus``) scraping three
islands over HTTPS with a token that holds the ``metrics`` right: after a known workload its
query API returns the expected counters and gauges. ``/metrics`` refuses everyone else."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from islands import SHARED_HATS, IslandProcess, archipelago, free_port, https_open, wait_for

pytestmark = pytest.mark.integration

NO_SPARK = "[spark]\nstart = false\n"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"


def _prometheus_config(targets: list[str], token_file: str, ca: str) -> str:
    quoted = ", ".join(f'"{t}"' for t in targets)
    return f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: archipel
    scheme: https
    metrics_path: /metrics
    tls_config:
      ca_file: {ca}
    authorization:
      type: Bearer
      credentials_file: {token_file}
    static_configs:
      - targets: [{quoted}]
"""


def _query(port: int, promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]


def _value(port: int, promql: str) -> float | None:
    found = _query(port, promql)
    return float(found[0]["value"][1]) if found else None


def test_prometheus_scrapes_three_islands_after_a_known_workload(tmp_path):
    prometheus = shutil.which("prometheus")
    assert prometheus, "Debian's prometheus is missing (./dev installs it)"
    m1 = IslandProcess(tmp_path / "m1", "m1", extra_config=NO_SPARK).start()
    peers = f'[federation]\npeers = ["{m1.address}"]\n'
    m2 = IslandProcess(tmp_path / "m2", "m2", extra_config=NO_SPARK + peers).start()
    m3 = IslandProcess(tmp_path / "m3", "m3", extra_config=NO_SPARK + peers).start()
    islands = (m1, m2, m3)
    proc = None
    try:
        arch = archipelago()
        watcher = arch.token("prometheus", rights=("metrics",))
        nobody = arch.token("nobody")
        # /metrics: the metrics right, an admin, or an island; nobody else
        for token, want in ((watcher, 200), (arch.admin_token, 200)):
            with https_open(f"{m1.http_url}/metrics", token) as resp:
                assert resp.status == want and b"archipel_rpcs_total" in resp.read()
        for token, want in ((nobody, 403), ("", 401), ("forged.token", 401)):
            try:
                https_open(f"{m1.http_url}/metrics", token)
                raise AssertionError(f"/metrics answered {token!r}")
            except urllib.error.HTTPError as exc:
                assert exc.code == want, (token, exc.code)
                assert b"metrics" in exc.read() or want == 401
        # the known workload
        with m1.client() as c:
            c.ingest(str(SHARED_HATS / "small_sky_source"), "mon.source")
        with m2.client() as c:
            wait_for(lambda: "mon.source" in {d.name for d in c.datasets()}, "the catalog reached m2")
            for _ in range(5):
                assert c.sql("SELECT count(*) AS n FROM mon.source", route="remote").read_all()["n"][0].as_py() == 17161
            for _ in range(2):
                with pytest.raises(Exception):
                    c.sql("SELECT * FROM mon.nope").read_all()
        with m3.client() as c:
            wait_for(lambda: "mon.source" in {d.name for d in c.datasets()}, "the catalog reached m3")
            rule = c.replicate("mon.source", to="m3").wait()
            assert rule.state == "ok"
            subscription = c.subscribe("mon.*", name="watch")
            subscription.close()
        # a real Prometheus scrapes the three islands
        token_file = tmp_path / "prometheus.token"
        token_file.write_text(watcher)
        config = tmp_path / "prometheus.yml"
        targets = [f"127.0.0.1:{i.http_port}" for i in islands]
        config.write_text(_prometheus_config(targets, str(token_file), str(arch.ca_pem)))
        port = free_port()
        log = open(tmp_path / "prometheus.log", "wb")
        proc = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if _value(port, "count(up == 1)") == 3:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            targets_state = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).read()
            raise AssertionError(f"Prometheus did not scrape the three islands: {targets_state[:2000]!r}")
        inst = {i.name: f"127.0.0.1:{i.http_port}" for i in islands}
        # m2 forwarded five queries (engine remote) and failed two; m1 ran the five on its Arrow path
        assert _value(port, f'archipel_queries_total{{instance="{inst["m2"]}",engine="remote",outcome="ok"}}') == 5
        assert _value(port, f'sum(archipel_queries_total{{instance="{inst["m2"]}",outcome="failed"}})') == 2
        assert _value(port, f'archipel_queries_total{{instance="{inst["m1"]}",engine="arrow",route="remote",'
                            f'outcome="ok"}}') == 5
        assert _value(port, f'archipel_query_seconds_count{{instance="{inst["m1"]}",engine="arrow"}}') == 5
        assert _value(port, f'archipel_query_rows_total{{instance="{inst["m1"]}"}}') == 5
        # catalog sync: m2 and m3 applied everything m1 wrote (lag 0)
        m1_seq = _value(port, f'archipel_catalog_sequence{{instance="{inst["m1"]}"}}')
        assert m1_seq and m1_seq > 0
        for name in ("m2", "m3"):
            assert _value(port, f'archipel_catalog_origin_sequence{{instance="{inst[name]}",origin="m1"}}') == m1_seq
            assert _value(port, f'archipel_peer_up{{instance="{inst[name]}",peer="m1"}}') == 1
        # replication at m3: every partition done, the bytes in its cache, a rule, workers alive
        with m1.client() as c:
            parts = c.describe("mon.source").partitions
        assert _value(port, f'archipel_transfers{{instance="{inst["m3"]}",state="done"}}') == len(parts)
        assert _value(port, f'archipel_cache_used_bytes{{instance="{inst["m3"]}"}}') == sum(p.num_bytes for p in parts)
        assert _value(port, f'archipel_rules{{instance="{inst["m3"]}"}}') == 1
        assert (_value(port, f'archipel_workers_alive{{instance="{inst["m3"]}"}}') or 0) >= 1
        assert _value(port, f'archipel_subscriptions{{instance="{inst["m3"]}"}}') == 1
        assert _value(port, f'archipel_subscription_lag_changes{{instance="{inst["m3"]}",subscription="watch"}}') == 0
        assert _value(port, f'archipel_spark_ready{{instance="{inst["m1"]}"}}') == 0  # [spark] start = false
        assert (_value(port, f'sum(archipel_http_requests_total{{instance="{inst["m1"]}",family="metrics"}})')
                or 0) >= 3
        # deploy/monitoring: the dashboard's every expression runs on this Prometheus, the sync
        # lag it draws is 0, and the shipped configuration and alert rules pass promtool
        dashboard = json.loads((DEPLOY / "grafana-archipel.json").read_text())
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        assert len(exprs) > 15
        for expr in exprs:
            _query(port, expr.replace("$island", ".*"))
        lag = [t["expr"] for p in dashboard["panels"] if "sync lag" in p["title"] for t in p["targets"]][0]
        assert {float(r["value"][1]) for r in _query(port, lag)} == {0.0}
        shipped = (DEPLOY / "prometheus.yml").read_text()
        shipped = shipped.replace("/etc/prometheus/archipel-ca.pem", str(arch.ca_pem)).replace(
            "/etc/prometheus/archipel.token", str(token_file))
        (tmp_path / "shipped.yml").write_text(shipped)
        shutil.copy(DEPLOY / "archipel-alerts.yml", tmp_path / "archipel-alerts.yml")
        for args in (["check", "config", str(tmp_path / "shipped.yml")],
                     ["check", "rules", str(DEPLOY / "archipel-alerts.yml")]):
            out = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stdout + out.stderr
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(20)
        for isl in reversed(islands):
            assert isl.stop() == 0, isl.log.read_text()[-3000:]
