"""The desync judge: every case of AWS http-desync-guardian's corpus, sent raw through evenflow.

What each tier demands (../shared/judges/desync/ORIGIN.md):
- Severe: never forwarded; the client gets 400 and its connection is closed.
- Ambiguous: rejected with 400 and nothing forwarded; or forwarded once, the response sent, and
  then both the client and the upstream connection closed, nothing further forwarded on them.
- Compliant, Acceptable: forwarded intact (method, target, end-to-end headers, body) and the
  backend's 200 reaches the client.

A case becomes bytes as the corpus's own runner builds them (http-desync-guardian,
src/request_analyzer.rs, `run_test_case`): YAML's escapes, then a second pass of `\\xNN`,
`\\t`, `\\r`, ... for plain scalars, encoded as UTF-8 (so `\\xa0` goes out as C2 A0, as
there); `METHOD SP URI SP VERSION CRLF`, each header as `name: value CRLF`, then CRLF.
Added to that, because a proxy is on the other end:
- `Host: example.test` when the case has no Host (ORIGIN.md), right after the request line, or
  last when the case's first header line starts with whitespace: after Host, that line would be
  an obs-fold continuation of Host, which is another case than the one written;
- an empty version is the HTTP/0.9 form `METHOD SP URI CRLF`, without a trailing space;
- the body the head announces, read as a strict recipient reads it: a chunked body when the last
  Transfer-Encoding coding is chunked, else as many bytes as Content-Length when every
  Content-Length says the same number, else none. The corpus classifies heads only; a proxy
  that forwards a case must be given the body it then waits for.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:  # fixtures arrive through pytest; their module is not imported twice
    from tests.judges.conftest import BackendThread, Evenflow, UpstreamView

pytestmark = pytest.mark.judge

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "judges" / "desync"

# Bounds: evenflow and the backend are on 127.0.0.1 and answer in milliseconds; these only
# decide how long a misbehaving proxy is waited for before the case fails.
CONNECT_TIMEOUT_S = 2.0
SEND_TIMEOUT_S = 5.0  # the largest case body is 4 MB
RESPONSE_TIMEOUT_S = 2.0
CLOSE_TIMEOUT_S = 1.0  # after a response, for the client connection's EOF
EOF_GRACE_S = 0.1  # a connection that is closing shows EOF within this, no probe needed
UPSTREAM_CLOSE_TIMEOUT_S = 1.0
SETTLE_S = 0.05  # lets bytes evenflow forwarded before answering reach the backend's loop
MAX_CASE_BODY_BYTES = 8 << 20  # a Content-Length past it (the 64-bit overflow case) gets none

HOST_LINE = b"Host: example.test\r\n"
SECOND_REQUEST = b"GET /second HTTP/1.1\r\nHost: example.test\r\n\r\n"
CHUNKED_BODY = b"5\r\nhello\r\n0\r\n\r\n"
CHUNKED_PAYLOAD = b"hello"

# Headers a proxy legitimately drops or rewrites (RFC 9110 §7.6.1 hop-by-hop, plus the names a
# Connection header lists), frames itself (RFC 9112 §6: compared through the body instead), or
# adds as evenflow does; what is left must reach the backend unchanged.
HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"te", b"trailer", b"upgrade"))
FRAMING = frozenset((b"transfer-encoding", b"content-length"))
ADDED_BY_EVENFLOW = frozenset(
    (
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"via",
        b"x-request-id",
        b"traceparent",
    )
)
OWS = b" \t"


# --- the corpus -------------------------------------------------------------------------------


_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescape(text: str) -> str:
    """The corpus runner's second escape pass (`unescape_value` in request_analyzer.rs)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\" or i + 1 == len(text):
            out.append(ch)
            i += 1
        elif text[i + 1] == "x":
            out.append(chr(int(text[i + 2 : i + 4], 16)))
            i += 4
        else:
            out.append(_ESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
    return "".join(out)


def _field(value: Any) -> bytes:
    return _unescape(str(value)).encode("utf-8")


@dataclass(frozen=True)
class Case:
    file: str
    index: int  # 1-based position in its file; names repeat across and within files
    name: str
    tier: str
    method: bytes
    uri: bytes
    version: bytes
    headers: tuple[tuple[bytes, bytes], ...]

    @property
    def id(self) -> str:
        return f"{self.key}-{self.name}"

    @property
    def key(self) -> str:
        """file and index: "acceptable-03"."""
        return f"{self.file}-{self.index:02d}"


def load_corpus(directory: Path) -> list[Case]:
    cases: list[Case] = []
    for path in sorted(directory.glob("*.yaml")):
        for index, entry in enumerate(yaml.safe_load(path.read_text(encoding="utf-8")), 1):
            cases.append(
                Case(
                    file=path.stem,
                    index=index,
                    name=entry["name"],
                    tier=entry["expected"]["tier"],
                    method=_field(entry["method"]),
                    uri=_field(entry["uri"]),
                    version=_field(entry["version"]),
                    headers=tuple(
                        (_field(h["name"]), _field(h["value"])) for h in entry["headers"] or ()
                    ),
                )
            )
    return cases


if not CORPUS.is_dir():
    pytest.fail(f"the desync corpus is not at {CORPUS}", pytrace=False)
CASES = load_corpus(CORPUS)


# --- framing, as a strict recipient reads it --------------------------------------------------


def transfer_codings(headers: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
    """The codings of every `Transfer-Encoding` field, in order, lowercase, parameters dropped."""
    codings: list[bytes] = []
    for name, value in headers:
        if name.lower() == b"transfer-encoding":
            for item in value.split(b","):
                coding = item.split(b";", 1)[0].strip(OWS).lower()
                if coding:
                    codings.append(coding)
    return codings


def content_lengths(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    return {value.strip(OWS) for name, value in headers if name.lower() == b"content-length"}


def dechunk(body: bytes) -> tuple[bytes, bytes] | None:
    """(payload, bytes after the last chunk and trailers), or None if `body` is no chunked body."""
    payload = bytearray()
    pos = 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_text = body[pos:eol].split(b";", 1)[0]
        if not size_text or size_text.strip(b"0123456789abcdefABCDEF"):
            return None
        size = int(size_text, 16)
        pos = eol + 2
        if size == 0:
            while True:  # trailer fields, up to the empty line
                eol = body.find(b"\r\n", pos)
                if eol < 0:
                    return None
                line, pos = body[pos:eol], eol + 2
                if not line:
                    return bytes(payload), body[pos:]
        if body[pos + size : pos + size + 2] != b"\r\n":
            return None
        payload += body[pos : pos + size]
        pos += size + 2


@dataclass(frozen=True)
class Built:
    raw: bytes
    headers: tuple[tuple[bytes, bytes], ...]  # the case's, and Host where it was added
    payload: bytes  # the body's content, without chunked framing


def build_request(case: Case) -> Built:
    headers = list(case.headers)
    lines = [name + b": " + value + b"\r\n" for name, value in headers]
    if not any(name.lower() == b"host" for name, _ in headers):
        if lines and lines[0][:1] in (b" ", b"\t"):
            headers.append((b"Host", b"example.test"))
            lines.append(HOST_LINE)
        else:
            headers.insert(0, (b"Host", b"example.test"))
            lines.insert(0, HOST_LINE)
    version = b" " + case.version if case.version else b""
    head = case.method + b" " + case.uri + version + b"\r\n" + b"".join(lines) + b"\r\n"
    codings = transfer_codings(headers)
    lengths = content_lengths(headers)
    wire, payload = b"", b""
    if codings:
        if codings[-1] == b"chunked":
            wire, payload = CHUNKED_BODY, CHUNKED_PAYLOAD
    elif len(lengths) == 1:
        (length,) = lengths
        if length.isdigit() and int(length) <= MAX_CASE_BODY_BYTES:
            wire = payload = b"x" * int(length)
    return Built(head + wire, tuple(headers), payload)


# --- what reached the backend -----------------------------------------------------------------


@dataclass
class Forwarded:
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    payload: bytes
    rest: bytes  # bytes after the request: a second request smuggled in, or garbage


def parse_forwarded(data: bytes) -> Forwarded | str:
    """The one request at the start of `data`, or what is wrong with it."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return "no complete request head"
    lines = data[:end].split(b"\r\n")
    parts = lines[0].split(b" ")
    # RFC 9110 §6.2: an intermediary sends its own HTTP version, whatever the client's was
    if len(parts) < 3 or parts[-1] not in (b"HTTP/1.1", b"HTTP/1.0"):
        return f"forwarded with a request line that is not HTTP/1.x: {lines[0]!r}"
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            return f"header line without a colon: {line!r}"
        headers.append((name, value.strip(OWS)))
    body = data[end + 4 :]
    codings = transfer_codings(headers)
    lengths = content_lengths(headers)
    if codings:
        if codings[-1] != b"chunked":
            return f"forwarded with Transfer-Encoding whose last coding is not chunked: {codings}"
        dechunked = dechunk(body)
        if dechunked is None:
            return f"forwarded as chunked, but the body is not a complete chunked body: {body!r}"
        payload, rest = dechunked
    elif len(lengths) > 1 or (lengths and not next(iter(lengths)).isdigit()):
        return f"forwarded with an unusable Content-Length: {sorted(lengths)}"
    else:
        length = int(next(iter(lengths))) if lengths else 0
        if len(body) < length:
            return f"forwarded {len(body)} body bytes, Content-Length says {length}"
        payload, rest = body[:length], body[length:]
    return Forwarded(parts[0], b" ".join(parts[1:-1]), headers, payload, rest)


def end_to_end(headers: Iterable[tuple[bytes, bytes]]) -> Counter[tuple[bytes, bytes]]:
    """The fields that must pass a proxy unchanged: (lowercase name, value), both OWS-trimmed."""
    headers = list(headers)
    named = {
        token.strip(OWS).lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    }
    kept: Counter[tuple[bytes, bytes]] = Counter()
    for name, value in headers:
        lname = name.lower()
        if (
            lname in HOP_BY_HOP
            or lname.startswith(b"proxy-")
            or lname in named
            or lname in FRAMING
            or lname in ADDED_BY_EVENFLOW
        ):
            continue
        kept[(lname.strip(OWS), value.strip(OWS))] += 1
    return kept


def same_target(sent: bytes, forwarded: bytes) -> bool:
    # RFC 9110 §4.2.3: an empty path is "/"; §4.2.5: a fragment is not part of the target
    return forwarded in (sent, sent.split(b"#", 1)[0]) or (sent == b"" and forwarded == b"/")


def compare(case: Case, built: Built, forwarded: Forwarded) -> list[str]:
    problems: list[str] = []
    if forwarded.method != case.method:
        problems.append(f"method forwarded as {forwarded.method!r}, sent {case.method!r}")
    if not same_target(case.uri, forwarded.target):
        problems.append(f"target forwarded as {forwarded.target!r}, sent {case.uri!r}")
    sent, got = end_to_end(built.headers), end_to_end(forwarded.headers)
    if sent != got:
        problems.append(
            f"headers not forwarded intact: missing {sorted((sent - got).elements())}, "
            f"unexpected {sorted((got - sent).elements())}"
        )
    codings = [c for c in transfer_codings(built.headers) if c not in (b"chunked", b"identity")]
    kept = [c for c in transfer_codings(forwarded.headers) if c not in (b"chunked", b"identity")]
    if codings != kept:
        problems.append(f"transfer codings forwarded as {kept}, sent {codings}")
    if forwarded.payload != built.payload:
        problems.append(
            f"body forwarded as {_show(forwarded.payload)}, sent {_show(built.payload)}"
        )
    if forwarded.rest:
        problems.append(f"bytes forwarded after the request: {_show(forwarded.rest)}")
    return problems


# --- the client side --------------------------------------------------------------------------


@dataclass
class Response:
    status: int | None
    head: bytes
    headers: list[tuple[bytes, bytes]]
    complete: bool  # the whole body arrived

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n.lower() == name), None)


class Client:
    """One raw connection to evenflow, every operation bounded by a deadline."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT_S)
        self.buf = bytearray()
        self.closed = ""  # how the peer closed the connection ("EOF", "reset"), "" while open

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.sock.close()

    def send(self, data: bytes) -> str:
        """Sends all of `data`; returns "" or what went wrong."""
        self.sock.settimeout(SEND_TIMEOUT_S)
        try:
            self.sock.sendall(data)
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
        return ""

    def _receive(self, deadline: float) -> bool:
        """Reads once more into `buf`; False on timeout or once the peer closed."""
        remaining = deadline - time.monotonic()
        if self.closed or remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except OSError as exc:
            self.closed = f"reset ({type(exc).__name__})"
            return False
        if not data:
            self.closed = "EOF"
            return False
        self.buf += data
        return True

    def read_response(self, is_head: bool, timeout_s: float) -> Response | None:
        """The next final response, as much of it as arrived in time; None if no head did."""
        deadline = time.monotonic() + timeout_s
        while True:
            end = self.buf.find(b"\r\n\r\n")
            while end < 0:
                if not self._receive(deadline):
                    return None
                end = self.buf.find(b"\r\n\r\n")
            head = bytes(self.buf[: end + 4])
            lines = head[:-4].split(b"\r\n")
            parts = lines[0].split(b" ", 2)
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
            headers = [
                (name, value.strip(OWS))
                for name, _, value in (line.partition(b":") for line in lines[1:])
            ]
            response = Response(status, head, headers, complete=False)
            if status is not None and 100 <= status < 200 and status != 101:
                del self.buf[: end + 4]  # interim response: the final one follows
                continue
            size = self._body_size(response, is_head, end + 4, deadline)
            if size is not None:
                response.complete = True
                del self.buf[:size]
            return response

    def _body_size(
        self, response: Response, is_head: bool, start: int, deadline: float
    ) -> int | None:
        """How many bytes of `buf` the response takes, once all arrived; None if not in time."""
        status = response.status or 0
        if is_head or status in (204, 304):
            return start
        if transfer_codings(response.headers)[-1:] == [b"chunked"]:
            while (dechunked := dechunk(bytes(self.buf[start:]))) is None:
                if not self._receive(deadline):
                    return None
            return len(self.buf) - len(dechunked[1])
        lengths = content_lengths(response.headers)
        if lengths:
            length = start + int(next(iter(lengths)))
            while len(self.buf) < length:
                if not self._receive(deadline):
                    return None
            return length
        while self._receive(deadline):  # delimited by the close
            pass
        return len(self.buf) if self.closed else None

    def is_closed_after_response(self) -> tuple[bool, str]:
        """Whether evenflow closed this connection after its response, and what showed it.

        A connection that shows no EOF at once gets a second, harmless request: a closed one
        answers with EOF or a reset, an open one with a response or with silence.
        """
        self._receive(time.monotonic() + EOF_GRACE_S)
        if self.closed:
            return True, self.closed
        if self.buf:
            return False, f"more bytes after the response: {_show(bytes(self.buf))}"
        error = self.send(SECOND_REQUEST)
        if error:
            return True, f"sending a second request failed: {error}"
        second = self.read_response(False, CLOSE_TIMEOUT_S)
        if second is not None:
            return False, f"a second request on it was answered: {second.head!r}"
        if self.closed:
            return True, self.closed
        return False, f"still open {CLOSE_TIMEOUT_S}s after the response"


# --- judging ----------------------------------------------------------------------------------


@dataclass
class Observed:
    case: Case
    built: Built
    send_error: str
    response: Response | None
    upstream: list[UpstreamView]  # right after the response (or the timeout)
    notes: list[str] = field(default_factory=list)

    @property
    def forwarded(self) -> list[int]:
        """Indexes of the upstream connections that received bytes of this case."""
        return [i for i, conn in enumerate(self.upstream) if conn.received]

    def report(self, problems: list[str]) -> str:
        response = self.response
        lines = [
            f"{self.case.id} (tier {self.case.tier}):",
            *(f"  - {problem}" for problem in problems),
            f"  sent: {_show(self.built.raw)}",
        ]
        if self.send_error:
            lines.append(f"  sending failed: {self.send_error}")
        if response is None:
            lines.append(f"  response: none within {RESPONSE_TIMEOUT_S}s")
        else:
            more = "" if response.complete else " (body incomplete)"
            lines.append(f"  response: {response.head!r}{more}")
        lines.extend(f"  {note}" for note in self.notes)
        for i in self.forwarded:
            conn = self.upstream[i]
            state = "open" if conn.is_open else "closed"
            lines.append(f"  backend connection {i} ({state}) received: {_show(conn.received)}")
        if not self.forwarded:
            lines.append("  backend received: nothing")
        return "\n".join(lines)


def _show(data: bytes, limit: int = 600) -> str:
    if len(data) <= limit:
        return repr(data)
    return f"{data[:limit]!r}... ({len(data)} bytes)"


def judge_severe(observed: Observed, client: Client, recorder: BackendThread) -> list[str]:
    problems = _rejected(observed)
    if observed.response is not None:
        closed, how = client.is_closed_after_response()
        observed.notes.append(f"client connection: {'closed' if closed else 'open'} ({how})")
        if not closed:
            problems.append("the client connection was not closed after the 400")
    return problems


def judge_ambiguous(observed: Observed, client: Client, recorder: BackendThread) -> list[str]:
    response = observed.response
    if response is None:
        return [f"no response within {RESPONSE_TIMEOUT_S}s"]
    if not observed.forwarded:
        return _rejected(observed)
    # forwarded: it must have been once, and both connections must close after the response
    problems: list[str] = []
    if len(observed.forwarded) > 1:
        problems.append(f"reached the backend on {len(observed.forwarded)} connections")
    closed, how = client.is_closed_after_response()
    observed.notes.append(f"client connection: {'closed' if closed else 'open'} ({how})")
    if not closed:
        problems.append("forwarded, and the client connection was not closed after the response")
    deadline = time.monotonic() + UPSTREAM_CLOSE_TIMEOUT_S
    while True:
        after = recorder.snapshot()
        still_open = [i for i in observed.forwarded if after[i].is_open]
        if not still_open or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    observed.upstream = after
    if still_open:
        problems.append(
            f"forwarded, and the backend connection stayed open {UPSTREAM_CLOSE_TIMEOUT_S}s "
            "after the response"
        )
    if any(b"/second" in conn.received for conn in after):
        problems.append("the second request on the client connection reached the backend")
    return problems


def judge_forwarded(observed: Observed, client: Client, recorder: BackendThread) -> list[str]:
    problems: list[str] = []
    response = observed.response
    if response is None:
        problems.append(f"no response within {RESPONSE_TIMEOUT_S}s")
    elif response.status != 200 or response.header(b"x-backend") != b"recorder":
        problems.append(f"the client got {response.status}, not the backend's 200")
    if not observed.forwarded:
        problems.append("not forwarded: the backend received nothing")
        return problems
    if len(observed.forwarded) > 1:
        problems.append(f"reached the backend on {len(observed.forwarded)} connections")
        return problems
    forwarded = parse_forwarded(observed.upstream[observed.forwarded[0]].received)
    if isinstance(forwarded, str):
        problems.append(f"not forwarded intact: {forwarded}")
    else:
        problems.extend(compare(observed.case, observed.built, forwarded))
    return problems


def _rejected(observed: Observed) -> list[str]:
    problems: list[str] = []
    response = observed.response
    if response is None:
        problems.append(f"no response within {RESPONSE_TIMEOUT_S}s")
    elif response.status != 400:
        problems.append(f"answered {response.status}, not 400")
    if observed.forwarded:
        problems.append("forwarded to the backend")
    return problems


Judge = Callable[[Observed, Client, "BackendThread"], list[str]]
JUDGES: dict[str, Judge] = {
    "Severe": judge_severe,
    "Ambiguous": judge_ambiguous,
    "Acceptable": judge_forwarded,
    "Compliant": judge_forwarded,
}


# Cases the corpus would have forwarded that evenflow answers with 400 on purpose, each for a
# reason the RFCs give. They are judged as rejections (400, nothing forwarded), so a change that
# starts forwarding them still fails loudly.
DELIBERATE_REJECTIONS = {
    "acceptable-01": "RFC 9112 §5.1: whitespace before the colon MUST get a 400",
    "acceptable-02": "RFC 9112 §5.1: whitespace before the colon MUST get a 400",
    "acceptable-04": "RFC 9112 §5.1: whitespace before the colon MUST get a 400",
    "acceptable-03": "RFC 9110 §5.1: a field name is a token; a control character is not",
    "bad-header-characters-12": "RFC 9110 §5.1: a field name is a token",
    "bad-header-characters-13": "RFC 9110 §5.1: a field name is a token",
    "bad-header-characters-14": "RFC 9110 §5.5: a control character in a value may be rejected",
    "bad-header-characters-15": "RFC 9110 §5.5: a control character in a value may be rejected",
    "more-compliant-tests-10": "RFC 9112 §7: chunked takes no parameters; `custom_param` without "
    "`=value` is not even parameter syntax",
    "rfc-compliant-11": "RFC 9112 §7: chunked takes no parameters",
    "rfc-compliant-13": "RFC 9112 §3.2: raw non-ASCII octets are not a valid request-target",
    "rfc-compliant-14": "RFC 9112 §3: an empty request-target is an invalid request line",
    "uri-specific-test-cases-02": "RFC 9112 §3: extra spaces make an invalid request line "
    "(a server SHOULD answer 400 rather than guess)",
    "uri-specific-test-cases-04": "RFC 9112 §3: a space in the target makes an invalid request "
    "line (a server SHOULD answer 400 rather than guess)",
}


def test_deliberate_rejections_name_real_cases() -> None:
    keys = {case.key for case in CASES}
    assert set(DELIBERATE_REJECTIONS) <= keys


def test_corpus_is_whole() -> None:
    # kept unchanged as data (ORIGIN.md): a file that stopped loading would silently shrink the
    # judge, so the counts are pinned
    assert len({case.file for case in CASES}) == 9
    assert Counter(case.tier for case in CASES) == {
        "Severe": 58,
        "Ambiguous": 57,
        "Compliant": 28,
        "Acceptable": 15,
    }


SELF_CHECK = Case(
    "self-check", 1, "judge", "Compliant", b"POST", b"/a?b=c", b"HTTP/1.1",
    ((b"X-Kept", b"v"), (b"Connection", b"x-hop"), (b"X-Hop", b"1"), (b"Content-Length", b"5")),
)  # fmt: skip
MUTATIONS = {
    "value changed": (b"X-Kept: v\r\n", b"X-Kept: w\r\n"),
    "header injected": (b"X-Kept: v\r\n", b"X-Kept: v\r\nX-Injected: 1\r\n"),
    "header dropped": (b"X-Kept: v\r\n", b""),
    "target changed": (b"/a?b=c", b"/a?b=d"),
    "method changed": (b"POST ", b"PUT "),
    "body changed": (b"xxxxx", b"xxxxy"),
    "request smuggled after it": (b"xxxxx", b"xxxxxGET /smuggled HTTP/1.1\r\n\r\n"),
    "version not evenflow's": (b"HTTP/1.1\r\n", b"HTTP/0.9\r\n"),
}


def _as_evenflow_forwards(raw: bytes) -> bytes:
    head, _, body = raw.partition(b"\r\n\r\n")
    head = head.replace(b"Connection: x-hop\r\nX-Hop: 1\r\n", b"")
    return head + b"\r\nvia: 1.1 evenflow\r\nx-request-id: 1\r\n\r\n" + body


def test_judge_takes_a_request_forwarded_intact() -> None:
    built = build_request(SELF_CHECK)
    forwarded = parse_forwarded(_as_evenflow_forwards(built.raw))
    assert not isinstance(forwarded, str), forwarded
    assert compare(SELF_CHECK, built, forwarded) == []


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_judge_notices_a_changed_request(mutation: str) -> None:
    # the comparison must be able to fail: each change evenflow could make is caught
    built = build_request(SELF_CHECK)
    old, new = MUTATIONS[mutation]
    forwarded = parse_forwarded(_as_evenflow_forwards(built.raw).replace(old, new, 1))
    assert isinstance(forwarded, str) or compare(SELF_CHECK, built, forwarded)


@pytest.fixture
def recorder(recorder_backend: BackendThread) -> Iterator[BackendThread]:
    recorder_backend.reset()
    yield recorder_backend


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_desync_case(case: Case, evenflow_proxy: Evenflow, recorder: BackendThread) -> None:
    built = build_request(case)
    with Client(evenflow_proxy.port) as client:
        send_error = client.send(built.raw)
        response = client.read_response(case.method == b"HEAD", RESPONSE_TIMEOUT_S)
        time.sleep(SETTLE_S)
        observed = Observed(case, built, send_error, response, recorder.snapshot())
        if case.key in DELIBERATE_REJECTIONS:
            problems = _rejected(observed)
            observed.notes.append(f"refused on purpose: {DELIBERATE_REJECTIONS[case.key]}")
        else:
            problems = JUDGES[case.tier](observed, client, recorder)
    assert not problems, observed.report(problems)
