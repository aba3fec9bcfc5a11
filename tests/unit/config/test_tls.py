"""`tls:` on listeners and pools: the shape, and what `evenflow check` finds in the files.

Every problem comes back with the path of the field to fix (listeners[0].tls.certificates[1].cert)
and one sentence. The files are made by trustme in tmp_path; nothing listens.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from evenflow.config.tls import DEFAULT_CIPHERS, ListenerTls, PoolTls

from .helpers import config, load, problem, problems

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


@dataclass
class Pki:
    ca: Path
    cert: Path  # api.example.com
    key: Path
    wild_cert: Path  # *.example.com
    wild_key: Path
    expired: Path
    expired_key: Path
    future: Path
    future_key: Path
    garbage: Path
    encrypted_key: Path
    directory: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))

    def issue(name: str, *identities: str, **validity: datetime.datetime) -> tuple[Path, Path]:
        leaf = ca.issue_cert(*identities, **validity)
        leaf.cert_chain_pems[0].write_to_path(str(d / f"{name}.pem"))
        leaf.private_key_pem.write_to_path(str(d / f"{name}.key"))
        return d / f"{name}.pem", d / f"{name}.key"

    cert, key = issue("api", "api.example.com")
    wild_cert, wild_key = issue("wild", "*.example.com")
    expired, expired_key = issue(
        "expired", "old.example.com", not_before=NOW - 30 * DAY, not_after=NOW - DAY
    )
    future, future_key = issue(
        "future", "new.example.com", not_before=NOW + 10 * DAY, not_after=NOW + 40 * DAY
    )
    (d / "garbage.pem").write_text("this is not PEM\n")
    encrypted = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    (d / "encrypted.key").write_bytes(encrypted)
    (d / "a-directory").mkdir()
    return Pki(
        ca=d / "ca.pem",
        cert=cert,
        key=key,
        wild_cert=wild_cert,
        wild_key=wild_key,
        expired=expired,
        expired_key=expired_key,
        future=future,
        future_key=future_key,
        garbage=d / "garbage.pem",
        encrypted_key=d / "encrypted.key",
        directory=d / "a-directory",
    )


def pair(cert: Path, key: Path, **more: Any) -> dict[str, Any]:
    return {"cert": str(cert), "key": str(key), **more}


def with_tls(*certificates: dict[str, Any], **tls: Any) -> dict[str, Any]:
    return config(listener={"tls": {"certificates": list(certificates), **tls}})


def with_pool_tls(**tls: Any) -> dict[str, Any]:
    return config(pools={"web": {"backends": ["10.0.0.1:8443"], "tls": tls}})


# --- what a valid config looks like -----------------------------------------------------------


def test_listener_tls_defaults(pki: Pki) -> None:
    loaded = load(with_tls(pair(pki.cert, pki.key)))
    tls = loaded.config.listeners[0].tls
    assert isinstance(tls, ListenerTls)
    assert tls.min_version == "1.2"
    assert tls.ciphers == DEFAULT_CIPHERS
    assert tls.alpn == ["h2", "http/1.1"]
    assert tls.client_ca is None
    assert tls.client_auth == "required"
    assert tls.client_cert_header == "x-client-cert-subject"
    assert tls.certificates[0].sni is None  # the certificate's own names
    assert loaded.warnings == []


def test_config_md_example_shape(pki: Pki) -> None:
    data = with_tls(
        pair(pki.cert, pki.key),
        pair(pki.wild_cert, pki.wild_key, sni=["*.example.com"]),
        min_version="1.3",
        alpn=["http/1.1"],
        client_ca=str(pki.ca),
        client_auth="optional",
        client_cert_header="X-Client-DN",
    )
    tls = load(data).config.listeners[0].tls
    assert tls is not None
    assert tls.certificates[1].sni == ["*.example.com"]
    assert tls.client_cert_header == "x-client-dn"  # header names are compared lowercase


def test_pool_tls_defaults(pki: Pki) -> None:
    tls = load(with_pool_tls()).config.pools["web"].tls
    assert isinstance(tls, PoolTls)
    assert (tls.ca, tls.sni, tls.insecure_skip_verify, tls.cert, tls.alpn) == (
        None,
        None,
        False,
        None,
        None,
    )
    full = with_pool_tls(
        ca=str(pki.ca), sni="users.internal", cert=str(pki.cert), key=str(pki.key), alpn=["h2"]
    )
    assert load(full).config.pools["web"].tls == PoolTls(
        ca=str(pki.ca), sni="users.internal", cert=str(pki.cert), key=str(pki.key), alpn=["h2"]
    )


# --- the files, as `evenflow check` reports them ----------------------------------------------


def test_missing_certificate_file(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    assert problem(with_tls(pair(missing, pki.key))) == (
        "listeners[0].tls.certificates[0].cert",
        f"cannot read the certificate file {missing}: No such file or directory",
    )


def test_unreadable_key_file(pki: Pki) -> None:
    assert problem(with_tls(pair(pki.cert, pki.directory))) == (
        "listeners[0].tls.certificates[0].key",
        f"cannot read the key file {pki.directory}: Is a directory",
    )


def test_certificate_that_does_not_parse(pki: Pki) -> None:
    data = with_tls(pair(pki.cert, pki.key), pair(pki.garbage, pki.key))
    assert problem(data) == (
        "listeners[0].tls.certificates[1].cert",
        f"{pki.garbage} holds no PEM certificate that parses",
    )


def test_expired_certificate(pki: Pki) -> None:
    path, message = problem(with_tls(pair(pki.expired, pki.expired_key)))
    assert path == "listeners[0].tls.certificates[0].cert"
    expected = (NOW - DAY).strftime("%Y-%m-%d")
    assert message.startswith(f"certificate in {pki.expired} expired on {expected}")


def test_certificate_not_valid_yet(pki: Pki) -> None:
    path, message = problem(with_tls(pair(pki.future, pki.future_key)))
    assert path == "listeners[0].tls.certificates[0].cert"
    assert message.startswith(f"certificate in {pki.future} is not valid before ")


def test_key_that_does_not_match_its_certificate(pki: Pki) -> None:
    data = with_tls(pair(pki.cert, pki.key), pair(pki.wild_cert, pki.key))
    assert problem(data) == (
        "listeners[0].tls.certificates[1].key",
        f"{pki.key} is not the private key of {pki.wild_cert}",
    )


def test_key_that_does_not_parse(pki: Pki) -> None:
    assert problem(with_tls(pair(pki.cert, pki.garbage))) == (
        "listeners[0].tls.certificates[0].key",
        f"{pki.garbage} holds no PEM private key that parses",
    )


def test_encrypted_key(pki: Pki) -> None:
    assert problem(with_tls(pair(pki.cert, pki.encrypted_key))) == (
        "listeners[0].tls.certificates[0].key",
        f"{pki.encrypted_key} is encrypted: evenflow needs an unencrypted key",
    )


def test_client_ca_that_does_not_load(pki: Pki) -> None:
    data = with_tls(pair(pki.cert, pki.key), client_ca=str(pki.garbage))
    assert problem(data) == (
        "listeners[0].tls.client_ca",
        f"{pki.garbage} holds no PEM CA certificate that loads",
    )


def test_missing_client_ca(pki: Pki, tmp_path: Path) -> None:
    data = with_tls(pair(pki.cert, pki.key), client_ca=str(tmp_path / "none.pem"))
    assert problem(data) == (
        "listeners[0].tls.client_ca",
        f"cannot read the CA file {tmp_path / 'none.pem'}: No such file or directory",
    )


def test_pool_ca_that_does_not_load(pki: Pki) -> None:
    assert problem(with_pool_tls(ca=str(pki.garbage))) == (
        "pools.web.tls.ca",
        f"{pki.garbage} holds no PEM CA certificate that loads",
    )


def test_pool_client_certificate_checked_like_a_listener_one(pki: Pki) -> None:
    found = problems(
        with_pool_tls(cert=str(pki.expired), key=str(pki.key)),
    )
    assert [path for path, _ in found] == ["pools.web.tls.cert", "pools.web.tls.key"]
    assert "expired on" in found[0][1]
    assert found[1][1] == f"{pki.key} is not the private key of {pki.expired}"


def test_every_file_problem_is_reported_at_once(pki: Pki, tmp_path: Path) -> None:
    data = with_tls(
        pair(tmp_path / "gone.pem", pki.key),
        pair(pki.expired, pki.expired_key),
        pair(pki.wild_cert, pki.key),
        client_ca=str(pki.garbage),
    )
    data["pools"]["web"]["tls"] = {"ca": str(pki.garbage)}
    assert [path for path, _ in problems(data)] == [
        "listeners[0].tls.certificates[0].cert",
        "listeners[0].tls.certificates[1].cert",
        "listeners[0].tls.certificates[2].key",
        "listeners[0].tls.client_ca",
        "pools.web.tls.ca",
    ]


# --- the shape --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["*.*.example.com", "exa mple.com", "*", "api.*.com", "-a.com"])
def test_sni_pattern_that_is_not_a_name(pki: Pki, name: str) -> None:
    path, message = problem(with_tls(pair(pki.cert, pki.key, sni=["api.example.com", name])))
    assert path == "listeners[0].tls.certificates[0].sni[1]"
    assert message == (
        f"{name!r} is not a server name: give a host name (api.example.com) or a wildcard for "
        "one label (*.example.com)"
    )


def test_sni_the_certificate_does_not_cover_is_a_warning(pki: Pki) -> None:
    loaded = load(with_tls(pair(pki.cert, pki.key, sni=["API.example.com.", "www.example.org"])))
    assert loaded.warnings == [
        (
            "listeners[0].tls.certificates[0].sni[1]",
            f"certificate {pki.cert} is not for www.example.org (it names api.example.com): "
            "clients that check the name will refuse it",
        )
    ]


def test_wildcard_certificate_covers_names_under_it(pki: Pki) -> None:
    data = with_tls(pair(pki.wild_cert, pki.wild_key, sni=["a.example.com", "*.example.com"]))
    assert load(data).warnings == []


def test_certificates_required(pki: Pki) -> None:
    assert problem(with_tls()) == (
        "listeners[0].tls.certificates",
        "List should have at least 1 item after validation, not 0",
    )


@pytest.mark.parametrize("version", ["1.1", "1.0", 1.2])
def test_min_version_only_1_2_or_1_3(pki: Pki, version: Any) -> None:
    path, message = problem(with_tls(pair(pki.cert, pki.key), min_version=version))
    assert path == "listeners[0].tls.min_version"
    assert message == "Input should be '1.2' or '1.3'"


def test_unknown_ciphers(pki: Pki) -> None:
    assert problem(with_tls(pair(pki.cert, pki.key), ciphers="NOT-A-CIPHER")) == (
        "listeners[0].tls.ciphers",
        "OpenSSL knows no cipher suite in 'NOT-A-CIPHER'",
    )


def test_alpn_only_what_an_http_listener_speaks(pki: Pki) -> None:
    path, _ = problem(with_tls(pair(pki.cert, pki.key), alpn=["h2", "spdy/3"]))
    assert path == "listeners[0].tls.alpn[1]"


def test_client_auth_without_client_ca(pki: Pki) -> None:
    assert problem(with_tls(pair(pki.cert, pki.key), client_auth="optional")) == (
        "listeners[0].tls",
        "client_auth has no effect without client_ca: give client_ca",
    )


def test_client_cert_header_must_be_a_header_name(pki: Pki) -> None:
    assert problem(with_tls(pair(pki.cert, pki.key), client_cert_header="x cert")) == (
        "listeners[0].tls.client_cert_header",
        "'x cert' is not a valid header name (RFC 9110 §5.6.2)",
    )


def test_unknown_key_in_tls(pki: Pki) -> None:
    assert problem(with_tls(pair(pki.cert, pki.key), verify_client=True)) == (
        "listeners[0].tls.verify_client",
        "unknown key (check the spelling; see `evenflow schema`)",
    )


def test_pool_cert_without_key() -> None:
    assert problem(with_pool_tls(cert="/etc/evenflow/client.pem")) == (
        "pools.web.tls",
        "give cert and key together (a client certificate needs its key)",
    )


@pytest.mark.parametrize("name", ["*.internal", "bad name", "10.0.0.1:443"])
def test_pool_sni_must_be_a_host_name(name: str) -> None:
    path, message = problem(with_pool_tls(sni=name))
    assert path == "pools.web.tls.sni"
    assert message == f"{name!r} is not a server name (a host name such as api.internal)"


def test_pool_insecure_skip_verify_must_be_a_bool() -> None:
    path, _ = problem(with_pool_tls(insecure_skip_verify="sometimes"))
    assert path == "pools.web.tls.insecure_skip_verify"


def test_tls_on_a_tcp_listener_is_refused(pki: Pki) -> None:
    data = config(
        listeners=[
            {
                "name": "l4",
                "bind": "127.0.0.1:9000",
                "protocol": "tcp",
                "pool": "web",
                "tls": {"certificates": [pair(pki.cert, pki.key)]},
            }
        ]
    )
    assert problem(data) == (
        "listeners[0].tls",
        "unknown key (check the spelling; see `evenflow schema`)",
    )
