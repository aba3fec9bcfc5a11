"""The access log: one line per request, formatted and written off the hot path.

A finished exchange costs the data plane one tuple appended to a list. Lines are formatted and
written in batches a few times a second; when the batch is full (the disk or pipe cannot keep up)
further lines are counted as dropped and requests never wait.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import IO, TYPE_CHECKING

from evenflow.core.errors import ProxyError

if TYPE_CHECKING:
    from evenflow.proxy.http1.exchange import Exchange

log = logging.getLogger(__name__)

# time, listener, client, method, target, host, status, bytes in, bytes out, duration (s),
# route, pool, backend, attempts, failures, request id
Row = tuple[
    float,
    str,
    str,
    str | None,
    str | None,
    str | None,
    int,
    int,
    int,
    float,
    str | None,
    str | None,
    str | None,
    int,
    list[str],
    bytes | None,
]

FLUSH_INTERVAL_S = 0.2
MAX_PENDING_LINES = 20000  # ~ a few MB; past it lines are dropped, not queued without bound


class AccessLog:
    __slots__ = (
        "_loop",
        "_stream",
        "_owns_stream",
        "_format",
        "_pending",
        "_flush_handle",
        "dropped",
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
        self.dropped = 0

    def log_exchange(self, listener: str, ex: Exchange) -> None:
        pending = self._pending
        if len(pending) >= MAX_PENDING_LINES:
            self.dropped += 1
            return
        req = ex.req
        route = ex.route
        pending.append(
            (
                time.time(),
                listener,
                req.client_ip,
                req.method,
                req.target,
                req.host,
                ex.status,
                ex.bytes_in,
                ex.bytes_out,
                time.perf_counter() - ex.started_at,
                route.name if route is not None else None,
                ex.pool.name if ex.pool is not None else None,
                ex.backend.address if ex.backend is not None else None,
                ex.attempts,
                ex.failures or [],
                ex.request_id,
            )
        )
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_later(FLUSH_INTERVAL_S, self.flush)

    def log_record(self, record: dict[str, object]) -> None:
        """A ready-made record (one tcp connection, one udp flow); `time` is added here."""
        if len(self._pending) >= MAX_PENDING_LINES:
            self.dropped += 1
            return
        record["time"] = time.time()
        self._pending.append(record)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_later(FLUSH_INTERVAL_S, self.flush)

    def log_refused(self, listener: str, client_ip: str, error: ProxyError) -> None:
        """A request refused before it could be parsed (400, 408, 431)."""
        if len(self._pending) >= MAX_PENDING_LINES:
            self.dropped += 1
            return
        self._pending.append(
            (
                time.time(),
                listener,
                client_ip,
                None,
                None,
                None,
                error.status,
                0,
                0,
                0.0,
                None,
                None,
                None,
                0,
                [error.detail],
                None,
            )
        )
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_later(FLUSH_INTERVAL_S, self.flush)

    def flush(self) -> None:
        self._flush_handle = None
        pending, self._pending = self._pending, []
        if not pending:
            return
        render = self._json if self._format == "json" else self._combined
        try:
            self._stream.write(
                "".join(
                    _render_record(row, self._format) if isinstance(row, dict) else render(row)
                    for row in pending
                )
            )
            self._stream.flush()
        except (OSError, ValueError) as exc:
            self.dropped += len(pending)
            log.warning("access log write failed, %d lines lost: %s", len(pending), exc)

    def close(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self.flush()
        if self._owns_stream:
            self._stream.close()

    @staticmethod
    def _json(row: Row) -> str:
        (
            at,
            listener,
            client,
            method,
            target,
            host,
            status,
            bytes_in,
            bytes_out,
            duration,
            route,
            pool,
            backend,
            attempts,
            failures,
            request_id,
        ) = row
        record: dict[str, object] = {
            "time": _iso(at),
            "listener": listener,
            "client": client,
            "method": method,
            "path": target,
            "host": host,
            "status": status,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "duration_ms": round(duration * 1000, 3),
            "route": route,
            "pool": pool,
            "backend": backend,
            "attempts": attempts,
        }
        if failures:
            record["failures"] = failures
        if request_id is not None:
            record["request_id"] = request_id.decode("latin-1")
        return json.dumps(record, separators=(",", ":")) + "\n"

    @staticmethod
    def _combined(row: Row) -> str:
        at, _, client, method, target, _, status, _, bytes_out = row[:9]
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(at))
        request = f"{method} {target} HTTP/1.1" if method else "-"
        return f'{client} - - [{stamp}] "{request}" {status} {bytes_out} "-" "-"\n'


def _render_record(record: dict[str, object], fmt: str) -> str:
    at = record.pop("time")
    stamp = _iso(at if isinstance(at, float) else time.time())
    if fmt == "json":
        return json.dumps({"time": stamp, **record}, separators=(",", ":")) + "\n"
    fields = " ".join(f"{key}={value}" for key, value in record.items() if value is not None)
    return f"{stamp} {fields}\n"


def _iso(at: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at))
    return f"{seconds}.{int(at * 1000) % 1000:03d}Z"
