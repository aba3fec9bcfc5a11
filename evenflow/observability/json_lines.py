"""The access log's JSON line of a finished request, encoded here, in compiled code.

Most of a line is the same from one request to the next: the listener, the client, the route,
pool and backend. Those parts are kept encoded, each as the text it was encoded from, and what
changes (times, numbers, path, ids) is formatted into one bytes object. Text needs escaping only
when it holds a quote, a backslash, a control character, or (rarely: names, paths are
percent-encoded) what is not ASCII: one pass over its bytes says so, and only then is it
escaped in full (by json, as msgspec did: the same bytes; and characters that some readers
take for line breaks, so a line is always one line). A line costs ~1/3 of what a msgspec
Struct encoded in a batch cost (bench/instructions.py).

It knows nothing of files, batches or the loop: access_log.py writes the lines.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Final

from evenflow.balancing.hashing import key_hash
from evenflow.core.request import RequestHead
from evenflow.observability.log_numbers import DIGITS, Number

if TYPE_CHECKING:  # i64: a native int to mypyc, only ever an annotation (not run)
    from mypy_extensions import i64

# statics in compiled code, where a module attribute or an imported name is a lookup per call
_dumps: Final = json.dumps


class JsonLines:
    """Encodes finished requests as JSON lines (see `line`), keeping what repeats encoded.

    Fields, in order: time, listener, client, method, path, host, status, bytes_in, bytes_out,
    duration_ms, attempts, route, pool, backend (null when the request reached none); then,
    when they apply: split (the branch a split route took), algorithm, hash_key (a truncated
    hash, never the key itself: it may be a session cookie or a user id), sticky (hit, miss,
    repin), failures ("backend: reason" per failed attempt), connect_ms, ttfb_ms; then
    request_id, and trace_id when there is one. Milliseconds to the microsecond."""

    __slots__ = ("_clock", "_source", "_host", "_placements", "_last_placement")

    def __init__(self) -> None:
        self._clock = IsoClock()
        self._source = _Source()
        self._host = _HostStatus()
        # backend address (or "" without one) -> where its requests went, encoded: one entry
        # per backend a route sends to, so round robin over a pool finds each one's ready
        self._placements: dict[str, _Placement] = {}
        self._last_placement = _Placement(None, None, None, False, None)

    def line(
        self,
        at: float,
        listener: str,
        req: RequestHead,
        status: int,
        bytes_in: int,
        bytes_out: int,
        duration_s: float,
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
    ) -> bytes:
        """One request's line, UTF-8, ending in a newline. `at`: wall-clock seconds; the rest
        as AccessLog.log_request has them. A request id is read as latin-1 (as sent) and
        escaped when the client gave it; one evenflow made, and a trace id (tracing.py makes
        them or checks them against the W3C pattern), are hex digits and dashes, written as
        they are."""
        placement = self._last_placement
        if placement.backend is not backend:  # (a pool of one backend, or a run of picks)
            found = self._placements.get(backend if backend is not None else "")
            placement = found if found is not None else placement
        if (
            placement.backend is not backend
            or placement.route is not route
            or placement.pool is not pool
            or placement.algorithm is not algorithm
            or placement.is_split != is_split
        ):
            placement = self._placement(route, pool, algorithm, is_split, backend)
        self._last_placement = placement
        # the attempts, where it went, and what only some requests have: one piece for most
        if attempts == 1:
            placed = placement.json_after_one_attempt
        else:
            placed = _ATTEMPTS.labelled(attempts) + placement.json
        if hash_key is not None or sticky or failures or connect_s:
            placed += _extra(hash_key, sticky, failures, connect_s)
        target = req.raw_target
        # numbers in two parts (native tuples, no objects): the label and the digits up to
        # the thousands or the point, then the rest
        out_high, out_low = _BYTES_OUT.count(bytes_out)
        took_high, took_fraction = _DURATION.millis(duration_s)
        # (the request id's label comes with what is before it)
        ttfb_high, ttfb_fraction = _TTFB.millis(ttfb_s) if ttfb_s else (b"", b',"request_id":"')
        # the id closes the line's last string, or the trace id after it does
        trace_label = b'","trace_id":"' if len(trace_id) else b""  # (len: native)
        return b'%b%b%b%b%b%b%b%b%b%b%b%b%b%b%b"}\n' % (
            self._clock.line_head(at),
            self._source.json_of(listener, req.client_ip, req.method),
            _json_latin1(target) if isinstance(target, bytes) else _json_text(target),
            self._host.json_of(req, status),
            # (a request's head: mostly under 1000 bytes)
            DIGITS[bytes_in] if 0 <= bytes_in < 1000 else b"%d" % bytes_in,
            out_high,
            out_low,
            took_high,
            took_fraction,
            placed,
            ttfb_high,
            ttfb_fraction,
            _json_latin1(request_id) if request_id_given else request_id,
            trace_label,
            trace_id,
        )

    def _placement(
        self,
        route: str | None,
        pool: str | None,
        algorithm: str | None,
        is_split: bool,
        backend: str | None,
    ) -> _Placement:
        placements = self._placements
        if len(placements) >= _MAX_PLACEMENTS:
            placements.clear()  # (a reload that renamed everything, many times over)
        placement = placements[backend if backend is not None else ""] = _Placement(
            route, pool, algorithm, is_split, backend
        )
        return placement


_MAX_PLACEMENTS = 4096  # backends kept encoded; past it they are encoded again (not Final: tests)


class _Placement:
    """Where a backend's requests went, encoded: `,"route":..,"pool":..,"backend":..` and the
    split and algorithm when there are. Kept with the names it was encoded from, compared by
    identity: they are a snapshot's own strings, and new ones (a reload) encode anew."""

    __slots__ = (
        "route",
        "pool",
        "algorithm",
        "is_split",
        "backend",
        "json",
        "json_after_one_attempt",
    )

    def __init__(
        self,
        route: str | None,
        pool: str | None,
        algorithm: str | None,
        is_split: bool,
        backend: str | None,
    ) -> None:
        self.route = route
        self.pool = pool
        self.algorithm = algorithm
        self.is_split = is_split
        self.backend = backend
        json = b',"route":%b,"pool":%b,"backend":%b' % (
            _json_or_null(route),
            _json_or_null(pool),
            _json_or_null(backend),
        )
        if is_split and pool is not None:
            json += b',"split":"%b"' % _json_text(pool)
        if algorithm is not None:
            json += b',"algorithm":"%b"' % _json_text(algorithm)
        self.json = json
        self.json_after_one_attempt = b',"attempts":1' + json


class _Source:
    """Where the last request came from, encoded from `"listener":` to `"path":"`: a
    listener, a client (a connection's) and a method repeat from one request to the next."""

    __slots__ = ("listener", "client", "method", "json")

    def __init__(self) -> None:
        self.listener = self.client = self.method = ""
        self.json = _Source.encode("", "", "")

    def json_of(self, listener: str, client: str, method: str) -> bytes:
        # the listener's name and a method are the same objects from one request to the
        # next (a new one is only encoded again); a client's address is each connection's own
        if listener is not self.listener or method is not self.method or client != self.client:
            self.json = _Source.encode(listener, client, method)
            self.listener, self.client, self.method = listener, client, method
        return self.json

    @staticmethod
    def encode(listener: str, client: str, method: str) -> bytes:
        return b'"listener":"%b","client":"%b","method":"%b","path":"' % (
            _json_text(listener),
            _json_text(client),
            _json_text(method),
        )


class _HostStatus:
    """The last host and status, encoded from `","host":"` to the label of bytes_in: a host
    repeats from one request to the next, and so, mostly, does a status."""

    __slots__ = ("raw", "has_raw", "host", "host_json", "status", "json")

    def __init__(self) -> None:
        self.raw = b""  # the Host header it was normalized from, as received
        self.has_raw = False  # (not when the last one came normalized)
        self.host = ""
        self.host_json = b'","host":"","status":'
        self.status = -1
        self.json = b""

    def json_of(self, req: RequestHead, status: int) -> bytes:
        raw = req.raw_host
        # the header as received (a new object each request) compared, not normalized again
        if not (isinstance(raw, bytes) and self.has_raw and raw == self.raw):
            host = req.host
            if host != self.host:  # (identical strings compare without reading them)
                self.host_json = b'","host":"%b","status":' % _json_text(host)
                self.host = host
                self.status = -1
            self.has_raw = isinstance(raw, bytes)
            self.raw = raw if isinstance(raw, bytes) else b""
        if status != self.status:
            digits = DIGITS[status] if 0 <= status < 1000 else b"%d" % status
            self.json = b'%b%b,"bytes_in":' % (self.host_json, digits)
            self.status = status
        return self.json


def _extra(
    hash_key: bytes | None, sticky: str, failures: list[str] | None, connect_s: float
) -> bytes:
    """What only some requests have, between the algorithm and ttfb_ms."""
    extra = b""
    if hash_key is not None:
        extra += b',"hash_key":"%012x"' % (key_hash(hash_key) & 0xFFFFFFFFFFFF)
    if sticky:
        extra += b',"sticky":"%b"' % _json_text(sticky)
    if failures:
        extra += b',"failures":[%b]' % b",".join([b'"%b"' % _json_text(f) for f in failures])
    if connect_s:
        high, fraction = _CONNECT.millis(connect_s)
        extra += high + fraction
    return extra


def _json_or_null(text: str | None) -> bytes:
    return b"null" if text is None else b'"%b"' % _json_text(text)


def _json_text(text: str) -> bytes:
    """`text` inside a JSON string (without the quotes), UTF-8."""
    try:
        raw = text.encode()
    except UnicodeEncodeError:  # a lone surrogate (a name from a YAML escape)
        return _escaped(text)
    return raw if _is_plain(raw, 0x80) else _escaped(text)


def _json_latin1(raw: bytes) -> bytes:
    """Bytes as sent (an id, a target), read as latin-1, inside a JSON string: the bytes
    themselves when they are printable ASCII but for a quote or a backslash."""
    return raw if _is_plain(raw, 0x7F) else _escaped(raw.decode("latin-1"))


def _is_plain(raw: bytes, end: i64) -> bool:
    """Nothing in `raw` to escape: every byte is below `end`, none is a control character, a
    quote or a backslash. A native loop: ~14 instructions a byte, where a regular expression
    or a str method costs hundreds a call."""
    size: i64 = len(raw)
    i: i64 = 0
    while i < size:
        byte: i64 = raw[i]
        if byte < 0x20 or byte == 0x22 or byte == 0x5C or byte >= end:
            return False
        i += 1
    return True


def _escaped(text: str) -> bytes:
    """`text` escaped as msgspec escapes (json.dumps gives the same bytes for every character
    but a lone surrogate), without the quotes, and with the characters some readers take for
    line breaks escaped too: NEL (a client can send 0x85, read as latin-1), LINE SEPARATOR
    and PARAGRAPH SEPARATOR are valid in a JSON string, but break lines for
    str.splitlines() and some log shippers. A lone surrogate, which UTF-8 cannot hold, is
    written as its \\u escape (the string is then escaped to ASCII): json.loads reads back
    the same string."""
    escaped = _dumps(text, ensure_ascii=False)[1:-1]
    for line_break, written in _LINE_BREAKS:
        escaped = escaped.replace(line_break, written)
    try:
        return escaped.encode()
    except UnicodeEncodeError:
        return _dumps(text)[1:-1].encode()


_LINE_BREAKS: Final = (("\x85", "\\u0085"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))


_BYTES_OUT: Final = Number(b',"bytes_out":')
_DURATION: Final = Number(b',"duration_ms":')
_ATTEMPTS: Final = Number(b',"attempts":')
_TTFB: Final = Number(b',"ttfb_ms":', after=b',"request_id":"')
_CONNECT: Final = Number(b',"connect_ms":')


class IsoClock:
    """Times as UTC ISO 8601 with milliseconds (2026-11-26T19:59:38.264Z), the last one kept
    for the next line. Lines come in bursts (at 20 000 requests/s twenty share each
    millisecond), and formatting a time costs more than the rest of a line's numbers
    together: the date and time are formatted once a second, the milliseconds come from a
    table."""

    __slots__ = ("ms", "text", "second_ms", "second_text")

    def __init__(self) -> None:
        self.ms = -1
        self.text = b""  # as a line starts: {"time":"2026-11-26T19:59:38.264Z",
        self.second_ms = -1000  # the current second, in ms: a subtraction finds the fraction
        self.second_text = b""

    def iso(self, at: float) -> str:
        """`at`: wall-clock seconds."""
        return self.line_head(at)[9:-2].decode()

    def line_head(self, at: float) -> bytes:
        ms = int(at * 1000)
        if ms != self.ms:
            fraction = ms - self.second_ms
            if not 0 <= fraction < 1000:
                second = ms // 1000
                stamp = time.strftime('{"time":"%Y-%m-%dT%H:%M:%S', time.gmtime(second))
                self.second_text = stamp.encode()
                self.second_ms = second * 1000
                fraction = ms - self.second_ms
            self.text = self.second_text + _MILLIS[fraction]
            self.ms = ms
        return self.text


_MILLIS: Final = [b'.%03dZ",' % fraction for fraction in range(1000)]
