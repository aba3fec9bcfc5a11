"""TLS settings: `tls:` on an HTTP listener (terminate TLS there) and on a pool (TLS to backends).

The models only check what can be checked without touching the disk. What the files hold (a
certificate that parses, is valid today and matches its key; a CA bundle that loads) is checked
by `file_problems`, which config/checks.py runs at load time so that `evenflow check` and a
reload report it with the field's path. Reading files is all it does: nothing is started.
"""

from __future__ import annotations

import datetime
import re
import ssl
from typing import Annotated, Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from pydantic import AfterValidator, Field, field_validator, model_validator

from evenflow.config.base import Model

# Mozilla's "intermediate" TLS 1.2 suites (ssl-config.mozilla.org, guidelines 5.7), ECDHE only:
# the DHE ones would need DH parameters evenflow does not ship. TLS 1.3 suites are OpenSSL's
# defaults, which are exactly Mozilla's three.
DEFAULT_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)

# RFC 6066 §3: a server name is a DNS host name (no IP literals); "*.example.com" for one label.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_SERVER_NAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")
# RFC 9110 §5.6.2: a header name is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _check_sni_pattern(value: str) -> str:
    name = value.lower().removesuffix(".")
    bare = name[2:] if name.startswith("*.") else name
    if len(name) > 253 or not _SERVER_NAME.fullmatch(bare) or not bare:
        raise ValueError(
            f"{value!r} is not a server name: give a host name (api.example.com) or a "
            "wildcard for one label (*.example.com)"
        )
    return name


SniPattern = Annotated[str, AfterValidator(_check_sni_pattern)]


def _check_server_name(value: str) -> str:
    name = value.lower().removesuffix(".")
    if name.startswith("*.") or not _SERVER_NAME.fullmatch(name):
        raise ValueError(f"{value!r} is not a server name (a host name such as api.internal)")
    return name


AlpnProtocol = Literal["h2", "http/1.1"]


def _default_alpn() -> list[AlpnProtocol]:
    return ["h2", "http/1.1"]


class CertificateFiles(Model):
    """One certificate a listener can present, and the names it is presented for."""

    cert: str = Field(
        description="PEM file with the certificate, then any intermediates (leaf first)."
    )
    key: str = Field(description="PEM file with the certificate's private key (unencrypted).")
    sni: list[SniPattern] | None = Field(
        None,
        description="Server names (SNI) this certificate answers: exact (api.example.com) or a "
        "one-label wildcard (*.example.com). Default: the names in the certificate itself "
        "(its DNS subject alternative names, else its common name). An exact name wins over a "
        "wildcard; a name no certificate claims gets the first certificate.",
    )


class ListenerTls(Model):
    """TLS termination on an HTTP listener."""

    certificates: list[CertificateFiles] = Field(
        min_length=1,
        description="Certificates chosen by the client's server name (SNI); the first one is "
        "the default, for clients that send no name or a name no certificate claims.",
    )
    min_version: Literal["1.2", "1.3"] = Field(
        "1.2", description='Oldest TLS version accepted: "1.2" (default) or "1.3".'
    )
    ciphers: str = Field(
        DEFAULT_CIPHERS,
        description="TLS 1.2 cipher suites, in OpenSSL's syntax. Default: Mozilla's "
        "intermediate list (ECDHE with AES-GCM or ChaCha20-Poly1305). TLS 1.3 suites are "
        "OpenSSL's (AES-GCM and ChaCha20-Poly1305).",
    )
    alpn: list[AlpnProtocol] = Field(
        default_factory=_default_alpn,
        min_length=1,
        description="Protocols offered by ALPN, in order of preference. Default [h2, http/1.1].",
    )
    client_ca: str | None = Field(
        None,
        description="PEM file of the CAs that sign client certificates: when set, clients are "
        "asked for a certificate (mTLS) verified against it. Off by default.",
    )
    client_auth: Literal["required", "optional"] = Field(
        "required",
        description="With client_ca: required (default; no valid certificate, no handshake) "
        "or optional (a client without one is served, without the subject header).",
    )
    client_cert_header: str = Field(
        "x-client-cert-subject",
        description="With client_ca: the request header that carries the verified client "
        "certificate's subject to the backend (CN=alice,O=Example). A client's own header of "
        "that name is always dropped. Default x-client-cert-subject.",
    )

    @field_validator("ciphers")
    @classmethod
    def _known_ciphers(cls, value: str) -> str:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(value)
        except ssl.SSLError:
            raise ValueError(f"OpenSSL knows no cipher suite in {value!r}") from None
        return value

    @field_validator("client_cert_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not _TOKEN.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid header name (RFC 9110 §5.6.2)")
        return value.lower()

    @model_validator(mode="after")
    def _client_auth_needs_ca(self) -> ListenerTls:
        if self.client_ca is None and "client_auth" in self.model_fields_set:
            raise ValueError("client_auth has no effect without client_ca: give client_ca")
        return self


class PoolTls(Model):
    """TLS from evenflow to the backends of a pool."""

    ca: str | None = Field(
        None,
        description="PEM file of the CAs to verify backends against. Default: the system's "
        "trust store.",
    )
    sni: Annotated[str, AfterValidator(_check_server_name)] | None = Field(
        None,
        description="Server name to send (SNI) and to verify the backend's certificate "
        "against. Default: the backend's host as written in its address.",
    )
    insecure_skip_verify: bool = Field(
        False,
        description="Accept any certificate, unverified, for any name. For labs only: it "
        "makes TLS to the backends open to interception. Default false.",
    )
    cert: str | None = Field(
        None, description="PEM client certificate to present to backends (mTLS); needs key."
    )
    key: str | None = Field(None, description="PEM private key of cert (unencrypted).")
    alpn: list[str] | None = Field(
        None,
        description="Protocols to offer by ALPN, e.g. [h2]. Default: [h2] for a pool with "
        "protocol h2, none otherwise.",
    )

    @model_validator(mode="after")
    def _cert_with_key(self) -> PoolTls:
        if (self.cert is None) != (self.key is None):
            raise ValueError("give cert and key together (a client certificate needs its key)")
        return self

    @field_validator("alpn")
    @classmethod
    def _alpn_names(cls, value: list[str] | None) -> list[str] | None:
        # RFC 7301 §3.1: protocol names are 1 to 255 bytes
        for name in value or ():
            if not 0 < len(name.encode()) < 256:
                raise ValueError(f"ALPN protocol {name!r} must be 1 to 255 bytes")
        return value


# --- what the files hold --------------------------------------------------------------------


Problems = list[tuple[str, str]]


def certificate_names(cert: x509.Certificate) -> list[str]:
    """The host names a certificate is for: its DNS subject alternative names, else its CN
    (RFC 6125 §6.4.4: the CN counts only when there are no subject alternative names)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return [str(a.value).lower() for a in common if isinstance(a.value, str)]
    return [name.lower() for name in san.get_values_for_type(x509.DNSName)]


def load_certificate_chain(path: str) -> list[x509.Certificate]:
    """The certificates of a PEM file, leaf first; OSError or ValueError with the reason."""
    with open(path, "rb") as f:
        data = f.read()
    return x509.load_pem_x509_certificates(data)


def file_problems(tls: ListenerTls | PoolTls, where: str) -> tuple[Problems, Problems]:
    """(errors, warnings) about the files `tls` names, each with its path under `where`."""
    errors: Problems = []
    warnings: Problems = []
    now = datetime.datetime.now(datetime.UTC)
    if isinstance(tls, ListenerTls):
        for k, pair in enumerate(tls.certificates):
            at = f"{where}.certificates[{k}]"
            chain = _pair_problems(pair.cert, pair.key, f"{at}.cert", f"{at}.key", now, errors)
            if chain is not None and pair.sni is not None:
                names = certificate_names(chain[0])
                for j, pattern in enumerate(pair.sni):
                    if not any(_covers(name, pattern) for name in names):
                        warnings.append(
                            (
                                f"{at}.sni[{j}]",
                                f"certificate {pair.cert} is not for {pattern} "
                                f"(it names {', '.join(names) or 'no host'}): clients that "
                                "check the name will refuse it",
                            )
                        )
        if tls.client_ca is not None:
            _ca_problems(tls.client_ca, f"{where}.client_ca", errors)
    else:
        if tls.ca is not None:
            _ca_problems(tls.ca, f"{where}.ca", errors)
        if tls.cert is not None and tls.key is not None:
            _pair_problems(tls.cert, tls.key, f"{where}.cert", f"{where}.key", now, errors)
    return errors, warnings


def _covers(cert_name: str, pattern: str) -> bool:
    """Whether a certificate for `cert_name` is valid for every name `pattern` stands for."""
    if cert_name == pattern:
        return True
    # RFC 6125 §6.4.3: a wildcard in the certificate stands for exactly one leftmost label
    if cert_name.startswith("*.") and not pattern.startswith("*."):
        label, _, parent = pattern.partition(".")
        return bool(label) and parent == cert_name[2:]
    return False


def _read(path: str, at: str, what: str, errors: Problems) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        errors.append((at, f"cannot read the {what} file {path}: {exc.strerror or exc}"))
        return None


def _pair_problems(
    cert_path: str,
    key_path: str,
    cert_at: str,
    key_at: str,
    now: datetime.datetime,
    errors: Problems,
) -> list[x509.Certificate] | None:
    """Check a certificate file and its key; the chain when the certificate parses."""
    chain: list[x509.Certificate] | None = None
    cert_data = _read(cert_path, cert_at, "certificate", errors)
    if cert_data is not None:
        try:
            chain = x509.load_pem_x509_certificates(cert_data)
        except ValueError:
            errors.append((cert_at, f"{cert_path} holds no PEM certificate that parses"))
    if chain is not None:
        for position, cert in enumerate(chain):
            which = "certificate" if position == 0 else f"intermediate certificate {position}"
            start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
            if now >= end:
                errors.append((cert_at, f"{which} in {cert_path} expired on {_date(end)}"))
            elif now < start:
                errors.append(
                    (cert_at, f"{which} in {cert_path} is not valid before {_date(start)}")
                )
    key_data = _read(key_path, key_at, "key", errors)
    if key_data is None:
        return chain
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except TypeError:
        errors.append((key_at, f"{key_path} is encrypted: evenflow needs an unencrypted key"))
        return chain
    except (ValueError, UnsupportedAlgorithm):
        errors.append((key_at, f"{key_path} holds no PEM private key that parses"))
        return chain
    if chain is None:
        return None
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(der, spki) != chain[0].public_key().public_bytes(der, spki):
        errors.append((key_at, f"{key_path} is not the private key of {cert_path}"))
        return chain
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path)
    except (ssl.SSLError, OSError) as exc:
        errors.append((cert_at, f"OpenSSL refuses {cert_path} with {key_path}: {_reason(exc)}"))
    return chain


def _ca_problems(path: str, at: str, errors: Problems) -> None:
    data = _read(path, at, "CA", errors)
    if data is None:
        return
    try:
        x509.load_pem_x509_certificates(data)
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except (ValueError, ssl.SSLError, OSError):
        errors.append((at, f"{path} holds no PEM CA certificate that loads"))


def _date(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or exc)
