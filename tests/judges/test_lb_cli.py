"""Judge: `evenflow check` and the CLI's answers to mistakes, as a user sees them in a terminal.

A valid file: exit 0. An invalid one: exit 2 and every problem, each with its path. A bad flag,
a missing or unreadable file: exit 2 and one clear line, never a traceback.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from lb_support import free_port

pytestmark = [pytest.mark.judge, pytest.mark.timeout(60)]


def evenflow(*args: str, cwd: Path, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evenflow", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def write(tmp_path: Path, text: str, name: str = "evenflow.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def assert_one_clear_line(done: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    got = lines(done.stderr)
    assert len(got) == 1, f"want one line on stderr, got {len(got)}:\n{done.stderr}"
    return got[0]


VALID = """\
    listeners:
      - name: web
        bind: 127.0.0.1:18080
        timeouts: {header: 10s, idle: 60s}
        limits: {max_connections: 1000, max_header_bytes: 64KiB, max_body_bytes: 10MiB}
        routes:
          - name: canary
            match: {headers: {x-canary: "true"}}
            pool: canary
          - name: api
            match: {host: "*.example.com", path_prefix: /api/}
            split:
              - {pool: web, weight: 95}
              - {pool: canary, weight: 5}
            request_headers: {set: {x-route: api}, remove: [x-internal]}
            response_headers: {set: {x-served-by: evenflow}}
          - name: default
            pool: web
    pools:
      web:
        algorithm: weighted_round_robin
        backends:
          - 127.0.0.1:9001
          - {address: 127.0.0.1:9002, weight: 4}
        timeouts: {connect: 2s, response: 30s, idle: 60s}
        retries: {attempts: 2}
      canary:
        algorithm: least_conn
        backends: [127.0.0.1:9003]
    access_log: {path: stderr, format: json}
    drain_timeout: 5s
"""


def test_check_valid_file_exits_0(tmp_path: Path) -> None:
    done = evenflow("check", "-c", str(write(tmp_path, VALID)), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "ok" in done.stdout


def test_check_reports_every_schema_problem_with_its_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        listeners:
          - name: web
            bind: 127.0.0.1:99999
            pool: p
        pools:
          p:
            algorithm: fastest
            backends:
              - {address: 127.0.0.1:9001, weight: -1}
            timeouts: {connect: soon}
            retrys: {attempts: 2}
        """,
    )
    done = evenflow("check", "-c", str(path), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    for where in (
        "listeners[0].bind",
        "pools.p.algorithm",
        "pools.p.backends[0].weight",
        "pools.p.timeouts.connect",
        "pools.p.retrys",
    ):
        assert where in done.stderr, f"{where} missing from:\n{done.stderr}"
    assert str(path) in done.stderr


def test_check_reports_every_cross_field_problem_with_its_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        listeners:
          - name: web
            bind: 127.0.0.1:18080
            routes:
              - {pool: nowhere}
          - name: web
            bind: 127.0.0.1:18080
            pool: p
        pools:
          p:
            backends: [{address: 127.0.0.1:9001, weight: 0}]
        """,
    )
    done = evenflow("check", "-c", str(path), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    for where in (
        "listeners[0].routes[0].pool",
        "listeners[1].name",
        "listeners[1].bind",
        "pools.p.backends",
    ):
        assert where in done.stderr, f"{where} missing from:\n{done.stderr}"


def test_check_reports_schema_and_cross_field_problems_together(tmp_path: Path) -> None:
    # "every problem at once" (CONFIG.md): a user fixing a typo should not then discover that
    # a route names a pool that does not exist
    path = write(
        tmp_path,
        """\
        listeners:
          - name: web
            bind: 127.0.0.1:18080
            routes:
              - {pool: nowhere}
        pools:
          p:
            backends: [127.0.0.1:9001]
            retrys: {attempts: 2}
        """,
    )
    done = evenflow("check", "-c", str(path), cwd=tmp_path)
    assert done.returncode == 2
    assert "pools.p.retrys" in done.stderr, done.stderr
    assert "listeners[0].routes[0].pool" in done.stderr, done.stderr


def test_check_missing_environment_variable(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        listeners:
          - {name: web, bind: "127.0.0.1:${EVENFLOW_TEST_SURELY_UNSET_PORT}", pool: p}
        pools:
          p: {backends: [127.0.0.1:9001]}
        """,
    )
    done = evenflow("check", "-c", str(path), cwd=tmp_path)
    line = assert_one_clear_line(done)
    assert "EVENFLOW_TEST_SURELY_UNSET_PORT" in line and "listeners[0].bind" in line


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--bogus", "-c", "x.yaml"],
        ["check", "--frobnicate"],
        ["check"],
        ["frobnicate"],
        ["run", "-c"],
    ],
    ids=["run-unknown-flag", "check-unknown-flag", "check-no-config", "no-such-command", "no-arg"],
)
def test_bad_flag_one_line_no_traceback(tmp_path: Path, args: list[str]) -> None:
    assert_one_clear_line(evenflow(*args, cwd=tmp_path))


@pytest.mark.parametrize("command", ["check", "run"])
def test_missing_file_one_line_no_traceback(tmp_path: Path, command: str) -> None:
    missing = tmp_path / "nope" / "evenflow.yaml"
    line = assert_one_clear_line(evenflow(command, "-c", str(missing), cwd=tmp_path))
    assert str(missing) in line


@pytest.mark.parametrize("command", ["check", "run"])
def test_directory_instead_of_file_one_line(tmp_path: Path, command: str) -> None:
    line = assert_one_clear_line(evenflow(command, "-c", str(tmp_path), cwd=tmp_path))
    assert str(tmp_path) in line


@pytest.mark.parametrize("command", ["check", "run"])
def test_not_yaml_one_line_with_position(tmp_path: Path, command: str) -> None:
    path = write(tmp_path, "listeners: [\n  {name: web, bind: \n pools: {\n")
    line = assert_one_clear_line(evenflow(command, "-c", str(path), cwd=tmp_path))
    assert "line" in line


def test_run_on_a_taken_port_exits_1_with_a_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write(
            tmp_path,
            f"""\
            listeners: [{{name: web, bind: "127.0.0.1:{port}", pool: p}}]
            pools: {{p: {{backends: ["127.0.0.1:{free_port()}"]}}}}
            """,
        )
        done = evenflow("run", "-c", str(path), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert any("cannot listen" in line and str(port) in line for line in lines(done.stderr))


def test_environment_variable_is_substituted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        listeners:
          - {name: web, bind: "127.0.0.1:${EVENFLOW_TEST_PORT}", pool: p}
        pools:
          p: {backends: ["${EVENFLOW_TEST_BACKEND}"]}
        """,
    )
    done = subprocess.run(
        [sys.executable, "-m", "evenflow", "check", "-c", str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
        env={**os.environ, "EVENFLOW_TEST_PORT": "18081", "EVENFLOW_TEST_BACKEND": "127.0.0.1:9"},
    )
    assert done.returncode == 0, done.stderr


def test_schema_prints_a_json_schema(tmp_path: Path) -> None:
    done = evenflow("schema", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    assert {"listeners", "pools"} <= set(schema["properties"])
    text = done.stdout
    for word in ("round_robin", "least_conn", "max_body_bytes", "drain_timeout"):
        assert word in text
