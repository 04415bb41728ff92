"""The synchronous client: ``archipel.connect(addr)`` and the reader a query returns."""

from __future__ import annotations

import uuid
from typing import Any

import grpc

from archipel._rpc import (PUBLISH_CALL, PUBLISH_METHOD, QUERY_CALL, QUERY_METHOD, Closeable, access_fields,
                           as_table, publish_messages, translated)
from archipel.errors import ArchipelError, InvalidArgument
from archipel.query import QueryResult
from archipel.sessions_client import SparkCalls
from archipel.names import check_dataset_name
from archipel.replication import ReplicationJob, replicate_request
from archipel.subscription import Subscription, SubscriptionInfo, subscription_spec
from archipel.types import (
    CacheInfo,
    DatasetInfo,
    QueryPlan,
    RuleInfo,
    TokenInfo,
    default_address,
    parse_duration,
    query_request,
)
from archipel.v1 import island_pb2 as pb
from archipel.v1 import island_pb2_grpc as pb_grpc

__all__ = ["connect", "Client", "QueryResult", "DatasetInfo", "PartitionInfo", "default_address", "CHANNEL_OPTIONS"]

from archipel.types import PartitionInfo  # noqa: E402  (re-exported)

from archipel.channel import CHANNEL_OPTIONS, open_channel, resolve_ca, resolve_token  # noqa: E402


class Client(SparkCalls, Closeable):
    """A connection to one island, and through it to the archipelago."""

    def __init__(self, address: str | None = None, timeout: float | None = 30.0, *, token: str | None = None,
                 ca: str | None = None, plaintext: bool = False) -> None:
        """``plaintext``: benchmarks only, for an island's ``[security] benchmark_plaintext_port``."""
        self.address = default_address(address)
        self.timeout = timeout
        self._channel = (grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS) if plaintext
                         else open_channel(self.address, token, ca))
        self._token, self._ca = token, ca  # for Spark sessions' own channels
        self._stub = pb_grpc.IslandStub(self._channel)
        self._query = self._channel.unary_stream(QUERY_METHOD, **QUERY_CALL)
        self._publish = self._channel.stream_unary(PUBLISH_METHOD, **PUBLISH_CALL)
        self._names: list[str] | None = None
        self._opened()

    # -- plumbing ---------------------------------------------------------------------------
    def _unary(self, method: str, request: Any, timeout: float | None = None) -> Any:
        with translated(self.address):
            return getattr(self._stub, method)(request, timeout=timeout if timeout is not None else self.timeout)

    def close(self) -> None:
        if self._mark_closed():
            self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<archipel.Client {self.address}>"

    # -- catalog ----------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        m = self._unary("GetInfo", pb.GetInfoRequest())
        return {f.name: (list(getattr(m, f.name)) if f.is_repeated else getattr(m, f.name))
                for f in m.DESCRIPTOR.fields}

    def datasets(self, pattern: str = "") -> list[DatasetInfo]:
        """Every dataset of the archipelago (a glob ``pattern`` narrows the list)."""
        resp = self._unary("ListDatasets", pb.ListDatasetsRequest(pattern=pattern))
        out = [DatasetInfo.from_pb(d) for d in resp.datasets]
        if not pattern:
            self._names = [d.name for d in out]
        return out

    def describe(self, name: str) -> DatasetInfo:
        """Schema, partitions and sky coverage of one dataset, without reading its data."""
        check_dataset_name(name)
        return DatasetInfo.from_pb(self._unary("DescribeDataset", pb.DescribeDatasetRequest(name=name)))

    def __getitem__(self, name: str) -> DatasetInfo:
        return self.describe(name)

    def _ipython_key_completions_(self) -> list[str]:
        """Dataset names for IPython's completion of ``client["gaia<TAB>``."""
        if self._names is None:
            try:
                self.datasets()
            except ArchipelError:
                return []
        return list(self._names or [])

    # -- peers ------------------------------------------------------------------------------
    def peers(self) -> list[dict[str, Any]]:
        """The islands this island follows: island, address, state (connected, lagging, down,
        connecting) and the last sequence of their change log applied here."""
        resp = self._unary("ListPeers", pb.ListPeersRequest())
        return [{"island": p.island, "address": p.address, "state": p.state, "last_seq": p.last_seq,
                 "error": p.error} for p in resp.peers]

    def remove_peer(self, peer: str) -> dict[str, Any]:
        """Stops following a peer (HOST:PORT or island name); introductions do not bring it back
        until it is added again. Its changes may still arrive relayed by other peers."""
        p = self._unary("RemovePeer", pb.RemovePeerRequest(peer=peer))
        return {"island": p.island, "address": p.address, "state": p.state, "last_seq": p.last_seq, "error": p.error}

    def add_peer(self, address: str) -> dict[str, Any]:
        """Joins the island at HOST:PORT (and through it, the islands it knows)."""
        p = self._unary("AddPeer", pb.AddPeerRequest(address=address))
        return {"island": p.island, "address": p.address, "state": p.state, "last_seq": p.last_seq, "error": p.error}

    # -- queries ----------------------------------------------------------------------------
    def sql(self, query: str, route: str = "auto", timeout: float | None = None, *, engine: str = "auto",
            max_rows: int = 0, max_bytes: int = 0, compression: str = "", query_id: str = "",
            direct: bool = True, local_reads: bool = True) -> QueryResult:
        """Runs read-only Spark SQL over catalog datasets; returns a streaming reader.

        ``route``: auto, local, remote or replicate; ``engine``: auto, arrow or spark;
        ``compression``: "", "lz4" or "zstd" (Arrow IPC body compression on the wire).
        ``direct``: a plain read (columns, cones, a limit over one dataset) may be answered
        with the partition files, which this client then fetches from the islands' data ports
        and decodes itself (``QueryResult.path == "direct"``); False always streams.
        ``local_reads``: on the host of the island holding the files, a direct read takes their
        descriptors from the island and reads the page cache (``QueryResult.local_files``);
        False always fetches them over the network.
        """
        if not isinstance(direct, bool):
            raise InvalidArgument("direct must be True or False")
        if not isinstance(local_reads, bool):
            raise InvalidArgument("local_reads must be True or False")
        qid = query_id or uuid.uuid4().hex
        request = query_request(query, route, engine, max_rows, max_bytes, qid, compression)
        request.direct = direct
        call = self._query(request, timeout=timeout)
        def restream() -> QueryResult:  # the same query through the island's stream
            return self.sql(query, route, timeout, engine=engine, max_rows=max_rows, max_bytes=max_bytes,
                            compression=compression, query_id=uuid.uuid4().hex, direct=False)

        return QueryResult(call, self.address, token=resolve_token(self._token), ca_pem=resolve_ca(self._ca),
                           timeout=timeout if timeout is not None else self.timeout,
                           restream=restream if direct else None, local_reads=local_reads)

    def explain(self, query: str, route: str = "auto", *, engine: str = "auto") -> QueryPlan:
        request = query_request(query, route, engine, 0, 0, "", "")
        return QueryPlan.from_pb(self._unary("Explain", request))

    def cancel(self, query_id: str) -> bool:
        return self._unary("Cancel", pb.CancelRequest(query_id=query_id)).cancelled

    # -- writes -----------------------------------------------------------------------------
    def publish(self, name: str, table: Any, ra: str | None = None, dec: str | None = None,
                timeout: float | None = None, mode: str = "create", *, readers: str | list[str] | None = None,
                public_after: str | None = None) -> DatasetInfo:
        """Writes a new data product to the island: a HATS catalog when it has sky columns
        (``ra``/``dec``, or recognised names), else a plain table. ``mode="append"`` adds the
        rows to an existing dataset at its origin island instead, as new partition files.
        ``readers`` ("public" by default; "user:NAME", "group:NAME", comma-separated or a list)
        and ``public_after`` (YYYY-MM-DD, the end of a proprietary period) say who may read it;
        the caller owns it."""
        check_dataset_name(name)
        if mode not in ("create", "append"):
            raise InvalidArgument(f"mode must be 'create' or 'append', not {mode!r}")
        table = as_table(table)
        with translated(self.address):
            resp = self._publish(publish_messages(name, table, ra or "", dec or "", mode, readers, public_after),
                                 timeout=timeout)
        self._names = None
        return DatasetInfo.from_pb(resp.dataset)

    def append(self, name: str, table: Any, timeout: float | None = None) -> DatasetInfo:
        """Adds rows to a dataset at its origin island (its owner or an admin)."""
        return self.publish(name, table, timeout=timeout, mode="append")

    def delete(self, name: str) -> bool:
        """Removes a dataset at its origin island (this island must be it); every island of
        the archipelago drops it through catalog sync. Returns whether its files were removed
        too (datasets registered in place keep theirs)."""
        check_dataset_name(name)
        resp = self._unary("DeleteDataset", pb.DeleteDatasetRequest(name=name))
        self._names = None
        return resp.files_removed

    def ingest(self, path: str, dataset: str, ra: str | None = None, dec: str | None = None,
               timeout: float | None = None, *, readers: str | list[str] | None = None,
               public_after: str | None = None) -> list[DatasetInfo]:
        """Registers a path on the island's disk (HATS as it is; Parquet partitioned into HATS).
        An admin's call; ``readers`` and ``public_after`` as for ``publish``."""
        return self.ingest_many([(path, dataset, ra, dec)], timeout=timeout, readers=readers,
                                public_after=public_after)

    def ingest_many(self, items: list[tuple[str, str, str | None, str | None]],
                    timeout: float | None = None, *, readers: str | list[str] | None = None,
                    public_after: str | None = None) -> list[DatasetInfo]:
        """Several ingests in one transaction: all datasets are registered, or none."""
        given, names = access_fields(readers, public_after)
        request = pb.IngestRequest(items=[pb.IngestItem(path=str(p), dataset=d, ra_column=r or "", dec_column=c or "",
                                                        readers=names, readers_given=given,
                                                        public_after=public_after or "")
                                          for p, d, r, c in items])
        resp = self._unary("Ingest", request, timeout=timeout if timeout is not None else 3600)
        self._names = None
        return [DatasetInfo.from_pb(d) for d in resp.datasets]


    # -- access -----------------------------------------------------------------------------
    def grant(self, dataset: str, reader: str) -> DatasetInfo:
        """Lets ``reader`` ("public", "user:NAME", "group:NAME") read ``dataset`` (its owner or
        an admin; the change is made at the dataset's origin and reaches every island)."""
        return self._set_access(dataset, reader, True)

    def revoke(self, dataset: str, reader: str) -> DatasetInfo:
        """Removes ``reader`` from ``dataset``'s readers."""
        return self._set_access(dataset, reader, False)

    def set_public_after(self, dataset: str, day: str | None) -> DatasetInfo:
        """Sets (YYYY-MM-DD) or clears (None) the day ``dataset`` becomes public."""
        return self._set_access(dataset, "", True, day or "none")

    def _set_access(self, dataset: str, reader: str, grant: bool, public_after: str = "") -> DatasetInfo:
        check_dataset_name(dataset)
        req = pb.SetAccessRequest(dataset=dataset, reader=reader, grant=grant, public_after=public_after)
        return DatasetInfo.from_pb(self._unary("SetAccess", req))

    def whoami(self) -> dict[str, Any]:
        """Who the island takes this client for: user, groups, rights, admin, token id."""
        m = self._unary("WhoAmI", pb.WhoAmIRequest())
        return {"user": m.user, "groups": list(m.groups), "rights": list(m.rights), "admin": m.admin,
                "token_id": m.token_id, "anonymous": m.anonymous, "island": m.island}

    def create_token(self, user: str, *, groups: list[str] | tuple[str, ...] = (),
                     rights: list[str] | tuple[str, ...] = (), admin: bool = False,
                     expires: float | str | None = None) -> TokenInfo:
        """A new token (an admin's call); ``expires`` in seconds or like "12h", "30d"."""
        req = pb.CreateTokenRequest(user=user, groups=list(groups), rights=list(rights), admin=admin,
                                    expires_seconds=parse_duration(expires))
        return TokenInfo.from_pb(self._unary("CreateToken", req))

    def tokens(self) -> list[TokenInfo]:
        """Every token of the archipelago known to the island (never the tokens themselves)."""
        return [TokenInfo.from_pb(t) for t in self._unary("ListTokens", pb.ListTokensRequest()).tokens]

    def revoke_token(self, token_id: str) -> TokenInfo:
        """Revokes a token at every island of the archipelago (through catalog sync)."""
        return TokenInfo.from_pb(self._unary("RevokeToken", pb.RevokeTokenRequest(id=token_id)))

    def audit(self, user: str = "", since: float = 0.0, limit: int = 1000) -> list[dict[str, Any]]:
        """The island's audit entries (an admin sees everyone's, others their own)."""
        resp = self._unary("GetAudit", pb.GetAuditRequest(user=user, since=since, limit=limit))
        return [{"ts": e.ts, "user": e.user, "method": e.method, "datasets": list(e.datasets), "rows": e.rows,
                 "bytes": e.bytes, "outcome": e.outcome, "detail": e.detail, "island": e.island}
                for e in resp.entries]

    # -- replication ------------------------------------------------------------------------
    def replicate(self, dataset: str, to: str | None = None, *, cone: tuple[float, float, float] | None = None,
                  moc: Any = None, lifetime: float | None = None, protocol: str | None = None,
                  detach: bool = False, timeout: float | None = None) -> ReplicationJob:
        """Creates a rule keeping ``dataset`` (the partitions covering ``cone`` (ra, dec,
        radius in degrees) or ``moc`` (a mocpy MOC, or FITS/JSON/ASCII MOC bytes), else all) on
        island ``to`` (name or HOST:PORT; default: the island connected to), for ``lifetime``
        seconds or for good. Returns the job: iterate it for progress, or ``wait()``."""
        req = replicate_request(dataset, to, cone, moc, lifetime, protocol, detach)
        stream = self._stub.Replicate(req, timeout=timeout)
        return ReplicationJob(stream, self.address)

    def rules(self) -> list[RuleInfo]:
        """The replication rules of the island connected to, with their state."""
        return [RuleInfo.from_pb(r) for r in self._unary("ListRules", pb.ListRulesRequest()).rules]

    def delete_rule(self, rule_id: str) -> RuleInfo:
        """Drops a rule; the replicas it pinned become evictable cache."""
        return RuleInfo.from_pb(self._unary("DeleteRule", pb.DeleteRuleRequest(id=rule_id)))

    def cache(self) -> CacheInfo:
        """The island's replica cache: quota, used, pinned and cached bytes, per dataset."""
        m = self._unary("GetCache", pb.GetCacheRequest())
        return CacheInfo(island=m.island, quota_bytes=m.quota_bytes, used_bytes=m.used_bytes,
                         pinned_bytes=m.pinned_bytes, cached_bytes=m.cached_bytes, files=m.files,
                         pinned_files=m.pinned_files, datasets={d.dataset: (d.files, d.bytes) for d in m.datasets},
                         errors=tuple(m.errors))

    # -- subscriptions ----------------------------------------------------------------------
    def subscribe(self, dataset_pattern: str, where: str | None = None, *, cone: tuple[float, float, float] | None = None,
                  moc: Any = None, columns: list[str] | None = None, mode: str = "events",
                  start_at: str | int = "latest", name: str | None = None, reconnect: float = 60.0) -> Subscription:
        """Subscribes to new data of the datasets matching ``dataset_pattern`` (fnmatch), anywhere
        in the archipelago, with rows matching the SQL predicate ``where`` inside ``cone`` (ra,
        dec, radius in degrees) or ``moc``. ``mode`` is "events" (what appeared), "rows" (the
        matching rows, only ``columns``, as Arrow batches) or "replicate" (the matching
        partitions kept on this island; ``start_at="earliest"`` takes existing data too).
        ``start_at`` is "latest", "earliest" or a cursor. A ``name`` makes the subscription
        durable: reconnecting with it resumes after the last item consumed. Bad input raises
        here, before any event. Iterate the result; close it when done."""
        spec = subscription_spec(dataset_pattern, where, cone, moc, columns, mode, start_at, name)
        return Subscription(self._stub, self.address, spec, reconnect=reconnect)

    def subscriptions(self) -> list[SubscriptionInfo]:
        """The subscriptions of the island connected to, with their cursor and lag."""
        resp = self._unary("ListSubscriptions", pb.ListSubscriptionsRequest())
        return [SubscriptionInfo.from_pb(s) for s in resp.subscriptions]

    def delete_subscription(self, name: str) -> SubscriptionInfo:
        """Drops a named subscription (a replicate-mode one's replicas become evictable cache)."""
        return SubscriptionInfo.from_pb(self._unary("DeleteSubscription", pb.DeleteSubscriptionRequest(name=name)))

    unsubscribe = delete_subscription


def connect(address: str | None = None, timeout: float | None = 30.0, *, token: str | None = None,
            ca: str | None = None) -> Client:
    """A client of the island at ``address`` (HOST:PORT; default $ARCHIPEL_ISLAND or
    localhost:7770), over TLS checked against the archipelago's ``ca`` (a ca.pem path; default
    $ARCHIPEL_CA), calling as the holder of ``token`` (default $ARCHIPEL_TOKEN; none: anonymous)."""
    return Client(address, timeout=timeout, token=token, ca=ca)
