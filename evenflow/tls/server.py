"""TLS termination for an HTTP listener: the context its socket serves with, the certificate
picked by SNI, and certificates reloaded from disk without touching established connections.

There is one SSLContext per certificate, all with the same settings. The listening socket's own
context dispatches: OpenSSL calls its `sni_callback` on every handshake (with the client's server
name, or None), which moves that handshake onto the chosen certificate's context. A reload builds
a complete new set of contexts first and swaps them in only when every file loaded, so a bad file
never replaces certificates that work; a connection already established keeps the TLS state it
has. What a connection does with the bytes is not this module's business.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Iterator

from evenflow.config.tls import ListenerTls, certificate_names, load_certificate_chain
from evenflow.tls.groups import restrict_groups

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 2.0  # how often the server looks for changed certificate files
_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_CLIENT_AUTH = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL}

FileStamp = tuple[tuple[str, int, int, int] | tuple[str], ...]


class TlsError(Exception):
    """A listener's TLS files cannot be used; the message says which file and why."""


class Certificates:
    """One loaded set of certificates: a context per certificate and the names that pick it."""

    __slots__ = ("config", "default", "exact", "wildcard", "names")

    def __init__(self, config: ListenerTls) -> None:
        self.config = config
        self.exact: dict[str, ssl.SSLContext] = {}
        self.wildcard: dict[str, ssl.SSLContext] = {}  # "example.com" for "*.example.com"
        self.names: list[list[str]] = []  # per certificate, for logs
        contexts = []
        for pair in config.certificates:
            context = new_context(config)
            _load_pair(context, pair.cert, pair.key)
            try:
                names = pair.sni or certificate_names(load_certificate_chain(pair.cert)[0])
            except (OSError, ValueError) as exc:
                raise TlsError(f"cannot read the names in {pair.cert}: {_reason(exc)}") from None
            contexts.append(context)
            self.names.append(names)
            for name in names:
                # the first certificate that claims a name keeps it
                if name.startswith("*."):
                    self.wildcard.setdefault(name[2:], context)
                else:
                    self.exact.setdefault(name, context)
        self.default = contexts[0]

    def pick(self, server_name: str | None) -> ssl.SSLContext:
        """The context for a ClientHello's server name: exact, then wildcard, then default."""
        if server_name:
            name = server_name.lower().removesuffix(".")
            found = self.exact.get(name)
            if found is not None:
                return found
            # a wildcard stands for exactly one label (RFC 6125 §6.4.3)
            found = self.wildcard.get(name.partition(".")[2])
            if found is not None:
                return found
        return self.default


def new_context(config: ListenerTls) -> ssl.SSLContext:
    """A server context with the listener's settings and no certificate yet."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[config.min_version]
    # no compression (CRIME); no client-initiated renegotiation (a CPU exhaustion vector);
    # the client's cipher order wins, as Mozilla's guidelines advise when every suite is strong
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.set_ciphers(config.ciphers)
    except ssl.SSLError:
        raise TlsError(f"OpenSSL knows no cipher suite in {config.ciphers!r}") from None
    context.set_alpn_protocols(config.alpn)
    restrict_groups(context)
    if config.client_ca is not None:
        context.verify_mode = _CLIENT_AUTH[config.client_auth]
        try:
            context.load_verify_locations(cafile=config.client_ca)
        except (OSError, ValueError) as exc:
            raise TlsError(
                f"cannot load the client CA file {config.client_ca}: {_reason(exc)}"
            ) from None
    return context


def _load_pair(context: ssl.SSLContext, cert: str, key: str) -> None:
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise TlsError(f"cannot load {cert} with {key}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    # an SSLError's reason ("KEY_VALUES_MISMATCH") or an OSError's strerror says it best
    return str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc)


class TlsListener:
    """The server side of TLS for one listener, for as long as its socket is open.

    `context` is what the listening socket is created with; it stays the same object across
    reloads. `stage` loads a config's files (raising TlsError, changing nothing), `install`
    switches new handshakes to what was staged, `reload_if_changed` does both when the files'
    modification times moved.
    """

    def __init__(self, name: str, config: ListenerTls) -> None:
        self.name = name
        self._stamp = stamp(config)
        self._current = Certificates(config)
        self.context = new_context(config)
        # the callback always moves a handshake on; the default certificate is here as well so
        # that the socket's own context is complete
        _load_pair(self.context, config.certificates[0].cert, config.certificates[0].key)
        self.context.sni_callback = self._on_server_name

    @property
    def config(self) -> ListenerTls:
        return self._current.config

    @property
    def client_cert_header(self) -> bytes | None:
        """The header that carries a verified client's subject upstream (mTLS only)."""
        config = self.config
        return None if config.client_ca is None else config.client_cert_header.encode()

    def stage(self, config: ListenerTls) -> Certificates:
        """Load `config`'s certificates from disk; TlsError if any file cannot be used."""
        self._stamp = stamp(config)  # before reading: a change meanwhile is seen next poll
        return Certificates(config)

    def install(self, certificates: Certificates) -> None:
        """New handshakes use `certificates`; established connections keep what they have."""
        self._settle(certificates)
        self._current = certificates
        log.info(
            "listener %s: certificates loaded for %s",
            self.name,
            "; ".join(", ".join(names) or "(no name)" for names in certificates.names),
        )

    def reload_if_changed(self) -> bool:
        """Reload when a file changed since the last load; True when new certificates are in
        use. A failure is logged, and the certificates in use stay."""
        config = self.config
        if stamp(config) == self._stamp:
            return False
        try:
            certificates = self.stage(config)
        except TlsError as exc:
            log.error(
                "listener %s: certificate files changed but cannot be used, keeping the "
                "certificates in use: %s",
                self.name,
                exc,
            )
            return False
        self.install(certificates)
        return True

    def _settle(self, certificates: Certificates) -> None:
        # OpenSSL copies the protocol versions, options and verify mode from the socket's
        # context into each new connection before the SNI callback runs, so those follow the
        # config here; the rest (certificate, CA store, ciphers, ALPN) comes from the context
        # the callback picks.
        config = certificates.config
        context = self.context
        context.minimum_version = _VERSIONS[config.min_version]
        context.set_ciphers(config.ciphers)
        context.set_alpn_protocols(config.alpn)
        context.verify_mode = (
            ssl.CERT_NONE if config.client_ca is None else _CLIENT_AUTH[config.client_auth]
        )

    def _on_server_name(
        self, ssl_object: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext
    ) -> None:
        ssl_object.context = self._current.pick(server_name)


def watched_files(config: ListenerTls) -> Iterator[str]:
    for pair in config.certificates:
        yield pair.cert
        yield pair.key
    if config.client_ca is not None:
        yield config.client_ca


def stamp(config: ListenerTls) -> FileStamp:
    """What tells a file changed: modification time, size, inode (a rename swaps the inode)."""
    found: list[tuple[str, int, int, int] | tuple[str]] = []
    for path in watched_files(config):
        try:
            st = os.stat(path)
        except OSError:
            found.append((path,))
            continue
        found.append((path, st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(found)
