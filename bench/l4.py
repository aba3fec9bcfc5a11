"""Layer 4 benchmark: evenflow's tcp listener against HAProxy `mode tcp` and nginx `stream`.

Usage (from the repository root):

    .venv/bin/python bench/l4.py [--repeat 3] [--duration 10] [--warmup 2] [--connections 64]
                                 [--bulk-mib 1024] [--idle 20000] [--parts rr,bulk,idle]
                                 [--no-pin]

Same machine, same run, one backend: nginx (1 worker) serving a 1 KiB file and a sparse
`--bulk-mib` file over keep-alive, with sendfile. Three proxies in front of it, one process and
one thread each: evenflow (`python -m evenflow run`, a `protocol: tcp` listener), HAProxy
(`mode tcp`, nbthread 1) and nginx (`stream`, 1 worker).

  rr    wrk -t1 -c<connections> on /1k through each proxy: requests/s, and CPU microseconds per
        request of the proxy's process tree (utime+stime from /proc over exactly the wrk run).
  bulk  curl downloads the big file through each proxy: MB/s (10^6 bytes) and proxy CPU per GiB.
  idle  `--idle` connections opened through evenflow to a backend that accepts and holds them:
        evenflow's RSS before and after, hence RSS per connection. evenflow holds two sockets
        per relayed connection, so the count is capped by the hard RLIMIT_NOFILE (raised as far
        as allowed) and the cap is reported.

`--repeat N` runs each part N times, proxies rotated between rounds, and reports medians. Unless
`--no-pin`, each proxy is pinned to the last CPU and the load (wrk, curl, the backend, the idle
client and holder) to the others with taskset, so the proxy has a core to itself.
The ratios printed are evenflow's against HAProxy (targets: CPU per request <= 1.5x, bulk
throughput >= 0.8x) and nginx. Results go to bench/results/l4-<UTC timestamp>.json.
"""

from __future__ import annotations

import argparse
import os
import resource
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from run import (
    Started,
    cpu_seconds_between,
    cpu_ticks,
    ensure_tools,
    evenflow_python,
    free_port,
    nginx_conf,
    parse_wrk,
    process_tree,
    run_main,
    signals_unwind,
    versions,
    wait_ready,
    write_results,
)

PROXIES = ("evenflow", "haproxy", "nginx")
TOOLS: dict[str, str | None] = {
    "nginx": "nginx",
    "haproxy": "haproxy",
    "wrk": "wrk",
    "curl": "curl",
    "taskset": None,
}
STREAM_MODULES = ("/usr/lib/nginx/modules", "/usr/share/nginx/modules")
FDS_SPARE = 256  # descriptors evenflow needs besides the relayed connections
IDLE_WARM = 100  # connections held before "before": a connection's code paths already ran
IDLE_WAIT_S = 120.0  # longest wait for the idle connections to open
MiB = 1024 * 1024


# --- setup ------------------------------------------------------------------------------------


def stream_module() -> str | None:
    for directory in STREAM_MODULES:
        path = Path(directory) / "ngx_stream_module.so"
        if path.exists():
            return str(path)
    return None


class Pinning:
    """taskset prefixes: the proxy on the last CPU, the load generators on the others."""

    def __init__(self, enabled: bool, taskset: str | None) -> None:
        cpus = sorted(os.sched_getaffinity(0))
        self.enabled = enabled and taskset is not None and len(cpus) >= 2
        self.taskset = taskset or "taskset"
        self.proxy_cpus = str(cpus[-1])
        self.load_cpus = ",".join(str(c) for c in cpus[:-1])

    def proxy(self, argv: list[str]) -> list[str]:
        return [self.taskset, "-c", self.proxy_cpus, *argv] if self.enabled else argv

    def load(self, argv: list[str]) -> list[str]:
        return [self.taskset, "-c", self.load_cpus, *argv] if self.enabled else argv

    def describe(self) -> str:
        if not self.enabled:
            return "not pinned"
        return f"proxy on CPU {self.proxy_cpus}; wrk/curl/backend/clients on CPU {self.load_cpus}"


def raise_nofile() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit (children inherit it); returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (1_048_576, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(target, hard)))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def start_backend(nginx: str, workdir: Path, port: int, bulk_bytes: int, pin: Pinning) -> Started:
    prefix = workdir / "backend"
    www = prefix / "www"
    www.mkdir(parents=True)
    (www / "1k").write_bytes(b"x" * 1023 + b"\n")
    with (www / "big").open("wb") as big:
        big.truncate(bulk_bytes)  # sparse: read from memory, the disk plays no part
    conf = prefix / "nginx.conf"
    conf.write_text(
        nginx_conf(
            prefix,
            f"    listen 127.0.0.1:{port} backlog=4096;\n"
            f"    location / {{ root {www}; default_type application/octet-stream; }}",
            extra_http="  sendfile on;\n  tcp_nopush on;",
        )
    )
    argv = [nginx, "-p", str(prefix), "-e", "stderr", "-c", str(conf)]
    return Started("backend-nginx", pin.load(argv), workdir)


def start_evenflow(workdir: Path, port: int, backend_port: int, pin: Pinning) -> Started:
    conf = workdir / "evenflow-l4.yaml"
    conf.write_text(
        f"""
listeners:
  - name: l4
    bind: "127.0.0.1:{port}"
    protocol: tcp
    pool: web
    limits: {{max_connections: 100000}}
pools:
  web:
    backends: ["127.0.0.1:{backend_port}"]
access_log:
  path: "off"
drain_timeout: 2s
"""
    )
    argv = [evenflow_python(), "-m", "evenflow", "run", "-c", str(conf), "--log-level", "warning"]
    return Started("evenflow", pin.proxy(argv), workdir)


def start_haproxy(
    haproxy: str, workdir: Path, port: int, backend_port: int, pin: Pinning
) -> Started:
    conf = workdir / "haproxy-l4.cfg"
    conf.write_text(
        f"""
global
  nbthread 1
  maxconn 8000

defaults
  mode tcp
  timeout connect 5s
  timeout client 300s
  timeout server 300s

frontend l4
  bind 127.0.0.1:{port}
  default_backend web

backend web
  server b1 127.0.0.1:{backend_port}
"""
    )
    return Started("haproxy", pin.proxy([haproxy, "-db", "-f", str(conf)]), workdir)


def start_nginx_stream(
    nginx: str, workdir: Path, port: int, backend_port: int, pin: Pinning
) -> Started:
    prefix = workdir / "nginx-stream"
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""
load_module {stream_module()};
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
stream {{
  server {{
    listen 127.0.0.1:{port};
    proxy_pass 127.0.0.1:{backend_port};
  }}
}}
"""
    )
    argv = [nginx, "-p", str(prefix), "-e", "stderr", "-c", str(conf)]
    return Started("nginx", pin.proxy(argv), workdir)


# --- small request/response over keep-alive ---------------------------------------------------


@dataclass
class RrRun:
    proxy: str
    round: int
    requests_per_s: float
    requests: int
    cpu_s: float
    cpu_us_per_req: float
    latency_p99_ms: float | None
    errors: dict[str, int] = field(default_factory=dict)


def run_wrk(wrk: str, port: int, seconds: int, connections: int, pin: Pinning) -> str:
    argv = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    done = subprocess.run(
        pin.load([*argv, f"http://127.0.0.1:{port}/1k"]),
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def measure_rr(
    wrk: str,
    name: str,
    proxy: Started,
    port: int,
    args: argparse.Namespace,
    round_: int,
    pin: Pinning,
) -> RrRun:
    run_wrk(wrk, port, args.warmup, args.connections, pin)
    before = cpu_ticks(process_tree(proxy.pid))
    output = run_wrk(wrk, port, args.duration, args.connections, pin)
    after = cpu_ticks(process_tree(proxy.pid))
    rps, total, errors, latency = parse_wrk(output)
    cpu_s = cpu_seconds_between(before, after)
    return RrRun(
        name,
        round_,
        rps,
        total,
        cpu_s,
        cpu_s * 1e6 / total if total else float("nan"),
        latency.get("99"),
        errors,
    )


# --- bulk -------------------------------------------------------------------------------------


@dataclass
class BulkRun:
    proxy: str
    round: int
    bytes: int
    seconds: float
    mb_per_s: float
    cpu_s: float
    cpu_s_per_gib: float


def measure_bulk(
    curl: str, name: str, proxy: Started, port: int, size: int, round_: int, pin: Pinning
) -> BulkRun:
    argv = [curl, "-q", "-sS", "--noproxy", "*", "-o", "/dev/null", "-w", "%{size_download}"]
    before = cpu_ticks(process_tree(proxy.pid))
    started = time.perf_counter()
    done = subprocess.run(
        pin.load([*argv, f"http://127.0.0.1:{port}/big"]),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    seconds = time.perf_counter() - started
    after = cpu_ticks(process_tree(proxy.pid))
    if done.returncode != 0 or int(done.stdout or 0) != size:
        raise RuntimeError(f"curl: status {done.returncode}, {done.stdout} bytes, {done.stderr}")
    cpu_s = cpu_seconds_between(before, after)
    return BulkRun(
        name, round_, size, seconds, size / seconds / 1e6, cpu_s, cpu_s * (1 << 30) / size
    )


# --- idle connections -------------------------------------------------------------------------

# Accepts connections and holds them, never reading; prints "held N" as the count grows.
HOLDER = r"""
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
server = socket.create_server(("127.0.0.1", 0), backlog=4096)
server.settimeout(0.2)
print("listening %d" % server.getsockname()[1], flush=True)
held, told = [], 0
while True:
    try:
        held.append(server.accept()[0])
        quiet = False
    except TimeoutError:
        quiet = True
    if len(held) != told and (quiet or len(held) - told >= 500):
        told = len(held)
        print("held %d" % told, flush=True)
"""

# Opens N connections to a port and holds them until its stdin closes; prints "opened N".
CLIENT = r"""
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
port, count = int(sys.argv[1]), int(sys.argv[2])
conns = []
for i in range(count):
    conns.append(socket.create_connection(("127.0.0.1", port), timeout=30))
print("opened %d" % len(conns), flush=True)
sys.stdin.read()
"""


class LineReader:
    """Lines of a child's stdout, waited for with a deadline."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.buffer = b""
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.fd, selectors.EVENT_READ)

    def wait_for(self, prefix: str, at_least: int, timeout_s: float) -> int:
        """Until a line `prefix N` with N >= at_least; returns N."""
        deadline = time.monotonic() + timeout_s
        value = -1
        while value < at_least:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise RuntimeError(f"waited for '{prefix} {at_least}', last {value}")
            if self.sel.select(min(left, 0.5)):
                chunk = os.read(self.fd, 65536)
                self.buffer += chunk
                *lines, self.buffer = self.buffer.split(b"\n")
                for line in lines:
                    words = line.decode().split()
                    if len(words) == 2 and words[0] == prefix:
                        value = max(value, int(words[1]))
        return value


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class IdleRun:
    round: int
    connections: int
    rss_before: int
    rss_after: int
    fds_after: int
    bytes_per_connection: float
    seconds_to_open: float


def measure_idle(workdir: Path, count: int, round_: int, pin: Pinning) -> IdleRun:
    """evenflow started afresh; `count` connections opened through it and held."""
    holder_script, client_script = workdir / "holder.py", workdir / "client.py"
    holder_script.write_text(HOLDER)
    client_script.write_text(CLIENT)
    python = sys.executable
    holder = subprocess.Popen(pin.load([python, str(holder_script)]), stdout=subprocess.PIPE)
    started: list[Started] = []
    clients: list[subprocess.Popen[bytes]] = []
    try:
        held = LineReader(holder)
        backend_port = held.wait_for("listening", 1, 15)
        port = free_port()
        evenflow = start_evenflow(workdir / f"idle-{round_}", port, backend_port, pin)
        started.append(evenflow)
        wait_listening(evenflow, port)

        def open_through(n: int) -> tuple[subprocess.Popen[bytes], LineReader]:
            argv = pin.load([python, str(client_script), str(port), str(n)])
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            clients.append(proc)
            return proc, LineReader(proc)

        # warm-up, held open throughout (a client that closes leaves evenflow a half-closed
        # pair until the idle timeout, as the holder never answers the FIN)
        _, warm_lines = open_through(IDLE_WARM)
        warm_lines.wait_for("opened", IDLE_WARM, IDLE_WAIT_S)
        held.wait_for("held", IDLE_WARM, IDLE_WAIT_S)
        time.sleep(1.5)
        before = rss_bytes(evenflow.pid)
        opening = time.monotonic()
        _, main_lines = open_through(count)
        main_lines.wait_for("opened", count, IDLE_WAIT_S)
        held.wait_for("held", IDLE_WARM + count, IDLE_WAIT_S)
        seconds = time.monotonic() - opening
        time.sleep(2.0)  # settle: every upstream connect done, nothing in flight
        after = rss_bytes(evenflow.pid)
        fds = open_fds(evenflow.pid)
        return IdleRun(round_, count, before, after, fds, (after - before) / count, seconds)
    finally:
        for proc in clients:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        for process in started:
            process.stop()
        holder.kill()
        holder.wait(5)


def wait_listening(started: Started, port: int, timeout_s: float = 15.0) -> None:
    """Until the listener accepts (a tcp listener has nothing to GET without a backend)."""
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if started.proc.poll() is not None:
            raise RuntimeError(f"{started.name} exited:\n{started.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{started.name} not listening on {port}:\n{started.log_tail()}")


# --- reporting --------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(rr: list[RrRun], bulk: list[BulkRun], idle: list[IdleRun]) -> dict[str, Any]:
    summary: dict[str, Any] = {"rr": {}, "bulk": {}, "idle": None, "ratios": {}}
    for name in dict.fromkeys(r.proxy for r in rr):
        mine = [r for r in rr if r.proxy == name]
        summary["rr"][name] = {
            "runs": len(mine),
            "requests_per_s": median([r.requests_per_s for r in mine]),
            "cpu_us_per_req": median([r.cpu_us_per_req for r in mine]),
            "latency_p99_ms": median([r.latency_p99_ms for r in mine if r.latency_p99_ms]),
            "errors": sum(sum(r.errors.values()) for r in mine),
        }
    for name in dict.fromkeys(b.proxy for b in bulk):
        mine_b = [b for b in bulk if b.proxy == name]
        summary["bulk"][name] = {
            "runs": len(mine_b),
            "mb_per_s": median([b.mb_per_s for b in mine_b]),
            "cpu_s_per_gib": median([b.cpu_s_per_gib for b in mine_b]),
        }
    if idle:
        summary["idle"] = {
            "runs": len(idle),
            "connections": idle[0].connections,
            "rss_before_mib": median([i.rss_before / MiB for i in idle]),
            "rss_after_mib": median([i.rss_after / MiB for i in idle]),
            "bytes_per_connection": median([i.bytes_per_connection for i in idle]),
            "fds_after": median([float(i.fds_after) for i in idle]),
        }
    ours_rr, ours_bulk = summary["rr"].get("evenflow"), summary["bulk"].get("evenflow")
    for other in ("haproxy", "nginx"):
        ratio: dict[str, float] = {}
        if ours_rr and other in summary["rr"]:
            theirs = summary["rr"][other]
            ratio["requests_per_s"] = ours_rr["requests_per_s"] / theirs["requests_per_s"]
            ratio["cpu_per_req"] = ours_rr["cpu_us_per_req"] / theirs["cpu_us_per_req"]
        if ours_bulk and other in summary["bulk"]:
            ratio["bulk_throughput"] = ours_bulk["mb_per_s"] / summary["bulk"][other]["mb_per_s"]
        if ratio:
            summary["ratios"][f"vs_{other}"] = ratio
    return summary


def print_summary(summary: dict[str, Any], args: argparse.Namespace, note: str) -> None:
    label = f"median of {args.repeat}" if args.repeat > 1 else "one run"
    print(f"\nlayer 4 results ({label}; {note})")
    if summary["rr"]:
        print(f"\nsmall request/response: wrk -t1 -c{args.connections} /1k, keep-alive")
        print(f"{'proxy':<10} {'req/s':>10} {'CPU µs/req':>11} {'p99 ms':>8} {'errors':>7}")
        for name, s in summary["rr"].items():
            print(
                f"{name:<10} {s['requests_per_s']:>10.0f} {s['cpu_us_per_req']:>11.1f}"
                f" {s['latency_p99_ms']:>8.2f} {s['errors']:>7}"
            )
    if summary["bulk"]:
        print(f"\nbulk: {args.bulk_mib} MiB download (curl)")
        print(f"{'proxy':<10} {'MB/s':>10} {'CPU s/GiB':>10}")
        for name, s in summary["bulk"].items():
            print(f"{name:<10} {s['mb_per_s']:>10.0f} {s['cpu_s_per_gib']:>10.2f}")
    idle = summary["idle"]
    if idle:
        print(
            f"\nidle: {idle['connections']} connections held through evenflow: RSS "
            f"{idle['rss_before_mib']:.1f} -> {idle['rss_after_mib']:.1f} MiB, "
            f"{idle['bytes_per_connection'] / 1024:.2f} KiB per connection "
            f"({idle['fds_after']:.0f} fds open)"
        )
    for name, r in summary["ratios"].items():
        parts = []
        if "cpu_per_req" in r:
            parts.append(f"req/s x{r['requests_per_s']:.2f}, CPU/req x{r['cpu_per_req']:.2f}")
        if "bulk_throughput" in r:
            parts.append(f"bulk MB/s x{r['bulk_throughput']:.2f}")
        print(f"evenflow {name.replace('_', ' ')}: {'; '.join(parts)}")


# --- main -------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of wrk warm-up (2)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per part; medians (1)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    parser.add_argument("--bulk-mib", type=int, default=1024, help="bulk transfer size (1024)")
    parser.add_argument("--idle", type=int, default=20000, help="idle connections (20000)")
    parser.add_argument("--parts", default="rr,bulk,idle", help="subset of rr,bulk,idle")
    parser.add_argument("--proxies", default=",".join(PROXIES), help="subset of the proxies")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    args = parser.parse_args()
    args.parts = [p for p in args.parts.split(",") if p]
    args.proxies = [p for p in args.proxies.split(",") if p]
    if set(args.parts) - {"rr", "bulk", "idle"} or set(args.proxies) - set(PROXIES):
        parser.error("unknown part or proxy")
    return args


def main() -> int:
    args = parse_args()
    tools = ensure_tools(
        TOOLS, lambda: [] if stream_module() is not None else ["libnginx-mod-stream"]
    )
    pin = Pinning(not args.no_pin, tools.get("taskset"))
    soft, hard = raise_nofile()
    idle_count = args.idle
    notes = [pin.describe()]
    if "idle" in args.parts and 2 * (idle_count + IDLE_WARM) + FDS_SPARE > soft:
        idle_count = (soft - FDS_SPARE) // 2 - IDLE_WARM
        notes.append(
            f"idle capped at {idle_count} connections: RLIMIT_NOFILE is {soft} (hard {hard}) "
            "and evenflow holds 2 sockets per connection"
        )
        print(f"bench: {notes[-1]}", file=sys.stderr)
    rr: list[RrRun] = []
    bulk: list[BulkRun] = []
    idle: list[IdleRun] = []
    failures: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="evenflow-l4-bench-"))
    workdir.chmod(0o755)  # nginx workers (an unprivileged user under root) read the files
    started: list[Started] = []
    bulk_bytes = args.bulk_mib * MiB
    with signals_unwind():
        try:
            if {"rr", "bulk"} & set(args.parts):
                backend_port = free_port()
                backend = start_backend(tools["nginx"], workdir, backend_port, bulk_bytes, pin)
                started.append(backend)
                wait_ready(backend, backend_port)
                if "bulk" in args.parts:  # the first read of the sparse file fills the page cache
                    measure_bulk(
                        tools["curl"], "backend", backend, backend_port, bulk_bytes, 0, pin
                    )
                proxies: dict[str, tuple[Started, int]] = {}
                for name in args.proxies:
                    port = free_port()
                    if name == "evenflow":
                        proxy = start_evenflow(workdir, port, backend_port, pin)
                    elif name == "haproxy":
                        proxy = start_haproxy(tools["haproxy"], workdir, port, backend_port, pin)
                    else:
                        proxy = start_nginx_stream(tools["nginx"], workdir, port, backend_port, pin)
                    started.append(proxy)
                    wait_ready(proxy, port)
                    proxies[name] = (proxy, port)
                order = list(proxies)
                for round_ in range(1, args.repeat + 1):
                    for name in order:
                        proxy, port = proxies[name]
                        if "rr" in args.parts:
                            print(f"round {round_}: rr {name} ...", end=" ", flush=True)
                            run = measure_rr(tools["wrk"], name, proxy, port, args, round_, pin)
                            rr.append(run)
                            print(
                                f"{run.requests_per_s:.0f} req/s, {run.cpu_us_per_req:.1f} µs/req"
                            )
                            if run.errors:
                                failures.append(f"rr {name} round {round_}: {run.errors}")
                        if "bulk" in args.parts:
                            print(f"round {round_}: bulk {name} ...", end=" ", flush=True)
                            b = measure_bulk(
                                tools["curl"], name, proxy, port, bulk_bytes, round_, pin
                            )
                            bulk.append(b)
                            print(f"{b.mb_per_s:.0f} MB/s, {b.cpu_s_per_gib:.2f} CPU s/GiB")
                    order = order[1:] + order[:1]  # rotate: nobody always goes first
                for process in reversed(started):  # the idle part runs alone
                    process.stop()
                started.clear()
            if "idle" in args.parts:
                for round_ in range(1, args.repeat + 1):
                    print(f"round {round_}: idle {idle_count} ...", end=" ", flush=True)
                    (workdir / f"idle-{round_}").mkdir()
                    i = measure_idle(workdir, idle_count, round_, pin)
                    idle.append(i)
                    print(
                        f"RSS {i.rss_before / MiB:.1f} -> {i.rss_after / MiB:.1f} MiB, "
                        f"{i.bytes_per_connection / 1024:.2f} KiB/conn, opened in "
                        f"{i.seconds_to_open:.1f} s"
                    )
        finally:
            for process in reversed(started):
                process.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(rr, bulk, idle)
    print_summary(summary, args, "; ".join(notes))
    return write_results(
        "l4-",
        {
            "versions": versions(tools),
            "params": dict(vars(args)),
            "notes": notes,
            "rr": [asdict(r) for r in rr],
            "bulk": [asdict(b) for b in bulk],
            "idle": [asdict(i) for i in idle],
            "summary": summary,
        },
        failures,
    )


if __name__ == "__main__":
    run_main(main)
