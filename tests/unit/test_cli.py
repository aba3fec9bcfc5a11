"""The command line as a user meets it: exit codes, and one clear line for every mistake.

`schema`, `check` and usage errors run in-process through `main`; `run` and `demo` start a
subprocess (they install an event loop policy and signal handlers), each bounded in time.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from evenflow import __version__
from evenflow.cli import main
from evenflow.config.model import Config

GOOD = """\
listeners:
  - name: web
    bind: 127.0.0.1:{port}
    routes:
      - {{match: {{path_prefix: /api/}}, pool: api}}
      - pool: web
pools:
  web: {{backends: [127.0.0.1:9001, 127.0.0.1:9002]}}
  api: {{algorithm: least_conn, backends: [127.0.0.1:9003]}}
"""

THREE_PROBLEMS = """\
listeners:
  - name: web
    bind: 127.0.0.1:8080
    timeouts: {idle: 60}
    routes:
      - {pool: web}
pools:
  web:
    algorithm: round_robbin
    backends: [{address: 127.0.0.1:9001, weight: -1}]
"""

THREE_CROSS_FIELD_PROBLEMS = """\
listeners:
  - name: web
    bind: 127.0.0.1:8080
    routes:
      - {name: api, pool: api}
      - {name: api, pool: web}
pools:
  web:
    backends: [{address: 127.0.0.1:9001, weight: 0}]
"""


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `evenflow ARGV`, whether main returns or exits."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, text: str, name: str = "evenflow.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def run_subprocess(*argv: str, timeout_s: float = 20) -> subprocess.CompletedProcess[str]:
    # subprocess.run kills the child if it outlives timeout_s, so nothing is left running.
    return subprocess.run(
        [sys.executable, "-m", "evenflow", *argv],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


# --- schema and --version ---------------------------------------------------------------------


def test_schema_prints_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "schema")
    assert (code, err) == (0, "")
    assert json.loads(out) == Config.model_json_schema()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "--version")
    assert (code, out) == (0, f"evenflow {__version__}\n")


# --- check ------------------------------------------------------------------------------------


def test_check_a_valid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD.format(port=8080))
    code, out, err = run_main(capsys, "check", "-c", path)
    assert (code, out, err) == (0, f"{path}: ok (1 listener(s), 2 pool(s))\n", "")


def test_check_prints_warnings_and_still_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = GOOD.format(port=8080) + "  spare: {backends: [127.0.0.1:9009]}\n"
    path = write(tmp_path, text)
    code, out, err = run_main(capsys, "check", "-c", path)
    assert code == 0
    assert out == f"{path}: ok (1 listener(s), 3 pool(s))\n"
    assert err == f"{path}: warning: pools.spare: pool is not used by any listener or route\n"


def test_check_lists_every_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, THREE_PROBLEMS)
    code, out, err = run_main(capsys, "check", "-c", path)
    assert (code, out) == (2, "")
    lines = err.splitlines()
    assert len(lines) == 4, err
    assert lines[-1] == f"{path}: 3 problems"
    assert f"{path}: pools.web.backends[0].weight: must be >= 0" in lines
    assert f"{path}: listeners[0].timeouts.idle: 60 is not a duration: " in err
    assert f"{path}: pools.web.algorithm: Input should be 'round_robin', " in err


def test_check_lists_every_cross_field_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, THREE_CROSS_FIELD_PROBLEMS)
    code, out, err = run_main(capsys, "check", "-c", path)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"{path}: listeners[0].routes[0].pool: pool 'api' does not exist (pools: web)",
        f"{path}: listeners[0].routes[1].name: route name 'api' used twice",
        f"{path}: pools.web.backends: at least one backend needs a weight > 0",
        f"{path}: 3 problems",
    ]


def test_check_a_missing_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "nope.yaml")
    code, out, err = run_main(capsys, "check", "-c", path)
    assert (code, out, err) == (2, "", f"{path}: cannot read: No such file or directory\n")


def test_check_invalid_yaml_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "listeners: [\n")
    code, _, err = run_main(capsys, "check", "-c", path)
    assert code == 2
    assert err.startswith(f"{path}: line 2, column 1: not valid YAML: ")
    assert err.count("\n") == 1


def test_the_readme_config_example_passes_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = Path(__file__).resolve().parents[2] / "README.md"
    [example] = re.findall(r"```yaml\n(.*?)```", readme.read_text(encoding="utf-8"), re.S)
    # the example's certificate and secrets, made real for this test
    ca = trustme.CA()
    leaf = ca.issue_cert("example.test")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "site.pem"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "site.key"))
    example = example.replace("/etc/evenflow/", f"{tmp_path}/")
    monkeypatch.setenv("EVENFLOW_STICKY_SECRET", "s3cret")
    monkeypatch.setenv("EVENFLOW_ADMIN_TOKEN", "t0ken")
    code, out, err = run_main(capsys, "check", "-c", write(tmp_path, example))
    assert (code, err) == (0, "")
    assert out.endswith(": ok (2 listener(s), 5 pool(s))\n")


# --- usage errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["check"], "the following arguments are required: -c/--config"),
        (["run"], "the following arguments are required: -c/--config"),
        (["check", "-c"], "argument -c/--config: expected one argument"),
        (["check", "-c", "x.yaml", "--strict"], "unrecognized arguments: --strict"),
        (["schema", "extra"], "unrecognized arguments: extra"),
        (["demo", "--port", "eighty"], "argument --port: invalid int value: 'eighty'"),
        (["run", "-c", "x.yaml", "--log-level", "loud"], "argument --log-level: invalid choice"),
    ],
)
def test_usage_error_is_one_line_and_exit_2(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1, err
    assert err.startswith("evenflow: ")
    assert says in err


def test_no_command_shows_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys)
    assert code == 2
    assert "run" in out and "check" in out and "schema" in out


# --- run and demo (subprocess) ----------------------------------------------------------------


def test_run_with_a_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")
    done = run_subprocess("run", "-c", path)
    assert (done.returncode, done.stderr) == (
        2,
        f"{path}: cannot read: No such file or directory\n",
    )


def test_run_with_an_invalid_config_lists_the_problems(tmp_path: Path) -> None:
    path = write(tmp_path, THREE_PROBLEMS)
    done = run_subprocess("run", "-c", path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"{path}: pools.web.backends[0].weight: must be >= 0\n" in done.stderr


def test_run_with_a_host_pattern_the_routes_refuse(tmp_path: Path) -> None:
    # once accepted by the config and refused when routes compiled: a traceback at start-up
    text = GOOD.format(port=8080).replace("{match: {path_prefix: /api/}", "{match: {host: 'a*.b'}")
    done = run_subprocess("run", "-c", write(tmp_path, text))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "listeners[0].routes[0].match.host: host 'a*.b': a wildcard may only" in done.stderr


def test_run_on_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_subprocess("run", "-c", write(tmp_path, GOOD.format(port=port)))
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(f"evenflow: cannot listen on 127.0.0.1:{port} (web): ")
    assert "in use" in line


def test_run_with_an_access_log_it_cannot_open(tmp_path: Path) -> None:
    text = GOOD.format(port=8080) + f"access_log: {{path: {tmp_path}/no/such/dir/access.log}}\n"
    done = run_subprocess("run", "-c", write(tmp_path, text))
    assert done.returncode == 1
    assert done.stderr == (
        f"evenflow: access_log.path: cannot open {tmp_path}/no/such/dir/access.log: "
        "No such file or directory\n"
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--port", "0"], "'127.0.0.1:0': port must be a number from 1 to 65535"),
        (["--port", "70000"], "'127.0.0.1:70000': port must be a number from 1 to 65535"),
        (["--host", "::1", "--port", "8080"], "'::1:8080': write IPv6 addresses as [addr]:port"),
    ],
)
def test_demo_with_an_address_it_cannot_use(argv: list[str], says: str) -> None:
    done = run_subprocess("demo", *argv)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"evenflow demo: {says}\n"
