"""Judge: TLS passthrough. Two server names reach two different pools through one evenflow tcp
listener, TLS end to end: the backends are nginx with trustme certificates, and curl verifies
the backend's certificate through evenflow (which holds no key)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from l4_judge_support import curl, free_port, nginx, running_evenflow

pytestmark = [pytest.mark.judge, pytest.mark.timeout(60)]

# pool -> the certificate's names (and the backend's answer)
BACKENDS = {"alpha": ["alpha.test"], "beta": ["*.beta.test"]}


def test_two_server_names_reach_two_pools_with_tls_end_to_end(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    ports = {pool: free_port() for pool in BACKENDS}
    servers = []
    for pool, names in BACKENDS.items():
        cert = ca.issue_cert(*names)
        cert_path, key_path = tmp_path / f"{pool}.pem", tmp_path / f"{pool}.key"
        for blob in cert.cert_chain_pems:
            blob.write_to_path(str(cert_path), append=True)
        cert.private_key_pem.write_to_path(str(key_path))
        servers.append(
            f"""
  server {{
    listen 127.0.0.1:{ports[pool]} ssl;
    ssl_certificate {cert_path};
    ssl_certificate_key {key_path};
    location / {{ default_type text/plain; return 200 "{pool} $ssl_server_name\\n"; }}
  }}
"""
        )
    tmp_path.chmod(0o755)
    with nginx(tmp_path / "nginx", "".join(servers), list(ports.values())):
        config = {
            "listeners": [
                {
                    "name": "l4",
                    "bind": "",
                    "protocol": "tcp",
                    "routes": [
                        {"match": {"sni": "alpha.test"}, "pool": "alpha"},
                        {"match": {"sni": "*.beta.test"}, "pool": "beta"},
                    ],
                }
            ],
            "pools": {pool: {"backends": [f"127.0.0.1:{port}"]} for pool, port in ports.items()},
            "access_log": {"path": "off"},
        }
        with running_evenflow(config, tmp_path) as ef:

            def fetch(name: str, *extra: str) -> tuple[int, str, str]:
                done = curl(
                    "--resolve",
                    f"{name}:{ef.port()}:127.0.0.1",
                    *extra,
                    "-w",
                    "verify=%{ssl_verify_result}",
                    f"https://{name}:{ef.port()}/",
                )
                return done.returncode, done.stdout, done.stderr

            alpha = fetch("alpha.test", "--cacert", str(ca_path))
            beta = fetch("www.beta.test", "--cacert", str(ca_path))
            unrouted = fetch("gamma.test", "--cacert", str(ca_path))  # no route, no default
            untrusted = fetch("alpha.test")  # the system's CAs do not know the test CA
    assert alpha == (0, "alpha alpha.test\nverify=0", ""), alpha
    assert beta == (0, "beta www.beta.test\nverify=0", ""), beta
    assert unrouted[0] == 35, unrouted  # closed during the handshake: curl's SSL connect error
    # the certificate curl checks is the backend's own: without the CA it is refused
    assert untrusted[0] == 60, untrusted
