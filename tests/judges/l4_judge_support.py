"""Black-box helpers for the layer 4 judges: evenflow and its peers as separate processes.

evenflow runs as a user runs it (`python -m evenflow run -c FILE`); listeners written with an
empty `bind` get a free port of their kind (tcp or udp) and the start is retried if another
process took one meanwhile. It is ready when it has logged `listener NAME on ADDR` for every
listener. Peers (redis-server, nginx, small scripts) run in their own sessions; every helper is a
context manager that stops what it started (SIGTERM, then SIGKILL), so nothing is left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")  # nginx lives there; a user's PATH may lack it


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tool(command: str) -> str:
    """The path of a program the judges drive; a clear failure when it is not installed."""
    found = shutil.which(command) or next(
        (f"{d}/{command}" for d in SBIN if os.access(f"{d}/{command}", os.X_OK)), None
    )
    if found is None:
        raise AssertionError(f"{command} is not installed: run scripts/test-tools.sh as root")
    return found


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("EVENFLOW_ADMIN_TOKEN", None)
    return env


# --- evenflow ---------------------------------------------------------------------------------


@dataclass
class Evenflow:
    process: subprocess.Popen[bytes]
    ports: dict[str, int]  # listener name -> port
    log_path: Path
    admin: str | None  # host:port of the admin API, when configured

    def port(self, listener: str = "l4") -> int:
        return self.ports[listener]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def api(self, path: str) -> Any:
        assert self.admin is not None
        with urllib.request.urlopen(f"http://{self.admin}{path}", timeout=5) as response:
            return json.load(response)

    def backend_states(self, pool: str) -> dict[str, str]:
        """address -> state (healthy, unhealthy, draining...), from the admin API."""
        return {b["address"]: b["state"] for b in self.api(f"/api/v1/pools/{pool}")["backends"]}


@contextlib.contextmanager
def running_evenflow(config: dict[str, Any], workdir: Path) -> Iterator[Evenflow]:
    """`python -m evenflow run -c FILE` with `config`; empty binds (and admin) get free ports."""
    config_path = workdir / "evenflow.yaml"
    log_path = workdir / "evenflow.log"
    unbound = [lst for lst in config["listeners"] if not lst.get("bind")]
    admin_unbound = "admin" in config and not config["admin"].get("bind")
    for _ in range(5):
        for listener in unbound:
            kind = socket.SOCK_DGRAM if listener.get("protocol") == "udp" else socket.SOCK_STREAM
            listener["bind"] = f"127.0.0.1:{free_port(kind)}"
        if admin_unbound:
            config["admin"]["bind"] = f"127.0.0.1:{free_port()}"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "evenflow", "run", "-c", str(config_path)],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_env(),
                start_new_session=True,
            )
        ports = {lst["name"]: int(lst["bind"].rpartition(":")[2]) for lst in config["listeners"]}
        admin = config["admin"]["bind"] if "admin" in config else None
        running = Evenflow(process, ports, log_path, admin)
        if _wait_ready(running, [lst["name"] for lst in config["listeners"]]):
            break
        stop(process)
        if "cannot listen" not in running.log():
            raise RuntimeError(f"evenflow did not start:\n{running.log()[-4000:]}")
    else:
        raise RuntimeError("evenflow could not bind free ports in 5 tries")
    try:
        yield running
    finally:
        stop(running.process)
        print(f"evenflow log (tail):\n{running.log()[-4000:]}")


def _wait_ready(running: Evenflow, listeners: list[str]) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while running.process.poll() is None and time.monotonic() < deadline:
        log = running.log()
        if all(f"listener {name} on " in log for name in listeners):
            if running.admin is None:
                return True
            with contextlib.suppress(OSError):
                running.api("/live")
                return True
        time.sleep(0.05)
    return False


# --- peers ------------------------------------------------------------------------------------


@contextlib.contextmanager
def started(argv: list[str], workdir: Path, name: str) -> Iterator[subprocess.Popen[bytes]]:
    """A peer process in its own session, output to NAME.log; stopped on exit."""
    log = (workdir / f"{name}.log").open("wb")
    process = subprocess.Popen(
        argv,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        stop(process)
        log.close()


@contextlib.contextmanager
def script(source: str, args: list[str], workdir: Path, name: str) -> Iterator[ScriptPeer]:
    """A Python peer printing `listening HOST:PORT` once it serves; yields it and its address."""
    path = workdir / f"{name}.py"
    path.write_text(source)
    err = (workdir / f"{name}.err").open("wb")
    process = subprocess.Popen(
        [sys.executable, str(path), *args],
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=err,
        start_new_session=True,
    )
    try:
        yield ScriptPeer(process, _read_address(process, workdir / f"{name}.err"))
    finally:
        stop(process)
        assert process.stdout is not None
        process.stdout.close()
        err.close()


@dataclass
class ScriptPeer:
    process: subprocess.Popen[bytes]
    address: str


def _read_address(process: subprocess.Popen[bytes], err: Path) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    buffer = b""
    with selectors.DefaultSelector() as sel:
        sel.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            left = deadline - time.monotonic()
            if left <= 0 or process.poll() is not None:
                raise RuntimeError(f"peer did not start: {err.read_text(errors='replace')}")
            if sel.select(min(left, 0.2)):
                buffer += os.read(process.stdout.fileno(), 4096)
    words = buffer.split(b"\n", 1)[0].decode().split()
    assert words[0] == "listening", words
    return words[1]


def wait_tcp(port: int, timeout_s: float = START_TIMEOUT_S) -> None:
    """Until 127.0.0.1:port accepts a connection."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def curl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """curl, never reading ~/.curlrc, never using a proxy from the environment."""
    return run([tool("curl"), "-q", "--noproxy", "*", "-sS", *args], timeout)


def nginx_conf(prefix: Path, servers: str) -> Path:
    """An nginx.conf under `prefix` (one worker, foreground) with these server blocks."""
    prefix.mkdir(parents=True, exist_ok=True)
    prefix.chmod(0o755)  # workers drop to an unprivileged user when started as root
    temp = "\n".join(
        f"  {kind}_temp_path {prefix}/{kind}_temp;"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
{temp}
{servers}
}}
"""
    )
    return conf


@contextlib.contextmanager
def nginx(prefix: Path, servers: str, ports: list[int]) -> Iterator[subprocess.Popen[bytes]]:
    conf = nginx_conf(prefix, servers)
    argv = [tool("nginx"), "-p", str(prefix), "-e", "stderr", "-c", str(conf)]
    with started(argv, prefix, "nginx") as process:
        for port in ports:
            wait_tcp(port)
        yield process
