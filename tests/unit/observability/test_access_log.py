"""The decision log without a socket or a running loop: how a finished exchange is rendered
(JSON and combined), that a secret hash key never appears as sent, and the buffering: one flush
timer, lines dropped and counted when the buffer is full, everything flushed on close."""

from __future__ import annotations

import io
import json
import logging
import os
import time
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from evenflow.core.request import RequestHead
from evenflow.observability import access_log
from evenflow.observability.access_log import (
    FLUSH_BATCH_LINES,
    FLUSH_INTERVAL_S,
    AccessLog,
    render_record,
    write_lines,
)
from evenflow.observability.combined_lines import CombinedLines
from evenflow.observability.json_lines import JsonLines

AT = 1_790_000_000.25  # 2026-09-21T14:13:20.250Z


# --- what the log is handed of a finished request, and a loop that only records timers ------


def request(
    method: str = "GET",
    target: str = "/cart?id=7",
    host: str = "shop.example",
    headers: dict[bytes, bytes] | None = None,
) -> RequestHead:
    return RequestHead(method, target, host, list((headers or {}).items()), "203.0.113.9")


@dataclass
class Finished:
    """A finished request as the client connection hands it to the log (log_request's
    arguments, in its order): a GET the first backend picked answered."""

    req: RequestHead = field(default_factory=request)
    status: int = 200
    bytes_in: int = 12
    bytes_out: int = 3456
    duration_s: float = 0.001
    ended_at: float = field(default_factory=time.perf_counter)
    attempts: int = 1
    route: str | None = "shop"
    pool: str | None = "web"
    algorithm: str | None = "least_conn"
    is_split: bool = False
    backend: str | None = "10.0.0.2:8000"
    hash_key: bytes | None = None
    sticky: str = ""
    failures: list[str] | None = None
    connect_s: float = 0.0
    ttfb_s: float = 0.0
    request_id: bytes = b"a1b2c3-1f"
    request_id_given: bool = False
    trace_id: bytes = b"4bf92f3577b34da6a3ce929d0e0e4736"
    http10: bool = False


def log_one(log: AccessLog, **changes: Any) -> None:
    """Log one finished request, as Finished's defaults with `changes`."""
    finished = Finished(**changes)
    log.log_request("public", *(getattr(finished, f.name) for f in fields(finished)))


class FakeHandle:
    def __init__(self, callback: Any) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """Records call_later; `fire()` runs what is due, as the loop would."""

    def __init__(self) -> None:
        self.timers: list[tuple[float, FakeHandle]] = []

    def call_later(self, delay: float, callback: Any) -> FakeHandle:
        handle = FakeHandle(callback)
        self.timers.append((delay, handle))
        return handle

    def fire(self) -> None:
        timers, self.timers = self.timers, []
        for _, handle in timers:
            if not handle.cancelled:
                handle.callback()


def make_log(tmp_path: Path, fmt: str = "json") -> tuple[AccessLog, FakeLoop, Path]:
    loop = FakeLoop()
    path = tmp_path / "access.log"
    return AccessLog(loop, str(path), fmt), loop, path  # type: ignore[arg-type]


# --- rendering --------------------------------------------------------------------------------


def json_text(at: float = AT, **changes: Any) -> str:
    """The JSON line the log writes for one finished request."""
    finished = Finished(**changes)
    values = {
        f.name: getattr(finished, f.name)
        for f in fields(finished)
        if f.name not in ("ended_at", "http10")
    }
    return JsonLines().line(at, "public", **values).decode()


def decision(at: float = AT, **changes: Any) -> dict[str, Any]:
    """The JSON line, parsed: it must be exactly one line of valid JSON."""
    line = json_text(at, **changes)
    assert line.endswith("\n") and "\n" not in line[:-1]
    record: dict[str, Any] = json.loads(line)
    return record


def test_a_decision_says_where_the_request_went_and_why() -> None:
    record = decision(
        duration_s=0.0123456,
        attempts=2,
        failures=["10.0.0.1:8000: connect to 10.0.0.1:8000 failed: connection refused"],
        connect_s=0.0012344,
        ttfb_s=0.0101,
        sticky="repin",
    )
    assert record == {
        "time": "2026-09-21T14:13:20.250Z",
        "listener": "public",
        "client": "203.0.113.9",
        "method": "GET",
        "path": "/cart?id=7",
        "host": "shop.example",
        "status": 200,
        "bytes_in": 12,
        "bytes_out": 3456,
        "duration_ms": 12.346,
        "route": "shop",
        "pool": "web",
        "backend": "10.0.0.2:8000",
        "attempts": 2,
        "algorithm": "least_conn",
        "sticky": "repin",
        "failures": ["10.0.0.1:8000: connect to 10.0.0.1:8000 failed: connection refused"],
        "connect_ms": 1.234,
        "ttfb_ms": 10.1,
        "request_id": "a1b2c3-1f",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    }


def test_a_request_id_evenflow_made_is_logged_as_it_is() -> None:
    record = decision(request_id=b"9f8e7d6c5b4a-2a")
    assert record["request_id"] == "9f8e7d6c5b4a-2a"


def test_what_did_not_happen_is_left_out() -> None:
    record = decision()
    for absent in ("split", "hash_key", "sticky", "failures", "connect_ms", "ttfb_ms"):
        assert absent not in record


def test_a_request_that_reached_no_pool() -> None:
    record = decision(
        route=None, pool=None, algorithm=None, backend=None, status=404, attempts=0, trace_id=b""
    )
    assert (record["route"], record["pool"], record["backend"]) == (None, None, None)
    assert record["status"] == 404 and "algorithm" not in record and "trace_id" not in record


def test_a_split_route_names_its_branch() -> None:
    record = decision(route="checkout", is_split=True, pool="canary")
    assert record["route"] == "checkout" and record["split"] == "canary"


@pytest.mark.parametrize(
    "secret",
    [b"session-4f9a8d7e6c5b4a3928171605f4e3d2c1", b"Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"],
)
def test_a_hash_key_is_logged_as_a_truncated_hash_never_as_sent(secret: bytes) -> None:
    record = decision(hash_key=secret)
    label = record["hash_key"]
    assert label == f"{xxhash.xxh3_64_intdigest(secret) & 0xFFFFFFFFFFFF:012x}"
    line = json.dumps(record)
    assert secret.decode() not in line
    for piece in secret.split(b"-") + secret.split(b" ") + secret.split(b"."):
        if len(piece) >= 6:
            assert piece.decode() not in line
    # the same key, the same label: a session can be followed without its secret
    assert decision(duration_s=0.002, hash_key=secret)["hash_key"] == label
    assert decision(duration_s=0.002, hash_key=secret + b"x")["hash_key"] != label


@settings(max_examples=200, deadline=None)
@given(
    target=st.text(),
    host=st.text(),
    method=st.text(min_size=1),
    failures=st.lists(st.text(), max_size=3),
    request_id=st.binary(max_size=40),
    route=st.text(),
)
def test_any_text_a_client_or_backend_chose_stays_one_valid_json_line(
    target: str, host: str, method: str, failures: list[str], request_id: bytes, route: str
) -> None:
    # quotes, backslashes, newlines and control characters: escaped, never raw (as nginx's
    # escape=json); other characters are written as UTF-8
    req = request(method, target, host)
    changes: dict[str, Any] = dict(
        req=req,
        route=route,
        failures=failures or None,
        request_id=request_id,
        request_id_given=True,
    )
    record = decision(**changes)
    assert (record["method"], record["path"], record["host"]) == (method, target, req.host)
    assert record["route"] == route
    assert record.get("failures", []) == failures
    assert record["request_id"] == request_id.decode("latin-1")
    line = json_text(**changes)
    assert not any(ord(char) < 0x20 for char in line[:-1])


@pytest.mark.parametrize("text", ["a\x85b", "a\u2028b", "a\u2029b"])
def test_characters_that_some_readers_take_for_line_breaks_are_escaped(text: str) -> None:
    # NEL can come from a client (a latin-1 byte 0x85); the separators from a config
    line = json_text(req=request(target="/" + text), route=text)
    assert len(line.splitlines()) == 1
    record = json.loads(line)
    assert (record["path"], record["route"]) == ("/" + text, text)


def test_a_line_break_a_client_sent_stays_escaped_in_the_file(tmp_path: Path) -> None:
    # JSON lines escape it as they are encoded: the flush does not scan them again
    for fmt in ("json", "combined"):
        (tmp_path / fmt).mkdir()
        log, _, path = make_log(tmp_path / fmt, fmt)
        log_one(log, req=RequestHead("GET", b"/a\x85b", "shop.example", [], "203.0.113.9"))
        log_one(log, route="r\u2028")
        log.close()
        text = path.read_text()
        assert len(text.splitlines()) == 2 and "\\u0085" in text, fmt


def test_a_name_that_cannot_be_utf8_costs_no_line(tmp_path: Path) -> None:
    for fmt in ("json", "combined"):
        (tmp_path / fmt).mkdir()
        log, _, path = make_log(tmp_path / fmt, fmt)
        log.log_record({"listener": "tcp\udc80", "status": 200, "bytes_in": 1})
        log_one(log, route="r\udc80")
        log_one(log)
        log.close()
        assert len(path.read_bytes().splitlines()) == 3, fmt


def test_a_method_of_a_str_subclass_is_still_written(tmp_path: Path) -> None:
    class Odd(str):
        pass

    log, _, path = make_log(tmp_path)
    log_one(log, req=request(method=Odd("GET")))
    log_one(log)
    log.close()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["method"] for r in records] == ["GET", "GET"] and log.dropped == 0


def combined(at: float, req: RequestHead, status: int, bytes_out: int, http10: bool) -> str:
    return CombinedLines().line(at, req, status, bytes_out, http10).decode()


def test_combined_format() -> None:
    req = request(headers={b"referer": b"https://shop.example/", b"user-agent": b"curl/8.5.0"})
    assert combined(AT, req, 302, 0, False) == (
        '203.0.113.9 - - [21/Sep/2026:14:13:20 +0000] "GET /cart?id=7 HTTP/1.1" 302 0 '
        '"https://shop.example/" "curl/8.5.0"\n'
    )


def test_combined_format_without_referer_or_agent_and_with_quotes_escaped() -> None:
    req = request(target='/a"b', headers={b"user-agent": b'evil" "agent\\'})
    line = combined(AT, req, 200, 3456, False)
    assert '"GET /a\\"b HTTP/1.1"' in line  # a quote cannot end the request field early
    assert line.endswith(' "-" "evil\\" \\"agent\\\\"\n')


def test_ready_made_records() -> None:
    record: dict[str, object] = {"listener": "tcp", "client": "192.0.2.1", "x": None}
    assert json.loads(render_record(AT, record, as_json=True)) == {
        "time": "2026-09-21T14:13:20.250Z",
        "listener": "tcp",
        "client": "192.0.2.1",
        "x": None,
    }
    text = render_record(AT, record, as_json=False)
    assert text == "2026-09-21T14:13:20.250Z listener=tcp client=192.0.2.1\n"


# --- buffering --------------------------------------------------------------------------------


def test_a_line_bears_the_wall_clock_time_its_request_ended(tmp_path: Path) -> None:
    log, _, path = make_log(tmp_path)
    now = time.time()
    log_one(log, ended_at=time.perf_counter() - 2.0)  # ended two seconds ago
    log.close()
    stamp = datetime.fromisoformat(json.loads(path.read_text())["time"]).timestamp()
    assert now - 2.5 < stamp < now - 1.5


def test_lines_are_written_in_batches_by_one_timer(tmp_path: Path) -> None:
    log, loop, path = make_log(tmp_path)
    for _ in range(3):
        log_one(log)
    assert [delay for delay, _ in loop.timers] == [FLUSH_INTERVAL_S]  # one timer for the batch
    assert path.read_text() == ""  # nothing written on the request's path
    loop.fire()
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and log.written == 3 and log.dropped == 0
    assert json.loads(lines[0])["backend"] == "10.0.0.2:8000"
    log_one(log)
    assert len(loop.timers) == 1  # the next batch arms the timer again
    log.close()


def test_a_full_batch_is_written_at_once_not_with_the_timer(tmp_path: Path) -> None:
    log, loop, path = make_log(tmp_path)
    for _ in range(FLUSH_BATCH_LINES):
        log_one(log)
    (interval, timer), (now, _) = loop.timers
    assert timer.cancelled and (interval, now) == (FLUSH_INTERVAL_S, 0)
    loop.fire()
    assert len(path.read_text().splitlines()) == FLUSH_BATCH_LINES
    log.close()


def test_a_flush_of_more_lines_than_one_writev_takes_writes_them_all_in_order(
    tmp_path: Path,
) -> None:
    log, loop, path = make_log(tmp_path)
    for status in range(100, 100 + 2500):  # (a busy loop iteration can pass the batch size)
        log_one(log, status=status)
    log.flush()
    statuses = [json.loads(line)["status"] for line in path.read_text().splitlines()]
    assert statuses == list(range(100, 2600)) and log.written == 2500
    log.close()


def test_what_a_writev_does_not_take_is_written_again_from_there(tmp_path: Path) -> None:
    path = tmp_path / "lines"
    lines = [b"line %d\n" % n for n in range(1500)]
    calls = []

    def short_writev(fd: int, batch: list[bytes]) -> int:  # takes a little less each time
        calls.append(len(batch))
        return os.writev(fd, [b"".join(batch)[:-3]])

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        write_lines(fd, lines, short_writev)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(lines)
    assert calls == [1024, 476]  # at most IOV_MAX lines a call


def test_combined_lines_and_records_share_the_file(tmp_path: Path) -> None:
    log, loop, path = make_log(tmp_path, "combined")
    log_one(log)
    log.log_record({"listener": "tcp", "client": "192.0.2.1"})
    refused = {"listener": "public", "client": "198.51.100.7", "method": None, "status": 400}
    log.log_record(refused)
    loop.fire()
    first, second, third = path.read_text().splitlines()
    assert first.startswith("203.0.113.9 - - [") and '"GET /cart?id=7 HTTP/1.1" 200' in first
    assert second.endswith(" listener=tcp client=192.0.2.1")
    # a refused request is still a combined line, with "-" for what was never read
    assert third.startswith("198.51.100.7 - - [") and third.endswith('] "-" 400 0 "-" "-"')
    log.close()


def test_combined_format_says_http10_for_an_http10_request(tmp_path: Path) -> None:
    log, loop, path = make_log(tmp_path, "combined")
    log_one(log, http10=True)
    loop.fire()
    assert '"GET /cart?id=7 HTTP/1.0" 200' in path.read_text()
    log.close()


def test_when_the_buffer_is_full_lines_are_dropped_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(access_log, "MAX_PENDING_LINES", 5)
    log, loop, path = make_log(tmp_path)
    for _ in range(8):
        log_one(log)
    log.log_record({"listener": "tcp"})
    assert log.dropped == 4  # three exchanges and the record: the request never waits
    loop.fire()
    assert len(path.read_text().splitlines()) == 5 and log.written == 5
    log_one(log)  # room again once flushed
    assert log.dropped == 4
    log.close()
    assert len(path.read_text().splitlines()) == 6


def test_close_flushes_what_is_pending_and_cancels_the_timer(tmp_path: Path) -> None:
    log, loop, path = make_log(tmp_path)
    log_one(log)
    log.log_record({"listener": "udp", "client": "192.0.2.1"})
    [(_, handle)] = loop.timers
    log.close()
    assert handle.cancelled
    assert len(path.read_text().splitlines()) == 2


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a full disk)")
def test_a_full_disk_drops_lines_counts_them_and_close_does_not_raise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = FakeLoop()
    log = AccessLog(loop, "/dev/full")  # type: ignore[arg-type]
    log_one(log)
    log_one(log)
    with caplog.at_level(logging.WARNING, logger="evenflow.observability.access_log"):
        loop.fire()
        assert log.dropped == 2 and log.written == 0
        assert "2 lines lost" in caplog.text
        log.log_record({"listener": "tcp"})
        log.close()  # the last step of a shutdown: it must not raise
    assert log.dropped == 3
    assert "1 lines lost" in caplog.text  # the record close flushed


def test_stderr_is_written_to_but_never_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    loop = FakeLoop()
    log = AccessLog(loop, "stderr")  # type: ignore[arg-type]
    log_one(log)
    log.close()
    assert not stream.closed
    assert json.loads(stream.getvalue())["listener"] == "public"


def test_a_stream_that_takes_less_than_it_is_given_still_gets_every_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Trickle(io.RawIOBase):
        """Takes at most 7 bytes a write, as a raw file or pipe may."""

        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            taken = bytes(data[:7])
            self.data += taken
            return len(taken)

    trickle = Trickle()
    monkeypatch.setattr("sys.stdout", SimpleNamespace(buffer=trickle, flush=lambda: None))
    log = AccessLog(FakeLoop(), "stdout")  # type: ignore[arg-type]
    log_one(log, status=201)
    log_one(log, status=202)
    log.close()
    assert [json.loads(line)["status"] for line in trickle.data.splitlines()] == [201, 202]
    assert log.written == 2 and log.dropped == 0


@pytest.mark.timeout(20)
def test_a_pipe_nobody_reads_drops_lines_and_never_stalls_the_loop(
    tmp_path: Path,
) -> None:
    """A log shipper that stops reading (or `evenflow run | less`, paused): the pipe fills,
    and from then on lines are dropped and counted, while the loop never waits on a write.
    Once the reader reads again, the lines kept arrive whole, in order."""
    fifo = tmp_path / "access.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # there, but not reading
    try:
        loop = FakeLoop()
        log = AccessLog(loop, str(fifo))  # type: ignore[arg-type]
        log._max_pending = 100  # type: ignore[attr-defined]
        target = "/" + "x" * 4000  # ~4 KiB a line: a 64 KiB pipe holds a few of them
        started = time.monotonic()
        for batch in range(4):
            for _ in range(100):
                log_one(log, req=request(target=f"{target}?batch={batch}"))
            loop.fire()  # a flush: with the pipe full, it must not block
        assert time.monotonic() - started < 2.0
        # the first batch is being written (the pipe is full), the others had no room
        assert log.dropped_total() == 300
        # the reader comes back: the first batch arrives whole
        os.set_blocking(reader, True)
        received = bytearray()
        while received.count(b"\n") < 100:
            received += os.read(reader, 1 << 16)
        log.close()
        lines = received.decode().splitlines()
        assert len(lines) == 100
        assert {json.loads(line)["path"] for line in lines} == {f"{target}?batch=0"}
        assert log.dropped_total() == 300
    finally:
        os.close(reader)
