"""The island's Prometheus metrics (``prometheus-client``), served at ``/metrics`` on its HTTP
port: counters and latency histograms of every RPC and query, fed by the rpc edge, and the
island's state read at each scrape (catalog, peers, replication, cache, subscriptions, Spark,
workers). One registry per island, so nothing is shared between islands of one process."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

if TYPE_CHECKING:
    from island.rpc import Call

__all__ = ["IslandMetrics", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_SUBSCRIPTION_SERIES = 200  # at most this many subscriptions get series of their own


class IslandMetrics:
    def __init__(self, island: str) -> None:
        self.island = island
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.rpcs = Counter("archipel_rpcs", "RPCs answered, by method and outcome (ok, refused, failed)",
                            ["method", "outcome"], registry=r)
        self.rpc_seconds = Histogram("archipel_rpc_seconds", "RPC latency to the last message, by method", ["method"],
                                     buckets=_LATENCY, registry=r)
        self.queries = Counter("archipel_queries", "Queries, by engine (arrow, spark, remote), route and outcome",
                               ["engine", "route", "outcome"], registry=r)
        self.query_seconds = Histogram("archipel_query_seconds", "Query latency to the last batch, by engine and route",
                                       ["engine", "route"], buckets=_LATENCY, registry=r)
        self.rows = Counter("archipel_query_rows", "Rows streamed to query callers", registry=r)
        self.bytes = Counter("archipel_query_bytes", "Arrow bytes streamed to query callers", registry=r)
        self.http = Counter("archipel_http_requests", "HTTP requests of the web face, by route family and status",
                            ["family", "status"], registry=r)
        self._state: list = []

    def watch(self, **parts: Any) -> None:
        """The island's parts whose state is read at each scrape (store, archipelago,
        replication, subscriptions, spark, queries, cache_quota)."""
        collector = _StateCollector(self.island, parts)
        self.registry.register(collector)

    def observe(self, call: Call, outcome: str, seconds: float) -> None:
        self.rpcs.labels(call.method, outcome).inc()
        self.rpc_seconds.labels(call.method).observe(seconds)
        if call.method == "Query":
            engine, route = call.labels.get("engine", "none"), call.labels.get("route", "auto")
            self.queries.labels(engine, route, outcome).inc()
            self.query_seconds.labels(engine, route).observe(seconds)
            self.rows.inc(call.rows)
            self.bytes.inc(call.bytes)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector:
    """Gauges of the island's state, read when Prometheus scrapes."""

    def __init__(self, island: str, parts: dict[str, Any]) -> None:
        self.island = island
        self.parts = parts

    def describe(self):
        return []

    def collect(self):
        p = self.parts
        store = p.get("store")
        if store is not None:
            own = GaugeMetricFamily("archipel_catalog_sequence", "The last sequence of this island's own change "
                                    "log", labels=["island"])
            own.add_metric([self.island], store.sequence())
            yield own
            yield _gauge("archipel_catalog_position", "Changes committed here (every origin)", store.position())
            g = GaugeMetricFamily("archipel_catalog_origin_sequence",
                                  "The last change of each origin applied here (sync lag: the origin's "
                                  "archipel_catalog_sequence minus this)", labels=["origin"])
            for origin, seq in store.cursors().items():
                g.add_metric([origin], seq)
            yield g
            yield _gauge("archipel_datasets", "Datasets in the metacatalog", len(store.dataset_names()))
        arch = p.get("archipelago")
        if arch is not None:
            up = GaugeMetricFamily("archipel_peer_up", "1 when the link to a followed peer is connected",
                                   labels=["peer", "state"])
            seq = GaugeMetricFamily("archipel_peer_applied_sequence", "The peer's last change applied here",
                                    labels=["peer"])
            for s in arch.statuses():
                name = s.island or s.address
                up.add_metric([name, s.state], 1.0 if s.state == "connected" else 0.0)
                seq.add_metric([name], s.last_seq)
            yield up
            yield seq
        rep = p.get("replication")
        if rep is not None and store is not None:
            from metacatalog import transfers
            from replication import cache

            g = GaugeMetricFamily("archipel_transfers", "Partition transfers recorded here, by state",
                                  labels=["state"])
            summary = transfers.summary(store)
            for state in ("pending", "copying", "done", "failed"):
                g.add_metric([state], summary.counts.get(state, 0))
            yield g
            yield _gauge("archipel_transfer_bytes", "Bytes of the transfers recorded here (done or moving)",
                         summary.bytes_done)
            yield _gauge("archipel_transfer_errors", "Transfer errors reported by workers (all occurrences)",
                         summary.errors)
            u = cache.usage(store, p.get("cache_quota", 0))
            yield _gauge("archipel_cache_quota_bytes", "The replica cache's quota", u.quota)
            yield _gauge("archipel_cache_used_bytes", "Bytes of replicas held here", u.used)
            yield _gauge("archipel_cache_pinned_bytes", "Bytes of replicas pinned by rules", u.pinned_bytes)
            yield _gauge("archipel_cache_files", "Replica files held here", u.files)
            yield _gauge("archipel_workers_alive", "Celery replication workers running", len(rep.workers.pids()))
            yield _gauge("archipel_rules", "Replication rules of this island", len(rep.rules.rules()))
        subs = p.get("subscriptions")
        if subs is not None:
            found = subs.subscriptions()
            yield _gauge("archipel_subscriptions", "Subscriptions recorded here", len(found))
            lag = GaugeMetricFamily("archipel_subscription_lag_changes", "Matching changes after a subscription's "
                                    "cursor", labels=["subscription", "mode"])
            age = GaugeMetricFamily("archipel_subscription_lag_seconds", "Age of the oldest matching change after "
                                    "a subscription's cursor", labels=["subscription", "mode"])
            for sub in found[:_SUBSCRIPTION_SERIES]:
                n, seconds = subs.lag(sub)
                lag.add_metric([sub.name, sub.mode], n)
                age.add_metric([sub.name, sub.mode], seconds)
            yield lag
            yield age
        spark = p.get("spark")
        if spark is not None:
            yield _gauge("archipel_spark_ready", "1 when the island's Spark session is ready",
                         1.0 if spark.ready.is_set() else 0.0)
            yield _gauge("archipel_spark_active_jobs", "Spark jobs running now", spark.active_jobs())
        queries = p.get("queries")
        if queries is not None:
            yield _gauge("archipel_queries_running", "Queries running now", len(queries.running()))
        yield _gauge("archipel_scrape_timestamp_seconds", "When this scrape was answered", time.time())


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)
