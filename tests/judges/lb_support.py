"""Black-box helpers for the load-balancing judges: processes started as a user starts them.

evenflow runs as `python -m evenflow run -c FILE` from a scratch directory; demo backends run as
`python -m evenflow.demo.backend --name N --port 0 ...` and announce `listening NAME HOST:PORT`.
Every helper is a context manager that stops what it started (SIGTERM, then SIGKILL), so a test
that fails half-way leaves nothing running. Ports: the config refuses `bind: host:0`, so a free
port is found first and the start is retried if another process took it meanwhile.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0

# The documented shape of the demo backend's generated `size=N` bodies: a 64 KiB block of lines
# "%015d\n" % i, i = 0..4095, repeated.
FILL = b"".join(b"%015d\n" % i for i in range(4096))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def generated_sha256(size: int) -> str:
    """sha256 of the demo backend's `size=N` body, computed independently."""
    digest = hashlib.sha256()
    whole, rest = divmod(size, len(FILL))
    for _ in range(whole):
        digest.update(FILL)
    digest.update(FILL[:rest])
    return digest.hexdigest()


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
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


# --- demo backends ----------------------------------------------------------------------------


@contextlib.contextmanager
def demo_backends(*names: str, workdir: Path) -> Iterator[dict[str, str]]:
    """Demo backends in one subprocess, via the CLI; yields name → host:port."""
    args = [sys.executable, "-m", "evenflow.demo.backend"]
    for name in names:
        args += ["--name", name, "--port", "0"]
    err = (workdir / f"backends-{'-'.join(names)}.err").open("wb")
    process = subprocess.Popen(
        args, cwd=workdir, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=_env()
    )
    try:
        yield _read_listening(process, names, err.name)
    finally:
        _stop(process)
        assert process.stdout is not None
        process.stdout.close()
        err.close()


def _read_listening(
    process: subprocess.Popen[bytes], names: tuple[str, ...], err: str
) -> dict[str, str]:
    """Reads `listening NAME HOST:PORT` lines until every name has announced itself."""
    assert process.stdout is not None
    found: dict[str, str] = {}
    deadline = time.monotonic() + START_TIMEOUT_S
    with selectors.DefaultSelector() as sel:
        sel.register(process.stdout, selectors.EVENT_READ)
        buffer = b""
        while len(found) < len(names):
            left = deadline - time.monotonic()
            if left <= 0 or process.poll() is not None:
                raise RuntimeError(
                    f"backends {names} did not start: {Path(err).read_text(errors='replace')}"
                )
            if sel.select(min(left, 0.2)):
                chunk = os.read(process.stdout.fileno(), 4096)
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    parts = line.decode().split()
                    if len(parts) == 3 and parts[0] == "listening":
                        found[parts[1]] = parts[2]
    return found


SLOW_BACKEND = r"""
import asyncio, sys

NAME, DELAY_S = sys.argv[1], float(sys.argv[2])


async def handle(reader, writer):
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")  # GET only: no body follows
            await asyncio.sleep(DELAY_S)
            body = b"backend " + NAME.encode() + b"\n"
            writer.write(
                b"HTTP/1.1 200 OK\r\nx-backend: " + NAME.encode()
                + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
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


@contextlib.contextmanager
def slow_backend(name: str, delay_s: float, workdir: Path) -> Iterator[str]:
    """A backend that answers every request `delay_s` late (the demo backend has no such
    per-backend setting: `?delay=` is per request and would slow every backend alike)."""
    with _script_backend(SLOW_BACKEND, name, [str(delay_s)], workdir) as address:
        yield address


SLOW_SINK = r"""
import asyncio, hashlib, json, sys

NAME, PAUSE_AFTER, PAUSE_S = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])


async def body_pieces(reader, headers):
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailer fields
                return
            while size:
                data = await reader.read(min(size, 65536))
                if not data:
                    raise ConnectionError("body cut short")
                size -= len(data)
                yield data
            await reader.readexactly(2)
    else:
        left = int(headers.get("content-length", "0"))
        while left:
            data = await reader.read(min(left, 65536))
            if not data:
                raise ConnectionError("body cut short")
            left -= len(data)
            yield data


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                if line:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
            if headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            digest, count, paused = hashlib.sha256(), 0, False
            async for data in body_pieces(reader, headers):
                digest.update(data)
                count += len(data)
                if not paused and count >= PAUSE_AFTER:
                    paused = True
                    await asyncio.sleep(PAUSE_S)  # stop reading: the sender must wait
            body = json.dumps({"backend": NAME, "headers": sorted(headers.items()),
                               "body_bytes": count, "body_sha256": digest.hexdigest()}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
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


@contextlib.contextmanager
def slow_sink(name: str, pause_after: int, pause_s: float, workdir: Path) -> Iterator[str]:
    """A backend that hashes request bodies and stops reading for `pause_s` once `pause_after`
    bytes of a body arrived: an upload's sender must then wait, not fill evenflow's memory."""
    with _script_backend(SLOW_SINK, name, [str(pause_after), str(pause_s)], workdir) as address:
        yield address


@contextlib.contextmanager
def _script_backend(source: str, name: str, args: list[str], workdir: Path) -> Iterator[str]:
    script = workdir / f"backend_{name}.py"
    script.write_text(source)
    err = (workdir / f"backend-{name}.err").open("wb")
    process = subprocess.Popen(
        [sys.executable, str(script), name, *args],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=err,
        stdin=subprocess.DEVNULL,
    )
    try:
        yield _read_listening(process, (name,), err.name)[name]
    finally:
        _stop(process)
        assert process.stdout is not None
        process.stdout.close()
        err.close()


# --- evenflow ---------------------------------------------------------------------------------


@dataclass
class Evenflow:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    config_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_bytes(self) -> int:
        """VmRSS of the evenflow process, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS line")


def listener_config(
    pools: dict[str, Any], *, pool: str | None = None, routes: list[Any] | None = None, **top: Any
) -> dict[str, Any]:
    listener: dict[str, Any] = {"name": "web", "bind": "127.0.0.1:1"}
    if pool is not None:
        listener["pool"] = pool
    if routes is not None:
        listener["routes"] = routes
    return {"listeners": [listener], "pools": pools, "access_log": {"path": "off"}, **top}


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def running_evenflow(config: dict[str, Any], workdir: Path) -> Iterator[Evenflow]:
    """`python -m evenflow run -c FILE` with `config` (its first listener gets a free port)."""
    config_path = workdir / "evenflow.yaml"
    log_path = workdir / "evenflow.log"
    running: Evenflow | None = None
    for _ in range(5):
        port = free_port()
        config["listeners"][0]["bind"] = f"127.0.0.1:{port}"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "evenflow", "run", "-c", str(config_path)],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_env(),
            )
        candidate = Evenflow(process, port, log_path, config_path)
        deadline = time.monotonic() + START_TIMEOUT_S
        while process.poll() is None and time.monotonic() < deadline:
            if _accepts(port):
                running = candidate
                break
            time.sleep(0.05)
        if running is not None:
            break
        _stop(process)
        if "cannot listen" not in candidate.log():
            raise RuntimeError(f"evenflow did not start:\n{candidate.log()[-4000:]}")
    assert running is not None, "evenflow could not bind a free port in 5 tries"
    try:
        yield running
    finally:
        _stop(running.process)
        print(f"evenflow log (tail):\n{running.log()[-3000:]}")


# --- measuring --------------------------------------------------------------------------------


class RssSampler:
    """Samples a process's VmRSS every `interval_s` on a thread, between start and stop."""

    def __init__(self, evenflow: Evenflow, interval_s: float = 0.005) -> None:
        self.evenflow = evenflow
        self.interval_s = interval_s
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, RuntimeError):
                self.samples.append(self.evenflow.rss_bytes())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def peak(self) -> int:
        return max(self.samples)


def curl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """curl, never reading ~/.curlrc, never using a proxy from the environment."""
    return subprocess.run(
        ["curl", "-q", "--noproxy", "*", "-sS", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
