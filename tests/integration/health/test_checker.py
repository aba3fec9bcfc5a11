"""HealthChecker with a real Controller against demo backends on 127.0.0.1: probing cadence.

Probe at once on start, every `interval` when settled, every `fast_interval` while a flip is
under way or the backend is down, early when traffic saw a failure, and not at all once
stopped. Intervals are tens of milliseconds, so each test runs in about a second.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from evenflow.config.load import load_data
from evenflow.core.backend import BackendState, Health
from evenflow.demo.backend import DemoBackend, start_backends
from evenflow.runtime.controller import Controller

pytestmark = pytest.mark.timeout(30)

INTERVAL_S = 0.4
FAST_S = 0.05
TIMEOUT_S = 0.2


def active(**overrides: Any) -> dict[str, Any]:
    return {
        "http": {"path": "/healthz"},
        "interval": f"{INTERVAL_S}s",
        "fast_interval": f"{FAST_S}s",
        "timeout": f"{TIMEOUT_S}s",
        "jitter": "0%",
        "rise": 2,
        "fall": 3,
        **overrides,
    }


def make_controller(addresses: list[str], **health: Any) -> Controller:
    data = {
        "listeners": [{"name": "web", "bind": "127.0.0.1:8080", "pool": "web"}],
        "pools": {"web": {"backends": addresses, "health": health}},
    }
    return Controller(load_data(data).config)


async def wait_for(condition: Callable[[], bool], within_s: float) -> float:
    """Poll `condition` until true; the seconds it took. Fails the test past `within_s`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within_s:
            raise AssertionError(f"not true within {within_s}s")
        await asyncio.sleep(0.005)
    return time.monotonic() - started


async def stop(controller: Controller) -> None:
    """controller.stop(), bounded. Afterwards no probe task may be left, neither the current
    checkers' nor those a reload or a membership change replaced; any left fails the test
    (and is ended here, so nothing keeps running)."""
    tasks = {t for t in asyncio.all_tasks() if t.get_name().startswith("probe ")}
    stopping = asyncio.ensure_future(controller.stop())
    done, _ = await asyncio.wait({stopping}, timeout=2.0)
    returned = stopping in done
    if tasks:
        await asyncio.wait(tasks, timeout=0.5)
    alive = sorted(t.get_name() for t in tasks if not t.done())
    for task in tasks:
        task.cancel()
    await asyncio.wait({stopping, *tasks}, timeout=2.0)
    assert returned, f"controller.stop() did not return within 2s; probe tasks alive: {alive}"
    stopping.result()
    assert alive == [], f"probe tasks still running after controller.stop(): {alive}"


@pytest.fixture
async def backends() -> AsyncIterator[list[DemoBackend]]:
    started = await start_backends(["a", "b"])
    try:
        yield started
    finally:
        for backend in started:
            await backend.close()


def probes(backend: DemoBackend) -> int:
    return backend.paths["/healthz"]


async def test_every_backend_is_probed_at_once_on_start(backends: list[DemoBackend]) -> None:
    controller = make_controller([b.address for b in backends], active=active(interval="5s"))
    await controller.start()
    try:
        took = await wait_for(lambda: all(probes(b) >= 1 for b in backends), 1.0)
    finally:
        await stop(controller)
    assert took < 0.5  # not one interval (5s) later
    assert all(s.last_probe == "ok" for s in controller.all_backends())


async def test_a_failing_backend_flips_within_interval_plus_fall_fast_probes(
    backends: list[DemoBackend],
) -> None:
    a = backends[0]
    controller = make_controller([b.address for b in backends], active=active())
    state: BackendState = controller.backends["web"][0]
    await controller.start()
    try:
        await wait_for(lambda: probes(a) >= 1, 1.0)
        a.healthy = False
        # the next probe is at most one interval away, then fall - 1 fast ones
        bound = INTERVAL_S + 2 * FAST_S + 3 * TIMEOUT_S
        await wait_for(lambda: state.health is Health.UNHEALTHY, bound)
        assert state.last_flip == "unhealthy: 3 probe failures: status 503"
        assert {b.address for b in controller.views["web"].usable} == {backends[1].address}
        a.healthy = True
        # down: probed at the fast interval, so back after rise fast probes, not intervals
        took = await wait_for(lambda: state.health is Health.HEALTHY, 1.0)
        assert took < INTERVAL_S + FAST_S
        assert state.last_flip == "healthy: 2 probes passed"
    finally:
        await stop(controller)


async def test_settled_backends_are_probed_every_interval_and_down_ones_fast(
    backends: list[DemoBackend],
) -> None:
    up, down = backends
    down.healthy = False
    controller = make_controller([b.address for b in backends], active=active())
    await controller.start()
    try:
        await wait_for(lambda: controller.backends["web"][1].health is Health.UNHEALTHY, 1.0)
        up_before, down_before = probes(up), probes(down)
        await asyncio.sleep(1.0)
        up_count, down_count = probes(up) - up_before, probes(down) - down_before
    finally:
        await stop(controller)
    assert 1 <= up_count <= 4  # every 0.4s
    assert down_count >= 10  # every 0.05s: 20 in a perfect world


async def test_a_failure_on_traffic_brings_the_next_probe_forward(
    backends: list[DemoBackend],
) -> None:
    a = backends[0]
    controller = make_controller(
        [b.address for b in backends],
        active=active(interval="10s", fast_interval="10s", timeout="1s"),
        passive={"consecutive_failures": 5},
    )
    await controller.start()
    try:
        await wait_for(lambda: probes(a) >= 1, 1.0)
        await asyncio.sleep(0.1)
        assert probes(a) == 1
        controller.report_failure(controller.backends["web"][0], "connect failed: reset")
        took = await wait_for(lambda: probes(a) >= 2, 1.0)
    finally:
        await stop(controller)
    assert took < 0.2


async def test_tcp_probes_mark_a_closed_port_down(backends: list[DemoBackend]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{sock.getsockname()[1]}"
    controller = make_controller(
        [backends[0].address, closed], active={**active(), "http": None, "tcp": {}}
    )
    await controller.start()
    try:
        dead = controller.backends["web"][1]
        await wait_for(lambda: dead.health is Health.UNHEALTHY, 1.0)
        assert dead.last_flip == "unhealthy: 3 probe failures: connect failed: connection refused"
        assert controller.backends["web"][0].health is Health.HEALTHY
    finally:
        await stop(controller)


async def test_stop_ends_probing(backends: list[DemoBackend]) -> None:
    a = backends[0]
    controller = make_controller(
        [b.address for b in backends], active=active(interval="50ms", timeout="50ms")
    )
    await controller.start()
    await wait_for(lambda: probes(a) >= 2, 1.0)
    await stop(controller)
    after = probes(a)
    await asyncio.sleep(0.2)
    assert probes(a) == after


async def test_a_backend_added_at_runtime_is_probed_and_a_removed_one_no_longer(
    backends: list[DemoBackend],
) -> None:
    a, b = backends
    controller = make_controller([a.address], active=active(interval="50ms", timeout="50ms"))
    await controller.start()
    try:
        controller.add_backend("web", b.address)
        await wait_for(lambda: probes(b) >= 2, 1.0)
        controller.remove_backend("web", b.address, deadline_s=0.0)
        controller.housekeeping()
        assert [s.address for s in controller.backends["web"]] == [a.address]
        await asyncio.sleep(0.05)
        after = probes(b)
        await asyncio.sleep(0.2)
        assert probes(b) == after
        assert probes(a) >= 4  # a's probing went on through the restart
    finally:
        await stop(controller)


async def test_a_reload_with_new_probe_settings_probes_by_them(
    backends: list[DemoBackend],
) -> None:
    a = backends[0]
    controller = make_controller([a.address], active=active(interval="10s"))
    await controller.start()
    try:
        await wait_for(lambda: probes(a) >= 1, 1.0)
        data = {
            "listeners": [{"name": "web", "bind": "127.0.0.1:8080", "pool": "web"}],
            "pools": {
                "web": {
                    "backends": [a.address],
                    "health": {
                        "active": active(interval="50ms", timeout="50ms", http={"path": "/ready"})
                    },
                }
            },
        }
        controller.apply_config(load_data(data).config)
        await wait_for(lambda: a.paths["/ready"] >= 3, 1.0)
    finally:
        await stop(controller)


@pytest.mark.parametrize("turns", range(6))
async def test_stop_ends_probing_even_right_after_a_wake(
    backends: list[DemoBackend], turns: int
) -> None:
    # A failure on traffic wakes the probe loop just as evenflow shuts down (or a reload
    # restarts the checker): stop() must still end every probe task. `turns` lets the loop
    # run that many iterations between the wake and the stop, to hit each point of the
    # wake-up in turn.
    a = backends[0]
    controller = make_controller(
        [a.address],
        active=active(interval="10s", fast_interval="10s", timeout="1s"),
        passive={"consecutive_failures": 100},
    )
    await controller.start()
    try:
        await wait_for(lambda: probes(a) >= 1, 1.0)
        await asyncio.sleep(0.05)  # parked, waiting for its next interval
        controller.report_failure(controller.backends["web"][0], "connect failed: reset")
        for _ in range(turns):
            await asyncio.sleep(0)
    finally:
        await stop(controller)


async def probe_gaps(jitter: str, run_s: float) -> list[float]:
    """Seconds between successive probes of one settled backend, interval 100ms."""
    arrivals: list[float] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        arrivals.append(time.monotonic())
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    controller = make_controller(
        [f"127.0.0.1:{port}"], active=active(interval="100ms", timeout="50ms", jitter=jitter)
    )
    await controller.start()
    try:
        await asyncio.sleep(run_s)
    finally:
        await stop(controller)
        server.close()
        await server.wait_closed()
    return [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]


async def test_without_jitter_probes_keep_the_interval() -> None:
    gaps = await probe_gaps("0%", 1.2)
    assert len(gaps) >= 8
    assert all(0.095 <= gap <= 0.14 for gap in gaps), gaps


async def test_jitter_spreads_probes_within_its_share_of_the_interval() -> None:
    gaps = await probe_gaps("50%", 1.5)
    assert len(gaps) >= 8
    assert all(0.045 <= gap <= 0.19 for gap in gaps), gaps
    assert max(gaps) - min(gaps) > 0.03, f"no spread: {gaps}"
