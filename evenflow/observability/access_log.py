"""The access log, which is also the decision log: one line per request saying where it went
and why (route, split branch, algorithm, hash key, stickiness, every attempt and why it
failed, upstream timings, trace id).

A finished exchange costs the data plane one tuple appended to a list: the exchange object
itself is kept until the next flush, and lines are rendered and written in batches a few times
a second. When the batch is full (the disk or pipe cannot keep up) further lines are counted
as dropped and requests never wait. Secret keys (a cookie, an Authorization header) appear as
a truncated hash, never as sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import IO, TYPE_CHECKING, Any

from evenflow.balancing.hashing import key_hash

if TYPE_CHECKING:
    from evenflow.proxy.http1.exchange import Exchange

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.2
MAX_PENDING_LINES = 20000  # ~ a few MB; past it lines are dropped, not queued without bound

# (wall time, duration in seconds, listener, the finished exchange)
Row = tuple[float, float, str, "Exchange"]


class AccessLog:
    __slots__ = (
        "_loop",
        "_stream",
        "_owns_stream",
        "_format",
        "_pending",
        "_flush_handle",
        "dropped",
        "written",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, path: str, fmt: str = "json") -> None:
        self._loop = loop
        self._format = fmt
        self._owns_stream = path not in ("stderr", "stdout")
        self._stream: IO[str] = (
            sys.stderr
            if path == "stderr"
            else sys.stdout
            if path == "stdout"
            else open(path, "a", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115
        )
        self._pending: list[Row | dict[str, object]] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        self.dropped = 0  # lines lost because the log could not keep up (a metric)
        self.written = 0

    def log_exchange(self, listener: str, ex: Exchange) -> None:
        pending = self._pending
        if len(pending) >= MAX_PENDING_LINES:
            self.dropped += 1
            return
        pending.append((time.time(), time.perf_counter() - ex.started_at, listener, ex))
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_later(FLUSH_INTERVAL_S, self.flush)

    def log_record(self, record: dict[str, object]) -> None:
        """A ready-made record (a refused request, a tcp connection, a udp flow)."""
        if len(self._pending) >= MAX_PENDING_LINES:
            self.dropped += 1
            return
        record["time"] = time.time()
        self._pending.append(record)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_later(FLUSH_INTERVAL_S, self.flush)

    def flush(self) -> None:
        self._flush_handle = None
        pending, self._pending = self._pending, []
        if not pending:
            return
        json_format = self._format == "json"
        lines = []
        for row in pending:
            if isinstance(row, dict):
                lines.append(render_record(row, json_format))
            elif json_format:
                lines.append(json.dumps(decision(*row), separators=(",", ":")) + "\n")
            else:
                lines.append(combined(*row))
        try:
            self._stream.write("".join(lines))
            self._stream.flush()
            self.written += len(lines)
        except (OSError, ValueError) as exc:
            self.dropped += len(pending)
            log.warning("access log write failed, %d lines lost: %s", len(pending), exc)

    def close(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self.flush()
        if self._owns_stream:
            self._stream.close()


def decision(at: float, duration: float, listener: str, ex: Exchange) -> dict[str, Any]:
    """The JSON record of one request: what came in, where it went, and why."""
    req = ex.req
    route = ex.route
    pool = ex.pool
    record: dict[str, Any] = {
        "time": iso(at),
        "listener": listener,
        "client": req.client_ip,
        "method": req.method,
        "path": req.target,
        "host": req.host,
        "status": ex.status,
        "bytes_in": ex.bytes_in,
        "bytes_out": ex.bytes_out,
        "duration_ms": round(duration * 1000, 3),
        "route": route.name if route is not None else None,
        "pool": pool.name if pool is not None else None,
        "backend": ex.backend.address if ex.backend is not None else None,
        "attempts": ex.attempts,
    }
    if route is not None and route.is_split:
        record["split"] = pool.name if pool is not None else None
    if pool is not None:
        record["algorithm"] = pool.algorithm
    if ex.hash_key is not None:
        # never the key itself: it may be a session cookie or a user id
        record["hash_key"] = f"{key_hash(ex.hash_key) & 0xFFFFFFFFFFFF:012x}"
    if ex.sticky:
        record["sticky"] = ex.sticky
    if ex.failures:
        record["failures"] = ex.failures  # "backend: reason", one per failed attempt
    if ex.connect_s:
        record["connect_ms"] = round(ex.connect_s * 1000, 3)
    if ex.ttfb:
        record["ttfb_ms"] = round(ex.ttfb * 1000, 3)
    record["request_id"] = ex.request_id.decode("latin-1")
    if ex.trace_id:
        record["trace_id"] = ex.trace_id.decode("latin-1")
    return record


def combined(at: float, duration: float, listener: str, ex: Exchange) -> str:
    """Apache's combined format: client, time, request line, status, bytes, referer, agent."""
    req = ex.req
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(at))
    referer = (req.header(b"referer") or b"-").decode("latin-1")
    agent = (req.header(b"user-agent") or b"-").decode("latin-1")
    return (
        f'{req.client_ip} - - [{stamp}] "{req.method} {req.target} HTTP/1.1" {ex.status} '
        f'{ex.bytes_out} "{_quote(referer)}" "{_quote(agent)}"\n'
    )


def render_record(record: dict[str, object], as_json: bool) -> str:
    at = record.pop("time")
    stamp = iso(at if isinstance(at, float) else time.time())
    if as_json:
        return json.dumps({"time": stamp, **record}, separators=(",", ":")) + "\n"
    fields = " ".join(f"{key}={value}" for key, value in record.items() if value is not None)
    return f"{stamp} {fields}\n"


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def iso(at: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at))
    return f"{seconds}.{int(at * 1000) % 1000:03d}Z"
