"""Retries: connect failures for any method; failures after sending only when replay is safe."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from proxy_support import (
    RawServer,
    StartBackends,
    StartProxy,
    StartRawServer,
    Timer,
    config,
    raw_client,
    read_request,
    sha256,
)

pytestmark = pytest.mark.timeout(30)


class Swallower:
    """A backend that reads each request in full, then closes the connection without a word."""

    def __init__(self, answer_after_s: float | None = None) -> None:
        self.seen: list[bytes] = []
        self.answer_after_s = answer_after_s  # None: close; a number: stay silent that long

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, _, _ = await read_request(reader)
        self.seen.append(head)
        if self.answer_after_s is not None:
            await asyncio.sleep(self.answer_after_s)


async def swallowers(
    raw_server: StartRawServer, n: int, answer_after_s: float | None = None
) -> list[tuple[Swallower, RawServer]]:
    out: list[tuple[Swallower, RawServer]] = []
    for _ in range(n):
        handler = Swallower(answer_after_s)
        out.append((handler, await raw_server(handler)))
    return out


async def test_post_with_a_body_is_not_retried_after_it_was_sent(
    raw_server: StartRawServer, proxy: StartProxy
) -> None:
    pair = await swallowers(raw_server, 2)
    pool = {"backends": [srv.address for _, srv in pair], "retries": {"attempts": 3}}
    p = await proxy(config({"p": pool}, pool="p"))
    async with raw_client(p) as client:
        resp = await client.request("POST", "/orders", body=b'{"buy": 1}')
        assert resp.status == 502, resp.head
    seen = sum(len(h.seen) for h, _ in pair)
    assert seen == 1, f"a POST that reached a backend was sent {seen} times"


async def test_get_is_retried_after_the_backend_closed_on_it(
    raw_server: StartRawServer, backends: StartBackends, proxy: StartProxy
) -> None:
    ((closer, closer_srv),) = await swallowers(raw_server, 1)
    (a,) = await backends("a")
    p = await proxy(config({"p": {"backends": [closer_srv.address, a.address]}}, pool="p"))
    async with httpx.AsyncClient(base_url=p.url, timeout=5) as c:
        for i in range(4):
            r = await c.get(f"/g/{i}")
            assert (r.status_code, r.headers.get("x-backend")) == (200, "a"), r.text
    assert len(closer.seen) >= 1, "the closing backend was never tried: nothing was retried"
    assert a.requests == 4


async def test_put_with_a_small_body_is_retried_with_the_body_intact(
    raw_server: StartRawServer, backends: StartBackends, proxy: StartProxy
) -> None:
    ((closer, closer_srv),) = await swallowers(raw_server, 1)
    (a,) = await backends("a")
    p = await proxy(config({"p": {"backends": [closer_srv.address, a.address]}}, pool="p"))
    body = bytes(range(256)) * 16  # 4 KiB: small enough for evenflow to keep for a replay
    async with httpx.AsyncClient(base_url=p.url, timeout=5) as c:
        r = await c.put("/echo", content=body)
        assert r.status_code == 200, r.text
        assert r.json()["body_sha256"] == sha256(body)
    assert len(closer.seen) == 1


async def test_put_with_a_streamed_body_is_not_retried(
    raw_server: StartRawServer, backends: StartBackends, proxy: StartProxy
) -> None:
    ((closer, closer_srv),) = await swallowers(raw_server, 1)
    (a,) = await backends("a")
    p = await proxy(config({"p": {"backends": [closer_srv.address, a.address]}}, pool="p"))
    body = b"s" * (2 << 20)  # 2 MiB: streamed, not kept, so it cannot be replayed
    async with raw_client(p) as client:
        resp = await client.request("PUT", "/big", body=body)
        assert resp.status == 502, resp.head
    assert len(closer.seen) == 1
    assert a.requests == 0


async def test_attempts_bound_the_retries(raw_server: StartRawServer, proxy: StartProxy) -> None:
    three = await swallowers(raw_server, 3)
    pool = {"backends": [srv.address for _, srv in three], "retries": {"attempts": 2}}
    p = await proxy(config({"p": pool}, pool="p"))
    async with raw_client(p) as client:
        resp = await client.get("/x")
        assert resp.status == 502
    counts = [len(h.seen) for h, _ in three]
    assert sum(counts) == 2 and max(counts) == 1, counts  # two tries, two different backends


async def test_post_is_not_retried_after_a_response_timeout(
    raw_server: StartRawServer, backends: StartBackends, proxy: StartProxy
) -> None:
    ((silent, silent_srv),) = await swallowers(raw_server, 1, answer_after_s=10)
    (a,) = await backends("a")
    pool = {"backends": [silent_srv.address, a.address], "timeouts": {"response": "300ms"}}
    p = await proxy(config({"p": pool}, pool="p"))
    async with raw_client(p) as client:
        timer = Timer()
        resp = await client.request("POST", "/pay", body=b"amount=5")
        assert resp.status == 504, resp.head
        assert timer.elapsed <= 1.0
    assert len(silent.seen) == 1
    assert a.requests == 0


async def test_get_is_retried_elsewhere_after_a_response_timeout(
    raw_server: StartRawServer, backends: StartBackends, proxy: StartProxy
) -> None:
    ((silent, silent_srv),) = await swallowers(raw_server, 1, answer_after_s=10)
    (a,) = await backends("a")
    pool = {"backends": [silent_srv.address, a.address], "timeouts": {"response": "300ms"}}
    p = await proxy(config({"p": pool}, pool="p"))
    async with raw_client(p) as client:
        timer = Timer()
        resp = await client.get("/report")
        assert (resp.status, resp.headers.get("x-backend")) == (200, "a"), resp.head
        assert timer.elapsed <= 1.5
    assert len(silent.seen) == 1
