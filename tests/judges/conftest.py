"""Fixtures shared by the black-box judges: evenflow as a subprocess, a backend that records.

evenflow runs as a user runs it (`python -m evenflow run -c FILE`) on free ports of 127.0.0.1. The
backend is the demo package's RecordingBackend on its own event loop in a thread, so that a judge
can read what reached it byte for byte. Whatever a fixture starts, its teardown stops.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from evenflow.demo.recorder import RecordingBackend

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 15.0  # a cold interpreter importing evenflow and binding its listener
STOP_TIMEOUT_S = 5.0
START_ATTEMPTS = 3  # a free port can be taken by someone else before evenflow binds it
LOOP_CALL_TIMEOUT_S = 5.0

T = TypeVar("T")


def free_port() -> int:
    """A port of 127.0.0.1 that was free a moment ago (bound to 0, read, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- the recording backend ------------------------------------------------------------------


class UpstreamConnection:
    """One connection evenflow opened to the backend: what it received, and whether it is open."""

    __slots__ = ("received", "is_open")

    def __init__(self, received: bytearray) -> None:
        self.received = received  # the same bytearray RecordingBackend records into
        self.is_open = True


class TrackingRecorder(RecordingBackend):
    """A RecordingBackend that also knows, per connection, whether it is still open.

    `reset()` empties the record of every open connection in place (RecordingBackend's own
    reset would detach them), so bytes that a kept-alive connection receives later are seen.
    Call it, and read `upstream`, on the backend's loop only (see BackendThread.call).
    """

    def __init__(self) -> None:
        super().__init__("recorder")
        self.upstream: list[UpstreamConnection] = []

    def make_protocol(self) -> asyncio.Protocol:
        return _Tracked(self, super().make_protocol())

    def reset(self) -> None:
        super().reset()
        self.upstream = [conn for conn in self.upstream if conn.is_open]
        for conn in self.upstream:
            conn.received.clear()
            self.connections.append(conn.received)


class _Tracked(asyncio.Protocol):
    """Wraps the recorder's protocol to note when the connection closes."""

    __slots__ = ("_backend", "_inner", "_conn")

    def __init__(self, backend: TrackingRecorder, inner: asyncio.Protocol) -> None:
        self._backend = backend
        self._inner = inner
        self._conn: UpstreamConnection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)
        # RecordingBackend appends one bytearray per accepted connection, in accept order
        self._conn = UpstreamConnection(self._backend.connections[-1])
        self._backend.upstream.append(self._conn)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._conn.is_open = False
        self._inner.connection_lost(exc)


@dataclass(frozen=True)
class UpstreamView:
    """A copy, taken on the backend's loop, of one upstream connection."""

    received: bytes
    is_open: bool


class BackendThread:
    """A TrackingRecorder serving on its own event loop in a daemon thread."""

    def __init__(self) -> None:
        self.backend = TrackingRecorder()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="judge-recorder", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        self._await(self.backend.start("127.0.0.1", 0))

    def stop(self) -> None:
        if self._thread.is_alive():
            try:
                self._await(self.backend.close())
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(STOP_TIMEOUT_S)
        if not self._thread.is_alive():
            self.loop.close()

    @property
    def address(self) -> str:
        return self.backend.address

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the backend's loop and return its result (state is read there only)."""

        async def run() -> T:
            return fn()

        return self._await(run())

    def reset(self) -> None:
        self.call(self.backend.reset)

    def snapshot(self) -> list[UpstreamView]:
        """Every connection evenflow has open to the backend or opened since the last reset."""
        return self.call(
            lambda: [UpstreamView(bytes(c.received), c.is_open) for c in self.backend.upstream]
        )

    def _await(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(LOOP_CALL_TIMEOUT_S)


@pytest.fixture(scope="module")
def recorder_backend() -> Iterator[BackendThread]:
    backend = BackendThread()
    try:
        backend.start()
        yield backend
    finally:
        backend.stop()


# --- evenflow --------------------------------------------------------------------------------


class EvenflowExited(RuntimeError):
    """evenflow stopped before its listener accepted a connection."""


@dataclass
class Evenflow:
    """A running `evenflow run` process and the port of its one HTTP listener."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, limit: int = 4000) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-limit:]


def start_evenflow(config: dict[str, Any], port: int, workdir: Path) -> Evenflow:
    """Write `config`, start `python -m evenflow run -c FILE`, return once `port` accepts."""
    config_path = workdir / "evenflow.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    log_path = workdir / "evenflow.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "evenflow", "run", "-c", str(config_path)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    running = Evenflow(port, process, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise EvenflowExited(
                f"evenflow exited with {process.returncode} before listening:\n"
                + running.log_tail()
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return running
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_evenflow(running)
            raise RuntimeError(
                f"evenflow did not accept on port {port} within {START_TIMEOUT_S}s:\n"
                + running.log_tail()
            )
        time.sleep(0.05)


def stop_evenflow(running: Evenflow) -> None:
    """SIGTERM (evenflow drains), then SIGKILL if it is still there after STOP_TIMEOUT_S."""
    process = running.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)


@pytest.fixture(scope="module")
def evenflow_proxy(
    recorder_backend: BackendThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Evenflow]:
    """evenflow with one listener whose only pool is the recording backend, defaults elsewhere."""
    for attempt in range(1, START_ATTEMPTS + 1):
        port = free_port()
        config = {
            "listeners": [{"name": "web", "bind": f"127.0.0.1:{port}", "pool": "web"}],
            "pools": {"web": {"backends": [recorder_backend.address]}},
            "access_log": {"path": "off"},
            "drain_timeout": "1s",
        }
        try:
            running = start_evenflow(config, port, tmp_path_factory.mktemp("evenflow"))
            break
        except EvenflowExited:
            # most likely another process took the free port between our check and the bind
            if attempt == START_ATTEMPTS:
                raise
    try:
        yield running
    finally:
        stop_evenflow(running)
