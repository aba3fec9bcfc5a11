"""Hashing balancers with 100 backends: ns per pick (key hashing included) and build time.

Run: .venv/bin/python bench/hash_bench.py [--backends N] [--picks N] [--rounds N]. Not part of the
test suite. Every figure is the minimum over the rounds (this kind of machine is noisy; the
minimum is the run least disturbed). A pick loop walks a list of prepared PickContexts, each with
its own key (a user id, or a client address for ip_hash), so key hashing and the loop's own
overhead are counted, as the data plane pays them. Rows:

- plain: no bounded load;
- bounded, idle: bounded_load 1.25 with every backend idle (the fast path: an idle owner has room);
- bounded, loaded: bounded_load 1.25 with in_flight random in 0..19 (each pick sums the pool's
  in-flight counters: O(n));
- retry: each pick avoids its key's own backend (as a retry after it failed), no bounded load.

Build time is one balancer construction for the same pool (equal weights, then 1,2,3 repeating).
"""

from __future__ import annotations

import argparse
import functools
import random
import time
from collections.abc import Callable, Sequence

from evenflow.balancing.base import Balancer, BalancerOptions, PickContext, build
from evenflow.core.backend import BackendState

NAMES = ("consistent_hash", "maglev", "ip_hash")


def make_pool(size: int, weighted: bool = False) -> list[BackendState]:
    return [
        BackendState("bench", f"10.0.{i // 250}.{i % 250 + 1}:80", 1 + i % 3 if weighted else 1)
        for i in range(size)
    ]


def contexts(name: str, count: int) -> list[PickContext]:
    rng = random.Random(7)
    if name == "ip_hash":
        return [
            PickContext(
                client_ip=f"{rng.randrange(1, 224)}.{rng.randrange(256)}."
                f"{rng.randrange(256)}.{rng.randrange(1, 255)}"
            )
            for _ in range(count)
        ]
    return [PickContext(hash_key=f"user-{rng.randrange(10**9)}".encode()) for _ in range(count)]


def best_of(rounds: int, run: Callable[[], object]) -> float:
    """The fastest of `rounds` runs of `run`, in seconds."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def ns_per_pick(balancer: Balancer, ctxs: Sequence[PickContext], rounds: int) -> float:
    pick = balancer.pick

    def run() -> None:
        for ctx in ctxs:
            pick(ctx)

    return best_of(rounds, run) / len(ctxs) * 1e9


def ns_per_retry(balancer: Balancer, ctxs: Sequence[PickContext], rounds: int) -> float:
    """Each pick with its key's own backend in `avoid`."""
    pick = balancer.pick
    pairs = [(ctx, [b for b in (pick(ctx),) if b is not None]) for ctx in ctxs]

    def run() -> None:
        for ctx, avoid in pairs:
            pick(ctx, avoid)

    return best_of(rounds, run) / len(ctxs) * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", type=int, default=100, help="pool size (default 100)")
    parser.add_argument("--picks", type=int, default=50_000, help="picks per round (50000)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds, minimum kept (7)")
    args = parser.parse_args()
    n = args.backends
    plain = BalancerOptions()
    bounded = BalancerOptions(bounded_load=1.25)
    print(f"{n} backends, {args.picks} picks per round, best of {args.rounds} rounds")

    widths = (10, 16, 18, 10)
    columns = ("plain", "bounded, idle", "bounded, loaded", "retry")
    print(
        "\n"
        + f"{'ns per pick':<18}"
        + "".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True))
    )
    for name in NAMES:
        ctxs = contexts(name, args.picks)
        idle = make_pool(n)
        loaded = make_pool(n)
        rng = random.Random(1)
        for b in loaded:
            b.in_flight = rng.randrange(20)
        cells = [
            ns_per_pick(build(name, idle, plain), ctxs, args.rounds),
            ns_per_pick(build(name, idle, bounded), ctxs, args.rounds),
            ns_per_pick(build(name, loaded, bounded), ctxs, args.rounds),
            ns_per_retry(build(name, idle, plain), ctxs, args.rounds),
        ]
        print(f"{name:<18}" + "".join(f"{c:>{w}.0f}" for c, w in zip(cells, widths, strict=True)))

    print("\n" + f"{'build ms':<18}{'equal':>10}{'1,2,3':>16}")
    for name in NAMES:
        cells = [
            best_of(args.rounds, functools.partial(build, name, pool, plain)) * 1e3
            for pool in (make_pool(n), make_pool(n, weighted=True))
        ]
        print(f"{name:<18}{cells[0]:>10.1f}{cells[1]:>16.1f}")


if __name__ == "__main__":
    main()
