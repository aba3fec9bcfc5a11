"""The access log, which is also the decision log: one line per request saying where it went
and why (route, split branch, algorithm, hash key, stickiness, every attempt and why it
failed, upstream timings, trace id).

A finished exchange costs the data plane one line rendered into a list (a few microseconds,
measured with bench/dataplane_bench.py --observability); the lines are written in one batch a
few times a second, so a request never waits for the disk. When the buffer is full (the disk or
pipe cannot keep up) further lines are counted as dropped. Secret keys (a cookie, an
Authorization header) appear as a truncated hash, never as sent.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sys
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import IO, TYPE_CHECKING

from evenflow.balancing.hashing import key_hash

if TYPE_CHECKING:
    from evenflow.core.backend import BackendState
    from evenflow.proxy.http1.exchange import Exchange
    from evenflow.routing.table import CompiledRoute
    from evenflow.runtime.snapshot import PoolRuntime

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.2
MAX_PENDING_LINES = 20000  # ~ a few MB; past it lines are dropped, not queued without bound

# a JSON string literal, escaped as json.dumps does (C); typed here, as typeshed does not
_json_str: Callable[[str], str] = encode_basestring_ascii


class AccessLog:
    __slots__ = (
        "_loop",
        "_stream",
        "_owns_stream",
        "_as_json",
        "_render",
        "_pending",
        "_flush_handle",
        "dropped",
        "written",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, path: str, fmt: str = "json") -> None:
        self._loop = loop
        self._as_json = fmt == "json"
        self._render = json_line if self._as_json else combined
        self._owns_stream = path not in ("stderr", "stdout")
        self._stream: IO[str] = (
            sys.stderr
            if path == "stderr"
            else sys.stdout
            if path == "stdout"
            else open(path, "a", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115
        )
        self._pending: list[str] = []  # rendered lines waiting for the next flush
        self._flush_handle: asyncio.TimerHandle | None = None
        self.dropped = 0  # lines lost because the log could not keep up (a metric)
        self.written = 0

    def log_exchange(self, listener: str, ex: Exchange, duration: float | None = None) -> None:
        """Log a finished exchange; `duration` (seconds) when the caller has measured it."""
        if len(self._pending) >= MAX_PENDING_LINES:
            self.dropped += 1
            return
        if duration is None:
            duration = time.perf_counter() - ex.started_at
        # rendered now, so the exchange is freed now: kept until the flush, thousands of them
        # would survive into the garbage collector's older generations, whose collections
        # then stall the loop (p99 latency x5 at 20 000 requests/s, measured)
        self._pending.append(self._render(time.time(), duration, listener, ex))
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_later(FLUSH_INTERVAL_S, self.flush)

    def log_record(self, record: dict[str, object]) -> None:
        """A ready-made record (a refused request, a tcp connection, a udp flow)."""
        if len(self._pending) >= MAX_PENDING_LINES:
            self.dropped += 1
            return
        self._pending.append(render_record(time.time(), record, self._as_json))
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_later(FLUSH_INTERVAL_S, self.flush)

    def flush(self) -> None:
        self._flush_handle = None
        lines, self._pending = self._pending, []
        if not lines:
            return
        try:
            self._stream.write("".join(lines))
            self._stream.flush()
            self.written += len(lines)
        except (OSError, ValueError) as exc:
            self.dropped += len(lines)
            log.warning("access log write failed, %d lines lost: %s", len(lines), exc)

    def close(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self.flush()
        if self._owns_stream:
            try:
                self._stream.close()
            except OSError as exc:  # what a failed write left buffered failed again
                log.warning("access log closed with lines unwritten: %s", exc)


def json_line(at: float, duration: float, listener: str, ex: Exchange) -> str:
    """The JSON record of one request, one line: what came in, where it went, and why.

    Fields: time, listener, client, method, path, host, status, bytes_in, bytes_out,
    duration_ms, attempts, route, pool, backend; then, when they apply: split (the branch a
    split route took), algorithm, hash_key (a truncated hash, never the key itself: it may be
    a session cookie or a user id), sticky (hit, miss, repin), failures ("backend: reason" per
    failed attempt), connect_ms, ttfb_ms; then request_id and trace_id.

    Written by hand rather than with json.dumps of a dict, at a fifth of the cost: every
    string a client or backend chose goes through json's own escaping, ASCII-only (the client
    address and trace id are evenflow's own: an IP address, validated hex); the part that
    depends only on where the request went is rendered once per (route, pool, backend).
    """
    req = ex.req
    ttfb = ex.ttfb
    trace_id = ex.trace_id
    # evenflow's own request ids are hex and a dash; a client's may hold anything
    request_id = (
        _json_str(ex.request_id.decode("latin-1"))
        if ex.request_id_given
        else '"' + ex.request_id.decode() + '"'
    )
    rare = (
        _rare_fields(ex)
        if ex.hash_key is not None or ex.sticky or ex.failures or ex.connect_s
        else ""
    )
    # recurring names are escaped once each (an inline lookup: a call costs more than it saves)
    method = _quotes.get(req.method) or _quoted(req.method)
    host = req.host
    host = _quotes.get(host) or _quoted(host)
    key = (listener, ex.route, ex.pool, ex.backend)
    where = _destinations.get(key) or _destination(key)
    # the time, as iso() renders it, without a call while the millisecond lasts
    ms = int(at * 1000)
    stamp = _last_iso if ms == _last_ms else iso(at)
    # the line is built as one string, not grown field by field
    return (
        f'{{"time":"{stamp}"{where[0]},"client":"{req.client_ip}","method":{method}'
        f',"path":{_json_str(req.target)},"host":{host},"status":{ex.status}'
        f',"bytes_in":{ex.bytes_in},"bytes_out":{ex.bytes_out}'
        f',"duration_ms":{duration * 1000:.3f},"attempts":{ex.attempts}{where[1]}{rare}'
        f'{_TTFB_FIELD % (ttfb * 1000) if ttfb else ""},"request_id":{request_id}'
        f"{_TRACE_FIELD % trace_id.decode() if trace_id else ''}}}\n"
    )


_TTFB_FIELD = ',"ttfb_ms":%.3f'
_TRACE_FIELD = ',"trace_id":"%s"'


def _rare_fields(ex: Exchange) -> str:
    """hash_key, sticky, failures and connect_ms, those that apply."""
    fields = ""
    if ex.hash_key is not None:
        fields += f',"hash_key":"{key_hash(ex.hash_key) & 0xFFFFFFFFFFFF:012x}"'
    if ex.sticky:
        fields += f',"sticky":{_json_str(ex.sticky)}'
    if ex.failures:
        fields += f',"failures":[{",".join(map(_json_str, ex.failures))}]'
    if ex.connect_s:
        fields += f',"connect_ms":{"%.3f" % (ex.connect_s * 1000)}'
    return fields


def _quoted(text: str) -> str:
    """`text` as a JSON string; names, methods and hosts recur, so each is escaped once."""
    quoted = _quotes.get(text)
    if quoted is None:
        if len(_quotes) >= _MAX_QUOTES:
            _quotes.clear()  # clients inventing hosts or methods cannot grow it without bound
        quoted = _quotes[text] = _json_str(text)
    return quoted


_quotes: dict[str, str] = {}
_MAX_QUOTES = 4096


# (listener, route, pool, backend) -> their fields of a line, before and after the client's:
# objects of one snapshot, which never rename themselves. Bounded: emptied when config reloads
# have filled it with old snapshots' objects.
_destinations: dict[tuple[str, object, object, object], tuple[str, str]] = {}
_MAX_DESTINATIONS = 4096


def _destination(
    key: tuple[str, CompiledRoute | None, PoolRuntime | None, BackendState | None],
) -> tuple[str, str]:
    listener, route, pool, backend = key
    if len(_destinations) >= _MAX_DESTINATIONS:
        _destinations.clear()
    fields = (
        f',"route":{"null" if route is None else _json_str(route.name)}'
        f',"pool":{"null" if pool is None else _json_str(pool.name)}'
        f',"backend":{"null" if backend is None else _json_str(backend.address)}'
    )
    if pool is not None:
        if route is not None and route.is_split:
            fields += f',"split":{_json_str(pool.name)}'
        fields += f',"algorithm":{_json_str(pool.algorithm)}'
    found = _destinations[key] = (f',"listener":{_json_str(listener)}', fields)
    return found


def combined(at: float, duration: float, listener: str, ex: Exchange) -> str:
    """Apache's combined format: client, time, request line, status, bytes, referer, agent."""
    req = ex.req
    referer = (req.header(b"referer") or b"-").decode("latin-1")
    agent = (req.header(b"user-agent") or b"-").decode("latin-1")
    version = "HTTP/1.0" if ex.http10 else "HTTP/1.1"
    return (
        f'{req.client_ip} - - [{_clf_second(int(at))}] "{req.method} {_quote(req.target)} '
        f'{version}" {ex.status} {ex.bytes_out} "{_quote(referer)}" "{_quote(agent)}"\n'
    )


@functools.lru_cache(maxsize=4)
def _clf_second(second: int) -> str:
    # the Common Log Format's time, formatted once per second (lines come in bursts)
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(second))


def render_record(at: float, record: dict[str, object], as_json: bool) -> str:
    """A ready-made record logged at `at`: JSON, or `time key=value ...` (None values left out)."""
    stamp = iso(at)
    if as_json:
        return json.dumps({"time": stamp, **record}, separators=(",", ":")) + "\n"
    if "status" in record and "method" in record:
        # a request refused before it was parsed: still a combined line, with "-" for what
        # was never read, so log parsers need no special case
        return (
            f'{record.get("client", "-")} - - [{_clf_second(int(at))}] "-" '
            f'{record["status"]} 0 "-" "-"\n'
        )
    # tcp and udp records have no request line: `time key=value ...`
    fields = " ".join(f"{key}={value}" for key, value in record.items() if value is not None)
    return f"{stamp} {fields}\n"


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def iso(at: float) -> str:
    """`at` (wall-clock seconds) as UTC ISO 8601 with milliseconds: 2026-11-26T19:59:38.264Z."""
    global _last_ms, _last_iso, _last_second, _second_text
    ms = int(at * 1000)
    if ms != _last_ms:
        # lines come in bursts (at 20 000 requests/s twenty share each millisecond), and
        # formatting a time costs more than the rest of a line's numbers together: the date
        # and time are formatted once a second, the milliseconds come from a table
        second, fraction = divmod(ms, 1000)
        if second != _last_second:
            _second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            _last_second = second
        _last_iso = _second_text + _MILLIS[fraction]
        _last_ms = ms
    return _last_iso


_MILLIS = [f".{fraction:03d}Z" for fraction in range(1000)]
_last_ms = -1
_last_iso = ""
_last_second = -1
_second_text = ""
