"""Benchmark evenflow against nginx and HAProxy: same backend, same machine, same run.

Usage (from the repository root; `make bench` runs the same):

    .venv/bin/python bench/run.py [--duration 10] [--repeat 1] [--warmup 2]
                                  [--connections 64] [--proxies nginx,haproxy,evenflow]
                                  [--evenflow-log [--log-format json|combined]]
                                  [--evenflow-bare] [--evenflow-traced]

What it does:
  1. Checks that nginx, haproxy and wrk are installed (as root it apt-get installs what is
     missing; otherwise it says what to install and exits 2).
  2. Starts one backend, nginx serving a static 1 KiB file over keep-alive (1 worker, no access
     log), so the backend is never the bottleneck.
  3. Starts three proxies in front of it, each one process with one worker and keep-alive to
     the backend: nginx, HAProxy, and evenflow (`python -m evenflow run -c <generated yaml>`).
     evenflow is skipped, with a message, while its `run` command cannot start.
  4. For each proxy in turn: a warm-up (`--warmup` s), then `wrk -t1 -c64 -d<duration>s` on
     /1k. It records wrk's requests/s and the CPU time (utime+stime from /proc, summed over the
     proxy's process tree) used during exactly the wrk run, hence CPU microseconds per request.
     `--repeat N` runs the whole rotation N times, proxies interleaved, and reports medians.
  5. Prints a table with evenflow's ratios against nginx and HAProxy, and writes everything as
     JSON to bench/results/<UTC timestamp>.json.

What observability costs, measured in the same rotation as the rest (one variant after the
other: on a noisy machine their medians move by ±7%; bench/observability.py loads variants
together and measures these costs within ~2%, as `make bench` does):
  --evenflow-log   adds `evenflow+log`: evenflow writing its JSON access log (the decision log)
                   to a file, in /dev/shm when there is one (`--log-format combined` for
                   Apache's format instead);
  --evenflow-bare  adds `evenflow-bare`: evenflow without its metric counters and with trace
                   context off (`metrics: {requests: false}`, `tracing: {enabled: false}`);
  --evenflow-traced  adds `evenflow-traced`: as evenflow-bare, but with trace context on (as by
                   default): what logging and metrics are measured against.
The report then gives CPU per request of each against plain `evenflow` (counters and trace
context on, access log off, as configured by default but for the log), per round (pairing by
round cancels most of a noisy machine's drift) and the median of those rounds; and the whole
cost of logging and metrics (evenflow+log against evenflow-traced: tracing on in both, it is
not logging but a header sent on) and of logging, metrics and tracing (against evenflow-bare).

Everything it starts runs in its own process group and is stopped on exit, on error and on
Ctrl-C. Exit status: 0 on success, 1 when a proxy could not be measured cleanly (wrk errors or a
proxy that would not start), 2 when tools are missing.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TOOLS: dict[str, str | None] = {"nginx": "nginx", "haproxy": "haproxy", "wrk": "wrk"}  # cmd -> pkg
PROXIES = ("nginx", "haproxy", "evenflow")
LOGGED = "evenflow+log"  # evenflow with its access log written to a file (--evenflow-log)
BARE = "evenflow-bare"  # evenflow without metric counters and trace context (--evenflow-bare):
# `metrics: {requests: false}` and `tracing: {enabled: false}`, the data path before metrics
TRACED = "evenflow-traced"  # as BARE but with trace context on (--evenflow-traced)
EVENFLOWS = ("evenflow", LOGGED, BARE, TRACED)
PATH = "/1k"
BODY_BYTES = 1024
# Root's PATH has the sbin directories, a user's often does not; nginx and haproxy live there.
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- processes --------------------------------------------------------------------------------


class Started:
    """A process started in its own process group, stopped with everything it spawned."""

    def __init__(self, name: str, argv: list[str], workdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.access_log: Path | None = None  # the access log it writes, if any
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").strip().splitlines()
            return "\n".join(text[-lines:])
        return ""

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after 5 s; safe to call twice."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        # Whatever is left in the group (workers of a master that died first, say).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self._log.close()
        if self.access_log is not None:
            self.access_log.unlink(missing_ok=True)


def process_tree(root: int) -> list[int]:
    """root and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    """utime+stime per pid, in clock ticks (all threads of each process included)."""
    ticks = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        # fields[0] is field 3 (state) of proc(5): utime and stime are fields 14 and 15.
        ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


def cpu_seconds_between(before: dict[int, int], after: dict[int, int]) -> float:
    # A process born during the run counts from zero.
    return sum(t - before.get(pid, 0) for pid, t in after.items()) / CLK_TCK


# --- setup ------------------------------------------------------------------------------------


def find_tool(command: str) -> str | None:
    found = shutil.which(command)
    if found is None:
        for directory in SBIN:
            candidate = Path(directory) / command
            if os.access(candidate, os.X_OK):
                return str(candidate)
    return found


def ensure_tools(
    tools: dict[str, str | None] = TOOLS, other_needs: Callable[[], list[str]] = list
) -> dict[str, str]:
    """command -> path; installs the missing Debian packages as root, else exits 2 saying what.

    `tools` maps a command to its package (None: optional, used when present); `other_needs`
    names packages missing for another reason than a command (an nginx module, say).
    """

    def missing() -> list[str]:
        lacking = [pkg for cmd, pkg in tools.items() if pkg and find_tool(cmd) is None]
        return lacking + other_needs()

    if missing() and os.geteuid() == 0:
        print(f"installing {' '.join(missing())} ...", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing()], env=env, check=False)
    if lacking := missing():
        print(
            f"bench: missing {', '.join(lacking)}. Install them, e.g. "
            f"`sudo apt-get install -y {' '.join(lacking)}`, then run again.",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return {cmd: path for cmd in tools if (path := find_tool(cmd)) is not None}


def free_port() -> int:
    # The port is free when asked; nothing else on this machine races for it in practice.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def nginx_conf(prefix: Path, server_block: str, extra_http: str = "") -> str:
    temp = "\n".join(
        f"  {kind}_temp_path {prefix}/{kind}_temp;"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
{temp}
{extra_http}
  server {{
{server_block}
  }}
}}
"""


def start_backend(nginx: str, workdir: Path, port: int) -> Started:
    prefix = workdir / "backend"
    (prefix / "www").mkdir(parents=True)
    (prefix / "www" / PATH.lstrip("/")).write_bytes(b"x" * (BODY_BYTES - 1) + b"\n")
    conf = prefix / "nginx.conf"
    conf.write_text(
        nginx_conf(
            prefix,
            f"    listen 127.0.0.1:{port};\n"
            f"    location / {{ root {prefix}/www; default_type text/plain; }}",
        )
    )
    return Started(
        "backend-nginx", [nginx, "-p", str(prefix), "-e", "stderr", "-c", str(conf)], workdir
    )


def ready_backend(nginx: str, workdir: Path) -> tuple[Started, int]:
    """The backend started and answering, with its port (stopped again if it never answers)."""
    port = free_port()
    backend = start_backend(nginx, workdir, port)
    try:
        wait_ready(backend, port)
    except BaseException:
        backend.stop()
        raise
    return backend, port


def start_nginx_proxy(
    nginx: str,
    workdir: Path,
    port: int,
    backend_port: int,
    listen_options: str = "",
    server_lines: str = "",
    prefix_name: str = "nginx",
) -> Started:
    """nginx proxying to the backend over keep-alive; `listen_options` (" ssl") and
    `server_lines` (certificates...) let the TLS bench reuse it."""
    prefix = workdir / prefix_name
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    location = (
        "    location / {\n"
        "      proxy_pass http://backend;\n"
        "      proxy_http_version 1.1;\n"
        '      proxy_set_header Connection "";\n'
        "    }"
    )
    conf.write_text(
        nginx_conf(
            prefix,
            f"    listen 127.0.0.1:{port}{listen_options};\n{server_lines}{location}",
            extra_http=f"  upstream backend {{\n"
            f"    server 127.0.0.1:{backend_port};\n"
            "    keepalive 64;\n"
            "    keepalive_requests 10000000;\n"
            "  }",
        )
    )
    return Started("nginx", [nginx, "-p", str(prefix), "-e", "stderr", "-c", str(conf)], workdir)


def start_haproxy(haproxy: str, workdir: Path, port: int, backend_port: int) -> Started:
    conf = workdir / "haproxy.cfg"
    conf.write_text(
        f"""
global
  nbthread 1
  maxconn 4096

defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always

frontend bench
  bind 127.0.0.1:{port}
  default_backend web

backend web
  server b1 127.0.0.1:{backend_port}
"""
    )
    # -db: foreground, one process (no master-worker).
    return Started("haproxy", [haproxy, "-db", "-f", str(conf)], workdir)


def evenflow_python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def evenflow_unavailable() -> str | None:
    """Why `python -m evenflow run` cannot start yet, or None when it can."""
    try:
        done = subprocess.run(
            [evenflow_python(), "-m", "evenflow", "run", "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        return "`python -m evenflow run --help` did not answer within 30 s"
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return f"`python -m evenflow run --help` failed: {lines[-1] if lines else done.returncode}"
    evenflow_data_path()  # (a warning now, before the runs, when it is not compiled)
    return None


def evenflow_data_path() -> str:
    """How evenflow's data path runs here: "compiled by mypyc (N modules)", or "pure Python
    (why)" when the build is missing or older than the sources (a stale build is never used),
    which costs about three times the instructions: numbers then say nothing of the compiled
    path. Warns on stderr in that case."""
    done = subprocess.run(
        [evenflow_python(), "-c", "import evenflow.native as n; print(n.status)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    status = done.stdout.strip() or f"unknown ({done.stderr.strip()[-200:]})"
    if not status.startswith("compiled"):
        print(
            f"bench: WARNING: evenflow's data path is {status}; run `make native` to measure "
            "the compiled one",
            file=sys.stderr,
        )
    return status


def start_evenflow(
    workdir: Path, port: int, backend_port: int, variant: str = "evenflow", log_format: str = "json"
) -> Started:
    """evenflow in front of the backend, as `variant` (one of EVENFLOWS) configures it."""
    conf = workdir / f"{variant}.yaml"
    log_path = access_log_path(workdir)
    access_log = json.dumps(str(log_path)) if variant == LOGGED else '"off"'
    counted = "false" if variant in (BARE, TRACED) else "true"
    traced = "false" if variant == BARE else "true"
    conf.write_text(
        f"""
listeners:
  - name: bench
    bind: "127.0.0.1:{port}"
    routes:
      - pool: web
pools:
  web:
    backends: ["127.0.0.1:{backend_port}"]
access_log:
  path: {access_log}
  format: {log_format}
tracing:
  enabled: {traced}
metrics:
  requests: {counted}
drain_timeout: 2s
"""
    )
    started = Started(
        variant, [evenflow_python(), "-m", "evenflow", "run", "-c", str(conf)], workdir
    )
    if variant == LOGGED:
        started.access_log = log_path
    return started


ACCESS_LOG_ROOM_BYTES = 1 << 30


def access_log_path(workdir: Path) -> Path:
    """Where evenflow+log writes its access log: in memory (/dev/shm) when the machine has it.
    On disk, the kernel's writeback of ~15 MB/s of lines runs in its own threads, not charged
    to the proxy but competing with the run for the CPUs: what is measured is the log's CPU
    cost, not the disk's. The file is emptied before each measured run (truncate_access_log),
    so it holds one run's lines at most."""
    shm = Path("/dev/shm")
    # a run's lines, ~400 MB at the most: a container's /dev/shm (64 MB by default) is too
    # small, and a log that fails its writes is not the log measured
    if (
        shm.is_dir()
        and os.access(shm, os.W_OK)
        and shutil.disk_usage(shm).free > ACCESS_LOG_ROOM_BYTES
    ):
        return shm / f"{workdir.name}-access.log"
    return workdir / "access.log"


def truncate_access_log(started: Started) -> None:
    # evenflow appends (O_APPEND): its next line lands at the new end
    if started.access_log is not None:
        with contextlib.suppress(FileNotFoundError):
            os.truncate(started.access_log, 0)


def wait_ready(started: Started, port: int, timeout_s: float = 15.0) -> None:
    """Until GET /1k answers 200 with the 1 KiB body; raises RuntimeError with the log."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if started.proc.poll() is not None:
            raise RuntimeError(
                f"{started.name} exited with status {started.proc.returncode}:\n"
                f"{started.log_tail()}"
            )
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", PATH)
            response = conn.getresponse()
            body = response.read()
            if response.status == 200 and len(body) == BODY_BYTES:
                return
            last = f"status {response.status}, {len(body)} bytes"
        except OSError as exc:
            last = str(exc)
        finally:
            conn.close()
        time.sleep(0.1)
    raise RuntimeError(
        f"{started.name} not ready after {timeout_s:.0f} s ({last}):\n{started.log_tail()}"
    )


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Run:
    proxy: str
    round: int
    requests_per_s: float
    requests: int
    cpu_s: float
    cpu_us_per_req: float
    backend_cpu_us_per_req: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    errors: dict[str, int] = field(default_factory=dict)


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_wrk(output: str) -> tuple[float, int, dict[str, int], dict[str, float]]:
    """requests/s, total requests, errors by kind, latency percentiles in ms."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    if rps is None or total is None:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    errors: dict[str, int] = {}
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        for kind, count in zip(
            ("connect", "read", "write", "timeout"), socket_errors.groups(), strict=True
        ):
            if int(count):
                errors[kind] = int(count)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx and int(non_2xx.group(1)):
        errors["non_2xx_3xx"] = int(non_2xx.group(1))
    percentiles = {
        p: float(value) * _UNITS_MS[unit]
        for p, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    }
    return float(rps.group(1)), int(total.group(1)), errors, percentiles


def run_wrk(
    wrk: str, port: int, duration_s: int, connections: int
) -> subprocess.CompletedProcess[str]:
    argv = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{duration_s}s",
        "--latency",
        f"http://127.0.0.1:{port}{PATH}",
    ]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=duration_s + 60, check=False
    )


def measure(
    wrk: str,
    proxy: Started,
    port: int,
    backend: Started,
    args: argparse.Namespace,
    round_: int,
) -> Run:
    truncate_access_log(proxy)
    run_wrk(wrk, port, args.warmup, args.connections)
    proxy_pids, backend_pids = process_tree(proxy.pid), process_tree(backend.pid)
    before, backend_before = cpu_ticks(proxy_pids), cpu_ticks(backend_pids)
    done = run_wrk(wrk, port, args.duration, args.connections)
    after = cpu_ticks(process_tree(proxy.pid))
    backend_after = cpu_ticks(process_tree(backend.pid))
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    rps, total, errors, latency = parse_wrk(done.stdout)
    cpu_s = cpu_seconds_between(before, after)
    backend_cpu_s = cpu_seconds_between(backend_before, backend_after)
    return Run(
        proxy=proxy.name,
        round=round_,
        requests_per_s=rps,
        requests=total,
        cpu_s=cpu_s,
        cpu_us_per_req=cpu_s * 1e6 / total if total else float("nan"),
        backend_cpu_us_per_req=backend_cpu_s * 1e6 / total if total else float("nan"),
        latency_p50_ms=latency.get("50"),
        latency_p99_ms=latency.get("99"),
        errors=errors,
    )


# --- reporting --------------------------------------------------------------------------------


def medians(runs: list[Run]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for proxy in dict.fromkeys(r.proxy for r in runs):
        mine = [r for r in runs if r.proxy == proxy]
        summary[proxy] = {
            "runs": len(mine),
            "requests_per_s": statistics.median(r.requests_per_s for r in mine),
            "cpu_us_per_req": statistics.median(r.cpu_us_per_req for r in mine),
            "backend_cpu_us_per_req": statistics.median(r.backend_cpu_us_per_req for r in mine),
            "latency_p99_ms": statistics.median(
                r.latency_p99_ms for r in mine if r.latency_p99_ms is not None
            )
            if any(r.latency_p99_ms is not None for r in mine)
            else None,
            "errors": sum(sum(r.errors.values()) for r in mine),
        }
    return summary


def ratios(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """evenflow's req/s and CPU/req divided by each other proxy's, round by round, and the
    median of those rounds. Paired within a round, the two proxies ran a few seconds apart;
    on a shared machine whose speed drifts between rounds by 2x and more, that is a steadier
    figure than the ratio of two medians taken from different rounds."""
    ours = {r.round: r for r in runs if r.proxy == "evenflow"}
    found: dict[str, dict[str, Any]] = {}
    for other in dict.fromkeys(r.proxy for r in runs if r.proxy not in EVENFLOWS):
        theirs = {r.round: r for r in runs if r.proxy == other}
        rounds = sorted(set(ours) & set(theirs))
        if not rounds:
            continue
        rps = [ours[n].requests_per_s / theirs[n].requests_per_s for n in rounds]
        cpu = [ours[n].cpu_us_per_req / theirs[n].cpu_us_per_req for n in rounds]
        found[f"vs_{other}"] = {
            "requests_per_s": statistics.median(rps),
            "cpu_per_req": statistics.median(cpu),
            "requests_per_s_by_round": rps,
            "cpu_per_req_by_round": cpu,
        }
    return found


def costs(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """For each evenflow variant measured beside plain evenflow: its CPU per request over
    plain evenflow's, per round (both measured in it) and the median of those rounds; and the
    logged variant over the bare one, the whole cost of observability."""
    plain = {r.round: r for r in runs if r.proxy == "evenflow"}
    found = {}
    for variant in (LOGGED, BARE, TRACED):
        other = {r.round: r for r in runs if r.proxy == variant}
        rounds = sorted(set(plain) & set(other))
        if not rounds:
            continue
        per_round = [other[n].cpu_us_per_req / plain[n].cpu_us_per_req for n in rounds]
        found[variant] = {
            "cpu_per_req_vs_evenflow_by_round": per_round,
            "cpu_per_req_vs_evenflow_median": statistics.median(per_round),
            "requests_per_s_vs_evenflow_median": statistics.median(
                other[n].requests_per_s / plain[n].requests_per_s for n in rounds
            ),
        }
    logged = {r.round: r for r in runs if r.proxy == LOGGED}
    # the access log and metrics together against neither (issue 6's measure), and with
    # tracing too against none of them
    for name, baseline in (("log_and_metrics", TRACED), ("observability_vs_bare", BARE)):
        base = {r.round: r for r in runs if r.proxy == baseline}
        rounds = sorted(set(logged) & set(base))
        if rounds:
            per_round = [logged[n].cpu_us_per_req / base[n].cpu_us_per_req for n in rounds]
            found[name] = {
                "cpu_per_req_by_round": per_round,
                "cpu_per_req_median": statistics.median(per_round),
            }
    return found


def print_table(summary: dict[str, dict[str, Any]], runs: list[Run], repeat: int) -> None:
    label = f"median of {repeat}" if repeat > 1 else "one run"
    print(f"\nresults ({label} per proxy; wrk -t1, {PATH}, keep-alive):")
    print(
        f"{'proxy':<10} {'req/s':>10} {'CPU µs/req':>11} {'p99 ms':>8} {'errors':>7}"
        f" {'backend µs/req':>15}"
    )
    for proxy, s in summary.items():
        p99 = f"{s['latency_p99_ms']:.2f}" if s["latency_p99_ms"] is not None else "-"
        print(
            f"{proxy:<10} {s['requests_per_s']:>10.0f} {s['cpu_us_per_req']:>11.1f} {p99:>8}"
            f" {s['errors']:>7} {s['backend_cpu_us_per_req']:>15.1f}"
        )
    for name, r in ratios(runs).items():
        by_round = ", ".join(f"x{x:.2f}" for x in r["cpu_per_req_by_round"])
        print(
            f"evenflow {name.replace('_', ' ')} (median of rounds): req/s "
            f"x{r['requests_per_s']:.2f}, CPU/req x{r['cpu_per_req']:.2f} (rounds {by_round})"
        )


def print_costs(found: dict[str, dict[str, Any]]) -> None:
    what = {
        LOGGED: "access log on (evenflow+log) vs off",
        BARE: "without metrics and tracing (evenflow-bare) vs with",
        TRACED: "without metrics (evenflow-traced) vs with",
    }
    whole = {
        "log_and_metrics": f"log and metrics ({LOGGED}) vs neither ({TRACED})",
        "observability_vs_bare": f"log, metrics and tracing ({LOGGED}) vs none ({BARE})",
    }
    for variant, cost in found.items():
        if variant in whole:
            by_round = ", ".join(f"x{r:.3f}" for r in cost["cpu_per_req_by_round"])
            print(
                f"{whole[variant]}: CPU/req x{cost['cpu_per_req_median']:.3f} (median; "
                f"rounds {by_round})"
            )
            continue
        by_round = ", ".join(f"x{r:.3f}" for r in cost["cpu_per_req_vs_evenflow_by_round"])
        print(
            f"{what[variant]}: CPU/req x{cost['cpu_per_req_vs_evenflow_median']:.3f} (median; "
            f"rounds {by_round}), req/s x{cost['requests_per_s_vs_evenflow_median']:.3f}"
        )


# the flag that makes each tool print its version on its first line
VERSION_FLAGS = {
    "nginx": "-v",
    "haproxy": "-v",
    "wrk": "-v",
    "curl": "--version",
    "h2load": "--version",
}


def versions(tools: dict[str, str]) -> dict[str, str]:
    """The version line of each tool a bench used, and Python's."""
    found = {}
    for name, path in tools.items():
        flag = VERSION_FLAGS.get(name)
        if flag is None:
            continue
        done = subprocess.run([path, flag], capture_output=True, text=True, check=False)
        lines = (done.stdout + done.stderr).strip().splitlines()
        found[name] = re.sub(r"\s+", " ", lines[0]) if lines else "?"
    found["python"] = platform.python_version()
    found["evenflow_data_path"] = evenflow_data_path()
    return found


def write_results(prefix: str, fields: dict[str, Any], failures: list[str]) -> int:
    """Writes bench/results/<prefix><UTC timestamp>.json; the exit status: 1 if anything failed."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"{prefix}{stamp}.json"
    machine = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_avg_at_end": os.getloadavg(),
    }
    document = {"timestamp": stamp, "machine": machine, **fields, "failures": failures}
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"written {out.relative_to(ROOT)}")
    if failures:
        print("bench: problems:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


def run_main(main: Callable[[], int]) -> None:
    """Runs a bench's main as a command: its status on exit, a short line on Ctrl-C."""
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        print("\nbench: interrupted; everything it started is stopped", file=sys.stderr)
        raise SystemExit(130) from None


# --- main -------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per run (2)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="rotations over all proxies; medians reported (3)"
    )
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    parser.add_argument(
        "--proxies",
        default=",".join(PROXIES),
        help=f"comma-separated subset of {','.join(PROXIES)} (all)",
    )
    parser.add_argument(
        "--evenflow-log",
        action="store_true",
        help=f"also measure {LOGGED}: evenflow writing its access log to a file",
    )
    parser.add_argument(
        "--log-format",
        choices=["json", "combined"],
        default="json",
        help=f"the access log format of {LOGGED} (json)",
    )
    parser.add_argument(
        "--evenflow-bare",
        action="store_true",
        help=f"also measure {BARE}: evenflow without metric counters and trace context",
    )
    parser.add_argument(
        "--evenflow-traced",
        action="store_true",
        help=f"also measure {TRACED}: evenflow without metric counters, trace context on",
    )
    args = parser.parse_args()
    args.proxies = [p.strip() for p in args.proxies.split(",") if p.strip()]
    unknown = set(args.proxies) - set(PROXIES)
    if unknown or not args.proxies:
        parser.error(f"--proxies: unknown {sorted(unknown)}; choose from {', '.join(PROXIES)}")
    for flag, variant in (
        (args.evenflow_log, LOGGED),
        (args.evenflow_bare, BARE),
        (args.evenflow_traced, TRACED),
    ):
        if flag:
            if "evenflow" not in args.proxies:
                args.proxies.append("evenflow")  # the variants are judged against it
            args.proxies.append(variant)
    if min(args.duration, args.repeat, args.connections) < 1 or args.warmup < 1:
        parser.error("--duration, --warmup, --repeat and --connections must be at least 1")
    return args


@contextlib.contextmanager
def signals_unwind() -> Iterator[None]:
    """SIGTERM (from `timeout`, CI) and SIGINT unwind the stack, so finally blocks clean up."""

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous_term = signal.signal(signal.SIGTERM, on_term)
    # A shell starts background jobs with SIGINT ignored; `kill -INT` must still stop us.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)


def main() -> int:
    args = parse_args()
    tools = ensure_tools()
    if "evenflow" in args.proxies:
        reason = evenflow_unavailable()
        if reason is not None:
            print(f"bench: skipping evenflow: {reason}", file=sys.stderr)
            args.proxies = [p for p in args.proxies if p not in EVENFLOWS]
    if not args.proxies:
        print("bench: nothing to measure", file=sys.stderr)
        return 1
    started: list[Started] = []
    runs: list[Run] = []
    failures: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="evenflow-bench-"))
    # nginx workers drop to an unprivileged user when started as root: they must read the file.
    workdir.chmod(0o755)
    with signals_unwind():
        try:
            backend, backend_port = ready_backend(tools["nginx"], workdir)
            started.append(backend)
            proxies: dict[str, tuple[Started, int]] = {}
            for name in args.proxies:
                port = free_port()
                if name == "nginx":
                    proxy = start_nginx_proxy(tools["nginx"], workdir, port, backend_port)
                elif name == "haproxy":
                    proxy = start_haproxy(tools["haproxy"], workdir, port, backend_port)
                else:
                    proxy = start_evenflow(workdir, port, backend_port, name, args.log_format)
                started.append(proxy)
                try:
                    wait_ready(proxy, port)
                except RuntimeError as exc:
                    failures.append(f"{name}: {exc}")
                    print(f"bench: {name} did not start, skipped: {exc}", file=sys.stderr)
                    continue
                proxies[name] = (proxy, port)
            print(
                f"backend nginx on :{backend_port}; proxies: "
                + ", ".join(f"{n} on :{p}" for n, (_, p) in proxies.items()),
                flush=True,
            )
            for round_ in range(1, args.repeat + 1):
                for name, (proxy, port) in proxies.items():
                    print(f"round {round_}/{args.repeat}: {name} ...", end=" ", flush=True)
                    try:
                        run = measure(tools["wrk"], proxy, port, backend, args, round_)
                    except RuntimeError as exc:
                        print("failed")
                        failures.append(f"{name} round {round_}: {exc}")
                        continue
                    runs.append(run)
                    note = f", errors {run.errors}" if run.errors else ""
                    print(f"{run.requests_per_s:.0f} req/s, {run.cpu_us_per_req:.1f} µs/req{note}")
                    if run.errors:
                        failures.append(f"{name} round {round_}: wrk reported {run.errors}")
        finally:
            for process in reversed(started):
                process.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    if not runs:
        print("bench: no measurement succeeded:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    summary = medians(runs)
    print_table(summary, runs, args.repeat)
    found = costs(runs)
    print_costs(found)
    return write_results(
        "",
        {
            "versions": versions(tools),
            "params": {
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "repeat": args.repeat,
                "connections": args.connections,
                "wrk_threads": 1,
                "path": PATH,
                "body_bytes": BODY_BYTES,
                "log_format": args.log_format,
            },
            "runs": [asdict(r) for r in runs],
            "summary": summary,
            "evenflow_ratios": ratios(runs),
            "observability_costs": found,
        },
        failures,
    )


if __name__ == "__main__":
    run_main(main)
