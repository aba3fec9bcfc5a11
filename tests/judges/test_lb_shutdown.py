"""Judge: SIGTERM/SIGINT drain in-flight requests, refuse new connections, exit 0 in time."""

from __future__ import annotations

import concurrent.futures
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
from lb_support import demo_backends, listener_config, running_evenflow

pytestmark = [pytest.mark.judge, pytest.mark.timeout(60)]

DRAIN_S = 5.0
SLOW_MS = 1500


def slow_get(url: str) -> tuple[int, str, str, float]:
    with httpx.Client(timeout=10, trust_env=False) as c:
        r = c.get(f"{url}/slow?delay={SLOW_MS}")
        return r.status_code, r.text, r.headers.get("connection", ""), time.monotonic()


def refused_within(port: int, limit_s: float) -> float | None:
    """Seconds until a new connection to `port` is refused, or None if it never was."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pass
        except ConnectionRefusedError:
            return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.02)
    return None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_drains_in_flight_requests_and_exits_0(tmp_path: Path, signum: int) -> None:
    with demo_backends("a", workdir=tmp_path) as addr:
        config = listener_config(
            {"p": {"backends": [addr["a"]]}}, pool="p", drain_timeout=f"{DRAIN_S:g}s"
        )
        with running_evenflow(config, tmp_path) as ef:
            idle = socket.create_connection(("127.0.0.1", ef.port), timeout=5)
            try:
                idle.sendall(b"GET /warm HTTP/1.1\r\nHost: t\r\n\r\n")
                assert idle.recv(65536).startswith(b"HTTP/1.1 200 ")
                with concurrent.futures.ThreadPoolExecutor(4) as pool:
                    slow = [pool.submit(slow_get, ef.url) for _ in range(4)]
                    time.sleep(0.5)  # the four requests are at the backend now
                    assert not any(f.done() for f in slow)
                    signalled = time.monotonic()
                    ef.process.send_signal(signum)

                    refused_after = refused_within(ef.port, 1.0)
                    assert refused_after is not None, "new connections still accepted 1s later"
                    # an idle keep-alive connection is closed, not kept until the drain ends
                    idle.settimeout(2)
                    assert idle.recv(65536) == b"", "idle keep-alive connection not closed"

                    results = [f.result(timeout=10) for f in slow]
                for status, text, _, _ in results:
                    assert status == 200
                    assert text == f"backend a: GET /slow?delay={SLOW_MS}\n"
                # the client is told not to reuse a connection that is about to close
                assert [conn.lower() for _, _, conn, _ in results] == ["close"] * 4
                code = ef.process.wait(DRAIN_S + 2)
                exited = time.monotonic()
                assert code == 0, ef.log()[-2000:]
                assert exited - signalled <= DRAIN_S, f"exit {exited - signalled:.2f}s after"
                assert exited >= max(done for *_, done in results) - 0.05
                assert "Traceback" not in ef.log()
            finally:
                idle.close()


def test_request_longer_than_the_drain_timeout_is_cut_and_exit_is_0(tmp_path: Path) -> None:
    with demo_backends("a", workdir=tmp_path) as addr:
        config = listener_config({"p": {"backends": [addr["a"]]}}, pool="p", drain_timeout="1s")
        with running_evenflow(config, tmp_path) as ef:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:

                def too_slow() -> str:
                    with httpx.Client(timeout=15, trust_env=False) as c:
                        try:
                            return str(c.get(f"{ef.url}/slow?delay=8000").status_code)
                        except httpx.HTTPError as exc:
                            return type(exc).__name__

                pending = pool.submit(too_slow)
                time.sleep(0.4)
                signalled = time.monotonic()
                ef.process.send_signal(signal.SIGTERM)
                code = ef.process.wait(5)
                exited = time.monotonic() - signalled
                outcome = pending.result(timeout=10)
            assert code == 0, ef.log()[-2000:]
            assert 0.9 <= exited <= 2.0, f"exited {exited:.2f}s after SIGTERM, drain is 1s"
            assert outcome != "200"
