"""Replication rules: "keep these partitions of this dataset on this island", by sky region
(cone or MOC) or whole, for a lifetime or for good. A rule pins what it covers, including
partitions that appear later; its state is read from what the island holds.

The coverage (which partitions a region selects) is pure; RuleBook keeps rules in the catalog
and asks the mover for what is missing.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from archipel.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from metacatalog.model import Dataset, Partition
from metacatalog.sky import Cone, check_cone, parse_moc, partitions_in_cone, partitions_in_moc
from metacatalog.store import CatalogStore
from metacatalog import rule_records, transfers
from metacatalog.rule_records import RuleRow
from replication import cache
from replication.mover import Mover, Progress

__all__ = ["Region", "Rule", "RuleState", "RuleBook", "covered"]

MAX_LIFETIME = 100 * 365 * 86400.0


@dataclass(frozen=True)
class Region:
    cone: Cone | None = None
    moc: str = ""  # ASCII MOC
    # A rule of a replicate-mode subscription: it pins the partitions the subscription chose,
    # not all those of its region.
    subscription: str = ""

    @classmethod
    def make(cls, cone: tuple[float, float, float] | None = None, moc: bytes | str | None = None) -> Region:
        if cone is not None and moc:
            raise InvalidArgument("give a cone or a MOC, not both")
        if cone is not None:
            return cls(cone=Cone(*check_cone(*cone)))
        if moc:
            return cls(moc=parse_moc(moc).to_string(format="ascii").strip())
        return cls()

    def to_json(self) -> str:
        d: dict[str, Any] = {}
        if self.cone is not None:
            d["cone"] = [self.cone.ra, self.cone.dec, self.cone.radius]
        if self.moc:
            d["moc"] = self.moc
        if self.subscription:
            d["subscription"] = self.subscription
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> Region:
        d = json.loads(text or "{}")
        return cls(cone=Cone(*d["cone"]) if "cone" in d else None, moc=d.get("moc", ""),
                   subscription=d.get("subscription", ""))

    def describe(self) -> str:
        if self.subscription:
            return f"subscription {self.subscription}"
        if self.cone is not None:
            return f"cone({self.cone.ra:g}, {self.cone.dec:g}, r={self.cone.radius:g})"
        if self.moc:
            return f"moc({len(self.moc)} chars)"
        return "all"


@functools.lru_cache(maxsize=64)
def _moc(text: str):
    """A rule's MOC, parsed once (rules are re-evaluated at every catalog change)."""
    return parse_moc(text)


def covered(ds: Dataset, region: Region) -> list[Partition]:
    """The partitions of ``ds`` that can hold rows in ``region`` (all of them for no region)."""
    if region.cone is None and not region.moc:
        return list(ds.partitions)
    if not ds.is_sky:
        raise InvalidArgument(f"{ds.name} is not partitioned on the sky: a cone or MOC cannot select its partitions")
    sky = [p for p in ds.partitions if p.has_pixel]
    pixels = [(p.order, p.pixel) for p in sky]
    if region.cone is not None:
        mask = partitions_in_cone(pixels, region.cone)
    else:
        mask = partitions_in_moc(pixels, _moc(region.moc))
    return [p for p, m in zip(sky, mask) if m]


@dataclass(frozen=True)
class Rule:
    id: str
    dataset: str
    region: Region
    protocol: str
    created: float
    expires: float  # 0: never
    owner: str = ""  # the user who made it ("" for rules of older catalogs)

    def expired(self, now: float | None = None) -> bool:
        return bool(self.expires) and self.expires <= (time.time() if now is None else now)


@dataclass(frozen=True)
class RuleState:
    rule: Rule
    state: str  # "replicating", "ok", "stuck", "expired"
    progress: Progress


class RuleBook:
    """The rules of one island (the island that holds what they pin)."""

    def __init__(self, store: CatalogStore, mover: Mover, here: str, quota: int) -> None:
        self.store = store
        self.mover = mover
        self.here = here
        self.quota = quota

    def pin(self, rule_id: str, ds: Dataset, parts: list[Partition], subscription: str, owner: str = "",
            owner_limit: int = 0) -> int:
        """Pins ``parts`` under a subscription's rule (made on first use) and asks for the copies
        missing; refuses what would go over the quota. Returns the copies sent."""
        pinned_bytes, new_bytes = self._pin_cost(ds.name, parts)
        if pinned_bytes + new_bytes > self.quota:
            raise ResourceExhausted(
                f"subscription {subscription} needs {new_bytes} more bytes pinned on {self.here}, over the cache "
                f"quota of {self.quota} bytes ([replication] cache_bytes) with {pinned_bytes} pinned already")
        if owner_limit:
            self._check_owner_limit(owner, ds.name, parts, owner_limit)
        region = Region(subscription=subscription)
        rule_records.add(self.store, RuleRow(rule_id, ds.name, region.to_json(), "", time.time(), 0.0, owner),
                         [p.pid for p in parts], if_absent=True)
        return len(self.mover.want(ds, parts))

    def _pin_cost(self, dataset: str, parts: list[Partition]) -> tuple[int, int]:
        """(bytes pinned here now, bytes ``parts`` would add to them)."""
        pins = cache.pinned(self.store)
        pinned_bytes = sum(n for k, n in self.store.local_files().items() if k in pins)
        return pinned_bytes, sum(p.num_bytes for p in parts if (dataset, p.pid) not in pins)

    def owner_pinned_bytes(self, owner: str) -> int:
        """Bytes of the partitions ``owner``'s rules pin (held or still to copy)."""
        return rule_records.owner_pinned_bytes(self.store, owner)

    def _check_owner_limit(self, owner: str, dataset: str, parts: list[Partition], limit: int) -> None:
        """RESOURCE_EXHAUSTED when pinning ``parts`` would take ``owner`` over ``limit`` bytes."""
        mine = self.owner_pinned_bytes(owner)
        held = rule_records.owner_pids(self.store, owner, dataset)
        wanted = sum(p.num_bytes for p in parts if p.pid not in held)
        if mine + wanted > limit:
            raise ResourceExhausted(f"{owner}'s rules would pin {mine + wanted} bytes ({mine} already, {wanted} for "
                                    f"this rule): over the per-user [limits] pinned_bytes = {limit}")

    def create(self, dataset: str, region: Region, lifetime: float = 0.0, protocol: str = "", owner: str = "",
               owner_limit: int = 0) -> Rule:
        if not 0 <= lifetime <= MAX_LIFETIME:
            raise InvalidArgument(f"lifetime must be between 0 (for good) and {MAX_LIFETIME:.0f} seconds, not {lifetime}")
        if protocol not in ("", "root", "http"):
            raise InvalidArgument(f"protocol must be root or http, not {protocol!r}")
        ds = self.store.dataset(dataset)
        if ds.origin == self.here:
            raise FailedPrecondition(f"{dataset} originates on {self.here}, which holds all of it already")
        parts = covered(ds, region)
        if not parts:
            raise InvalidArgument(f"the region {region.describe()} covers no partition of {dataset}")
        pinned_bytes, new_bytes = self._pin_cost(dataset, parts)
        if owner_limit:
            self._check_owner_limit(owner, dataset, parts, owner_limit)
        if pinned_bytes + new_bytes > self.quota:
            raise ResourceExhausted(
                f"the rule needs {new_bytes} more bytes pinned on {self.here}; with {pinned_bytes} bytes pinned "
                f"already that is over the cache quota of {self.quota} bytes ([replication] cache_bytes). "
                f"Nothing was evicted.")
        now = time.time()
        rule = Rule(id=uuid.uuid4().hex[:12], dataset=dataset, region=region, protocol=protocol, created=now,
                    expires=now + lifetime if lifetime else 0.0, owner=owner)
        rule_records.add(self.store, RuleRow(rule.id, dataset, region.to_json(), protocol, rule.created,
                                             rule.expires, owner), [p.pid for p in parts])
        self.mover.want(ds, parts, protocol)
        return rule

    def rules(self, rule_id: str | None = None) -> list[Rule]:
        return [Rule(r.id, r.dataset, Region.from_json(r.region), r.protocol, r.created, r.expires, r.owner)
                for r in rule_records.rows(self.store, rule_id)]

    def rule(self, rule_id: str) -> Rule:
        found = self.rules(rule_id)
        if not found:
            raise NotFound(f"no rule {rule_id!r} on island {self.here}")
        return found[0]

    def delete(self, rule_id: str) -> Rule:
        """Drops a rule; what it pinned stays as cache, evictable like any query's replica."""
        rule = self.rule(rule_id)
        rule_records.delete(self.store, rule_id)
        return rule

    def partitions(self, rule: Rule) -> list[Partition]:
        pids = rule_records.pids(self.store, rule.id)
        try:
            ds = self.store.dataset(rule.dataset)
        except NotFound:
            return []
        return [p for p in ds.partitions if p.pid in pids]

    def state(self, rule: Rule) -> RuleState:
        parts = self.partitions(rule)
        prog = self.mover.progress(rule.dataset, parts)
        if rule.expired():
            state = "expired"
        elif prog.files_failed:
            state = "stuck"
        elif prog.files_done == prog.files_total:
            state = "ok"
        else:
            state = "replicating"
        return RuleState(rule, state, prog)

    def refresh(self) -> int:
        """Brings every live rule up to date with the catalog: partitions that appeared under a
        rule are pinned and asked for; expired rules are dropped. Returns the pids sent."""
        sent = 0
        now = time.time()
        for rule in self.rules():
            if rule.expired(now):
                self.delete(rule.id)
                continue
            try:
                ds = self.store.dataset(rule.dataset)
            except NotFound:
                continue
            have = rule_records.pids(self.store, rule.id)
            if rule.region.subscription:  # its subscription chooses what it pins
                parts = [p for p in ds.partitions if p.pid in have]
            else:
                parts = covered(ds, rule.region)
            new = [p for p in parts if p.pid not in have]
            if new:
                rule_records.pin(self.store, rule.id, ds.name, [p.pid for p in new])
            # New partitions, and ones whose copy went stale (the dataset changed at its
            # origin); a failed copy waits for the operator (the rule shows it stuck).
            held = self.store.valid_replicas(ds.name)
            st = transfers.states(self.store, ds.name)
            todo = [p for p in parts if p.pid not in held and (p.pid not in st or st[p.pid].state == "done")]
            if todo:
                sent += len(self.mover.want(ds, todo, rule.protocol))
        return sent

    def next_expiry(self) -> float:
        """Seconds until the next rule expires (inf when none will)."""
        pending = [r.expires for r in self.rules() if r.expires]
        return max(0.0, min(pending) - time.time()) if pending else float("inf")
