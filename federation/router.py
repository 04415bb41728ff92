"""Where a planned query runs: here, pushed down whole to the one island that holds its data,
or (for data spread over several islands) here over what the other islands send.

Pure decisions over the plan and the catalog; the island carries them out.
"""

from __future__ import annotations

from dataclasses import dataclass

from archipel.errors import FailedPrecondition, InvalidArgument
from federation.planner import QueryPlan

__all__ = ["Placement", "place", "MAX_HOPS", "ROUTES"]

ROUTES = ("auto", "local", "remote", "replicate")
# A query may pass through at most this many islands before it must run where it is.
MAX_HOPS = 3


@dataclass(frozen=True)
class Placement:
    kind: str  # "local", "pushdown", "gather"
    island: str = ""  # the island a pushdown goes to
    remote: tuple[str, ...] = ()  # islands that send data for a gather
    reason: str = ""


def place(plan: QueryPlan, here: str, route: str, route_path: list[str]) -> Placement:
    """Decides where ``plan`` runs when it reached island ``here`` through ``route_path``."""
    if route not in ROUTES:
        raise InvalidArgument(f"route must be one of {', '.join(ROUTES)}, not {route!r}")
    if here in route_path:
        raise FailedPrecondition(f"routing loop: the query came back to {here} via {' -> '.join(route_path)}")
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
        return Placement("pushdown", island=island, reason=f"all data is on {island}: the query runs there whole")
    if route == "remote":
        raise FailedPrecondition(f"route='remote' needs all datasets on one island; {names} are spread out")
    return Placement("gather", remote=tuple(remote),
                     reason=f"data on {', '.join(sorted(holders))}: remote parts are fetched (pruned) and joined here")
