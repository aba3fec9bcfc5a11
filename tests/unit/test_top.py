"""`evenflow top` without a terminal or a socket: the view is a pure function of the admin API's
JSON, rendered here into a recording rich console; fetching is judged with a fake opener, the
command line through `main`."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from email.message import Message
from typing import Any

import pytest
from rich.console import Console

from evenflow import top
from evenflow.cli import main
from evenflow.top import FetchError, Frame, fetch, get_json, render, run, sparkline

AT = 1_790_000_000.0

POOLS: list[dict[str, Any]] = [
    {
        "name": "web",
        "algorithm": "least_conn",
        "panic": False,
        "healthy": 1,
        "usable": 1,
        "backends": [
            {
                "address": "10.0.0.1:8000",
                "state": "healthy",
                "health": "healthy",
                "admin": "enabled",
                "weight": 2,
                "effective_weight": 2.0,
                "in_flight": 4,
                "active_connections": 17,
                "drain_deadline_in_s": None,
                "last_flip": {"reason": None, "at": None},
            },
            {
                "address": "10.0.0.2:8000",
                "state": "draining",
                "health": "unhealthy",
                "admin": "draining",
                "weight": 1,
                "effective_weight": 0.0,
                "in_flight": 0,
                "active_connections": 1,
                "drain_deadline_in_s": 12.4,
                "last_flip": {"reason": "draining: by operator, deadline 30s", "at": AT},
            },
            {
                "address": "10.0.0.3:8000",
                "state": "healthy",
                "health": "healthy",
                "admin": "enabled",
                "weight": 4,
                "effective_weight": 1.5,  # ramping up (slow start)
                "in_flight": 0,
                "active_connections": 0,
                "drain_deadline_in_s": None,
                "last_flip": {"reason": "healthy: 2 probes passed", "at": AT},
            },
        ],
    },
    {
        "name": "api",
        "algorithm": "maglev",
        "panic": True,
        "healthy": 0,
        "usable": 1,
        "backends": [
            {
                "address": "10.0.1.1:9000",
                "state": "unhealthy",
                "health": "unhealthy",
                "admin": "enabled",
                "weight": 1,
                "effective_weight": 1.0,
                "in_flight": 0,
                "active_connections": 0,
                "drain_deadline_in_s": None,
                "last_flip": {"reason": "unhealthy: 3 probe failures: connect timeout", "at": AT},
            }
        ],
    },
]
STATS = {
    "web/10.0.0.1:8000": {
        "rps": 123.456,
        "p50_ms": 1.234,
        "p99_ms": 45.678,
        "history_rps": [100.0, 120.0, 123.0],
    },
    "web/10.0.0.2:8000": {"rps": 0.0, "p50_ms": None, "p99_ms": None, "history_rps": [50.0, 0.0]},
}
HOTSPOTS = {
    "web": {
        "requests": 1000,
        "backends": [
            {"address": "10.0.0.1:8000", "share": 0.8, "expected_share": 0.5},
            {"address": "10.0.0.2:8000", "share": 0.2, "expected_share": 0.0},
            {"address": "10.0.0.3:8000", "share": 0.0, "expected_share": 0.5},
        ],
    }
}
FLIPS = [
    {"at": AT, "pool": "web", "backend": "10.0.0.3:8000", "state": "healthy", "reason": "2 ok"},
    {"at": AT + 1, "pool": "api", "backend": "10.0.1.1:9000", "state": "unhealthy", "reason": "x"},
]


def frame(**changes: Any) -> Frame:
    fields: dict[str, Any] = {
        "admin": "http://127.0.0.1:9901",
        "pools": POOLS,
        "stats": STATS,
        "flips": FLIPS,
        "hotspots": HOTSPOTS,
        "fetched_at": AT,
    }
    fields.update(changes)
    return Frame(**fields)


def text_of(renderable: Any, width: int = 200) -> str:
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def line_of(text: str, needle: str) -> str:
    """The one line of the pools' tables (the flips table is left out) holding `needle`."""
    pools = text.split("recent flips")[0]
    [line] = [line for line in pools.splitlines() if needle in line]
    return line


def cells(line: str) -> list[str]:
    return line.split()


# --- rendering --------------------------------------------------------------------------------


def test_every_pool_and_backend_with_its_numbers() -> None:
    text = text_of(render(frame(), width=200))
    assert "pool web" in text and "least_conn" in text and "1/3 healthy" in text
    assert "pool api" in text and "maglev" in text
    first = cells(line_of(text, "10.0.0.1:8000"))
    assert first[:10] == ["10.0.0.1:8000", "healthy", "2", "4", "17", "123.5", "1.23", "45.68"] + [
        "80%",
        "/",
    ]
    assert "50%" in first


def test_a_backend_with_no_recent_requests_shows_dashes() -> None:
    line = line_of(text_of(render(frame(), width=200)), "10.0.0.3:8000")
    # address, state, "4 (1.5)", in flight, conns, then req/s, p50 and p99
    assert cells(line)[:9] == ["10.0.0.3:8000", "healthy", "4", "(1.5)", "0", "0", "–", "–", "–"]


def test_draining_shows_its_deadline_and_a_hidden_unhealthy() -> None:
    line = line_of(text_of(render(frame(), width=200)), "10.0.0.2:8000")
    assert "draining 12s unhealthy" in line
    assert "1 (0)" in line  # weight 1, effective 0: no new picks
    assert "draining: by operator" in line


def test_slow_start_shows_the_effective_weight() -> None:
    assert "4 (1.5)" in line_of(text_of(render(frame(), width=200)), "10.0.0.3:8000")


def test_panic_is_shown_on_its_pool() -> None:
    text = text_of(render(frame(), width=200))
    assert "PANIC" in line_of(text, "pool api")
    assert "PANIC" not in line_of(text, "pool web")


def test_share_against_expected() -> None:
    text = text_of(render(frame(), width=200))
    assert "80% / 50%" in line_of(text, "10.0.0.1:8000")
    assert "0% / 50%" in line_of(text, "10.0.0.3:8000")
    assert "–" in cells(line_of(text, "10.0.1.1:9000"))  # no hot-spot view for api


def test_recent_flips_newest_first() -> None:
    text = text_of(render(frame(), width=200))
    flips = text[text.index("recent flips") :]
    assert flips.index("10.0.1.1:9000") < flips.index("10.0.0.3:8000")
    assert "none yet" in text_of(render(frame(flips=[]), width=200))


def test_a_failed_refresh_is_said_and_older_data_kept() -> None:
    text = text_of(render(frame(error="cannot reach the admin API at x: refused"), width=200))
    assert "refresh failed: cannot reach the admin API at x: refused" in text
    assert "10.0.0.1:8000" in text


def test_the_header_says_how_to_quit_only_when_live() -> None:
    assert "q to quit" in text_of(render(frame(), width=200))
    assert "q to quit" not in text_of(render(frame(), width=200, live=False))
    assert "http://127.0.0.1:9901" in text_of(render(frame(), width=200))


@pytest.mark.parametrize(
    ("width", "history", "flip"), [(200, True, True), (120, False, True), (80, False, False)]
)
def test_a_narrow_terminal_keeps_the_numbers(width: int, history: bool, flip: bool) -> None:
    text = text_of(render(frame(), width=width), width=width)
    assert all(len(line) <= width for line in text.splitlines())
    assert "…" not in text  # nothing cut short
    assert ("req/s history" in text) is history
    assert ("last flip" in text) is flip
    line = line_of(text, "10.0.0.1:8000")
    share = "80% / 50%" if flip else "80/50%"
    for number in ("123.5", "1.23", "45.68", share):
        assert number in line, (width, line)
    draining = line_of(text, "10.0.0.2:8000")
    assert "draining 12s" in draining
    assert ("1 (0)" in draining) is flip  # narrow: the effective weight alone


def test_no_pools() -> None:
    assert "no pools" in text_of(render(frame(pools=[], hotspots={}), width=200))


def test_sparkline() -> None:
    assert sparkline([]) == ""
    assert sparkline([0.0, 0.0]) == "▁▁"
    assert sparkline([0.0, 5.0, 10.0]) == "▁▄█"
    assert len(sparkline([1.0] * 100)) == top.SPARK_POINTS


# --- fetching ---------------------------------------------------------------------------------


class FakeOpener:
    """Answers urllib requests from a dict of path → (status, JSON body), recording them."""

    def __init__(self, answers: dict[str, tuple[int, Any]]) -> None:
        self.answers = answers
        self.requests: list[urllib.request.Request] = []

    def open(self, request: urllib.request.Request, timeout: float) -> Any:
        self.requests.append(request)
        path = request.full_url.split("9901", 1)[1]
        if path not in self.answers:
            raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
        status, body = self.answers[path]
        data = json.dumps(body).encode()
        if status != 200:
            raise urllib.error.HTTPError(
                request.full_url, status, "no", Message(), io.BytesIO(data)
            )
        return io.BytesIO(data)


@pytest.fixture
def opener(monkeypatch: pytest.MonkeyPatch) -> FakeOpener:
    fake = FakeOpener(
        {
            "/api/v1/pools": (200, {"pools": POOLS}),
            "/api/v1/stats": (200, {"window_s": 60, "sample_s": 5, "backends": STATS}),
            "/api/v1/flips": (200, {"flips": FLIPS}),
            "/api/v1/pools/web/hotspots": (200, HOTSPOTS["web"]),
            "/api/v1/pools/api/hotspots": (404, {"error": "no pool 'api'"}),
        }
    )
    monkeypatch.setattr(top, "_opener", lambda: fake)
    return fake


ADMIN = "http://127.0.0.1:9901"


def test_fetch_reads_every_endpoint_with_the_token(opener: FakeOpener) -> None:
    got = fetch(ADMIN, "s3cret")
    assert got.pools == POOLS and got.stats == STATS and got.flips == FLIPS
    assert got.hotspots == {"web": HOTSPOTS["web"]}  # a pool gone meanwhile: no shares
    assert all(r.get_header("Authorization") == "Bearer s3cret" for r in opener.requests)


def test_fetch_without_a_token_sends_none(opener: FakeOpener) -> None:
    fetch(ADMIN, None)
    assert all(r.get_header("Authorization") is None for r in opener.requests)


def test_a_401_says_a_token_is_needed(opener: FakeOpener) -> None:
    opener.answers["/api/v1/pools"] = (401, {"error": "this admin API needs a token"})
    with pytest.raises(FetchError, match="answered 401: it needs a token; pass --token-env"):
        get_json(ADMIN, "/api/v1/pools", None)
    with pytest.raises(FetchError, match="answered 401: the token was refused"):
        get_json(ADMIN, "/api/v1/pools", "wrong")


def test_other_errors_carry_the_apis_sentence(opener: FakeOpener) -> None:
    with pytest.raises(
        FetchError, match=r"answered 404 to GET /api/v1/pools/api/hotspots: no pool"
    ):
        get_json(ADMIN, "/api/v1/pools/api/hotspots", None)
    with pytest.raises(FetchError, match="cannot reach the admin API at .*: Connection refused"):
        get_json(ADMIN, "/nowhere", None)


def test_run_once_prints_one_view(opener: FakeOpener) -> None:
    console = Console(record=True, width=200, file=io.StringIO(), color_system=None)
    assert run("127.0.0.1:9901/", None, 1.0, once=True, console=console) == 0
    text = console.export_text()
    assert "10.0.0.1:8000" in text and "q to quit" not in text


def test_run_says_one_line_when_the_admin_api_cannot_be_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def unreachable(admin: str, token: str | None) -> Frame:
        raise FetchError(f"cannot reach the admin API at {admin}: Connection refused")

    assert run("127.0.0.1:1", None, 1.0, fetcher=unreachable) == 1
    err = capsys.readouterr().err
    assert (
        err
        == "evenflow top: cannot reach the admin API at http://127.0.0.1:1: Connection refused\n"
    )


@pytest.mark.parametrize(
    ("admin", "url"),
    [
        ("127.0.0.1:9901", "http://127.0.0.1:9901"),
        ("http://10.0.0.1:9901/", "http://10.0.0.1:9901"),
        ("https://lb.example:443", "https://lb.example:443"),
    ],
)
def test_admin_addresses(admin: str, url: str) -> None:
    assert top.normalize_admin(admin) == url


# --- the command line -------------------------------------------------------------------------


def test_cli_passes_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(top, "run", lambda *args, **kw: calls.append((*args, kw)) or 0)
    monkeypatch.setenv("MY_ADMIN_TOKEN", "  tok  ")
    argv = ["top", "--admin", "10.0.0.9:9901", "--token-env", "MY_ADMIN_TOKEN"]
    assert main([*argv, "--interval", "250ms", "--once"]) == 0
    assert calls == [("10.0.0.9:9901", "tok", 0.25, {"once": True})]
    assert main(["top"]) == 0
    assert calls[-1] == ("http://127.0.0.1:9901", None, 1.0, {"once": False})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["top", "--interval", "2"], "--interval: '2' is not a duration"),
        (["top", "--interval", "10ms"], "--interval: at least 100ms"),
        (["top", "--token-env", "EVENFLOW_TEST_UNSET"], "EVENFLOW_TEST_UNSET is not set"),
    ],
)
def test_cli_mistakes_get_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
