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


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The echo server `ws` and a demo backend `plain` (no WebSocket server)."""
    workdir = tmp_path_factory.mktemp("websocket-backends")
    with (
        _script_backend(ECHO_SERVER, "ws", [], workdir) as ws,
        demo_backends("plain", workdir=workdir) as plain,
    ):
        yield {"ws": ws, **plain}


def config(backends: dict[str, str], **http2: Any) -> dict[str, Any]:
    """/chat to the echo server, /plain to the demo backend."""
    built = listener_config(
        {"ws": {"backends": [backends["ws"]]}, "plain": {"backends": [backends["plain"]]}},
        routes=[{"match": {"path_prefix": "/plain"}, "pool": "plain"}, {"pool": "ws"}],
    )
    if http2:
        built["listeners"][0]["http2"] = http2
    built["admin"] = {"bind": f"127.0.0.1:{free_port()}"}
    return built


def echo_backend_state(evenflow: Evenflow) -> dict[str, Any]:
    """The echo server's backend as the admin API describes it."""
    admin = yaml.safe_load(evenflow.config_path.read_text())["admin"]["bind"]
    with urllib.request.urlopen(f"http://{admin}/api/v1/pools/ws", timeout=5) as response:
        pool = json.load(response)
    [backend] = pool["backends"]
    return dict(backend)


def wait_in_flight(evenflow: Evenflow, expected: int) -> None:
    deadline = time.monotonic() + IO_TIMEOUT_S
    while (found := echo_backend_state(evenflow)["in_flight"]) != expected:
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
        get = client.request(
            [(":method", "GET"), (":scheme", "http"), (":path", "/plain/x"), (":authority", "a")],
            end_stream=True,
        )
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
        get = client.request(
            [(":method", "GET"), (":scheme", "http"), (":path", "/plain/y"), (":authority", "a")],
            end_stream=True,
        )
        assert client.response_head(get)[b":status"] == b"200"  # the connection lives on
    finally:
        client.close()


def test_a_backend_that_is_no_websocket_server_answers_502(evenflow: Evenflow) -> None:
    client = H2Client(evenflow.port)
    try:
        stream_id = websocket_connect(client, "/plain/chat")  # the demo backend answers 200
        assert client.response_head(stream_id)[b":status"] == b"502"
    finally:
        client.close()


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
