"""Sticky sessions with real backends: a cookie client keeps its backend, is re-pinned with a
new cookie when that backend dies or is disabled, keeps it while it drains (until the drain's
deadline); a forged cookie is ignored; source_ip keeps each client address on its backend."""

from __future__ import annotations

import asyncio
from collections import Counter
from urllib.parse import quote

import httpx
import pytest
from affinity_support import COOKIE, Client, Running, Start, issued_cookie, served_by

pytestmark = pytest.mark.timeout(30)

SECRET = "integration-secret"
# round robin underneath: without the cookie, consecutive requests would change backend
COOKIE_POOL = {"sticky": {"cookie": {"secret": SECRET, "ttl": "1h"}}}


async def first_visit(client: httpx.AsyncClient) -> tuple[str, str]:
    answer = await client.get("/")
    token = issued_cookie(answer)
    assert token is not None, answer.headers
    return served_by(answer), token


async def stays(client: httpx.AsyncClient, backend: str, times: int = 10) -> None:
    """`times` requests, all to `backend`, none setting a new cookie."""
    for _ in range(times):
        answer = await client.get("/")
        assert served_by(answer) == backend
        assert issued_cookie(answer) is None


async def moves(client: httpx.AsyncClient, old: str, old_token: str) -> tuple[str, str]:
    """The next request lands elsewhere and carries a new cookie; (backend, token)."""
    answer = await client.get("/")
    backend, token = served_by(answer), issued_cookie(answer)
    assert backend != old
    assert token is not None and token != old_token
    assert client.cookies[COOKIE] == token  # the client's jar took it
    return backend, token


def action(run: Running, name: str, verb: str) -> str:
    address = quote(run.backends[name].address, safe="")
    return f"/api/v1/pools/web/backends/{address}/{verb}"


async def test_a_cookie_client_keeps_its_backend_and_is_repinned_when_it_dies(
    evenflow: Start, client: Client
) -> None:
    run = await evenflow(COOKIE_POOL)
    browser = await client(run.url)  # httpx keeps cookies as a browser does
    backend, token = await first_visit(browser)
    assert browser.cookies[COOKIE] == token
    assert run.backends[backend].address not in token
    await stays(browser, backend, 20)
    await run.backends[backend].close()  # killed: connections refused from now on
    new_backend, new_token = await moves(browser, backend, token)
    await stays(browser, new_backend, 10)
    hot = await run.hotspots()
    assert hot["sticky"]["kind"] == "cookie"
    # the request that found it dead was picked as a hit (its pin was usable then); its retry
    # moved it, which counts as the re-pin
    assert (hot["sticky"]["misses"], hot["sticky"]["repins"]) == (1, 1)
    assert hot["sticky"]["hits"] == 20 + 10


async def test_a_client_follows_a_draining_backend_until_the_deadline_then_moves(
    evenflow: Start, client: Client
) -> None:
    run = await evenflow(COOKIE_POOL)
    browser = await client(run.url)
    backend, token = await first_visit(browser)
    loop = asyncio.get_running_loop()
    drain_ends = loop.time() + 1.5
    answer = await run.admin.post(action(run, backend, "drain"), json={"deadline": "1500ms"})
    assert answer.status_code == 200 and answer.json()["state"] == "draining"
    await stays(browser, backend, 5)
    # new sessions go elsewhere meanwhile
    newcomer = await client(run.url)
    for _ in range(4):
        newcomer.cookies.clear()
        assert served_by(await newcomer.get("/")) != backend
    while loop.time() < drain_ends - 0.2:  # until the deadline, its sessions still go there
        await stays(browser, backend, 1)
        await asyncio.sleep(0.1)
    await asyncio.sleep(max(0.0, drain_ends - loop.time()) + 0.1)
    moved_to, moved_token = await moves(browser, backend, token)
    await stays(browser, moved_to, 5)
    # disabled: the session moves at once
    answer = await run.admin.post(action(run, moved_to, "disable"))
    assert answer.status_code == 200
    last, _ = await moves(browser, moved_to, moved_token)
    assert last not in (backend, moved_to)  # one drained, one disabled: the third
    await stays(browser, last, 5)


async def test_a_forged_or_tampered_cookie_is_ignored(evenflow: Start, client: Client) -> None:
    run = await evenflow(COOKIE_POOL)
    plain = await client(run.url)
    _, token = await first_visit(plain)
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    address = run.backends["a"].address
    for forged in ["forged", tampered, address, "", token + "="]:
        plain.cookies.clear()
        answer = await plain.get("/", headers={"cookie": f"{COOKIE}={forged}"})
        assert answer.status_code == 200  # served, never an error
        fresh = issued_cookie(answer)
        assert fresh is not None and fresh != forged, forged  # and pinned anew
        plain.cookies.clear()
        again = await plain.get("/", headers={"cookie": f"{COOKIE}={fresh}"})
        assert served_by(again) == served_by(answer)  # the fresh cookie is a real one
    hot = await run.hotspots()
    assert hot["sticky"]["repins"] == 0  # a value that names no backend pins nothing


async def test_source_ip_keeps_each_client_address_on_its_backend(
    evenflow: Start, client: Client
) -> None:
    run = await evenflow({"sticky": {"source_ip": {"ttl": "5m"}}})
    addresses = [f"127.0.0.{i}" for i in range(11, 17)]
    clients = {ip: await client(run.url, ip) for ip in addresses}
    seen: dict[str, Counter[str]] = {ip: Counter() for ip in addresses}
    for _ in range(10):  # interleaved: round robin alone would give each client every backend
        for ip, c in clients.items():
            seen[ip][served_by(await c.get("/"))] += 1
    assert all(len(counts) == 1 for counts in seen.values()), seen
    pinned = {ip: next(iter(counts)) for ip, counts in seen.items()}
    assert len(set(pinned.values())) == 3  # new clients were spread
    gone = pinned[addresses[0]]
    assert (await run.admin.post(action(run, gone, "disable"))).status_code == 200
    for ip, c in clients.items():
        answers = {served_by(await c.get("/")) for _ in range(5)}
        assert len(answers) == 1
        if pinned[ip] == gone:
            assert answers != {gone}  # re-pinned, and kept there
        else:
            assert answers == {pinned[ip]}  # the others did not move
    hot = await run.hotspots()
    assert hot["sticky"]["kind"] == "source_ip"
    assert hot["sticky"]["table_entries"] == len(addresses)
    assert hot["clients_total"] == 90
    assert {c["address"] for c in hot["clients"]} == set(addresses)
