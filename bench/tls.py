"""Benchmark HTTPS keep-alive: evenflow against nginx, both terminating TLS, same run.

Usage (from the repository root; `make bench` runs it after bench/run.py):

    .venv/bin/python bench/tls.py [--duration 10] [--repeat 1] [--warmup 2] [--connections 64]

What it does:
  1. Checks that nginx and wrk are installed (bench/run.py's rules: apt-get as root, else exit 2).
  2. Makes one certificate (ECDSA P-256, for 127.0.0.1) with trustme, in a scratch directory.
  3. Starts the backend (nginx, a static 1 KiB file, plain HTTP keep-alive) and two proxies in
     front of it, each one process with one worker, TLS 1.2/1.3 with that certificate, keep-alive
     to the backend: nginx (`listen ssl`), and evenflow (`tls:` on its listener).
  4. For each proxy: a warm-up, then `wrk -t1 -c64 https://.../1k`. TLS handshakes happen once
     per wrk connection, so this measures the record layer on a keep-alive connection. It
     records wrk's requests/s and the proxy's CPU time (utime+stime from /proc) during the run,
     hence CPU microseconds per request, and reports evenflow's ratio to nginx (target: at most
     1.3x nginx's CPU per request).
  5. Writes everything as JSON to bench/results/tls-<UTC timestamp>.json.

Everything it starts is stopped on exit, on error and on Ctrl-C. Exit status: 0 on success, 1
when a proxy could not be measured cleanly, 2 when tools are missing.
"""

from __future__ import annotations

import argparse
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (  # noqa: E402  (bench/ is not a package: run.py sits beside this file)
    BODY_BYTES,
    PATH,
    Run,
    Started,
    cpu_seconds_between,
    cpu_ticks,
    ensure_tools,
    evenflow_python,
    free_port,
    medians,
    parse_wrk,
    process_tree,
    run_main,
    signals_unwind,
    start_backend,
    start_nginx_proxy,
    versions,
    wait_ready,
    write_results,
)

TOOLS: dict[str, str | None] = {"nginx": "nginx", "wrk": "wrk", "h2load": "nghttp2-client"}
TARGET_H2_RPS_RATIO = 0.7  # issue 7: h2load over TLS, evenflow >= 0.7x nginx req/s
TARGET_CPU_RATIO = 1.3  # issue 7: HTTPS keep-alive at most 1.3x nginx's CPU per request


def make_certificate(workdir: Path) -> tuple[Path, Path]:
    """One certificate for 127.0.0.1 (ECDSA P-256, as trustme issues), readable by nginx."""
    import trustme

    leaf = trustme.CA().issue_cert("127.0.0.1", "localhost")
    cert, key = workdir / "server.pem", workdir / "server.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    for path in (cert, key):
        path.chmod(0o644)  # nginx's workers may run as another user
    return cert, key


def start_nginx_tls(
    nginx: str,
    workdir: Path,
    port: int,
    backend_port: int,
    cert: Path,
    key: Path,
    h2: bool = False,
) -> Started:
    return start_nginx_proxy(
        nginx,
        workdir,
        port,
        backend_port,
        listen_options=" ssl http2" if h2 else " ssl",
        server_lines=(
            f"    ssl_certificate {cert};\n"
            f"    ssl_certificate_key {key};\n"
            "    ssl_protocols TLSv1.2 TLSv1.3;\n"
            "    ssl_session_cache shared:SSL:10m;\n"
        ),
        prefix_name="nginx-tls",
    )


def start_evenflow_tls(
    workdir: Path, port: int, backend_port: int, cert: Path, key: Path, h2: bool = False
) -> Started:
    conf = workdir / "evenflow-tls.yaml"
    conf.write_text(
        f"""
listeners:
  - name: bench
    bind: "127.0.0.1:{port}"
    tls:
      certificates: [{{cert: "{cert}", key: "{key}"}}]
      alpn: [{"h2, " if h2 else ""}http/1.1]
    routes:
      - pool: web
pools:
  web:
    backends: ["127.0.0.1:{backend_port}"]
access_log:
  path: "off"
drain_timeout: 2s
"""
    )
    return Started(
        "evenflow", [evenflow_python(), "-m", "evenflow", "run", "-c", str(conf)], workdir
    )


def wait_ready_tls(started: Started, port: int, timeout_s: float = 15.0) -> None:
    """Until GET https://127.0.0.1:port/1k answers 200 with the 1 KiB body."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if started.proc.poll() is not None:
            raise RuntimeError(f"{started.name} exited:\n{started.log_tail()}")
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{port}{PATH}", context=context, timeout=2
            ) as response:
                if response.status == 200 and len(response.read()) == BODY_BYTES:
                    return
                last = f"status {response.status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise RuntimeError(f"{started.name} not ready ({last}):\n{started.log_tail()}")


def run_wrk(wrk: str, port: int, duration_s: int, connections: int) -> str:
    done = subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{duration_s}s",
            "--latency",
            f"https://127.0.0.1:{port}{PATH}",
        ],
        capture_output=True,
        text=True,
        timeout=duration_s + 60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


H2LOAD_STREAMS = 10  # per connection: with -c 10, the issue's "100 streams over 10 connections"
H2LOAD_RESULT = re.compile(r"finished in [\d.]+\w*s, ([\d.]+) req/s")
H2LOAD_REQUESTS = re.compile(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded")


def run_h2load(port: int, requests: int) -> tuple[float, int, int]:
    """h2load over TLS (ALPN h2), 10 connections x 10 streams: (req/s, requests, errors)."""
    done = subprocess.run(
        [
            "h2load",
            "-n",
            str(requests),
            "-c",
            "10",
            "-m",
            str(H2LOAD_STREAMS),
            f"https://127.0.0.1:{port}{PATH}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    rate = H2LOAD_RESULT.search(done.stdout)
    counts = H2LOAD_REQUESTS.search(done.stdout)
    if done.returncode != 0 or rate is None or counts is None:
        raise RuntimeError(f"h2load failed ({done.returncode}): {done.stdout[-400:]}")
    total, succeeded = int(counts.group(1)), int(counts.group(2))
    return float(rate.group(1)), succeeded, total - succeeded


def h2load_errors(failed: int) -> dict[str, int]:
    """h2load's failures in the shape wrk's errors are reported in."""
    return {"failed": failed} if failed else {}


def measure(
    wrk: str, proxy: Started, port: int, backend: Started, args: argparse.Namespace, round_: int
) -> Run:
    if args.h2:
        run_h2load(port, args.h2_requests // 5)  # warm-up
        before = cpu_ticks(process_tree(proxy.pid))
        backend_before = cpu_ticks(process_tree(backend.pid))
        rps, total, failed = run_h2load(port, args.h2_requests)
        errors = h2load_errors(failed)
        after = cpu_ticks(process_tree(proxy.pid))
        backend_after = cpu_ticks(process_tree(backend.pid))
        latency: dict[str, float] = {}
    else:
        run_wrk(wrk, port, args.warmup, args.connections)
        before = cpu_ticks(process_tree(proxy.pid))
        backend_before = cpu_ticks(process_tree(backend.pid))
        output = run_wrk(wrk, port, args.duration, args.connections)
        after = cpu_ticks(process_tree(proxy.pid))
        backend_after = cpu_ticks(process_tree(backend.pid))
        rps, total, errors, latency = parse_wrk(output)
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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per run (2)")
    parser.add_argument("--repeat", type=int, default=3, help="rotations; medians reported (3)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    parser.add_argument(
        "--h2",
        action="store_true",
        help="HTTP/2 over TLS with h2load (10 connections x 10 streams) instead of wrk",
    )
    parser.add_argument(
        "--h2-requests", type=int, default=50000, help="requests per h2load run (50000)"
    )
    args = parser.parse_args()
    if min(args.duration, args.repeat, args.connections, args.warmup) < 1:
        parser.error("--duration, --warmup, --repeat and --connections must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    tools = ensure_tools(TOOLS)
    started: list[Started] = []
    runs: list[Run] = []
    failures: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="evenflow-bench-tls-"))
    workdir.chmod(0o755)
    with signals_unwind():
        try:
            cert, key = make_certificate(workdir)
            backend_port = free_port()
            backend = start_backend(tools["nginx"], workdir, backend_port)
            started.append(backend)
            wait_ready(backend, backend_port)
            proxies: dict[str, tuple[Started, int]] = {}
            for name in ("nginx", "evenflow"):
                port = free_port()
                if name == "nginx":
                    proxy = start_nginx_tls(
                        tools["nginx"], workdir, port, backend_port, cert, key, args.h2
                    )
                else:
                    proxy = start_evenflow_tls(workdir, port, backend_port, cert, key, args.h2)
                started.append(proxy)
                try:
                    wait_ready_tls(proxy, port)
                except RuntimeError as exc:
                    failures.append(f"{name}: {exc}")
                    continue
                proxies[name] = (proxy, port)
            for round_ in range(1, args.repeat + 1):
                for name, (proxy, port) in proxies.items():
                    print(f"round {round_}/{args.repeat}: {name} (https) ...", end=" ", flush=True)
                    try:
                        run = measure(tools["wrk"], proxy, port, backend, args, round_)
                    except RuntimeError as exc:
                        print("failed")
                        failures.append(f"{name} round {round_}: {exc}")
                        continue
                    runs.append(run)
                    print(f"{run.requests_per_s:.0f} req/s, {run.cpu_us_per_req:.1f} µs/req")
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
    if args.h2:
        print(f"\nHTTP/2 over TLS (h2load -c 10 -m {H2LOAD_STREAMS}, {PATH}):")
    else:
        print(f"\nHTTPS keep-alive (wrk -t1 -c{args.connections}, {PATH}, TLS 1.3):")
    print(f"{'proxy':<10} {'req/s':>10} {'CPU µs/req':>11} {'p99 ms':>8} {'errors':>7}")
    for proxy_name, s in summary.items():
        p99 = f"{s['latency_p99_ms']:.2f}" if s["latency_p99_ms"] is not None else "-"
        print(
            f"{proxy_name:<10} {s['requests_per_s']:>10.0f} {s['cpu_us_per_req']:>11.1f}"
            f" {p99:>8} {s['errors']:>7}"
        )
    ratio = None
    if "evenflow" in summary and "nginx" in summary:
        ratio = summary["evenflow"]["cpu_us_per_req"] / summary["nginx"]["cpu_us_per_req"]
        rps_ratio = summary["evenflow"]["requests_per_s"] / summary["nginx"]["requests_per_s"]
        if args.h2:
            verdict = "meets" if rps_ratio >= TARGET_H2_RPS_RATIO else "misses"
            print(
                f"evenflow req/s x{rps_ratio:.2f} nginx ({verdict} the {TARGET_H2_RPS_RATIO}x "
                f"target); CPU/req x{ratio:.2f}"
            )
        else:
            verdict = "meets" if ratio <= TARGET_CPU_RATIO else "misses"
            print(
                f"evenflow CPU/req x{ratio:.2f} nginx ({verdict} the {TARGET_CPU_RATIO}x "
                f"target); req/s x{rps_ratio:.2f}"
            )
    return write_results(
        "tls-",
        {
            "kind": "h2load-tls" if args.h2 else "https-keepalive",
            "versions": versions(tools),
            "params": {
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "repeat": args.repeat,
                "connections": args.connections,
                "path": PATH,
            },
            "runs": [asdict(r) for r in runs],
            "summary": summary,
            "evenflow_cpu_ratio_vs_nginx": ratio,
        },
        failures,
    )


if __name__ == "__main__":
    run_main(main)
