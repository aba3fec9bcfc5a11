"""A keep-alive HTTP/1.1 connection to one backend.

The connection carries one exchange at a time (no upstream pipelining: a backend that answers
out of turn cannot desync other clients). llhttp checks every response; what reaches Python
depends on the response:
- the common one (a Content-Length body the client gets unchanged) costs two callbacks, head
  and end: its body bytes are forwarded straight from the socket reads, counted down to the
  length, never handed to Python piece by piece;
- a chunked or unframed one, whose body must be re-framed or whose trailers must be relayed, is
  re-read from its head by a second parser that also reports body pieces and trailer fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Final, cast

import httptools

from evenflow.core.backend import Admin, BackendState
from evenflow.core.errors import (
    ProxyError,
    UpstreamProtocolError,
    UpstreamReset,
    UpstreamTimeout,
)
from evenflow.proxy.http1.framing import BODY_NONE, BODY_RAW
from evenflow.proxy.http1.response_head import (
    BACKEND_CLOSES,
    CHUNKED,
    HAS_LENGTH,
    analyze,
    analyze_fields,
    keeps_connection,
    read_head,
    status_code,
)
from evenflow.proxy.watchdog import Watchdog, periods

if TYPE_CHECKING:
    from evenflow.proxy.http1.exchange import Exchange

log = logging.getLogger(__name__)

# _body_from when a passthrough body continues in the next read
_BODY_NEXT_READ: Final = -2
# on_headers_complete: response heads are read from a window this much larger than the
# previous head (on a connection, heads differ by a few bytes: a date, a length, a cookie);
# a first one from the first _HEAD_GUESS_FIRST bytes; after a head over _HEAD_GUESS_MAX, the
# next one is searched for (splitting that many bytes of a body would cost more)
_HEAD_GUESS_MARGIN: Final = 64
_HEAD_GUESS_FIRST: Final = 512
_HEAD_GUESS_MAX: Final = 4096


class _HeadResponseEnd(Exception):
    """Raised from on_headers_complete to stop llhttp after the head of a HEAD response."""


class _NeedBodyEvents(Exception):
    """Raised from on_headers_complete: re-read this response with the body-aware parser."""


class _BodyCallbacks:
    """llhttp callbacks that also report body pieces and trailer fields.

    httptools decides at construction which callbacks exist, so the common response is parsed
    by a parser without them, and only a response that needs them is re-read by one built on
    this object.
    """

    __slots__ = ("on_header", "on_headers_complete", "on_body", "on_message_complete")

    def __init__(self, conn: UpstreamConnection) -> None:
        self.on_header = conn.trailer_event
        self.on_headers_complete = conn.on_headers_complete
        self.on_body = conn.body_event
        self.on_message_complete = conn.on_message_complete


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "backend",
        "loop",
        "transport",
        "parser",
        "exchange",
        "idle_timeout_s",
        "response_timeout_s",
        "max_idle",
        "reused",
        "watchdog",
        "_fast_parser",
        "_data",
        "_pending",
        "_head_from",
        "_head_guess",
        "_last_head",
        "_last_status",
        "_last_flags",
        "_last_length",
        "_last_whole",
        "_in_head",
        "_flags",
        "_head_out",
        "_whole",
        "_body_from",
        "_body_left",
        "_trailers",
        "_replaying",
        "_is_head",
        "_interim",
        "_switching",
        "_received",
        "_uses",
        "_last_check",
        "_quiet_periods",
        "_closed",
        "_reading_paused",
    )

    def __init__(
        self,
        backend: BackendState,
        loop: asyncio.AbstractEventLoop,
        response_timeout_s: float,
        idle_timeout_s: float,
        max_idle: int,
    ) -> None:
        self.backend = backend
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self._fast_parser = httptools.HttpResponseParser(self)
        self.parser = self._fast_parser
        self.exchange: Exchange | None = None
        self.response_timeout_s = response_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.max_idle = max_idle
        self.reused = False  # carried an earlier exchange: a failure may be a stale keep-alive
        self.watchdog = Watchdog(
            loop, min(response_timeout_s, idle_timeout_s), self._check_timeouts
        )
        self._data = b""  # the read being parsed
        self._pending = b""  # bytes since the current response head began, until it is complete
        self._head_from = 0  # where in _pending the head begins (after any interim response)
        self._head_guess = _HEAD_GUESS_FIRST  # bytes that likely hold the next response head
        # The previous final response head of a GET-like exchange on this connection, exactly
        # as received, with what was read from it: a backend tends to repeat its heads byte for
        # byte (until its Date moves on), and the same bytes mean the same status and framing.
        self._last_head = b""
        self._last_status = 0
        self._last_flags = 0
        self._last_length = -1
        # the size of a whole response (head and body) that may bypass llhttp when it begins
        # with _last_head; -1 when that head's response cannot (see _may_bypass_parser)
        self._last_whole = -1
        self._in_head = False
        self._flags = 0
        self._head_out: bytes | None = None  # passthrough: the head, until it leaves with body
        self._whole = False  # passthrough: the head is unchanged and began this read
        # passthrough: where in _data this read's body bytes begin; -1: none, or not passthrough
        self._body_from = -1
        self._body_left = 0  # passthrough: body bytes still to come (-1: until close)
        self._trailers: list[tuple[bytes, bytes]] = []
        self._replaying = False  # the body-aware parser is re-reading a head already handled
        self._is_head = False
        self._interim = False
        self._switching = False  # a 101 was answered: the connection becomes a tunnel
        self._received = 0  # response bytes seen for the current exchange
        self._uses = 0  # exchanges carried: moves on every send
        self._last_check = (0, 0)  # (_uses, _received) at the previous watchdog check
        self._quiet_periods = 0  # watchdog periods without progress
        self._closed = False
        self._reading_paused = False

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        self.backend.active_connections += 1
        self.backend.live.add(self)
        self.watchdog.start()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = True
        self.backend.active_connections -= 1
        self.backend.live.discard(self)
        self.watchdog.stop()
        exchange = self.exchange
        if exchange is None:
            with contextlib.suppress(ValueError):
                self.backend.idle.remove(self)
            return
        self.exchange = None
        if not self._in_head and not self._flags & (CHUNKED | HAS_LENGTH) and not self._is_head:
            # RFC 9112 §6.3 rule 8: a response without framing ends when the connection does
            if self._head_out is not None:
                exchange.down.write(self._head_out)
            exchange.on_response_complete(self, [], reusable=False)
            return
        exchange.on_upstream_failed(self, UpstreamReset(_lost_detail(exc)), self._received > 0)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost settles the exchange

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.on_upstream_write_paused()

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.on_upstream_write_resumed()

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            # bytes nobody asked for: the backend is broken; never reuse this connection
            self.close()
            return
        self._received += len(data)
        self._data = data
        if (
            self._in_head
            and len(data) == self._last_whole
            and not self._pending
            and not self._is_head
            and self.parser is self._fast_parser
            and data.startswith(self._last_head)
        ):
            self._whole_known_response(data)
            return
        if self._in_head:
            self._pending = self._pending + data if self._pending else data
        elif self._body_from == _BODY_NEXT_READ:
            self._body_from = 0
        self._feed(data)
        if self._body_from >= 0:
            self._forward_body()  # this read ended inside a passthrough body

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _NeedBodyEvents):
                # re-read this response from its head with the body-aware parser
                self.parser = httptools.HttpResponseParser(_BodyCallbacks(self))
                self._fast_parser = httptools.HttpResponseParser(self)  # the old one errored
                self._replaying = True
                self._feed(cause.args[0])
            elif isinstance(cause, _HeadResponseEnd):
                # llhttp cannot know a HEAD response has no body; start afresh for the next one
                self._fast_parser = self.parser = httptools.HttpResponseParser(self)
                self._complete(reusable=not cause.args[0])
            elif isinstance(cause, ProxyError):
                self._fail(cause)
            else:
                raise
        except httptools.HttpParserUpgrade as exc:
            # 101 Switching Protocols: what follows the head is the new protocol's bytes
            self._switch(data[int(exc.args[0]) :])
        except httptools.HttpParserError as exc:
            self._fail(
                UpstreamProtocolError(f"invalid response from {self.backend.address}: {exc}")
            )

    def _switch(self, rest: bytes) -> None:
        exchange = self.exchange
        transport = self.transport
        if exchange is None or transport is None or not exchange.upgrade:
            self._fail(UpstreamProtocolError(f"{self.backend.address} switched protocols unasked"))
            return
        # from here the connection belongs to the tunnel: this object lets go of it
        self.exchange = None
        self._closed = True
        self.watchdog.stop()
        self.backend.live.discard(self)
        exchange.on_switching_protocols(transport, rest)

    # -- llhttp callbacks --------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        if self._replaying:
            self._replaying = False
            return
        pending = self._pending
        head_from = self._head_from
        last = self._last_head
        if head_from == 0 and last and not self._is_head and pending.startswith(last):
            # the previous head again: it ends where that one did (a head holds its blank line
            # only at its end), and status, framing and keep-alive are what they were
            self._final_head(pending, last, self._last_status, self._last_flags, self._last_length)
            return
        end = flags = length = -1
        guess = self._head_guess
        if head_from == 0 and guess:
            # the head is read from its lines, and its end found by the same reading, where
            # a search for the blank line would scan it once more: the lines are those of
            # about as many bytes as the previous head on this connection (a window: the body
            # after it is not split), and a head longer than that is searched for
            window = pending if len(pending) <= guess else pending[:guess]
            end, flags, length = read_head(window.split(b"\r\n"))
        if end < 0:
            end = pending.find(b"\r\n\r\n", head_from) + 4
            flags = -2  # not read yet
        raw = pending[head_from:end]
        parser = self.parser
        status = status_code(raw)  # not a generic method call into httptools
        if status < 0:
            status = parser.get_status_code()
        exchange = self.exchange
        assert exchange is not None
        if status < 200 and status != 101:
            # RFC 9110 §15.2: interim responses precede the final one on the same exchange
            self._interim = True
            self._head_from = end
            exchange.on_interim_response(raw)
            return
        size = end - head_from
        self._head_guess = size + _HEAD_GUESS_MARGIN if size <= _HEAD_GUESS_MAX else 0
        if flags == -2:
            flags, length = analyze(raw)
        elif flags < 0:
            flags, length = analyze_fields(raw)
        if not keeps_connection(raw, flags) and not parser.should_keep_alive():
            flags |= BACKEND_CLOSES
        if head_from == 0 and not self._is_head and size <= _HEAD_GUESS_MAX:
            # (a HEAD's response head is framed apart: llhttp's keep-alive differs for it)
            self._last_head = raw
            self._last_status = status
            self._last_flags = flags
            self._last_length = length
            self._last_whole = len(raw) + length if _may_bypass_parser(status, flags) else -1
        self._final_head(pending, raw, status, flags, length)

    def _final_head(self, pending: bytes, raw: bytes, status: int, flags: int, length: int) -> None:
        """Forward the final response head `raw` (which begins `pending`, or ends an interim
        response in it), read as `status`, `flags` and Content-Length `length`."""
        exchange = self.exchange
        assert exchange is not None
        head_from = self._head_from
        end = head_from + len(raw)
        parser = self.parser
        self._in_head = False
        self._pending = b""
        self._head_from = 0
        self._flags = flags
        head = exchange.on_response_head(status, raw, flags)
        if self._is_head:
            exchange.down.write(head)
            raise _HeadResponseEnd(len(pending) > end)  # True: bytes followed the head
        if exchange.body_mode == BODY_RAW and not flags & CHUNKED:
            # passthrough: head and body leave together, from this read or the next ones
            self._head_out = head
            self._whole = head is raw and head_from == 0 and len(pending) == len(self._data)
            self._body_left = length  # -1 without a length: until the backend closes
            self._body_from = end - (len(pending) - len(self._data))
        else:
            exchange.down.write(head)
            self._body_from = -1
            if status == 101:
                self._switching = True  # llhttp stops after this head (HttpParserUpgrade)
            elif exchange.body_mode != BODY_NONE and parser is self._fast_parser:
                raise _NeedBodyEvents(pending[head_from:])

    def _whole_known_response(self, data: bytes) -> None:
        """`data` is one whole response: the previous head again (which llhttp accepted), then
        exactly the body its Content-Length frames. Forwarded as llhttp would have let it
        through, without llhttp, which stays at the message boundary it is at."""
        try:
            self._final_head(
                data, self._last_head, self._last_status, self._last_flags, self._last_length
            )
            self.on_message_complete()
        except ProxyError as exc:
            self._fail(exc)

    # body_event and trailer_event are not named on_*: the fast parser must not call them
    def body_event(self, body: bytes) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.on_response_body(body)

    def trailer_event(self, name: bytes, value: bytes) -> None:
        if not self._replaying:
            self._trailers.append((name.lower(), value))

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self._switching:
            return  # not an end: the tunnel takes over (see _switch)
        start = self._body_from
        if start >= 0:
            data = self._data
            if self._whole and start + self._body_left == len(data):
                # the common case: the whole response in one read, to go out unchanged
                self._body_from = -1
                self._head_out = None
                exchange = self.exchange
                assert exchange is not None
                exchange.bytes_out += self._body_left
                exchange.down.write(data)
            else:
                self._forward_body(end_of_message=True)
        self.parser = self._fast_parser
        exchange = self.exchange
        if exchange is not None:
            exchange.on_response_complete(self, self._trailers, not self._flags & BACKEND_CLOSES)

    # -- driven by the exchange --------------------------------------------------------------

    def send(
        self, exchange: Exchange, head: bytes, held: list[bytes] | None, is_head: bool
    ) -> None:
        """Start `exchange` on this connection by writing its head (and `held`, any body held
        so far): one write call either way, and no list made for a head alone."""
        transport = self.transport
        assert transport is not None
        self.exchange = exchange
        self._is_head = is_head
        self._in_head = True
        self._received = 0
        self._uses += 1
        if self._trailers:
            self._trailers = []  # (most responses have none: their empty list serves again)
        if held:
            transport.writelines([head, *held])
        else:
            transport.write(head)

    def write(self, pieces: list[bytes]) -> None:
        if self.transport is not None:
            self.transport.writelines(pieces)

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self._closed:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self._closed:
            self._reading_paused = False
            self.transport.resume_reading()

    def release(self, reusable: bool) -> None:
        """The exchange is done with this connection: park it for reuse, or close it."""
        self.exchange = None
        self._body_from = -1
        self._head_out = None
        if self._reading_paused:
            self.resume_reading()
        transport = self.transport
        backend = self.backend
        if (
            reusable
            and not self._closed
            and transport is not None
            # (not transport.is_closing(), a method call: a connection that is closing after
            # all is parked and found out by is_usable, as one the backend closes while idle)
            and backend.admin is Admin.ENABLED  # draining or disabled: close after this one
            and len(backend.idle) < self.max_idle
        ):
            self.reused = True
            backend.idle.append(self)
        else:
            self.close()

    def is_usable(self) -> bool:
        """Still open, so an idle connection taken from the pool can carry a request."""
        return not self._closed and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.exchange = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def fail(self, error: ProxyError) -> None:
        """Fail the exchange on this connection with `error` and drop the connection: what an
        HTTP/2 stream under it reports (refused, reset, past its gRPC deadline)."""
        self._fail(error)

    def terminate(self, reason: str) -> None:
        """Cut the connection for the control plane (a drain deadline passed): the exchange on
        it, if any, fails as if the backend had reset it, so its client is answered or cut."""
        self._fail(UpstreamReset(reason))

    def abort(self) -> None:
        """Drop the connection at once: its response was cut off, it can never be reused."""
        self.exchange = None
        self._body_from = -1
        if self.transport is not None:
            self.transport.abort()

    # -- internals ---------------------------------------------------------------------------

    def _forward_body(self, end_of_message: bool = False) -> None:
        """Send this read's passthrough body bytes, with the head if it has not left yet."""
        data = self._data
        start = self._body_from
        left = self._body_left
        if left < 0:  # until close: everything is body
            stop = len(data)
        else:
            stop = start + left if end_of_message else min(start + left, len(data))
            self._body_left = left - (stop - start)
        self._body_from = -1 if end_of_message else _BODY_NEXT_READ
        exchange = self.exchange
        assert exchange is not None
        exchange.bytes_out += stop - start
        head = self._head_out
        if head is None:
            if stop > start:
                exchange.down.write(data[start:stop] if start or stop != len(data) else data)
            return
        self._head_out = None
        if self._whole and stop == len(data):
            exchange.down.write(data)  # the response exactly as received: one write, no copy
        else:
            exchange.down.writelines([head, data[start:stop]])

    def _complete(self, reusable: bool) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.on_response_complete(self, self._trailers, reusable)

    def _fail(self, error: ProxyError) -> None:
        exchange = self.exchange
        self.abort()
        if exchange is not None:
            exchange.on_upstream_failed(self, error, self._received > 0)

    def _check_timeouts(self) -> bool:
        """The watchdog's check: idle too long, or a backend silent too long. False: stop."""
        if self._closed:
            return False
        mark = (self._uses, self._received)
        if mark != self._last_check or self._reading_paused:
            # progress (or the client is the slow one, holding us back): start counting again
            self._last_check = mark
            self._quiet_periods = 0
            return True
        self._quiet_periods += 1
        period = self.watchdog.period_s
        if self.exchange is None:
            if self._quiet_periods >= periods(self.idle_timeout_s, period):
                self.close()  # idle too long: the backend may be about to drop it anyway
                return False
        elif self._quiet_periods >= periods(self.response_timeout_s, period):
            self._fail(UpstreamTimeout(f"no response from {self.backend.address} in time"))
            return False
        return True


def _may_bypass_parser(status: int, flags: int) -> bool:
    """Whether a response with this head is framed by its Content-Length alone, so that a read
    of exactly its head and that many bytes is the whole of it, and the connection stays open
    after it: not interim, 101, 204 or 304 (no body whatever the length says), not chunked."""
    return (
        status >= 200
        and status != 204
        and status != 304
        and flags & HAS_LENGTH != 0
        and not flags & (CHUNKED | BACKEND_CLOSES)
    )


def _lost_detail(exc: Exception | None) -> str:
    if exc is None:
        return "backend closed the connection"
    return f"connection lost: {exc}"
