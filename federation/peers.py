"""Peers: one follower link per known island, each a long-lived WatchCatalog stream applying
the peer's changes (of every origin, so sparse topologies relay) as they are committed there.

A link reconnects by itself with a bounded backoff and resumes from the catalog's cursors, so a
restarted peer, a cut link or a follower that was down loses and doubles nothing. Islands
introduce each other: Hello returns the islands the callee knows, and the caller follows them.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass

import grpc

from archipel.backoff import Backoff
from archipel.arrowwire import MAX_MESSAGE_BYTES
from archipel.errors import ArchipelError, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from archipel.v1 import peer_pb2 as ppb
from archipel.v1 import peer_pb2_grpc as ppb_grpc
from federation.pki import IslandCredentials, verify_island_der, verify_signature
from federation.sync import change_from_wire, dataset_from_payload, decide
from metacatalog.model import Change
from metacatalog.store import CatalogStore

__all__ = ["PROTOCOL_VERSION", "PeerLink", "Archipelago", "check_address", "PeerStatus"]

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
_ADDRESS = re.compile(r"^[A-Za-z0-9.\-_\[\]:]+:\d{1,5}$")
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                   # A link that drops packets silently (a cut cable, a firewall) shows within
                   # 15 s: pings every 10 s, even between calls, each answered within 5 s.
                   ("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000),
                   ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0)]


def check_address(address: str) -> str:
    address = (address or "").strip()
    if not _ADDRESS.match(address) or not 0 < int(address.rsplit(":", 1)[1]) < 65536:
        raise InvalidArgument(f"peer address {address!r} is not HOST:PORT")
    return address


@dataclass
class PeerStatus:
    island: str
    address: str
    state: str
    last_seq: int
    error: str


class _Gap(Exception):
    pass


def channel_credentials(creds: IslandCredentials) -> grpc.ChannelCredentials:
    """Mutual TLS: the archipelago's CA to check the callee, the island's own certificate and
    key to be checked by it."""
    return grpc.ssl_channel_credentials(creds.ca_pem, creds.key_pem, creds.cert_pem)


def _hello_once(address: str, creds: IslandCredentials, island: str, my_address: str,
                timeout: float) -> ppb.HelloResponse:
    with grpc.secure_channel(address, channel_credentials(creds), options=CHANNEL_OPTIONS) as channel:
        try:
            resp = ppb_grpc.PeerStub(channel).Hello(
                ppb.HelloRequest(island=island, address=my_address, protocol_version=PROTOCOL_VERSION),
                timeout=timeout)
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED):
                raise FailedPrecondition(f"island at {address} refused us: {exc.details()}") from None
            raise Unavailable(f"island at {address} cannot be reached: {exc.details() or exc.code().name} "
                              f"(an island of another archipelago fails the TLS handshake too)") from None
    if resp.protocol_version != PROTOCOL_VERSION:
        raise FailedPrecondition(f"island {resp.island or address} speaks protocol {resp.protocol_version}, "
                                 f"this island speaks {PROTOCOL_VERSION}")
    return resp


def hello(address: str, creds: IslandCredentials, my_address: str, timeout: float = 5.0
          ) -> tuple[ppb.HelloResponse, str]:
    """Introduces this island to the one at ``address`` (its client or its peer port); returns
    the answer and the peer address it came from. Raises Unavailable or FailedPrecondition."""
    resp = _hello_once(address, creds, creds.name, my_address, timeout)
    if resp.peer_address and resp.peer_address != address:  # the client port names the peer port
        target = check_address(resp.peer_address)
        resp = _hello_once(target, creds, creds.name, my_address, timeout)
        if resp.peer_address:
            raise FailedPrecondition(f"island at {target} did not take our certificate on its peer port")
        return resp, target
    return resp, address


class PeerLink:
    """Follows one peer's catalog stream in a thread of its own."""

    def __init__(self, archipelago: Archipelago, address: str, island: str = "") -> None:
        self.archipelago = archipelago
        self.address = address
        self.island = island
        self.state = "connecting"
        self.last_seq = 0
        self.target_seq = 0
        self.error = ""
        self.diverged = ""  # a divergence this link saw (see _check_same)
        self._stop = threading.Event()
        self._call = None
        self._thread = threading.Thread(target=self._run, name=f"peer-{address}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        call = self._call
        if call is not None:
            call.cancel()

    def status(self) -> PeerStatus:
        state = self.state
        if state == "connected" and self.last_seq < self.target_seq:
            state = "lagging"
        diverged = self.archipelago.divergences.get(self.island, "") or self.diverged
        if diverged:
            return PeerStatus(self.island, self.address, "diverged", self.last_seq, diverged)
        return PeerStatus(self.island, self.address, state, self.last_seq, self.error)

    def _run(self) -> None:
        arch = self.archipelago
        backoff = Backoff(0.2, 5.0)
        while not self._stop.is_set():
            try:
                resp, peer_address = hello(self.address, arch.creds, arch.address)
                if peer_address != self.address and not arch.moved(self, peer_address):
                    return  # another link follows that island already
                if resp.island == arch.island:
                    logger.info("peer %s is this island itself; not following it", self.address)
                    self.state, self.error = "self", "this is the island itself"
                    arch.forget(self)
                    return
                if self._stop.is_set():
                    return
                self.island = resp.island
                self.target_seq = resp.sequence
                arch.store.add_peer(self.address, resp.island)
                for p in resp.peers:
                    arch.learn(p.address, p.island)
                self.last_seq = arch.store.sequence(self.island)
                self._follow()
            except (Unavailable, FailedPrecondition) as exc:
                self.state, self.error = "down", str(exc)
            except grpc.RpcError as exc:
                self.state, self.error = "down", f"stream from {self.address} ended: {exc.code().name}"
            except _Gap as exc:
                self.state, self.error = "down", str(exc)
                logger.warning("peer %s: %s; resuming from the cursors", self.address, exc)
                backoff.reset(0.05)
            except ArchipelError as exc:  # a malformed change: refused, logged, link dropped
                self.state, self.error = "down", f"refused a change: {exc}"
                logger.warning("peer %s sent a change that was refused: %s", self.address, exc)
            except Exception as exc:
                self.state, self.error = "down", f"{type(exc).__name__}: {exc}"
                logger.exception("peer link %s failed", self.address)
            if self._stop.wait(backoff.next()):
                return

    def _follow(self) -> None:
        arch = self.archipelago
        with grpc.secure_channel(self.address, channel_credentials(arch.creds), options=CHANNEL_OPTIONS) as channel:
            stub = ppb_grpc.PeerStub(channel)
            call = stub.WatchCatalog(ppb.WatchCatalogRequest(island=arch.island, cursors=arch.store.cursors()))
            self._call = call
            self.state, self.error = "connected", ""
            try:
                for msg in call:
                    if self._stop.is_set():
                        return
                    self._apply(msg)
            finally:
                self._call = None

    def _apply(self, msg: ppb.CatalogChange) -> None:
        """Applies one change. Only a change signed by its origin moves that origin's cursor
        (whoever relays it): a forged one drops the link. A signed change that is malformed
        or contradicts the catalog is recorded as refused, not applied, so the origin's later
        changes still follow; a signed change that differs from the one recorded under the
        same number is a divergence, shown in the link's status."""
        store = self.archipelago.store
        raw = Change(msg.origin, msg.seq, msg.op, msg.key, {}, msg.ts, msg.signature, msg.payload_json)
        if self._known(raw):
            return
        self.archipelago.check_signed(raw, msg.origin_cert)
        refused, change, dataset = "", raw, None
        try:
            change = change_from_wire(msg.origin, msg.seq, msg.op, msg.key, msg.payload_json, msg.ts,
                                      msg.signature)
            dataset = dataset_from_payload(change.payload, change.origin) if change.op == "dataset.put" else None
        except ArchipelError as exc:
            refused = str(exc)
        with store.transaction() as tx:
            decision = decide(store.island, store.sequence(change.origin), change)
            if decision.action == "gap":
                raise _Gap(decision.reason)
            if decision.action == "apply":
                refused = tx.apply_or_refuse(change, dataset, refused)
        if decision.action == "apply" and refused:
            logger.warning("peer %s: refused change %s:%d (%s %s), recorded and skipped: %s",
                           self.address, change.origin, change.seq, change.op, change.key[:100], refused)
            self.error = f"refused change {change.origin}:{change.seq}: {refused[:300]}"
        elif decision.action == "duplicate":
            self._check_same(raw)
        self._passed(change)

    def _passed(self, change: Change) -> None:
        """The peer's own changes up to this one have come: the link's position."""
        if change.origin == self.island:
            self.last_seq = max(self.last_seq, change.seq)
            self.target_seq = max(self.target_seq, change.seq)

    def _known(self, change: Change) -> bool:
        """True for a change recorded here already under its number, as it is: in an
        archipelago where every island follows every other, each change arrives once from its
        origin and again relayed by every other peer. Such a copy brings nothing: it is
        dropped before its signature is checked and without a write transaction, whose commit
        would wake everything waiting on the catalog (a 64-file rule's replica records made
        each follower do both twice). A copy that differs from the record goes on to the
        signature check and then ``_check_same``, as before."""
        if change.origin == self.archipelago.island:
            return False
        recorded = self.archipelago.store.recorded_change(change.origin, change.seq)
        if recorded is None or recorded[:3] != (change.op, change.key, change.payload_json):
            return False
        self._passed(change)
        return True

    def _check_same(self, change: Change) -> None:
        """A duplicate must be the change recorded under its number: two different changes,
        both signed by their origin, under one number mean the origin's log diverged (restored
        from an old backup, say)."""
        recorded = self.archipelago.store.recorded_change(change.origin, change.seq)
        if recorded is None or recorded[:3] == (change.op, change.key, change.payload_json):
            return
        why = (f"diverged: {change.origin}:{change.seq} is {change.op} {change.key[:100]} here but "
               f"{recorded[0]} {recorded[1][:100]} was recorded under that number")
        if why not in self.archipelago.divergences:
            logger.error("peer %s: %s", self.address, why)
        self.archipelago.divergences[change.origin] = why
        self.diverged = why


class Archipelago:
    """The peers this island follows."""

    def __init__(self, store: CatalogStore, creds: IslandCredentials, address: str, max_peers: int = 0) -> None:
        self.store = store
        self.creds = creds
        self.island = creds.name
        self.address = address  # this island's peer (mutual TLS) address
        self.max_peers = max_peers  # islands followed at most through introductions (0: all)
        self._links: dict[str, PeerLink] = {}
        self._channels: dict[str, grpc.Channel] = {}
        self._certs: dict[str, bytes] = {}  # origins' certificates known to be in the catalog
        self.divergences: dict[str, str] = {}  # origin -> what diverged (shown by ``peers``)
        self._lock = threading.Lock()
        self._stopped = False

    def channel(self, address: str) -> grpc.Channel:
        """A channel to a peer kept for routed queries (a new one costs a TCP and HTTP/2
        handshake per query)."""
        with self._lock:
            channel = self._channels.get(address)
            if channel is None:
                # Its own subchannel pool: channels with the same target and options otherwise
                # share gRPC's global subchannels, so a "fresh" channel after a peer came back
                # would still fail fast inside the old connection's reconnect backoff.
                channel = self._channels[address] = grpc.secure_channel(
                    address, channel_credentials(self.creds),
                    options=[*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)])
            return channel

    def reset_channel(self, address: str) -> grpc.Channel:
        """A fresh channel to ``address``: a cached one that saw the peer down waits out its
        reconnect backoff even after the peer is back."""
        with self._lock:
            old = self._channels.pop(address, None)
        if old is not None:
            old.close()
        return self.channel(address)

    def start(self, addresses: list[str]) -> None:
        for address in addresses:
            self.learn(address, "", chosen=True)
        for address, _ in self.store.peers():
            self.learn(address, "")

    def learn(self, address: str, island: str, chosen: bool = False) -> None:
        """Follows an island heard of (from config, the catalog or an introduction). An
        introduced island is not followed when it was removed, or when ``max_peers`` are
        followed already (the islands followed relay the rest); ``chosen`` ones always are."""
        try:
            address = check_address(address)
        except InvalidArgument as exc:
            logger.warning("ignoring peer: %s", exc)
            return
        if address == self.address or island == self.island:
            return
        if not chosen:
            addresses, islands = self.store.forgotten_peers()
            if address in addresses or (island and island in islands):
                return
        with self._lock:
            if self._stopped or address in self._links:
                return
            if island and any(link.island == island for link in self._links.values()):
                return
            if not chosen and self.max_peers and len(self._links) >= self.max_peers:
                return
            link = self._links[address] = PeerLink(self, address, island)
        link.start()

    def remove(self, who: str) -> PeerStatus:
        """Stops following the peer at address (or named) ``who``; NotFound when none is."""
        with self._lock:
            link = self._links.get(who) or next((li for li in self._links.values() if li.island == who), None)
        if link is None and ":" in who:  # an island's client address: ask it for its name
            try:
                name = hello(check_address(who), self.creds, self.address)[0].island
            except ArchipelError:
                name = ""
            with self._lock:
                link = next((li for li in self._links.values() if name and li.island == name), None)
        with self._lock:
            if link is not None:
                self._links.pop(link.address, None)
        if link is None:
            stored = [(a, i) for a, i in self.store.peers() if who in (a, i)]
            if not stored:
                raise NotFound(f"island {self.island} does not follow {who!r} (see `archipel peers`)")
            address, island = stored[0]
            self.store.remove_peer(address, island)
            return PeerStatus(island, address, "removed", 0, "")
        link.stop()
        self.store.remove_peer(link.address, link.island)
        status = link.status()
        return PeerStatus(status.island, status.address, "removed", status.last_seq, "")

    def check_signed(self, change, cert_der: bytes) -> None:
        """Refuses a change its origin did not sign (whichever island relays it): the
        certificate must be the origin's, issued by the archipelago's CA."""
        from archipel.errors import PermissionDenied

        if not change.signature or not cert_der:
            raise PermissionDenied(f"change {change.origin}:{change.seq} is not signed by its origin")
        island = verify_island_der(self.creds.ca, cert_der)
        if island != change.origin:
            raise PermissionDenied(f"change {change.origin}:{change.seq} is signed by {island}, not by its origin")
        if not verify_signature(cert_der, change.signature, change.signed_bytes()):
            raise PermissionDenied(f"change {change.origin}:{change.seq} does not match its origin's signature "
                                   f"(forged or altered)")
        if self._certs.get(change.origin) != cert_der:  # stored once, not at every change
            self.store.keep_island_cert(change.origin, cert_der)
            self._certs[change.origin] = cert_der

    def moved(self, link: PeerLink, address: str) -> bool:
        """A link learned by an island's client address follows its peer address from now on;
        False when another link follows that address already (this one ends)."""
        with self._lock:
            if self._links.get(link.address) is link:
                del self._links[link.address]
            if address in self._links or address == self.address:
                return False
            self._links[address] = link
        link.address = address
        return True

    def forget(self, link: PeerLink) -> None:
        with self._lock:
            self._links.pop(link.address, None)

    def add(self, address: str) -> PeerStatus:
        """Joins the island at ``address`` now: refused if it cannot be reached or speaks
        another protocol version."""
        address = check_address(address)
        resp, address = hello(address, self.creds, self.address)
        if resp.island == self.island:
            raise InvalidArgument(f"{address} is this island ({self.island}) itself")
        self.store.add_peer(address, resp.island, explicit=True)
        self.learn(address, resp.island, chosen=True)
        for p in resp.peers:
            self.learn(p.address, p.island)
        with self._lock:
            link = self._links.get(address) or next(
                (li for li in self._links.values() if li.island == resp.island), None)
        return link.status() if link else PeerStatus(resp.island, address, "connecting", 0, "")

    def address_of(self, island: str) -> str:
        """The address of a known island; Unavailable when none is known."""
        with self._lock:
            for link in self._links.values():
                if link.island == island:
                    return link.address
        for address, name in self.store.peers():
            if name == island:
                return address
        raise Unavailable(f"island {island} is not known here (no address for it; see `archipel peers`)")

    def known(self) -> list[tuple[str, str]]:
        """(island, address) of every island this one knows, itself included."""
        with self._lock:
            links = [(li.island, li.address) for li in self._links.values() if li.island]
        return [(self.island, self.address), *links]

    def down(self) -> set[str]:
        """Names of the followed islands whose link is down."""
        return {s.island for s in self.statuses() if s.state == "down" and s.island}

    def statuses(self) -> list[PeerStatus]:
        with self._lock:
            links = list(self._links.values())
        return sorted((li.status() for li in links), key=lambda s: (s.island, s.address))

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            links = list(self._links.values())
            channels, self._channels = list(self._channels.values()), {}
        for link in links:
            link.stop()
        for channel in channels:
            channel.close()
