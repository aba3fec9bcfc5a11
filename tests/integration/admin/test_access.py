"""The admin API's token, its probes (/live, /ready), and starts it refuses."""

from __future__ import annotations

import asyncio
import re
import socket
import time

import httpx
import pytest
from admin_support import CLIENT_TIMEOUT_S, Start, backend_url, base_config, free_port

from evenflow.config.load import load_data
from evenflow.demo.backend import DemoBackend
from evenflow.server import Server, StartupError

pytestmark = pytest.mark.timeout(20)

TOKEN_ENV = "EVENFLOW_TEST_ADMIN_TOKEN"

# --- probes -----------------------------------------------------------------------------------


async def test_live_reports_loop_lag(evenflow: Start, backends: dict[str, DemoBackend]) -> None:
    run = await evenflow(base_config(backends))
    answer = await run.admin.get("/live")
    assert answer.status_code == 200
    assert answer.json()["status"] == "alive"
    assert answer.json()["loop_lag_ms"] >= 0

    await asyncio.sleep(0.15)  # the lag timer is armed
    time.sleep(0.5)  # block the loop the data plane shares, as a slow callback would
    await asyncio.sleep(0.01)
    live = (await run.admin.get("/live")).json()
    assert live["loop_lag_max_ms"] >= 350, live


async def test_ready_is_503_while_a_pool_has_no_usable_backend(
    evenflow: Start, backends: dict[str, DemoBackend]
) -> None:
    run = await evenflow(base_config(backends))
    answer = await run.admin.get("/ready")
    assert (answer.status_code, answer.json()) == (200, {"status": "ready"})

    await run.admin.post(backend_url("api", backends["c"].address, "disable"))
    answer = await run.admin.get("/ready")
    assert answer.status_code == 503
    assert answer.json() == {
        "status": "not ready",
        "problems": ["pool api has no usable backend"],
    }
    await run.admin.post(backend_url("api", backends["c"].address, "enable"))
    assert (await run.admin.get("/ready")).status_code == 200


# --- the token --------------------------------------------------------------------------------


async def test_token_required_when_configured(
    evenflow: Start, backends: dict[str, DemoBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "s3cret-token")
    data = base_config(backends)
    data["admin"]["token_env"] = TOKEN_ENV
    run = await evenflow(data, token="s3cret-token")
    url = str(run.admin.base_url)
    a = backends["a"].address

    async with httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT_S) as anonymous:
        for method, path in [
            ("GET", "/api/v1/pools"),
            ("POST", backend_url("web", a, "disable")),
            ("POST", "/api/v1/reload"),
            ("GET", "/api/v1/openapi.json"),
            ("GET", "/api/v1/no-such-thing"),  # 401, not 404: nothing revealed
        ]:
            answer = await anonymous.request(method, path)
            assert answer.status_code == 401, (method, path)
            assert answer.headers["www-authenticate"].startswith("Bearer")
            assert "Authorization: Bearer <token>" in answer.json()["error"]
        for header in ["Bearer wrong-token", "Bearer s3cret-tokenX", "Bearer s3cret"]:
            answer = await anonymous.get("/api/v1/pools", headers={"Authorization": header})
            assert answer.status_code == 401, header
            assert answer.json() == {"error": "wrong bearer token"}
            assert 'error="invalid_token"' in answer.headers["www-authenticate"]
        answer = await anonymous.get(
            "/api/v1/pools", headers={"Authorization": "Basic czNjcmV0LXRva2Vu"}
        )
        assert answer.status_code == 401
        # the probes stay open: orchestrators' probes carry no token
        assert (await anonymous.get("/live")).status_code == 200
        assert (await anonymous.get("/ready")).status_code == 200
        answer = await anonymous.get(
            "/api/v1/pools", headers={"Authorization": "bearer s3cret-token"}
        )
        assert answer.status_code == 200  # RFC 9110 §11.1: the scheme is case-insensitive

    assert (await run.admin.get("/api/v1/pools")).status_code == 200
    assert (await run.admin.get(backend_url("web", a))).json()["state"] == "healthy"


@pytest.mark.parametrize(("value", "why"), [(None, "is not set"), ("  ", "is empty")])
async def test_token_variable_missing_stops_the_start(
    backends: dict[str, DemoBackend],
    monkeypatch: pytest.MonkeyPatch,
    value: str | None,
    why: str,
) -> None:
    if value is None:
        monkeypatch.delenv(TOKEN_ENV, raising=False)
    else:
        monkeypatch.setenv(TOKEN_ENV, value)
    data = base_config(backends)
    port = free_port()
    data["listeners"][0]["bind"] = f"127.0.0.1:{port}"
    data["admin"] = {"bind": f"127.0.0.1:{free_port()}", "token_env": TOKEN_ENV}
    server = Server(load_data(data).config)
    with pytest.raises(StartupError) as caught:
        await asyncio.wait_for(server.start(), 5)
    assert str(caught.value) == (
        f"admin.token_env: environment variable {TOKEN_ENV} {why}; "
        "set it to the admin API's bearer token"
    )
    with socket.socket() as s:  # the listener bound before was released
        s.bind(("127.0.0.1", port))


async def test_admin_port_taken_stops_the_start(backends: dict[str, DemoBackend]) -> None:
    data = base_config(backends)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data["listeners"][0]["bind"] = f"127.0.0.1:{free_port()}"
        data["admin"]["bind"] = f"127.0.0.1:{port}"
        server = Server(load_data(data).config)
        with pytest.raises(StartupError) as caught:
            await asyncio.wait_for(server.start(), 5)
    assert re.fullmatch(
        rf"cannot listen on 127\.0\.0\.1:{port} \(admin\): .*in use", str(caught.value)
    )
