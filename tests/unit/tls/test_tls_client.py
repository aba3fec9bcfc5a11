"""The pool side of TLS without sockets: what the client context verifies and offers, and that a
pool rebuilt on every health flip does not rebuild (or re-warn about) its context."""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path

import pytest
import trustme

from evenflow.config.tls import PoolTls
from evenflow.core.errors import describe_os_error
from evenflow.tls.client import client_context


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


def test_verifies_against_the_ca_file_with_hostname_check(ca_file: Path) -> None:
    context, server_name = client_context(PoolTls(ca=str(ca_file), sni="users.internal"))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert server_name == "users.internal"
    assert len(context.get_ca_certs()) == 1


def test_system_store_by_default() -> None:
    context, server_name = client_context(PoolTls())
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert server_name is None  # the connector sends the backend's host


def test_insecure_skip_verify_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="evenflow.tls.client")
    settings = PoolTls(insecure_skip_verify=True, sni="lab.internal")
    for _ in range(3):  # as many snapshots as health flips
        context, _ = client_context(settings)
        assert context.verify_mode == ssl.CERT_NONE
        assert context.check_hostname is False
    assert len([r for r in caplog.records if "insecure_skip_verify" in r.getMessage()]) == 1


def test_the_same_settings_share_one_context(ca_file: Path) -> None:
    first, _ = client_context(PoolTls(ca=str(ca_file)))
    assert client_context(PoolTls(ca=str(ca_file)))[0] is first
    assert client_context(PoolTls(ca=str(ca_file)), ("h2",))[0] is not first
    # a renewed CA file makes a new context
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    st = os.stat(ca_file)
    os.utime(ca_file, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert client_context(PoolTls(ca=str(ca_file)))[0] is not first


def test_client_certificate_is_loaded(tmp_path: Path) -> None:
    leaf = trustme.CA().issue_cert("evenflow.internal")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "c.pem"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "c.key"))
    client_context(PoolTls(cert=str(tmp_path / "c.pem"), key=str(tmp_path / "c.key")))
    (tmp_path / "c.key").write_text("nope")
    with pytest.raises(ssl.SSLError):
        client_context(PoolTls(cert=str(tmp_path / "c.pem"), key=str(tmp_path / "c.key")))


def test_tls_failures_are_described_by_their_reason() -> None:
    verify = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] ...")
    verify.verify_message = "unable to get local issuer certificate"
    verify.reason = "CERTIFICATE_VERIFY_FAILED"
    assert describe_os_error(verify) == "TLS: unable to get local issuer certificate"
    alert = ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] ...")
    alert.reason = "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    assert describe_os_error(alert) == "TLS: tlsv13 alert certificate required"
    assert describe_os_error(ConnectionRefusedError(111, "x")) == "connection refused"
