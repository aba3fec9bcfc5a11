"""Writing to a stream whose writes can block for as long as its reader likes: a pipe or FIFO (a
log shipper that stalls, `evenflow run 2>&1 | less` paused), a socket, a terminal (paused with
Ctrl-S). Written from the event loop, one full pipe would stop every connection and the admin
API with it; so a thread writes there instead, and holds a bounded number of lines: past it,
lines are dropped and counted, and the loop never waits.

The access log (access_log.py) and evenflow's own log lines (`LineHandler`) use this for such
streams. stdout and stderr have one writer each, shared by both users, or one between them
when they are the same pipe, so lines stay in order and never interleave. Regular files (and
devices such as /dev/null) are written as before: a write the disk takes or fails at once.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import stat
import threading
from collections import deque
from typing import IO

log = logging.getLogger(__name__)

CLOSE_WAIT_S = 2.0  # at exit, how long lines still held may take to reach their reader
# evenflow's own log lines may wait beyond the access log's bound (access_log.py's
# MAX_PENDING_LINES): an access log that fills the writer does not silence them at once
LOG_LINES_LIMIT = 25_000


def blocking_descriptor(stream: object) -> int | None:
    """The file descriptor under `stream` when a write to it may wait on a reader (a pipe, a
    FIFO, a socket, a terminal); None for a regular file, a device or no descriptor at all."""
    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
        return None
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd):
        return fd if isinstance(fd, int) else None
    return None


class BackgroundWriter:
    """Batches of lines written by one daemon thread, in order, straight to a descriptor of
    its own (a duplicate, closed by the thread once it has written its last batch: a write
    stuck on a reader can never land in a file that reused the number), with os.write (no
    buffer lock that a thread stuck at exit could hold)."""

    def __init__(self, fd: int, *, reports_failures: bool = True) -> None:
        self._fd = os.dup(fd)
        # stdout's and stderr's writer says nothing of its failures: the warning would be a
        # line for stderr, maybe this very writer, failing again
        self._reports_failures = reports_failures
        self._cond = threading.Condition()
        self._batches: deque[tuple[bytes, int]] = deque()
        self._queued = 0  # lines handed over and not yet written (the one being written too)
        self._closing = False
        self.lost = 0  # lines whose write failed
        self.written = 0
        with _shared_lock:
            if not _live:
                atexit.register(_drain_live)
            _live.add(self)
        self._thread = threading.Thread(target=self._run, name=f"evenflow-fd{fd}", daemon=True)
        self._thread.start()

    def submit(self, data: bytes, lines: int, limit: int) -> bool:
        """Hand a batch to the thread; False (nothing kept) when more than `limit` lines would
        then wait, or the writer is closed."""
        with self._cond:
            if self._closing or self._queued + lines > limit:
                return False
            self._batches.append((data, lines))
            self._queued += lines
            self._cond.notify_all()
        return True

    def drain(self, timeout_s: float = CLOSE_WAIT_S) -> bool:
        """Wait until every batch handed over so far is written (or failed), `timeout_s` at
        most; False when the reader did not take them in time."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._batches, timeout_s)

    def close(self) -> None:
        """No more batches: the thread writes what it holds, then ends and closes its
        descriptor. Never waits (a reload must not stall the loop on a reader that stopped);
        at exit, what is still held gets CLOSE_WAIT_S to reach its reader (_drain_live)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def _run(self) -> None:
        try:
            self._write_batches()
        finally:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            with _shared_lock:
                _live.discard(self)

    def _write_batches(self) -> None:
        while True:
            with self._cond:
                while not self._batches and not self._closing:
                    self._cond.wait()
                if not self._batches:
                    return
                data, lines = self._batches[0]
            failure: OSError | None = None
            try:
                view = memoryview(data)
                while view:  # a pipe may take less than it is given
                    view = view[os.write(self._fd, view) :]
            except OSError as exc:
                failure = exc
            if failure is not None and self._reports_failures:
                # (said before the batch is settled: once drain() returns, it has been)
                log.warning("log write failed, %d lines lost: %s", lines, failure)
            with self._cond:
                self._batches.popleft()
                self._queued -= lines
                self._cond.notify_all()
                if failure is None:
                    self.written += lines
                else:
                    self.lost += lines


# stdout's and stderr's writers, by what they write to: one writer when both are the same pipe
# (`2>&1 | ...`), so a line of one never cuts into a line of the other
_shared: dict[tuple[int, int], BackgroundWriter] = {}
_live: set[BackgroundWriter] = set()  # writers whose thread still runs
_shared_lock = threading.Lock()


def shared_writer(fd: int) -> BackgroundWriter:
    """The one writer of stdout (1) or stderr (2), created on first use and kept."""
    status = os.fstat(fd)
    key = (status.st_dev, status.st_ino)
    with _shared_lock:
        writer = _shared.get(key)
    if writer is None:
        made = BackgroundWriter(fd, reports_failures=False)
        with _shared_lock:
            writer = _shared.setdefault(key, made)
        if writer is not made:  # another thread made one first
            made.close()
    return writer


def _drain_live() -> None:
    # at exit: what each writer still holds gets CLOSE_WAIT_S to reach its reader
    with _shared_lock:
        writers = list(_live)
    for writer in writers:
        writer.drain()


def writer_for(stream: IO[bytes], owned: bool) -> BackgroundWriter | None:
    """A writer for `stream` when writing it may block (else None): its own for a stream the
    caller opened (`owned`, closed with it), the shared one for stdout and stderr."""
    fd = blocking_descriptor(stream)
    if fd is None:
        return None
    return BackgroundWriter(fd) if owned or fd not in (1, 2) else shared_writer(fd)


class LineHandler(logging.Handler):
    """evenflow's own log lines, for a stderr whose reader may stop reading: formatted by the
    caller, written by stderr's shared writer, dropped (and counted) when it holds too many."""

    def __init__(self, writer: BackgroundWriter) -> None:
        super().__init__()
        self.writer = writer
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
        except Exception:  # noqa: BLE001 - as logging.StreamHandler: a bad record is reported
            self.handleError(record)
            return
        if not self.writer.submit(line, 1, LOG_LINES_LIMIT):
            self.dropped += 1

    def flush(self) -> None:
        pass  # nothing to push: the thread writes lines as they come (and at exit, drains)


def stderr_handler(stream: IO[str]) -> logging.Handler:
    """The handler for evenflow's log lines on `stream` (stderr): a LineHandler when writing
    it may block, else logging's own StreamHandler."""
    fd = blocking_descriptor(stream)
    if fd is None:
        return logging.StreamHandler(stream)
    stream.flush()
    return LineHandler(shared_writer(fd))
