"""Judge: a backend whose port is closed costs clients no failed GET."""

from __future__ import annotations

import collections
import concurrent.futures
from pathlib import Path

import httpx
import pytest
from lb_support import curl, demo_backends, free_port, listener_config, running_evenflow

pytestmark = [pytest.mark.judge, pytest.mark.timeout(90)]

ALGORITHMS = ["round_robin", "weighted_round_robin", "least_conn", "power_of_two", "random"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_closed_port_backend_costs_no_failed_get_curl(tmp_path: Path, algorithm: str) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there: connect is refused
    with demo_backends("a", "b", workdir=tmp_path) as addr:
        pool = {"algorithm": algorithm, "backends": [addr["a"], dead, addr["b"]]}
        with running_evenflow(listener_config({"p": pool}, pool="p"), tmp_path) as ef:
            done = curl(
                "-o", "/dev/null", "-w", "%{http_code} %header{x-backend}\\n", f"{ef.url}/f/[1-300]"
            )
            assert done.returncode == 0, done.stderr
            lines = done.stdout.splitlines()
            assert collections.Counter(line.split()[0] for line in lines) == {"200": 300}, lines
            names = collections.Counter(line.split()[1] for line in lines)
            assert set(names) == {"a", "b"}, names


def test_closed_port_backend_with_concurrent_httpx_clients(tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    with demo_backends("a", "b", workdir=tmp_path) as addr:
        pool = {"backends": [addr["a"], dead, addr["b"]]}
        with running_evenflow(listener_config({"p": pool}, pool="p"), tmp_path) as ef:

            def worker(w: int) -> collections.Counter[int]:
                statuses: collections.Counter[int] = collections.Counter()
                with httpx.Client(base_url=ef.url, timeout=10, trust_env=False) as c:
                    for i in range(30):
                        statuses[c.get(f"/w{w}/{i}").status_code] += 1
                return statuses

            total: collections.Counter[int] = collections.Counter()
            with concurrent.futures.ThreadPoolExecutor(10) as pool_:
                for statuses in pool_.map(worker, range(10)):
                    total.update(statuses)
            assert total == {200: 300}


def test_two_of_three_backends_closed_still_no_failed_get(tmp_path: Path) -> None:
    dead1, dead2 = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    with demo_backends("a", workdir=tmp_path) as addr:
        pool = {"backends": [dead1, dead2, addr["a"]], "retries": {"attempts": 3}}
        with running_evenflow(listener_config({"p": pool}, pool="p"), tmp_path) as ef:
            done = curl("-o", "/dev/null", "-w", "%{http_code}\\n", f"{ef.url}/t/[1-90]")
            assert done.returncode == 0, done.stderr
            assert collections.Counter(done.stdout.split()) == {"200": 90}


def test_only_backend_closed_gives_502_to_curl(tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    config = listener_config({"p": {"backends": [dead]}}, pool="p")
    with running_evenflow(config, tmp_path) as ef:
        done = curl("-o", "-", "-w", "\\n%{http_code}", f"{ef.url}/x", timeout=15)
        assert done.returncode == 0, done.stderr
        body, _, status = done.stdout.rpartition("\n")
        assert status == "502"
        assert 0 < len(body) < 200
