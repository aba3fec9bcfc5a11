"""The access log, which is also the decision log: one line per request saying where it went
and why (route, split branch, algorithm, hash key, stickiness, every attempt and why it
failed, upstream timings, trace id).

A finished exchange costs the data plane one record (a msgspec Struct) appended to a list;
the records are encoded to JSON lines by msgspec and written in one batch a few times a
second, so a request never waits for the disk (its cost: bench/instructions.py). Text is
escaped as nginx's escape=json does: quotes, backslashes and control characters; the rest is
written as UTF-8. When the buffer is full (the disk or
pipe cannot keep up) further lines are counted as dropped. Secret keys (a cookie, an
Authorization header) appear as a truncated hash, never as sent.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import logging
import sys
import time
from typing import IO, Any, Final, Protocol, TextIO, cast

import msgspec

from evenflow.balancing.hashing import key_hash
from evenflow.observability.log_line import Line

log = logging.getLogger(__name__)


class LoggedRoute(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def is_split(self) -> bool: ...


class LoggedPool(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def algorithm(self) -> str: ...


class LoggedBackend(Protocol):
    @property
    def address(self) -> str: ...


class LoggedRequest(Protocol):
    """What a line reads of a request (evenflow.core.request.RequestHead)."""

    @property
    def client_ip(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def host(self) -> str: ...
    def header(self, name: bytes) -> bytes | None: ...


class LoggedExchange(Protocol):
    """What a line reads of a finished exchange (evenflow.proxy.http1.exchange.Exchange).

    Protocols, not the classes: the log is judged with stand-ins, and compiled code refuses
    anything but the class an annotation names."""

    @property
    def req(self) -> LoggedRequest: ...
    @property
    def route(self) -> LoggedRoute | None: ...
    @property
    def pool(self) -> LoggedPool | None: ...
    @property
    def backend(self) -> LoggedBackend | None: ...
    @property
    def status(self) -> int: ...
    @property
    def bytes_in(self) -> int: ...
    @property
    def bytes_out(self) -> int: ...
    @property
    def attempts(self) -> int: ...
    @property
    def started_at(self) -> float: ...
    @property
    def ttfb(self) -> float: ...
    @property
    def connect_s(self) -> float: ...
    @property
    def request_id(self) -> bytes: ...
    @property
    def trace_id(self) -> bytes: ...
    @property
    def hash_key(self) -> bytes | None: ...
    @property
    def sticky(self) -> str: ...
    @property
    def failures(self) -> list[str] | None: ...
    @property
    def http10(self) -> bool: ...


FLUSH_INTERVAL_S: Final = 0.2
FLUSH_BATCH_LINES: Final = 1000  # lines written at once, at the latest
MAX_PENDING_LINES = 20000  # ~ a few MB; past it lines are dropped, not queued without bound


_encode_lines: Final = msgspec.json.Encoder().encode_lines


class AccessLog:
    __slots__ = (
        "_loop",
        "_stream",
        "_owns_stream",
        "_as_json",
        "_pending",
        "_flush_handle",
        "dropped",
        "written",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, path: str, fmt: str = "json") -> None:
        self._loop = loop
        self._as_json = fmt == "json"
        self._owns_stream = path not in ("stderr", "stdout")
        self._stream: IO[bytes] = (
            _binary(sys.stderr)
            if path == "stderr"
            else _binary(sys.stdout)
            if path == "stdout"
            else open(path, "ab", buffering=1 << 16)  # noqa: SIM115
        )
        # what waits for the next flush: a request's Line (JSON), or a rendered line
        self._pending: list[Line | bytes] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        self.dropped = 0  # lines lost because the log could not keep up (a metric)
        self.written = 0

    def log_exchange(
        self, listener: str, ex: LoggedExchange, duration: float | None = None
    ) -> None:
        """Log a finished exchange; `duration` (seconds) when the caller has measured it."""
        pending = self._pending
        if len(pending) >= MAX_PENDING_LINES:
            self.dropped += 1
            return
        if duration is None:
            duration = time.perf_counter() - ex.started_at
        # taken now, so the exchange is freed now: kept until the flush, thousands of them
        # would survive into the garbage collector's older generations, whose collections
        # then stall the loop (p99 latency x5 at 20 000 requests/s, measured)
        pending.append(
            json_record(time.time(), duration, listener, ex)
            if self._as_json
            else combined(time.time(), duration, listener, ex).encode("utf-8", "backslashreplace")
        )
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_later(FLUSH_INTERVAL_S, self.flush)
        elif len(pending) == FLUSH_BATCH_LINES:
            # a busy second: write this batch now, not with the timer, so one flush never
            # holds the loop for long (7,000 lines took 7 ms, every request's p99 with them)
            self._flush_handle.cancel()
            self._flush_handle = self._loop.call_later(0, self.flush)

    def log_record(self, record: dict[str, object]) -> None:
        """A ready-made record (a refused request, a tcp connection, a udp flow)."""
        if len(self._pending) >= MAX_PENDING_LINES:
            self.dropped += 1
            return
        # a lone surrogate (a name from a YAML escape) must not cost the record: escaped
        rendered = render_record(time.time(), record, self._as_json)
        self._pending.append(rendered.encode("utf-8", "backslashreplace"))
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_later(FLUSH_INTERVAL_S, self.flush)

    def flush(self) -> None:
        self._flush_handle = None
        lines, self._pending = self._pending, []
        if not lines:
            return
        try:
            self._stream.write(_render(lines))
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


def _binary(stream: TextIO) -> IO[bytes]:
    """The byte stream under a text stream (stderr, stdout), which the log writes itself."""
    stream.flush()
    buffer: IO[bytes] | None = getattr(stream, "buffer", None)
    return buffer if buffer is not None else cast("IO[bytes]", _TextSink(stream))


class _TextSink(io.RawIOBase):
    """Bytes written to a text stream that has no byte stream under it (io.StringIO)."""

    def __init__(self, stream: TextIO) -> None:
        self._text = stream

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._text.write(bytes(data).decode())
        return len(data)

    def flush(self) -> None:
        self._text.flush()


def _render(lines: list[Line | bytes]) -> bytes:
    """The lines as written (UTF-8 JSON): runs of Lines encoded in one call each."""
    if all(line.__class__ is Line for line in lines):
        try:
            return _line_breaks_escaped(_encode_lines(lines))
        except Exception:  # noqa: BLE001, S110 (a lone surrogate, say: line by line, below)
            pass
    out: list[bytes] = []
    for line in lines:
        if isinstance(line, bytes):
            out.append(line)
            continue
        try:
            out.append(_encode_lines([line]))
        except Exception:  # noqa: BLE001 (whatever it is, the line is written, not lost)
            # by json, escaped to ASCII, whatever its fields hold
            names = line.__struct_fields__
            fields = {n: v for n in names if (v := getattr(line, n)) is not None}
            out.append(json.dumps(fields, default=str, separators=(",", ":")).encode() + b"\n")
    return _line_breaks_escaped(b"".join(out))


# NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR, as UTF-8: valid in a JSON string, but line
# breaks to str.splitlines() and some log shippers. A client can send NEL (0x85, read as
# latin-1), so they are written escaped. Their lead bytes never continue another character.
_LINE_BREAKS = (
    (b"\xc2\x85", b"\\u0085"),
    (b"\xe2\x80\xa8", b"\\u2028"),
    (b"\xe2\x80\xa9", b"\\u2029"),
)


def _line_breaks_escaped(data: bytes) -> bytes:
    if data.isascii():
        return data  # the common case: one C scan
    for raw, escaped in _LINE_BREAKS:
        data = data.replace(raw, escaped)
    return data


def json_line(at: float, duration: float, listener: str, ex: LoggedExchange) -> str:
    """The JSON record of one request, one line (what the log writes for it)."""
    return _render([json_record(at, duration, listener, ex)]).decode()


def json_record(at: float, duration: float, listener: str, ex: LoggedExchange) -> Line:
    """The record of a finished exchange, taken as cheaply as it can be: on the data path."""
    req = ex.req
    key = (ex.route, ex.pool, ex.backend)
    route, pool, backend, split, algorithm = _destinations.get(key) or _destination(key)
    ms = int(at * 1000)
    ttfb = ex.ttfb
    trace_id = ex.trace_id
    # positional, in Line's order: keywords would cost a dict per request
    line = Line(
        _last_iso if ms == _last_ms else iso(at),
        listener,
        req.client_ip,
        req.method,
        req.target,
        req.host,
        ex.status,
        ex.bytes_in,
        ex.bytes_out,
        int(duration * 1e6 + 0.5) / 1000,  # ms, to the microsecond (round() costs 4x)
        ex.attempts,
        route,
        pool,
        backend,
        split,
        algorithm,
        None,
        None,
        None,
        None,
        int(ttfb * 1e6 + 0.5) / 1000 if ttfb else None,
        ex.request_id.decode("latin-1"),
        trace_id.decode() if trace_id else None,
    )
    if ex.hash_key is not None or ex.sticky or ex.failures or ex.connect_s:
        _rare_fields(line, ex)
    return line


def _rare_fields(line: Line, ex: LoggedExchange) -> None:
    """hash_key, sticky, failures and connect_ms, those that apply."""
    if ex.hash_key is not None:
        line.hash_key = f"{key_hash(ex.hash_key) & 0xFFFFFFFFFFFF:012x}"
    if ex.sticky:
        line.sticky = ex.sticky
    if ex.failures:
        line.failures = list(ex.failures)
    if ex.connect_s:
        line.connect_ms = int(ex.connect_s * 1e6 + 0.5) / 1000


# (route, pool, backend) -> their fields of a line (route, pool, backend, split, algorithm):
# objects of one snapshot, which never rename themselves. Bounded: emptied when config reloads
# have filled it with old snapshots' objects.
_Where = tuple[str | None, str | None, str | None, str | None, str | None]
_destinations: Final[dict[tuple[object, object, object], _Where]] = {}
_MAX_DESTINATIONS: Final = 4096


def _destination(
    key: tuple[LoggedRoute | None, LoggedPool | None, LoggedBackend | None],
) -> _Where:
    route, pool, backend = key
    if len(_destinations) >= _MAX_DESTINATIONS:
        _destinations.clear()
    found = _destinations[key] = (
        None if route is None else route.name,
        None if pool is None else pool.name,
        None if backend is None else backend.address,
        pool.name if pool is not None and route is not None and route.is_split else None,
        None if pool is None else pool.algorithm,
    )
    return found


def combined(at: float, duration: float, listener: str, ex: LoggedExchange) -> str:
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


_MILLIS: Final = [f".{fraction:03d}Z" for fraction in range(1000)]
_last_ms = -1
_last_iso = ""
_last_second = -1
_second_text = ""
