"""Server-side TLS over a plain TCP transport: the handshake, then plaintext both ways.

`TlsServerProtocol` is what the loop's TCP transport drives: it feeds the client's ciphertext to
OpenSSL through memory BIOs and writes OpenSSL's output back. Once the handshake is done it
makes the application's protocol and gives it a `TlsTransport`, which it uses as it would a TCP
transport. The listener's SSLContext decides everything about TLS itself (certificates by SNI,
ALPN, client certificates, versions); this module only moves bytes and keeps the connection's
lifecycle straight. It replaces the loop's `ssl=` for listeners because that layer raises an
exception on every read only to learn that no more data is buffered.

The connection's states, and what moves it on:

    HANDSHAKING --handshake done--> OPEN --close() / abort() / TLS error--> CLOSING
         |                                                                     |
         +--failed / timed out / client gone--> CLOSING --TCP lost--> CLOSED <-+

In HANDSHAKING no application exists yet; in OPEN plaintext flows both ways; in CLOSING the
application may no longer write or read (our close_notify, if any, is out) and we wait for the
TCP transport to report the connection lost; CLOSED is final.

A close_notify or a FIN from the client is the application's eof_received, after all the data
before it: as on a TCP transport, the connection then closes unless the application answers
True (it may still write, and closes when it is done). This layer keeps no output of its own:
each write is encrypted and handed to the TCP transport at once, so that transport's buffer
and flow control are the connection's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any, Final, cast

log = logging.getLogger(__name__)

HANDSHAKING: Final = 0
OPEN: Final = 1
CLOSING: Final = 2
CLOSED: Final = 3

# The most plaintext one TLS record carries (RFC 8446 §5.1): the largest read worth asking for.
_RECORD_BYTES: Final = 16384

# The extra info this layer answers itself; anything else is the TCP transport's.
_TLS_EXTRA: Final = frozenset({"ssl_object", "peercert", "cipher", "compression", "sslcontext"})


class TlsServerProtocol(asyncio.Protocol):
    """One accepted TLS connection, as the TCP transport's protocol.

    `make_app` makes the application's protocol once the handshake succeeded (a connection
    that never completes one costs the application nothing); `handshake_timeout_s` bounds the
    handshake (a client that opens connections and stalls them holds no more than that).
    """

    __slots__ = (
        "_loop",
        "_context",
        "_make_app",
        "_handshake_timeout_s",
        "_state",
        "_tcp",
        "_incoming",
        "_outgoing",
        "_ssl_object",
        "_openssl",
        "_timer",
        "_app",
        "_app_paused",
        "_write_paused",
        "_peer_done",
        "_eof_told",
        "_error",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        context: ssl.SSLContext,
        make_app: Callable[[], asyncio.Protocol],
        handshake_timeout_s: float,
    ) -> None:
        self._loop = loop
        self._context = context
        self._make_app = make_app
        self._handshake_timeout_s = handshake_timeout_s
        self._state = HANDSHAKING
        self._tcp: asyncio.Transport | None = None
        self._incoming = ssl.MemoryBIO()  # ciphertext from the client, not yet read by OpenSSL
        self._outgoing = ssl.MemoryBIO()  # ciphertext OpenSSL made, not yet written to TCP
        # the SSLObject is what the SNI callback and the application see; the hot path calls
        # the C object behind it, whose methods its own merely call (a Python frame, ~700
        # instructions, saved on every read and write)
        ssl_object = self._ssl_object = context.wrap_bio(
            self._incoming, self._outgoing, server_side=True
        )
        self._openssl: Any = getattr(ssl_object, "_sslobj", ssl_object)
        self._timer: asyncio.TimerHandle | None = None
        self._app: asyncio.Protocol | None = None  # made when the handshake is done
        self._app_paused = False  # the application paused reading
        self._write_paused = False  # the TCP transport's buffer is over its high-water mark
        # The client finished sending (close_notify, or a TCP FIN without one); `_eof_told`
        # once the application heard so, which waits for it to have read what came before.
        self._peer_done = False
        self._eof_told = False
        self._error: Exception | None = None  # why we aborted, for connection_lost

    # -- the TCP transport's callbacks -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._tcp = cast(asyncio.Transport, transport)
        self._timer = self._loop.call_later(self._handshake_timeout_s, self._on_handshake_timeout)

    def data_received(self, data: bytes) -> None:
        state = self._state
        if state == OPEN:
            if self._peer_done:
                return  # after close_notify nothing the client sends is data
            self._incoming.write(data)
            if not self._app_paused:
                self._read_plaintext(len(data))
            # (paused: the ciphertext waits in the BIO, in order, until resume_reading)
        elif state == HANDSHAKING:
            self._incoming.write(data)
            self._continue_handshake()
        # CLOSING, CLOSED: the application is done with this connection

    def eof_received(self) -> bool:
        state = self._state
        if state == HANDSHAKING:
            self._debug("TLS handshake with %s: the client closed the connection")
            self._close_tcp()
        elif state == OPEN:
            # A FIN without close_notify: the application may have been cut short (a
            # truncation), and hears it as an end of input, as on a plain connection.
            self._peer_done = True
            if not self._app_paused:
                self._tell_eof()
        # True: the TCP transport stays open until we close it (after our close_notify)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        state = self._state
        self._state = CLOSED
        self._cancel_timer()
        if state == HANDSHAKING:
            self._debug("TLS handshake with %s: connection lost (%s)", exc)
        app = self._app
        if app is not None and state != CLOSED:
            # the application and its transport refer to each other through us: let go
            self._app = None
            app.connection_lost(exc if exc is not None else self._error)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._app is not None:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._app is not None:
            self._app.resume_writing()

    # -- the handshake -----------------------------------------------------------------------

    def _continue_handshake(self) -> None:
        try:
            self._openssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()  # our part of the exchange; then we wait for the client's next flight
            return
        except ssl.SSLError as exc:  # includes a client certificate that failed verification
            self._debug("TLS handshake with %s failed: %s", _reason(exc))
            self._flush()  # the alert that tells the client why
            self._close_tcp()
            return
        self._flush()  # the last flight, and TLS 1.3 session tickets
        self._cancel_timer()
        self._state = OPEN
        app = self._app = self._make_app()
        app.connection_made(TlsTransport(self))
        if self._write_paused and self._app is not None:
            self._app.pause_writing()  # the handshake filled the TCP buffer (a very slow reader)
        if self._state == OPEN and not self._app_paused and self._incoming.pending:
            self._read_plaintext(self._incoming.pending)  # the request sent with the Finished

    def _on_handshake_timeout(self) -> None:
        self._timer = None
        if self._state == HANDSHAKING:
            self._debug("TLS handshake with %s: timed out")
            self._state = CLOSING
            if self._tcp is not None:
                self._tcp.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- reading -----------------------------------------------------------------------------

    def _read_plaintext(self, size: int) -> None:
        """Decrypt what the incoming BIO holds and hand it to the application in one call;
        then the end of input, if the client sent close_notify. `size`: about how much
        ciphertext the BIO holds (what just came), the first read's buffer."""
        openssl = self._openssl
        incoming = self._incoming
        first = b""
        rest: list[bytes] | None = None
        closed_by_peer = False
        # One read returns at most one record's plaintext, which is shorter than the record:
        # asking for as much as the BIO holds is enough for a whole record and allocates no
        # more than that. Then stop as soon as nothing is left: asking once more would only
        # raise SSLWantReadError to say so, which costs more than a read.
        size = min(size, _RECORD_BYTES) or _RECORD_BYTES
        try:
            while True:
                chunk: bytes = openssl.read(size)
                if not chunk:
                    closed_by_peer = True  # close_notify: nothing more will come
                    break
                if not first:
                    first = chunk
                elif rest is None:
                    rest = [first, chunk]
                else:
                    rest.append(chunk)
                # Shorter than asked for: the record ended, none of it is left in OpenSSL. As
                # long: the record may be longer (it came in parts), ask what is left of it.
                held = 0 if len(chunk) < size else openssl.pending()
                if held:
                    size = held
                else:
                    size = min(incoming.pending, _RECORD_BYTES)
                    if not size:
                        break
        except ssl.SSLWantReadError:
            pass  # a record arrived in part: the rest comes with the next data_received
        except ssl.SSLZeroReturnError:
            closed_by_peer = True  # close_notify, as OpenSSL says it once we sent ours
        except ssl.SSLError as exc:
            self._fail(exc)
            return
        if self._outgoing.pending:
            # TLS's own answer to what it read (a KeyUpdate's, the alert that refuses a
            # renegotiation): now, as the client may wait for it
            self._flush()
        if first and self._app is not None:
            self._app.data_received(first if rest is None else b"".join(rest))
        if closed_by_peer and self._state == OPEN:
            self._peer_done = True
            if not self._app_paused:
                self._tell_eof()

    def _tell_eof(self) -> None:
        """The client sent all it will: the application hears it once, after all its data;
        unless it answers that it will close by itself, we close (as asyncio does)."""
        app = self._app
        if self._eof_told or self._state != OPEN or app is None:
            return
        self._eof_told = True
        if not app.eof_received():
            self._close()

    def _resume_delivery(self) -> None:
        # called soon after resume_reading: what arrived while the application was paused
        if self._state != OPEN or self._app_paused:
            return
        if self._incoming.pending or self._openssl.pending():
            self._read_plaintext(self._incoming.pending)  # (none after close_notify)
        if self._peer_done and not self._app_paused:
            self._tell_eof()

    # -- driven by the application's transport -----------------------------------------------

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        if self._state != OPEN or not data:
            return  # closing: as a TCP transport after close(), output is dropped
        try:
            self._openssl.write(data)
        except ssl.SSLError as exc:
            self._fail(exc)
            return
        if self._tcp is not None:
            self._tcp.write(self._outgoing.read())  # (never empty: at least one record)

    def _pause_reading(self) -> None:
        if self._app_paused or self._state != OPEN:
            return
        self._app_paused = True
        if self._tcp is not None:
            self._tcp.pause_reading()

    def _resume_reading(self) -> None:
        if not self._app_paused:
            return
        self._app_paused = False
        if self._state != OPEN:
            return
        if self._tcp is not None and not self._peer_done:
            self._tcp.resume_reading()
        # Not now: the application may be resuming from inside one of its own callbacks.
        # What waits in the BIOs is read before anything the TCP transport brings after it.
        if self._incoming.pending or self._openssl.pending() or self._peer_done:
            self._loop.call_soon(self._resume_delivery)

    def _close(self) -> None:
        """close_notify, then the TCP transport closes once its buffer is flushed."""
        if self._state != OPEN:
            return
        self._state = CLOSING
        # SSLWantReadError: ours is written, and the client's close_notify is not awaited
        # (RFC 8446 §6.1 lets us close without it); any other error: closing anyway
        with contextlib.suppress(ssl.SSLError):
            self._ssl_object.unwrap()
        self._flush()
        self._close_tcp()

    def _abort(self) -> None:
        if self._state == CLOSED:
            return
        self._state = CLOSING
        if self._tcp is not None:
            self._tcp.abort()

    def _fail(self, exc: ssl.SSLError) -> None:
        """A TLS error on an open connection (a bad record, an alert from the client)."""
        self._debug("TLS connection with %s: %s", _reason(exc))
        self._error = exc
        self._flush()  # OpenSSL's alert, if it made one
        self._abort()

    def _flush(self) -> None:
        outgoing = self._outgoing
        if outgoing.pending and self._tcp is not None:
            self._tcp.write(outgoing.read())

    def _close_tcp(self) -> None:
        self._state = CLOSING
        if self._tcp is not None:
            self._tcp.close()

    def _debug(self, message: str, *args: object) -> None:
        # the client's address costs a system call: only asked for when it will be logged
        if log.isEnabledFor(logging.DEBUG):
            peer = None if self._tcp is None else self._tcp.get_extra_info("peername")
            log.debug(message, peer, *args)

    def extra_info(self, name: str, default: Any) -> Any:
        ssl_object = self._ssl_object
        if name == "ssl_object":
            return ssl_object
        if name not in _TLS_EXTRA:
            return default if self._tcp is None else self._tcp.get_extra_info(name, default)
        if name == "peercert":
            return ssl_object.getpeercert()
        if name == "cipher":
            return ssl_object.cipher()
        if name == "compression":
            return ssl_object.compression()
        return self._context  # "sslcontext": the listener's (SNI may have picked another)


def _reason(exc: ssl.SSLError) -> str:
    # "TLSV1_ALERT_UNKNOWN_CA", "NO_SHARED_CIPHER": OpenSSL's reason says it best
    return str(exc.reason or exc)


class TlsTransport(asyncio.Transport):
    """The application's transport: plaintext in and out of one TLS connection."""

    __slots__ = ("_tls",)

    def __init__(self, tls: TlsServerProtocol) -> None:
        self._tls = tls

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._tls._write(data)

    def writelines(self, list_of_data: Any) -> None:
        # encrypted together: fewer records (each with its own overhead) than piece by piece
        self._tls._write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False  # TLS has close_notify, which ends both directions here

    def write_eof(self) -> None:
        raise NotImplementedError("a TLS connection cannot be half-closed")

    def close(self) -> None:
        self._tls._close()

    def abort(self) -> None:
        self._tls._abort()

    def is_closing(self) -> bool:
        return self._tls._state != OPEN

    def pause_reading(self) -> None:
        self._tls._pause_reading()

    def resume_reading(self) -> None:
        self._tls._resume_reading()

    def is_reading(self) -> bool:
        return self._tls._state == OPEN and not self._tls._app_paused

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._tls.extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._tls._app = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._tls._app  # type: ignore[return-value]

    def get_write_buffer_size(self) -> int:
        tcp = self._tls._tcp
        return 0 if tcp is None else tcp.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        tcp = self._tls._tcp
        return (0, 0) if tcp is None else tcp.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        tcp = self._tls._tcp
        if tcp is not None:
            tcp.set_write_buffer_limits(high, low)
