"""Running one island: the gRPC server in this process, Spark warming up in the background,
and a clean stop on SIGINT/SIGTERM that stops everything the island started."""

from __future__ import annotations

import logging
import shutil
import signal
import threading
from concurrent import futures
from pathlib import Path

import grpc

from archipel.arrowwire import MAX_MESSAGE_BYTES, PUBLISH_CHUNK_FIELD, chunk_or, passthrough
from archipel.errors import FailedPrecondition
from archipel.v1 import island_pb2 as pb
from archipel.v1 import peer_pb2 as ppb
from federation.peers import Archipelago
from federation.pki import load_credentials
from federation.subscriptions import SubscriptionBook
from island.config import IslandConfig, load_config
from island.engines import SparkEngine
from island.ingest import Ingester
from island.audit import AuditLog
from island.metrics import IslandMetrics
from island.peer_servicer import PeerServicer
from island.security.gate import Gate
from island.replication import Replication
from island.servicer import IslandServicer
from island.subscribe import ReplicateKeeper, RowSource
from metacatalog.store import CatalogStore

__all__ = ["Island", "serve"]

logger = logging.getLogger(__name__)

GRPC_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
    # Peers ping every 10 s (federation.peers.CHANNEL_OPTIONS); the island pings its callers
    # every 30 s, so streams of a caller whose link died end instead of holding a thread.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
]


_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def service_handlers(module, name: str, servicer) -> grpc.GenericRpcHandler:
    """A service's handlers, built from its descriptor like the generated ``add_*_to_server``,
    except that responses may be pre-encoded bytes (Arrow chunks built without protobuf copies)
    and Publish chunks are read without copies."""
    service = module.DESCRIPTOR.services_by_name[name]
    handlers = {}
    for method in service.methods:
        request = getattr(module, method.input_type.name)
        response = getattr(module, method.output_type.name)
        parse = request.FromString
        if method.name == "Publish":
            parse = chunk_or(request.FromString, PUBLISH_CHUNK_FIELD)
        factory = _FACTORIES[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = factory(getattr(servicer, method.name), request_deserializer=parse,
                                        response_serializer=passthrough(response.SerializeToString))
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


class Island:
    """One island's running parts."""

    def __init__(self, cfg: IslandConfig) -> None:
        self.cfg = cfg
        cfg.data_path.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(cfg.data_path / ".staging", ignore_errors=True)  # leftovers of a crash
        self.spool = cfg.root / "spool"
        shutil.rmtree(self.spool, ignore_errors=True)
        sec = cfg.security
        self.creds = load_credentials(cfg.root, cfg.island.name, sec.ca, sec.cert, sec.key)
        self.store = CatalogStore(cfg.catalog_path, cfg.island.name, signer=self.creds.sign,
                                  max_change_bytes=cfg.limits.max_change_bytes)
        self.store.keep_island_cert(cfg.island.name, self.creds.cert_der)
        self.store.sign_own_changes()
        self.gate = Gate(self.creds, self.store, sec.anonymous, bool(sec.benchmark_plaintext_port))
        self.audit = AuditLog(cfg.root / "audit.jsonl", cfg.island.name, sec.audit)
        sessions_on = cfg.sessions.enabled and cfg.spark.start
        self.spark = SparkEngine(cfg.spark, self.spool, app_name=f"archipel-{cfg.island.name}", host=cfg.island.host,
                                 connect_port=cfg.sessions.connect_port if sessions_on else None)
        self.ingester = Ingester(self.store, cfg.data_path, partition_rows=cfg.ingest.partition_rows,
                                 max_order=cfg.ingest.max_order, allowed_roots=cfg.ingest.allowed_roots,
                                 max_columns=cfg.limits.max_columns)
        self.stopping = threading.Event()
        self.archipelago = Archipelago(self.store, self.creds, cfg.peer_address, cfg.federation.max_peers)
        self.replication = Replication(cfg, self.store, self.archipelago, self.gate)
        self.subscriptions = SubscriptionBook(self.store, cfg.island.name)
        self.rows = RowSource(self.store, cfg.island.name, cfg.data_path, cfg.replication.protocols,
                              self.archipelago.down)
        self.keeper = ReplicateKeeper(self.subscriptions, self.replication.rules, self.rows, cfg.limits.pinned_bytes)
        self.servicer = IslandServicer(cfg, self.store, self.spark, self.ingester, self.archipelago, self.replication,
                                       self.subscriptions, self.rows, self.gate, self.audit)
        self.sessions = None
        if sessions_on:
            from island.sessions.service import Sessions

            self.sessions = Sessions(cfg, self.store, self.spark, self.gate, self.archipelago, self.replication,
                                     self.audit)
        self.servicer.sessions = self.sessions
        self.metrics = IslandMetrics(cfg.island.name)
        self.servicer.metrics = self.metrics
        self.metrics.watch(store=self.store, archipelago=self.archipelago, replication=self.replication,
                           subscriptions=self.subscriptions, spark=self.spark, queries=self.servicer.queries,
                           cache_quota=cfg.replication.cache_bytes)
        self._mount_web()
        self.peer_servicer = PeerServicer(self.store, self.archipelago, self.stopping, self.gate, cfg.peer_address,
                                          self.servicer.shares, cfg.limits)
        self.server: grpc.Server | None = None

    def _mount_web(self) -> None:
        """The web face (page, HTTP API, TAP, HATS) on the HTTP port, calling this island's
        client port as each HTTP caller."""
        from island.web.app import WebFace
        from island.web.gateway import Gateway
        from island.web.hats import HatsView

        host, _, port = self.cfg.address.rpartition(":")
        if host in ("0.0.0.0", "::", "[::]", ""):
            host = "127.0.0.1"
        http = self.replication.http
        gateway = Gateway(f"{host}:{port}", str(self.cfg.security_path("ca")))
        hats = HatsView(self.store, self.replication.export, self.cfg.island.name, self.cfg.root / "cache" / "hats")
        http.face = WebFace(gateway, hats, self.cfg.root / "tap" / "jobs", http.authorize, self.metrics, self.gate)

    def start(self) -> None:
        # The Spark JVM is launched (a fork) before any gRPC server thread exists.
        if self.cfg.spark.start:
            self.spark.start()
        # Long-lived streams (subscriptions, peers' catalog streams) hold a thread each for as long
        # as they live: they have [limits] streams threads of their own (island.shares), so the
        # short calls always find [query] workers + 64.
        streams = self.cfg.limits.streams or 1024
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.cfg.query.workers + 64 + streams,
                                                             thread_name_prefix="rpc"),
                                  options=GRPC_OPTIONS)
        handlers = [service_handlers(pb, "Island", self.servicer), service_handlers(ppb, "Peer", self.peer_servicer)]
        if self.sessions is not None:  # Spark Connect's own service, each call checked (island.sessions.proxy)
            handlers.append(self.sessions.proxy.handler())
        self.server.add_generic_rpc_handlers(tuple(handlers))
        pair = [(self.creds.key_pem, self.creds.cert_pem)]
        # Clients: TLS, identified by their token. Islands: mutual TLS on the peer port.
        ports = [(self.cfg.address, grpc.ssl_server_credentials(pair, self.creds.ca_pem, require_client_auth=False)),
                 (self.cfg.peer_address, grpc.ssl_server_credentials(pair, self.creds.ca_pem,
                                                                     require_client_auth=True))]
        if self.cfg.security.benchmark_plaintext_port:
            ports.append((f"127.0.0.1:{self.cfg.security.benchmark_plaintext_port}", None))
            logger.warning("benchmark plaintext port 127.0.0.1:%d: no TLS, no tokens",
                           self.cfg.security.benchmark_plaintext_port)
        for address, creds in ports:
            try:
                port = (self.server.add_secure_port(address, creds) if creds is not None
                        else self.server.add_insecure_port(address))
            except RuntimeError as exc:
                self.spark.stop()
                raise FailedPrecondition(f"cannot listen on {address}: {exc}") from None
            if port == 0:
                self.spark.stop()
                raise FailedPrecondition(f"cannot listen on {address}: address in use?")
        try:
            self.replication.start()
        except Exception:
            self.spark.stop()
            raise
        dropped = self.subscriptions.drop_transient()  # their streams ended with the last run
        if dropped:
            logger.info("%d subscriptions of streams from before the restart dropped", dropped)
        self.keeper.start()
        if self.sessions is not None:
            self.sessions.start()
        self.server.start()
        self.archipelago.start(self.cfg.federation.peers)
        threading.Thread(target=self._warm_up, name="warm-up", daemon=True).start()
        logger.info("island %s serving on %s (peers on %s)", self.cfg.island.name, self.cfg.address,
                    self.cfg.peer_address)

    def _warm_up(self) -> None:
        """Imports and first-use costs of the Arrow path and the planner, paid before a query."""
        try:
            from federation.planner import plan_query
            from metacatalog.sky import Cone, cone_pixels

            self.servicer.arrow.warm_up()
            cone_pixels(Cone(0, 0, 1), 3)
            try:
                plan_query("SELECT 1 FROM warm.up WHERE cone(ra, dec, 0, 0, 1)", self.store.dataset)
            except Exception:  # the dataset does not exist; parsing and rewriting were exercised
                pass
        except Exception:
            logger.warning("warm-up failed", exc_info=True)

    def stop(self) -> None:
        self.stopping.set()
        self.archipelago.stop()
        for qid in self.servicer.queries.running():
            self.servicer.queries.cancel(qid, "cancelled: the island is stopping")
        if self.server is not None:
            self.server.stop(grace=3).wait(5)
        self.keeper.stop()
        if self.sessions is not None:
            self.sessions.stop()
        self.replication.stop()
        self.spark.stop()
        self.store.close()
        shutil.rmtree(self.spool, ignore_errors=True)
        logger.info("island %s stopped", self.cfg.island.name)


def serve(island_dir: str | Path) -> None:
    """Runs the island in the foreground until SIGINT or SIGTERM."""
    cfg = load_config(island_dir)
    island = Island(cfg)
    stop = threading.Event()

    def on_signal(signum, _frame):
        logger.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    island.start()
    print(f"island {cfg.island.name} serving on {cfg.address} with TLS, peers on {cfg.peer_address} "
          f"(data in {cfg.data_path})", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        island.stop()
