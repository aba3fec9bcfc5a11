"""Judge: affinity as a new user meets it. evenflow runs as `python -m evenflow run -c FILE`,
each demo backend as its own `python -m evenflow.demo.backend` process, and stdlib http.client
and httpx (with its cookie jar, as a browser keeps cookies) are the clients.

The headline of issue 4: the same x-user-id always reaches the same backend over 1,000
requests; a cookie-sticky client keeps its backend, and when that backend's process is
SIGKILLed it is served elsewhere at once and re-pinned with a new cookie.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest
from lb_support import listener_config, running_evenflow

pytestmark = [pytest.mark.judge, pytest.mark.timeout(90)]

START_TIMEOUT_S = 15.0
COOKIE = "EF_AFFINITY"
SECRET_ENV = "EVENFLOW_JUDGE_STICKY_SECRET"


@contextlib.contextmanager
def backend_process(name: str, workdir: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """One demo backend in its own process (so it can be killed alone): (process, host:port)."""
    err = (workdir / f"backend-{name}.err").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "evenflow.demo.backend", "--name", name, "--port", "0"],
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=err,
    )
    try:
        assert process.stdout is not None
        line = b""
        deadline = time.monotonic() + START_TIMEOUT_S
        with selectors.DefaultSelector() as sel:
            sel.register(process.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"backend {name} did not start: {err.name}")
                if sel.select(0.2):
                    line += os.read(process.stdout.fileno(), 4096)
        word, announced, address = line.decode().split()
        assert (word, announced) == ("listening", name), line
        yield process, address
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        assert process.stdout is not None
        process.stdout.close()
        err.close()


def judge_config(addresses: list[str]) -> dict[str, object]:
    return listener_config(
        {
            "users": {
                "algorithm": "consistent_hash",
                "hash_key": "header:x-user-id",
                "backends": addresses,
            },
            "sessions": {
                "sticky": {"cookie": {"secret_env": SECRET_ENV, "ttl": "1h"}},
                "backends": addresses,
            },
        },
        routes=[
            {"match": {"path_prefix": "/session/"}, "pool": "sessions"},
            {"pool": "users"},
        ],
    )


def set_cookie(response: httpx.Response) -> str | None:
    for line in response.headers.get_list("set-cookie"):
        parsed: SimpleCookie = SimpleCookie()
        parsed.load(line)
        if COOKIE in parsed:
            return parsed[COOKIE].value
    return None


def test_user_ids_stick_and_a_cookie_session_survives_sigkill_of_its_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, "judge-secret-" + "x" * 20)
    with contextlib.ExitStack() as stack:
        procs = {}
        for name in "abc":
            procs[name] = stack.enter_context(backend_process(name, tmp_path))
        addresses = [address for _, address in procs.values()]
        evenflow = stack.enter_context(running_evenflow(judge_config(addresses), tmp_path))

        # 1. x-user-id: 100 users, ten requests each, interleaved, over one keep-alive connection
        users = [f"user-{i}" for i in range(100)] * 10
        random.Random(4).shuffle(users)
        served: dict[str, Counter[str]] = {}
        conn = http.client.HTTPConnection("127.0.0.1", evenflow.port, timeout=10)
        try:
            for user in users:
                conn.request("GET", "/profile", headers={"x-user-id": user})
                response = conn.getresponse()
                response.read()
                assert response.status == 200
                served.setdefault(user, Counter())[response.getheader("x-backend", "")] += 1
        finally:
            conn.close()
        assert sum(sum(c.values()) for c in served.values()) == 1000
        assert all(len(c) == 1 for c in served.values()), {
            u: c for u, c in served.items() if len(c) > 1
        }
        assert len({next(iter(c)) for c in served.values()}) == 3  # the keys spread

        # 2. a cookie session: pinned, kept, then its backend is SIGKILLed
        with httpx.Client(base_url=evenflow.url, timeout=10) as browser:
            first = browser.get("/session/cart")
            assert first.status_code == 200
            token = set_cookie(first)
            pinned = first.headers["x-backend"]
            assert token is not None and browser.cookies[COOKIE] == token
            for address in addresses:  # opaque: names no backend
                assert address not in token and address.rpartition(":")[2] not in token
            for _ in range(20):
                again = browser.get("/session/cart")
                assert (again.status_code, again.headers["x-backend"]) == (200, pinned)
                assert set_cookie(again) is None
            process, _ = procs[pinned]
            process.send_signal(signal.SIGKILL)
            process.wait(5)
            moved = browser.get("/session/cart")
            assert moved.status_code == 200  # no error for the user: served elsewhere
            new_backend = moved.headers["x-backend"]
            new_token = set_cookie(moved)
            assert new_backend != pinned
            assert new_token is not None and new_token != token
            assert browser.cookies[COOKIE] == new_token
            for _ in range(20):
                again = browser.get("/session/cart")
                assert (again.status_code, again.headers["x-backend"]) == (200, new_backend)
                assert set_cookie(again) is None
