"""Judge: how requests spread over backends, seen from outside with curl and httpx.

evenflow and the backends run as subprocesses; the backends name themselves in `x-backend`.
"""

from __future__ import annotations

import collections
import concurrent.futures
from pathlib import Path

import httpx
import pytest
from lb_support import curl, demo_backends, listener_config, running_evenflow, slow_backend

pytestmark = [pytest.mark.judge, pytest.mark.timeout(90)]


def curl_backends(url: str, count: int) -> list[str]:
    """`count` GETs over one keep-alive connection (curl URL globbing): x-backend of each."""
    done = curl(
        "-o", "/dev/null", "-w", "%{http_code} %header{x-backend}\\n", f"{url}/rr/[1-{count}]"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == count
    statuses = collections.Counter(line.split(" ")[0] for line in lines)
    assert statuses == {"200": count}, statuses
    return [line.split(" ", 1)[1] for line in lines]


def test_round_robin_300_requests_give_100_each(tmp_path: Path) -> None:
    with demo_backends("a", "b", "c", workdir=tmp_path) as addr:
        config = listener_config(
            {"p": {"algorithm": "round_robin", "backends": [addr["a"], addr["b"], addr["c"]]}},
            pool="p",
        )
        with running_evenflow(config, tmp_path) as ef:
            seen = curl_backends(ef.url, 300)
            assert collections.Counter(seen) == {"a": 100, "b": 100, "c": 100}
            # and in turn, not in runs
            assert all(seen[i] != seen[i + 1] for i in range(len(seen) - 1)), seen[:12]


def test_round_robin_over_many_client_connections(tmp_path: Path) -> None:
    with demo_backends("a", "b", "c", workdir=tmp_path) as addr:
        config = listener_config({"p": {"backends": [addr["a"], addr["b"], addr["c"]]}}, pool="p")
        with running_evenflow(config, tmp_path) as ef:
            counts: collections.Counter[str] = collections.Counter()
            for _ in range(30):  # a new client connection for every 10 requests
                with httpx.Client(base_url=ef.url, timeout=5, trust_env=False) as c:
                    for i in range(10):
                        r = c.get(f"/c/{i}")
                        assert r.status_code == 200
                        counts[r.headers["x-backend"]] += 1
            assert counts == {"a": 100, "b": 100, "c": 100}


def test_weighted_round_robin_1_2_3_shares_within_2_percent(tmp_path: Path) -> None:
    with demo_backends("a", "b", "c", workdir=tmp_path) as addr:
        pool = {
            "algorithm": "weighted_round_robin",
            "backends": [
                {"address": addr["a"], "weight": 1},
                {"address": addr["b"], "weight": 2},
                {"address": addr["c"], "weight": 3},
            ],
        }
        with running_evenflow(listener_config({"p": pool}, pool="p"), tmp_path) as ef:
            counts: collections.Counter[str] = collections.Counter()
            with httpx.Client(base_url=ef.url, timeout=5, trust_env=False) as c:
                for i in range(600):
                    r = c.get(f"/w/{i}")
                    assert r.status_code == 200
                    counts[r.headers["x-backend"]] += 1
            shares = {name: counts[name] / 600 for name in "abc"}
            for name, want in (("a", 1 / 6), ("b", 2 / 6), ("c", 3 / 6)):
                assert abs(shares[name] - want) <= 0.02, (counts, shares)


def _spread(url: str, workers: int, per_worker: int) -> collections.Counter[str]:
    """`workers` concurrent clients, each sending `per_worker` GETs one after another."""

    def worker(w: int) -> list[str]:
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as c:
            out = []
            for i in range(per_worker):
                r = c.get(f"/lc/{w}/{i}")
                assert r.status_code == 200, r.text
                out.append(r.headers["x-backend"])
            return out

    counts: collections.Counter[str] = collections.Counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for names in pool.map(worker, range(workers)):
            counts.update(names)
    return counts


@pytest.mark.parametrize("algorithm", ["least_conn", "round_robin"])
def test_least_conn_sends_fewer_requests_to_a_slow_backend(tmp_path: Path, algorithm: str) -> None:
    # `slow` answers every request 200ms late (a separate tiny server: the demo backend's delay
    # is per request, so it would slow every backend alike). With 12 clients sending at once,
    # least_conn sees `slow` holding requests and sends it few; round_robin, the control, gives
    # it exactly a third whatever its speed, which shows this setup can tell the two apart.
    with (
        demo_backends("a", "b", workdir=tmp_path) as addr,
        slow_backend("slow", 0.2, tmp_path) as slow,
    ):
        pool = {"algorithm": algorithm, "backends": [addr["a"], slow, addr["b"]]}
        with running_evenflow(listener_config({"p": pool}, pool="p"), tmp_path) as ef:
            counts = _spread(ef.url, workers=12, per_worker=20)
    print(f"{algorithm}: {dict(counts)}")
    assert sum(counts.values()) == 240
    if algorithm == "round_robin":
        assert counts == {"a": 80, "slow": 80, "b": 80}
    else:
        assert counts["slow"] < 0.1 * 240, counts
        assert counts["slow"] < min(counts["a"], counts["b"]) / 4, counts


def test_weight_0_gets_no_traffic(tmp_path: Path) -> None:
    with demo_backends("a", "b", "c", workdir=tmp_path) as addr:
        for algorithm in ("round_robin", "weighted_round_robin", "least_conn", "random"):
            pool = {
                "algorithm": algorithm,
                "backends": [
                    {"address": addr["a"], "weight": 1},
                    {"address": addr["b"], "weight": 0},
                    {"address": addr["c"], "weight": 1},
                ],
            }
            with running_evenflow(listener_config({"p": pool}, pool="p"), tmp_path) as ef:
                seen = collections.Counter(curl_backends(ef.url, 60))
            assert "b" not in seen, (algorithm, seen)
            assert set(seen) == {"a", "c"}, (algorithm, seen)


def test_least_conn_ties_rotate(tmp_path: Path) -> None:
    # one request at a time: every backend has 0 in flight at each pick, so the tie rotates
    with demo_backends("a", "b", "c", workdir=tmp_path) as addr:
        pool = {"algorithm": "least_conn", "backends": [addr["a"], addr["b"], addr["c"]]}
        with running_evenflow(listener_config({"p": pool}, pool="p"), tmp_path) as ef:
            seen = curl_backends(ef.url, 30)
    assert collections.Counter(seen) == {"a": 10, "b": 10, "c": 10}, seen
