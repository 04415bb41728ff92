"""Subscriptions: "all new data with these characteristics, as it appears".

A subscription is a filter (dataset pattern, sky region, SQL predicate, columns), a mode
(events, rows, replicate) and a cursor: a position in this island's change stream, which holds
every change the island committed, its own and its peers' (``changes.pos``). Matching is pure
over the catalog: which changes after a cursor brought new partitions of a matching dataset that
are still current and lie in the region. Reading and filtering rows is the island's business
(island/subscribe.py); this module only writes the SQL it runs.

Delivery is at least once: the cursor stored for a named subscription moves only when the
client acknowledges what it consumed, so a reconnect or a restart redelivers at most what was
in flight, and never skips.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase

from sqlglot import exp

from archipel.arrowwire import read_schema
from archipel.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from federation.planner import parse_statements
from federation.rules import Region, covered
from metacatalog.access import ANONYMOUS, Caller, may_read
from metacatalog.model import Change, Dataset, Partition
from metacatalog import subscription_records
from metacatalog.store import CatalogStore
from metacatalog.subscription_records import SubscriptionRow

__all__ = ["MODES", "OPS", "Filter", "Subscription", "Match", "SubscriptionBook", "row_query", "check_where"]

MODES = ("events", "rows", "replicate")
# The changes that bring new data: a new (or replaced) dataset, and an append.
OPS = ("dataset.put", "dataset.append")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_PATTERN = re.compile(r"^[A-Za-z0-9_.\-*?\[\]!]{1,300}$")
_COLUMN = re.compile(r"^[^`\x00]{1,256}$")
MAX_WHERE = 64 * 1024


@dataclass(frozen=True)
class Filter:
    pattern: str
    where: str = ""  # normalized Spark SQL text of the predicate ("" for none)
    region: Region = Region()
    columns: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps({"pattern": self.pattern, "where": self.where, "region": self.region.to_json(),
                           "columns": list(self.columns)})

    @classmethod
    def from_json(cls, text: str) -> Filter:
        d = json.loads(text)
        return cls(d["pattern"], d.get("where", ""), Region.from_json(d.get("region", "{}")), tuple(d.get("columns", ())))

    def reads_rows(self, mode: str) -> bool:
        """Whether matching reads the rows: always for "rows"; for "events" with a predicate or
        a region (an event counts the rows inside it); for "replicate" with a predicate only
        (a region selects whole partitions, as a replication rule does)."""
        if mode == "rows":
            return True
        if mode == "events":
            return bool(self.where or self.region.cone is not None or self.region.moc)
        return bool(self.where)


@dataclass(frozen=True)
class Subscription:
    name: str
    filter: Filter
    mode: str
    cursor: int  # last position delivered and acknowledged
    pinned: int  # replicate mode: last position whose partitions are pinned here
    durable: bool
    created: float
    error: str = ""
    # Who opened it: only they (or an admin) resume or delete it, and it delivers only data of
    # datasets they may read, decided at each delivery (grants and revocations apply at once).
    owner: Caller = ANONYMOUS


def _owner_json(c: Caller) -> dict:
    return {"user": c.user, "groups": sorted(c.groups), "rights": sorted(c.rights), "admin": c.admin}


def _owner_from(spec: str) -> Caller:
    d = json.loads(spec).get("owner") or {}
    return Caller(user=str(d.get("user", "")), groups=frozenset(d.get("groups", ())),
                  rights=frozenset(d.get("rights", ())), admin=bool(d.get("admin", False)))


@dataclass(frozen=True)
class Match:
    """New partitions of one dataset that a change at ``pos`` brought, matching a filter."""

    pos: int
    change: Change
    dataset: Dataset
    partitions: list[Partition]

    @property
    def op(self) -> str:
        return self.change.op.split(".", 1)[1]


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def check_where(where: str) -> str:
    """The predicate parsed alone, as normalized Spark SQL: one boolean expression, no query."""
    if not where or not where.strip():
        return ""
    if len(where) > MAX_WHERE:
        raise InvalidArgument(f"the predicate is longer than {MAX_WHERE} characters")
    trees = parse_statements(where, "spark", f"predicate {where[:80]!r}")
    if len(trees) != 1:
        raise InvalidArgument(f"the predicate must be one SQL expression, not {len(trees)} statements")
    tree = trees[0]
    if isinstance(tree, (exp.Query, exp.DDL, exp.DML, exp.Command)) or tree.find(exp.Query, exp.Table) is not None:
        raise InvalidArgument(f"the predicate must be a boolean expression over the dataset's columns, "
                              f"not a query: {where[:80]!r}")
    if isinstance(tree, (exp.Alias, exp.Star)):
        raise InvalidArgument(f"the predicate {where[:80]!r} is not a boolean expression")
    return tree.sql(dialect="spark")


def row_query(ds: Dataset, f: Filter) -> str:
    """The SQL selecting a subscription's rows (and columns) from one dataset."""
    cols = ", ".join(_quote(c) for c in f.columns) or "*"
    conds = [f"({f.where})"] if f.where else []
    cone = f.region.cone
    if cone is not None:
        conds.append(f"cone({_quote(ds.ra_column)}, {_quote(ds.dec_column)}, {cone.ra!r}, {cone.dec!r}, {cone.radius!r})")
    return f"SELECT {cols} FROM {_quote(ds.name)}" + (" WHERE " + " AND ".join(conds) if conds else "")


def parse_start(start_at: str, position: int, here: str) -> int | None:
    """The cursor a subscription starts after: None for "latest" (resume when it exists)."""
    text = (start_at or "latest").strip()
    if text == "latest":
        return None
    if text == "earliest":
        return 0
    if not text.isdigit() or len(text) > 19:
        raise InvalidArgument(f"start_at must be 'latest', 'earliest' or a cursor (a non-negative integer), "
                              f"not {start_at[:40]!r}")
    cursor = int(text)
    if cursor > position:
        raise InvalidArgument(f"unknown cursor {cursor}: island {here}'s change stream ends at {position}")
    return cursor


class SubscriptionBook:
    """The subscriptions of one island, kept in its catalog."""

    def __init__(self, store: CatalogStore, here: str) -> None:
        self.store = store
        self.here = here

    # -- creating ------------------------------------------------------------------------
    def make_filter(self, pattern: str, where: str = "", cone: tuple[float, float, float] | None = None,
                    moc: bytes | str | None = None, columns: list[str] | tuple[str, ...] = (), mode: str = "events",
                    check_rows: Callable[[Dataset, Filter], None] | None = None,
                    reader: Caller | None = None) -> Filter:
        """A validated filter. ``check_rows(ds, filter)`` binds the row query against a
        dataset's schema (unknown columns, type errors) for every dataset matching now."""
        if mode not in MODES:
            raise InvalidArgument(f"mode must be one of {', '.join(MODES)}, not {mode[:40]!r}")
        if not isinstance(pattern, str) or not _PATTERN.match(pattern):
            raise InvalidArgument(f"invalid dataset pattern {str(pattern)[:80]!r}: use letters, digits, '_', '.', "
                                  "'-' and the wildcards * ? [ ]")
        columns = tuple(columns)
        for c in columns:
            if not isinstance(c, str) or not _COLUMN.match(c):
                raise InvalidArgument(f"invalid column name {str(c)[:80]!r}")
        if len(set(columns)) != len(columns):
            raise InvalidArgument("a column is asked twice in columns")
        f = Filter(pattern, check_where(where), Region.make(cone=cone, moc=moc or None), columns)
        # A name or pattern matching nothing yet is accepted: the data may come from an island
        # whose catalog has not reached this one yet. What matches now is checked now.
        for ds in self.store.datasets(pattern, with_partitions=True):
            if reader is None or may_read(reader, ds.access):  # others' schemas are not shown
                self.check_dataset(ds, f, check_rows)
        return f

    def check_dataset(self, ds: Dataset, f: Filter, check_rows: Callable[[Dataset, Filter], None] | None) -> None:
        """Refuses a filter that cannot apply to ``ds`` (a region on a dataset not on the sky,
        an unknown column, a predicate that does not bind)."""
        if (f.region.cone is not None or f.region.moc) and not ds.is_sky:
            raise InvalidArgument(f"{ds.name} is not partitioned on the sky: a cone or MOC cannot select its data")
        names = read_schema(ds.arrow_schema).names
        missing = [c for c in f.columns if c not in names]
        if missing:
            raise InvalidArgument(f"unknown column {missing[0]!r} in dataset {ds.name}; its columns are "
                                  f"{', '.join(names[:40])}")
        if check_rows is not None and (f.where or f.columns or f.region.cone is not None):
            check_rows(ds, f)

    def open(self, name: str, f: Filter, mode: str, start_at: str = "latest", owner: Caller = ANONYMOUS
             ) -> Subscription:
        """Creates a subscription, or resumes the named one (from its cursor, or the one given)."""
        position = self.store.position()
        start = parse_start(start_at, position, self.here)
        if not name:
            sub = Subscription(f"tmp-{uuid.uuid4().hex[:12]}", f, mode, position if start is None else start,
                               position if start is None else start, False, time.time(), owner=owner)
            self._insert(sub)
            return sub
        if not _NAME.match(name):
            raise InvalidArgument(f"invalid subscription name {name[:80]!r}: 1-128 letters, digits, '_', '.', '-'")
        found = self.get(name, missing_ok=True)
        if found is not None:
            self.check_owner(found, owner, "resume")
            if (found.filter, found.mode) != (f, mode):
                raise AlreadyExists(f"subscription {name!r} exists on {self.here} with another filter or mode "
                                    f"({found.mode} of {found.filter.pattern!r}); delete it or use another name")
            if start is not None and start != found.cursor:
                subscription_records.move_cursor(self.store, name, start)
                found = replace(found, cursor=start)
            return found
        begin = position if start is None else start
        sub = Subscription(name, f, mode, begin, begin, True, time.time(), owner=owner)
        self._insert(sub)
        return sub

    @staticmethod
    def check_owner(sub: Subscription, caller: Caller, action: str) -> None:
        if caller.admin or sub.owner.user == caller.user:
            return
        raise PermissionDenied(f"subscription {sub.name!r} belongs to {sub.owner.name}: {caller.name} may not "
                               f"{action} it")

    def _insert(self, sub: Subscription) -> None:
        spec = json.dumps({**json.loads(sub.filter.to_json()), "owner": _owner_json(sub.owner)})
        subscription_records.add(self.store, SubscriptionRow(sub.name, spec, sub.mode, sub.cursor, sub.pinned,
                                                             sub.durable, sub.created))

    # -- reading -------------------------------------------------------------------------
    def subscriptions(self, mode: str | None = None) -> list[Subscription]:
        return [_subscription(r) for r in subscription_records.rows(self.store, mode)]

    def get(self, name: str, missing_ok: bool = False) -> Subscription | None:
        r = subscription_records.row(self.store, name)
        if r is None:
            if missing_ok:
                return None
            raise NotFound(f"no subscription {name!r} on island {self.here}")
        return _subscription(r)

    def matches(self, f: Filter, after: int, limit: int = 200, reader: Caller | None = None
                ) -> tuple[list[Match], int]:
        """Matches of changes after position ``after``, in order, and the position scanned to.

        A change's partitions count only while they are current (same file as the catalog's
        now): data deleted or replaced since is skipped, and its replacement is matched at the
        change that brought it."""
        found, scanned = self.store.changes_since(after, OPS, limit)
        out: list[Match] = []
        for pos, change in found:
            if not fnmatchcase(change.key, f.pattern):
                continue
            try:
                ds = self.store.dataset(change.key)
            except NotFound:
                continue
            if reader is not None and not may_read(reader, ds.access):
                continue  # nothing of a dataset the subscriber may not read
            current = {p.pid: p for p in ds.partitions}
            parts = []
            for p in change.payload.get("partitions", []):
                cur = current.get(str(p.get("path")))
                if cur is not None and cur.adler32 == int(p.get("adler32", -1)):
                    parts.append(cur)
            if parts and (f.region.cone is not None or f.region.moc):
                if not ds.is_sky:
                    continue
                parts = covered(replace(ds, partitions=tuple(parts)), f.region)
            if parts:
                out.append(Match(pos, change, ds, parts))
        return out, scanned

    def lag(self, sub: Subscription) -> tuple[int, float]:
        """Changes of matching datasets after the cursor, and the age in seconds of the oldest."""
        times = [t for k, t in self.store.change_times_since(sub.cursor, OPS) if fnmatchcase(k, sub.filter.pattern)]
        return len(times), (max(0.0, time.time() - min(times)) if times else 0.0)

    # -- moving --------------------------------------------------------------------------
    def ack(self, name: str, cursor: int) -> None:
        """The client consumed everything up to ``cursor``: the subscription resumes after it.
        A cursor never moves back, nor past the island's stream."""
        cursor = min(int(cursor), self.store.position())
        subscription_records.ack(self.store, name, cursor, time.time())

    def set_pinned(self, name: str, pos: int, error: str = "") -> None:
        subscription_records.set_pinned(self.store, name, pos, error)

    def set_error(self, name: str, error: str) -> None:
        subscription_records.set_error(self.store, name, error)

    def delete(self, name: str) -> Subscription:
        sub = self.get(name)
        subscription_records.delete(self.store, name, rule_prefix(name))
        return sub

    def drop_transient(self) -> int:
        """Subscriptions of streams that ended with the island (not durable): gone at start."""
        return subscription_records.drop_transient(self.store)

    def forget(self, name: str) -> None:
        """Ends a transient subscription with its stream."""
        subscription_records.forget_transient(self.store, name)


def _subscription(r: SubscriptionRow) -> Subscription:
    return Subscription(r.name, Filter.from_json(r.spec), r.mode, r.cursor, r.pinned, r.durable, r.created, r.error,
                        _owner_from(r.spec))


@dataclass
class StreamCursor:
    """The acknowledgement state of one subscription stream, as a state machine: events in
    (an item delivered, an ack from the client, the stream idle at a position), and out the
    cursor to record, if any. A cursor never moves past what was delivered, nor back."""

    acked: int
    delivered: int

    def on_delivered(self, pos: int) -> None:
        """An item at ``pos`` is about to be sent (set first: its ack may come back at once)."""
        self.delivered = max(self.delivered, pos)

    def on_ack(self, cursor: int) -> int:
        """The client acknowledged up to ``cursor``; returns the cursor to record."""
        self.acked = max(self.acked, min(int(cursor), self.delivered))
        return self.acked

    def on_idle(self, pos: int) -> int | None:
        """Nothing matched up to ``pos``: when everything delivered is acknowledged, the cursor
        moves on to ``pos`` (returned, to record); else None."""
        if self.acked >= self.delivered and pos > self.acked:
            self.acked = self.delivered = pos
            return pos
        return None


def rule_prefix(subscription: str) -> str:
    """Replicate-mode subscriptions pin through rules whose ids start with this."""
    return "s" + hashlib.sha1(subscription.encode()).hexdigest()[:10] + "-"


def rule_id(subscription: str, dataset: str) -> str:
    """The rule pinning a replicate-mode subscription's partitions of one dataset."""
    return rule_prefix(subscription) + hashlib.sha1(dataset.encode()).hexdigest()[:10]

