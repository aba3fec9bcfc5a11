"""Nanoseconds per pick for every balancing algorithm, with 3 and 100 backends.

Run: .venv/bin/python bench/pick_bench.py [--picks N]. Not part of the test suite. Each figure is
the best of 5 runs of a plain loop calling `pick`, the loop and call overhead included (that is
what the data plane pays too). Weights are equal, or 1,2,3 repeating; in_flight is random
(fixed seed) so least_conn and power_of_two compare real numbers; "retry" passes one backend in
`avoid`.
"""

from __future__ import annotations

import argparse
import random
import time

from evenflow.balancing.base import PickContext, algorithm_names, build
from evenflow.core.backend import BackendState


def make_pool(size: int, weighted: bool) -> list[BackendState]:
    rng = random.Random(1)
    pool = []
    for i in range(size):
        weight = 1 + i % 3 if weighted else 1
        backend = BackendState("bench", f"10.0.{i // 250}.{i % 250 + 1}:80", weight)
        backend.in_flight = rng.randrange(20)
        pool.append(backend)
    return pool


def ns_per_pick(name: str, pool: list[BackendState], picks: int, retry: bool) -> float:
    balancer = build(name, pool)
    pick = balancer.pick
    ctx = PickContext()
    avoid = (pool[0],) if retry else ()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(picks):
            pick(ctx, avoid)
        best = min(best, time.perf_counter() - start)
    return best / picks * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--picks", type=int, default=100_000, help="picks per run (default 100000)")
    args = parser.parse_args()
    columns = [(3, False), (3, True), (100, False), (100, True)]
    labels = [f"{n} {'weighted' if w else 'equal'}" for n, w in columns]
    header = "".join(f"{label:>16}" for label in labels)
    for retry in (False, True):
        print(f"\n{'retry (avoid 1)' if retry else 'first try'} — ns per pick")
        print(f"{'algorithm':<22}{header}")
        for name in algorithm_names():
            cells = []
            for size, weighted in columns:
                picks = args.picks if size < 100 else max(args.picks // 10, 1)
                cells.append(ns_per_pick(name, make_pool(size, weighted), picks, retry))
            print(f"{name:<22}" + "".join(f"{c:>16.0f}" for c in cells))


if __name__ == "__main__":
    main()
