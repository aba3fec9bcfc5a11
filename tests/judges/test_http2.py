"""Judge: HTTP/2 from clients nobody here wrote, against `python -m evenflow run` in a process.

curl with --http2-prior-knowledge (h2c) fetches, uploads and is routed to two pools; h2load
runs 2000 requests over 10 connections, 10 streams each, and must see no error at all.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from lb_support import Evenflow, curl, demo_backends, generated_sha256, listener_config
from lb_support import running_evenflow as run_evenflow

pytestmark = [pytest.mark.judge, pytest.mark.timeout(120)]

H2LOAD_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def evenflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Evenflow]:
    """evenflow routing /b/ to pool b and everything else to pool a (demo backends a, b)."""
    workdir = tmp_path_factory.mktemp("http2")
    with demo_backends("a", "b", workdir=workdir) as addresses:
        config = listener_config(
            {"a": {"backends": [addresses["a"]]}, "b": {"backends": [addresses["b"]]}},
            routes=[{"match": {"path_prefix": "/b/"}, "pool": "b"}, {"pool": "a"}],
        )
        with run_evenflow(config, workdir) as running:
            yield running


def test_curl_h2c_prior_knowledge(evenflow: Evenflow) -> None:
    result = curl(
        "--http2-prior-knowledge", "-D", "-", "-w", "\n%{http_version}", f"{evenflow.url}/hello"
    )
    assert result.returncode == 0, result.stderr
    head, _, rest = result.stdout.partition("\n\n")  # text mode: CRLF read as LF
    assert head.startswith("HTTP/2 200")
    assert "x-backend: a" in head
    assert "connection:" not in head.lower() and "keep-alive" not in head.lower()
    body, _, version = rest.rpartition("\n")
    assert body == "backend a: GET /hello\n"
    assert version == "2"


def test_curl_requests_on_two_pools(evenflow: Evenflow) -> None:
    for path, backend in (("/b/x", "b"), ("/a/y", "a"), ("/b/z?q=1", "b")):
        result = curl("--http2-prior-knowledge", "-i", f"{evenflow.url}{path}")
        assert result.returncode == 0, result.stderr
        assert f"x-backend: {backend}" in result.stdout
        assert result.stdout.endswith(f"backend {backend}: GET {path}\n")


def test_curl_download_and_upload(evenflow: Evenflow, tmp_path: Path) -> None:
    size = 5 * 1024 * 1024 + 7
    out = tmp_path / "down"
    result = curl("--http2-prior-knowledge", "-o", str(out), f"{evenflow.url}/f?size={size}")
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == generated_sha256(size)

    upload = tmp_path / "up"
    upload.write_bytes(bytes(range(256)) * 20000)
    result = curl("--http2-prior-knowledge", "--data-binary", f"@{upload}", f"{evenflow.url}/echo")
    assert result.returncode == 0, result.stderr
    assert f'"body_bytes": {upload.stat().st_size}' in result.stdout
    assert hashlib.sha256(upload.read_bytes()).hexdigest() in result.stdout


def test_curl_head_and_no_route_status(evenflow: Evenflow) -> None:
    result = curl("--http2-prior-knowledge", "-I", f"{evenflow.url}/x?size=1234")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("HTTP/2 200")
    assert "content-length: 1234" in result.stdout


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) missing")
def test_h2load_has_no_errors(evenflow: Evenflow) -> None:
    result = subprocess.run(
        ["h2load", "-n", "2000", "-c", "10", "-m", "10", f"{evenflow.url}/", f"{evenflow.url}/b/"],
        capture_output=True,
        text=True,
        timeout=H2LOAD_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        result.stdout,
    )
    assert summary is not None, result.stdout
    assert summary.groups() == ("2000", "2000", "2000", "2000", "0", "0", "0"), result.stdout
    assert "status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx" in result.stdout
    rate = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", result.stdout)
    print(f"h2load: {rate.group(1) if rate else '?'} req/s")
