"""HTTP/2 from clients: `http2:` on an HTTP listener (stream limits, flow-control windows, and
the per-connection frame rates past which a client is cut off as abusive).

Over TLS, HTTP/2 is negotiated by ALPN (`tls.alpn` on the listener offers h2 by default); on a
cleartext listener a client may start HTTP/2 with prior knowledge (h2c), which `h2c` allows.
"""

from __future__ import annotations

from pydantic import Field

from evenflow.config.base import Model
from evenflow.config.units import Size

# RFC 9113 §6.9.1: a flow-control window never exceeds 2^31-1 bytes.
MAX_WINDOW_BYTES = 2**31 - 1
# RFC 9113 §6.5.2: the initial window every peer assumes before SETTINGS arrive; a smaller one
# would make a client that sends before it has read evenflow's SETTINGS overrun the window.
DEFAULT_WINDOW_BYTES = 65535


class Http2(Model):
    h2c: bool = Field(
        True,
        description="Accept HTTP/2 with prior knowledge (the client opens with the HTTP/2 "
        "preface, as `curl --http2-prior-knowledge` does) on a cleartext listener. Default "
        "true. Over TLS, h2 is chosen by ALPN (see tls.alpn).",
    )
    websocket: bool = Field(
        True,
        description="Let clients open WebSockets over HTTP/2 streams (RFC 8441 extended "
        "CONNECT, announced with SETTINGS_ENABLE_CONNECT_PROTOCOL); each one reaches the "
        "backend as an HTTP/1.1 WebSocket handshake and is relayed like one. Default true; "
        "false makes browsers open a separate HTTP/1.1 connection for each WebSocket.",
    )
    max_concurrent_streams: int = Field(
        100,
        ge=1,
        le=10000,
        description="Requests one client connection may have in flight at once "
        "(SETTINGS_MAX_CONCURRENT_STREAMS). Default 100.",
    )
    initial_window_bytes: Size = Field(
        262144,
        ge=DEFAULT_WINDOW_BYTES,
        le=MAX_WINDOW_BYTES,
        description="Request body bytes a client may send on one stream before evenflow "
        "acknowledges them (SETTINGS_INITIAL_WINDOW_SIZE); evenflow stops acknowledging while "
        "the backend is not reading, which is how a slow backend slows the client down. "
        "The connection's window is this times max_concurrent_streams (at most 2GiB), so one "
        "stalled stream never blocks the others. Default 256KiB.",
    )
    max_resets_per_s: int = Field(
        100,
        ge=1,
        description="RST_STREAM frames a client may send per second on one connection; past "
        "it the connection is closed with GOAWAY ENHANCE_YOUR_CALM (the rapid reset attack, "
        "CVE-2023-44487). Default 100.",
    )
    max_control_frames_per_s: int = Field(
        200,
        ge=1,
        description="PING, SETTINGS, PRIORITY, unknown and empty DATA frames a client may send "
        "per second on one connection; past it the connection is closed with GOAWAY "
        "ENHANCE_YOUR_CALM (ping, settings and empty frame floods, CVE-2019-9512/9515/9518). "
        "Default 200.",
    )
    max_continuation_frames: int = Field(
        16,
        ge=1,
        le=64,
        description="CONTINUATION frames one header block may span; past it, or past twice the "
        "listener's limits.max_header_bytes of encoded header block, the connection is closed "
        "with GOAWAY ENHANCE_YOUR_CALM (the CONTINUATION flood, CVE-2024-27316). Default 16.",
    )
