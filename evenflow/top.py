"""`evenflow top`: the dashboard's view in a terminal, for operators on a server without a browser.

Polls the admin API (pools, recent stats, flips, each pool's hot spots) every interval and
redraws in place with rich. `fetch` does the HTTP, `render` is a pure function of what was
fetched (tested without a terminal), and `run` owns the terminal: the live view, the q key,
Ctrl-C. Knows nothing of evenflow's internals: only the admin API's JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

FETCH_TIMEOUT_S = 3.0  # per request; a slower admin API is reported, not waited for
FLIPS_SHOWN = 8
WIDE_COLUMNS = 150  # from this terminal width on, the req/s history column is shown
MEDIUM_COLUMNS = 110  # and from this one, the last flip's reason
# (heading, heading on a narrow terminal)
NUMBER_COLUMNS = (
    ("weight", "wt"),
    ("in flight", "infl"),
    ("conns", "conn"),
    ("req/s", "req/s"),
    ("p50 ms", "p50ms"),
    ("p99 ms", "p99ms"),
)
SPARK_POINTS = 24  # req/s history points drawn (2 minutes at the stats' 5 s samples)
_SPARK = "▁▂▃▄▅▆▇█"
# share vs expected: off by more than this (and on enough requests) is highlighted
SHARE_SKEW = 0.10
SHARE_MIN_REQUESTS = 20
STATE_STYLES = {
    "healthy": "green",
    "unhealthy": "bold red",
    "ejected": "yellow",
    "draining": "cyan",
    "disabled": "dim",
}


class FetchError(Exception):
    """The admin API could not be read; the message is one line for the operator."""


@dataclass(frozen=True)
class Frame:
    """Everything one refresh fetched from the admin API at `admin`."""

    admin: str
    pools: list[dict[str, Any]]  # /api/v1/pools
    stats: dict[str, dict[str, Any]]  # /api/v1/stats "backends": "pool/address" → recent
    flips: list[dict[str, Any]]  # /api/v1/flips, oldest first
    hotspots: dict[str, dict[str, Any]] = field(default_factory=dict)  # pool → its hot spots
    fetched_at: float = 0.0  # wall-clock time
    error: str | None = None  # why the latest refresh failed (the data shown is older)


# -- fetching ----------------------------------------------------------------------------------


def normalize_admin(admin: str) -> str:
    """`127.0.0.1:9901` → `http://127.0.0.1:9901`; trailing slashes dropped."""
    admin = admin.strip().rstrip("/")
    return admin if "://" in admin else "http://" + admin


def get_json(admin: str, path: str, token: str | None, timeout_s: float = FETCH_TIMEOUT_S) -> Any:
    """GET `path` of the admin API as JSON; FetchError with one line on any failure."""
    request = urllib.request.Request(admin + path, headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with _opener().open(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            why = "the token was refused" if token else "it needs a token"
            raise FetchError(
                f"the admin API at {admin} answered 401: {why}; "
                "pass --token-env NAME, NAME being an environment variable holding the token"
            ) from None
        raise FetchError(
            f"the admin API at {admin} answered {exc.code} to GET {path}: {_error_text(exc)}"
        ) from None
    except urllib.error.URLError as exc:
        reason = getattr(exc.reason, "strerror", None) or exc.reason
        raise FetchError(f"cannot reach the admin API at {admin}: {reason}") from None
    except (OSError, ValueError) as exc:  # timeouts, resets, a body that is not JSON
        raise FetchError(f"cannot read the admin API at {admin}: {exc}") from None


def _opener() -> urllib.request.OpenerDirector:
    # an operator's http_proxy must not capture requests to a local admin address
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        message = json.loads(exc.read()).get("error")
    except (OSError, ValueError, AttributeError):
        message = None
    return str(message or exc.reason)


def fetch(admin: str, token: str | None) -> Frame:
    """One refresh: pools, stats, flips and every pool's hot spots."""
    pools = get_json(admin, "/api/v1/pools", token)["pools"]
    stats = get_json(admin, "/api/v1/stats", token).get("backends", {})
    flips = get_json(admin, "/api/v1/flips", token).get("flips", [])
    hotspots = {}
    for pool in pools:
        name = urllib.parse.quote(pool["name"], safe="")
        with contextlib.suppress(FetchError):  # a pool removed meanwhile: shown without shares
            hotspots[pool["name"]] = get_json(admin, f"/api/v1/pools/{name}/hotspots", token)
    return Frame(admin, pools, stats, flips, hotspots, time.time())


# -- rendering ---------------------------------------------------------------------------------


def render(frame: Frame, width: int = 120, *, live: bool = True) -> RenderableType:
    """The whole screen for `frame`: a header, one table per pool, the recent flips. On a
    terminal narrower than `width` columns the req/s history, then the last flip, are left
    out so the numbers keep their room. `live`: the view refreshes (it says how to quit)."""
    parts: list[RenderableType] = [_header(frame, live)]
    if frame.error:
        parts.append(Text(f"refresh failed: {frame.error} (showing older data)", style="bold red"))
    parts.extend(_pool_table(pool, frame, width) for pool in frame.pools)
    if not frame.pools:
        parts.append(Text("no pools", style="dim"))
    parts.append(_flips_table(frame.flips))
    return Group(*parts)


def _header(frame: Frame, live: bool) -> Text:
    header = Text()
    header.append("evenflow top", style="bold")
    header.append(f"  {frame.admin}", style="dim")
    if frame.fetched_at:
        header.append(f"  updated {_clock(frame.fetched_at)}", style="dim")
    if live:
        header.append("  (q to quit)", style="dim")
    return header


def _pool_table(pool: dict[str, Any], frame: Frame, width: int) -> Table:
    name = pool["name"]
    title = Text()
    title.append(f"pool {name}", style="bold")
    title.append(f"  {pool.get('algorithm', '')}", style="dim")
    title.append(f"  {pool.get('healthy', 0)}/{len(pool['backends'])} healthy")
    if pool.get("panic"):
        title.append("  PANIC", style="bold white on red")
    with_history = width >= WIDE_COLUMNS
    with_flip = width >= MEDIUM_COLUMNS
    table = Table(
        title=title,
        title_justify="left",
        expand=True,
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("backend", no_wrap=True, min_width=9)
    table.add_column("state", no_wrap=True)
    for heading, short in NUMBER_COLUMNS:
        table.add_column(heading if with_flip else short, justify="right", no_wrap=True)
    table.add_column("share/expected" if with_flip else "share/exp", justify="right", no_wrap=True)
    if with_history:
        table.add_column("req/s history", no_wrap=True)
    if with_flip:
        table.add_column("last flip", overflow="fold", ratio=1)
    hot = frame.hotspots.get(name, {})
    shares = {entry["address"]: entry for entry in hot.get("backends", [])}
    for backend in pool["backends"]:
        address = backend["address"]
        recent = frame.stats.get(f"{name}/{address}", {})
        cells: list[RenderableType] = [
            address,
            _state(backend, compact=not with_flip),
            _weight(backend, compact=not with_flip),
            str(backend.get("in_flight", 0)),
            str(backend.get("active_connections", 0)),
            _number(recent.get("rps"), 1),
            _number(recent.get("p50_ms"), 2),
            _number(recent.get("p99_ms"), 2),
            _share(shares.get(address), hot.get("requests", 0), compact=not with_flip),
        ]
        if with_history:
            cells.append(sparkline(recent.get("history_rps", [])))
        if with_flip:
            cells.append((backend.get("last_flip") or {}).get("reason") or "")
        table.add_row(*cells)
    return table


def _state(backend: dict[str, Any], compact: bool) -> Text:
    state = backend.get("state", "?")
    text = Text(state, style=STATE_STYLES.get(state, ""))
    deadline = backend.get("drain_deadline_in_s")
    if state == "draining" and deadline is not None:
        text.append(f" {deadline:.0f}s", style="dim")
    if backend.get("health") == "unhealthy" and state != "unhealthy" and not compact:
        text.append(" unhealthy", style="red")  # draining or disabled, and down as well
    return text


def _weight(backend: dict[str, Any], compact: bool) -> str:
    """The configured weight, and the effective one when it differs (slow start, not usable);
    on a narrow terminal only the effective one."""
    weight = backend.get("weight", 0)
    effective = float(backend.get("effective_weight", weight))
    if effective == weight:
        return str(weight)
    return f"{effective:g}" if compact else f"{weight} ({effective:g})"


def _share(entry: dict[str, Any] | None, requests: int, compact: bool) -> Text:
    if entry is None:
        return Text("–", style="dim")
    actual, expected = float(entry["share"]), float(entry["expected_share"])
    skewed = requests >= SHARE_MIN_REQUESTS and abs(actual - expected) > SHARE_SKEW
    shown = f"{actual * 100:.0f}/{expected:.0%}" if compact else f"{actual:.0%} / {expected:.0%}"
    return Text(shown, style="bold yellow" if skewed else "")


def _flips_table(flips: list[dict[str, Any]]) -> Table:
    table = Table(
        title=Text("recent flips", style="bold"),
        title_justify="left",
        expand=True,
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("time", no_wrap=True)
    table.add_column("pool", no_wrap=True)
    table.add_column("backend", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("reason", overflow="fold", ratio=1)
    for flip in reversed(flips[-FLIPS_SHOWN:]):
        state = flip.get("state", "")
        table.add_row(
            _clock(flip.get("at") or 0.0),
            flip.get("pool", ""),
            flip.get("backend", ""),
            Text(state, style=STATE_STYLES.get(state, "")),
            flip.get("reason", ""),
        )
    if not flips:
        table.add_row("–", "", "", "", Text("none yet", style="dim"))
    return table


def sparkline(points: list[float], width: int = SPARK_POINTS) -> str:
    """The last `width` values as block characters, scaled to their maximum."""
    points = points[-width:]
    top = max(points, default=0.0)
    if top <= 0:
        return _SPARK[0] * len(points)
    return "".join(_SPARK[min(len(_SPARK) - 1, int(p / top * (len(_SPARK) - 1)))] for p in points)


def _number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


# -- the terminal ------------------------------------------------------------------------------


def run(
    admin: str,
    token: str | None,
    interval_s: float,
    *,
    once: bool = False,
    console: Console | None = None,
    fetcher: Callable[[str, str | None], Frame] = fetch,
) -> int:
    """Show the live view until q or Ctrl-C (0); 1 with one line on stderr when the admin
    API cannot be read at the start. Later failures are shown in the view, which retries."""
    admin = normalize_admin(admin)
    console = console or Console()
    try:
        frame = fetcher(admin, token)
    except FetchError as exc:
        sys.stderr.write(f"evenflow top: {exc}\n")
        return 1
    if once:
        console.print(render(frame, console.width, live=False))
        return 0
    with (
        _interruptible(),
        _keys() as pressed,
        Live(
            render(frame, console.width), console=console, screen=True, auto_refresh=False
        ) as live,
    ):
        try:
            while not pressed(interval_s):
                try:
                    frame = fetcher(admin, token)
                except FetchError as exc:
                    frame = replace(frame, error=str(exc))
                live.update(render(frame, console.width), refresh=True)
        except KeyboardInterrupt:
            pass
    return 0


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Ctrl-C quits the live view even when evenflow top inherited SIGINT ignored (started
    from a script in the background, nohup): Python then installs no handler of its own,
    and the key would do nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _keys() -> Iterator[Callable[[float], bool]]:
    """A `pressed(timeout_s)` that waits up to timeout_s and says whether q was typed; the
    terminal is in cbreak mode meanwhile (keys arrive unbuffered, Ctrl-C still interrupts)."""
    stdin = sys.stdin
    if not stdin.isatty():

        def wait(timeout_s: float) -> bool:
            time.sleep(timeout_s)
            return False

        yield wait
        return
    import termios
    import tty

    fd = stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def pressed(timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                typed = os.read(fd, 32)
                if b"q" in typed.lower():
                    return True
                if not typed:  # the terminal went away: stop polling it
                    time.sleep(left)
        return False

    try:
        yield pressed
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
