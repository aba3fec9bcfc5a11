"""Judge: redis-benchmark through an evenflow tcp listener to Debian's redis-server, 0 errors."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from l4_judge_support import free_port, run, running_evenflow, started, tool, wait_tcp

pytestmark = [pytest.mark.judge, pytest.mark.timeout(120)]

TESTS = ["set", "get", "incr", "lpush", "lpop", "mset"]
REQUESTS = 20000


def info_commandstats(port: int) -> dict[str, int]:
    """calls per command, asked of redis directly (not through evenflow)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")
        header = b""
        while not header.endswith(b"\r\n"):
            header += sock.recv(1)
        size = int(header[1:-2])
        body = b""
        while len(body) < size + 2:
            body += sock.recv(65536)
    return {
        name: int(calls)
        for name, calls in re.findall(r"^cmdstat_(\w+):calls=(\d+)", body.decode(), re.M)
    }


@pytest.mark.parametrize("pipeline", [1, 16])
def test_redis_benchmark_through_tcp_listener_has_no_errors(tmp_path: Path, pipeline: int) -> None:
    redis_port = free_port()
    redis = [
        tool("redis-server"),
        "--port", str(redis_port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
    ]  # fmt: skip
    with started(redis, tmp_path, "redis"):
        wait_tcp(redis_port)
        config = {
            "listeners": [{"name": "l4", "bind": "", "protocol": "tcp", "pool": "redis"}],
            "pools": {
                "redis": {
                    "backends": [f"127.0.0.1:{redis_port}"],
                    "health": {"active": {"tcp": {}, "interval": "1s"}},
                }
            },
            "access_log": {"path": "off"},
        }
        with running_evenflow(config, tmp_path) as ef:
            done = run(
                [
                    tool("redis-benchmark"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(ef.port()),
                    "-q",
                    "-n",
                    str(REQUESTS),
                    "-c",
                    "20",
                    "-P",
                    str(pipeline),
                    "-t",
                    ",".join(TESTS),
                ],  # fmt: skip
                timeout=100,
            )
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        assert "error" not in output.lower(), output
        # one "NAME: N requests per second" line per test (LPUSH is run for LPOP's sake too)
        reported = {
            m.group(1).lower()
            for m in re.finditer(r"^(\w+)(?: \(.*\))?: [\d.]+ requests", output, re.M)
        }
        assert set(TESTS) <= reported, output
        calls = info_commandstats(redis_port)
    # every command redis-benchmark sent arrived at redis: nothing lost on the way
    for command in ("set", "get", "incr", "lpop", "mset"):
        assert calls.get(command, 0) >= REQUESTS, (command, calls)
    assert calls.get("lpush", 0) >= REQUESTS
