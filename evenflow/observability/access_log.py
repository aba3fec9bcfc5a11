"""The access log, which is also the decision log: one line per request saying where it went
and why (route, split branch, algorithm, hash key, stickiness, every attempt and why it
failed, upstream timings, trace id).

A finished exchange costs the data plane one line of bytes (encoded by json_lines.py, or
combined_lines.py for the text option) appended to a list; the lines are written in one batch
a few times a second, so a request never waits for the disk (its cost:
bench/instructions.py); to a pipe, a socket or a terminal, whose reader may stop reading, a
thread writes them (log_writer.py). JSON text is escaped as nginx's escape=json does: quotes,
backslashes and control characters; the rest is written as UTF-8. When the buffer is full
(the disk or pipe cannot keep up) further lines are counted as dropped. Secret keys (a
cookie, an Authorization header) appear as a truncated hash, never as sent.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import IO, Any, Final, TextIO, cast

from evenflow.core.request import RequestHead
from evenflow.observability.combined_lines import CombinedLines, line_breaks_escaped
from evenflow.observability.json_lines import IsoClock, JsonLines
from evenflow.observability.log_writer import BackgroundWriter, writer_for

log = logging.getLogger(__name__)


FLUSH_INTERVAL_S: Final = 0.2
FLUSH_BATCH_LINES: Final = 1000  # lines written at once, at the latest
MAX_PENDING_LINES = 20000  # ~ a few MB; past it lines are dropped, not queued without bound
_IOV_MAX: Final = 1024  # the lines one writev(2) takes at most (Linux's IOV_MAX)


# statics in compiled code, where a module attribute or an imported name is a lookup per call
_wall_clock: Final = time.time
_perf_counter: Final = time.perf_counter


class AccessLog:
    __slots__ = (
        "_loop",
        "_stream",
        "_owns_stream",
        "_as_json",
        "_json_lines",
        "_combined_lines",
        "_pending",
        "_rendered_pending",
        "_max_pending",
        "_flush_handle",
        "_wall_offset",
        "_writer",
        "_file_fd",
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
            # unbuffered: a flush writes its batch in one call, a buffer would only copy it
            else open(path, "ab", buffering=0)  # noqa: SIM115
        )
        self._json_lines = JsonLines()
        self._combined_lines = CombinedLines()
        self._pending: list[bytes] = []  # the lines that wait for the next flush
        # a record waits (log_record), which may hold a raw line break (as_written); the
        # lines of requests never do
        self._rendered_pending = False
        self._max_pending = MAX_PENDING_LINES
        self._flush_handle: asyncio.TimerHandle | None = None
        # wall clock minus perf counter, read as each batch starts: a line's time is then its
        # exchange's end (a perf counter reading the connection has taken) plus this, where
        # a clock read per line cost ~180 instructions. A batch lasts 0.2 s at most, too
        # short for the clocks to drift apart by a millisecond.
        self._wall_offset = 0.0
        self.dropped = 0  # lines lost because the log could not keep up (a metric)
        self.written = 0
        # a stream whose reader may stop reading is written by a thread, never by the loop
        self._stream.flush()
        self._writer: BackgroundWriter | None = writer_for(self._stream, self._owns_stream)
        # a file of its own, which takes what it is given at once: its batches are written
        # straight from the lines (writev), not copied into one bytes first
        self._file_fd = self._stream.fileno() if self._owns_stream and self._writer is None else -1

    def log_request(
        self,
        listener: str,
        req: RequestHead,
        status: int,
        bytes_in: int,
        bytes_out: int,
        duration_s: float,
        ended_at: float,
        attempts: int,
        route: str | None,
        pool: str | None,
        algorithm: str | None,
        is_split: bool,
        backend: str | None,
        hash_key: bytes | None,
        sticky: str,
        failures: list[str] | None,
        connect_s: float,
        ttfb_s: float,
        request_id: bytes,
        request_id_given: bool,
        trace_id: bytes,
        http10: bool,
    ) -> None:
        """Log a finished request: what the client connection read of its exchange, handed
        over as values (read natively by compiled code, not through attribute lookups).

        `pool` is None when the request reached no pool; `is_split`: its route is a split,
        so the pool is the branch taken. Seconds, as measured; 0.0 for what never happened
        (connect_s on a reused connection, ttfb_s without a response); `ended_at`: when the
        exchange ended, by time.perf_counter. `request_id_given`: the client sent the id (else
        evenflow made it); `trace_id`: hex digits, or empty."""
        pending = self._pending
        if len(pending) >= self._max_pending:
            self.dropped += 1
            return
        flush_handle = self._flush_handle
        if flush_handle is None:
            self._wall_offset = _wall_clock() - _perf_counter()
        at = ended_at + self._wall_offset
        # the line now, so nothing of the exchange is kept: held until the flush, thousands of
        # exchanges would survive into the garbage collector's older generations, whose
        # collections then stall the loop (p99 latency x5 at 20 000 requests/s, measured)
        if self._as_json:
            pending.append(
                self._json_lines.line(
                    at,
                    listener,
                    req,
                    status,
                    bytes_in,
                    bytes_out,
                    duration_s,
                    attempts,
                    route,
                    pool,
                    algorithm,
                    is_split,
                    backend,
                    hash_key,
                    sticky,
                    failures,
                    connect_s,
                    ttfb_s,
                    request_id,
                    request_id_given,
                    trace_id,
                )
            )
        else:
            pending.append(self._combined_lines.line(at, req, status, bytes_out, http10))
        if flush_handle is None:
            self._flush_handle = self._loop.call_later(FLUSH_INTERVAL_S, self.flush)
        elif len(pending) == FLUSH_BATCH_LINES:
            # a busy second: write this batch now, not with the timer, so one flush never
            # holds the loop for long (7,000 lines took 7 ms, every request's p99 with them)
            flush_handle.cancel()
            self._flush_handle = self._loop.call_later(0, self.flush)

    def log_record(self, record: dict[str, object]) -> None:
        """A ready-made record (a refused request, a tcp connection, a udp flow)."""
        if len(self._pending) >= self._max_pending:
            self.dropped += 1
            return
        self._rendered_pending = True
        # a lone surrogate (a name from a YAML escape) must not cost the record: escaped
        rendered = render_record(time.time(), record, self._as_json)
        self._pending.append(rendered.encode("utf-8", "backslashreplace"))
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_later(FLUSH_INTERVAL_S, self.flush)

    def flush(self) -> None:
        self._flush_handle = None
        lines, self._pending = self._pending, []
        rendered, self._rendered_pending = self._rendered_pending, False
        if not lines:
            return
        writer = self._writer
        if writer is not None:
            data = as_written(lines) if rendered else b"".join(lines)
            if not writer.submit(data, len(lines), self._max_pending):
                self.dropped += len(lines)  # the reader is that far behind: never wait for it
            return
        try:
            if self._file_fd >= 0 and not rendered:
                write_lines(self._file_fd, lines)
            else:
                data = as_written(lines) if rendered else b"".join(lines)
                while data:  # a file written unbuffered may take less than it is given
                    data = data[self._stream.write(data) :]
                self._stream.flush()
            self.written += len(lines)
        except (OSError, ValueError) as exc:
            self.dropped += len(lines)
            log.warning("access log write failed, %d lines lost: %s", len(lines), exc)

    def dropped_total(self) -> int:
        """Lines lost: dropped by the loop, and failed or abandoned by the writer thread."""
        writer = self._writer
        return self.dropped + (writer.lost if writer is not None else 0)

    def close(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self.flush()
        self._file_fd = -1  # (its number may soon be another file's)
        writer = self._writer
        if writer is not None and self._owns_stream:
            # (stdout's or stderr's writer stays: evenflow's own lines use it too)
            writer.close()  # it writes what it holds on its own descriptor, never waited for
        if self._owns_stream:
            try:
                self._stream.close()
            except OSError as exc:  # close(2) can fail (EIO on a network file system)
                log.warning("access log close failed: %s", exc)


def write_lines(
    fd: int, lines: list[bytes], writev: Callable[[int, list[bytes]], int] = os.writev
) -> None:
    """Every line to `fd`, in order: writev(2) of up to _IOV_MAX lines at a time; what a
    call did not take (a full disk's last blocks, a signal) is written again from there."""
    count = len(lines)
    start = 0
    while start < count:
        batch = lines[start : start + _IOV_MAX]
        size = 0
        for line in batch:
            size += len(line)
        written = writev(fd, batch)
        if written < size:
            rest = b"".join(batch)[written:]
            while rest:
                rest = rest[os.write(fd, rest) :]
        start += _IOV_MAX


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


def as_written(lines: list[bytes]) -> bytes:
    """A batch of lines as the log writes them: one write, with the characters some readers
    take for line breaks escaped (combined_lines.py)."""
    return line_breaks_escaped(b"".join(lines))


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


def iso(at: float) -> str:
    """`at` (wall-clock seconds) as UTC ISO 8601 with milliseconds: 2026-11-26T19:59:38.264Z."""
    return _CLOCK.iso(at)


_CLOCK: Final = IsoClock()
