"""The dashboard judged in a real browser: Debian's chromium, driven by Playwright.

evenflow runs as a process with the admin API and three demo backends (one process each) probed
every 500 ms. The page is loaded as an operator loads it, and judged on what it shows: every
backend appears; under client load the request numbers move and req/s, p50 and p99 fill in;
clicking drain turns that backend's state to draining (enable and disable do what they say); a
backend killed with SIGKILL turns unhealthy within its probe window (plus one refresh of the
page); the flips table says each of these. With an admin token set, the page first asks for it,
refuses a wrong one, and works once the right one is typed. A screenshot of the final state is
saved and its path printed."""

from __future__ import annotations

import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from health_support import Backend, Load, backend_processes
from observability_support import Evenflow, running_evenflow
from playwright import sync_api

pytestmark = [pytest.mark.judge, pytest.mark.timeout(120)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REFRESH_S = 2.0  # the dashboard polls the admin API this often (app.js REFRESH_MS)
STATS_SAMPLE_S = 5.0  # evenflow samples totals for req/s this often (observability/stats.py)
INTERVAL_S = 0.5
FAST_INTERVAL_S = 0.25
TIMEOUT_S = 0.25
FALL = 2
JITTER = 0.1
# the last passing probe may come just before the kill; then `fall` failures in a row, each
# interval stretched by the jitter, each taking at most its timeout
PROBE_WINDOW_S = (INTERVAL_S + (FALL - 1) * FAST_INTERVAL_S) * (1 + JITTER) + FALL * TIMEOUT_S
TOKEN_ENV = "EVENFLOW_DASHBOARD_TOKEN"


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test-tools.sh installs Debian's chromium")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def config(backends: list[Backend], token_env: str | None) -> Any:
    def build(port: int, admin_port: int) -> dict[str, Any]:
        admin: dict[str, Any] = {"bind": f"127.0.0.1:{admin_port}"}
        if token_env is not None:
            admin["token_env"] = token_env
        return {
            "listeners": [{"name": "web", "bind": f"127.0.0.1:{port}", "pool": "web"}],
            "pools": {
                "web": {
                    "backends": [b.address for b in backends],
                    "health": {
                        "active": {
                            "http": {"path": "/healthz"},
                            "interval": f"{INTERVAL_S * 1000:.0f}ms",
                            "fast_interval": f"{FAST_INTERVAL_S * 1000:.0f}ms",
                            "timeout": f"{TIMEOUT_S * 1000:.0f}ms",
                            "rise": 1,
                            "fall": FALL,
                        }
                    },
                }
            },
            "access_log": {"path": "off"},
            "admin": admin,
            "drain_timeout": "1s",
        }

    return build


def row(page: Any, backend: Backend) -> Any:
    return page.locator(f'tr[data-backend="{backend.address}"]')


def number(page: Any, backend: Backend, field: str) -> float | None:
    text = row(page, backend).locator(f'[data-field="{field}"]').inner_text().strip()
    return None if text in ("", "–") else float(text)


def wait_until(condition: Any, within_s: float, what: str, page: Any) -> float:
    """Polls `condition()` until true; returns when (monotonic). Fails saying `what`."""
    deadline = time.monotonic() + within_s
    while True:
        if condition():
            return time.monotonic()
        if time.monotonic() > deadline:
            status = page.locator("#status").inner_text()
            raise AssertionError(f"{what} not seen within {within_s:.1f}s (status: {status})")
        time.sleep(0.1)


def state(page: Any, backend: Backend) -> str | None:
    value = row(page, backend).locator(".badge").first.get_attribute("data-state")
    return str(value) if value is not None else None


def enter_token(page: Any, token: str) -> None:
    page.fill("#token", token)
    page.press("#token", "Enter")


@pytest.mark.parametrize("with_token", [False, True], ids=["open", "token"])
def test_dashboard_shows_load_drain_and_a_killed_backend(
    browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_token: bool
) -> None:
    token = secrets.token_urlsafe(16) if with_token else None
    with backend_processes(tmp_path) as started:
        a, b, c = (started.demo(name) for name in ("a", "b", "c"))
        env = {TOKEN_ENV: token} if token else None
        build = config([a, b, c], TOKEN_ENV if token else None)
        with running_evenflow(build, tmp_path, env) as evenflow:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(evenflow.admin_url + "/", timeout=10_000)
            if token:
                _token_is_asked_for(page, token)
            _backends_appear(page, [a, b, c])
            _numbers_move_under_load(page, evenflow, [a, b, c])
            _buttons_work(page, a)
            _killed_backend_turns_unhealthy(page, c)
            _screenshot(page, "token" if token else "open")
            assert errors == [], f"the page raised: {errors}"


def _token_is_asked_for(page: Any, token: str) -> None:
    """Without the token the page shows no backend and asks for it; a wrong one is refused."""
    page.wait_for_selector("body.needs-token", timeout=REFRESH_S * 2 * 1000)
    assert "needs a token" in page.locator("#status").inner_text()
    assert page.locator("tr[data-backend]").count() == 0
    enter_token(page, "not-" + token)
    page.wait_for_function(
        "document.querySelector('#status').textContent.includes('refused')",
        timeout=REFRESH_S * 2 * 1000,
    )
    assert page.locator("tr[data-backend]").count() == 0
    enter_token(page, token)
    page.wait_for_selector("body:not(.needs-token)", timeout=REFRESH_S * 2 * 1000)


def _backends_appear(page: Any, backends: list[Backend]) -> None:
    for backend in backends:
        row(page, backend).wait_for(timeout=REFRESH_S * 2 * 1000)
        assert state(page, backend) == "healthy"
    assert page.locator('section[data-pool="web"] h2').inner_text().startswith("pool web")


def _numbers_move_under_load(page: Any, evenflow: Evenflow, backends: list[Backend]) -> None:
    before = {b.name: number(page, b, "requests") or 0 for b in backends}
    with Load(evenflow.url, clients=3, pause_s=0.002) as load:
        load.wait_for(100, within_s=10)
        # each backend's request count climbs on the page while the load runs
        wait_until(
            lambda: all(
                (number(page, b, "requests") or 0) >= before[b.name] + 30 for b in backends
            ),
            REFRESH_S * 3,
            "request counts climbing",
            page,
        )
        # req/s, p50 and p99 fill in once evenflow has two samples of the totals
        wait_until(
            lambda: all(
                (number(page, b, "rps") or 0) > 0 and number(page, b, "p99") is not None
                for b in backends
            ),
            STATS_SAMPLE_S * 2 + REFRESH_S * 2,
            "req/s and p99 for every backend",
            page,
        )
    answered = [r for r in load.snapshot() if r.status == 200]
    assert len(answered) > 100
    for backend in backends:
        p50, p99 = number(page, backend, "p50"), number(page, backend, "p99")
        assert p50 is not None and p99 is not None and 0 < p50 <= p99 < 1000
        share = row(page, backend).locator(".share-text").inner_text()
        assert share.endswith("/ 33%"), share  # three equal backends: a third each expected


def _buttons_work(page: Any, backend: Backend) -> None:
    """drain, then enable, then disable: each click shows in the backend's state and in the
    flips table, and only the buttons that change something are enabled."""
    for action, shown in (("drain", "draining"), ("enable", "healthy"), ("disable", "disabled")):
        button = row(page, backend).locator(f'button[data-action="{action}"]')
        assert button.is_enabled(), action
        button.click()
        wait_until(lambda: state(page, backend) == shown, REFRESH_S, shown, page)  # noqa: B023
        assert row(page, backend).locator(f'button[data-action="{action}"]').is_disabled()
        flip = page.locator("#flips tbody tr").first.inner_text()
        word = "enabled" if action == "enable" else shown
        assert backend.address in flip and word in flip, flip
        assert action in page.locator("#notice").inner_text()


def _killed_backend_turns_unhealthy(page: Any, backend: Backend) -> None:
    killed_at = time.monotonic()
    backend.kill()
    seen_at = wait_until(
        lambda: state(page, backend) == "unhealthy",
        PROBE_WINDOW_S + REFRESH_S + 1.0,  # one page refresh, and a second for the fetches
        f"{backend.name} unhealthy",
        page,
    )
    print(f"{backend.name} shown unhealthy {seen_at - killed_at:.2f}s after SIGKILL")
    flips = page.locator("#flips tbody").inner_text()
    assert f"{backend.address}\tunhealthy" in flips, flips
    pool_title = page.locator('section[data-pool="web"] h2').inner_text()
    assert "1 of 3 healthy" in pool_title, pool_title  # a disabled, c down


def _screenshot(page: Any, label: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="evenflow-dashboard-"))
    path = folder / f"dashboard-{label}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    print(f"dashboard screenshot: {path}")
