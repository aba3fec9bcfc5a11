"""Judge: WebSockets through `python -m evenflow run`, with clients and a server nobody here wrote.

The backend is a `websockets` echo server (RFC 6455 over HTTP/1.1). Over HTTP/1.1 the client is
`websockets`' own; over HTTP/2 (RFC 8441 extended CONNECT, h2c here) the client is the h2
library driving the stream, with `websockets`' sans-IO protocol writing and reading the frames
inside it. Each exchanges 1,000 messages and closes cleanly; an HTTP/2 connection serves plain
requests on other streams while a WebSocket is open on one; a listener with `http2.websocket:
false` does not offer it; a backend that is no WebSocket server costs the client a 502. Last,
Debian's chromium (Playwright) opens its WebSocket as one more stream of the page's HTTP/2
connection over TLS, or, with the setting off, on a connection of its own.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
import trustme
import yaml
from lb_support import Evenflow, _script_backend, demo_backends, free_port, listener_config
from lb_support import running_evenflow as run_evenflow
from playwright import sync_api
from websockets.asyncio.client import connect
from websockets.frames import Opcode
from websockets.protocol import Protocol, Side

pytestmark = [pytest.mark.judge, pytest.mark.timeout(120)]

MESSAGES = 1000
IO_TIMEOUT_S = 10.0

ECHO_SERVER = r"""
import asyncio, sys
from websockets.asyncio.server import serve

NAME = sys.argv[1]


async def echo(ws):
    await ws.send(f"hello from {NAME} at {ws.request.path}")
    async for message in ws:
        await ws.send(message)


async def main():
    async with serve(echo, "127.0.0.1", 0, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        print("listening", NAME, "127.0.0.1:%d" % port, flush=True)
        await asyncio.Future()


asyncio.run(main())
"""


# A WebSocket server that misbehaves on request (by path): /raw/halfclose answers 101 and
# half-closes, /raw/noread answers 101 and stops reading, /raw/flood answers 101 and sends
# 64 MiB as fast as it may, /raw/decline answers 403 with a body
# larger than a stream's window; /raw/requests lists the paths it was asked for.
RAW_SERVER = r"""
import asyncio, base64, hashlib, sys

NAME = sys.argv[1]
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B87"
SEEN = []


class Raw(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""
        self.upgraded = False

    def data_received(self, data):
        if self.upgraded:
            return
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            path = lines[0].split()[1].decode()
            SEEN.append(path)
            fields = dict(line.lower().split(b": ", 1) for line in lines[1:])
            if path == "/raw/requests":
                self.answer(b"200 OK", "\n".join(SEEN).encode())
            elif path == "/raw/decline":
                self.answer(b"403 No", b"z" * 200000)
            else:
                key = fields[b"sec-websocket-key"]
                accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
                self.transport.write(
                    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
                    b"connection: upgrade\r\nsec-websocket-accept: %s\r\n\r\n" % accept
                )
                self.upgraded = True
                if path == "/raw/halfclose":
                    self.transport.write_eof()
                elif path == "/raw/flood":
                    asyncio.get_running_loop().create_task(self.flood(64 << 20))
                elif path == "/raw/noread":
                    self.transport.pause_reading()
                return

    async def flood(self, size):
        # as fast as the connection takes it, as a server streaming to its client would
        chunk = b"x" * 65536
        for _ in range(size // len(chunk)):
            if self.transport.is_closing():
                return
            self.transport.write(chunk)
            while self.transport.get_write_buffer_size() > 1 << 20:
                await asyncio.sleep(0.01)

    def answer(self, status, body):
        head = b"HTTP/1.1 %s\r\ncontent-length: %d\r\n\r\n" % (status, len(body))
        self.transport.write(head + body)

    def eof_received(self):
        return True  # keep writing after the client's half-close, as a WebSocket server may


async def main():
    server = await asyncio.get_running_loop().create_server(Raw, "127.0.0.1", 0)
    print("listening", NAME, "127.0.0.1:%d" % server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Future()


asyncio.run(main())
"""


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The echo server `ws`, the misbehaving `raw` and a demo backend `plain` (no WebSocket)."""
    workdir = tmp_path_factory.mktemp("websocket-backends")
    with (
        _script_backend(ECHO_SERVER, "ws", [], workdir) as ws,
        _script_backend(RAW_SERVER, "raw", [], workdir) as raw,
        demo_backends("plain", workdir=workdir) as plain,
    ):
        yield {"ws": ws, "raw": raw, **plain}


def config(backends: dict[str, str], **http2: Any) -> dict[str, Any]:
    """/plain to the demo backend, /raw to the misbehaving one, the rest to the echo server."""
    built = listener_config(
        {name: {"backends": [backends[name]]} for name in ("ws", "raw", "plain")},
        routes=[
            {"match": {"path_prefix": "/plain"}, "pool": "plain"},
            {"match": {"path_prefix": "/raw/"}, "pool": "raw"},
            {"pool": "ws"},
        ],
    )
    if http2:
        built["listeners"][0]["http2"] = http2
    built["admin"] = {"bind": f"127.0.0.1:{free_port()}"}
    return built


def backend_state(evenflow: Evenflow, pool: str = "ws") -> dict[str, Any]:
    """The backend of `pool` as the admin API describes it."""
    admin = yaml.safe_load(evenflow.config_path.read_text())["admin"]["bind"]
    with urllib.request.urlopen(f"http://{admin}/api/v1/pools/{pool}", timeout=5) as response:
        found = json.load(response)
    [backend] = found["backends"]
    return dict(backend)


def wait_in_flight(evenflow: Evenflow, expected: int, pool: str = "ws") -> None:
    deadline = time.monotonic() + IO_TIMEOUT_S
    while (found := backend_state(evenflow, pool)["in_flight"]) != expected:
        assert time.monotonic() < deadline, f"in_flight {found}, expected {expected}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def evenflow(
    backends: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Evenflow]:
    with run_evenflow(config(backends), tmp_path_factory.mktemp("websocket")) as running:
        yield running


# --- HTTP/1.1 ---------------------------------------------------------------------------------


def test_a_thousand_messages_over_http11(evenflow: Evenflow) -> None:
    async def talk() -> None:
        url = f"ws://127.0.0.1:{evenflow.port}/chat?room=1"
        async with connect(url, open_timeout=IO_TIMEOUT_S, ping_interval=None) as ws:
            hello = await asyncio.wait_for(ws.recv(), IO_TIMEOUT_S)
            assert hello == "hello from ws at /chat?room=1"
            for n in range(MESSAGES):
                await ws.send(f"message {n}")
                assert await asyncio.wait_for(ws.recv(), IO_TIMEOUT_S) == f"message {n}"
            payload = bytes(range(256)) * 300  # a binary message of 75 KiB, many reads
            await ws.send(payload)
            assert await asyncio.wait_for(ws.recv(), IO_TIMEOUT_S) == payload
        assert ws.close_code == 1000  # the close handshake went through both ways

    asyncio.run(talk())


# --- HTTP/2: RFC 8441 extended CONNECT ---------------------------------------------------------


class H2Client:
    """An h2c connection driven by the h2 library, blocking, with a timeout on every read."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.sock.sendall(self.h2.data_to_send())
        self.events: list[h2.events.Event] = []
        self.server_settings: dict[int, int] = {}
        self.until(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))

    def until(self, wanted: Any) -> h2.events.Event:
        """Read until an event matching `wanted` arrives; earlier ones stay in `events`."""
        while True:
            for index, event in enumerate(self.events):
                if wanted(event):
                    return self.events.pop(index)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("evenflow closed the connection")
            for event in self.h2.receive_data(data):
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    for code, setting in event.changed_settings.items():
                        self.server_settings[int(code)] = setting.new_value
                if isinstance(event, h2.events.DataReceived):
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                self.events.append(event)
            self.sock.sendall(self.h2.data_to_send())

    def request(self, headers: list[tuple[str, str]], end_stream: bool) -> int:
        stream_id: int = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, headers, end_stream=end_stream)
        self.sock.sendall(self.h2.data_to_send())
        return stream_id

    def get(self, path: str) -> int:
        return self.request(
            [(":method", "GET"), (":scheme", "http"), (":path", path), (":authority", "a")],
            end_stream=True,
        )

    def body(self, stream_id: int) -> bytes:
        """Every DATA of `stream_id` until it ends."""
        parts = []
        while piece := self.data(stream_id):
            parts.append(piece)
        return b"".join(parts)

    def response_head(self, stream_id: int) -> dict[bytes, bytes]:
        event = self.until(
            lambda e: isinstance(e, h2.events.ResponseReceived) and e.stream_id == stream_id
        )
        assert isinstance(event, h2.events.ResponseReceived)
        return dict(event.headers)

    def send(self, stream_id: int, data: bytes) -> None:
        """DATA in frames the peer admits, waiting for window updates when its window is spent."""
        view = memoryview(data)
        while view:
            window = self.h2.local_flow_control_window(stream_id)
            if window <= 0:
                self.until(lambda e: isinstance(e, h2.events.WindowUpdated))
                continue
            size = min(len(view), window, self.h2.max_outbound_frame_size)
            self.h2.send_data(stream_id, view[:size].tobytes())
            self.sock.sendall(self.h2.data_to_send())
            view = view[size:]

    def data(self, stream_id: int) -> bytes:
        """The next DATA of `stream_id` (b"" when the stream ended instead)."""
        event = self.until(
            lambda e: (
                isinstance(e, (h2.events.DataReceived, h2.events.StreamEnded))
                and e.stream_id == stream_id
            )
        )
        return event.data if isinstance(event, h2.events.DataReceived) else b""

    def close(self) -> None:
        self.sock.close()


def websocket_connect(client: H2Client, path: str = "/chat") -> int:
    return client.request(
        [
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "chat.example"),
            ("sec-websocket-version", "13"),
        ],
        end_stream=False,
    )


class StreamWebSocket:
    """RFC 6455 frames (websockets' sans-IO client side) carried by one HTTP/2 stream."""

    def __init__(self, client: H2Client, stream_id: int) -> None:
        self.client = client
        self.stream_id = stream_id
        self.ws = Protocol(Side.CLIENT)

    def flush(self) -> None:
        for data in self.ws.data_to_send():
            if data:
                self.client.send(self.stream_id, data)

    def send_text(self, text: str) -> None:
        self.ws.send_text(text.encode())
        self.flush()

    def recv(self) -> tuple[Opcode, bytes]:
        while True:
            for frame in self.ws.events_received():
                return frame.opcode, frame.data
            data = self.client.data(self.stream_id)
            if not data:
                raise ConnectionError("the stream ended")
            self.ws.receive_data(data)


def test_a_thousand_messages_over_http2(evenflow: Evenflow) -> None:
    client = H2Client(evenflow.port)
    try:
        # RFC 8441 §3: the server says it accepts extended CONNECT
        assert client.server_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1
        stream_id = websocket_connect(client, "/chat?room=2")
        head = client.response_head(stream_id)
        # the 101 became a 200 that keeps the stream open, without HTTP/1.1's handshake fields
        assert head[b":status"] == b"200", head
        for name in (b"upgrade", b"connection", b"sec-websocket-accept"):
            assert name not in head, head
        ws = StreamWebSocket(client, stream_id)
        assert ws.recv() == (Opcode.TEXT, b"hello from ws at /chat?room=2")
        wait_in_flight(evenflow, 1)  # an open WebSocket is one long request (least_conn)
        for n in range(MESSAGES):
            ws.send_text(f"message {n}")
            assert ws.recv() == (Opcode.TEXT, f"message {n}".encode())
        # 600 KiB each way: more than a stream's flow-control window (256 KiB), so both
        # directions only finish if evenflow acknowledges what it relays and waits for credit
        payload = bytes(range(256)) * 2400
        ws.ws.send_binary(payload)
        ws.flush()
        assert ws.recv() == (Opcode.BINARY, payload)
        ws.ws.send_close(1000, "done")
        ws.flush()
        opcode, _ = ws.recv()
        assert opcode is Opcode.CLOSE  # the server's answer to our close, through evenflow
        # the server closes its TCP connection; evenflow ends the stream (END_STREAM)
        assert client.data(stream_id) == b""
        client.h2.end_stream(stream_id)  # and our side: the WebSocket is over both ways
        client.sock.sendall(client.h2.data_to_send())
        wait_in_flight(evenflow, 0)
    finally:
        client.close()


def test_other_streams_are_served_while_a_websocket_is_open(evenflow: Evenflow) -> None:
    client = H2Client(evenflow.port)
    try:
        first = websocket_connect(client)
        assert client.response_head(first)[b":status"] == b"200"
        ws = StreamWebSocket(client, first)
        assert ws.recv()[1].startswith(b"hello from ws")
        get = client.get("/plain/x")
        assert client.response_head(get)[b":status"] == b"200"
        assert client.data(get) == b"backend plain: GET /plain/x\n"
        second = websocket_connect(client, "/chat?second")
        assert client.response_head(second)[b":status"] == b"200"
        other = StreamWebSocket(client, second)
        assert other.recv()[1] == b"hello from ws at /chat?second"
        ws.send_text("still here")
        other.send_text("me too")
        assert ws.recv()[1] == b"still here" and other.recv()[1] == b"me too"
    finally:
        client.close()


def test_a_reset_websocket_stream_releases_its_backend(evenflow: Evenflow) -> None:
    client = H2Client(evenflow.port)
    try:
        stream_id = websocket_connect(client)
        assert client.response_head(stream_id)[b":status"] == b"200"
        assert StreamWebSocket(client, stream_id).recv()[1].startswith(b"hello from ws")
        wait_in_flight(evenflow, 1)
        client.h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        client.sock.sendall(client.h2.data_to_send())
        wait_in_flight(evenflow, 0)  # the backend connection is closed, nothing leaks
        get = client.get("/plain/y")
        assert client.response_head(get)[b":status"] == b"200"  # the connection lives on
    finally:
        client.close()


@pytest.fixture(scope="module")
def tight(backends: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Evenflow]:
    """One stream at a time, a 64 KiB window, a 1 s idle timeout: a stream or a window credit
    that leaks shows at once."""
    built = config(backends, max_concurrent_streams=1, initial_window_bytes=65535)
    built["listeners"][0]["timeouts"] = {"idle": "1s"}
    with run_evenflow(built, tmp_path_factory.mktemp("websocket-tight")) as running:
        yield running


def test_a_websocket_the_backend_half_closed_is_reset_when_it_times_out(tight: Evenflow) -> None:
    client = H2Client(tight.port)
    try:
        stream_id = websocket_connect(client, "/raw/halfclose")
        assert client.response_head(stream_id)[b":status"] == b"200"
        assert client.data(stream_id) == b""  # the backend's half-close: END_STREAM
        # our side stays open; the tunnel's idle timeout ends it: RFC 8441 says CANCEL, and
        # h2 must forget the stream, or the one stream this connection may have stays taken
        reset = client.until(
            lambda e: isinstance(e, h2.events.StreamReset) and e.stream_id == stream_id
        )
        assert isinstance(reset, h2.events.StreamReset)
        assert reset.error_code == h2.errors.ErrorCodes.CANCEL
        wait_in_flight(tight, 0, "raw")
        get = client.get("/plain/after")
        assert client.response_head(get)[b":status"] == b"200"
    finally:
        client.close()


def test_window_credit_held_by_a_stalled_websocket_comes_back_when_it_ends(
    tight: Evenflow,
) -> None:
    client = H2Client(tight.port)
    try:
        stream_id = websocket_connect(client, "/raw/noread")
        assert client.response_head(stream_id)[b":status"] == b"200"
        # the backend reads nothing: evenflow stops acknowledging, the client's windows run dry
        client.sock.settimeout(1.0)
        with pytest.raises(TimeoutError):
            client.send(stream_id, b"x" * 8_000_000)
        client.sock.settimeout(IO_TIMEOUT_S)
        client.h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        client.sock.sendall(client.h2.data_to_send())
        # what was never acknowledged is credited back: a 200 kB upload on the same
        # connection (three times the stream window) goes through
        post = client.request(
            [(":method", "POST"), (":scheme", "http"), (":path", "/plain/up"), (":authority", "a")],
            end_stream=False,
        )
        client.send(post, b"y" * 200_000)
        client.h2.end_stream(post)
        client.sock.sendall(client.h2.data_to_send())
        assert client.response_head(post)[b":status"] == b"200"
        wait_in_flight(tight, 0, "raw")
    finally:
        client.close()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_a_websocket_opened_while_the_client_is_not_reading_holds_its_backend_back(
    evenflow: Evenflow,
) -> None:
    """The client connection is write-paused (a download it does not read) when a WebSocket
    whose backend floods opens on it, with no window for that stream: the backend must be
    held back from the start, not read into evenflow's memory."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", evenflow.port))
    sock.settimeout(IO_TIMEOUT_S)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}
    )
    conn.initiate_connection()
    conn.increment_flow_control_window(2**30)
    try:
        sock.sendall(conn.data_to_send())
        while not conn.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL):
            conn.receive_data(sock.recv(65536))
            sock.sendall(conn.data_to_send())
        download = [(":method", "GET"), (":scheme", "http"), (":authority", "a")]
        conn.send_headers(1, [*download, (":path", "/plain/dl?size=300000000")], end_stream=True)
        conn.increment_flow_control_window(2**30, stream_id=1)
        sock.sendall(conn.data_to_send())
        time.sleep(2)  # evenflow fills the socket we do not read: it stops writing to us
        before = rss_mib(evenflow.pid)
        conn.send_headers(
            3,
            [
                (":method", "CONNECT"),
                (":protocol", "websocket"),
                (":scheme", "http"),
                (":path", "/raw/flood"),
                (":authority", "a"),
                ("sec-websocket-version", "13"),
            ],
        )
        sock.sendall(conn.data_to_send())
        time.sleep(4)  # unchecked, the 64 MiB would be in evenflow's memory by now
        grown = rss_mib(evenflow.pid) - before
        assert grown < 16, f"evenflow grew by {grown:.0f} MiB"
    finally:
        sock.close()
    wait_in_flight(evenflow, 0, "raw")


def test_headers_on_an_open_websocket_stream_reset_it(evenflow: Evenflow) -> None:
    client = H2Client(evenflow.port)
    try:
        stream_id = websocket_connect(client)
        assert client.response_head(stream_id)[b":status"] == b"200"
        assert StreamWebSocket(client, stream_id).recv()[1].startswith(b"hello from ws")
        # RFC 9113 §8.5: only DATA and stream management after the CONNECT's HEADERS
        client.h2.send_headers(stream_id, [("x-trailer", "1")], end_stream=True)
        client.sock.sendall(client.h2.data_to_send())
        reset = client.until(
            lambda e: isinstance(e, h2.events.StreamReset) and e.stream_id == stream_id
        )
        assert isinstance(reset, h2.events.StreamReset)
        assert reset.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
        wait_in_flight(evenflow, 0)
    finally:
        client.close()


def test_a_declined_websockets_bytes_never_reach_a_backend_as_a_request(
    evenflow: Evenflow,
) -> None:
    client = H2Client(evenflow.port)
    try:
        stream_id = websocket_connect(client, "/raw/decline")
        # sent before the answer, and shaped like a request: it is WebSocket data all the same
        client.send(stream_id, b"GET /raw/smuggled HTTP/1.1\r\nhost: a\r\n\r\n")
        assert client.response_head(stream_id)[b":status"] == b"403"
        assert len(client.body(stream_id)) == 200000
        listing = client.get("/raw/requests")
        assert client.response_head(listing)[b":status"] == b"200"
        seen = client.body(listing).decode().split("\n")
        assert "/raw/decline" in seen and "/raw/smuggled" not in seen, seen
    finally:
        client.close()


def test_a_backend_that_is_no_websocket_server_answers_502(
    backends: dict[str, str], tmp_path: Path
) -> None:
    built = config(backends)
    access_log = tmp_path / "access.log"
    built["access_log"] = {"path": str(access_log)}
    with run_evenflow(built, tmp_path) as running:
        client = H2Client(running.port)
        try:
            stream_id = websocket_connect(client, "/plain/chat")  # the demo backend says 200
            assert client.response_head(stream_id)[b":status"] == b"502"
        finally:
            client.close()
        # the access log says what the client got, and why
        deadline = time.monotonic() + IO_TIMEOUT_S
        while not access_log.exists() or not access_log.read_text():
            assert time.monotonic() < deadline, "no access log line"
            time.sleep(0.05)
    [line] = [json.loads(text) for text in access_log.read_text().splitlines()]
    assert (line["path"], line["status"]) == ("/plain/chat", 502)
    assert "answered the WebSocket handshake with 200" in line["failures"][0]


def test_websocket_false_does_not_offer_extended_connect(
    backends: dict[str, str], tmp_path: Path
) -> None:
    with run_evenflow(config(backends, websocket=False), tmp_path) as running:
        client = H2Client(running.port)
        try:
            settings = client.server_settings
            assert settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL, 0) == 0
            stream_id = websocket_connect(client)
            reset = client.until(
                lambda e: isinstance(e, h2.events.StreamReset) and e.stream_id == stream_id
            )
            assert isinstance(reset, h2.events.StreamReset)
            assert reset.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
        finally:
            client.close()


# --- a real browser ---------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
BROWSER_ECHO = """(url) => new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const got = [];
    ws.onmessage = (event) => {
        got.push(event.data);
        if (got.length === 1) for (let n = 0; n < 100; n++) ws.send('m' + n);
        if (got.length === 101) { ws.close(1000); }
    };
    ws.onclose = (event) => resolve({got: got, code: event.code});
    ws.onerror = () => reject(new Error('websocket error after ' + got.length));
})"""


def http2_streams(admin: str) -> float:
    with urllib.request.urlopen(f"http://{admin}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith('evenflow_http2_streams_total{listener="web",outcome="received"}'):
                return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize("over_http2", [True, False], ids=["rfc8441", "separate-http11"])
def test_chromium_opens_its_websocket_on_the_pages_http2_connection(
    backends: dict[str, str], tmp_path: Path, over_http2: bool
) -> None:
    """Chromium, over TLS with ALPN h2: with extended CONNECT offered the WebSocket is one more
    stream of the page's connection; without, chromium opens an HTTP/1.1 connection for it.
    Either way 100 messages echo and the close is clean."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test-tools.sh installs Debian's chromium")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.private_key_pem.write_to_path(str(key))
    for index, pem in enumerate(leaf.cert_chain_pems):
        pem.write_to_path(str(cert), append=index > 0)
    built = config(backends, websocket=over_http2)
    built["listeners"][0]["tls"] = {"certificates": [{"cert": str(cert), "key": str(key)}]}
    admin = built["admin"]["bind"]
    with (
        run_evenflow(built, tmp_path) as running,
        sync_api.sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(ignore_https_errors=True)
            page.route("**/favicon.ico", lambda route: route.abort())  # no stray stream
            origin = f"https://127.0.0.1:{running.port}"
            page.goto(f"{origin}/plain/page")
            assert "backend plain: GET /plain/page" in page.content()
            before = http2_streams(admin)
            assert before == 1  # the page came over HTTP/2
            result = page.evaluate(BROWSER_ECHO, f"wss://127.0.0.1:{running.port}/chat?browser")
            after = http2_streams(admin)
        finally:
            browser.close()
    assert result["got"][0] == "hello from ws at /chat?browser"
    assert result["got"][1:] == [f"m{n}" for n in range(100)]
    assert result["code"] == 1000
    # one more stream on the page's connection, or none (a separate HTTP/1.1 connection)
    assert after == before + (1 if over_http2 else 0)
