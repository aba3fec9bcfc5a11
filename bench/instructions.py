"""Instructions per request: evenflow against nginx and HAProxy, counted, not timed.

Usage (from the repository root):

    .venv/bin/python bench/instructions.py [--requests 5000] [--connections 64]
        [--proxies nginx,haproxy,evenflow,evenflow+log,evenflow-bare,evenflow-traced]
        [--log-format json]
        [--protocol http1|h2c|https|h2]

Why: on a shared machine two identical wrk runs differ by 20% and more, which hides any change
under that, such as what the access log or the metric counters cost. Valgrind's callgrind counts
the instructions a process executes, the same on every run, so a 3% change shows as 3%.

What it does:
  1. Checks for nginx, haproxy, h2load and valgrind (as root it apt-get installs what is missing,
     as bench/run.py does).
  2. Starts the backend of bench/run.py (nginx, a static 1 KiB file, not counted), then each
     proxy in turn, configured as in bench/run.py but run under `valgrind --tool=callgrind`:
     nginx, HAProxy, evenflow, and evenflow's observability variants (`evenflow+log`: the JSON
     access log written to a file; `evenflow-bare`: no metric counters, no trace context;
     `evenflow-traced`: no metric counters, trace context on).
  3. Warms each up with 1,000 requests, zeroes its counters (callgrind_control -z), sends
     exactly --requests requests with h2load, dumps the counters (callgrind_control -d) and
     divides: instructions per request. --protocol picks what h2load speaks: `http1`
     (`h2load --h1` over keep-alive connections, the default), `h2c` (HTTP/2 with prior
     knowledge), `https` (HTTP/1.1 over TLS) or `h2` (HTTP/2 over TLS, ALPN); the HTTP/2 ones
     run 10 streams at once on each of 10 connections (issue 7's h2load load). TLS ones use a
     certificate made for the run and, as bench/tls.py, compare nginx and evenflow only;
     HAProxy is counted on HTTP/1.1 only. TLS handshakes are counted too (one per
     connection), so more --requests make them weigh less.
  4. Prints each proxy's count and ratios: evenflow against nginx and HAProxy, and each
     observability variant against evenflow and against evenflow-bare. Writes the JSON to
     bench/results/instructions-<UTC timestamp>.json.

What it does not count: the kernel. A request's system calls (reads, writes, epoll) cost a
proxy CPU time that callgrind cannot see, and they are most of nginx's; so these ratios are
larger than bench/run.py's CPU-time ratios for the same proxies. They measure what a proxy's
own code costs, which is the part evenflow can change, and are exact for comparing two
evenflows (the access log's write() calls, a few per second, aside).

Everything it starts is stopped on exit, on error and on Ctrl-C. Exit status: 0 on success, 1
when a proxy could not be measured, 2 when tools are missing.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (  # noqa: E402  (bench/ is not a package: run.py sits beside this file)
    BARE,
    EVENFLOWS,
    LOGGED,
    PATH,
    PROXIES,
    TRACED,
    Started,
    ensure_tools,
    evenflow_unavailable,
    free_port,
    process_tree,
    run_main,
    signals_unwind,
    start_backend,
    start_evenflow,
    start_haproxy,
    start_nginx_proxy,
    versions,
    wait_ready,
    write_results,
)
from tls import make_certificate, start_evenflow_tls, start_nginx_tls, wait_ready_tls  # noqa: E402

TOOLS: dict[str, str | None] = {
    "nginx": "nginx",
    "haproxy": "haproxy",
    "h2load": "nghttp2-client",
    "valgrind": "valgrind",
    "callgrind_control": "valgrind",
}
WARMUP_REQUESTS = 1000
PROTOCOLS = ("http1", "h2c", "https", "h2")
TLS_PROTOCOLS = ("https", "h2")
H2_CONNECTIONS = 10  # HTTP/2: h2load -c 10 -m 10, 100 streams in flight (issue 7)
H2_STREAMS = 10
READY_TIMEOUT_S = 180.0  # Python starting under valgrind takes a while


def under_callgrind(started: Started, outdir: Path) -> Started:
    """The same command again, run by callgrind writing its counts to `outdir`."""
    started.stop()
    if started.name == "nginx":
        # one process: a forked worker escapes callgrind_control
        conf = Path(started.argv[started.argv.index("-c") + 1])
        conf.write_text("master_process off;\n" + conf.read_text())
    argv = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={outdir}/callgrind.%p",
        *started.argv,
    ]
    again = Started(started.name, argv, outdir)
    again.access_log = started.access_log  # (removed when it stops)
    return again


def callgrind_control(flag: str, pids: list[int]) -> None:
    for pid in pids:
        subprocess.run(
            ["callgrind_control", flag, str(pid)],
            capture_output=True,
            timeout=60,
            check=False,
        )


def dumped_instructions(outdir: Path, timeout_s: float = 60.0) -> int:
    """The instructions of every dump in `outdir` (one per process), once all are written."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dumps = sorted(outdir.glob("callgrind.*.*"))  # callgrind.<pid>.<n>: a dump on demand
        summaries = [
            re.search(r"^summary: (\d+)", d.read_text(errors="replace"), re.M) for d in dumps
        ]
        if dumps and all(summaries):
            return sum(int(m.group(1)) for m in summaries if m)
        time.sleep(0.5)
    raise RuntimeError(f"callgrind wrote no complete dump in {outdir} within {timeout_s:.0f} s")


def h2load(tool: str, port: int, requests: int, connections: int, protocol: str) -> None:
    scheme = "https" if protocol in TLS_PROTOCOLS else "http"
    speaks = ["--h1"] if protocol in ("http1", "https") else ["-m", str(H2_STREAMS)]
    done = subprocess.run(
        [
            tool,
            *speaks,
            "-n",
            str(requests),
            "-c",
            str(connections),
            f"{scheme}://127.0.0.1:{port}{PATH}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    found = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", done.stdout)
    if done.returncode != 0 or found is None or int(found.group(1)) != requests:
        raise RuntimeError(f"h2load did not complete {requests} requests:\n{done.stdout[-800:]}")


def wait_ready_h2c(tool: str, started: Started, port: int, timeout_s: float) -> None:
    """Until one h2c request succeeds (nginx's h2c listener speaks nothing else)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if started.proc.poll() is not None:
            raise RuntimeError(f"{started.name} exited:\n{started.log_tail()}")
        try:
            h2load(tool, port, 1, 1, "h2c")
            return
        except RuntimeError:
            time.sleep(0.5)
    raise RuntimeError(f"{started.name} not ready over h2c:\n{started.log_tail()}")


def count(
    tools: dict[str, str], started: Started, port: int, outdir: Path, args: argparse.Namespace
) -> float:
    """Instructions per request of the proxy `started`, already running under callgrind."""
    if args.protocol in TLS_PROTOCOLS:
        wait_ready_tls(started, port, READY_TIMEOUT_S)
    elif args.protocol == "h2c":
        wait_ready_h2c(tools["h2load"], started, port, READY_TIMEOUT_S)
    else:
        wait_ready(started, port, READY_TIMEOUT_S)
    h2load(tools["h2load"], port, WARMUP_REQUESTS, args.connections, args.protocol)
    pids = process_tree(started.pid)
    callgrind_control("-z", pids)
    h2load(tools["h2load"], port, args.requests, args.connections, args.protocol)
    callgrind_control("-d", pids)
    return dumped_instructions(outdir) / args.requests


def report(found: dict[str, float]) -> dict[str, float]:
    print(f"\n{'proxy':<15} instructions/request (user space; callgrind, exact)")
    for name, per_request in found.items():
        print(f"{name:<15} {per_request:>12,.0f}")
    ratios: dict[str, float] = {}
    pairs = [
        ("evenflow", "nginx"),
        ("evenflow", "haproxy"),
        (LOGGED, "evenflow"),
        ("evenflow", BARE),
        (LOGGED, TRACED),
        (LOGGED, BARE),
    ]
    for numerator, denominator in pairs:
        if found.get(numerator) and found.get(denominator):
            ratio = found[numerator] / found[denominator]
            ratios[f"{numerator}/{denominator}"] = ratio
            print(f"{numerator} vs {denominator}: x{ratio:.3f}")
    return ratios


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=5000, help="requests counted (5000)")
    parser.add_argument(
        "--connections", type=int, help="h2load connections (64; HTTP/2: 10, of 10 streams)"
    )
    parser.add_argument("--protocol", choices=PROTOCOLS, default="http1", help="(http1)")
    parser.add_argument(
        "--proxies",
        default=",".join((*PROXIES, LOGGED, BARE, TRACED)),
        help="which to count, in order (all)",
    )
    parser.add_argument("--log-format", choices=["json", "combined"], default="json")
    parser.add_argument(
        "--keep",
        type=Path,
        help="copy callgrind's dumps here, for callgrind_annotate (where the instructions go)",
    )
    args = parser.parse_args()
    args.proxies = [p.strip() for p in args.proxies.split(",") if p.strip()]
    unknown = set(args.proxies) - set(PROXIES) - set(EVENFLOWS)
    if unknown or not args.proxies:
        parser.error(f"--proxies: unknown {sorted(unknown)}")
    if args.protocol != "http1" and "haproxy" in args.proxies:
        parser.error("--proxies: haproxy is counted on --protocol http1 only")
    if args.protocol in TLS_PROTOCOLS and set(args.proxies) - {"nginx", "evenflow"}:
        parser.error(f"--proxies: over TLS ({args.protocol}) nginx and evenflow only")
    if args.connections is None:
        args.connections = 64 if args.protocol in ("http1", "https") else H2_CONNECTIONS
    if args.requests < 1 or args.connections < 1:
        parser.error("--requests and --connections must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    tools = ensure_tools(TOOLS)
    if any(p in EVENFLOWS for p in args.proxies) and (reason := evenflow_unavailable()):
        print(f"bench: skipping evenflow: {reason}", file=sys.stderr)
        args.proxies = [p for p in args.proxies if p not in EVENFLOWS]
    found: dict[str, float] = {}
    failures: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="evenflow-instructions-"))
    workdir.chmod(0o755)  # nginx workers drop to an unprivileged user when started as root
    with signals_unwind():
        backend: Started | None = None
        try:
            backend_port = free_port()
            backend = start_backend(tools["nginx"], workdir, backend_port)
            wait_ready(backend, backend_port)
            tls = args.protocol in TLS_PROTOCOLS
            h2 = args.protocol in ("h2c", "h2")
            if tls:
                cert, key = make_certificate(workdir)
            for name in args.proxies:
                port = free_port()
                outdir = workdir / f"callgrind-{name}"
                outdir.mkdir()
                if tls and name == "nginx":
                    plain = start_nginx_tls(
                        tools["nginx"], workdir, port, backend_port, cert, key, h2=h2
                    )
                elif tls:
                    plain = start_evenflow_tls(workdir, port, backend_port, cert, key, h2=h2)
                elif name == "nginx":
                    plain = start_nginx_proxy(
                        tools["nginx"],
                        workdir,
                        port,
                        backend_port,
                        listen_options=" http2" if h2 else "",  # h2c: prior knowledge
                    )
                elif name == "haproxy":
                    plain = start_haproxy(tools["haproxy"], workdir, port, backend_port)
                else:
                    plain = start_evenflow(workdir, port, backend_port, name, args.log_format)
                proxy = under_callgrind(plain, outdir)
                print(f"{name}: counting {args.requests} requests ...", end=" ", flush=True)
                try:
                    found[name] = count(tools, proxy, port, outdir, args)
                    print(f"{found[name]:,.0f} instructions/request", flush=True)
                except RuntimeError as exc:
                    print("failed")
                    failures.append(f"{name}: {exc}")
                finally:
                    proxy.stop()
                    if args.keep is not None:
                        args.keep.mkdir(parents=True, exist_ok=True)
                        for dump in outdir.glob("callgrind.*.*"):
                            shutil.copy(dump, args.keep / f"{name}.{dump.name}")
        finally:
            if backend is not None:
                backend.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    if not found:
        print("bench: nothing measured:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    ratios = report(found)
    return write_results(
        "instructions-",
        {
            "kind": "instructions-per-request",
            "versions": versions(tools),
            "params": {
                "requests": args.requests,
                "warmup_requests": WARMUP_REQUESTS,
                "connections": args.connections,
                "protocol": args.protocol,
                "path": PATH,
                "log_format": args.log_format,
            },
            "instructions_per_request": found,
            "ratios": ratios,
        },
        failures,
    )


if __name__ == "__main__":
    run_main(main)
