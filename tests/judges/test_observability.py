"""Issue 6's "done when" for metrics, the decision log and tracing, tried as a new user would.

evenflow runs as a process with demo backends (one process each) and its admin API; the judges
are clients nobody here wrote: wrk for load, curl for /metrics, prometheus-client's own parser
to read it, the demo backend's /echo to see what reached a backend.

- under wrk's load the request counters add up to exactly what wrk sent (a Lua script makes
  each wrk connection stop after a fixed number of answers, so nothing is left in flight), and
  the duration histogram's p50/p99 (computed here from the buckets) agree with wrk's own
  latency report within the buckets' resolution;
- the decision log of a request retried off a closed port names both attempts and why the
  first failed; the retry counter says the same;
- a request's `traceparent` reaches the backend with the same trace id and evenflow's own span
  id; one without (or with an invalid one) starts a new trace; `tracing.response_header`
  answers the trace id, which is also the log line's;
- JSON and combined log formats; a cookie or Authorization value used as a hash key never
  appears in either log, nor in /metrics or the hot-spot view.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from health_support import Backend, backend_processes
from observability_support import Evenflow, curl, running_evenflow
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.judge, pytest.mark.timeout(120)]

TRACE_HEADER = "x-trace-id"
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

# wrk: every thread has one connection and stops once it has LIMIT answers, so when wrk exits
# nothing is in flight and its total is exactly what evenflow received
WRK_SCRIPT = """
local threads = {}
local limit = tonumber(os.getenv("WRK_LIMIT"))

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  answered = 0
end

function response(status, headers, body)
  answered = answered + 1
  if answered >= limit then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    io.write(string.format("thread answered %d\\n", thread:get("answered")))
  end
end
"""
WRK_THREADS = 4


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("observability")


@pytest.fixture(scope="module")
def closed_address() -> Iterator[str]:
    """A port bound and not listening: connecting is refused, and nobody else can take it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(scope="module")
def backends(workdir: Path) -> Iterator[dict[str, Backend]]:
    with backend_processes(workdir) as started:
        yield {name: started.demo(name) for name in ("a", "b")}


def build_config(backends: dict[str, Backend], closed: str, log_format: str, log_path: Path) -> Any:
    a, b = backends["a"].address, backends["b"].address

    def build(port: int, admin_port: int) -> dict[str, Any]:
        return {
            "listeners": [
                {
                    "name": "web",
                    "bind": f"127.0.0.1:{port}",
                    # a route per pool, chosen by Host: retry.test, cookie.test, auth.test,
                    # dead.test
                    "routes": [
                        *(
                            {"name": name, "match": {"host": f"{name}.test"}, "pool": name}
                            for name in ("retry", "cookie", "auth", "dead")
                        ),
                        {"name": "main", "pool": "web"},
                    ],
                }
            ],
            "pools": {
                "web": {"backends": [a, b]},
                # no health checks: the closed port stays in rotation, so requests hit it
                "retry": {"backends": [closed, a], "retries": {"attempts": 2}},
                "cookie": {
                    "algorithm": "consistent_hash",
                    "hash_key": "cookie:session",
                    "backends": [a, b],
                },
                "auth": {
                    "algorithm": "maglev",
                    "hash_key": "header:authorization",
                    "backends": [a, b],
                },
                "dead": {"backends": [closed]},  # every request answered by evenflow: 502
            },
            "access_log": {"path": str(log_path), "format": log_format},
            "tracing": {"response_header": TRACE_HEADER},
            "admin": {"bind": f"127.0.0.1:{admin_port}"},
            "drain_timeout": "1s",
        }

    return build


@pytest.fixture(scope="module")
def evenflow(
    backends: dict[str, Backend], closed_address: str, workdir: Path
) -> Iterator[Evenflow]:
    build = build_config(backends, closed_address, "json", workdir / "access.log")
    with running_evenflow(build, workdir) as running:
        yield running


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10.0) as session:
        yield session


# --- reading /metrics -------------------------------------------------------------------------


def scrape(evenflow: Evenflow) -> dict[str, Any]:
    """GET /metrics with curl, parsed by prometheus-client's parser: family name → family."""
    done = curl("--fail", evenflow.admin_url + "/metrics")
    assert done.returncode == 0, done.stderr
    return {family.name: family for family in text_string_to_metric_families(done.stdout)}


def total(families: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    """The sum of `sample` samples of `family` whose labels include `labels`."""
    if family not in families:
        return 0.0
    return sum(
        s.value
        for s in families[family].samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


def buckets(families: dict[str, Any], **labels: str) -> dict[float, float]:
    """Cumulative request-duration buckets (upper bound in seconds → count), summed over the
    series matching `labels`."""
    summed: dict[float, float] = {}
    for s in families["evenflow_request_duration_seconds"].samples:
        if s.name.endswith("_bucket") and all(s.labels.get(k) == v for k, v in labels.items()):
            bound = float(s.labels["le"])
            summed[bound] = summed.get(bound, 0.0) + s.value
    return summed


def bucket_quantile(q: float, cumulative: dict[float, float]) -> float:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding rank
    q x count (the first bucket starts at 0; past the last finite bound, that bound)."""
    bounds = sorted(cumulative)
    count = cumulative[math.inf]
    assert count > 0
    rank = q * count
    lower, below = 0.0, 0.0
    for bound in bounds:
        if cumulative[bound] >= rank:
            if math.isinf(bound):
                return lower
            inside = cumulative[bound] - below
            return lower + (bound - lower) * (rank - below) / inside
        lower, below = bound, cumulative[bound]
    raise AssertionError("no bucket holds the rank")


def delta(after: dict[float, float], before: dict[float, float]) -> dict[float, float]:
    return {bound: after[bound] - before.get(bound, 0.0) for bound in after}


def bucket_of(seconds: float, cumulative: dict[float, float]) -> tuple[float, float]:
    """The (lower, upper] bucket bounds that hold `seconds`."""
    lower = 0.0
    for bound in sorted(cumulative):
        if seconds <= bound:
            return lower, bound
        lower = bound
    raise AssertionError(f"{seconds} beyond +Inf")


# --- wrk --------------------------------------------------------------------------------------

_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def run_wrk(url: str, per_thread: int, workdir: Path, duration_s: int = 5) -> dict[str, Any]:
    """wrk with WRK_THREADS connections, each stopping after `per_thread` answers; its
    total, per-thread answers and latency percentiles (seconds) as wrk reports them."""
    wrk = shutil.which("wrk")
    if wrk is None:
        pytest.fail("wrk is missing: scripts/test-tools.sh installs it")
    script = workdir / "stop_after.lua"
    script.write_text(WRK_SCRIPT)
    done = subprocess.run(
        [
            wrk,
            f"-t{WRK_THREADS}",
            f"-c{WRK_THREADS}",
            f"-d{duration_s}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=duration_s + 30,
        env={"WRK_LIMIT": str(per_thread), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr + out
    requests = re.search(r"(\d+) requests in", out)
    assert requests is not None, out
    latency = {
        p: float(value) * _UNITS_S[unit]
        for p, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    }
    answered = [int(n) for n in re.findall(r"thread answered (\d+)", out)]
    assert answered == [per_thread] * WRK_THREADS, (
        f"wrk's connections did not all finish in {duration_s}s (so some requests may have been "
        f"in flight when it stopped):\n{out}"
    )
    assert "Socket errors" not in out and "Non-2xx" not in out, out
    return {"requests": int(requests.group(1)), "p50": latency["50"], "p99": latency["99"]}


# --- the judges -------------------------------------------------------------------------------


def test_request_counters_add_up_to_what_wrk_sent(evenflow: Evenflow, workdir: Path) -> None:
    before = scrape(evenflow)
    # the test's own request: checks the way is clear before the load (counted below)
    assert curl("--fail", "-o", "/dev/null", evenflow.url + "/").returncode == 0
    own = 1
    wrk = run_wrk(evenflow.url + "/", per_thread=500, workdir=workdir)
    after = scrape(evenflow)

    def requests(**labels: str) -> float:
        family, sample = "evenflow_requests", "evenflow_requests_total"
        return total(after, family, sample, **labels) - total(before, family, sample, **labels)

    sent = wrk["requests"] + own
    assert sent == WRK_THREADS * 500 + own
    assert requests(listener="web") == sent
    assert requests(route="main", pool="web", code_class="2xx") == sent
    # round robin over two backends: half each (one more for one of them, the total being odd)
    addresses = {s.labels["backend"] for s in after["evenflow_requests"].samples}
    per_backend = sorted(requests(route="main", backend=address) for address in addresses)
    assert per_backend[-2:] == [sent // 2, sent - sent // 2]
    # the duration histogram counted each of them too
    family = "evenflow_request_duration_seconds"
    count = family + "_count"
    assert total(after, family, count) - total(before, family, count) == sent
    connections = total(after, "evenflow_connections", "evenflow_connections_total")
    assert connections >= WRK_THREADS + own
    # evenflow times each request from inside wrk's own measurement: its quantiles can never
    # lie above the bucket that holds wrk's
    window = delta(buckets(after, route="main"), buckets(before, route="main"))
    for q, theirs in ((0.5, wrk["p50"]), (0.99, wrk["p99"])):
        ours = bucket_quantile(q, window)
        assert 0 < ours <= bucket_of(theirs, window)[1], (
            f"p{q * 100:g}: evenflow {ours * 1000:.3f} ms, wrk {theirs * 1000:.3f} ms"
        )


def test_latency_quantiles_agree_with_wrk(evenflow: Evenflow, workdir: Path) -> None:
    """With a backend that takes 20 ms, both see about 20 ms; evenflow's quantiles (from its
    buckets) must fall where wrk's do, within a bucket's width."""
    families_before = scrape(evenflow)
    wrk = run_wrk(evenflow.url + "/?delay=20", per_thread=60, workdir=workdir)
    after = scrape(evenflow)
    window = delta(buckets(after, route="main"), buckets(families_before, route="main"))
    assert window[math.inf] == wrk["requests"]
    for q, theirs in ((0.5, wrk["p50"]), (0.99, wrk["p99"])):
        ours = bucket_quantile(q, window)
        low, high = bucket_of(theirs, window)
        # evenflow's clock runs inside wrk's (it never sees the client's own network time), so
        # its quantile lies at or below wrk's bucket, and at most one bucket lower
        lowest = bucket_of(low, window)[0] if low > 0 else 0.0
        assert lowest <= ours <= high, (
            f"p{q * 100:g}: evenflow {ours * 1000:.2f} ms from its buckets, wrk "
            f"{theirs * 1000:.2f} ms (bucket {low * 1000:g}-{high * 1000:g} ms)"
        )
        assert ours >= 0.02 * 0.5, f"p{q * 100:g} {ours * 1000:.2f} ms under the backend's delay"
        print(f"p{q * 100:g}: evenflow {ours * 1000:.2f} ms, wrk {theirs * 1000:.2f} ms")
    # the sum agrees: every request took the backend's 20 ms, and on average not much more
    mean = (duration_sum(after) - duration_sum(families_before)) / window[math.inf]
    assert 0.02 <= mean <= wrk["p99"] * 1.5, f"mean {mean * 1000:.2f} ms"


def duration_sum(families: dict[str, Any]) -> float:
    return total(
        families,
        "evenflow_request_duration_seconds",
        "evenflow_request_duration_seconds_sum",
        route="main",
    )


def test_decision_log_shows_a_retried_request(
    evenflow: Evenflow, backends: dict[str, Backend], closed_address: str, client: httpx.Client
) -> None:
    before = scrape(evenflow)
    request_ids = []
    for _ in range(4):  # round robin over [closed, a]: the closed port is a first pick
        response = client.get(evenflow.url + "/echo", headers={"host": "retry.test"})
        assert response.headers["x-backend"] == "a"
        request_ids.append(_echo(response)["x-request-id"])
    records = [_record_of(evenflow, request_id) for request_id in request_ids]
    retried = [r for r in records if r["attempts"] == 2]
    assert retried, records
    for record in retried:
        assert record["backend"] == backends["a"].address
        assert record["status"] == 200 and record["route"] == "retry"
        assert record["pool"] == "retry" and record["algorithm"] == "round_robin"
        [failure] = record["failures"]  # the first attempt, and why it failed
        assert failure.startswith(closed_address + ": ")
        assert "refused" in failure, failure
    for record in records:
        if record not in retried:
            assert record["attempts"] == 1 and "failures" not in record, record
    after = scrape(evenflow)
    retries = total(
        after, "evenflow_retries", "evenflow_retries_total", backend=closed_address
    ) - total(before, "evenflow_retries", "evenflow_retries_total", backend=closed_address)
    assert retries == len(retried)
    reasons = {
        s.labels["reason"]
        for s in after["evenflow_retries"].samples
        if s.labels["backend"] == closed_address
    }
    assert reasons == {"connect_failed"}


def test_an_answer_evenflow_makes_itself_has_the_trace_id_and_its_bytes_logged(
    evenflow: Evenflow, client: httpx.Client
) -> None:
    # the error a client most needs the trace id of; its body counted as a backend's would be
    request_id = secrets.token_hex(8)
    response = client.get(
        evenflow.url + "/anything", headers={"host": "dead.test", "x-request-id": request_id}
    )
    assert response.status_code == 502
    record = _record_of(evenflow, request_id)
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers[TRACE_HEADER])
    assert record["trace_id"] == response.headers[TRACE_HEADER]
    assert record["bytes_out"] == len(response.content) > 0
    assert record["status"] == 502 and record["route"] == "dead"


def test_an_answer_evenflow_makes_to_head_has_no_body(evenflow: Evenflow) -> None:
    # a body after a HEAD's answer would be read as the next response on the connection
    with socket.create_connection(("127.0.0.1", evenflow.port), timeout=5) as sock:
        sock.sendall(
            b"HEAD /x HTTP/1.1\r\nHost: dead.test\r\n\r\nGET /y HTTP/1.1\r\nHost: dead.test\r\n\r\n"
        )
        received = b""
        while received.count(b"HTTP/1.1 502") < 2 or not received.endswith(b"\n"):
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    head_answer, get_answer = received.split(b"\r\n\r\n", 1)
    assert head_answer.startswith(b"HTTP/1.1 502")
    assert get_answer.startswith(b"HTTP/1.1 502")  # right after the HEAD's head
    assert get_answer.endswith(b"\r\n\r\n502 Bad Gateway\n")


def test_a_client_that_gives_up_is_logged_as_499(evenflow: Evenflow) -> None:
    # as nginx: the request is in the log even though nobody got an answer, with why
    request_id = secrets.token_hex(8)
    with socket.create_connection(("127.0.0.1", evenflow.port), timeout=5) as sock:
        sock.sendall(
            b"GET /slow?delay=3000 HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\n\r\n"
            % request_id.encode()
        )
        time.sleep(0.3)  # the backend has the request; the client stops waiting
    record = _record_of(evenflow, request_id)
    assert record["status"] == 499 and record["path"] == "/slow?delay=3000"
    assert record["attempts"] == 1 and record["backend"] is not None
    assert record["failures"] == ["client: closed the connection before the response began"]
    assert record["bytes_out"] == 0 and "ttfb_ms" not in record


def _echo(response: httpx.Response) -> dict[str, str]:
    """The headers the demo backend's /echo received (names lower-cased)."""
    assert response.status_code == 200, response.text
    return {name.lower(): value for name, value in response.json()["headers"]}


def _record_of(evenflow: Evenflow, request_id: str, within_s: float = 5.0) -> dict[str, Any]:
    """The JSON access-log record of the request with `request_id` (the log is flushed every
    0.2 s, so it may take a moment to appear)."""
    deadline = time.monotonic() + within_s
    while True:
        for line in evenflow.access_lines(0):
            record: dict[str, Any] = json.loads(line)
            if record.get("request_id") == request_id:
                return record
        if time.monotonic() > deadline:
            raise AssertionError(f"no access-log line with request_id {request_id}")
        time.sleep(0.05)


@pytest.mark.parametrize("flags", ["01", "00"])
def test_traceparent_continues_the_trace(
    evenflow: Evenflow, client: httpx.Client, flags: str
) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    response = client.get(
        evenflow.url + "/echo",
        headers={"traceparent": f"00-{trace_id}-{parent_id}-{flags}", "tracestate": state},
    )
    seen = _echo(response)
    match = TRACEPARENT.match(seen["traceparent"])
    assert match is not None, seen["traceparent"]
    assert match.group(1) == trace_id  # the same trace
    assert match.group(2) not in (parent_id, "0" * 16)  # a new parent id: evenflow's span
    assert match.group(3) == flags  # sampled stays sampled, and not sampled stays not
    assert seen["tracestate"] == state  # passed through untouched
    assert response.headers[TRACE_HEADER] == trace_id
    assert _record_of(evenflow, seen["x-request-id"])["trace_id"] == trace_id


@pytest.mark.parametrize(
    "sent",
    [
        None,
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff is invalid
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # uppercase hex
    ],
    ids=["absent", "version-ff", "zero-trace-id", "uppercase"],
)
def test_a_request_without_a_valid_traceparent_starts_a_trace(
    evenflow: Evenflow, client: httpx.Client, sent: str | None
) -> None:
    headers = {"traceparent": sent} if sent is not None else {}
    seen_ids = set()
    for _ in range(2):
        response = client.get(evenflow.url + "/echo", headers=headers)
        seen = _echo(response)
        match = TRACEPARENT.match(seen["traceparent"])
        assert match is not None, seen["traceparent"]
        trace_id = match.group(1)
        assert trace_id != "0" * 32 and trace_id != "4bf92f3577b34da6a3ce929d0e0e4736"
        assert response.headers[TRACE_HEADER] == trace_id
        assert _record_of(evenflow, seen["x-request-id"])["trace_id"] == trace_id
        seen_ids.add(trace_id)
    assert len(seen_ids) == 2  # each request starts its own trace


# --- formats, and secrets kept out of the logs ------------------------------------------------

COMBINED = re.compile(
    r"^(?P<client>\S+) - - \[(?P<time>\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "
    r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/1\.[01]" (?P<status>\d{3}) (?P<bytes>\d+) '
    r'"(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)"$'
)


@pytest.fixture(scope="module")
def combined_evenflow(
    backends: dict[str, Backend], closed_address: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Evenflow]:
    workdir = tmp_path_factory.mktemp("combined")
    build = build_config(backends, closed_address, "combined", workdir / "access.log")
    with running_evenflow(build, workdir) as running:
        yield running


def test_combined_format(combined_evenflow: Evenflow, client: httpx.Client) -> None:
    response = client.get(
        combined_evenflow.url + "/some/path?q=1",
        headers={"user-agent": 'judge "quoted" agent/1.0', "referer": "http://example.test/from"},
    )
    assert response.status_code == 200
    [line] = combined_evenflow.access_lines(1)
    match = COMBINED.match(line)
    assert match is not None, line
    assert match["client"] == "127.0.0.1"
    assert (match["method"], match["target"], match["status"]) == ("GET", "/some/path?q=1", "200")
    assert int(match["bytes"]) == len(response.content)
    assert match["referer"] == "http://example.test/from"
    assert match["agent"] == 'judge \\"quoted\\" agent/1.0'  # quotes escaped, the line parses


def test_json_format(
    evenflow: Evenflow, backends: dict[str, Backend], client: httpx.Client
) -> None:
    response = client.post(evenflow.url + "/echo?x=1", content=b"0123456789")
    seen = _echo(response)
    record = _record_of(evenflow, seen["x-request-id"])
    assert record["method"] == "POST" and record["path"] == "/echo?x=1"
    assert record["status"] == 200 and record["route"] == "main" and record["pool"] == "web"
    assert record["bytes_in"] == 10 and record["bytes_out"] == len(response.content)
    assert record["backend"] == backends[response.headers["x-backend"]].address
    assert record["attempts"] == 1 and record["algorithm"] == "round_robin"
    assert 0 < record["ttfb_ms"] <= record["duration_ms"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])


@pytest.mark.parametrize("log_format", ["json", "combined"])
def test_hash_key_secrets_never_reach_the_logs(
    evenflow: Evenflow,
    combined_evenflow: Evenflow,
    client: httpx.Client,
    log_format: str,
) -> None:
    running = evenflow if log_format == "json" else combined_evenflow
    lines_before = len(running.access_lines(0))
    cookie, token = secrets.token_hex(16), secrets.token_hex(16)
    picked: dict[str, set[str]] = {"cookie": set(), "auth": set()}
    request_ids = []
    for _ in range(3):  # the same key, thrice: hashed to the same backend and the same label
        for route, header in (("cookie", f"session={cookie}"), ("auth", f"Bearer {token}")):
            name = "cookie" if route == "cookie" else "authorization"
            response = client.get(
                running.url + "/echo", headers={"host": f"{route}.test", name: header}
            )
            picked[route].add(response.headers["x-backend"])
            request_ids.append(_echo(response)["x-request-id"])
    assert all(len(backends) == 1 for backends in picked.values()), picked
    if log_format == "json":
        records = [_record_of(running, request_id) for request_id in request_ids]
        labels: dict[str, set[str]] = {"cookie": set(), "auth": set()}
        for record in records:
            assert re.fullmatch(r"[0-9a-f]{12}", record["hash_key"]), record
            labels[record["route"]].add(record["hash_key"])
        # one label per key: requests of one session can be followed without the secret
        assert all(len(values) == 1 for values in labels.values()), labels
    else:
        running.access_lines(lines_before + 6)
    text = running.access_path.read_text()
    for secret in (cookie, token, cookie[:12], token[:12]):
        assert secret not in text, f"{secret} in the access log"
    # nor in what the admin API shows
    shown = scrape_text(running) + "".join(
        curl("--fail", f"{running.admin_url}/api/v1/pools/{pool}/hotspots").stdout
        for pool in ("cookie", "auth")
    )
    assert cookie not in shown and token not in shown


def scrape_text(evenflow: Evenflow) -> str:
    done = curl("--fail", evenflow.admin_url + "/metrics")
    assert done.returncode == 0, done.stderr
    return done.stdout
