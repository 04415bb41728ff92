"""Where a planned query runs: here, pushed down whole to the one island that holds its data,
or (for data spread over several islands) here over what the other islands send.

Pure decisions over the plan and the catalog; the island carries them out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from archipel.errors import FailedPrecondition, InvalidArgument
from federation.planner import QueryPlan, TableScan

__all__ = ["pushdown_target", "Placement", "place", "MAX_HOPS", "ROUTES", "SessionPlace", "place_session"]

ROUTES = ("auto", "local", "remote", "replicate")
# A query may pass through at most this many islands before it must run where it is.
MAX_HOPS = 3


@dataclass(frozen=True)
class Placement:
    kind: str  # "local", "pushdown", "gather"
    island: str = ""  # the island a pushdown goes to
    remote: tuple[str, ...] = ()  # islands that send data for a gather
    reason: str = ""


def place(plan: QueryPlan, here: str, route: str, route_path: list[str],
          holders: Callable[[TableScan], set[str]] | None = None, down: set[str] = frozenset()) -> Placement:
    """Decides where ``plan`` runs when it reached island ``here`` through ``route_path``.

    ``holders(scan)`` names the islands holding every partition a scan reads (its origin and
    islands with replicas); when the one island holding everything is ``down``, another island
    holding it all takes the query (replica failover)."""
    if route not in ROUTES:
        raise InvalidArgument(f"route must be one of {', '.join(ROUTES)}, not {route!r}")
    if here in route_path:
        raise FailedPrecondition(f"routing loop: the query came back to {here} via {' -> '.join(route_path)}")
    holders_of = holders
    holders = {t.dataset.origin for t in plan.tables}
    remote = sorted(holders - {here})
    if not remote:
        if route == "remote":
            return Placement("local", reason="route='remote' but every dataset is held here: ran locally")
        return Placement("local", reason="every dataset is held here")
    names = ", ".join(sorted({f"{t.dataset.name} (on {t.dataset.origin})" for t in plan.tables
                              if t.dataset.origin != here}))
    if route == "local":
        raise FailedPrecondition(f"route='local' but {names} is not held by island {here}")
    if len(route_path) + 1 >= MAX_HOPS:
        raise FailedPrecondition(f"hop limit {MAX_HOPS} reached at {here} (path {' -> '.join(route_path)}); "
                                 f"{names} is held elsewhere")
    if len(holders) == 1:
        (island,) = holders
        if island in down and holders_of is not None:
            others = set.intersection(*[holders_of(t) for t in plan.tables]) - {island, here} - down
            if others:
                alt = sorted(others)[0]
                return Placement("pushdown", island=alt,
                                 reason=f"{island} is down; {alt} holds replicas of every partition: the query runs there")
        return Placement("pushdown", island=island, reason=f"all data is on {island}: the query runs there whole")
    if route == "remote":
        raise FailedPrecondition(f"route='remote' needs all datasets on one island; {names} are spread out")
    return Placement("gather", remote=tuple(remote),
                     reason=f"data on {', '.join(sorted(holders))}: remote parts are fetched (pruned) and joined here")


def pushdown_target(route: str, origins: set[str] | None, here: str, route_path: list[str], down: set[str],
                    copy_may_pay: bool = False, replicas_here: bool = False) -> str:
    """The one other island a query is sent to whole, before it is planned here; "" when it is
    planned here. ``origins``: the islands the query's datasets originate on (None when one
    cannot be read by the caller: planning here says why); ``copy_may_pay``: route 'auto' may
    copy its partitions here instead; ``replicas_here``: this island holds replicas of one."""
    if route not in ("auto", "remote") or not origins:
        return ""
    if route == "auto" and (copy_may_pay or replicas_here):
        return ""  # the plan decides: copying or local replicas may answer it
    if len(origins) != 1 or here in origins:
        return ""
    (island,) = origins
    if island in down:
        return ""  # planning here may find another island holding replicas
    if here in route_path or len(route_path) + 1 >= MAX_HOPS:
        return ""  # planning here reports the loop or the hop limit
    return island


@dataclass(frozen=True)
class SessionPlace:
    island: str
    reason: str


def place_session(datasets: list[str], here: str, holders: dict[str, set[str]], down: set[str]) -> SessionPlace:
    """Where a Spark session over ``datasets`` runs: here when this island holds them all;
    else the one island up that holds them all; else the island holding most of them (the rest
    copied there as the session reads them), here on a tie. ``holders``: dataset -> islands
    holding all its partitions (its origin and full replicas)."""
    if not datasets:
        return SessionPlace(here, "no dataset named: the session runs on the island connected to")
    if all(here in holders.get(d, set()) for d in datasets):
        return SessionPlace(here, "this island holds every dataset named")
    counts: dict[str, int] = {}
    for d in datasets:
        for island in holders.get(d, set()) - down:
            counts[island] = counts.get(island, 0) + 1
    full = sorted(i for i, n in counts.items() if n == len(datasets))
    if full:
        return SessionPlace(full[0], f"island {full[0]} holds every dataset named")
    counts[here] = counts.get(here, 0)
    best = max(counts.values())
    island = here if counts[here] == best else sorted(i for i, n in counts.items() if n == best)[0]
    return SessionPlace(island, f"island {island} holds {best} of the {len(datasets)} datasets named; the others are "
                                f"copied there as the session reads them")
