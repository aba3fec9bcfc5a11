"""Black-box helpers for the observability judges: evenflow with its admin API, as a process.

evenflow runs as a user runs it (`python -m evenflow run -c FILE`) with one HTTP listener and the
admin API (dashboard, /metrics) each on a free port of 127.0.0.1; both ports are picked again
when another process took one first. Backends come from health_support (one process each, so
one can be SIGKILLed). Whatever a helper starts, it stops.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

START_TIMEOUT_S = 15.0  # a cold interpreter importing evenflow on a busy 2-core machine
STOP_TIMEOUT_S = 5.0
START_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Evenflow:
    """A running `evenflow run`: its listener, its admin API, its log files."""

    process: subprocess.Popen[bytes]
    port: int
    admin_port: int
    workdir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def access_path(self) -> Path:
        return self.workdir / "access.log"

    def log_text(self) -> str:
        return (self.workdir / "evenflow.log").read_text(encoding="utf-8", errors="replace")

    def access_lines(self, count: int, within_s: float = 5.0) -> list[str]:
        """The access log's complete lines, once there are at least `count` (the log is
        flushed every 0.2 s)."""
        deadline = time.monotonic() + within_s
        while True:
            text = self.access_path.read_text("utf-8") if self.access_path.exists() else ""
            lines = text.splitlines(keepends=True)
            complete = [line.rstrip("\n") for line in lines if line.endswith("\n")]
            if len(complete) >= count:
                return complete
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(complete)} access-log lines after {within_s}s, expected {count}:\n"
                    + text[-2000:]
                )
            time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def running_evenflow(
    build: Callable[[int, int], dict[str, Any]],
    workdir: Path,
    env: dict[str, str] | None = None,
) -> Iterator[Evenflow]:
    """evenflow with the config `build(listener_port, admin_port)`, once both ports accept.
    `env` is added to the environment (an admin token, say)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EVENFLOW_")}
    environment.update(env or {})
    running: Evenflow | None = None
    for _ in range(START_ATTEMPTS):
        port, admin_port = free_port(), free_port()
        config_path = workdir / "evenflow.yaml"
        config_path.write_text(yaml.safe_dump(build(port, admin_port), sort_keys=False))
        with (workdir / "evenflow.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "evenflow", "run", "-c", str(config_path)],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
            )
        candidate = Evenflow(process, port, admin_port, workdir)
        deadline = time.monotonic() + START_TIMEOUT_S
        while process.poll() is None and time.monotonic() < deadline:
            if _accepts(port) and _accepts(admin_port):
                running = candidate
                break
            time.sleep(0.05)
        if running is not None:
            break
        _stop(process)
        if "cannot listen" not in candidate.log_text():
            raise RuntimeError(f"evenflow did not start:\n{candidate.log_text()[-3000:]}")
    assert running is not None, f"evenflow found no free ports in {START_ATTEMPTS} tries"
    try:
        yield running
    finally:
        _stop(running.process)


def curl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """curl, never reading ~/.curlrc, never using a proxy from the environment."""
    return subprocess.run(
        ["curl", "-q", "--noproxy", "*", "-sS", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
