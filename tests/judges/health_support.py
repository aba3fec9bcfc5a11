"""Black-box helpers for the health judges: evenflow and backends as processes, a client load.

evenflow runs as a user runs it (`python -m evenflow run -c FILE`); its stderr (flip, panic and
ejection lines, each stamped by the logging module) and its JSON access log are files the
judges read. Each demo backend is its own process (`python -m evenflow.demo.backend`), so one
can be killed with SIGKILL and started again on the same port. `FLAKY_BACKEND` is a backend
that answers 500 to about half the requests. Whatever a helper starts, it stops.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

START_TIMEOUT_S = 15.0  # a cold interpreter importing evenflow on a busy 2-core machine
STOP_TIMEOUT_S = 5.0
START_ATTEMPTS = 3  # a free port can be taken by another process before evenflow binds it

# Answers 500 to about half the requests (seeded, so a run can be replayed), 200 otherwise,
# keep-alive, GET/HEAD only; /healthz always 200: it is up, it is just bad at its job.
FLAKY_BACKEND = r"""
import asyncio, random, sys

NAME, SEED = sys.argv[1], int(sys.argv[2])
rng = random.Random(SEED)


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1]
            status = 200 if path == b"/healthz" or rng.random() < 0.5 else 500
            body = b"backend " + NAME.encode() + b" " + str(status).encode() + b"\n"
            reason = b"OK" if status == 200 else b"Internal Server Error"
            writer.write(
                b"HTTP/1.1 " + str(status).encode() + b" " + reason
                + b"\r\nx-backend: " + NAME.encode()
                + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print("listening", NAME, "127.0.0.1:%d" % port, flush=True)
    await server.serve_forever()


asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("EVENFLOW_ADMIN_TOKEN", None)
    return env


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)


# --- backends ---------------------------------------------------------------------------------


@dataclass
class Backend:
    """One backend process: its name, the address it announced, and the process."""

    name: str
    address: str
    process: subprocess.Popen[bytes]

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def kill(self) -> None:
        """SIGKILL: no graceful close; its sockets are reset by the kernel."""
        self.process.kill()
        self.process.wait(STOP_TIMEOUT_S)

    def set_health(self, ok: bool) -> None:
        """Flip the demo backend's /healthz (it keeps serving everything else)."""
        response = httpx.post(
            f"http://{self.address}/_control/health",
            params={"ok": "1" if ok else "0"},
            trust_env=False,
            timeout=5.0,
        )
        response.raise_for_status()


class Backends:
    """Starts backend processes and stops every one it started."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._started: list[subprocess.Popen[bytes]] = []

    def demo(self, name: str, port: int = 0) -> Backend:
        args = ["-m", "evenflow.demo.backend", "--name", name, "--port", str(port)]
        return self._spawn(name, args)

    def flaky(self, name: str, seed: int) -> Backend:
        script = self.workdir / "flaky_backend.py"
        script.write_text(FLAKY_BACKEND, encoding="utf-8")
        return self._spawn(name, [str(script), name, str(seed)])

    def _spawn(self, name: str, args: list[str]) -> Backend:
        err_path = self.workdir / f"backend-{name}-{len(self._started)}.err"
        with err_path.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, *args],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env=_env(),
            )
        self._started.append(process)
        address = _read_listening(process, name, err_path)
        return Backend(name, address, process)

    def stop_all(self) -> None:
        for process in self._started:
            _stop(process)
            if process.stdout is not None:
                process.stdout.close()


def _read_listening(process: subprocess.Popen[bytes], name: str, err_path: Path) -> str:
    """The address in the backend's `listening NAME HOST:PORT` line."""
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    buffer = b""
    with selectors.DefaultSelector() as sel:
        sel.register(process.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or process.poll() is not None:
                raise RuntimeError(
                    f"backend {name} did not start: {err_path.read_text(errors='replace')}"
                )
            if sel.select(min(left, 0.2)):
                chunk = os.read(process.stdout.fileno(), 4096)
                buffer += chunk
                for line in buffer.decode(errors="replace").splitlines():
                    parts = line.split()
                    if len(parts) == 3 and parts[:2] == ["listening", name]:
                        return parts[2]


@contextlib.contextmanager
def backend_processes(workdir: Path) -> Iterator[Backends]:
    backends = Backends(workdir)
    try:
        yield backends
    finally:
        backends.stop_all()


# --- evenflow ---------------------------------------------------------------------------------

# logging's default asctime: "2025-01-31 12:00:00,123" (local time)
_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) ([\w.]+): (.*)$")


@dataclass(frozen=True)
class LogLine:
    at: float  # wall-clock seconds, from the line's own timestamp
    level: str
    logger: str
    message: str


@dataclass(frozen=True)
class Access:
    """One access-log entry, with the time its exchange started (time minus duration)."""

    started: float
    ended: float
    status: int
    backend: str | None
    attempts: int
    failures: tuple[str, ...]


class Evenflow:
    """A running `evenflow run` process: its listener's URL, its log and its access log."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, workdir: Path) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = workdir / "evenflow.log"
        self.access_path = workdir / "access.log"

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_lines(self) -> list[LogLine]:
        lines = []
        for raw in self.log_text().splitlines():
            match = _LOG_LINE.match(raw)
            if match:
                stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
                at = stamp.timestamp()  # naive: local time, as logging wrote it
                lines.append(LogLine(at, match.group(2), match.group(3), match.group(4)))
        return lines

    def matching(self, pattern: str) -> list[LogLine]:
        regex = re.compile(pattern)
        return [line for line in self.log_lines() if regex.search(line.message)]

    def wait_for_line(self, pattern: str, within_s: float) -> LogLine:
        """The first log line whose message matches `pattern`, waiting up to `within_s`."""
        deadline = time.monotonic() + within_s
        while True:
            found = self.matching(pattern)
            if found:
                return found[0]
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(
                    f"no log line matching {pattern!r} within {within_s}s; log tail:\n"
                    + self.log_text()[-3000:]
                )
            time.sleep(0.02)

    def access(self) -> list[Access]:
        """Every complete access-log line written so far (it is flushed every 0.2s)."""
        if not self.access_path.exists():
            return []
        entries = []
        text = self.access_path.read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # being written
            record = json.loads(line)
            ended = (
                datetime.strptime(record["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
                .replace(tzinfo=UTC)
                .timestamp()
            )
            entries.append(
                Access(
                    started=ended - record["duration_ms"] / 1000,
                    ended=ended,
                    status=record["status"],
                    backend=record.get("backend"),
                    attempts=record.get("attempts", 0),
                    failures=tuple(record.get("failures", ())),
                )
            )
        return entries


@contextlib.contextmanager
def running_evenflow(pools: dict[str, Any], workdir: Path, **top: Any) -> Iterator[Evenflow]:
    """evenflow with one HTTP listener routing to pool `web`, logs in `workdir`."""
    for attempt in range(1, START_ATTEMPTS + 1):
        port = free_port()
        config = {
            "listeners": [{"name": "web", "bind": f"127.0.0.1:{port}", "pool": "web"}],
            "pools": pools,
            "access_log": {"path": str(workdir / "access.log"), "format": "json"},
            "drain_timeout": "1s",
            **top,
        }
        config_path = workdir / "evenflow.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        with (workdir / "evenflow.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "evenflow", "run", "-c", str(config_path)],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_env(),
            )
        running = Evenflow(process, port, workdir)
        try:
            if _wait_accepting(running):
                break
        except BaseException:
            _stop(process)
            raise
        _stop(process)
        if attempt == START_ATTEMPTS:
            raise RuntimeError(f"evenflow did not start:\n{running.log_text()[-3000:]}")
    try:
        yield running
    finally:
        _stop(running.process)


def _wait_accepting(running: Evenflow) -> bool:
    """True once evenflow's listener accepts; False if evenflow exited (port taken?)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", running.port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"evenflow did not listen in time:\n{running.log_text()[-3000:]}")


# --- client load ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    started: float  # wall clock, comparable with evenflow's log stamps
    ended: float
    status: int | None  # None: the request failed without a response
    backend: str | None  # x-backend
    error: str | None


class Load:
    """`clients` threads sending `method` `path` in a loop, each on its own keep-alive
    connection (a POST carries a small body)."""

    def __init__(
        self,
        url: str,
        clients: int = 4,
        path: str = "/",
        pause_s: float = 0.003,
        method: str = "GET",
    ) -> None:
        self.url = url + path
        self.pause_s = pause_s
        self.method = method
        self.body = b"payload" if method == "POST" else None
        self.results: list[Result] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"load-{i}", daemon=True)
            for i in range(clients)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10.0)

    def _run(self) -> None:
        with httpx.Client(trust_env=False, timeout=5.0) as client:
            while not self._stop.is_set():
                started = time.time()
                try:
                    response = client.request(self.method, self.url, content=self.body)
                    result = Result(
                        started,
                        time.time(),
                        response.status_code,
                        response.headers.get("x-backend"),
                        None,
                    )
                except httpx.HTTPError as exc:
                    result = Result(started, time.time(), None, None, repr(exc))
                with self._lock:
                    self.results.append(result)
                if self.pause_s:
                    time.sleep(self.pause_s)

    def snapshot(self) -> list[Result]:
        with self._lock:
            return list(self.results)

    def wait_for(self, count: int, within_s: float) -> None:
        """Wait until `count` more results arrived (the load is flowing)."""
        target = len(self.snapshot()) + count
        deadline = time.monotonic() + within_s
        while len(self.snapshot()) < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"the client load made no progress in {within_s}s")
            time.sleep(0.02)


def share(results: list[Result], name: str) -> float:
    """The share of answered requests that `name` served."""
    answered = [r for r in results if r.backend is not None]
    return sum(1 for r in answered if r.backend == name) / len(answered) if answered else 0.0
