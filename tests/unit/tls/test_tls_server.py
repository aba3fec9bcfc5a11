"""The listener side of TLS without sockets: which certificate a server name picks, the context
settings, and staging/reloading certificate files."""

from __future__ import annotations

import logging
import os
import shutil
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme

from evenflow.config.tls import ListenerTls
from evenflow.tls import groups
from evenflow.tls.server import Certificates, TlsError, TlsListener


class Files:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca = trustme.CA()

    def issue(self, name: str, *identities: str) -> dict[str, Any]:
        leaf = self.ca.issue_cert(*identities)
        leaf.cert_chain_pems[0].write_to_path(str(self.dir / f"{name}.pem"))
        leaf.private_key_pem.write_to_path(str(self.dir / f"{name}.key"))
        return {"cert": str(self.dir / f"{name}.pem"), "key": str(self.dir / f"{name}.key")}


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


def tls(*certificates: dict[str, Any], **more: Any) -> ListenerTls:
    return ListenerTls.model_validate({"certificates": list(certificates), **more})


def test_pick_exact_then_wildcard_then_default(files: Files) -> None:
    default = files.issue("default", "default.test")
    wild = files.issue("wild", "*.example.com")
    api = files.issue("api", "api.example.com")
    certs = Certificates(tls(default, wild, api))
    first, by_wildcard, exact = (
        certs.default,
        certs.pick("www.example.com"),
        certs.pick("api.example.com"),
    )
    assert by_wildcard is not first and exact is not first and exact is not by_wildcard
    assert certs.pick("API.EXAMPLE.COM.") is exact  # case and a trailing dot do not matter
    assert certs.pick("a.b.example.com") is first  # a wildcard is one label
    assert certs.pick("example.com") is first
    assert certs.pick("default.test") is first
    assert certs.pick(None) is first
    assert certs.pick("") is first
    assert certs.names == [["default.test"], ["*.example.com"], ["api.example.com"]]


def test_the_first_certificate_claiming_a_name_keeps_it(files: Files) -> None:
    one = files.issue("one", "api.example.com")
    two = files.issue("two", "api.example.com", "other.example.com")
    certs = Certificates(tls(files.issue("d", "d.test"), one, two))
    assert certs.pick("api.example.com") is not certs.pick("other.example.com")


def test_explicit_sni_replaces_the_certificate_names(files: Files) -> None:
    api = files.issue("api", "api.example.com")
    certs = Certificates(tls(files.issue("d", "d.test"), {**api, "sni": ["*.internal"]}))
    assert certs.pick("svc.internal") is not certs.default
    assert certs.pick("api.example.com") is certs.default


def test_context_settings(files: Files) -> None:
    listener = TlsListener("web", tls(files.issue("api", "api.example.com")))
    context = listener.context
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.verify_mode == ssl.CERT_NONE
    suites = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert suites == {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    }
    assert listener.client_cert_header is None


def test_mtls_settings(files: Files) -> None:
    files.ca.cert_pem.write_to_path(str(files.dir / "clients.pem"))
    api = files.issue("api", "api.example.com")
    required = TlsListener("web", tls(api, client_ca=str(files.dir / "clients.pem")))
    assert required.context.verify_mode == ssl.CERT_REQUIRED
    assert required.client_cert_header == b"x-client-cert-subject"
    optional = TlsListener(
        "web", tls(api, client_ca=str(files.dir / "clients.pem"), client_auth="optional")
    )
    assert optional.context.verify_mode == ssl.CERT_OPTIONAL
    assert all(c.verify_mode == ssl.CERT_OPTIONAL for c in optional._current.exact.values())


def test_min_version_1_3(files: Files) -> None:
    listener = TlsListener("web", tls(files.issue("api", "a.test"), min_version="1.3"))
    assert listener.context.minimum_version == ssl.TLSVersion.TLSv1_3


def test_key_exchange_groups_are_set_without_the_fallback() -> None:
    # the fallback would limit clients to P-256; here the groups list itself must be settable
    assert groups._libssl() is not None


def test_stage_refuses_a_mismatched_pair_and_changes_nothing(files: Files) -> None:
    api = files.issue("api", "api.example.com")
    other = files.issue("other", "api.example.com")
    listener = TlsListener("web", tls(api))
    current = listener._current
    with pytest.raises(TlsError, match="cannot load .*other.pem with .*api.key"):
        listener.stage(tls({"cert": other["cert"], "key": api["key"]}))
    assert listener._current is current


def test_reload_if_changed(files: Files, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="evenflow.tls.server")
    api = files.issue("api", "api.example.com")
    listener = TlsListener("web", tls(api))
    first = listener._current
    assert listener.reload_if_changed() is False  # nothing changed
    assert listener._current is first

    other = files.issue("other", "api.example.com")
    shutil.copyfile(other["cert"], api["cert"])  # new certificate, old key: unusable
    bump(api["cert"])
    assert listener.reload_if_changed() is False
    assert listener._current is first
    assert "cannot be used, keeping the certificates in use" in caplog.text
    caplog.clear()
    assert listener.reload_if_changed() is False  # the same failure is not retried or logged
    assert caplog.text == ""

    shutil.copyfile(other["key"], api["key"])  # now the pair matches
    bump(api["key"])
    assert listener.reload_if_changed() is True
    assert listener._current is not first
    assert "certificates loaded for api.example.com" in caplog.text


def bump(path: str) -> None:
    """Move a file's mtime forward, as a later write would on any file system."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
