"""The access log's JSON line, against the line msgspec wrote before it (the reference below is
that encoder, as it was): the same bytes for what requests carry, the same record read back for
any text at all (control characters, quotes, backslashes, non-ASCII, lone surrogates), and
what it keeps encoded never outliving the names it was encoded from."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evenflow.balancing.hashing import key_hash
from evenflow.core.request import RequestHead
from evenflow.observability import json_lines
from evenflow.observability.access_log import as_written
from evenflow.observability.json_lines import IsoClock, JsonLines

AT = 1_790_000_000.25  # 2026-09-21T14:13:20.250Z


# --- the reference: the msgspec Struct the log encoded until json_lines.py ------------------


class Line(msgspec.Struct, gc=False, omit_defaults=True):
    time: str
    listener: str
    client: str
    method: str
    path: str
    host: str
    status: int
    bytes_in: int
    bytes_out: int
    duration_ms: float
    attempts: int
    route: str | None
    pool: str | None
    backend: str | None
    split: str | None = None
    algorithm: str | None = None
    hash_key: str | None = None
    sticky: str | None = None
    failures: list[str] | None = None
    connect_ms: float | None = None
    ttfb_ms: float | None = None
    request_id: str | None = None
    trace_id: str | None = None


def _ms(seconds: float) -> float:
    return int(seconds * 1e6 + 0.5) / 1000


def reference_line(at: float, listener: str, req: RequestHead, **f: Any) -> bytes:
    """The line as msgspec wrote it: the whole line escaped to ASCII by json when msgspec
    could not encode it (a lone surrogate)."""
    line = Line(
        IsoClock().iso(at),
        listener,
        req.client_ip,
        req.method,
        req.target,
        req.host,
        f["status"],
        f["bytes_in"],
        f["bytes_out"],
        _ms(f["duration_s"]),
        f["attempts"],
        f["route"],
        f["pool"],
        f["backend"],
        f["pool"] if f["is_split"] else None,
        f["algorithm"],
        ttfb_ms=_ms(f["ttfb_s"]) if f["ttfb_s"] else None,
        request_id=f["request_id"].decode("latin-1"),
        trace_id=f["trace_id"].decode() if f["trace_id"] else None,
    )
    if f["hash_key"] is not None:
        line.hash_key = f"{key_hash(f['hash_key']) & 0xFFFFFFFFFFFF:012x}"
    if f["sticky"]:
        line.sticky = f["sticky"]
    if f["failures"]:
        line.failures = list(f["failures"])
    if f["connect_s"]:
        line.connect_ms = _ms(f["connect_s"])
    try:
        return as_written([msgspec.json.Encoder().encode_lines([line])])
    except UnicodeEncodeError:
        names = line.__struct_fields__
        fields = {n: v for n in names if (v := getattr(line, n)) is not None}
        return json.dumps(fields, separators=(",", ":")).encode() + b"\n"


FIELDS: dict[str, Any] = dict(
    status=200,
    bytes_in=12,
    bytes_out=3456,
    duration_s=0.0123456,
    attempts=1,
    route="shop",
    pool="web",
    algorithm="least_conn",
    is_split=False,
    backend="10.0.0.2:8000",
    hash_key=None,
    sticky="",
    failures=None,
    connect_s=0.0,
    ttfb_s=0.0101,
    request_id=b"a1b2c3d4e5f6-1f",
    request_id_given=False,
    trace_id=b"4bf92f3577b34da6a3ce929d0e0e4736",
)


def request(
    method: str = "GET", target: str = "/cart?id=7", host: str = "shop.example"
) -> RequestHead:
    return RequestHead(method, target, host, [], "203.0.113.9")


def both(
    lines: JsonLines, listener: str = "public", req: RequestHead | None = None, **changes: Any
) -> tuple[bytes, bytes]:
    """(the line json_lines writes, the line msgspec wrote) for one finished request."""
    req = req or request()
    fields = {**FIELDS, **changes}
    new = lines.line(AT, listener, req, **fields)
    return new, reference_line(AT, listener, req, **fields)


# --- the same bytes ---------------------------------------------------------------------------


def test_a_request_through_a_pool_is_the_line_msgspec_wrote() -> None:
    new, old = both(JsonLines())
    assert new == old
    assert new.startswith(b'{"time":"2026-09-21T14:13:20.250Z","listener":"public",')


@pytest.mark.parametrize(
    "changes",
    [
        dict(route=None, pool=None, algorithm=None, backend=None, status=404, attempts=0),
        dict(route="checkout", is_split=True, pool="canary"),
        dict(hash_key=b"session-4f9a8d7e6c5b4a39", sticky="repin"),
        dict(failures=["10.0.0.1:8000: connect failed: refused", 'x "quoted"\\'], attempts=3),
        dict(connect_s=0.0012344, ttfb_s=0.0, trace_id=b""),
        dict(duration_s=0.0, bytes_in=0, bytes_out=0, status=101),
        dict(duration_s=12345.678901, bytes_out=10**12, bytes_in=999_999),
        dict(request_id=b'id "with" \\ \x01 and \xff', request_id_given=True),
        dict(request_id=b"ab12-cd34", request_id_given=True),
    ],
)
def test_every_shape_of_line_is_the_line_msgspec_wrote(changes: dict[str, Any]) -> None:
    new, old = both(JsonLines(), **changes)
    assert new == old


_names = st.text(max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    listener=_names,
    client=_names,
    method=_names,
    target=st.text(),
    host=st.text(max_size=20),
    route=st.none() | _names,
    pool=st.none() | _names,
    algorithm=st.none() | _names,
    backend=st.none() | _names,
    is_split=st.booleans(),
    sticky=_names,
    failures=st.none() | st.lists(st.text(), max_size=3),
    request_id=st.binary(max_size=40),
    trace_id=st.just(b"") | st.binary(min_size=16, max_size=16).map(bytes.hex).map(str.encode),
    hash_key=st.none() | st.binary(max_size=20),
    numbers=st.tuples(*[st.integers(0, 10**13)] * 4),
    seconds=st.tuples(*[st.floats(0, 1e6)] * 3),
)
def test_any_text_reads_back_as_the_record_msgspec_wrote_and_is_one_line(
    listener: str,
    client: str,
    method: str,
    target: str,
    host: str,
    route: str | None,
    pool: str | None,
    algorithm: str | None,
    backend: str | None,
    is_split: bool,
    sticky: str,
    failures: list[str] | None,
    request_id: bytes,
    trace_id: bytes,
    hash_key: bytes | None,
    numbers: tuple[int, int, int, int],
    seconds: tuple[float, float, float],
) -> None:
    req = RequestHead(method, target, host, [], client)
    status, bytes_in, bytes_out, attempts = numbers
    duration_s, connect_s, ttfb_s = seconds
    lines = JsonLines()
    for _ in range(2):  # and the same again, from what was kept encoded
        new, old = both(
            lines,
            listener,
            req,
            route=route,
            pool=pool,
            algorithm=algorithm,
            backend=backend,
            is_split=is_split,
            sticky=sticky,
            failures=failures,
            request_id=request_id,
            request_id_given=True,
            trace_id=trace_id,
            hash_key=hash_key,
            status=status,
            bytes_in=bytes_in,
            bytes_out=bytes_out,
            attempts=attempts,
            duration_s=duration_s,
            connect_s=connect_s,
            ttfb_s=ttfb_s,
        )
        assert json.loads(new) == json.loads(old)
        # one line: no control character, no character some readers take for a line break
        text = new.decode()
        assert text.endswith("\n") and len(text.splitlines()) == 1
        assert not any(ord(char) < 0x20 for char in text[:-1])
        texts = [listener, client, method, target, host, route, pool, algorithm, backend]
        texts += [sticky, *(failures or [])]
        if not any(has_surrogate(t) for t in texts if t is not None):
            assert new == old  # (what msgspec could encode: the same bytes)


def has_surrogate(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


@pytest.mark.parametrize("text", ["\udc80", "a\ud800b", '\udfff"\\\n', "é\udc00€"])
def test_a_lone_surrogate_is_written_as_its_escape_and_reads_back_the_same(text: str) -> None:
    # UTF-8 cannot hold it: the string is written with \\u escapes (ASCII); the rest of the
    # line stays as it is
    new, old = both(JsonLines(), route=text, req=request(target="/é"))
    record = json.loads(new)
    assert record == json.loads(old)
    assert record["route"] == text and record["path"] == "/é"
    assert "é".encode() in new  # the path, as UTF-8


def test_a_target_received_as_bytes_is_read_as_latin1() -> None:
    # as the HTTP/1.1 parser hands it over: not decoded until something asks
    raw = b'/caf\xe9?q="a\\b"&nel=\x85&tab=\t'
    new = JsonLines().line(AT, "public", bytes_target(raw), **FIELDS)
    assert new == reference_line(AT, "public", bytes_target(raw), **FIELDS)
    assert json.loads(new)["path"] == raw.decode("latin-1")


def bytes_target(raw: bytes) -> RequestHead:
    return RequestHead("GET", raw, b"shop.example", [], "203.0.113.9")


# --- what is kept encoded ---------------------------------------------------------------------


def test_a_backend_moved_to_another_route_or_pool_is_logged_where_it_is_now() -> None:
    lines = JsonLines()
    first = json.loads(lines.line(AT, "public", request(), **FIELDS))
    moved = {**FIELDS, "route": "other", "pool": "canary", "is_split": True, "algorithm": "random"}
    second = json.loads(lines.line(AT, "public", request(), **moved))
    assert (first["route"], first["pool"], "split" in first) == ("shop", "web", False)
    assert (second["route"], second["pool"], second["split"]) == ("other", "canary", "canary")
    assert second["algorithm"] == "random"


def test_a_new_client_method_host_and_listener_are_logged_as_they_are() -> None:
    lines = JsonLines()
    lines.line(AT, "public", request(), **FIELDS)
    req = RequestHead("POST", "/", "other.example", [], "198.51.100.7")
    record = json.loads(lines.line(AT, "admin", req, **FIELDS))
    assert (record["listener"], record["client"], record["method"], record["host"]) == (
        "admin",
        "198.51.100.7",
        "POST",
        "other.example",
    )


def test_a_status_or_host_that_changes_is_logged_as_it_is_now() -> None:
    lines = JsonLines()
    seen = []
    for status, host in [(200, "a.example"), (404, "a.example"), (200, "b.example"), (200, "a")]:
        req = request(host=host)
        seen.append(json.loads(lines.line(AT, "public", req, **{**FIELDS, "status": status})))
    assert [(r["status"], r["host"]) for r in seen] == [
        (200, "a.example"),
        (404, "a.example"),
        (200, "b.example"),
        (200, "a"),
    ]


def test_a_host_is_logged_normalized_whether_received_or_already_read() -> None:
    lines = JsonLines()
    hosts: list[str | bytes] = [b"Shop.Example:8080", b"Shop.Example:8080", b"b:1", "c", b""]
    logged = []
    for host in hosts:
        req = RequestHead("GET", b"/", host, [], "203.0.113.9")
        logged.append(json.loads(lines.line(AT, "public", req, **FIELDS))["host"])
    assert logged == ["shop.example", "shop.example", "b", "c", ""]


def test_numbers_are_written_alike_the_first_time_and_after() -> None:
    # their digits are kept with their labels once made: the second line reads them back
    lines = JsonLines()
    fields = {
        **FIELDS,
        "bytes_out": 123_456,
        "duration_s": 0.999_999_6,
        "ttfb_s": 0.5,
        "attempts": 7,
    }
    first, again = (lines.line(AT, "public", request(), **fields) for _ in range(2))
    assert first == again == reference_line(AT, "public", request(), **fields)
    record = json.loads(first)
    assert (record["bytes_out"], record["duration_ms"], record["ttfb_ms"]) == (
        123456,
        1000.0,
        500.0,
    )


def test_backends_kept_encoded_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_lines, "_MAX_PLACEMENTS", 8)
    lines = JsonLines()
    for n in range(50):
        record = json.loads(lines.line(AT, "public", request(), **{**FIELDS, "backend": f"b{n}"}))
        assert record["backend"] == f"b{n}"
    assert len(lines._placements) <= 8


def test_the_time_is_iso_8601_utc_with_milliseconds_across_seconds() -> None:
    clock = IsoClock()
    assert clock.iso(AT) == "2026-09-21T14:13:20.250Z"
    assert clock.iso(AT + 0.749) == "2026-09-21T14:13:20.999Z"
    assert clock.iso(AT + 0.75) == "2026-09-21T14:13:21.000Z"
    assert clock.line_head(AT - 1) == b'{"time":"2026-09-21T14:13:19.250Z",'
