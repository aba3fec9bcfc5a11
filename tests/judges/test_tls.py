"""Judge: TLS as a user meets it. `python -m evenflow run` with `tls:` on its listener, demo
backends behind it, and clients nobody here wrote: curl, sslyze, Python's ssl module.

Certificates are made for each test (trustme). What is checked: curl over HTTPS reaches the
backend; the certificate curl sees follows the name it asked for; old protocols are refused;
client certificates are required and their subject reaches the backend; sslyze finds the
listener compliant with Mozilla's "intermediate" configuration; certificates are reloaded from
disk and by the admin API without dropping connections; `evenflow check` names every bad file.
HTTP/2 through curl is its own test, run once the HTTP/2 module exists.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import shutil
import socket
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from lb_support import Evenflow, curl, demo_backends, free_port, running_evenflow

pytestmark = [pytest.mark.judge, pytest.mark.timeout(90)]

REPO = Path(__file__).resolve().parents[2]
NAME = "api.example.com"


class Pki:
    """A trustme CA writing PEM files into a directory."""

    def __init__(self, directory: Path, name: str = "ca") -> None:
        self.dir = directory
        self.ca = trustme.CA()
        self.ca_path = directory / f"{name}.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))

    def issue(self, file_name: str, *names: str, **options: Any) -> dict[str, str]:
        leaf = self.ca.issue_cert(*names, **options)
        cert, key = self.dir / f"{file_name}.pem", self.dir / f"{file_name}.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        return {"cert": str(cert), "key": str(key)}


def der(pem_path: str) -> bytes:
    cert = x509.load_pem_x509_certificate(Path(pem_path).read_bytes())
    return cert.public_bytes(serialization.Encoding.DER)


def tls_config(backend: str, tls: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {
        "listeners": [{"name": "web", "bind": "127.0.0.1:1", "pool": "web", "tls": tls}],
        "pools": {"web": {"backends": [backend]}},
        "access_log": {"path": "off"},
        "drain_timeout": "1s",
        **top,
    }


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with demo_backends("b1", workdir=tmp_path_factory.mktemp("backends")) as found:
        yield found["b1"]


def https(evenflow: Evenflow, ca: Path, *args: str, name: str = NAME) -> list[str]:
    """curl arguments for https://NAME:PORT (resolved to 127.0.0.1), trusting `ca`."""
    return [
        "--max-time",
        "10",
        "--cacert",
        str(ca),
        "--resolve",
        f"{name}:{evenflow.port}:127.0.0.1",
        *args,
    ]


def url(evenflow: Evenflow, path: str = "/echo", name: str = NAME) -> str:
    return f"https://{name}:{evenflow.port}{path}"


def echoed(body: str) -> dict[str, str]:
    return {name.lower(): value for name, value in json.loads(body)["headers"]}


def presented(port: int, server_name: str | None, ca: Path) -> bytes:
    """The certificate evenflow presents for `server_name` (verified against `ca`)."""
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        found = tls.getpeercert(binary_form=True)
    assert found is not None
    return found


# --- HTTPS through curl -----------------------------------------------------------------------


def test_curl_http1_over_tls(tmp_path: Path, backend: str) -> None:
    pki = Pki(tmp_path)
    config = tls_config(backend, {"certificates": [pki.issue("api", NAME)]})
    with running_evenflow(config, tmp_path) as evenflow:
        done = curl(
            *https(evenflow, pki.ca_path, "--http1.1", "-w", "\n%{http_code} %{http_version}"),
            url(evenflow),
        )
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition("\n")
    assert status == "200 1.1"
    headers = echoed(body)
    assert headers["x-forwarded-proto"] == "https"
    assert headers["host"] == f"{NAME}:{evenflow.port}"


@pytest.mark.skipif(
    not (REPO / "evenflow" / "proxy" / "http2" / "downstream.py").exists(),
    reason="HTTP/2 downstream (evenflow/proxy/http2/downstream.py) is not there yet",
)
def test_curl_http2_over_tls(tmp_path: Path, backend: str) -> None:
    pki = Pki(tmp_path)
    config = tls_config(backend, {"certificates": [pki.issue("api", NAME)]})
    with running_evenflow(config, tmp_path) as evenflow:
        done = curl(
            *https(evenflow, pki.ca_path, "--http2", "-w", "\n%{http_code} %{http_version}"),
            url(evenflow),
        )
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition("\n")
    assert status == "200 2"
    assert echoed(body)["x-forwarded-proto"] == "https"


def test_the_certificate_follows_the_server_name(tmp_path: Path, backend: str) -> None:
    pki = Pki(tmp_path)
    default = pki.issue("default", "default.example.org")
    wild = pki.issue("wild", "*.example.com")
    api = pki.issue("api", NAME)
    config = tls_config(backend, {"certificates": [default, wild, api]})
    with running_evenflow(config, tmp_path) as evenflow:
        for name, want in ((NAME, api), ("shop.example.com", wild)):
            done = curl(
                *https(evenflow, pki.ca_path, "-o", "/dev/null", "-w", "%{certs}", name=name),
                url(evenflow, "/", name),
            )
            # curl verified the name against the certificate and shows the one it saw
            assert done.returncode == 0, done.stderr
            start = done.stdout.index("-----BEGIN CERTIFICATE-----")
            end = done.stdout.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
            seen = x509.load_pem_x509_certificate(done.stdout[start:end].encode())
            assert seen.public_bytes(serialization.Encoding.DER) == der(want["cert"])
        assert presented(evenflow.port, "unknown.example.net", pki.ca_path) == der(default["cert"])
        assert presented(evenflow.port, None, pki.ca_path) == der(default["cert"])


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_old_protocols_refused(tmp_path: Path, backend: str, version: str) -> None:
    pki = Pki(tmp_path)
    config = tls_config(backend, {"certificates": [pki.issue("api", NAME)]})
    with running_evenflow(config, tmp_path) as evenflow:
        context = ssl.create_default_context(cafile=str(pki.ca_path))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # old versions, on purpose
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = getattr(ssl.TLSVersion, version)
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        with (
            socket.create_connection(("127.0.0.1", evenflow.port), timeout=5) as raw,
            pytest.raises(OSError) as refused,
        ):
            context.wrap_socket(raw, server_hostname=NAME)
        assert "NO_PROTOCOLS_AVAILABLE" not in str(refused.value)  # it was offered
        done = curl(*https(evenflow, pki.ca_path, "--tlsv1.2", "-o", "/dev/null"), url(evenflow))
        assert done.returncode == 0, done.stderr


# --- client certificates ----------------------------------------------------------------------


def test_mtls_with_curl(tmp_path: Path, backend: str) -> None:
    pki = Pki(tmp_path)
    (tmp_path / "clients").mkdir()
    clients = Pki(tmp_path / "clients", "clients-ca")
    alice = clients.issue("alice", "alice@example.com", common_name="alice")
    tls = {"certificates": [pki.issue("api", NAME)], "client_ca": str(clients.ca_path)}
    with running_evenflow(tls_config(backend, tls), tmp_path) as evenflow:
        without = curl(*https(evenflow, pki.ca_path), url(evenflow))
        assert without.returncode != 0
        done = curl(
            *https(evenflow, pki.ca_path, "--cert", alice["cert"], "--key", alice["key"]),
            "-H",
            "X-Client-Cert-Subject: CN=admin",
            url(evenflow),
        )
    assert done.returncode == 0, done.stderr
    headers = json.loads(done.stdout)["headers"]
    subjects = [v for n, v in headers if n.lower() == "x-client-cert-subject"]
    assert len(subjects) == 1 and subjects[0].endswith("CN=alice"), subjects


# --- sslyze -----------------------------------------------------------------------------------


def mozilla_leaf(ca: trustme.CA, directory: Path) -> dict[str, str]:
    """A server certificate as Mozilla's intermediate profile wants it (ECDSA P-256, SHA-256,
    at most 366 days), for 127.0.0.1. Issued here rather than by trustme, whose certificates
    mark subjectAltName critical beside a subject, which RFC 5280 path validation refuses."""
    issuer = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    issuer_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return {"cert": str(cert_path), "key": str(key_path)}


def test_sslyze_mozilla_intermediate(tmp_path: Path, backend: str) -> None:
    sslyze = Path(sys.executable).parent / "sslyze"
    assert sslyze.exists(), "sslyze is part of the test extra: pip install -e '.[test]'"
    pki = Pki(tmp_path)
    config = tls_config(backend, {"certificates": [mozilla_leaf(pki.ca, tmp_path)]})
    with running_evenflow(config, tmp_path) as evenflow:
        done = subprocess.run(
            [
                str(sslyze),
                "--mozilla_config=intermediate",
                f"--certinfo_ca_file={pki.ca_path}",
                f"127.0.0.1:{evenflow.port}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    report = done.stdout[-3000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert f"127.0.0.1:{evenflow.port}: OK - Compliant." in done.stdout, report


# --- reloading --------------------------------------------------------------------------------


def wait_for_certificate(port: int, ca: Path, want: bytes, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while presented(port, NAME, ca) != want:
        assert time.monotonic() < deadline, "evenflow never presented the new certificate"
        time.sleep(0.1)


class KeepAlive:
    """One TLS keep-alive connection made with Python's http.client."""

    def __init__(self, port: int, ca: Path) -> None:
        import http.client

        context = ssl.create_default_context(cafile=str(ca))
        context.check_hostname = False
        self.conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)

    def get(self) -> int:
        self.conn.request("GET", "/", headers={"host": NAME})
        response = self.conn.getresponse()
        response.read()
        return response.status

    def peer(self) -> bytes:
        assert self.conn.sock is not None
        found = self.conn.sock.getpeercert(binary_form=True)
        assert isinstance(found, bytes)
        return found

    def close(self) -> None:
        self.conn.close()


def test_certificate_files_replaced_on_disk(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    pki = Pki(tmp_path)
    live = pki.issue("live", NAME)
    first = der(live["cert"])
    renewed = pki.issue("renewed", NAME)
    mismatched = pki.issue("mismatched", NAME)
    config = tls_config(backend, {"certificates": [live]})
    with running_evenflow(config, tmp_path) as evenflow:
        established = KeepAlive(evenflow.port, pki.ca_path)
        request.addfinalizer(established.close)
        assert established.get() == 200
        # a certificate whose key is not there: refused, the one in use stays
        shutil.copyfile(mismatched["cert"], live["cert"])
        deadline = time.monotonic() + 10
        while "keeping the certificates in use" not in evenflow.log():
            assert time.monotonic() < deadline, evenflow.log()
            time.sleep(0.1)
        assert presented(evenflow.port, NAME, pki.ca_path) == first
        # the complete renewed pair: taken for new handshakes
        shutil.copyfile(renewed["cert"], live["cert"])
        shutil.copyfile(renewed["key"], live["key"])
        wait_for_certificate(evenflow.port, pki.ca_path, der(renewed["cert"]))
        # the connection from before goes on, on the certificate it began with
        assert established.get() == 200
        assert established.peer() == first


def test_certificates_reloaded_by_the_admin_api(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    pki = Pki(tmp_path)
    api = pki.issue("api", NAME)
    admin_port = free_port()
    config = tls_config(backend, {"certificates": [api]}, admin={"bind": f"127.0.0.1:{admin_port}"})
    with running_evenflow(config, tmp_path) as evenflow:
        established = KeepAlive(evenflow.port, pki.ca_path)
        request.addfinalizer(established.close)
        assert established.get() == 200
        shop = pki.issue("shop", "shop.example.net")
        config["listeners"][0]["tls"]["certificates"].append(shop)
        evenflow.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        done = curl("-X", "POST", f"http://127.0.0.1:{admin_port}/api/v1/reload")
        assert done.returncode == 0, done.stderr
        assert presented(evenflow.port, "shop.example.net", pki.ca_path) == der(shop["cert"])
        assert established.get() == 200


# --- evenflow check ---------------------------------------------------------------------------


def test_check_names_every_bad_file(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    now = datetime.datetime.now(datetime.UTC)
    good = pki.issue("good", NAME)
    expired = pki.issue(
        "expired",
        "old.example.com",
        not_before=now - datetime.timedelta(days=10),
        not_after=now - datetime.timedelta(days=1),
    )
    other = pki.issue("other", NAME)
    (tmp_path / "junk.pem").write_text("junk\n")
    config = {
        "listeners": [
            {
                "name": "web",
                "bind": "127.0.0.1:8443",
                "pool": "web",
                "tls": {
                    "certificates": [
                        good,
                        {"cert": str(tmp_path / "missing.pem"), "key": good["key"]},
                        expired,
                        {"cert": other["cert"], "key": good["key"]},
                        {**good, "sni": ["not a name"]},
                    ],
                    "client_ca": str(tmp_path / "junk.pem"),
                },
            }
        ],
        "pools": {"web": {"backends": ["10.0.0.1:443"], "tls": {"ca": str(tmp_path / "junk.pem")}}},
    }
    path = tmp_path / "evenflow.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "evenflow", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    out = done.stdout + done.stderr
    assert "listeners[0].tls.certificates[4].sni[0]: 'not a name' is not a server name" in out
    # the schema error comes first; fix it and the files are checked
    config["listeners"][0]["tls"]["certificates"].pop()
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "evenflow", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    out = done.stdout + done.stderr
    for expected in (
        "listeners[0].tls.certificates[1].cert: cannot read the certificate file",
        "listeners[0].tls.certificates[2].cert: certificate in",
        "expired on",
        "listeners[0].tls.certificates[3].key: ",
        "is not the private key of",
        "listeners[0].tls.client_ca: ",
        "pools.web.tls.ca: ",
    ):
        assert expected in out, out
