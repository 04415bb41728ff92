"""The client-facing gRPC servicer: translates messages to calls on the island's parts and
ArchipelErrors to status codes. The catalog and peer methods are here; the rest come from one
mixin per area (queries, publishing, replication, subscriptions, identity, sessions)."""

from __future__ import annotations

import logging
import threading

from archipel import __version__
from archipel.arrowwire import MAX_MESSAGE_BYTES
from archipel.errors import InvalidArgument, ResourceExhausted
from archipel.names import check_dataset_name
from archipel.v1 import island_pb2 as pb
from federation.peers import Archipelago
from federation.subscriptions import SubscriptionBook
from island.audit import AuditLog
from island.config import IslandConfig
from island.convert import dataset_to_pb
from island.direct import FooterCache
from island.engines import ArrowEngine, SparkEngine
from island.identity_servicer import IdentityRpcs
from island.ingest import Ingester
from island.publish_rpcs import PublishRpcs
from island.queries import QueryRegistry
from island.query_rpcs import QueryRpcs
from island.replication import Replication
from island.replication_rpcs import ReplicationRpcs
from island.rpc import Call, rpc
from island.security.gate import Gate
from island.sessions.rpcs import SessionRpcs
from island.shares import FairShares
from island.subscribe import RowSource
from island.subscription_rpcs import SubscriptionRpcs
from metacatalog import access
from metacatalog.store import CatalogStore

__all__ = ["IslandServicer", "PROTOCOL_VERSION"]

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1


def _peer_state(s) -> pb.PeerState:
    return pb.PeerState(island=s.island, address=s.address, state=s.state, last_seq=s.last_seq, error=s.error)


_LISTING_BYTES = MAX_MESSAGE_BYTES - (1 << 20)  # a listing is one message: under gRPC's limit


class IslandServicer(QueryRpcs, PublishRpcs, ReplicationRpcs, SubscriptionRpcs, IdentityRpcs, SessionRpcs):
    def __init__(self, cfg: IslandConfig, store: CatalogStore, spark: SparkEngine, ingester: Ingester,
                 archipelago: Archipelago, replication: Replication | None = None,
                 subscriptions: SubscriptionBook | None = None, rows: RowSource | None = None,
                 gate: Gate | None = None, audit: AuditLog | None = None) -> None:
        self.cfg = cfg
        self.gate = gate
        self.audit = audit
        self.shares = FairShares()
        self.subscriptions = subscriptions or SubscriptionBook(store, cfg.island.name)
        self.rows = rows or RowSource(store, cfg.island.name, cfg.data_path, cfg.replication.protocols,
                                      archipelago.down)
        self._streams: dict[str, int] = {}  # subscription name -> live streams
        self._deleted: set[str] = set()
        self._streams_lock = threading.Lock()
        self.replication = replication
        self.archipelago = archipelago
        self.store = store
        self.spark = spark
        self.arrow = ArrowEngine(memory_bytes=cfg.query.memory_bytes)
        self._footers = FooterCache()  # Parquet footers of files read directly
        self.ingester = ingester
        self.queries = QueryRegistry()
        self._ingest_lock = threading.Lock()
        self.metrics = None  # island.metrics.IslandMetrics, set by the island
        self.sessions = None  # island.sessions.service.Sessions, set by the island when sessions are on

    @rpc
    def GetInfo(self, request, context, call: Call):
        return pb.IslandInfo(
            name=self.cfg.island.name, version=__version__, protocol_version=PROTOCOL_VERSION,
            grpc_address=self.cfg.address, spark_ready=self.spark.ready.is_set(),
            spark_master=self.cfg.spark.master, spark_error=self.spark.error,
            datasets=len(self.store.dataset_names()), catalog_sequence=self.store.sequence(),
            running_queries=len(self.queries.running()), spark_active_jobs=self.spark.active_jobs(),
            http_url=self.replication.http.base_url if self.replication else "",
            data_url=self.replication.data.base_url if self.replication else "",
            root_url=self.replication.xrootd.base_url if self.replication and self.replication.xrootd else "",
            workers=[f"{n}={p}" for n, p in self.replication.workers.pids().items()] if self.replication else [],
            peer_address=self.cfg.peer_address, anonymous=self.cfg.security.anonymous,
            spark_storage_bytes=self.spark.storage_bytes(),
            sessions=len(self.sessions.book.sessions()) if self.sessions is not None else 0,
        )

    @rpc
    def ListDatasets(self, request, context, call: Call):
        pattern = request.pattern
        if len(pattern) > 256:
            raise InvalidArgument("pattern is longer than 256 characters")
        counts = self.store.partition_counts()
        urls = self.store.islands()
        out = pb.ListDatasetsResponse()
        size = 0
        for ds in self.store.datasets(pattern, with_partitions=request.with_partitions):
            if not access.may_read(call.caller, ds.access):
                continue  # a dataset the caller may not read is not listed
            replicas = self.store.replica_islands(ds.name) if request.with_partitions else None
            msg = dataset_to_pb(ds, self.cfg.island.name, counts.get(ds.name, 0), replicas,
                                urls if request.with_partitions else None)
            size += msg.ByteSize()
            if size > _LISTING_BYTES:
                raise ResourceExhausted(f"the listing is larger than one message ({_LISTING_BYTES >> 20} MiB) at "
                                        f"{ds.name!r}: narrow the pattern" + (" or leave out the partitions"
                                                                              if request.with_partitions else ""))
            out.datasets.append(msg)
        return out

    @rpc
    def DescribeDataset(self, request, context, call: Call):
        name = check_dataset_name(request.name)
        call.datasets.append(name)
        ds = self._readable(call.caller, name)
        return dataset_to_pb(ds, self.cfg.island.name, replicas=self.store.replica_islands(name),
                             data_urls=self.store.islands())

    @rpc
    def ListPeers(self, request, context, call: Call):
        access.check_admin(call.caller, "listing peers")
        return pb.ListPeersResponse(peers=[_peer_state(s) for s in self.archipelago.statuses()])

    @rpc
    def AddPeer(self, request, context, call: Call):
        access.check_admin(call.caller, "adding a peer")
        return _peer_state(self.archipelago.add(request.address))

    @rpc
    def RemovePeer(self, request, context, call: Call):
        access.check_admin(call.caller, "removing a peer")
        if not request.peer or len(request.peer) > 300:
            raise InvalidArgument("name the peer to remove: HOST:PORT or island name")
        return _peer_state(self.archipelago.remove(request.peer))
