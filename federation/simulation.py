"""An in-process simulation of catalog sync in a large archipelago (no Spark, no sockets).

Each simulated island follows some peers; a change committed at one island is pushed over every
follower stream of every island that applies it (as ``WatchCatalog`` does: changes of all
origins travel over every link, so sparse topologies relay). Followers decide with the same
``federation.sync.decide`` as real islands: apply the next sequence, drop duplicates.

Time model (assumptions, stated in the output): one stream delivery costs ``hop_s`` and one
applied change ``apply_s`` (an SQLite transaction) at the receiving island.

    python -m federation.simulation [--islands 100 200] [--sparse-degree 3]
"""

from __future__ import annotations

import argparse
import heapq
import random
from dataclasses import dataclass

from federation.sync import decide
from metacatalog.model import Change

__all__ = ["Result", "simulate", "mesh", "sparse"]


@dataclass
class Result:
    islands: int
    topology: str
    streams: int
    messages: int
    duplicates: int
    time_to_all_s: float
    max_hops: int


def mesh(n: int) -> dict[int, list[int]]:
    """followers[i]: the islands that follow i (everyone follows everyone)."""
    return {i: [j for j in range(n) if j != i] for i in range(n)}


def sparse(n: int, degree: int, seed: int = 1) -> dict[int, list[int]]:
    """A ring plus ``degree - 1`` random extra peers each, links followed both ways."""
    rnd = random.Random(seed)
    links = {i: {(i + 1) % n, (i - 1) % n} for i in range(n)}
    for i in range(n):
        while len(links[i]) < degree + 1:
            j = rnd.randrange(n)
            if j != i:
                links[i].add(j)
                links[j].add(i)
    return {i: sorted(links[i]) for i in range(n)}


def simulate(followers: dict[int, list[int]], topology: str, origin: int = 0, hop_s: float = 0.0003,
             apply_s: float = 0.0005) -> Result:
    n = len(followers)
    cursors = [0] * n
    cursors[origin] = 1  # the origin commits its change 1
    change = Change(origin=f"i{origin}", seq=1, op="dataset.put", key="x.y", payload={}, ts=0.0)
    arrived = {origin: 0.0}
    hops = {origin: 0}
    queue: list[tuple[float, int, int, int]] = []  # (time, to, from, hop count)
    for f in followers[origin]:
        heapq.heappush(queue, (hop_s, f, origin, 1))
    messages = duplicates = 0
    while queue:
        t, to, _frm, h = heapq.heappop(queue)
        messages += 1
        decision = decide(f"i{to}", cursors[to], change)
        if decision.action != "apply":
            duplicates += 1
            continue
        cursors[to] = change.seq
        done = t + apply_s
        arrived[to], hops[to] = done, h
        for f in followers[to]:  # a follower of ``to`` receives the change as ``to`` commits it
            heapq.heappush(queue, (done + hop_s, f, to, h + 1))
    assert len(arrived) == n, "the change did not reach every island"
    streams = sum(len(v) for v in followers.values())
    return Result(n, topology, streams, messages, duplicates, max(arrived.values()), max(hops.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--islands", type=int, nargs="+", default=[100, 200, 500])
    parser.add_argument("--sparse-degree", type=int, default=3)
    parser.add_argument("--hop-ms", type=float, default=0.3)
    parser.add_argument("--apply-ms", type=float, default=0.5)
    args = parser.parse_args()
    print(f"hop {args.hop_ms} ms, apply {args.apply_ms} ms; one change committed at island 0\n")
    print("| islands | topology | follower streams | messages per change | duplicates dropped | "
          "time to every island | max hops |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n in args.islands:
        for name, followers in (("mesh", mesh(n)), (f"sparse (ring + {args.sparse_degree - 1} random)",
                                                     sparse(n, args.sparse_degree))):
            r = simulate(followers, name, hop_s=args.hop_ms / 1000, apply_s=args.apply_ms / 1000)
            print(f"| {r.islands} | {r.topology} | {r.streams} | {r.messages} | {r.duplicates} | "
                  f"{r.time_to_all_s * 1000:.1f} ms | {r.max_hops} |")


if __name__ == "__main__":
    main()
