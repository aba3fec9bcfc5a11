"""Judge: a tcp backend killed (SIGKILL) mid-run; new connections move to the others at once
(connect retried elsewhere), and once tcp health probes see it dead it is not tried at all."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import time
from collections import Counter
from pathlib import Path

import pytest
from l4_judge_support import ScriptPeer, running_evenflow, script

pytestmark = [pytest.mark.judge, pytest.mark.timeout(60)]

# Says its name to each connection, then echoes until the client ends.
NAMED_BACKEND = r"""
import asyncio, sys

NAME = sys.argv[1].encode()

async def handle(reader, writer):
    writer.write(NAME + b"\n")
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print("listening 127.0.0.1:%d" % server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


def one_connection(port: int) -> str:
    """Connect, read the backend's name, check an echo, close; the name or what went wrong."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
            reader = sock.makefile("rb")
            name = reader.readline().strip().decode()
            sock.sendall(b"ping\n")
            if reader.readline() != b"ping\n":
                return f"{name}: bad echo"
            return name
    except OSError as exc:
        return f"error: {exc!r}"


def test_killed_backend_loses_no_new_connection(tmp_path: Path) -> None:
    access_log = tmp_path / "access.log"
    with contextlib.ExitStack() as stack:
        peers: dict[str, ScriptPeer] = {
            name: stack.enter_context(script(NAMED_BACKEND, [name], tmp_path, name))
            for name in ("a", "b", "c")
        }
        config = {
            "listeners": [{"name": "l4", "bind": "", "protocol": "tcp", "pool": "p"}],
            "pools": {
                "p": {
                    "backends": [peer.address for peer in peers.values()],
                    "health": {
                        "active": {
                            "tcp": {},
                            "interval": "200ms",
                            "fast_interval": "200ms",
                            "timeout": "150ms",
                            "fall": 2,
                            "rise": 2,
                        }
                    },
                }
            },
            "admin": {"bind": ""},
            "access_log": {"path": str(access_log)},
        }
        ef = stack.enter_context(running_evenflow(config, tmp_path))
        port = ef.port()
        before = Counter(one_connection(port) for _ in range(30))
        assert before == {"a": 10, "b": 10, "c": 10}, before

        peers["b"].process.send_signal(signal.SIGKILL)
        peers["b"].process.wait(5)
        killed_at = time.monotonic()
        during: Counter[str] = Counter()
        while time.monotonic() - killed_at < 2.0:
            during[one_connection(port)] += 1
        # connect refused by the dead one: retried on another, no client sees a failure
        assert set(during) == {"a", "c"}, during

        deadline = time.monotonic() + 5
        while ef.backend_states("p")[peers["b"].address] != "unhealthy":
            assert time.monotonic() < deadline, ef.backend_states("p")
            time.sleep(0.1)
        seen_dead_after = time.monotonic() - killed_at
        time.sleep(0.5)  # the access log is flushed every 0.2 s
        logged = len(access_log.read_text().splitlines()) if access_log.exists() else 0
        after = Counter(one_connection(port) for _ in range(20))
        assert after == {"a": 10, "c": 10}, after
        time.sleep(0.5)
        lines = [json.loads(line) for line in access_log.read_text().splitlines()[logged:]]
    # 2 failed probes 0.2 s apart: marked down well within a second or two
    assert seen_dead_after < 3.0
    # once marked down, the dead backend is not even tried
    assert len(lines) == 20, lines
    assert all(line["attempts"] == 1 for line in lines), lines
