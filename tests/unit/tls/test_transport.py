"""evenflow's server-side TLS layer without sockets: a fake TCP transport and loop on one side, a
real client SSLObject over memory BIOs on the other, and a protocol that records what the
application saw."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from evenflow.config.tls import ListenerTls
from evenflow.tls.server import TlsListener
from evenflow.tls.transport import TlsServerProtocol, TlsTransport

HANDSHAKE_TIMEOUT_S = 7.0


class FakeHandle:
    def __init__(self, callback: Callable[[], object]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """call_later and call_soon recorded, run when the test says so."""

    def __init__(self) -> None:
        self.timers: list[tuple[float, FakeHandle]] = []
        self.soon: list[Callable[[], object]] = []

    def call_later(self, delay: float, callback: Callable[[], object]) -> FakeHandle:
        handle = FakeHandle(callback)
        self.timers.append((delay, handle))
        return handle

    def call_soon(self, callback: Callable[[], object]) -> FakeHandle:
        self.soon.append(callback)
        return FakeHandle(callback)

    def run_soon(self) -> None:
        while self.soon:
            self.soon.pop(0)()


class FakeTcp:
    """The TCP transport: what the TLS layer wrote, and what it asked for."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.reading = True
        self.buffer_size = 0
        self.limits: tuple[int | None, int | None] = (None, None)
        self.extra = {"peername": ("192.0.2.7", 50123), "socket": "the socket"}

    def write(self, data: bytes) -> None:
        assert not self.closed and not self.aborted, "written after close"
        self.writes.append(bytes(data))

    def take(self) -> bytes:
        out = b"".join(self.writes)
        self.writes.clear()
        return out

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def get_write_buffer_size(self) -> int:
        return self.buffer_size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (1, 2)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.limits = (high, low)


class App(asyncio.Protocol):
    """The application: records its callbacks; `on_data` / `on_made` act inside them."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.transport: Any = None
        self.on_made: Callable[[App], None] | None = None
        self.on_data: Callable[[App, bytes], None] | None = None
        self.keep_open_at_eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.events.append(("made",))
        if self.on_made is not None:
            self.on_made(self)

    def data_received(self, data: bytes) -> None:
        assert self.transport.is_reading(), "data while paused"
        self.events.append(("data", data))
        if self.on_data is not None:
            self.on_data(self, data)

    def eof_received(self) -> bool:
        self.events.append(("eof",))
        return self.keep_open_at_eof

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(("lost", exc))

    def pause_writing(self) -> None:
        self.events.append(("pause_writing",))

    def resume_writing(self) -> None:
        self.events.append(("resume_writing",))

    @property
    def data(self) -> bytes:
        return b"".join(event[1] for event in self.events if event[0] == "data")

    def names(self) -> list[str]:
        return [event[0] for event in self.events]


class Pki:
    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.leaf = self.ca.issue_cert("example.test")

    def server_context(self, **settings: Any) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.options |= ssl.OP_NO_RENEGOTIATION
        self.leaf.configure_cert(context)
        context.set_alpn_protocols(["h2", "http/1.1"])
        for name, value in settings.items():
            setattr(context, name, value)
        return context

    def client_context(self, **settings: Any) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ca.configure_trust(context)
        context.set_alpn_protocols(["http/1.1"])
        for name, value in settings.items():
            setattr(context, name, value)
        return context


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


class Link:
    """A client SSLObject and evenflow's TLS layer, joined by hand."""

    def __init__(
        self,
        server_context: ssl.SSLContext,
        client_context: ssl.SSLContext,
        server_hostname: str = "example.test",
    ) -> None:
        self.loop = FakeLoop()
        self.tcp = FakeTcp()
        self.apps: list[App] = []
        self.on_app: Callable[[App], None] | None = None
        loop: Any = self.loop
        self.tls = TlsServerProtocol(loop, server_context, self._make_app, HANDSHAKE_TIMEOUT_S)
        self.tls.connection_made(self.tcp)  # type: ignore[arg-type]
        self.client_in = ssl.MemoryBIO()
        self.client_out = ssl.MemoryBIO()
        self.client = client_context.wrap_bio(
            self.client_in, self.client_out, server_hostname=server_hostname
        )

    def _make_app(self) -> App:
        app = App()
        if self.on_app is not None:
            self.on_app(app)
        self.apps.append(app)
        return app

    @property
    def app(self) -> App:
        assert len(self.apps) == 1
        return self.apps[0]

    def to_server(self, data: bytes | None = None) -> None:
        """What the client wrote (or `data`) arrives at the server in one piece."""
        self.tls.data_received(self.client_out.read() if data is None else data)

    def to_client(self) -> None:
        self.client_in.write(self.tcp.take())

    def handshake(self) -> None:
        for _ in range(5):
            try:
                self.client.do_handshake()
            except ssl.SSLWantReadError:
                self.to_server()
                self.to_client()
                continue
            self.to_server()  # the client's Finished
            self.to_client()  # session tickets
            return
        raise AssertionError("no handshake after 5 flights")

    def handshake_sending(self, first: bytes) -> None:
        """A TLS 1.3 handshake whose last client flight carries `first`: the Finished and the
        first application data reach the server in one segment."""
        with pytest.raises(ssl.SSLWantReadError):
            self.client.do_handshake()
        self.to_server()
        self.to_client()
        self.client.do_handshake()
        self.client.write(first)
        self.to_server()

    def send(self, *records: bytes) -> bytes:
        """The client's ciphertext for `records`, one TLS record each (not delivered)."""
        for record in records:
            self.client.write(record)
        return self.client_out.read()

    def client_reads(self) -> bytes:
        self.to_client()
        got = []
        while True:
            try:
                chunk = self.client.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # (after the client's own close_notify)
                chunk = b""
            if not chunk:
                got.append(b"<close_notify>")
                break
            got.append(chunk)
        return b"".join(got)


@pytest.fixture
def link(pki: Pki) -> Link:
    return Link(pki.server_context(), pki.client_context())


def test_the_app_is_made_after_the_handshake_with_a_tls_transport(link: Link) -> None:
    timer_delay, timer = link.loop.timers[0]
    assert timer_delay == HANDSHAKE_TIMEOUT_S
    with pytest.raises(ssl.SSLWantReadError):
        link.client.do_handshake()
    link.to_server()  # ClientHello
    assert link.apps == []  # not before the handshake is done
    assert link.tcp.writes  # ServerHello and the rest of our flight
    link.to_client()
    link.client.do_handshake()
    link.to_server()  # Finished
    assert link.app.names() == ["made"]
    assert isinstance(link.app.transport, TlsTransport)
    assert timer.cancelled
    assert link.app.transport.get_protocol() is link.app
    assert link.app.transport.is_reading() and not link.app.transport.is_closing()


def test_extra_info_answers_tls_then_falls_through_to_tcp(pki: Pki) -> None:
    server_context = pki.server_context()
    link = Link(server_context, pki.client_context())
    link.handshake()
    transport = link.app.transport
    ssl_object = transport.get_extra_info("ssl_object")
    assert isinstance(ssl_object, ssl.SSLObject) and ssl_object.server_side
    assert ssl_object.selected_alpn_protocol() == "http/1.1"
    assert transport.get_extra_info("cipher") == ssl_object.cipher()
    assert transport.get_extra_info("compression") is None
    assert transport.get_extra_info("peercert") is None  # no client certificate asked for
    assert transport.get_extra_info("sslcontext") is server_context
    assert transport.get_extra_info("peername") == ("192.0.2.7", 50123)
    assert transport.get_extra_info("socket") == "the socket"
    assert transport.get_extra_info("nothing", "default") == "default"


def test_a_client_certificate_is_verified_and_shown(pki: Pki) -> None:
    server_context = pki.server_context(verify_mode=ssl.CERT_REQUIRED)
    pki.ca.configure_trust(server_context)
    client_context = pki.client_context()
    pki.ca.issue_cert("client.example.test").configure_cert(client_context)
    link = Link(server_context, client_context)
    link.handshake()
    peercert = link.app.transport.get_extra_info("peercert")
    assert peercert["subjectAltName"] == (("DNS", "client.example.test"),)
    assert link.app.transport.get_extra_info("ssl_object").getpeercert() == peercert


def test_sni_picks_the_certificate_through_the_listeners_callback(tmp_path: Any) -> None:
    ca = trustme.CA()
    paths = []
    for name in ("default.test", "api.example.com"):
        leaf = ca.issue_cert(name)
        cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        paths.append({"cert": str(cert), "key": str(key)})
    listener = TlsListener("web", ListenerTls.model_validate({"certificates": paths}))
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client_context)
    link = Link(listener.context, client_context, server_hostname="api.example.com")
    link.handshake()  # the client checks the name: the default certificate would fail
    served = link.client.getpeercert()
    assert served is not None and served["subjectAltName"] == (("DNS", "api.example.com"),)


def test_data_both_ways_one_tcp_write_per_write(link: Link) -> None:
    link.handshake()
    link.to_server(link.send(b"GET / HTTP/1.1\r\n\r\n"))
    assert link.app.events[1:] == [("data", b"GET / HTTP/1.1\r\n\r\n")]
    link.app.transport.write(b"HTTP/1.1 200 OK\r\n")
    assert len(link.tcp.writes) == 1
    link.app.transport.writelines([b"content-length: 2\r\n", b"\r\n", b"ok"])
    assert len(link.tcp.writes) == 2
    link.app.transport.write(b"")  # nothing to send, nothing sent
    assert len(link.tcp.writes) == 2
    assert link.client_reads() == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def test_a_record_split_across_reads_arrives_once_whole(link: Link) -> None:
    link.handshake()
    ciphertext = link.send(b"x" * 1000)
    for i in range(len(ciphertext) - 1):  # header and body byte by byte
        link.to_server(ciphertext[i : i + 1])
    assert link.app.names() == ["made"]
    link.to_server(ciphertext[-1:])
    assert link.app.events[1:] == [("data", b"x" * 1000)]


def test_records_cut_anywhere_lose_and_reorder_nothing(link: Link) -> None:
    link.handshake()
    for cut in (1, 5, 6, 27, 28, 29, 60):
        del link.app.events[1:]
        ciphertext = link.send(b"first;", b"second;", b"third")
        link.to_server(ciphertext[:cut])
        link.to_server(ciphertext[cut:])
        assert link.app.data == b"first;second;third", cut
        assert len(link.app.events) - 1 <= 2, cut  # at most one call per read


def test_a_full_record_cut_in_two_then_more_records(link: Link) -> None:
    # the second read holds less ciphertext than the plaintext OpenSSL has buffered
    link.handshake()
    record = bytes(range(256)) * 64  # 16 KiB: one whole record
    ciphertext = link.send(record, b"next")
    link.to_server(ciphertext[:100])
    link.to_server(ciphertext[100:])
    assert link.app.events[1:] == [("data", record + b"next")]


@settings(max_examples=60, deadline=None)
@given(
    records=st.lists(st.integers(min_value=1, max_value=40000), min_size=1, max_size=5),
    cuts=st.lists(st.floats(min_value=0, max_value=1), max_size=8),
    pauses=st.lists(st.booleans(), min_size=1, max_size=10),
)
def test_whatever_the_cuts_and_pauses_the_app_gets_every_byte_once_in_order(
    pki: Pki, records: list[int], cuts: list[float], pauses: list[bool]
) -> None:
    link = Link(pki.server_context(), pki.client_context())
    link.handshake()
    app = link.app
    turns = iter(pauses * 20)
    app.on_data = lambda app, data: app.transport.pause_reading() if next(turns, False) else None
    payloads = [bytes([n % 251]) * n for n in records]
    ciphertext = link.send(*payloads)  # (one of over 16 KiB is several records)
    edges = sorted({int(cut * len(ciphertext)) for cut in cuts} | {0, len(ciphertext)})
    for start, end in zip(edges, edges[1:], strict=False):
        link.to_server(ciphertext[start:end])  # (the fake TCP delivers even while paused)
        if not app.transport.is_reading() and next(turns, True):
            app.transport.resume_reading()
            link.loop.run_soon()
    while not app.transport.is_reading():
        app.transport.resume_reading()
        link.loop.run_soon()
    assert app.data == b"".join(payloads)


def test_many_records_in_one_read_reach_the_app_in_one_call(link: Link) -> None:
    link.handshake()
    big = bytes(range(256)) * 200  # 51200 bytes: four records of at most 16 KiB
    link.to_server(link.send(b"a", b"b", b"c", big))
    assert link.app.events[1:] == [("data", b"abc" + big)]


def test_pause_keeps_what_arrived_and_resume_delivers_it_in_order(link: Link) -> None:
    link.handshake()
    app = link.app

    def pause_once(app: App, data: bytes) -> None:
        app.on_data = None
        app.transport.pause_reading()

    app.on_data = pause_once
    link.to_server(link.send(b"one;"))
    assert link.tcp.reading is False and app.transport.is_reading() is False
    # a TCP transport may still deliver what it had read: it waits, undecrypted
    link.to_server(link.send(b"two;", b"three;"))
    assert app.data == b"one;"
    app.transport.resume_reading()
    assert link.tcp.reading is True
    assert app.data == b"one;"  # not from inside resume_reading: soon after
    link.to_server(link.send(b"four;"))  # what comes next is read after what waited
    link.loop.run_soon()
    assert app.data == b"one;two;three;four;"


def test_a_request_with_the_finished_waits_when_the_app_pauses_at_once(pki: Pki) -> None:
    link = Link(pki.server_context(), pki.client_context())
    link.on_app = lambda app: setattr(app, "on_made", lambda a: a.transport.pause_reading())
    link.handshake_sending(b"GET / HTTP/1.1\r\n\r\n")
    assert link.app.names() == ["made"]
    link.app.transport.resume_reading()
    link.loop.run_soon()
    assert link.app.data == b"GET / HTTP/1.1\r\n\r\n"


def test_close_notify_from_the_client(link: Link) -> None:
    link.handshake()
    with pytest.raises(ssl.SSLWantReadError):
        link.client.unwrap()
    link.to_server()
    # the app hears the end, then we answer with our close_notify and close
    assert link.app.names() == ["made", "eof"]
    assert link.tcp.closed and link.app.transport.is_closing()
    assert link.client_reads() == b"<close_notify>"
    link.tls.connection_lost(None)
    assert link.app.events[-1] == ("lost", None)


def test_data_then_close_notify_in_one_read(link: Link) -> None:
    link.handshake()
    link.client.write(b"bye")
    with pytest.raises(ssl.SSLWantReadError):
        link.client.unwrap()
    link.to_server()
    assert link.app.events[1:] == [("data", b"bye"), ("eof",)]


def test_an_app_that_keeps_the_connection_at_eof_can_still_write(link: Link) -> None:
    link.handshake()
    link.app.keep_open_at_eof = True
    with pytest.raises(ssl.SSLWantReadError):
        link.client.unwrap()
    link.to_server()
    assert link.app.names() == ["made", "eof"] and not link.tcp.closed
    link.to_server(b"\x17\x03\x03\x00\x05junk")  # after close_notify: not data
    link.app.transport.write(b"the answer")
    link.app.transport.close()
    assert link.client_reads() == b"the answer<close_notify>"
    assert link.tcp.closed


def test_close_sends_close_notify_then_closes_tcp(link: Link) -> None:
    link.handshake()
    transport = link.app.transport
    transport.write(b"response")
    transport.close()
    assert transport.is_closing() and not transport.is_reading()
    assert link.tcp.closed and not link.tcp.aborted
    transport.write(b"dropped")  # after close, as on TCP: nothing is sent
    transport.close()  # twice is once
    assert link.client_reads() == b"response<close_notify>"
    link.to_server(link.send(b"late"))  # the client was still talking: ignored
    assert link.app.names() == ["made"]
    link.tls.connection_lost(None)
    link.tls.connection_lost(None)
    assert link.app.names() == ["made", "lost"]


def test_a_fin_without_close_notify_is_an_end_of_input(link: Link) -> None:
    link.handshake()
    link.to_server(link.send(b"partial"))
    assert link.tls.eof_received() is True  # the TLS layer closes TCP, after close_notify
    assert link.app.events[1:] == [("data", b"partial"), ("eof",)]
    assert link.tcp.closed


def test_a_fin_while_paused_is_told_after_the_data_that_waited(link: Link) -> None:
    link.handshake()
    link.app.transport.pause_reading()
    link.to_server(link.send(b"waiting"))
    link.tls.eof_received()
    assert link.app.names() == ["made"]
    link.app.transport.resume_reading()
    assert link.tcp.reading is False  # (nothing more can come)
    link.loop.run_soon()
    assert link.app.events[1:] == [("data", b"waiting"), ("eof",)]


def test_abort_at_once_and_connection_lost_once_with_its_exception(link: Link) -> None:
    link.handshake()
    link.app.transport.abort()
    assert link.tcp.aborted and link.app.transport.is_closing()
    error = ConnectionResetError("reset by peer")
    link.tls.connection_lost(error)
    link.tls.connection_lost(None)
    assert link.app.events[1:] == [("lost", error)]
    assert link.app.transport.get_protocol() is None


def test_a_bad_record_aborts_and_the_app_learns_why(link: Link, caplog: Any) -> None:
    link.handshake()
    caplog.set_level(logging.DEBUG, "evenflow.tls.transport")
    link.to_server(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)  # application data that fails its MAC
    assert link.tcp.aborted
    link.tls.connection_lost(None)
    assert link.app.names() == ["made", "lost"]
    assert isinstance(link.app.events[-1][1], ssl.SSLError)
    assert all(record.levelno == logging.DEBUG for record in caplog.records)
    assert "192.0.2.7" in caplog.text


def test_a_failed_handshake_closes_quietly_and_makes_no_app(pki: Pki, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, "evenflow.tls.transport")
    stranger = trustme.CA()  # the client trusts another CA
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    stranger.configure_trust(client_context)
    link = Link(pki.server_context(), client_context)
    with pytest.raises(ssl.SSLCertVerificationError):
        link.handshake()
    link.to_server()  # the client's alert
    assert link.tcp.closed and link.apps == []
    assert link.loop.timers[0][1].cancelled is False  # (the TCP close ends it: connection_lost)
    link.tls.connection_lost(None)
    assert link.loop.timers[0][1].cancelled
    assert [record.levelno for record in caplog.records] == [logging.DEBUG] * len(caplog.records)
    assert "TLSV1_ALERT_UNKNOWN_CA" in caplog.text or "unknown ca" in caplog.text.lower()
    assert not any(record.exc_info for record in caplog.records)


def test_plain_http_on_a_tls_port_fails_the_handshake(link: Link) -> None:
    link.to_server(b"GET / HTTP/1.1\r\nhost: example.test\r\n\r\n")
    assert link.tcp.closed and link.apps == []


def test_a_client_without_a_required_certificate_is_refused(pki: Pki) -> None:
    server_context = pki.server_context(verify_mode=ssl.CERT_REQUIRED)
    pki.ca.configure_trust(server_context)
    link = Link(server_context, pki.client_context())
    with pytest.raises(ssl.SSLError):  # TLS 1.3: the client hears it after its Finished
        link.handshake()
        link.client_reads()
    assert link.tcp.closed and link.apps == []


def test_the_handshake_timeout_aborts(link: Link) -> None:
    with pytest.raises(ssl.SSLWantReadError):
        link.client.do_handshake()
    link.to_server()  # a ClientHello, then nothing
    delay, timer = link.loop.timers[0]
    timer.callback()
    assert link.tcp.aborted and link.apps == []
    link.tls.connection_lost(None)


def test_a_fin_during_the_handshake_closes(link: Link) -> None:
    link.tls.eof_received()
    assert link.tcp.closed and link.apps == []


def test_flow_control_passes_through(link: Link) -> None:
    link.handshake()
    transport = link.app.transport
    link.tls.pause_writing()
    link.tls.resume_writing()
    assert link.app.names() == ["made", "pause_writing", "resume_writing"]
    link.tcp.buffer_size = 12345
    assert transport.get_write_buffer_size() == 12345
    assert transport.get_write_buffer_limits() == (1, 2)
    transport.set_write_buffer_limits(high=100, low=10)
    assert link.tcp.limits == (100, 10)
    assert not transport.can_write_eof()
    with pytest.raises(NotImplementedError):
        transport.write_eof()


def test_a_tcp_buffer_full_during_the_handshake_is_told_after_connection_made(link: Link) -> None:
    link.tls.pause_writing()  # before there is an app
    link.handshake()
    assert link.app.names() == ["made", "pause_writing"]


def test_set_protocol_hands_the_connection_over(link: Link) -> None:
    successor = App()

    def hand_over(app: App) -> None:  # as HTTP/1.1 does when ALPN chose h2
        app.transport.set_protocol(successor)
        successor.connection_made(app.transport)

    link.on_app = lambda app: setattr(app, "on_made", hand_over)
    link.handshake_sending(b"PRI * HTTP/2.0")
    assert link.app.names() == ["made"]
    assert successor.events == [("made",), ("data", b"PRI * HTTP/2.0")]
    link.tls.connection_lost(None)
    assert successor.names() == ["made", "data", "lost"]


def test_the_app_closing_in_connection_made_reads_nothing(pki: Pki) -> None:
    link = Link(pki.server_context(), pki.client_context())
    link.on_app = lambda app: setattr(app, "on_made", lambda a: a.transport.close())
    link.handshake_sending(b"GET / HTTP/1.1\r\n\r\n")
    assert link.app.names() == ["made"] and link.tcp.closed


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_both_versions(pki: Pki, version: ssl.TLSVersion) -> None:
    client_context = pki.client_context(maximum_version=version)
    link = Link(pki.server_context(), client_context)
    link.handshake()
    link.to_server(link.send(b"hello"))
    link.app.transport.write(b"world")
    assert link.app.data == b"hello" and link.client_reads() == b"world"
    assert (
        link.client.version()
        == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    )
