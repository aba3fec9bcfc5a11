"""What evenflow's access log, metrics and tracing cost in CPU per request, variants loaded at
the same time.

Usage (from the repository root; `make bench` runs it):

    .venv/bin/python bench/observability.py [--rounds 12] [--duration 4] [--warmup 1]
                                            [--connections 32] [--log-format json|combined]

Why at the same time: on a shared machine (a VM whose host is busy) the CPU one request costs
drifts by 20% and more from one run to the next, so two variants measured one after the other
(bench/run.py --evenflow-log ...) differ by as much as what observability costs; the median
of a dozen rounds still moves by ±7%. Loaded together, two variants meet the same moments of
the host's load, and the ratio of their CPU per request, round by round, is what differs
between them: its rounds spread by ~5% instead of ~20%. Two at a time, not three: three
proxies, three wrk and the backend on two cores spread the rounds as widely as before.

What it does:
  1. Starts bench/run.py's backend (nginx, a static 1 KiB file) and three evenflows in front
     of it, configured as bench/run.py configures its variants:
       evenflow-bare    no metric counters, no trace context, no access log;
       evenflow-traced  trace context on (a traceparent sent on to the backend), no metric
                        counters, no access log;
       evenflow+log     all three on: metric counters, trace context, and the JSON access log
                        (the decision log) written to a file (in /dev/shm when there is one;
                        emptied before each round).
  2. Each round loads two pairs in turn: evenflow+log with evenflow-traced, then
     evenflow-traced with evenflow-bare. A pair: one `wrk -t1 -c<connections>` per evenflow,
     both started together for --duration seconds (after a warm-up, the same way); the CPU
     time (utime+stime from /proc) of each evenflow over the requests its wrk made: CPU µs
     per request.
  3. Reports, per round and as the median of the rounds: logging and metrics, evenflow+log's
     CPU per request over evenflow-traced's (issue 6's measure, which asks that they cost
     within 10%); tracing, evenflow-traced's over evenflow-bare's; and the three together,
     the product of the two, round by round. Writes everything as JSON to
     bench/results/observability-<UTC timestamp>.json.

Exit status: 0 on success, 1 when a variant could not be measured cleanly, 2 when tools are
missing.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (  # noqa: E402  (bench/ is not a package: run.py sits beside this file)
    BARE,
    LOGGED,
    PATH,
    TRACED,
    Run,
    Started,
    cpu_seconds_between,
    cpu_ticks,
    ensure_tools,
    evenflow_data_path,
    evenflow_unavailable,
    free_port,
    parse_wrk,
    process_tree,
    ready_backend,
    run_main,
    signals_unwind,
    start_evenflow,
    truncate_access_log,
    versions,
    wait_ready,
    write_results,
)

VARIANTS = (BARE, TRACED, LOGGED)
# the pairs loaded together, each a cost reported: (name, numerator, denominator)
COSTS = (
    ("log_and_metrics", LOGGED, TRACED),
    ("tracing", TRACED, BARE),
)
WHAT = {
    "log_and_metrics": f"log and metrics ({LOGGED} vs {TRACED})",
    "tracing": f"tracing ({TRACED} vs {BARE})",
    "log_metrics_and_tracing": "log, metrics and tracing (the two together)",
}


def start_wrk(wrk: str, port: int, duration_s: int, connections: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [wrk, "-t1", f"-c{connections}", f"-d{duration_s}s", f"http://127.0.0.1:{port}{PATH}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def load_together(
    wrk: str, proxies: dict[str, tuple[Started, int]], duration_s: int, connections: int
) -> dict[str, tuple[int, float, str]]:
    """One wrk per proxy, all at once: per proxy (requests, CPU seconds, wrk's output)."""
    pids = {name: process_tree(started.pid) for name, (started, _) in proxies.items()}
    before = {name: cpu_ticks(pids[name]) for name in proxies}
    loads = {
        name: start_wrk(wrk, port, duration_s, connections) for name, (_, port) in proxies.items()
    }
    outputs = {}
    try:
        for name, load in loads.items():
            out, err = load.communicate(timeout=duration_s + 60)
            if load.returncode != 0:
                raise RuntimeError(f"wrk against {name} failed ({load.returncode}): {err.strip()}")
            outputs[name] = out
    finally:  # a wrk left running would load the next pair's proxies
        for load in loads.values():
            if load.poll() is None:
                load.kill()
                load.wait()
    after = {name: cpu_ticks(process_tree(started.pid)) for name, (started, _) in proxies.items()}
    found = {}
    for name, out in outputs.items():
        _, total, _, _ = parse_wrk(out)
        found[name] = (total, cpu_seconds_between(before[name], after[name]), out)
    return found


def measure_pair(
    wrk: str, pair: dict[str, tuple[Started, int]], args: argparse.Namespace, round_: int
) -> list[Run]:
    """The two evenflows of `pair` loaded together: a Run each."""
    for started, _ in pair.values():
        truncate_access_log(started)
    load_together(wrk, pair, args.warmup, args.connections)
    runs = []
    for name, (total, cpu_s, out) in load_together(
        wrk, pair, args.duration, args.connections
    ).items():
        rps, _, errors, _ = parse_wrk(out)
        runs.append(
            Run(
                proxy=name,
                round=round_,
                requests_per_s=rps,
                requests=total,
                cpu_s=cpu_s,
                cpu_us_per_req=cpu_s * 1e6 / total if total else float("nan"),
                backend_cpu_us_per_req=float("nan"),  # one backend serves both
                latency_p50_ms=None,
                latency_p99_ms=None,
                errors=errors,
            )
        )
    return runs


def costs(runs: dict[str, list[Run]]) -> dict[str, dict[str, object]]:
    """Each pair's ratio per round and its median; and their product, round by round."""
    by_round: dict[str, dict[int, float]] = {}
    for name, numerator, denominator in COSTS:
        tops = {r.round: r for r in runs[name] if r.proxy == numerator}
        bottoms = {r.round: r for r in runs[name] if r.proxy == denominator}
        by_round[name] = {
            n: tops[n].cpu_us_per_req / bottoms[n].cpu_us_per_req
            for n in sorted(set(tops) & set(bottoms))
        }
    both = sorted(set(by_round["log_and_metrics"]) & set(by_round["tracing"]))
    by_round["log_metrics_and_tracing"] = {
        n: by_round["log_and_metrics"][n] * by_round["tracing"][n] for n in both
    }
    return {
        name: {
            "cpu_per_req_by_round": list(ratios.values()),
            "cpu_per_req_median": statistics.median(ratios.values()),
        }
        for name, ratios in by_round.items()
        if ratios
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=12, help="rounds measured (12)")
    parser.add_argument("--duration", type=int, default=4, help="seconds per pair a round (4)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per pair (1)")
    parser.add_argument(
        "--connections", type=int, default=32, help="wrk connections per variant (32)"
    )
    parser.add_argument("--log-format", choices=["json", "combined"], default="json")
    args = parser.parse_args()
    if min(args.rounds, args.duration, args.warmup, args.connections) < 1:
        parser.error("--rounds, --duration, --warmup and --connections must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    tools = ensure_tools()
    reason = evenflow_unavailable()
    if reason is not None:
        print(f"bench: cannot run evenflow: {reason}", file=sys.stderr)
        return 1
    data_path = evenflow_data_path()
    runs: dict[str, list[Run]] = {name: [] for name, _, _ in COSTS}
    failures: list[str] = []
    started: list[Started] = []
    workdir = Path(tempfile.mkdtemp(prefix="evenflow-bench-"))
    workdir.chmod(0o755)  # nginx workers drop to an unprivileged user when started as root
    with signals_unwind():
        try:
            backend, backend_port = ready_backend(tools["nginx"], workdir)
            started.append(backend)
            proxies: dict[str, tuple[Started, int]] = {}
            for name in VARIANTS:
                port = free_port()
                proxy = start_evenflow(workdir, port, backend_port, name, args.log_format)
                started.append(proxy)
                wait_ready(proxy, port)
                proxies[name] = (proxy, port)
            for round_ in range(1, args.rounds + 1):
                for name, numerator, denominator in COSTS:
                    print(f"round {round_}/{args.rounds}, {name}: ", end="", flush=True)
                    pair = {n: proxies[n] for n in (numerator, denominator)}
                    try:
                        measured = measure_pair(tools["wrk"], pair, args, round_)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        print("failed")
                        failures.append(f"round {round_}, {name}: {exc}")
                        continue
                    runs[name] += measured
                    print(", ".join(f"{r.proxy} {r.cpu_us_per_req:.1f} µs/req" for r in measured))
                    failures += [
                        f"{r.proxy} round {round_}: wrk {r.errors}" for r in measured if r.errors
                    ]
        finally:
            for process in reversed(started):
                process.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    found = costs(runs)
    if not found:
        print("bench: no round succeeded:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    print(f"\nevenflow's data path: {data_path}")
    for name, cost in found.items():
        ratios: list[float] = cost["cpu_per_req_by_round"]  # type: ignore[assignment]
        by_round = ", ".join(f"x{r:.3f}" for r in ratios)
        print(
            f"{WHAT[name]}: CPU/req x{cost['cpu_per_req_median']:.3f} (median; rounds {by_round})"
        )
    return write_results(
        "observability-",
        {
            "versions": versions(tools),
            "evenflow_data_path": data_path,
            "params": vars(args),
            "runs": {name: [asdict(r) for r in pair_runs] for name, pair_runs in runs.items()},
            "costs": found,
        },
        failures,
    )


if __name__ == "__main__":
    run_main(main)
