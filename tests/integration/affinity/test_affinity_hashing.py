"""Hashing pools with real backends: the same key always lands on the same backend, adding a
backend through the admin API moves about 1/(N+1) of keys, and bounded load caps a hot key."""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter

import pytest
from affinity_support import Start, map_keys

pytestmark = pytest.mark.timeout(60)

HASHING = ["consistent_hash", "maglev"]


@pytest.mark.parametrize("algorithm", HASHING)
async def test_the_same_user_id_always_reaches_the_same_backend(
    evenflow: Start, algorithm: str
) -> None:
    run = await evenflow({"algorithm": algorithm, "hash_key": "header:x-user-id"})
    users = [f"user-{i}" for i in range(100)]
    stream = users * 10
    random.Random(7).shuffle(stream)  # 1,000 requests, each user ten times, interleaved
    seen = await map_keys(run.proxy, stream)
    assert sum(len(backends) for backends in seen.values()) == 1000
    drifted = {user: Counter(backends) for user, backends in seen.items() if len(set(backends)) > 1}
    assert not drifted
    spread = Counter(backends[0] for backends in seen.values())
    assert set(spread) == {"a", "b", "c"}, spread  # the key decides, and keys spread
    # every backend answered exactly what evenflow sent it
    assert sum(b.requests for b in run.backends.values()) == 1000


# Adding an 11th backend to 10. The target for the key population: the ring (160 points
# per unit of weight) and Maglev move at most 1/11 + 0.02 of keys. 1,000 user ids are a sample
# of it: the moved share's standard deviation is sqrt(p(1-p)/1000) = 0.0091 at p = 1/11, so
# 3 sigma adds 0.027. Hence 1/11 ± (0.02 + 0.027) for the moved share. The keys that move go to
# the new backend: all of them on the ring (a new point takes only keys before it); on Maglev a
# few may shuffle between old backends (its table refills), bounded by the same 0.02 + 3 sigma.
N = 10
TARGET = 1 / (N + 1)
SAMPLE_3_SIGMA = 3 * math.sqrt(TARGET * (1 - TARGET) / 1000)
TOLERANCE = 0.02 + SAMPLE_3_SIGMA


@pytest.mark.parametrize("algorithm", HASHING)
async def test_adding_a_backend_moves_about_one_in_n_plus_one_keys(
    evenflow: Start, algorithm: str
) -> None:
    names = [f"n{i}" for i in range(N + 1)]
    run = await evenflow({"algorithm": algorithm, "hash_key": "header:x-user-id"}, names, N)
    newcomer = run.backends[names[-1]]
    users = [f"user-{i}" for i in range(1000)]
    before = {u: b[0] for u, b in (await map_keys(run.proxy, users)).items()}
    assert set(before.values()) == set(names[:N])
    answer = await run.admin.post("/api/v1/pools/web/backends", json={"address": newcomer.address})
    assert answer.status_code == 201, answer.text
    after = {u: b[0] for u, b in (await map_keys(run.proxy, users)).items()}
    moved = [u for u in users if before[u] != after[u]]
    to_new = [u for u in moved if after[u] == newcomer.name]
    elsewhere = len(moved) - len(to_new)
    fraction = len(moved) / len(users)
    hot = await run.hotspots()
    expected_new = next(
        b["expected_share"] for b in hot["backends"] if b["address"] == newcomer.address
    )
    print(
        f"{algorithm}: moved {fraction:.3f} (target {TARGET:.3f} ± {TOLERANCE:.3f}), "
        f"{len(to_new)} to the new backend, {elsewhere} between old ones; the new backend's "
        f"expected share {expected_new:.4f}"
    )
    assert abs(fraction - TARGET) <= TOLERANCE
    if algorithm == "consistent_hash":
        assert elsewhere == 0
    else:
        assert elsewhere / len(users) <= TOLERANCE
    # what moved to the new backend is its share of the table, within the sample's 3 sigma
    assert abs(len(to_new) / len(users) - expected_new) <= SAMPLE_3_SIGMA + 0.005
    assert abs(expected_new - TARGET) <= 0.02 + 0.005


async def test_bounded_load_caps_a_hot_key_under_concurrency(evenflow: Start) -> None:
    # 4 backends, c = 1.25; 40 slow requests at once, half of them for one user: unbounded,
    # that user's backend would hold 20+ of them. No backend may hold more than
    # ceil(1.25 x 40 / 4) = 13 while all 40 are in flight.
    run = await evenflow(
        {"algorithm": "maglev", "hash_key": "header:x-user-id", "bounded_load": 1.25}, "abcd"
    )
    keys = ["hot-user" if i % 2 == 0 else f"user-{i}" for i in range(40)]
    sends = [
        asyncio.create_task(run.proxy.get("/", params={"delay": 2000}, headers={"x-user-id": k}))
        for k in keys
    ]
    full: list[list[int]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.8
    while loop.time() < deadline and len(full) < 5:
        in_flight = [b["in_flight"] for b in (await run.pool())["backends"]]
        if sum(in_flight) == len(keys):
            full.append(in_flight)
        await asyncio.sleep(0.05)
    answers = await asyncio.gather(*sends)
    assert all(a.status_code == 200 for a in answers)
    assert full, "never saw all 40 requests in flight at once"
    bound = math.ceil(1.25 * len(keys) / 4)
    worst = max(max(sample) for sample in full)
    print(f"bounded load: max in flight {worst}, bound {bound}, samples {full}")
    assert worst <= bound
    # the hot key did press on its backend: without the bound it would hold 20 or more
    hot = Counter(
        a.headers["x-backend"] for a, k in zip(answers, keys, strict=True) if k == "hot-user"
    )
    assert len(hot) >= 2, hot  # overflow walked on to other backends
    assert hot.most_common(1)[0][1] <= bound
