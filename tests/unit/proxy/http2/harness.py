"""A client-side h2 connection wired to evenflow's H2Connection through a fake socket.

No sockets, no sleeps: what the client sends is handed to `data_received`, what evenflow writes
is collected from the fake transport and fed to the client, which turns it into h2 events.
Callbacks evenflow schedules for the next loop turn run when the test yields (`await settle()`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from h2.config import H2Configuration
from h2.connection import H2Connection as H2Client
from h2.events import Event
from h2.settings import SettingCodes, Settings

from evenflow.config.load import load_data
from evenflow.proxy.http1.downstream import HttpListenerContext
from evenflow.proxy.http2.downstream import H2Connection, take_over
from evenflow.runtime.controller import Controller

PEER = ("192.0.2.7", 40000)


class FakeSocket(asyncio.Transport):
    """The client connection's transport, as evenflow sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.aborted = False
        self.reading = True
        self.protocol: asyncio.BaseProtocol | None = None

    def write(self, data: Any) -> None:
        assert not self.closed, "written after close"
        self.out += data

    def take(self) -> bytes:
        data = bytes(self.out)
        self.out.clear()
        return data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": PEER, "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def can_write_eof(self) -> bool:
        return False


def config(**http2: Any) -> dict[str, Any]:
    return {
        "listeners": [
            {
                "name": "web",
                "bind": "127.0.0.1:8080",
                "routes": [{"match": {"path_prefix": "/known"}, "pool": "a"}],
                "http2": http2,
                "timeouts": {"header": "1s", "idle": "1s", "body": "1s"},
            }
        ],
        "pools": {"a": {"backends": ["192.0.2.1:9"]}},
        "access_log": {"path": "off"},
    }


class Pair:
    """evenflow's H2Connection and an h2 client talking to it."""

    def __init__(
        self,
        data: dict[str, Any],
        client_config: H2Configuration | None = None,
        client_window: int | None = None,
    ):
        loop = asyncio.get_running_loop()
        self.controller = Controller(load_data(data).config)
        self.ctx = HttpListenerContext("web", self.controller, loop, None)
        self.sock = FakeSocket()
        self.client = H2Client(client_config or H2Configuration(header_encoding=None))
        if client_window is not None:  # what the client lets evenflow send per stream
            self.client.local_settings = Settings(
                client=True, initial_values={SettingCodes.INITIAL_WINDOW_SIZE: client_window}
            )
        self.client.initiate_connection()
        take_over(self.ctx, self.sock, self.client.data_to_send())  # h2c prior knowledge
        protocol = self.sock.protocol
        assert isinstance(protocol, H2Connection)
        self.conn = protocol

    def send(self, raw: bytes | None = None) -> None:
        """What the client queued (or `raw` bytes) to evenflow."""
        data = self.client.data_to_send() if raw is None else raw
        if data:
            self.conn.data_received(data)

    async def events(self) -> list[Event]:
        """Everything evenflow wrote, as client events (after callbacks due now have run)."""
        await settle()
        events = self.client.receive_data(self.sock.take())
        return events

    def request(
        self, path: str, *extra: tuple[str, str], method: str = "GET", end: bool = True
    ) -> int:
        sid = self.client.get_next_available_stream_id()
        headers = [(":method", method), (":scheme", "http"), (":authority", "t"), (":path", path)]
        self.client.send_headers(sid, [*headers, *extra], end_stream=end)
        self.send()
        return sid


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)
